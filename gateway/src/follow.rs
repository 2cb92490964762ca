//! Following a queued result until it is done: what the event stream
//! (`GET /api/results/{id}/events`) and the long poll
//! (`GET /api/results/{id}?wait=`) share.
//!
//! A follower reads the result's record again whenever it may have
//! changed. This gateway knows at once of the results it records itself
//! (its collector and dead-letter consumer call [`Follows::finished`],
//! which wakes only that result's followers); a
//! result another gateway records, and a worker's move to `running`, are
//! seen by reading the record again every [`POLL`]. So several gateways
//! need nothing from one another, at the price of one point read of the
//! result store per follower per second (on DynamoDB half a read unit:
//! 1,000 followers for an hour cost 1.8 M units, $0.23 on demand).
//!
//! Followers are bounded: `--max-followers` on the gateway (a further one
//! is `503`), `--max-followers-per-client` per client (a further one is
//! `429`), each stream ends after [`STREAM_LIFETIME`] (an `EventSource`
//! reconnects with `Last-Event-ID` and loses nothing), and a long poll
//! waits at most [`MAX_WAIT`].

use crate::error::ApiError;
use airq_core::ClientId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// How often a follower reads its result again when nothing here told it
/// of a change (as often as `Retry-After: 1` asks a poller to).
pub const POLL: Duration = Duration::from_secs(1);
/// The longest `?wait=` a long poll may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(25);
/// How long one event stream lasts before the gateway ends it.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(600);
/// Comment lines on an idle stream, so proxies keep it open.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Every follower of this gateway.
pub struct Follows {
    total: Arc<Semaphore>,
    max_total: usize,
    per_client_max: usize,
    open: Mutex<Open>,
}

/// Who follows what, only while followed (so at most `max_total` entries
/// in each map).
#[derive(Default)]
struct Open {
    per_client: HashMap<ClientId, usize>,
    /// Each followed result's wake-up (bumped when this gateway records
    /// it) and its number of followers.
    by_result: HashMap<Uuid, (watch::Sender<u64>, usize)>,
}

/// One follower's place; given back when dropped.
pub struct Follow {
    _permit: OwnedSemaphorePermit,
    owner: Arc<Follows>,
    client: ClientId,
    id: Uuid,
    changes: watch::Receiver<u64>,
}

impl Follows {
    pub fn new(max_total: usize, per_client_max: usize) -> Arc<Self> {
        Arc::new(Follows {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            per_client_max,
            open: Mutex::new(Open::default()),
        })
    }

    fn open_map(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the followers of result `id` here, if any, that it was
    /// recorded.
    pub fn finished(&self, id: Uuid) {
        if let Some((tx, _)) = self.open_map().by_result.get(&id) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// A place for one more follower of result `id` by `client`, if the
    /// gateway and the client's share have one.
    pub fn start(self: &Arc<Self>, client: &ClientId, id: Uuid) -> Result<Follow, ApiError> {
        let permit =
            self.total
                .clone()
                .try_acquire_owned()
                .map_err(|_| ApiError::TooManyFollowers {
                    max: self.max_total,
                    whose: "this gateway",
                })?;
        let changes = {
            let mut open = self.open_map();
            let n = open.per_client.entry(*client).or_insert(0);
            if *n >= self.per_client_max {
                return Err(ApiError::TooManyFollowers {
                    max: self.per_client_max,
                    whose: "this client",
                });
            }
            *n += 1;
            let (tx, followers) = open
                .by_result
                .entry(id)
                .or_insert_with(|| (watch::Sender::new(0), 0));
            *followers += 1;
            let mut rx = tx.subscribe();
            rx.mark_unchanged();
            rx
        };
        Ok(Follow {
            _permit: permit,
            owner: self.clone(),
            client: *client,
            id,
            changes,
        })
    }

    /// Followers open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.max_total - self.total.available_permits()
    }
}

impl Follow {
    /// Returns when the result may have changed: this gateway recorded a
    /// result, or [`POLL`] passed.
    pub async fn next_change(&mut self) {
        tokio::select! {
            changed = self.changes.changed() => {
                // The sender lives as long as the gateway; should it be
                // gone, polling alone still works.
                if changed.is_err() {
                    tokio::time::sleep(POLL).await;
                }
            }
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let mut open = self.owner.open_map();
        if let Some(n) = open.per_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_client.remove(&self.client);
            }
        }
        if let Some((_, n)) = open.by_result.get_mut(&self.id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_result.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(s: &str) -> ClientId {
        ClientId::Key(Uuid::from_u128(u128::from(s.as_bytes()[0])))
    }

    const R1: Uuid = Uuid::from_u128(1);
    const R2: Uuid = Uuid::from_u128(2);

    #[test]
    fn followers_are_bounded_per_client_and_in_all() {
        let f = Follows::new(3, 2);
        let a1 = f.start(&client("a"), R1).expect("a's first");
        let _a2 = f.start(&client("a"), R2).expect("a's second");
        assert!(matches!(
            f.start(&client("a"), R1),
            Err(ApiError::TooManyFollowers { max: 2, .. })
        ));
        let _b1 = f.start(&client("b"), R1).expect("b's first");
        assert!(matches!(
            f.start(&client("b"), R1),
            Err(ApiError::TooManyFollowers { max: 3, .. })
        ));
        assert_eq!(f.open(), 3);
        drop(a1);
        assert_eq!(f.open(), 2);
        let _b2 = f.start(&client("b"), R1).expect("a place came free");
        let open = f.open_map();
        assert_eq!(open.per_client.len(), 2);
        assert_eq!(open.by_result.get(&R1).map(|(_, n)| *n), Some(2));
        assert_eq!(open.by_result.get(&R2).map(|(_, n)| *n), Some(1));
    }

    #[test]
    fn nothing_is_kept_of_a_result_nobody_follows() {
        let f = Follows::new(3, 3);
        let a = f.start(&client("a"), R1).expect("a place");
        drop(a);
        let open = f.open_map();
        assert!(open.per_client.is_empty() && open.by_result.is_empty());
    }

    // Paused time: the follower's poll timer cannot fire before the
    // runtime is idle, so only the wake-up can end the wait early.
    #[tokio::test(start_paused = true)]
    async fn a_recorded_result_wakes_its_followers_at_once_and_no_others() {
        let f = Follows::new(4, 4);
        let mut mine = f.start(&client("a"), R1).expect("a place");
        let mut other = f.start(&client("a"), R2).expect("a place");
        let waiting = tokio::spawn(async move {
            let began = tokio::time::Instant::now();
            mine.next_change().await;
            let woken = began.elapsed();
            let began = tokio::time::Instant::now();
            other.next_change().await;
            (woken, began.elapsed())
        });
        tokio::task::yield_now().await;
        f.finished(R1);
        let (mine, other) = waiting.await.expect("the followers");
        assert_eq!(mine, Duration::ZERO, "woken by the change, not the poll");
        assert_eq!(other, POLL, "another result's change wakes nobody else");
    }
}

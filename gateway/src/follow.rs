//! Following a queued result until it is done: what the event stream
//! (`GET /api/results/{id}/events`) and the long poll
//! (`GET /api/results/{id}?wait=`) share.
//!
//! A follower reads the result's record again whenever it may have
//! changed. This gateway knows at once of the results it records itself
//! (its collector and dead-letter consumer call [`Follows::finished`]); a
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
    /// Bumped whenever this gateway records a finished result.
    finished: watch::Sender<u64>,
    total: Arc<Semaphore>,
    max_total: usize,
    per_client_max: usize,
    per_client: Mutex<HashMap<ClientId, usize>>,
}

/// One follower's place; given back when dropped.
pub struct Follow {
    _permit: OwnedSemaphorePermit,
    owner: Arc<Follows>,
    client: ClientId,
    changes: watch::Receiver<u64>,
}

impl Follows {
    pub fn new(max_total: usize, per_client_max: usize) -> Arc<Self> {
        Arc::new(Follows {
            finished: watch::Sender::new(0),
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            per_client_max,
            per_client: Mutex::new(HashMap::new()),
        })
    }

    /// Tells every follower here that a result was recorded.
    pub fn finished(&self) {
        self.finished.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A place for one more follower of `client`, if the gateway and the
    /// client's share have one.
    pub fn start(self: &Arc<Self>, client: &ClientId) -> Result<Follow, ApiError> {
        let permit =
            self.total
                .clone()
                .try_acquire_owned()
                .map_err(|_| ApiError::TooManyFollowers {
                    max: self.max_total,
                    whose: "this gateway",
                })?;
        {
            let mut open = self
                .per_client
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let n = open.entry(*client).or_insert(0);
            if *n >= self.per_client_max {
                return Err(ApiError::TooManyFollowers {
                    max: self.per_client_max,
                    whose: "this client",
                });
            }
            *n += 1;
        }
        let mut changes = self.finished.subscribe();
        changes.mark_unchanged();
        Ok(Follow {
            _permit: permit,
            owner: self.clone(),
            client: *client,
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
        let mut open = self
            .owner
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(s: &str) -> ClientId {
        ClientId::Key(uuid::Uuid::from_u128(u128::from(s.as_bytes()[0])))
    }

    #[test]
    fn followers_are_bounded_per_client_and_in_all() {
        let f = Follows::new(3, 2);
        let a1 = f.start(&client("a")).expect("a's first");
        let _a2 = f.start(&client("a")).expect("a's second");
        assert!(matches!(
            f.start(&client("a")),
            Err(ApiError::TooManyFollowers { max: 2, .. })
        ));
        let _b1 = f.start(&client("b")).expect("b's first");
        assert!(matches!(
            f.start(&client("b")),
            Err(ApiError::TooManyFollowers { max: 3, .. })
        ));
        assert_eq!(f.open(), 3);
        drop(a1);
        assert_eq!(f.open(), 2);
        let _b2 = f.start(&client("b")).expect("a place came free");
        assert!(f.per_client.lock().map(|m| m.len()).unwrap_or(0) == 2);
    }

    // Paused time: the follower's poll timer cannot fire before the
    // runtime is idle, so only the wake-up can end the wait early.
    #[tokio::test(start_paused = true)]
    async fn a_recorded_result_wakes_followers_at_once() {
        let f = Follows::new(4, 4);
        let mut follow = f.start(&client("a")).expect("a place");
        let waiting = tokio::spawn(async move {
            let began = tokio::time::Instant::now();
            follow.next_change().await;
            began.elapsed()
        });
        tokio::task::yield_now().await;
        f.finished();
        let waited = waiting.await.expect("the follower");
        assert_eq!(waited, Duration::ZERO, "woken by the change, not the poll");
    }
}

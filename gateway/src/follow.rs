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
//! need nothing from one another. The followers of one result share their
//! reads ([`Follow::read`]): a read less than [`SHARED_READ`] old, and
//! newer than the last wake-up, is reused, so a result costs about two
//! point reads of the result store a second however many follow it (on
//! DynamoDB half a read unit each: 1,000 followed results for an hour
//! cost 3.6 M units, $0.45 on demand).
//!
//! Followers are bounded: `--max-followers` on the gateway (a further one
//! is `503`), `--max-followers-per-client` per client (a further one is
//! `429`), each stream ends after [`STREAM_LIFETIME`] (an `EventSource`
//! reconnects with `Last-Event-ID` and loses nothing), and a long poll
//! waits at most [`MAX_WAIT`].

use crate::error::ApiError;
use crate::slots::{Full, Slot, Slots};
use airq_core::results::{ResultRecord, ResultStore};
use airq_core::{BackendError, ClientId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// How often a follower reads its result again when nothing here told it
/// of a change (as often as `Retry-After: 1` asks a poller to).
pub const POLL: Duration = Duration::from_secs(1);
/// How old a read of a followed result its other followers reuse.
pub const SHARED_READ: Duration = Duration::from_millis(500);
/// The longest `?wait=` a long poll may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(25);
/// How long one event stream lasts before the gateway ends it.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(600);
/// Comment lines on an idle stream, so proxies keep it open.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Every follower of this gateway.
pub struct Follows {
    slots: Arc<Slots>,
    open: Mutex<Open>,
}

/// What is followed, only while followed (so at most `--max-followers`
/// entries).
#[derive(Default)]
struct Open {
    /// Each followed result's wake-up (bumped when this gateway records
    /// it), its last read and its number of followers.
    by_result: HashMap<Uuid, Followed>,
}

struct Followed {
    woken: watch::Sender<u64>,
    last: Arc<tokio::sync::Mutex<Option<LastRead>>>,
    followers: usize,
}

/// A followed result as last read, and when.
struct LastRead {
    at: tokio::time::Instant,
    /// The wake-up count it was read after.
    generation: u64,
    record: Option<Arc<ResultRecord>>,
}

/// One follower's place; given back when dropped.
pub struct Follow {
    _slot: Slot,
    owner: Arc<Follows>,
    id: Uuid,
    changes: watch::Receiver<u64>,
    last: Arc<tokio::sync::Mutex<Option<LastRead>>>,
}

impl Follows {
    pub fn new(max_total: usize, per_client_max: usize) -> Arc<Self> {
        Arc::new(Follows {
            slots: Slots::new(max_total, per_client_max),
            open: Mutex::new(Open::default()),
        })
    }

    fn open_map(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the followers of result `id` here, if any, that it was
    /// recorded.
    pub fn finished(&self, id: Uuid) {
        if let Some(f) = self.open_map().by_result.get(&id) {
            f.woken.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// A place for one more follower of result `id` by `client`, if the
    /// gateway and the client's share have one.
    pub fn start(self: &Arc<Self>, client: &ClientId, id: Uuid) -> Result<Follow, ApiError> {
        let slot = self
            .slots
            .take(client)
            .map_err(|Full { max, whose }| ApiError::TooManyFollowers { max, whose })?;
        let (changes, last) = {
            let mut open = self.open_map();
            let f = open.by_result.entry(id).or_insert_with(|| Followed {
                woken: watch::Sender::new(0),
                last: Arc::default(),
                followers: 0,
            });
            f.followers += 1;
            let mut rx = f.woken.subscribe();
            rx.mark_unchanged();
            (rx, f.last.clone())
        };
        Ok(Follow {
            _slot: slot,
            owner: self.clone(),
            id,
            changes,
            last,
        })
    }

    /// Followers open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.slots.held()
    }
}

impl Follow {
    /// The result as it is now: a read by another follower of it reused
    /// when under [`SHARED_READ`] old and made after the last wake-up,
    /// else read from `store` (and shared).
    pub async fn read(
        &self,
        store: &dyn ResultStore,
    ) -> Result<Option<Arc<ResultRecord>>, BackendError> {
        let generation = *self.changes.borrow();
        let mut last = self.last.lock().await;
        if let Some(l) = last.as_ref() {
            if l.generation == generation && l.at.elapsed() < SHARED_READ {
                return Ok(l.record.clone());
            }
        }
        let record = store.get(self.id).await?.map(Arc::new);
        *last = Some(LastRead {
            at: tokio::time::Instant::now(),
            generation,
            record: record.clone(),
        });
        Ok(record)
    }

    /// Returns when the result may have changed: this gateway recorded it,
    /// or [`POLL`] passed.
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
        if let Some(f) = open.by_result.get_mut(&self.id) {
            f.followers = f.followers.saturating_sub(1);
            if f.followers == 0 {
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
        assert_eq!(f.slots.clients(), 2);
        let open = f.open_map();
        assert_eq!(open.by_result.get(&R1).map(|f| f.followers), Some(2));
        assert_eq!(open.by_result.get(&R2).map(|f| f.followers), Some(1));
    }

    #[test]
    fn nothing_is_kept_of_a_result_nobody_follows() {
        let f = Follows::new(3, 3);
        let a = f.start(&client("a"), R1).expect("a place");
        drop(a);
        assert_eq!(f.slots.clients(), 0);
        assert!(f.open_map().by_result.is_empty());
    }

    /// A result store that only answers `get`, with one queued record,
    /// and counts the reads.
    struct Counting(std::sync::atomic::AtomicUsize);

    fn pending(id: Uuid) -> ResultRecord {
        ResultRecord {
            id,
            state: airq_core::results::ResultState::Queued,
            query: "{}".into(),
            created_at: airq_core::Timestamp(0),
            updated_at: airq_core::Timestamp(0),
            expires_at: airq_core::Timestamp(86_400),
            rows: None,
            answer: None,
            stored: None,
            error: None,
            client: None,
            request_id: None,
        }
    }

    fn refused() -> BackendError {
        BackendError::Unsupported("only get".into())
    }

    #[async_trait::async_trait]
    impl ResultStore for Counting {
        async fn create(
            &self,
            _: Uuid,
            _: &airq_core::Query,
            _: Duration,
            _: &airq_core::results::Submission,
        ) -> Result<(), BackendError> {
            Err(refused())
        }
        async fn pending(
            &self,
            _: &ClientId,
            _: airq_core::Timestamp,
        ) -> Result<u64, BackendError> {
            Err(refused())
        }
        async fn get(&self, id: Uuid) -> Result<Option<ResultRecord>, BackendError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(Some(pending(id)))
        }
        async fn mark_running(&self, _: Uuid) -> Result<(), BackendError> {
            Err(refused())
        }
        async fn finish(
            &self,
            _: Uuid,
            _: &airq_core::results::Outcome,
        ) -> Result<bool, BackendError> {
            Err(refused())
        }
        fn inline_max(&self) -> usize {
            0
        }
        async fn create_answer(
            &self,
            _: Uuid,
        ) -> Result<Box<dyn airq_core::results::AnswerSink>, BackendError> {
            Err(refused())
        }
        async fn open_answer(
            &self,
            _: &airq_core::results::StoredAnswer,
            _: Option<std::ops::Range<u64>>,
        ) -> Result<airq_core::results::ByteStream, BackendError> {
            Err(refused())
        }
        async fn purge_expired(
            &self,
            _: airq_core::Timestamp,
            _: Duration,
        ) -> Result<u64, BackendError> {
            Err(refused())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn followers_of_one_result_share_their_reads() {
        let store = Counting(Default::default());
        let reads = || store.0.load(std::sync::atomic::Ordering::Relaxed);
        let f = Follows::new(10, 10);
        let followers: Vec<Follow> = (0..5)
            .map(|_| f.start(&client("a"), R1).expect("a place"))
            .collect();
        let other = f.start(&client("a"), R2).expect("a place");
        for follower in &followers {
            follower.read(&store).await.expect("read");
        }
        assert_eq!(reads(), 1, "five followers, one read");
        other.read(&store).await.expect("read");
        assert_eq!(reads(), 2, "another result is read for itself");
        // Recorded here: the next read is fresh, and shared again.
        f.finished(R1);
        for follower in &followers {
            follower.read(&store).await.expect("read");
        }
        assert_eq!(reads(), 3);
        // Old reads are not reused.
        tokio::time::advance(SHARED_READ).await;
        followers[0].read(&store).await.expect("read");
        assert_eq!(reads(), 4);
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

//! Recent direct answers, kept in memory for a short time.
//!
//! Readings change once a night (the master's ingestion), while many users
//! ask the same small queries (the web page's defaults, scripts polling the
//! latest hour, the latest readings). So a direct answer is kept for
//! `--answer-cache-ttl`, keyed by the validated request (an [`Ask`]: a
//! query or a latest-readings request, never equal to each other), and the
//! same request within that time is served from memory without touching
//! the store or taking a direct slot.
//!
//! Concurrent misses on one query are *coalesced*: the first computes the
//! answer, the others wait for it (moka's `try_get_with`). Without that, a burst
//! of identical queries (a page shared on a forum, a load test) would run
//! the same scan once per request and queue most of them.
//!
//! Only answers up to `--answer-cache-max-entry-kib` are kept; a larger
//! one is streamed from the store as before (it is not worth holding, and
//! buffering it would delay its first byte), or queued when its query is
//! longer than `--direct-max-span` (see `Direct::answer`). The cost of the trade-off is
//! freshness: after an ingestion, a cached answer may be up to the TTL old.
//! `--answer-cache-ttl 0` turns the cache off.
//!
//! An entry keeps the answer's bytes and their gzip form as well, so that
//! gzip clients (every browser) are not each compressed for again: a hit
//! costs no compression. The gzip form is made with the entry when the
//! request that computed it accepted gzip, else at the first hit that
//! does ([`AnswerCache::with_gzip`]), once, keeping the entry's expiry.
//! Both count towards `--answer-cache-mib`.
//!
//! The cache only keeps and coalesces; what computing an answer takes (a
//! direct slot, a store scan) is [`super::Direct`]'s business.

use super::Ask;
use airq_core::export::RenderError;
use airq_core::BackendError;
use bytes::Bytes;
use moka::ops::compute::{CompResult, Op};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a query's answer is not (or not yet) in the cache.
#[derive(Debug, Clone)]
pub enum Miss {
    /// No direct slot came free in time: the query is to be queued.
    Busy,
    /// The answer is larger than the biggest entry kept: it is to be
    /// streamed instead (or queued, see `Direct::answer`).
    TooLarge,
    /// The answer has more rows than `--max-result-rows`: it is to be
    /// queued, where it fails saying how many.
    OverLimit,
    /// The store failed. Shared, because every asker coalesced on one
    /// computation gets its outcome; the error keeps its kind.
    Store(Arc<BackendError>),
}

impl From<RenderError> for Miss {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::TooLarge(_) => Miss::TooLarge,
            RenderError::Store(e) => Miss::Store(Arc::new(e)),
        }
    }
}

/// A cached answer: its bytes, and their gzip form once made (with the
/// entry if the request that computed it accepted gzip, else at the first
/// gzip hit) and smaller.
#[derive(Debug, Clone)]
pub struct Answer {
    pub plain: Bytes,
    pub gzip: Option<Bytes>,
    /// Whether the gzip form was made (`gzip` is `None` when it was not
    /// smaller).
    pub gzip_made: bool,
    /// When the answer was computed: it expires the TTL after, whatever
    /// is done to its entry since ([`MadeAt`]).
    pub made: Instant,
}

impl Answer {
    /// An answer computed now, with its gzip form (`Some`, `None` inside
    /// when it was not smaller) or without one yet (`None`).
    pub fn new(plain: Bytes, gzip: Option<Option<Bytes>>) -> Answer {
        Answer {
            plain,
            gzip_made: gzip.is_some(),
            gzip: gzip.flatten(),
            made: Instant::now(),
        }
    }

    /// Bytes held.
    fn weight(&self) -> usize {
        self.plain.len() + self.gzip.as_ref().map_or(0, Bytes::len)
    }
}

pub struct AnswerCache {
    entries: moka::future::Cache<Ask, Answer>,
    /// Requests found too large to keep, so that asking them again streams
    /// at once instead of building the first megabyte again to find out.
    too_large: moka::future::Cache<Ask, ()>,
    max_entry: usize,
}

/// Every entry expires the TTL after its answer was computed
/// ([`Answer::made`]): making its gzip form later
/// ([`AnswerCache::with_gzip`]) never makes it live longer, even when the
/// entry expired or was computed again while the gzip form was being made
/// (moka then takes the write as a new entry, or as an update of the new
/// one).
struct MadeAt(Duration);

impl MadeAt {
    fn left(&self, answer: &Answer) -> Option<Duration> {
        Some(self.0.saturating_sub(answer.made.elapsed()))
    }
}

impl moka::Expiry<Ask, Answer> for MadeAt {
    fn expire_after_create(&self, _: &Ask, answer: &Answer, _: Instant) -> Option<Duration> {
        self.left(answer)
    }

    fn expire_after_update(
        &self,
        _: &Ask,
        answer: &Answer,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.left(answer)
    }
}

/// Requests remembered as too large to cache.
const TOO_LARGE_KEPT: u64 = 10_000;

impl AnswerCache {
    /// `None` when `ttl` is zero (the cache is off).
    pub fn new(ttl: Duration, max_bytes: u64, max_entry: usize) -> Option<Self> {
        if ttl.is_zero() || max_bytes == 0 || max_entry == 0 {
            return None;
        }
        let entries = moka::future::Cache::builder()
            .expire_after(MadeAt(ttl))
            .max_capacity(max_bytes)
            // Weight = bytes held (saturating: entries are at most
            // `max_entry`, far below u32::MAX, but a weigher must not panic).
            .weigher(|_ask: &Ask, answer: &Answer| {
                u32::try_from(answer.weight()).unwrap_or(u32::MAX)
            })
            .build();
        let too_large = moka::future::Cache::builder()
            .time_to_live(ttl)
            .max_capacity(TOO_LARGE_KEPT)
            .build();
        Some(AnswerCache {
            entries,
            too_large,
            max_entry,
        })
    }

    /// Bytes held (moka's weighted size: its pending work is run first, so
    /// the figure is current).
    pub async fn bytes(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.weighted_size()
    }

    /// The largest answer kept, in bytes: a computation is to give up with
    /// [`Miss::TooLarge`] past it.
    pub fn max_entry(&self) -> usize {
        self.max_entry
    }

    /// Whether `ask`'s answer was recently found too large to keep.
    pub fn is_too_large(&self, ask: &Ask) -> bool {
        self.too_large.contains_key(ask)
    }

    /// The cached answer, if there is one.
    pub async fn get(&self, ask: &Ask) -> Option<Answer> {
        self.entries.get(ask).await
    }

    /// The entry of `ask` with its gzip form: made by `make` from its plain
    /// bytes if the entry has none yet (it was computed for a client
    /// without gzip), once whatever the concurrent hits (they wait for
    /// it), keeping the entry's expiry. `None` if the entry is gone.
    pub async fn with_gzip<F, Fut>(&self, ask: &Ask, make: F) -> Option<Answer>
    where
        F: FnOnce(Bytes) -> Fut,
        Fut: Future<Output = Option<Bytes>>,
    {
        let done = self
            .entries
            .entry_by_ref(ask)
            .and_compute_with(|entry| async move {
                match entry.map(moka::Entry::into_value) {
                    Some(answer) if !answer.gzip_made => {
                        let gzip = make(answer.plain.clone()).await;
                        Op::Put(Answer {
                            gzip,
                            gzip_made: true,
                            ..answer
                        })
                    }
                    _ => Op::Nop,
                }
            })
            .await;
        match done {
            CompResult::ReplacedWith(entry) | CompResult::Unchanged(entry) => {
                Some(entry.into_value())
            }
            _ => None,
        }
    }

    /// The answer to `ask`, from `compute` run at most once for all
    /// concurrent askers; every one of them gets the answer or the same
    /// [`Miss`]. No miss is cached, but a [`Miss::TooLarge`] is remembered
    /// (see [`AnswerCache::is_too_large`]).
    pub async fn get_or_compute(
        &self,
        ask: &Ask,
        compute: impl Future<Output = Result<Answer, Miss>>,
    ) -> Result<Answer, Miss> {
        match self.entries.try_get_with_by_ref(ask, compute).await {
            Ok(answer) => Ok(answer),
            Err(miss) => {
                let miss = Miss::clone(&miss);
                if matches!(miss, Miss::TooLarge) {
                    self.too_large.insert(ask.clone(), ()).await;
                }
                Err(miss)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airq_core::LatestQuery;
    use moka::Expiry as _;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn plain(bytes: &'static [u8]) -> Answer {
        Answer::new(Bytes::from_static(bytes), None)
    }

    #[tokio::test]
    async fn a_gzip_form_is_made_once() {
        let cache = AnswerCache::new(Duration::from_secs(60), 1 << 20, 1 << 16).expect("on");
        let ask = Ask::Latest(LatestQuery::default());
        let made = AtomicUsize::new(0);
        let make = |p: Bytes| {
            made.fetch_add(1, Ordering::Relaxed);
            async move { Some(Bytes::from(format!("gz:{}", p.len()))) }
        };
        assert!(cache.with_gzip(&ask, make).await.is_none(), "no entry");
        let got = cache
            .get_or_compute(&ask, async { Ok(plain(b"abc")) })
            .await
            .expect("computed");
        assert!(!got.gzip_made);
        // Concurrent hits: one makes it, the other finds it made.
        let (a, b) = tokio::join!(cache.with_gzip(&ask, make), cache.with_gzip(&ask, make));
        for answer in [a, b] {
            let answer = answer.expect("the entry");
            assert_eq!(answer.gzip.as_deref(), Some(&b"gz:3"[..]));
            assert!(answer.gzip_made);
        }
        assert_eq!(made.load(Ordering::Relaxed), 1);
        assert_eq!(
            cache.get(&ask).await.expect("kept").gzip.as_deref(),
            Some(&b"gz:3"[..])
        );
    }

    #[test]
    fn an_entry_lives_the_ttl_from_when_its_answer_was_made() {
        let expiry = MadeAt(Duration::from_secs(60));
        let ask = Ask::Latest(LatestQuery::default());
        let mut answer = plain(b"abc");
        let now = Instant::now();
        // Made 50 s ago: at most 10 s left, on creation (an entry that
        // expired while its gzip form was made) as on update.
        answer.made = now - Duration::from_secs(50);
        for left in [
            expiry.expire_after_create(&ask, &answer, now),
            expiry.expire_after_update(&ask, &answer, now, Some(Duration::from_secs(60))),
        ] {
            let left = left.expect("an expiry");
            assert!(left <= Duration::from_secs(10), "{left:?}");
        }
        // Made before the TTL: gone at once.
        answer.made = now - Duration::from_secs(61);
        assert_eq!(
            expiry.expire_after_create(&ask, &answer, now),
            Some(Duration::ZERO)
        );
    }
}

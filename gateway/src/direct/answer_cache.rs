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
//! An entry keeps the answer's bytes and, when the request that computed
//! it accepted gzip, their gzip form as well, so that gzip clients (every
//! browser) are not each compressed for again: a hit costs no
//! compression. Both count towards `--answer-cache-mib`.
//!
//! The cache only keeps and coalesces; what computing an answer takes (a
//! direct slot, a store scan) is [`super::Direct`]'s business.

use super::Ask;
use airq_core::export::RenderError;
use airq_core::BackendError;
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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

/// A cached answer: its bytes, and their gzip form if the request that
/// computed it accepted gzip (and gzip made it smaller).
#[derive(Debug, Clone)]
pub struct Answer {
    pub plain: Bytes,
    pub gzip: Option<Bytes>,
}

impl Answer {
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

/// Requests remembered as too large to cache.
const TOO_LARGE_KEPT: u64 = 10_000;

impl AnswerCache {
    /// `None` when `ttl` is zero (the cache is off).
    pub fn new(ttl: Duration, max_bytes: u64, max_entry: usize) -> Option<Self> {
        if ttl.is_zero() || max_bytes == 0 || max_entry == 0 {
            return None;
        }
        let entries = moka::future::Cache::builder()
            .time_to_live(ttl)
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

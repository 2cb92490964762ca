//! What every handler shares: the backend, the limits, and the direct-answer
//! permits.

use crate::answer_cache::AnswerCache;
use crate::cache::Cached;
use crate::config::Config;
use airq_core::queue::QueueDepth;
use airq_core::Backend;
use airq_core::QueryLimits;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a reading of the request queue's depth is reused.
const BACKLOG_CACHE: Duration = Duration::from_millis(250);
/// How long the `/api/meta` summary is reused.
const META_CACHE: Duration = Duration::from_secs(5);
/// How long a query may wait for a direct slot before it is queued.
const DIRECT_WAIT: Duration = Duration::from_millis(50);

pub struct App {
    pub backend: Backend,
    pub limits: QueryLimits,
    /// Longest span answered directly.
    pub direct_max_span: Duration,
    /// One permit per direct answer in flight, held until its body ends.
    pub direct: Arc<Semaphore>,
    /// How long a query may wait for a direct permit before it is queued.
    pub direct_wait: Duration,
    pub max_backlog: u64,
    pub result_ttl: Duration,
    pub body_limit: u64,
    /// The request queue's depth, for backpressure.
    pub backlog: Cached<QueueDepth>,
    /// The `/api/meta` document, serialized.
    pub meta: Cached<Bytes>,
    /// Recent direct answers; `None` when turned off.
    pub answers: Option<AnswerCache>,
}

pub type AppState = Arc<App>;

impl App {
    pub fn new(config: &Config, backend: Backend) -> Self {
        App {
            backend,
            limits: config.query_limits(),
            direct_max_span: config.direct_max_span,
            direct: Arc::new(Semaphore::new(config.direct_limit())),
            // With no direct slots at all (--direct-limit 0) nothing waits.
            direct_wait: if config.direct_limit() == 0 {
                Duration::ZERO
            } else {
                DIRECT_WAIT
            },
            max_backlog: config.max_backlog,
            result_ttl: config.result_ttl,
            body_limit: config.body_limit,
            backlog: Cached::new(BACKLOG_CACHE),
            meta: Cached::new(META_CACHE),
            answers: AnswerCache::new(
                config.answer_cache_ttl,
                config.answer_cache_mib.saturating_mul(1024 * 1024),
                config.answer_cache_max_entry_kib.saturating_mul(1024),
            ),
        }
    }
}

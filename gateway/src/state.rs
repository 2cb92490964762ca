//! What every handler shares: the backend, the limits, the direct path and
//! the short-lived caches.

use crate::admission::Admission;
use crate::alerts::Alerts;
use crate::cached::Cached;
use crate::config::Config;
use crate::direct::Direct;
use crate::enqueue::SubmitLocks;
use crate::follow::Follows;
use crate::live_feed::LiveFeed;
use crate::observe::{QueueSample, QUEUE_SAMPLE_EVERY};
use airq_core::queue::QueueDepth;
use airq_core::Backend;
use airq_core::QueryLimits;
use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Duration;

/// How long a reading of the request queue's depth is reused.
const BACKLOG_CACHE: Duration = Duration::from_millis(250);
/// How long the `/api/meta` summary is reused.
const META_CACHE: Duration = Duration::from_secs(5);

pub struct App {
    pub backend: Backend,
    /// Who a request is from and what its budget allows.
    pub admission: Admission,
    pub limits: QueryLimits,
    /// The direct path: its slots, its answer cache, its store.
    pub direct: Direct,
    pub max_backlog: u64,
    pub result_ttl: Duration,
    /// The most rows a queued query's answer may have.
    pub max_result_rows: u64,
    pub body_limit: u64,
    /// The request queue's depth, for backpressure.
    pub backlog: Cached<QueueDepth>,
    /// The `/api/meta` document, serialized.
    pub meta: Cached<Bytes>,
    /// The metrics recorder's renderer; `None` with `--metrics off`.
    pub metrics: Option<PrometheusHandle>,
    /// Where `/metrics` is served instead of the API's address, if anywhere.
    pub metrics_listen: Option<String>,
    /// The queues' depths as `/metrics` reports them.
    pub queue_sample: QueueSample,
    /// The last readiness answer (its failed checks).
    pub ready: Cached<crate::handlers::health::Failed>,
    /// Serialises each client's count of queued queries with its submit.
    pub submit_locks: SubmitLocks,
    /// The event streams and waiting polls following results.
    pub follows: Arc<Follows>,
    /// Every sensor's latest reading and its changes, for the live streams.
    pub live: Arc<LiveFeed>,
    /// Alerts and their deliveries; `None` on a backend without them.
    pub alerts: Option<Arc<Alerts>>,
    /// `--request-timeout`: a waiting poll answers before it.
    pub request_timeout: Duration,
}

pub type AppState = Arc<App>;

impl App {
    pub fn new(
        config: &Config,
        backend: Backend,
        metrics: Option<PrometheusHandle>,
        follows: Arc<Follows>,
        live: Arc<LiveFeed>,
        alerts: Option<Arc<Alerts>>,
    ) -> Self {
        App {
            direct: Direct::new(backend.readings.clone(), config),
            admission: Admission::new(config, backend.keys.clone()),
            backend,
            limits: config.query_limits(),
            max_backlog: config.max_backlog,
            result_ttl: config.result_ttl,
            max_result_rows: config.max_result_rows,
            body_limit: config.body_limit,
            backlog: Cached::new(BACKLOG_CACHE),
            meta: Cached::new(META_CACHE),
            metrics,
            metrics_listen: config.metrics_listen(),
            queue_sample: Cached::new(QUEUE_SAMPLE_EVERY),
            submit_locks: SubmitLocks::default(),
            ready: Cached::new(crate::handlers::health::READY_CACHE),
            follows,
            live,
            alerts,
            request_timeout: config.request_timeout,
        }
    }
}

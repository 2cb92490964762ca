//! What the gateway reports about itself: Prometheus metrics (through the
//! `metrics` facade, rendered by `airq_cli::metrics`), the HTTP middleware
//! that counts and times every request, and `GET /metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `airq_http_requests_total` | counter | `route`, `status` |
//! | `airq_http_request_duration_seconds` | histogram (time to the response head) | `route` |
//! | `airq_http_response_bytes_total` | counter (body bytes sent) | |
//! | `airq_queries_total` | counter | `answer` = `direct`, `queued` |
//! | `airq_answer_cache_total` | counter | `outcome` = `hit`, `miss`, `coalesced` |
//! | `airq_gzip_pieces_total` | counter (whole segment sections of gzip answers: copied from a kept piece, or compressed and kept) | `outcome` = `hit`, `built` |
//! | `airq_direct_slots`, `airq_direct_slots_in_use` | gauges | |
//! | `airq_answer_cache_bytes` | gauge | |
//! | `airq_request_queue_messages` | gauge (RequestSend, read at most every 5 s) | `state` = `visible`, `in_flight` |
//! | `airq_request_queue_dlq_messages` | gauge (RequestSend's dead letters) | |
//! | `airq_results_created_total` | counter | |
//! | `airq_results_finished_total` | counter (recorded by this gateway's collector) | `outcome` = `done`, `failed` |
//! | `airq_live_streams` | gauge (`GET /api/stream/latest` streams open) | |
//! | `airq_live_feed_version` | gauge (the store's data version the live feed has read) | |
//! | `airq_live_feed_errors_total` | counter (failed reads of the store's changes) | |
//! | `airq_alert_events_total` | counter (`alert.entered`/`alert.left` events this gateway's evaluations made) | |
//! | `airq_webhook_attempts_total` | counter | `outcome` = `delivered`, `retry`, `dead` |
//! | `airq_rejections_total` | counter | `reason` = `rate_limit`, `queued_cap`, `followers`, `streams`, `alerts`, `auth`, `key_in_url`, `backlog` |
//!
//! Routes are a fixed set of names ([`route_label`]), never a path, so a
//! client cannot mint label values. The gauges are set when `/metrics` is
//! scraped: nothing is sampled while nobody looks.

use crate::cached::Cached;
use crate::error::ApiError;
use crate::state::AppState;
use airq_core::queue::QueueDepth;
use airq_core::BackendError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

/// How long a reading of the queues' depths is reused for `/metrics`.
pub const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The queue depths `/metrics` reports, read at most every
/// [`QUEUE_SAMPLE_EVERY`].
pub type QueueSample = Cached<(QueueDepth, QueueDepth)>;

/// A request's route, as a metric label: one of a fixed set.
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/api/query" => "query",
        "/api/latest" => "latest",
        "/api/stream/latest" => "stream_latest",
        "/api/alerts" => "alerts",
        "/api/meta" => "meta",
        "/api/openapi.json" => "openapi",
        "/api" => "api_page",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        "/" | "/index.html" | "/favicon.svg" => "page",
        p if p.starts_with("/api/results/") && p.ends_with("/events") => "result_events",
        p if p.starts_with("/api/results/") => "results",
        p if p.starts_with("/api/alerts/") => "alerts",
        p if p.starts_with("/assets/") => "page",
        _ => "other",
    }
}

/// Registers, at 0, the series a dashboard reads before anything happened:
/// a request counter for every route and status the API description
/// documents (and the 404 and 405 of unknown paths), and a rejection
/// counter for every reason. Without them an error panel shows "no data"
/// until the first error, and `rate()` misses the first burst.
pub fn register() {
    let mut answers: Vec<(&'static str, u16)> = crate::openapi::answers()
        .iter()
        .map(|(path, status)| (route_label(path), *status))
        .collect();
    answers.extend([("other", 404), ("other", 405)]);
    for (route, status) in answers {
        if let Ok(status) = StatusCode::from_u16(status) {
            instruments(route, status).0.absolute(0);
        }
    }
    for reason in crate::error::REJECTION_REASONS {
        metrics::counter!("airq_rejections_total", "reason" => reason).absolute(0);
    }
}

/// The middleware: counts every request by route and status, and times it
/// to its response head.
pub async fn track(request: Request, next: Next) -> Response {
    let route = route_label(request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    let (counter, timer) = instruments(route, response.status());
    timer.record(started.elapsed().as_secs_f64());
    counter.increment(1);
    response
}

/// The request counter and timer of a route and status, made once and
/// reused: the facade's macros build, hash and look up a labelled key on
/// every call, which measured a fifth of the time of a request as cheap
/// as `/healthz` (BENCHMARKS.md). Bounded: a fixed set of routes times
/// the statuses the gateway answers.
fn instruments(route: &'static str, status: StatusCode) -> (Counter, Histogram) {
    type Made = HashMap<(&'static str, u16), (Counter, Histogram)>;
    static MADE: OnceLock<RwLock<Made>> = OnceLock::new();
    let made = MADE.get_or_init(RwLock::default);
    let key = (route, status.as_u16());
    if let Some(found) = made.read().ok().and_then(|m| m.get(&key).cloned()) {
        return found;
    }
    let pair = (
        metrics::counter!("airq_http_requests_total", "route" => route,
            "status" => status.as_str().to_owned()),
        metrics::histogram!("airq_http_request_duration_seconds", "route" => route),
    );
    if let Ok(mut m) = made.write() {
        m.insert(key, pair.clone());
    }
    pair
}

/// `GET /metrics`: the Prometheus text format; `404` with `--metrics off`.
pub async fn scrape(State(app): State<AppState>) -> Result<Response, ApiError> {
    if app.metrics_listen.is_some() {
        return Err(ApiError::NotFound(
            "metrics are served on this gateway's metrics address (--metrics-listen)",
        ));
    }
    scrape_here(State(app)).await
}

/// `GET /metrics` on the metrics address (`--metrics-listen`).
pub async fn scrape_here(State(app): State<AppState>) -> Result<Response, ApiError> {
    let Some(handle) = &app.metrics else {
        return Err(ApiError::NotFound(
            "metrics are off on this gateway (--metrics off)",
        ));
    };
    app.direct.report().await;
    metrics::gauge!("airq_live_streams").set(app.live.slots.held() as f64);
    let backend = &app.backend;
    let sampled = app
        .queue_sample
        .get(|| async {
            let send = backend.request_send.depth().await?;
            let dlq = backend.request_send_dlq.depth().await?;
            Ok::<_, BackendError>((send, dlq))
        })
        .await;
    match sampled {
        Ok((send, dlq)) => {
            metrics::gauge!("airq_request_queue_messages", "state" => "visible")
                .set(send.visible as f64);
            metrics::gauge!("airq_request_queue_messages", "state" => "in_flight")
                .set(send.in_flight as f64);
            metrics::gauge!("airq_request_queue_dlq_messages").set(dlq.visible as f64);
        }
        // The last values stay; the log says why they are not fresh.
        Err(e) => tracing::warn!(error = %e, "metrics: could not read the request queue's depth"),
    }
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(airq_cli::metrics::CONTENT_TYPE),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_a_fixed_set() {
        for (path, label) in [
            ("/api/query", "query"),
            ("/api/results/3f2c", "results"),
            ("/api/results/", "results"),
            ("/api/meta", "meta"),
            ("/api/latest", "latest"),
            ("/api/latest/x", "other"),
            ("/api/stream/latest", "stream_latest"),
            ("/api/alerts", "alerts"),
            ("/api/alerts/3f2c", "alerts"),
            ("/", "page"),
            ("/assets/app.js", "page"),
            ("/metrics", "metrics"),
            ("/wp-admin/x?y", "other"),
            ("/api/querying", "other"),
        ] {
            assert_eq!(route_label(path), label, "{path}");
        }
    }
}

//! `GET /healthz` (the process runs) and `GET /readyz` (its backends
//! answer and the result store takes writes), for supervisors and load
//! balancers. The public answer names the failed check only; the backend's
//! own error (paths, hosts, service messages) goes to the log.

use crate::state::AppState;
use airq_core::BackendError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::future::Future;
use std::time::Duration;

/// How long a readiness check waits for each backend.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `200 ok` while the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "Liveness: the process runs",
    responses(
        (status = 200, description = "`ok`", content_type = "text/plain", body = String,
            example = json!("ok")),
    )
)]
pub async fn healthz() -> &'static str {
    "ok"
}

#[derive(Serialize)]
struct Check {
    check: &'static str,
    error: &'static str,
}

/// Runs one readiness check, bounded in time; `failure` is what the
/// public answer says when it fails.
async fn check(
    what: &'static str,
    failure: &'static str,
    probe: impl Future<Output = Result<(), BackendError>>,
) -> Option<Check> {
    let error = match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(())) => return None,
        Ok(Err(e)) => {
            tracing::warn!(check = what, error = %e, "readiness check failed");
            failure
        }
        Err(_) => {
            tracing::warn!(check = what, timeout = ?READY_TIMEOUT, "readiness check timed out");
            "no answer in time"
        }
    };
    Some(Check { check: what, error })
}

/// `200` when the reading store and the request queue answer and the
/// result store takes writes (a full disk fails it), else `503` naming
/// which did not.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "Readiness: the backends answer",
    description = "Ready when the reading store and the request queue answer within 2 s and \
        the result store takes writes (a full disk fails it). The answer names the failed \
        checks only; the backend's own error goes to the gateway's log.",
    responses(
        (status = 200, description = "Ready", body = crate::openapi::schema::Ready),
        (status = 503, description = "Not ready: the failed checks",
            body = crate::openapi::schema::NotReady),
    )
)]
pub async fn readyz(State(app): State<AppState>) -> Response {
    let backend = &app.backend;
    let (store, queue, results) = tokio::join!(
        check("readings", "does not answer", backend.readings.ping()),
        check("requestQueue", "does not answer", async {
            backend.request_send.depth().await.map(drop)
        }),
        check(
            "resultsWritable",
            "cannot be written",
            backend.results.check_writable()
        ),
    );
    let failed: Vec<Check> = store.into_iter().chain(queue).chain(results).collect();
    if failed.is_empty() {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        tracing::warn!(failed = failed.len(), "not ready");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "not ready", "failed": failed })),
        )
            .into_response()
    }
}

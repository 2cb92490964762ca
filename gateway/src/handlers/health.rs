//! `GET /healthz` (the process runs) and `GET /readyz` (its backends
//! answer), for supervisors and load balancers.

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
pub async fn healthz() -> &'static str {
    "ok"
}

#[derive(Serialize)]
struct Check {
    check: &'static str,
    error: String,
}

/// Runs one readiness check, bounded in time.
async fn check(
    what: &'static str,
    probe: impl Future<Output = Result<(), BackendError>>,
) -> Option<Check> {
    let error = match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(())) => return None,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {READY_TIMEOUT:?}"),
    };
    Some(Check { check: what, error })
}

/// `200` when the reading store and the request queue answer, else `503`
/// naming which did not.
pub async fn readyz(State(app): State<AppState>) -> Response {
    let backend = &app.backend;
    let (store, queue) = tokio::join!(
        check("readings", backend.readings.ping()),
        check("requestQueue", async {
            backend.request_send.depth().await.map(drop)
        }),
    );
    let failed: Vec<Check> = store.into_iter().chain(queue).collect();
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

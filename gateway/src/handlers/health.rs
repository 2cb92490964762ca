//! `GET /healthz` (the process runs) and `GET /readyz` (its backends
//! answer and the result store takes writes), for supervisors and load
//! balancers. The public answer names the failed check only; the backend's
//! own error (paths, hosts, service messages) goes to the log.

use crate::state::AppState;
use airq_core::keys::KeyHash;
use airq_core::BackendError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

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
pub struct Check {
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

/// `200` when the reading store reads, the key and result stores answer a
/// lookup, the request queue answers and the result store takes writes (a
/// full disk fails it), else `503` naming which did not.
///
/// Each check reads through the same port the API uses (a corrupt SQLite
/// file that still answers `SELECT 1` fails here as queries do), and each
/// is cheap: a few pages or one item. The answer is reused for
/// [`READY_CACHE`], so a flood of probes costs at most one round of checks
/// a second.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "Readiness: the backends answer",
    description = "Ready when, within 2 s, the reading store reads its first and last \
        readings and a latest reading, the key and result stores answer a lookup, the request \
        queue answers and the result store takes writes (a full disk fails it). The answer \
        names the failed checks only; the backend's own error goes to the gateway's log. \
        Checked at most once a second; probes in between get the last answer.",
    responses(
        (status = 200, description = "Ready", body = crate::openapi::schema::Ready),
        (status = 503, description = "Not ready: the failed checks",
            body = crate::openapi::schema::NotReady),
    )
)]
pub async fn readyz(State(app): State<AppState>) -> Response {
    // The checks never fail as a whole (`Err` is unused): a failed round
    // is an answer too, and is reused like a good one.
    let failed = app
        .ready
        .get(|| async { Ok::<_, std::convert::Infallible>(Arc::new(checks(&app).await)) })
        .await;
    let failed = match failed {
        Ok(failed) => failed,
        Err(never) => match never {},
    };
    if failed.is_empty() {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "not ready", "failed": &*failed })),
        )
            .into_response()
    }
}

/// How long a readiness answer is reused.
pub const READY_CACHE: Duration = Duration::from_secs(1);

/// The failed checks of one round.
pub type Failed = Arc<Vec<Check>>;

/// One round of readiness checks, all at once; the failed ones.
async fn checks(app: &AppState) -> Vec<Check> {
    let backend = &app.backend;
    // Ids nobody holds: a lookup that must reach the store and find nothing
    // (no key hashes to 64 zeros; result ids are random).
    let nobody = KeyHash::from_stored("0".repeat(64));
    let (store, keys, results, queue, writable) = tokio::join!(
        check("readings", "does not answer", backend.readings.ping()),
        check("keys", "does not answer", async {
            backend.keys.find(&nobody?).await.map(drop)
        }),
        check("results", "does not answer", async {
            backend.results.get(Uuid::new_v4()).await.map(drop)
        }),
        check("requestQueue", "does not answer", async {
            backend.request_send.depth().await.map(drop)
        }),
        check(
            "resultsWritable",
            "cannot be written",
            backend.results.check_writable()
        ),
    );
    let failed: Vec<Check> = [store, keys, results, queue, writable]
        .into_iter()
        .flatten()
        .collect();
    if !failed.is_empty() {
        tracing::warn!(failed = failed.len(), "not ready");
    }
    failed
}

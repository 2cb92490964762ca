//! The HTTP surface: routes, the small handlers, and the layers around them.
//!
//! | method | path                 | answers                                                    |
//! |--------|----------------------|------------------------------------------------------------|
//! | POST   | `/api/query`         | 200 CSV (direct), 202 JSON (queued), 400, 413, 415, 503    |
//! | GET    | `/api/results/{id}`  | 200 CSV, 202, 404, 410, 422 (see [`crate::results`])       |
//! | GET    | `/api/meta`          | 200 JSON summary of the store, 503                         |
//! | GET    | `/healthz`           | 200 `ok` while the process runs                            |
//! | GET    | `/readyz`            | 200 when the store and queue answer, else 503 naming which |
//! | GET    | `/`, `/assets/{name}`| the web page and its files (see [`crate::web`])            |
//!
//! Unknown paths are 404 and wrong methods 405, both JSON.

use crate::error::ApiError;
use crate::state::AppState;
use crate::{query, results, web};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;
use std::any::Any;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

/// How long a readiness check waits for each backend.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router(app: AppState, request_timeout: Duration) -> Router {
    Router::new()
        .route("/api/query", post(query::submit))
        .route("/api/results/{id}", get(results::get))
        .route("/api/meta", get(meta))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(web::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
        .layer(middleware::from_fn_with_state(request_timeout, time_limit))
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::WARN)))
        .layer(CatchPanicLayer::custom(panicked))
}

/// Limits the time to the response head (not the streaming of a body).
/// tower-http's `TimeoutLayer` would answer with an empty body.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

fn panicked(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "a request handler panicked");
    ApiError::Internal.into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn healthz() -> &'static str {
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
    probe: impl std::future::Future<Output = Result<(), airq_core::BackendError>>,
) -> Option<Check> {
    let error = match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(())) => return None,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {READY_TIMEOUT:?}"),
    };
    Some(Check { check: what, error })
}

async fn readyz(State(app): State<AppState>) -> Response {
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

/// `GET /api/meta`: `{"readings", "first", "last", "countries"}`, times as
/// `YYYY-MM-DD HH:MM:SS` UTC (null on an empty store). Cached a few seconds.
async fn meta(State(app): State<AppState>) -> Result<Response, ApiError> {
    #[derive(Serialize)]
    struct Meta {
        readings: u64,
        first: Option<String>,
        last: Option<String>,
        countries: Vec<String>,
    }
    let readings = &app.backend.readings;
    let body = app
        .meta
        .get(|| async {
            let s = readings.summary().await?;
            let meta = Meta {
                readings: s.readings,
                first: s.first.map(|t| t.to_string()),
                last: s.last.map(|t| t.to_string()),
                countries: s.countries,
            };
            Ok(Bytes::from(serde_json::to_vec(&meta).unwrap_or_default()))
        })
        .await
        .map_err(ApiError::unavailable("reading store unavailable"))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

//! The HTTP surface: the routes to the handlers (in [`crate::handlers`]),
//! the answers to unknown paths and methods, and the layers around them.
//!
//! | method | path                  | answers                                                        |
//! |--------|-----------------------|----------------------------------------------------------------|
//! | POST   | `/api/query`          | 200 CSV (direct), 202 JSON (queued), 400, 413, 415, 503        |
//! | GET    | `/api/results/{id}`   | 200 CSV, 202, 404, 410, 422 (see [`crate::handlers::results`]) |
//! | GET    | `/api/meta`           | 200 JSON summary of the store, 503                             |
//! | GET    | `/healthz`            | 200 `ok` while the process runs                                |
//! | GET    | `/readyz`             | 200 when the store and queue answer, else 503 naming which     |
//! | GET    | `/`, `/assets/{name}` | the web page and its files (see [`crate::web`])                |
//!
//! Unknown paths are 404 and wrong methods 405, both JSON.

use crate::error::ApiError;
use crate::handlers::{health, meta, results, submit};
use crate::state::AppState;
use crate::web;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::any::Any;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

pub fn router(app: AppState, request_timeout: Duration) -> Router {
    Router::new()
        .route("/api/query", post(submit::submit))
        .route("/api/results/{id}", get(results::get))
        .route("/api/meta", get(meta::get))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
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

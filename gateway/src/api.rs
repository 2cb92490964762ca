//! The HTTP surface: the routes to the handlers (in [`crate::handlers`]),
//! the answers to unknown paths and methods, and the layers around them.
//!
//! | method | path                  | answers                                                        |
//! |--------|-----------------------|----------------------------------------------------------------|
//! | POST   | `/api/query`          | 200 the answer (direct), 202 JSON (queued), 400, 401, 413, 415, 429, 503 |
//! | GET    | `/api/results/{id}`   | 200/206 the answer, 202, 304, 401, 404, 410, 416, 422, 429 (see [`crate::handlers::results`]) |
//! | GET    | `/api/results/{id}/status` | 200 its state and query (JSON), 401, 404, 410, 429 |
//! | GET    | `/api/results/{id}/events` | 200 its state changes as Server-Sent Events, 204, 401, 404, 410, 429, 503 (see [`crate::handlers::result_events`]) |
//! | GET    | `/api/latest`         | 200 each sensor's latest reading (direct), 400, 401, 429, 503 |
//! | GET    | `/api/stream/latest`  | 200 a place's latest readings and their changes as Server-Sent Events, 400, 401, 429, 501, 503 (see [`crate::handlers::stream`]) |
//! | POST   | `/api/alerts`         | 201 a new alert with its secret, 400, 401, 413, 415, 429, 501, 503 (see [`crate::handlers::alerts`]) |
//! | GET, DELETE | `/api/alerts/{id}` | 200 the alert and its last deliveries / 204, 401, 404, 429, 501, 503 |
//! | GET    | `/api/meta`           | 200 JSON summary of the store, 503                             |
//! | GET    | `/healthz`            | 200 `ok` while the process runs                                |
//! | GET    | `/readyz`             | 200 when the store and queue answer, else 503 naming which     |
//! | GET    | `/metrics`            | 200 Prometheus text (404 with `--metrics off`)                  |
//! | GET    | `/api/openapi.json`   | 200 the OpenAPI 3.1 description (see [`crate::openapi`])        |
//! | GET    | `/api`                | 200 the API page, rendered from that description               |
//! | GET    | `/`, `/assets/{name}` | the web page and its files (see [`crate::web`])                |
//!
//! Unknown paths are 404 and wrong methods 405, both JSON. The API routes
//! pass [`admission`] first: keys, rate limits (`401`, `429`).

use crate::admission;
use crate::answer_headers;
use crate::error::ApiError;
use crate::handlers::{alerts, health, latest, meta, result_events, results, stream, submit};
use crate::observe;
use crate::request_id::{self, RequestId};
use crate::state::AppState;
use crate::web;
use axum::extract::{Request, State};
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode, Version};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::any::Any;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

pub fn router(app: AppState, request_timeout: Duration, gzip_level: u32) -> Router {
    let metrics_on = app.metrics.is_some();
    let router = Router::new()
        .route("/api/query", post(submit::submit))
        .route("/api/results/{id}", get(results::get))
        .route("/api/results/{id}/status", get(results::status))
        .route("/api/results/{id}/events", get(result_events::events))
        .route("/api/latest", get(latest::get))
        .route("/api/stream/latest", get(stream::latest))
        .route("/api/alerts", post(alerts::create))
        .route("/api/alerts/{id}", get(alerts::get).delete(alerts::delete))
        .route("/api/meta", get(meta::get))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(observe::scrape))
        .merge(web::routes())
        .merge(crate::openapi::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            app.clone(),
            admission::admit,
        ))
        .with_state(app)
        // Answers in every format (direct, stored or latest), gzipped when
        // the client accepts it; a client that does not gets identical
        // plain bytes.
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .quality(crate::gzip::layer_level(gzip_level))
                .compress_when(DefaultPredicate::new().and(answer_not_partial)),
        )
        .layer(middleware::map_response(retag_compressed))
        .layer(middleware::from_fn_with_state(request_timeout, time_limit))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .layer(CatchPanicLayer::custom(panicked));
    // Counted and timed around everything else, so a 500 or a timeout is
    // counted too; with `--metrics off` the layer is not there at all.
    let router = if metrics_on {
        router.layer(middleware::from_fn(observe::track))
    } else {
        router
    };
    // Outermost: every response, a panic's included, gets its request id,
    // and tells browsers not to guess its type (an error's JSON echoes
    // input, which a browser sniffing for HTML could run as a page).
    router
        .layer(middleware::from_fn(request_id::assign))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}

/// The router of the metrics address (`--metrics-listen`): `GET /metrics`
/// alone, every other path 404.
pub fn metrics_router(app: AppState) -> Router {
    Router::new()
        .route("/metrics", get(observe::scrape_here))
        .fallback(not_found)
        .with_state(app)
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}

/// A request's log span: its method and path, never its query string
/// (where a careless client may have put a key, see [`admission`]).
///
/// An `info` span, so that the request id is on every line of the request
/// at the default log level.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    // Probes and scrapes log nothing of their own, and come by the
    // thousand: no span for them (a span costs an allocation per request).
    if matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return tracing::Span::none();
    }
    let id = request
        .extensions()
        .get::<RequestId>()
        .map_or("", RequestId::as_str);
    // A path with something shaped like a key in it is not logged either.
    let path = request.uri().path();
    let path = if crate::admission::looks_like_a_key(path) {
        "[a path that looks like it holds an API key]"
    } else {
        path
    };
    tracing::info_span!("request", method = %request.method(), path = %path, request_id = %id)
}

/// Whether a response is an answer (CSV, NDJSON or GeoJSON) sent whole:
/// a `206` is a slice of the plain bytes, so it is never compressed (its
/// `Content-Range` counts plain bytes).
fn answer_not_partial(status: StatusCode, _: Version, headers: &HeaderMap, _: &Extensions) -> bool {
    status != StatusCode::PARTIAL_CONTENT
        && headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| answer_headers::is_answer_type(v.as_bytes()))
}

/// A gzipped answer is another representation of the same bytes, so it
/// gets another strong `ETag` (`"<id>-gzip"`), as RFC 9110 asks; the
/// results handler accepts either in `If-None-Match`. Answers only, as
/// the compression layer compresses only those: the web page's files come
/// gzipped from their handler, already with their own tag.
async fn retag_compressed<B>(mut response: Response<B>) -> Response<B> {
    let h = response.headers();
    let gzipped = h
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() == b"gzip")
        && h.get(header::CONTENT_TYPE)
            .is_some_and(|v| answer_headers::is_answer_type(v.as_bytes()));
    if gzipped {
        let tag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.strip_suffix('"'))
            .map(|t| format!("{t}{}\"", crate::gzip::GZIP_TAG_SUFFIX));
        if let Some(v) = tag.and_then(|t| HeaderValue::from_str(&t).ok()) {
            response.headers_mut().insert(header::ETAG, v);
        }
    }
    response
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

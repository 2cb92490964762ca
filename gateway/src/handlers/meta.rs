//! `GET /api/meta`: what the store holds, for the web page's form.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

/// `{"readings", "first", "last", "countries"}`, times as
/// `YYYY-MM-DD HH:MM:SS` UTC (null on an empty store). Cached a few seconds.
#[utoipa::path(
    get,
    path = "/api/meta",
    tag = "store",
    operation_id = "getMeta",
    summary = "What the reading store holds",
    description = "How many readings, their time span and their countries, for the web \
        page's form; cached 5 s. Open under `--auth required` too. Spends one request of the \
        client's `polls` budget.",
    responses(
        (status = 200, description = "The store's summary", body = crate::openapi::schema::Meta),
        (status = 400, description = "An API key in the URL", body = crate::openapi::schema::ErrorBody),
        (status = 401, description = "A malformed, unknown or revoked API key",
            body = crate::openapi::schema::ErrorBody),
        (status = 429, description = "Over the client's `polls` budget",
            body = crate::openapi::schema::ErrorBody),
        (status = 503, description = "The reading store does not answer",
            body = crate::openapi::schema::ErrorBody),
    ),
    security((), ("apiKey" = []), ("bearer" = []))
)]
pub async fn get(State(app): State<AppState>) -> Result<Response, ApiError> {
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

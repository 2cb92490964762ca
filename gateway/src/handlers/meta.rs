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

//! `GET /api/results/{id}`: the state, CSV or error of a queued query.
//!
//! | state               | status | body                                                     |
//! |---------------------|--------|----------------------------------------------------------|
//! | not a UUID, unknown | 404    | JSON error                                               |
//! | expired             | 410    | JSON error                                               |
//! | queued, running     | 202    | `{"id","status","createdAt","updatedAt","expiresAt"}`, `Retry-After: 1` |
//! | done                | 200    | the CSV (`text/csv`), as many times as asked             |
//! | failed              | 422    | `{"id","status":"failed","error"}`                       |
//!
//! A failed query is `422 Unprocessable Entity`, not `200`: a script that
//! saves every `200` as CSV must not save an error, and it is not `500`
//! because the gateway is fine; the query could not be processed.
//! Times are UTC, `YYYY-MM-DD HH:MM:SS`.

use crate::answer_headers;
use crate::error::ApiError;
use crate::state::AppState;
use airq_core::results::{ResultRecord, ResultState};
use airq_core::{Query, QueryLimits, Timestamp};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use uuid::Uuid;

const UNKNOWN: &str = "no result with this id";

pub async fn get(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = id
        .ok()
        .and_then(|Path(id)| Uuid::parse_str(&id).ok())
        .ok_or(ApiError::NotFound(UNKNOWN))?;
    let record = app
        .backend
        .results
        .get(id)
        .await
        .map_err(ApiError::unavailable("result store unavailable"))?
        .ok_or(ApiError::NotFound(UNKNOWN))?;
    if record.is_expired(Timestamp::now()) {
        return Err(ApiError::Expired);
    }
    match record.state {
        ResultState::Queued | ResultState::Running => Ok(pending(&record)),
        ResultState::Done => done(record),
        ResultState::Failed => Ok(failed(&record)),
    }
}

fn pending(r: &ResultRecord) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "id": r.id,
            "status": r.state.as_str(),
            "createdAt": r.created_at.to_string(),
            "updatedAt": r.updated_at.to_string(),
            "expiresAt": r.expires_at.to_string(),
        })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn done(r: ResultRecord) -> Result<Response, ApiError> {
    // The CSV is only dropped once expired; treat a missing one the same.
    let csv = r.csv.ok_or(ApiError::Expired)?;
    let name = Query::from_json(r.query.as_bytes(), &QueryLimits::unbounded())
        .map(|q| answer_headers::filename(&q))
        .unwrap_or_else(|_| format!("airq-{}.csv", r.id));
    let mut response = Response::new(Body::from(csv));
    answer_headers::csv(&mut response, &name);
    if let Some(rows) = r.rows {
        response
            .headers_mut()
            .insert(answer_headers::ROWS, HeaderValue::from(rows));
    }
    Ok(response)
}

fn failed(r: &ResultRecord) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(serde_json::json!({
            "id": r.id,
            "status": "failed",
            "error": r.error.as_deref().unwrap_or("the query failed for an unknown reason"),
        })),
    )
        .into_response()
}

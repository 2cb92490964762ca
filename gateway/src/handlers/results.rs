//! `GET /api/results/{id}`: the state, answer or error of a queued query.
//!
//! | state               | status | body                                                     |
//! |---------------------|--------|----------------------------------------------------------|
//! | not a UUID, unknown, another key's | 404 | JSON error                                |
//! | expired             | 410    | JSON error                                               |
//! | queued, running     | 202    | `{"id","status","createdAt","updatedAt","expiresAt","requestId"}`, `Retry-After: 1` |
//! | done                | 200    | the answer in its format, as many times as asked         |
//! | done, `Range`       | 206    | those bytes (one range; `416` if outside the answer; two or more ranges: `200`, the whole answer) |
//! | done, `If-None-Match` matches | 304 | nothing                                          |
//! | failed              | 422    | `{"id","status":"failed","error","requestId"}`           |
//!
//! A failed query is `422 Unprocessable Entity`, not `200`: a script that
//! saves every `200` as an answer must not save an error, and it is not `500`
//! because the gateway is fine; the query could not be processed.
//! Times are UTC, `YYYY-MM-DD HH:MM:SS`.
//!
//! A done result never changes, so it has a strong `ETag` (its id) and a
//! `Content-Length`, takes `Range` requests (`Accept-Ranges: bytes`, so
//! `curl -C -` resumes a download) and `If-None-Match`. A large answer is
//! streamed from the result store's payload space, never loaded whole;
//! gzip (when the client accepts it) is applied by the router's layer.
//!
//! An answer keeps the format and index it was asked in: the worker
//! rendered it so, and the result keeps the query (its canonical JSON),
//! from which its `Content-Type`, file name and `X-Airq-Index` are given
//! back here, on a `200` and a `206` alike.

use crate::admission::Caller;
use crate::answer_headers::{self, Label};
use crate::error::ApiError;
use crate::request_id::{self, RequestId};
use crate::state::AppState;
use airq_core::export::Rendering;
use airq_core::results::{ResultRecord, ResultState};
use airq_core::{Query, QueryLimits, Timestamp};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::ops::Range;
use uuid::Uuid;

const UNKNOWN: &str = "no result with this id";

#[utoipa::path(
    get,
    path = "/api/results/{id}",
    tag = "queries",
    operation_id = "getResult",
    summary = "A queued query's state, answer or error",
    description = "Polled until done (`202` asks to come back in a second), then the answer, \
        as often as asked until the result expires (`--result-ttl`, 24 h), in the format and \
        index the query asked for (`Content-Type`, the file name's extension, \
        `X-Airq-Index`), byte for byte what a direct answer to it would have been. A done \
        result never changes: its `ETag` is its id (`\"<id>-gzip\"` when gzipped), it takes \
        one byte range (`Range`, a slice of the plain bytes; `curl -C -` resumes a download) \
        and `If-None-Match`. A result submitted with an API key is `404` to every other \
        client. Spends one request of the client's `polls` budget.",
    params(
        ("id" = String, Path, description = "The result id (a UUID) from the `202` of `POST /api/query`",
            example = "6f1c2d0e-8a4b-4c1e-9f3a-2b7d5e8c1a90"),
        ("wait" = Option<String>, Query,
            description = "Long poll: while the query is queued or running, answer only once \
                it is done or failed, or after this long (`20s`, or seconds; at most 25 s), \
                whichever comes first. Counts as one of the client's followers while it waits",
            example = "20s"),
        ("Range" = Option<String>, Header,
            description = "One byte range of the answer, `bytes=START-END`, `bytes=START-` or \
                `bytes=-SUFFIX` (two or more ranges, any number, get the whole answer with 200)",
            example = "bytes=0-1023"),
        ("If-Range" = Option<String>, Header,
            description = "The `ETag` the range is for: another one gets the whole answer"),
        ("If-None-Match" = Option<String>, Header,
            description = "An `ETag` from an earlier answer: `304` when it is this result's"),
        ("Accept-Encoding" = Option<String>, Header,
            description = "`gzip` to get the whole answer gzipped (a range is never)"),
    ),
    responses(
        (status = 200, description = "Done: the whole answer, in the query's format: CSV \
            (`text/csv`), NDJSON (`application/x-ndjson`, one reading per line) or GeoJSON \
            (`application/geo+json`, a `FeatureCollection`)",
            content(
                (String = "text/csv",
                    example = json!("id,timestamp,sensor_id,sensor_type,loc_id,loc_country,loc_lat,loc_long,loc_alt,P1,P2,AQI,Range\n")),
                (crate::openapi::schema::ReadingLine = "application/x-ndjson"),
                (crate::openapi::schema::FeatureCollection = "application/geo+json"),
            ),
            headers(
                ("X-Airq-Rows" = u64, description = "The number of rows (readings) of the answer"),
                ("X-Airq-Index" = crate::openapi::schema::IndexName,
                    description = "The index whose value and band the answer's `AQI` and `Range` hold"),
                ("X-Airq-Correction" = String, description = "With a `correction`: its method and \
                    parameters, `kappa-kohler; kappa=0.3; rh-max=95`; absent without one"),
                ("ETag" = String, description = "`\"<id>\"`, or `\"<id>-gzip\"` when gzipped"),
                ("Accept-Ranges" = String, description = "`bytes`"),
                ("Content-Length" = u64, description = "The size of the answer in bytes (absent when gzipped)"),
                ("Content-Disposition" = String,
                    description = "`attachment; filename=\"airq-….csv\"` (`.ndjson`, `.geojson` for those formats)"),
                ("Content-Encoding" = String, description = "`gzip` when the request accepted it"),
            )),
        (status = 206, description = "Done: the byte range asked for, a slice of the answer's bytes",
            content((String = "text/csv"), (String = "application/x-ndjson"), (String = "application/geo+json")),
            headers(
                ("Content-Range" = String, description = "`bytes START-END/LENGTH`"),
                ("Content-Length" = u64, description = "The size of the range"),
                ("X-Airq-Rows" = u64, description = "The number of rows of the whole answer"),
                ("X-Airq-Index" = crate::openapi::schema::IndexName,
                    description = "The index of the answer's `AQI` and `Range`"),
                ("ETag" = String, description = "`\"<id>\"`"),
                ("Accept-Ranges" = String, description = "`bytes`"),
                ("Content-Disposition" = String,
                    description = "`attachment; filename=\"airq-….csv\"` (or `.ndjson`, `.geojson`)"),
            )),
        (status = 202, description = "Queued or running: poll again after `Retry-After`",
            body = crate::openapi::schema::Pending,
            headers(
                ("Retry-After" = u64, description = "`1` (seconds)"),
                ("X-Airq-Index" = crate::openapi::schema::IndexName,
                    description = "The index the answer will be in"),
                ("X-Airq-Correction" = String,
                    description = "The correction the answer will have, if the query asks for one"),
            )),
        (status = 304, description = "Done, and the client has it (a matching `If-None-Match`)",
            headers(
                ("ETag" = String, description = "`\"<id>\"`"),
                ("Accept-Ranges" = String, description = "`bytes`"),
                ("X-Airq-Rows" = u64, description = "The number of rows of the answer"),
            )),
        (status = 400, description = "An API key in the URL", body = crate::openapi::schema::ErrorBody),
        (status = 401, description = "A malformed, unknown or revoked API key, or none under \
            `--auth required`", body = crate::openapi::schema::ErrorBody),
        (status = 404, description = "No such result: not a UUID, unknown, or submitted with \
            another API key", body = crate::openapi::schema::ErrorBody,
            example = json!({"error": "no result with this id"})),
        (status = 410, description = "The result has expired; send the query again",
            body = crate::openapi::schema::ErrorBody,
            example = json!({"error": "the result has expired; send the query again"})),
        (status = 416, description = "The range is outside the answer",
            body = crate::openapi::schema::ErrorBody,
            headers(("Content-Range" = String, description = "`bytes */LENGTH`"))),
        (status = 422, description = "The query failed: its answer has more than \
            `--max-result-rows` rows, it could not be run, or it could not be stored",
            body = crate::openapi::schema::Failed),
        (status = 429, description = "Over the client's `polls` budget",
            body = crate::openapi::schema::ErrorBody),
        (status = 503, description = "The result store does not answer, or the response did \
            not start within `--request-timeout`", body = crate::openapi::schema::ErrorBody),
    ),
    security((), ("apiKey" = []), ("bearer" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(request_id): Extension<RequestId>,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let wait = super::result_events::wait_of(uri.query())?;
    let record = readable(&app, &caller, id).await?;
    let record = super::result_events::wait_for_end(&app, &caller, record, wait).await?;
    // A poll without an id of its own goes on under its query's id.
    let follow = match (&record.request_id, request_id.sent_by_client()) {
        (Some(submitted), false) if request_id::acceptable(submitted) => {
            tracing::Span::current().record("request_id", submitted.as_str());
            HeaderValue::from_str(submitted).ok()
        }
        _ => None,
    };
    // The query as accepted: every gateway and worker reads it back with
    // no limits of its own, so a record's query always parses unless it
    // was damaged in the store.
    let query = Query::from_json(record.query.as_bytes(), &QueryLimits::unbounded()).ok();
    let mut response = match record.state {
        ResultState::Queued | ResultState::Running => pending(&record, query.as_ref()),
        ResultState::Done => done(&app, record, query.as_ref(), &headers).await?,
        ResultState::Failed => failed(&record),
    };
    if let Some(v) = follow {
        response.headers_mut().insert(request_id::HEADER, v);
    }
    Ok(response)
}

/// The result `id` names, if this caller may read it and it has not
/// expired: what the answer and the status share.
pub(super) async fn readable(
    app: &AppState,
    caller: &Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<ResultRecord, ApiError> {
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
    // Another client's keyed result does not exist, as far as this one
    // can tell: the same 404 as an unknown id.
    if !record.readable_by(&caller.client) {
        return Err(ApiError::NotFound(UNKNOWN));
    }
    if record.is_expired(Timestamp::now()) {
        return Err(ApiError::Expired);
    }
    Ok(record)
}

#[utoipa::path(
    get,
    path = "/api/results/{id}/status",
    tag = "queries",
    operation_id = "getResultStatus",
    summary = "A queued query's state and the query it answers",
    description = "What a result is, in any state, as JSON: its status, times, request id \
        and the query it answers as validated (the canonical form `POST /api/query` takes \
        back), and, when done, its rows, or, when failed, why. The page uses it to show a \
        shared result link with its query. Readable by whoever may read the result \
        (`404` otherwise); `410` once expired. Spends one request of the `polls` budget.",
    params(
        ("id" = String, Path, description = "The result id (a UUID)",
            example = "6f1c2d0e-8a4b-4c1e-9f3a-2b7d5e8c1a90"),
    ),
    responses(
        (status = 200, description = "The result's state and query",
            body = crate::openapi::schema::ResultStatus),
        (status = 400, description = "An API key in the URL", body = crate::openapi::schema::ErrorBody),
        (status = 401, description = "A malformed, unknown or revoked API key, or none under \
            `--auth required`", body = crate::openapi::schema::ErrorBody),
        (status = 404, description = "No such result: not a UUID, unknown, or submitted with \
            another API key", body = crate::openapi::schema::ErrorBody),
        (status = 410, description = "The result has expired", body = crate::openapi::schema::ErrorBody),
        (status = 429, description = "Over the client's `polls` budget",
            body = crate::openapi::schema::ErrorBody),
        (status = 503, description = "The result store does not answer",
            body = crate::openapi::schema::ErrorBody),
    ),
    security((), ("apiKey" = []), ("bearer" = []))
)]
pub async fn status(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let r = readable(&app, &caller, id).await?;
    // The canonical JSON the gateway stored; a damaged one is null rather
    // than an error (the status is still worth having).
    let query: serde_json::Value = serde_json::from_str(&r.query).unwrap_or_default();
    let mut body = state_of(&r);
    body["query"] = query;
    match r.state {
        ResultState::Done => body["rows"] = r.rows.into(),
        ResultState::Failed => body["error"] = failure_of(&r).into(),
        ResultState::Queued | ResultState::Running => {}
    }
    let mut response = Json(body).into_response();
    // It changes until the result is done: never from a cache.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A result's id, state, times and request id: the `202` body, and the
/// start of the status.
pub(super) fn state_of(r: &ResultRecord) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "status": r.state.as_str(),
        "createdAt": r.created_at.to_string(),
        "updatedAt": r.updated_at.to_string(),
        "expiresAt": r.expires_at.to_string(),
        "requestId": r.request_id,
    })
}

/// Why a failed result failed.
pub(super) fn failure_of(r: &ResultRecord) -> &str {
    r.error
        .as_deref()
        .unwrap_or("the query failed for an unknown reason")
}

fn pending(r: &ResultRecord, query: Option<&Query>) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(state_of(r))).into_response();
    let h = response.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    // Which index the answer will be in, as the submit's 202 said.
    if let Some(q) = query {
        answer_headers::index(h, q.index);
        answer_headers::correction(h, q.correction);
    }
    response
}

/// The strong validator of a done result: its content never changes.
fn etag(r: &ResultRecord) -> String {
    format!("\"{}\"", r.id)
}

/// Whether an `If-None-Match` / `If-Range` value names this result
/// (compressed or not: the compression layer suffixes the tag it sends).
fn tag_matches(value: &HeaderValue, tag: &str) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let bare = tag.trim_matches('"');
    value.split(',').map(str::trim).any(|t| {
        let t = t.strip_prefix("W/").unwrap_or(t).trim_matches('"');
        t == "*" || t == bare || t.strip_suffix(crate::gzip::GZIP_TAG_SUFFIX) == Some(bare)
    })
}

/// The one byte range asked for, checked against the answer's `len`:
/// `Ok(None)` to send all of it (no `Range`, one that is not `bytes=`,
/// several ranges, or an `If-Range` for another version), `Err(())` for a
/// range outside it (`416`).
///
/// Several ranges would need a multipart answer; the whole answer is a
/// valid answer to them (RFC 9110 §14.2: a server may ignore `Range`), so
/// any list of two or more gets it, whatever their number or overlap.
/// They are counted before anything is parsed, so a list of thousands
/// costs one pass over a header hyper has already bounded.
fn wanted_range(headers: &HeaderMap, tag: &str, len: u64) -> Result<Option<Range<u64>>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        if !tag_matches(if_range, tag) {
            return Ok(None);
        }
    }
    let Some(list) = value.strip_prefix("bytes=") else {
        return Ok(None);
    };
    if list
        .split(',')
        .filter(|r| !r.trim().is_empty())
        .nth(1)
        .is_some()
    {
        return Ok(None);
    }
    let ranges = http_range_header::parse_range_header(value)
        .and_then(|r| r.validate(len))
        .map_err(|_| ())?;
    match ranges.as_slice() {
        [one] => Ok(Some(*one.start()..one.end().saturating_add(1))),
        _ => Ok(None),
    }
}

async fn done(
    app: &AppState,
    r: ResultRecord,
    query: Option<&Query>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let tag = etag(&r);
    // A damaged query cannot say its format: the CSV, which every result
    // was before formats existed, is the likeliest.
    let label = query.map(Label::of_query).unwrap_or_else(|| Label {
        rendering: Rendering::default(),
        filename: format!("airq-{}.csv", r.id),
    });
    let len = match (&r.answer, &r.stored) {
        (Some(answer), _) => answer.len() as u64,
        (None, Some(stored)) => stored.bytes,
        // The answer is only dropped once expired; treat a missing one the same.
        (None, None) => return Err(ApiError::Expired),
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| tag_matches(v, &tag))
    {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let range = match wanted_range(headers, &tag, len) {
            Ok(range) => range,
            Err(()) => {
                let mut response = ApiError::RangeNotSatisfiable.into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(response);
            }
        };
        let body = match (r.answer, &r.stored) {
            (Some(answer), _) => match &range {
                Some(range) => Body::from(
                    answer
                        .into_bytes()
                        .get(range.start as usize..range.end as usize)
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default(),
                ),
                None => Body::from(answer),
            },
            (None, Some(stored)) => Body::from_stream(
                app.backend
                    .results
                    .open_answer(stored, range.clone())
                    .await
                    .map_err(ApiError::unavailable("result store unavailable"))?,
            ),
            (None, None) => return Err(ApiError::Expired),
        };
        let mut response = Response::new(body);
        label.apply(&mut response);
        let sent = match &range {
            Some(range) => {
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "bytes {}-{}/{len}",
                    range.start,
                    range.end.saturating_sub(1)
                )) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                range.end - range.start
            }
            None => len,
        };
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(sent));
        response
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(rows) = r.rows {
        h.insert(answer_headers::ROWS, HeaderValue::from(rows));
    }
    Ok(response)
}

fn failed(r: &ResultRecord) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(serde_json::json!({
            "id": r.id,
            "status": "failed",
            "error": failure_of(r),
            "requestId": r.request_id,
        })),
    )
        .into_response()
}

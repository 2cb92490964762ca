//! `POST /api/query`: checks and validates the request, then answers it
//! directly (`200`, in the query's format) or queues it (`202`).
//!
//! The checks, in order, each answering with a JSON error that names the
//! field at fault:
//!
//! 1. `Content-Type` must be `application/json` (parameters such as
//!    `charset` allowed, `application/*+json` too), else `415`;
//! 2. the body must be at most `--body-limit` bytes, else `413` (checked on
//!    `Content-Length` first, then while reading; see [`read_body`]);
//! 3. the body must be a valid query, else `400` naming each bad field
//!    (`body` when it is not a JSON object).
//!
//! The body is read here rather than through axum's `Json`/`Bytes`
//! extractors because their rejections are plain text.
//!
//! A valid query is answered directly unless the client sent
//! `Prefer: respond-async` or the direct path declines it (see
//! [`crate::direct`]: too long a span, no direct slot free); it is then
//! queued for a worker (see [`crate::enqueue`]).

use crate::admission::Caller;
use crate::enqueue;
use crate::error::ApiError;
use crate::request_id::RequestId;
use crate::state::AppState;
use airq_core::query::FieldError;
use airq_core::Query;
use airq_core::QueryError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::Extension;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use std::time::Duration;

#[utoipa::path(
    post,
    path = "/api/query",
    tag = "queries",
    operation_id = "submitQuery",
    summary = "Ask for readings: the answer at once, or a result id to poll",
    description = "Checks, in order, the content type (`415`), the body size (`413`) and the \
        query (`400`, every bad field named). A valid query is answered directly (`200`, in \
        its `format`: CSV by default, NDJSON or GeoJSON) when its span is at most \
        `--direct-max-span` (24 h; by default also, up to `--max-span`, one the store assembles from answer segments whose answer fits in `--answer-cache-max-entry-kib`), the client did not send `Prefer: respond-async`, and a \
        direct slot is free (or frees up within 50 ms); otherwise it is queued (`202`) for a \
        worker, and its answer, in the same format, is fetched from `GET /api/results/{id}`. \
        The answer's `AQI` and `Range` are the query's `index` (`X-Airq-Index` says which); \
        with the default index and format the CSV is the first system's, byte for byte. \
        Spends one request of the client's `submits` budget.",
    request_body(
        content = crate::openapi::schema::QueryBody,
        content_type = "application/json",
        description = "The query, as JSON (`application/json`, parameters such as `charset` \
            allowed, or any `application/*+json`); at most `--body-limit` bytes (16 KiB).",
        examples(
            ("hour" = (summary = "One hour in Germany, low band",
                value = json!({"startDate": "2018-06-03 20:00:00", "endDate": "2018-06-03 21:00:00",
                    "country": "DE", "minAqi": 0, "maxAqi": 10, "range": "Low"}))),
            ("day" = (summary = "A whole day (bare dates cover their day), AQI 4 and up",
                value = json!({"startDate": "2018-06-03", "endDate": "2018-06-03", "minAqi": "4"}))),
            ("rfc3339" = (summary = "RFC 3339 bounds with an offset",
                value = json!({"startDate": "2018-06-03T20:00:00Z", "endDate": "2018-06-03T23:00:00+02:00"}))),
            ("epa-near" = (summary = "US EPA AQI, within 10 km of Stuttgart, two sensor types, as GeoJSON",
                value = json!({"startDate": "2018-06-03", "endDate": "2018-06-03", "index": "us-epa",
                    "range": "Moderate", "near": {"lat": 48.78, "lon": 9.18, "radiusKm": 10},
                    "sensorType": ["SDS011", "SPS30"], "format": "geojson"}))),
            ("eaqi-bbox" = (summary = "EAQI levels 3 and up in a bounding box, as NDJSON",
                value = json!({"startDate": "2018-06-03 20:00:00", "endDate": "2018-06-03 21:00:00",
                    "index": "eaqi", "minAqi": 3, "bbox": [5.9, 47.3, 15.0, 55.1], "format": "ndjson"}))),
        )
    ),
    params(
        ("Prefer" = Option<String>, Header,
            description = "`respond-async` to have the query queued (`202`) whatever its span",
            example = "respond-async"),
        ("Accept-Encoding" = Option<String>, Header,
            description = "`gzip` to get the answer gzipped (the same bytes otherwise)"),
    ),
    responses(
        (status = 200, description = "The answer, directly, in the query's `format`: readings \
            ordered by time, then sensor id; CSV (`text/csv`: a header row, then one row per \
            reading), NDJSON (`application/x-ndjson`: one JSON object per reading and line, \
            the CSV's columns as its fields) or GeoJSON (`application/geo+json`: a \
            `FeatureCollection` of `Point`s `[lon, lat]`, the fields as `properties`). \
            Streamed: a failure after the status cuts the connection (a truncated transfer, \
            never a short answer that looks complete).",
            content(
                (String = "text/csv",
                    example = json!("id,timestamp,sensor_id,sensor_type,loc_id,loc_country,loc_lat,loc_long,loc_alt,P1,P2,AQI,Range\n")),
                (crate::openapi::schema::ReadingLine = "application/x-ndjson"),
                (crate::openapi::schema::FeatureCollection = "application/geo+json"),
            ),
            headers(
                ("X-Airq-Answer" = String, description = "`direct`"),
                ("X-Airq-Cache" = String, description = "`hit` (served from the answer cache) or \
                    `miss` (computed for this request); absent on a streamed answer"),
                ("X-Airq-Index" = crate::openapi::schema::IndexName,
                    description = "The index whose value and band the answer's `AQI` and `Range` hold"),
                ("X-Airq-Correction" = String, description = "With a `correction`: its method and \
                    parameters, `kappa-kohler; kappa=0.3; rh-max=95`; absent without one"),
                ("Content-Disposition" = String,
                    description = "`attachment; filename=\"airq-20180603T200000Z-20180603T210000Z.csv\"` \
                        (`.ndjson`, `.geojson` for those formats)"),
                ("Content-Encoding" = String, description = "`gzip` when the request accepted it"),
            )),
        (status = 202, description = "Queued for a worker: poll the `Location`",
            body = crate::openapi::schema::Queued,
            headers(
                ("Location" = String, description = "`/api/results/{id}`, where the answer will be"),
                ("X-Airq-Answer" = String, description = "`queued`"),
                ("X-Airq-Index" = crate::openapi::schema::IndexName,
                    description = "The index the answer will be in"),
                ("X-Airq-Correction" = String,
                    description = "The correction the answer will have, if the query asks for one"),
                ("Preference-Applied" = String,
                    description = "`respond-async`, when the request asked for it"),
            )),
        (status = 400, description = "An invalid query (each bad field named, `body` when it \
            is not a JSON object), or an API key in the URL",
            body = crate::openapi::schema::ErrorBody,
            example = json!({"error": "invalid query", "fields": [{"field": "startDate", "message": "is required"}]})),
        (status = 401, description = "A malformed, unknown or revoked API key, or none under \
            `--auth required`; the message says which, never echoing the key",
            body = crate::openapi::schema::ErrorBody,
            example = json!({"error": "unknown API key"})),
        (status = 413, description = "The body is over `--body-limit` bytes",
            body = crate::openapi::schema::ErrorBody,
            example = json!({"error": "request body too large", "fields": [{"field": "body", "message": "must be at most 16384 bytes"}]})),
        (status = 415, description = "The body is not `application/json`",
            body = crate::openapi::schema::ErrorBody,
            example = json!({"error": "unsupported media type", "fields": [{"field": "Content-Type", "message": "must be application/json, got \"text/plain\""}]})),
        (status = 429, description = "Over the client's `submits` budget, or the client \
            already has its tier's most queries queued or running",
            body = crate::openapi::schema::ErrorBody,
            example = json!({"error": "rate limit reached: 30/min submits for this client (tier anonymous); retry after 2 s"})),
        (status = 503, description = "The request queue holds more than `--max-backlog` \
            messages, a backend does not answer, or the response did not start within \
            `--request-timeout`",
            body = crate::openapi::schema::ErrorBody,
            example = json!({"error": "too many queries are waiting; retry later"})),
    ),
    security((), ("apiKey" = []), ("bearer" = []))
)]
pub async fn submit(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(request_id): Extension<RequestId>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    if let Err(e) = check_content_type(&parts.headers) {
        drain(body).await;
        return Err(e);
    }
    let bytes = read_body(&parts.headers, body, app.body_limit).await?;
    let query = Query::from_json(&bytes, &app.limits).map_err(ApiError::InvalidQuery)?;
    let kept = app.backend.readings.series();
    if !kept.contains(&query.resolution) {
        return Err(ApiError::InvalidQuery(QueryError {
            errors: vec![FieldError {
                field: "resolution".into(),
                message: format!(
                    "this deployment's store does not keep the {:?} series; it keeps {}",
                    query.resolution.name(),
                    kept.iter()
                        .map(|r| format!("{:?}", r.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }],
        }));
    }
    let respond_async = prefers_async(&parts.headers);

    if !respond_async {
        if let Some(answer) = app
            .direct
            .answer(&query, crate::gzip::accepts(&parts.headers))
            .await?
        {
            metrics::counter!("airq_queries_total", "answer" => "direct").increment(1);
            return Ok(answer);
        }
    }
    enqueue::enqueue(&app, &caller, &request_id, &query, respond_async).await
}

pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType { got: None });
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            got: Some(text.into_owned()),
        })
    }
}

/// Reads the body, at most `limit` bytes of it.
///
/// A body over the limit is drained (up to [`DRAIN_MAX_BYTES`], for at most
/// [`DRAIN_MAX_TIME`]) before the 413 is sent: closing a connection with
/// unread data resets it, and many clients then report the reset ("broken
/// pipe") instead of the 413. A client that sent `Expect: 100-continue`
/// with a too-large `Content-Length` is answered at once, without reading.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    mut body: Body,
    limit: u64,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        let expects_continue = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !expects_continue {
            drain(body).await;
        }
        return Err(ApiError::BodyTooLarge { limit });
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut buf = BytesMut::with_capacity(declared.map_or(1024, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::InvalidQuery(QueryError {
                errors: vec![FieldError {
                    field: "body".into(),
                    message: format!("could not be read: {e}"),
                }],
            })
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit_usize {
                drain(body).await;
                return Err(ApiError::BodyTooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// The most of a too-large body read before answering 413.
const DRAIN_MAX_BYTES: usize = 8 * 1024 * 1024;
/// The longest time spent reading a too-large body before answering 413.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);

/// Reads and drops what is left of a body, within bounds, so that the
/// error answer reaches the client (see [`read_body`]).
pub(crate) async fn drain(mut body: Body) {
    let mut seen = 0usize;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Whether some `Prefer` header asks for `respond-async` (RFC 7240).
pub fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|pref| {
            pref.split(';')
                .next()
                .is_some_and(|token| token.trim().eq_ignore_ascii_case("respond-async"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: &'static str, values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn content_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.airq+json",
        ] {
            assert!(
                check_content_type(&headers("content-type", &[ok])).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "json",
            "",
        ] {
            assert!(
                check_content_type(&headers("content-type", &[bad])).is_err(),
                "{bad}"
            );
        }
        assert!(check_content_type(&HeaderMap::new()).is_err());
    }

    #[test]
    fn prefer_header() {
        assert!(prefers_async(&headers("prefer", &["respond-async"])));
        assert!(prefers_async(&headers(
            "prefer",
            &["wait=10, Respond-Async"]
        )));
        assert!(prefers_async(&headers(
            "prefer",
            &["return=minimal", "respond-async; x=1"]
        )));
        assert!(!prefers_async(&headers("prefer", &["return=minimal"])));
        assert!(!prefers_async(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn body_limit() {
        let small = read_body(&HeaderMap::new(), Body::from("12345"), 5).await;
        assert_eq!(small.unwrap(), Bytes::from_static(b"12345"));
        let big = read_body(&HeaderMap::new(), Body::from("123456"), 5).await;
        assert!(matches!(big, Err(ApiError::BodyTooLarge { limit: 5 })));
        let declared = read_body(&headers("content-length", &["6"]), Body::from("1"), 5).await;
        assert!(matches!(declared, Err(ApiError::BodyTooLarge { limit: 5 })));
    }
}

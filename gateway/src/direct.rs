//! The direct answer: the CSV streamed straight from the reading store.
//!
//! The first chunk is awaited before the response starts, so a store that
//! is down answers 503. After that the status is sent: a store failure
//! mid-stream is logged and the body aborted (the connection is cut, so the
//! client sees a truncated transfer rather than a short CSV that looks
//! complete).

use crate::error::ApiError;
use airq_core::store::ReadingStore;
use airq_core::{BackendError, Query, Timestamp};
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use std::io;
use tokio::sync::OwnedSemaphorePermit;

/// `X-Airq-Answer`: which path answered a query.
pub const ANSWER_HEADER: &str = "x-airq-answer";

/// Answers `query` directly, holding `permit` until the body has been sent
/// (or the client went away).
pub async fn answer(
    readings: &dyn ReadingStore,
    query: &Query,
    permit: OwnedSemaphorePermit,
) -> Result<Response, ApiError> {
    let mut chunks = readings.query_csv(query);
    let first = match chunks.next().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(e)) => return Err(ApiError::unavailable("reading store unavailable")(e)),
        None => {
            return Err(ApiError::unavailable("reading store unavailable")(
                BackendError::Corrupt("the store ended an answer before its header".into()),
            ))
        }
    };
    let rest = chunks.map(move |chunk| {
        // The permit lives as long as the body stream.
        let _held = &permit;
        chunk.map(|c| c.bytes).map_err(|e| {
            // The status has been sent and cannot change any more: ending
            // the body with an error makes the server cut the connection,
            // so the client sees a truncated transfer rather than a short
            // CSV that looks complete.
            tracing::error!(error = %e, "direct answer aborted mid-stream");
            io::Error::other(e.to_string())
        })
    });
    let body = futures::stream::once(async move { Ok::<_, io::Error>(first.bytes) }).chain(rest);
    let mut response = Response::new(Body::from_stream(body));
    csv_headers(&mut response, &filename(query));
    response
        .headers_mut()
        .insert(ANSWER_HEADER, HeaderValue::from_static("direct"));
    Ok(response)
}

/// `X-Airq-Cache`: whether a direct answer came from the answer cache
/// (`hit`) or was computed for this request and its concurrent twins (`miss`).
pub const CACHE_HEADER: &str = "x-airq-cache";

/// A direct answer already in memory (from the answer cache).
pub fn complete(csv: Bytes, query: &Query, cache: &'static str) -> Response {
    let mut response = Response::new(Body::from(csv));
    csv_headers(&mut response, &filename(query));
    let h = response.headers_mut();
    h.insert(ANSWER_HEADER, HeaderValue::from_static("direct"));
    h.insert(CACHE_HEADER, HeaderValue::from_static(cache));
    response
}

/// Sets the status, content type and attachment name of a CSV answer.
pub fn csv_headers(response: &mut Response, filename: &str) {
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    // The name is built from digits, letters and dashes only.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
}

/// `airq-20180603T200000Z-20180603T210000Z.csv`.
pub fn filename(query: &Query) -> String {
    format!("airq-{}-{}.csv", compact(query.start), compact(query.end))
}

/// `2018-06-03 20:00:00` → `20180603T200000Z`.
fn compact(t: Timestamp) -> String {
    let digits: String = t.to_string().chars().filter(char::is_ascii_digit).collect();
    if digits.len() == 14 {
        format!("{}T{}Z", &digits[..8], &digits[8..])
    } else {
        t.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_are_compact_utc() {
        let q = Query::between(
            Timestamp::parse_feed("2018-06-03 20:00:00").unwrap(),
            Timestamp::parse_feed("2018-06-03 21:00:00").unwrap(),
        );
        assert_eq!(filename(&q), "airq-20180603T200000Z-20180603T210000Z.csv");
    }
}

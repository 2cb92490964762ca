//! A direct answer as an HTTP response: streamed straight from the reading
//! store, or already in memory (from the answer cache).
//!
//! A streamed answer awaits its first chunk before the response starts, so
//! a store that is down answers 503. After that the status is sent: a store
//! failure mid-stream is logged and the body aborted (the connection is cut,
//! so the client sees a truncated transfer rather than a short CSV that
//! looks complete).

use crate::answer_headers;
use crate::error::ApiError;
use airq_core::store::ReadingStore;
use airq_core::{BackendError, Query};
use axum::body::Body;
use axum::http::HeaderValue;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use std::io;
use tokio::sync::OwnedSemaphorePermit;

/// Answers `query` from the store, holding `permit` (its direct slot) until
/// the body has been sent (or the client went away).
pub async fn streamed(
    readings: &dyn ReadingStore,
    query: &Query,
    permit: OwnedSemaphorePermit,
) -> Result<Response, ApiError> {
    let mut chunks = readings.query_csv(query);
    let first = match chunks.next().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(e)) => return Err(ApiError::unavailable(super::STORE_DOWN)(e)),
        None => {
            return Err(ApiError::unavailable(super::STORE_DOWN)(
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
    answer_headers::csv(&mut response, &answer_headers::filename(query));
    response
        .headers_mut()
        .insert(answer_headers::ANSWER, HeaderValue::from_static("direct"));
    Ok(response)
}

/// Whether an in-memory answer was found in the answer cache or computed
/// for this request (and its concurrent twins).
#[derive(Debug, Clone, Copy)]
pub enum Cache {
    Hit,
    Miss,
}

/// A direct answer already in memory.
pub fn in_memory(csv: Bytes, query: &Query, cache: Cache) -> Response {
    let mut response = Response::new(Body::from(csv));
    answer_headers::csv(&mut response, &answer_headers::filename(query));
    let h = response.headers_mut();
    h.insert(answer_headers::ANSWER, HeaderValue::from_static("direct"));
    let cache = match cache {
        Cache::Hit => "hit",
        Cache::Miss => "miss",
    };
    h.insert(answer_headers::CACHE, HeaderValue::from_static(cache));
    response
}

//! The direct answer: the CSV streamed straight from the reading store.
//!
//! The first reading is awaited before the response starts, so a store that
//! is down answers 503. After that the status is sent: a store failure
//! mid-stream is logged and the body aborted (the connection is cut, so the
//! client sees a truncated transfer rather than a short CSV that looks
//! complete).

use crate::error::ApiError;
use airq_common::export::CsvWriter;
use airq_common::store::{ReadingStore, ReadingStream};
use airq_common::{Query, Reading, Timestamp};
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::OwnedSemaphorePermit;

/// Bytes gathered before a chunk is handed to the connection.
const CHUNK: usize = 32 * 1024;

/// `X-Airq-Answer`: which path answered a query.
pub const ANSWER_HEADER: &str = "x-airq-answer";

/// Answers `query` directly, holding `permit` until the body has been sent
/// (or the client went away).
pub async fn answer(
    readings: &dyn ReadingStore,
    query: &Query,
    permit: OwnedSemaphorePermit,
) -> Result<Response, ApiError> {
    let mut rows = readings.query(query);
    let first = match rows.next().await {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => return Err(ApiError::unavailable("reading store unavailable")(e)),
        None => None,
    };
    let stream = futures::stream::unfold(
        CsvStream {
            rows,
            pending: first,
            sink: Sink::default(),
            writer: None,
            started: false,
            _permit: permit,
        },
        CsvStream::next_chunk,
    );
    let mut response = Response::new(Body::from_stream(stream));
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

/// Where the CSV writer puts its bytes; emptied chunk by chunk. Shared with
/// the writer, which only writes to it when its own 8 KiB buffer fills, so
/// the lock is taken a few times per chunk.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Sink {
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn take(&self) -> Bytes {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Bytes::from(std::mem::replace(
            &mut *buf,
            Vec::with_capacity(CHUNK + 8 * 1024),
        ))
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct CsvStream {
    rows: ReadingStream,
    /// A reading taken from `rows` but not yet written.
    pending: Option<Reading>,
    sink: Sink,
    /// `None` before the first chunk and after the last.
    writer: Option<CsvWriter<Sink>>,
    started: bool,
    _permit: OwnedSemaphorePermit,
}

impl CsvStream {
    async fn next_chunk(mut self) -> Option<(io::Result<Bytes>, Self)> {
        if !self.started {
            self.started = true;
            match CsvWriter::new(self.sink.clone()) {
                Ok(w) => self.writer = Some(w),
                Err(e) => return self.fail("writing the CSV header", e.to_string()),
            }
        }
        let writer = self.writer.as_mut()?;
        if let Some(r) = self.pending.take() {
            if let Err(e) = writer.write(&r) {
                return self.fail("writing a CSV row", e.to_string());
            }
        }
        loop {
            if self.sink.len() >= CHUNK {
                let chunk = self.sink.take();
                return Some((Ok(chunk), self));
            }
            match self.rows.next().await {
                Some(Ok(r)) => {
                    if let Some(w) = self.writer.as_mut() {
                        if let Err(e) = w.write(&r) {
                            return self.fail("writing a CSV row", e.to_string());
                        }
                    }
                }
                Some(Err(e)) => return self.fail("reading from the store", e.to_string()),
                None => {
                    let writer = self.writer.take()?;
                    let rows = writer.rows();
                    if let Err(e) = writer.finish() {
                        return self.fail("finishing the CSV", e.to_string());
                    }
                    tracing::debug!(rows, "direct answer sent");
                    let rest = self.sink.take();
                    return (!rest.is_empty()).then_some((Ok(rest), self));
                }
            }
        }
    }

    /// Ends the body with an error, which makes the server cut the
    /// connection: the status has been sent and cannot change any more.
    fn fail(mut self, doing: &str, error: String) -> Option<(io::Result<Bytes>, Self)> {
        tracing::error!(%error, "direct answer aborted mid-stream while {doing}");
        self.writer = None;
        Some((Err(io::Error::other(format!("{doing}: {error}"))), self))
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

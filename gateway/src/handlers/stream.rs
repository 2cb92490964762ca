//! `GET /api/stream/latest`: the latest readings of a place, pushed as
//! Server-Sent Events as ingestion changes them.
//!
//! | event     | `id` | data (JSON)                                               |
//! |-----------|------|-----------------------------------------------------------|
//! | `reading` | –    | a sensor's latest reading: the NDJSON line of a query, with the `index` asked for |
//! | `sync`    | the data version | `{"version","readings"}`: every change up to that version is sent (`readings` of them in this step) |
//! | `dropped` | –    | `{"error"}`: the stream fell too far behind (or the store was replaced); it ends, and a reconnection resumes |
//!
//! First the place's latest readings, then `sync`; then, after each write
//! that changes any latest reading (a live ingestion every 5 minutes, the
//! nightly one), the place's readings it changed and `sync`, which may
//! hold none. A `reading` event's data is exactly a line of the NDJSON
//! answer of `GET /api/latest` with the same fields, but for `ageSeconds`
//! and `resolution` (a stored line would go stale): a reading of the live
//! tier is the one with the basis fields (`nowcastPm25`, …).
//!
//! A client that reconnects with `Last-Event-ID` (an `EventSource` does)
//! gets the place's sensors whose latest reading changed after that
//! version, each as it is now, then `sync`: it loses no change however
//! long it was away (readings a sensor had in between, superseded since,
//! are in the recent tier: query `resolution: "5min"`). A reading may come
//! twice around a reconnection; a sensor's newest is the one to keep.
//! How the gateway learns of changes, and the bounds, are in
//! [`crate::live_feed`].

use crate::admission::Caller;
use crate::error::ApiError;
use crate::follow::HEARTBEAT;
use crate::live_feed::{self, Batch, Entries, LiveFeed, Matcher};
use crate::slots::{Full, Slot};
use crate::state::AppState;
use airq_core::query::FieldError;
use airq_core::{BackendError, Format, LatestQuery, QueryError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::{Bytes, BytesMut};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// Bytes of events gathered into one write to the connection.
const CHUNK: usize = 16 * 1024;

/// A resumed stream's first answer, yet to be looked at: the entries of the
/// place changed after `after`, tested one by one from `pos`.
struct Resume {
    entries: Entries,
    pos: usize,
    after: u64,
}

/// What a stream has to send before it waits for the next batch.
enum Pending {
    /// A step's events, rendered once for every stream of the place
    /// ([`live_feed::Shared::rendered`]), then its `sync`.
    Rendered {
        bytes: Bytes,
        count: u64,
        version: u64,
    },
    /// A resumed stream's first events, then its `sync`.
    Resume {
        resume: Resume,
        count: u64,
        version: u64,
    },
    /// The `sync` of a step.
    Sync { count: u64, version: u64 },
}

struct Stream {
    feed: Arc<LiveFeed>,
    query: LatestQuery,
    pending: Option<Pending>,
    /// The version the client has.
    version: u64,
    changes: tokio::sync::broadcast::Receiver<Arc<Batch>>,
    ends_at: Instant,
    over: bool,
    _slot: Slot,
}

fn sync_event(version: u64, readings: u64) -> Bytes {
    Bytes::from(format!(
        "event: sync\nid: {version}\ndata: {{\"version\":{version},\"readings\":{readings}}}\n\n"
    ))
}

fn dropped_event(why: &str) -> Bytes {
    let data = serde_json::json!({ "error": why });
    Bytes::from(format!("event: dropped\ndata: {data}\n\n"))
}

impl Stream {
    /// The next bytes to send, or `None` when the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.over {
                return None;
            }
            match self.pending.take() {
                Some(Pending::Rendered {
                    bytes,
                    count,
                    version,
                }) => {
                    self.pending = Some(Pending::Sync { count, version });
                    if !bytes.is_empty() {
                        return Some(bytes);
                    }
                    continue;
                }
                Some(Pending::Resume {
                    mut resume,
                    mut count,
                    version,
                }) => {
                    let mut out = BytesMut::new();
                    let matcher = Matcher::new(&self.query);
                    while resume.pos < resume.entries.entries.len() && out.len() < CHUNK {
                        let e = &resume.entries.entries[resume.pos];
                        resume.pos += 1;
                        if e.version > resume.after && matcher.matches(e) {
                            out.extend_from_slice(e.frame(self.query.index));
                            count += 1;
                        }
                    }
                    if out.is_empty() {
                        self.pending = Some(Pending::Sync { count, version });
                        continue;
                    }
                    self.pending = Some(Pending::Resume {
                        resume,
                        count,
                        version,
                    });
                    return Some(out.freeze());
                }
                Some(Pending::Sync { count, version }) => {
                    self.version = version;
                    return Some(sync_event(version, count));
                }
                None => {}
            }
            let left = self.ends_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let received = tokio::select! {
                () = self.feed.stopped() => return None,
                () = tokio::time::sleep(left) => return None,
                r = tokio::time::timeout(HEARTBEAT, self.changes.recv()) => r,
            };
            match received {
                // Nothing for a while: a comment, so proxies keep it open.
                Err(_) => return Some(Bytes::from_static(b": heartbeat\n\n")),
                Ok(Ok(batch)) if batch.reset => {
                    self.over = true;
                    return Some(dropped_event(
                        "the store was replaced; reconnect without Last-Event-ID",
                    ));
                }
                Ok(Ok(batch)) if batch.version <= self.version => {}
                Ok(Ok(batch)) => {
                    // Every entry of a batch changed after the version this
                    // stream has: the place's rendering is the step.
                    // Never more than the place holds, which passed.
                    let (bytes, count) = batch
                        .entries
                        .rendered(&self.query, u64::MAX)
                        .unwrap_or_default();
                    self.pending = Some(Pending::Rendered {
                        bytes,
                        count,
                        version: batch.version,
                    });
                }
                Ok(Err(RecvError::Lagged(_))) => {
                    self.over = true;
                    return Some(dropped_event(
                        "this stream fell too far behind; reconnect with Last-Event-ID to resume",
                    ));
                }
                Ok(Err(RecvError::Closed)) => return None,
            }
        }
    }
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::InvalidQuery(QueryError {
        errors: vec![FieldError {
            field: field.into(),
            message,
        }],
    })
}

#[utoipa::path(
    get,
    path = "/api/stream/latest",
    tag = "queries",
    operation_id = "streamLatest",
    summary = "The latest readings of a place, pushed as they change (Server-Sent Events)",
    description = "First the place's latest readings (`reading` events, one per sensor, in \
        sensor id order), then `sync` (its `id` is the data version); then, after each \
        ingestion that changes any latest reading, the place's changed readings and `sync` \
        again. A `reading` event's data is a line of `GET /api/latest`'s NDJSON answer with \
        the `index` asked for, without `ageSeconds` and `resolution` (a reading of the live \
        tier carries the basis fields). Reconnecting with `Last-Event-ID` sends each sensor \
        of the place whose reading changed after that version, as it is now: no change is \
        lost. The place is `country`, `bbox` or `near` (and `sensorType`); one with more than \
        `--max-stream-sensors` sensors is refused (`400`: narrow it). A comment every 15 s \
        keeps idle streams open; a stream ends after an hour (reconnect to go on), or with \
        `dropped` when it falls more than 16 changes behind. Spends one request of the \
        `submits` budget, like `GET /api/latest`; each client may hold \
        `--max-streams-per-client` streams at once.",
    params(
        ("country" = Option<String>, Query,
            description = "A 2- or 3-letter country code as the feed sends it, case-insensitive",
            example = "DE"),
        ("bbox" = Option<String>, Query,
            description = "A bounding box `minLon,minLat,maxLon,maxLat` (as in `GET /api/latest`)",
            example = "9.0,48.6,9.4,48.9"),
        ("near" = Option<String>, Query,
            description = "A circle `lat,lon,radiusKm` (as in `GET /api/latest`)",
            example = "48.78,9.18,10"),
        ("sensorType" = Option<String>, Query,
            description = "Sensor types, comma-separated, case-insensitive", example = "SDS011"),
        ("index" = Option<crate::openapi::schema::IndexName>, Query,
            description = "The index the readings' `AQI` and `Range` show"),
        ("format" = Option<String>, Query,
            description = "`ndjson`, the only one (events carry JSON)"),
        ("Last-Event-ID" = Option<String>, Header,
            description = "The data version last received (a `sync` event's id), to resume"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream",
            body = crate::openapi::schema::StreamEvent),
        (status = 400, description = "Invalid fields (each named), a format other than \
            `ndjson`, or a place with more than `--max-stream-sensors` sensors",
            body = crate::openapi::schema::ErrorBody),
        (status = 401, description = "A malformed, unknown or revoked API key, or none under \
            `--auth required`", body = crate::openapi::schema::ErrorBody),
        (status = 429, description = "Over the client's `submits` budget, or the client already \
            has `--max-streams-per-client` streams open", body = crate::openapi::schema::ErrorBody),
        (status = 501, description = "The store keeps no data version (both of airq's do; \
            a store of another port implementation may not)", body = crate::openapi::schema::ErrorBody),
        (status = 503, description = "The reading store does not answer, or the gateway already \
            has `--max-streams` streams open", body = crate::openapi::schema::ErrorBody),
    ),
    security((), ("apiKey" = []), ("bearer" = []))
)]
pub async fn latest(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (query, format_given) = super::latest::parse(&uri)?;
    if format_given && query.format != Format::Ndjson {
        return Err(invalid(
            "format",
            "a stream's events carry NDJSON lines: leave format out, or say ndjson".into(),
        ));
    }
    let feed = app.live.clone();
    let slot = feed
        .slots
        .take(&caller.client)
        .map_err(|Full { max, whose }| ApiError::TooManyStreams { max, whose })?;
    let start = feed.start().await.map_err(|e| match e {
        BackendError::Unsupported(why) => ApiError::NotImplemented(format!(
            "live streams need a store with a data version: {why}"
        )),
        e => ApiError::unavailable("reading store unavailable")(e),
    })?;
    // A version this store never had (another store's) counts as none.
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&v| v <= start.version)
        .unwrap_or(0);
    // The first answer: the place's rendering, shared with every stream
    // of the place; after a `Last-Event-ID`, the place's entries changed
    // since, tested here (and counted first, for the bound).
    let too_many = |sensors: u64| {
        invalid(
            "query string",
            format!(
                "the place holds {sensors} sensors, more than a stream sends \
                 (--max-stream-sensors {}); narrow it with country, bbox, near or sensorType",
                feed.max_sensors
            ),
        )
    };
    let max = feed.max_sensors as u64;
    let pending = if after == 0 {
        let (bytes, count) = start.entries.rendered(&query, max).map_err(too_many)?;
        Pending::Rendered {
            bytes,
            count,
            version: start.version,
        }
    } else {
        let matcher = Matcher::new(&query);
        let count = start
            .entries
            .entries
            .iter()
            .filter(|e| e.version > after && matcher.matches(e))
            .count() as u64;
        if count > max {
            return Err(too_many(count));
        }
        Pending::Resume {
            resume: Resume {
                entries: start.entries,
                pos: 0,
                after,
            },
            count: 0,
            version: start.version,
        }
    };
    let stream = Stream {
        query,
        pending: Some(pending),
        version: after,
        changes: start.changes,
        ends_at: Instant::now() + live_feed::STREAM_LIFETIME,
        over: false,
        feed,
        _slot: slot,
    };
    let body = futures::stream::unfold(stream, |mut s| async move {
        let bytes = s.next().await?;
        Some((Ok::<_, Infallible>(bytes), s))
    });
    let mut response = Body::from_stream(body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tells nginx-like proxies not to hold events back.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

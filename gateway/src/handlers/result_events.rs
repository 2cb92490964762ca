//! `GET /api/results/{id}/events`: a queued query's progress pushed as
//! Server-Sent Events, and the long poll `GET /api/results/{id}?wait=` for
//! clients without them.
//!
//! The stream sends the current state at once, then each change, and ends
//! after the last one:
//!
//! | event     | `id` | data (JSON)                                              |
//! |-----------|------|----------------------------------------------------------|
//! | `queued`  | 1    | `{"id","status","createdAt","updatedAt","expiresAt","requestId"}` |
//! | `running` | 2    | the same                                                 |
//! | `done`    | 3    | the same, `rows` and `download` (`/api/results/{id}`); the stream ends |
//! | `failed`  | 3    | the same and `error`; the stream ends                    |
//! | `expired` | –    | `{"error"}`: the result expired or was purged meanwhile; the stream ends |
//!
//! An event's `id` is its state's rank, so a client that reconnects with
//! `Last-Event-ID` gets only what comes after what it has seen, and one
//! that has seen the end gets `204 No Content`, which tells an
//! `EventSource` to stop reconnecting. A stream lasts at most
//! [`follow::STREAM_LIFETIME`] (the client reconnects and loses nothing),
//! with a comment line every [`follow::HEARTBEAT`] while nothing happens.
//! How a gateway learns of changes, and the bounds on followers, are in
//! [`crate::follow`].

use super::results::{readable, state_of};
use crate::admission::Caller;
use crate::error::ApiError;
use crate::follow::{self, Follow};
use crate::state::AppState;
use airq_core::query::FieldError;
use airq_core::results::{ResultRecord, ResultState};
use airq_core::{QueryError, Timestamp};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// The rank of a state: an event's `id`. Done and failed are both last.
fn rank(state: ResultState) -> u8 {
    match state {
        ResultState::Queued => 1,
        ResultState::Running => 2,
        ResultState::Done | ResultState::Failed => 3,
    }
}

const LAST: u8 = 3;

/// The event a record's state makes.
fn event_of(r: &ResultRecord) -> Event {
    let mut data = state_of(r);
    match r.state {
        ResultState::Done => {
            data["rows"] = r.rows.into();
            data["download"] = format!("/api/results/{}", r.id).into();
        }
        ResultState::Failed => data["error"] = super::results::failure_of(r).into(),
        ResultState::Queued | ResultState::Running => {}
    }
    Event::default()
        .id(rank(r.state).to_string())
        .event(r.state.as_str())
        .data(data.to_string())
}

fn expired_event() -> Event {
    Event::default().event("expired").data(
        serde_json::json!({"error": "the result has expired; send the query again"}).to_string(),
    )
}

/// What a stream has yet to do.
struct Stream {
    app: AppState,
    id: Uuid,
    /// The highest rank sent (or seen before a reconnection).
    sent: u8,
    /// The record read when the request came, sent first.
    first: Option<Arc<ResultRecord>>,
    follow: Follow,
    ends_at: Instant,
    over: bool,
}

impl Stream {
    /// The next event, or `None` when the stream is over.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if self.over {
                return None;
            }
            let record = match self.first.take() {
                Some(r) => r,
                None => {
                    let left = self.ends_at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    if tokio::time::timeout(left, self.follow.next_change())
                        .await
                        .is_err()
                    {
                        return None;
                    }
                    match self.follow.read(self.app.backend.results.as_ref()).await {
                        Ok(Some(r)) => r,
                        Ok(None) => {
                            self.over = true;
                            return Some(expired_event());
                        }
                        Err(e) => {
                            // The next read may work; the client is told
                            // nothing it cannot act on.
                            tracing::warn!(id = %self.id, error = %e,
                                "result store unavailable to an event stream");
                            continue;
                        }
                    }
                }
            };
            if record.is_expired(Timestamp::now()) {
                self.over = true;
                return Some(expired_event());
            }
            let rank = rank(record.state);
            if rank == LAST {
                self.over = true;
            }
            if rank > self.sent {
                self.sent = rank;
                return Some(event_of(&record));
            }
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/results/{id}/events",
    tag = "queries",
    operation_id = "getResultEvents",
    summary = "A queued query's progress, pushed (Server-Sent Events)",
    description = "The result's state at once, then each change: events `queued` (id 1), \
        `running` (2), then `done` (3, with `rows` and the `download` path) or `failed` (3, \
        with `error`), after which the stream ends; `expired` (no id) if the result expires \
        meanwhile. Reconnecting with `Last-Event-ID` sends only what came after it; after \
        the last event, `204`. A comment line every 15 s keeps idle streams open, and a \
        stream ends after 10 minutes (reconnect to go on). Readable by whoever may read the \
        result. Spends one request of the `polls` budget; each client may follow \
        `--max-followers-per-client` results at once (streams and waiting polls).",
    params(
        ("id" = String, Path, description = "The result id (a UUID)",
            example = "6f1c2d0e-8a4b-4c1e-9f3a-2b7d5e8c1a90"),
        ("Last-Event-ID" = Option<String>, Header,
            description = "The last event id received (1, 2 or 3), to resume"),
    ),
    responses(
        (status = 200, description = "The event stream: each event as an `EventSource` \
            hands it over (`event`, `id`, `data`)",
            content_type = "text/event-stream", body = crate::openapi::schema::ResultEvent),
        (status = 204, description = "`Last-Event-ID` says the client has seen the last event"),
        (status = 400, description = "An API key in the URL", body = crate::openapi::schema::ErrorBody),
        (status = 401, description = "A malformed, unknown or revoked API key, or none under \
            `--auth required`", body = crate::openapi::schema::ErrorBody),
        (status = 404, description = "No such result: not a UUID, unknown, or submitted with \
            another API key", body = crate::openapi::schema::ErrorBody),
        (status = 410, description = "The result has expired", body = crate::openapi::schema::ErrorBody),
        (status = 429, description = "Over the client's `polls` budget, or the client already \
            follows `--max-followers-per-client` results", body = crate::openapi::schema::ErrorBody),
        (status = 503, description = "The result store does not answer, or the gateway already \
            has `--max-followers` followers", body = crate::openapi::schema::ErrorBody),
    ),
    security((), ("apiKey" = []), ("bearer" = []))
)]
pub async fn events(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = readable(&app, &caller, id).await?;
    // An id this stream never sends counts as none: start from the top.
    let seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u8>().ok())
        .filter(|&n| n <= LAST)
        .unwrap_or(0);
    if seen == LAST && rank(record.state) == LAST {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let follow = app.follows.start(&caller.client, record.id)?;
    let stream = Stream {
        id: record.id,
        app,
        sent: seen,
        first: Some(Arc::new(record)),
        follow,
        ends_at: Instant::now() + follow::STREAM_LIFETIME,
        over: false,
    };
    let events = futures::stream::unfold(stream, |mut s| async move {
        let event = s.next().await?;
        Some((Ok::<_, Infallible>(event), s))
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(follow::HEARTBEAT))
        .into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tells nginx-like proxies not to hold events back.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The `wait` of `GET /api/results/{id}?wait=`: absent or zero for none;
/// a humantime duration (`20s`) or seconds, at most
/// [`follow::MAX_WAIT`], else a `400` naming the field.
pub fn wait_of(query: Option<&str>) -> Result<Duration, ApiError> {
    let Some(query) = query else {
        return Ok(Duration::ZERO);
    };
    let mut wait = Duration::ZERO;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != "wait" {
            continue;
        }
        let bad = |message: String| {
            ApiError::InvalidQuery(QueryError {
                errors: vec![FieldError {
                    field: "wait".into(),
                    message,
                }],
            })
        };
        wait = airq_cli::duration::parse(&v).map_err(|e| {
            bad(format!(
                "must be a duration such as 20s (at most {} s): {e}",
                follow::MAX_WAIT.as_secs()
            ))
        })?;
        if wait > follow::MAX_WAIT {
            return Err(bad(format!(
                "must be at most {} s, got {v:?}",
                follow::MAX_WAIT.as_secs()
            )));
        }
    }
    Ok(wait)
}

/// Waits up to `wait` (and a second less than `--request-timeout`) for a
/// pending result to be done or failed; returns the record as it last
/// was.
pub async fn wait_for_end(
    app: &AppState,
    caller: &Caller,
    mut record: ResultRecord,
    wait: Duration,
) -> Result<ResultRecord, ApiError> {
    // Answered before `--request-timeout` cuts the response off.
    let wait = wait.min(app.request_timeout.saturating_sub(Duration::from_secs(1)));
    if wait.is_zero() || rank(record.state) == LAST {
        return Ok(record);
    }
    let mut follow = app.follows.start(&caller.client, record.id)?;
    let ends_at = Instant::now() + wait;
    loop {
        let left = ends_at.saturating_duration_since(Instant::now());
        if left.is_zero()
            || tokio::time::timeout(left, follow.next_change())
                .await
                .is_err()
        {
            return Ok(record);
        }
        match follow.read(app.backend.results.as_ref()).await {
            Ok(Some(r)) => record = Arc::unwrap_or_clone(r),
            // Gone meanwhile: what a plain poll now says.
            Ok(None) => return Err(ApiError::Expired),
            Err(e) => tracing::warn!(id = %record.id, error = %e,
                "result store unavailable to a waiting poll"),
        }
        if rank(record.state) == LAST || record.is_expired(Timestamp::now()) {
            return Ok(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_is_a_bounded_duration() {
        assert_eq!(wait_of(None).ok(), Some(Duration::ZERO));
        assert_eq!(wait_of(Some("x=1")).ok(), Some(Duration::ZERO));
        assert_eq!(
            wait_of(Some("wait=20s")).ok(),
            Some(Duration::from_secs(20))
        );
        assert_eq!(wait_of(Some("wait=5")).ok(), Some(Duration::from_secs(5)));
        for bad in ["wait=forever", "wait=26s", "wait=1h"] {
            let Err(ApiError::InvalidQuery(e)) = wait_of(Some(bad)) else {
                panic!("{bad} is refused");
            };
            assert_eq!(e.errors[0].field, "wait", "{bad}");
        }
    }
}

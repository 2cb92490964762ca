//! The queued answer: record the query as a result, hand it to the workers,
//! answer `202 Accepted` with where to poll.
//!
//! Backpressure: when more than `--max-backlog` requests are waiting on the
//! request queue, new queued queries are refused with `503` and
//! `Retry-After`, before anything is created. The depth is read at most
//! every 250 ms (and counts this process's own sends in between), so the
//! check stays cheap under load; the limit is therefore approximate when
//! several gateways enqueue at once.
//!
//! Fairness: a client may have at most its tier's `queued` queries queued
//! or running at once (`429` beyond). They are counted in the result store.
//! On one gateway the count and the creation of the new result run under
//! the client's lock ([`SubmitLocks`]), so on a store whose count sees
//! every write before it (SQLite) the cap holds exactly however many
//! submits arrive at once. Across gateways nothing serialises them: one
//! submit of the same client in flight on each other gateway at that moment
//! may pass too, so with `n` gateways a client can hold at most
//! `cap + n − 1` (measured: BENCHMARKS.md, "the queued cap under a
//! burst"). On DynamoDB the count is a query of a global secondary index,
//! which lags the writes (usually by under a second), so there a burst can
//! also pass the cap by the results the index does not show yet.

use crate::admission::Caller;
use crate::answer_headers;
use crate::error::ApiError;
use crate::request_id::RequestId;
use crate::state::App;
use airq_core::job::Job;
use airq_core::results::{Outcome, Submission};
use airq_core::ClientId;
use airq_core::{Query, Timestamp};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::hash::BuildHasher;
use uuid::Uuid;

/// How many locks the clients share ([`SubmitLocks`]).
const SUBMIT_LOCK_STRIPES: usize = 256;

/// The locks held from counting a client's queued queries to creating its
/// new one: a fixed set, each client always taking the same one (by the
/// hash of its id). A fixed set needs no cleanup and cannot grow with the
/// number of clients; two clients sharing a lock only wait for each
/// other's count and insert (a few milliseconds), never for a query.
pub struct SubmitLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
    hasher: std::hash::RandomState,
}

impl Default for SubmitLocks {
    fn default() -> Self {
        SubmitLocks {
            stripes: (0..SUBMIT_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            // Random per process: a client cannot choose an id that
            // shares another's lock on purpose.
            hasher: std::hash::RandomState::new(),
        }
    }
}

impl SubmitLocks {
    async fn lock(&self, client: &ClientId) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = self.hasher.hash_one(client) as usize % self.stripes.len();
        self.stripes[stripe].lock().await
    }
}

pub async fn enqueue(
    app: &App,
    caller: &Caller,
    request_id: &RequestId,
    query: &Query,
    respond_async: bool,
) -> Result<Response, ApiError> {
    let queue = &app.backend.request_send;
    let depth = app
        .backlog
        .get(|| queue.depth())
        .await
        .map_err(ApiError::unavailable("request queue unavailable"))?;
    if depth.visible > app.max_backlog {
        return Err(ApiError::Backlog {
            visible: depth.visible,
            max: app.max_backlog,
        });
    }

    let results = &app.backend.results;
    // Held until the new result exists, so that the next submit of this
    // client counts it (see the module documentation).
    let _counting = match caller.tier.max_queued {
        Some(_) => Some(app.submit_locks.lock(&caller.client).await),
        None => None,
    };
    if let Some(cap) = caller.tier.max_queued {
        let pending = results
            .pending(&caller.client, Timestamp::now())
            .await
            .map_err(ApiError::unavailable("result store unavailable"))?;
        if pending >= u64::from(cap) {
            return Err(ApiError::TooManyQueued {
                cap,
                tier: caller.tier.name.clone(),
            });
        }
    }

    let id = Uuid::new_v4();
    let submission = Submission {
        client: caller.client,
        request_id: Some(request_id.to_string()),
    };
    results
        .create(id, query, app.result_ttl, &submission)
        .await
        .map_err(ApiError::unavailable("result store unavailable"))?;
    drop(_counting);
    if let Err(e) = queue
        .send(&Job::new(id, query, app.max_result_rows, Some(request_id.to_string())).to_json())
        .await
    {
        // Tell a client that polls anyway, instead of leaving it queued.
        let failed = Outcome::Failed {
            error: "the query could not be handed to the workers".into(),
        };
        if let Err(e2) = results.finish(id, &failed).await {
            tracing::warn!(%id, error = %e2, "could not mark an unqueued query as failed");
        }
        return Err(ApiError::unavailable("request queue unavailable")(e));
    }
    app.backlog.update(|d| d.visible += 1).await;
    metrics::counter!("airq_results_created_total").increment(1);
    metrics::counter!("airq_queries_total", "answer" => "queued").increment(1);
    tracing::debug!(%id, "query queued");

    let location = format!("/api/results/{id}");
    let mut response = (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": id, "status": "queued", "requestId": request_id.as_str() })),
    )
        .into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(answer_headers::ANSWER, HeaderValue::from_static("queued"));
    // Which index the answer will be in: told now, so that a client need
    // not wait for the answer to know how to read it.
    answer_headers::index(h, query.index);
    answer_headers::correction(h, query.correction);
    if respond_async {
        h.insert(
            "preference-applied",
            HeaderValue::from_static("respond-async"),
        );
    }
    Ok(response)
}

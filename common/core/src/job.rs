//! The messages that cross the queues.
//!
//! RequestSend carries a [`Job`] from a gateway to a worker; RequestReceive
//! carries a [`JobResult`] back. Both are JSON so that an operator can read a
//! dead-lettered message.

use crate::query::{Query, QueryError, QueryLimits};
use crate::results::{Outcome, DEFAULT_MAX_RESULT_ROWS};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Queue names, the same on every backend.
pub const REQUEST_SEND: &str = "RequestSend";
pub const REQUEST_RECEIVE: &str = "RequestReceive";

/// The dead-letter queue of a queue.
pub fn dead_letter_name(queue: &str) -> String {
    format!("{queue}-dlq")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: Uuid,
    /// The query in canonical JSON (see [`Query::to_json`]).
    pub query: String,
    /// The most rows its answer may have (the gateway's
    /// `--max-result-rows`); absent in jobs from gateways of an earlier
    /// version, which get [`DEFAULT_MAX_RESULT_ROWS`].
    #[serde(rename = "maxRows", default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u64>,
    /// The request id of the submit that queued it (`X-Request-Id`), so
    /// the worker's log lines name it; absent from earlier gateways.
    #[serde(rename = "requestId", default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Job {
    pub fn new(id: Uuid, query: &Query, max_rows: u64, request_id: Option<String>) -> Self {
        Job {
            id,
            query: query.to_json(),
            max_rows: Some(max_rows),
            request_id,
        }
    }

    /// The row limit of its answer.
    pub fn max_rows(&self) -> u64 {
        self.max_rows.unwrap_or(DEFAULT_MAX_RESULT_ROWS)
    }

    pub fn to_json(&self) -> String {
        // A struct of a UUID and a string always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes a message body. The id is recovered even when the query is
    /// bad, so the user can be told why their query failed.
    pub fn parse(body: &str) -> Result<Job, JobError> {
        serde_json::from_str(body).map_err(|e| {
            let id = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("id")?.as_str()?.parse().ok());
            JobError::Malformed {
                id,
                reason: e.to_string(),
            }
        })
    }

    /// The query, re-validated (without a span limit: the gateway that
    /// accepted it applied its own).
    pub fn query(&self) -> Result<Query, QueryError> {
        Query::from_json(self.query.as_bytes(), &QueryLimits::unbounded())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("malformed job message: {reason}")]
    Malformed { id: Option<Uuid>, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobResult {
    pub id: Uuid,
    pub outcome: Outcome,
}

impl JobResult {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(body: &str) -> Result<JobResult, serde_json::Error> {
        serde_json::from_str(body)
    }
}

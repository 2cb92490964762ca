//! The dead-letter watcher: a job that landed on RequestSend-dlq (the
//! workers kept crashing or timing out on it) is marked failed, so its user
//! gets a reason instead of polling forever.

use super::excerpt;
use crate::follow::Follows;
use airq_core::job::{Job, JobError};
use airq_core::queue::Message;
use airq_core::results::{Outcome, ResultStore};
use std::sync::Arc;

/// Why a dead-lettered query failed, as its user sees it.
fn dead_letter_reason(max_receives: u32) -> String {
    format!(
        "the query failed on {max_receives} workers in a row (each crashed or timed out) \
         and was moved to the dead-letter queue"
    )
}

/// Marks one dead-lettered job's query failed; false (keep the message, so
/// it comes back) when the store could not take it.
pub(super) async fn record_dead_letter(
    results: Arc<dyn ResultStore>,
    follows: &Follows,
    max_receives: u32,
    message: Message,
) -> bool {
    let id = match Job::parse(&message.body) {
        Ok(job) => job.id,
        Err(JobError::Malformed { id: Some(id), .. }) => id,
        Err(JobError::Malformed { id: None, reason }) => {
            tracing::error!(msg_id = %message.id, %reason, body = excerpt(&message.body),
                "dead-lettered message names no job; dropping it");
            return true;
        }
    };
    tracing::warn!(%id, msg_id = %message.id, body = excerpt(&message.body),
        "query dead-lettered; marking it failed");
    let outcome = Outcome::Failed {
        error: dead_letter_reason(max_receives),
    };
    match results.finish(id, &outcome).await {
        Ok(_) => {
            follows.finished(id);
            true
        }
        Err(e) => {
            tracing::warn!(%id, error = %e, "could not mark a dead-lettered query failed; will retry");
            false
        }
    }
}

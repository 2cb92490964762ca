//! The result collector: records what workers send back on RequestReceive
//! in the result store, where the query's user polls for it.

use super::excerpt;
use crate::follow::Follows;
use airq_core::job::JobResult;
use airq_core::queue::Message;
use airq_core::results::{Outcome, ResultStore};
use std::sync::Arc;

/// Records one worker's result and wakes its followers here; false (keep
/// the message, so it comes back) when the store could not take it.
pub(super) async fn record_result(
    results: Arc<dyn ResultStore>,
    follows: &Follows,
    message: Message,
) -> bool {
    let result = match JobResult::parse(&message.body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(msg_id = %message.id, error = %e, body = excerpt(&message.body),
                "malformed result message; dropping it");
            return true;
        }
    };
    match results.finish(result.id, &result.outcome).await {
        Ok(recorded) => {
            if recorded {
                let outcome = match result.outcome {
                    Outcome::Failed { .. } => "failed",
                    Outcome::Done { .. } | Outcome::Stored { .. } => "done",
                };
                metrics::counter!("airq_results_finished_total", "outcome" => outcome).increment(1);
            }
            tracing::debug!(id = %result.id, recorded, "result received");
            follows.finished(result.id);
            true
        }
        Err(e) => {
            tracing::warn!(id = %result.id, error = %e, "could not record a result; will retry");
            false
        }
    }
}

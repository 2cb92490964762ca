//! Running one request: from a queue message to the outcome its user sees.

use airq_core::job::Job;
use airq_core::results::{store_answer, Outcome};
use airq_core::Backend;
use airq_core::BackendError;
use std::time::Duration;
use uuid::Uuid;

/// What became of a request.
pub enum Handled {
    /// A final outcome for the user of result `Uuid` (a CSV or a permanent
    /// failure).
    Outcome(Uuid, Outcome),
    /// Another delivery already produced this request's outcome.
    Duplicate,
    /// The request could not be identified at all; nothing to report.
    Unidentifiable,
}

/// Runs the query of `job` against the store and writes its answer (in
/// the format the query asked for) into the
/// result store as it is rendered (small answers inline, large ones chunk
/// by chunk into the payload space: memory stays bounded whatever the
/// answer's size), stopping at the job's row limit.
/// Store errors are returned (they may be transient: the request is
/// retried); a query that cannot run, an answer over the limit and a store
/// that refuses the write (disk full) are failures its user is told about.
pub async fn run_query(
    backend: &Backend,
    job: &Job,
    test_delay: Option<Duration>,
) -> Result<Outcome, BackendError> {
    let query = match job.query() {
        Ok(q) => q,
        Err(e) => {
            return Ok(Outcome::Failed {
                error: format!("invalid query: {e}"),
            })
        }
    };
    let outcome = store_answer(
        backend.results.as_ref(),
        job.id,
        backend.readings.query_answer(&query),
        job.max_rows(),
    )
    .await;
    if let Some(d) = test_delay {
        tokio::time::sleep(d).await;
    }
    outcome
}

//! Running one request: from a queue message to the outcome its user sees.

use airq_core::export::{render, RenderError};
use airq_core::job::Job;
use airq_core::results::Outcome;
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

/// Runs the query of `job` against the store and renders its CSV.
/// Store errors are returned (they may be transient: the request is retried);
/// a query that cannot run is a permanent failure.
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
    let rendered = render(backend.readings.query_csv(&query), usize::MAX).await;
    if let Some(d) = test_delay {
        tokio::time::sleep(d).await;
    }
    match rendered {
        Ok((csv, rows)) => Ok(Outcome::Done {
            // The writer only ever receives UTF-8 text.
            csv: String::from_utf8(csv)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            rows,
        }),
        // Possibly transient: the request is retried.
        Err(RenderError::Store(e)) => Err(e),
        Err(e) => Ok(Outcome::Failed {
            error: e.to_string(),
        }),
    }
}

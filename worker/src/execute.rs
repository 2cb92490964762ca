//! Running one request: from a queue message to the outcome its user sees.

use airq_common::backend::Backend;
use airq_common::export::CsvWriter;
use airq_common::job::Job;
use airq_common::results::Outcome;
use airq_common::BackendError;
use futures::StreamExt;
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
    let mut csv = match CsvWriter::new(Vec::new()) {
        Ok(w) => w,
        Err(e) => return Ok(failed_csv(e)),
    };
    let mut rows = backend.readings.query(&query);
    while let Some(reading) = rows.next().await {
        if let Err(e) = csv.write(&reading?) {
            return Ok(failed_csv(e));
        }
    }
    if let Some(d) = test_delay {
        tokio::time::sleep(d).await;
    }
    let rows = csv.rows();
    Ok(match csv.finish() {
        Ok(bytes) => Outcome::Done {
            // The writer only ever receives UTF-8 text.
            csv: String::from_utf8_lossy(&bytes).into_owned(),
            rows,
        },
        Err(e) => failed_csv(e),
    })
}

fn failed_csv(e: csv::Error) -> Outcome {
    Outcome::Failed {
        error: format!("could not render the CSV: {e}"),
    }
}

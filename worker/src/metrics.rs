//! The worker's Prometheus metrics, served with `--metrics-listen` (see
//! `airq_cli::metrics`). Without it nothing is installed and every call
//! here records nowhere.
//!
//! Every series is registered at start (counters at zero), so a scrape
//! shows the whole set from the first second and `rate()` has a baseline.

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use std::time::Duration;

pub const JOBS_RECEIVED: &str = "airq_worker_jobs_received_total";
pub const JOBS: &str = "airq_worker_jobs_total";
pub const JOB_DURATION: &str = "airq_worker_job_duration_seconds";
pub const JOB_ROWS: &str = "airq_worker_job_rows";
pub const HEARTBEATS: &str = "airq_worker_heartbeats_total";
pub const STALE_RECEIPTS: &str = "airq_worker_stale_receipts_total";
pub const RECEIVE_WAIT: &str = "airq_worker_receive_wait_seconds";
pub const CONCURRENCY: &str = "airq_worker_concurrency";
pub const BUSY: &str = "airq_worker_busy";

/// What became of a received job: the `outcome` label of [`JOBS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Its CSV was posted.
    Done,
    /// A permanent failure was posted (bad query, answer over the row
    /// limit, disk full), or the message had no result id to post it to.
    Failed,
    /// Another delivery had already finished it.
    Duplicate,
    /// A transient error (the store, the queue): left to come back and be
    /// retried (dead-lettered after the maximum receives).
    Retried,
    /// Unfinished at shutdown, handed back to the queue.
    Returned,
}

impl JobOutcome {
    pub const ALL: [JobOutcome; 5] = [
        JobOutcome::Done,
        JobOutcome::Failed,
        JobOutcome::Duplicate,
        JobOutcome::Retried,
        JobOutcome::Returned,
    ];

    pub fn label(self) -> &'static str {
        match self {
            JobOutcome::Done => "done",
            JobOutcome::Failed => "failed",
            JobOutcome::Duplicate => "duplicate",
            JobOutcome::Retried => "retried",
            JobOutcome::Returned => "returned",
        }
    }
}

/// Describes and registers every series; `concurrency` is this worker's
/// slots (so `count(airq_worker_concurrency)` counts the workers and
/// `sum(...)` their slots).
pub fn register(concurrency: usize) {
    describe_counter!(
        JOBS_RECEIVED,
        Unit::Count,
        "Request messages received from RequestSend"
    );
    describe_counter!(
        JOBS,
        Unit::Count,
        "Received jobs by outcome: done, failed, duplicate, retried (transient error), returned (to the queue at shutdown)"
    );
    describe_histogram!(
        JOB_DURATION,
        Unit::Seconds,
        "Time from a job's receipt to its outcome posted (done and failed jobs)"
    );
    describe_histogram!(JOB_ROWS, Unit::Count, "Rows of each done job's answer");
    describe_counter!(
        HEARTBEATS,
        Unit::Count,
        "Visibility renewals of jobs in progress"
    );
    describe_counter!(
        STALE_RECEIPTS,
        Unit::Count,
        "Receipts found stale (the message was received again elsewhere)"
    );
    describe_histogram!(
        RECEIVE_WAIT,
        Unit::Seconds,
        "Time each receive call waited (long polling: high when idle)"
    );
    describe_gauge!(CONCURRENCY, Unit::Count, "Jobs this worker runs at once");
    describe_gauge!(BUSY, Unit::Count, "Jobs in progress");

    counter!(JOBS_RECEIVED).absolute(0);
    for outcome in JobOutcome::ALL {
        counter!(JOBS, "outcome" => outcome.label()).absolute(0);
    }
    counter!(HEARTBEATS).absolute(0);
    counter!(STALE_RECEIPTS).absolute(0);
    // Registered without a sample: rendered with zero counts.
    let _ = histogram!(JOB_DURATION);
    let _ = histogram!(JOB_ROWS);
    let _ = histogram!(RECEIVE_WAIT);
    gauge!(CONCURRENCY).set(concurrency as f64);
    gauge!(BUSY).set(0.0);
}

pub fn received(messages: usize) {
    counter!(JOBS_RECEIVED).increment(messages as u64);
}

pub fn receive_waited(waited: Duration) {
    histogram!(RECEIVE_WAIT).record(waited.as_secs_f64());
}

pub fn job(outcome: JobOutcome) {
    counter!(JOBS, "outcome" => outcome.label()).increment(1);
}

/// A job that ran to an outcome (done or failed), after `took`, with
/// `rows` rows when done.
pub fn ran(took: Duration, rows: Option<u64>) {
    histogram!(JOB_DURATION).record(took.as_secs_f64());
    if let Some(rows) = rows {
        histogram!(JOB_ROWS).record(rows as f64);
    }
}

pub fn heartbeat() {
    counter!(HEARTBEATS).increment(1);
}

pub fn stale_receipt() {
    counter!(STALE_RECEIPTS).increment(1);
}

/// A job in progress, counted in [`BUSY`] until dropped (also when its task
/// is aborted at shutdown).
pub struct Busy(());

impl Busy {
    pub fn start() -> Busy {
        gauge!(BUSY).increment(1.0);
        Busy(())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        gauge!(BUSY).decrement(1.0);
    }
}

//! Command-line configuration of a worker.

use airq_cli::connect::BackendArgs;
use airq_cli::logging::LogArgs;
use clap::Parser;
use std::time::Duration;

/// Runs queued air-quality queries: consumes RequestSend, writes each
/// result's CSV to RequestReceive. Start as many as the queue needs, on any
/// number of hosts.
#[derive(Debug, Parser)]
#[command(name = "airq-worker", version)]
pub struct Cli {
    #[command(flatten)]
    pub backend: BackendArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// Queries run at once (default: the number of CPUs).
    #[arg(long, env = "AIRQ_WORKER_CONCURRENCY")]
    pub concurrency: Option<usize>,

    /// How long a received request stays hidden from other workers; a
    /// heartbeat renews it while the query runs, so a crashed worker's
    /// request comes back after at most this long.
    #[arg(long, env = "AIRQ_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub visibility_timeout: Duration,

    /// Longest wait of one receive call (long polling).
    #[arg(long, env = "AIRQ_RECEIVE_WAIT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub receive_wait: Duration,

    /// On SIGTERM/SIGINT, how long in-flight queries may take to finish
    /// before their requests are handed back to the queue.
    #[arg(long, env = "AIRQ_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Test-only: sleep this long inside every query, to exercise crashes
    /// and shutdowns mid-query.
    #[arg(long, env = "AIRQ_TEST_QUERY_DELAY", hide = true, value_parser = humantime::parse_duration)]
    pub test_query_delay: Option<Duration>,
}

impl Cli {
    pub fn concurrency(&self) -> usize {
        self.concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1)
    }
}

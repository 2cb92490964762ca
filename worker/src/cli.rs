//! Command-line configuration of a worker.

use airq_cli::connect::BackendArgs;
use airq_cli::logging::LogArgs;
use airq_cli::metrics::MetricsArgs;
use airq_cli::renamed::{self, Renamed};
use airq_cli::{defaults, duration};
use clap::Parser;
use std::time::Duration;

/// Runs queued air-quality queries: consumes RequestSend, writes each
/// result's CSV to RequestReceive. Start as many as the queue needs, on any
/// number of hosts.
#[derive(Debug, Parser)]
// A flag given twice takes its last value, so that `airq-deploy up
// --worker-args` can override the flags `up` passes (e.g. --metrics-listen).
#[command(name = "airq-worker", version, args_override_self = true)]
pub struct Cli {
    #[command(flatten)]
    pub backend: BackendArgs,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// Queries run at once (default: the number of CPUs).
    #[arg(long, env = "AIRQ_WORKER_CONCURRENCY")]
    pub concurrency: Option<usize>,

    /// How long a received request stays hidden from other workers; a
    /// heartbeat renews it while the query runs, so a crashed worker's
    /// request comes back after at most this long.
    #[arg(long, env = "AIRQ_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = duration::parse)]
    pub visibility_timeout: Duration,

    /// Longest wait of one receive call (long polling).
    #[arg(long, env = "AIRQ_RECEIVE_WAIT", default_value = "20s", value_parser = duration::parse)]
    pub receive_wait: Duration,

    /// On SIGTERM/SIGINT, how long in-flight queries may take to finish
    /// before their requests are handed back to the queue. (Was
    /// `--shutdown-timeout`.)
    #[arg(long, env = "AIRQ_SHUTDOWN_GRACE", default_value = defaults::SHUTDOWN_GRACE, value_parser = duration::parse)]
    pub shutdown_grace: Duration,

    /// Test-only: sleep this long inside every query, to exercise crashes
    /// and shutdowns mid-query.
    #[arg(long, env = "AIRQ_TEST_QUERY_DELAY", hide = true, value_parser = duration::parse)]
    pub test_query_delay: Option<Duration>,
}

/// The flags renamed in this binary, still accepted with a warning.
pub const RENAMED: &[Renamed] = &[renamed::SHUTDOWN_TIMEOUT];

impl Cli {
    pub fn concurrency(&self) -> usize {
        self.concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed_with_working_defaults() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["airq-worker"]).unwrap();
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.visibility_timeout, Duration::from_secs(30));
        assert!(c.concurrency() >= 1);
        assert_eq!(c.metrics.listen(), None, "metrics are off by default");
    }

    #[test]
    fn a_flag_given_twice_takes_its_last_value() {
        let c = Cli::try_parse_from([
            "airq-worker",
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "0.0.0.0:9101",
        ])
        .unwrap();
        assert_eq!(c.metrics.listen(), Some("0.0.0.0:9101"));
    }

    #[test]
    fn the_old_shutdown_flag_still_works() {
        let mut notes = renamed::Notes::default();
        let args = renamed::rewrite_args(
            ["airq-worker", "--shutdown-timeout", "5"].map(std::ffi::OsString::from),
            RENAMED,
            &mut notes,
        );
        let c = Cli::try_parse_from(args).unwrap();
        assert_eq!(c.shutdown_grace, Duration::from_secs(5));
        assert_eq!(notes.as_slice().len(), 1);
        assert!(notes.as_slice()[0].contains("--shutdown-grace"));
    }
}

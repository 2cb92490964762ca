//! Command line. Every flag has an environment fallback (`AIRQ_LT_*`) and
//! a working default: `airq-loadtest` alone sends the original benchmark
//! query 100 times from 10 users to http://127.0.0.1:8080.

use crate::client::ApiKey;
use crate::journey::Follow;
use crate::plan::{Arrival, StageTarget};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use airq_cli::duration::parse as duration;
use airq_cli::logging::LogArgs;

#[derive(Debug, Parser)]
#[command(
    name = "airq-loadtest",
    version,
    about = "Load generator for airq: closed/open-loop and staged load through the real query journey \
             (submit, poll, CSV), with coordinated-omission-corrected latencies, HdrHistogram \
             statistics, charts and pass/fail thresholds",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,

    /// Logs on stderr (level from RUST_LOG; default warn).
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a load test (the default when no subcommand is given).
    Run(Box<RunArgs>),
    /// The benchmark suite: synthetic store, local stack, seed matrix,
    /// rate sweeps, /healthz throughput; writes report.md and SVG charts.
    Bench(Box<BenchArgs>),
}

/// What to send to `POST /api/query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryMix {
    /// The original benchmark query, moved to the data present.
    Fixed,
    /// A seeded random mix of realistic filters.
    Random,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The airq gateway to load (http://HOST:PORT). Only loopback addresses
    /// unless --allow-remote.
    #[arg(env = "AIRQ_LT_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// What each arrival does: `query` (submit, poll until the CSV) or a
    /// path to GET (e.g. /healthz).
    #[arg(long, env = "AIRQ_LT_ENDPOINT", default_value = "query")]
    pub endpoint: String,

    // ── load model ──────────────────────────────────────────────────────
    /// Closed loop: requests to send in all.
    #[arg(short = 'n', long, env = "AIRQ_LT_REQUESTS", help_heading = "Load")]
    pub requests: Option<u64>,

    /// Closed loop: virtual users sending at once.
    #[arg(
        short = 'c',
        long,
        env = "AIRQ_LT_CONCURRENCY",
        default_value_t = 10,
        help_heading = "Load"
    )]
    pub concurrency: usize,

    /// Open loop: arrivals per second (with --duration).
    #[arg(short = 'r', long, env = "AIRQ_LT_RATE", help_heading = "Load")]
    pub rate: Option<f64>,

    /// Open loop: how long to keep arriving; closed loop: a time limit.
    #[arg(short = 'd', long, env = "AIRQ_LT_DURATION", value_parser = duration, help_heading = "Load")]
    pub duration: Option<Duration>,

    /// Open loop: arrival spacing.
    #[arg(long, env = "AIRQ_LT_ARRIVAL", value_enum, default_value_t = Arrival::Poisson, help_heading = "Load")]
    pub arrival: Arrival,

    /// Staged scenario DURATION:TARGET,… (e.g. 30s:50,60s:50,10s:0): linear
    /// ramps from 0 through each target.
    #[arg(long, env = "AIRQ_LT_STAGES", help_heading = "Load")]
    pub stages: Option<String>,

    /// What the stage targets are: arrivals/s (open loop) or users.
    #[arg(long, env = "AIRQ_LT_STAGE_TARGET", value_enum, default_value_t = StageTarget::Rate, help_heading = "Load")]
    pub stage_target: StageTarget,

    /// Closed-loop grid: `seed` (10/10,100/50,500/100,1000/500,2500/500) or
    /// REQUESTS/CONCURRENCY,…
    #[arg(long, env = "AIRQ_LT_MATRIX", help_heading = "Load")]
    pub matrix: Option<String>,

    /// Open-loop sweep: rates to run one after the other, each for
    /// --duration (default 10s), e.g. 100,200,400.
    #[arg(long, env = "AIRQ_LT_RATES", help_heading = "Load")]
    pub rates: Option<String>,

    /// Open loop: most journeys in flight at once; arrivals beyond wait
    /// (and count as late).
    #[arg(
        long,
        env = "AIRQ_LT_MAX_IN_FLIGHT",
        default_value_t = 1000,
        help_heading = "Load"
    )]
    pub max_in_flight: usize,

    /// Hold this many idle, half-open connections (part of a request
    /// header, then nothing) to the target during the run, reopening each
    /// one the server closes, and report how long the server kept them.
    #[arg(long, env = "AIRQ_LT_IDLE_CONNECTIONS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=crate::idle::MAX_IDLE as i64),
          help_heading = "Load")]
    pub idle_connections: u32,

    /// After the run, how long to wait for the server to close the idle
    /// connections still open.
    #[arg(long, env = "AIRQ_LT_IDLE_WAIT", default_value = "30s", value_parser = duration, help_heading = "Load")]
    pub idle_wait: Duration,

    /// A request starting more than this after its intended time counts as late.
    #[arg(long, env = "AIRQ_LT_LATE_AFTER", default_value = "10ms", value_parser = duration, help_heading = "Load")]
    pub late_after: Duration,

    /// Safety bound: the most arrivals one run may plan.
    #[arg(
        long,
        env = "AIRQ_LT_MAX_REQUESTS",
        default_value_t = 2_000_000,
        help_heading = "Load"
    )]
    pub max_requests: u64,

    /// After the plan ends, how long journeys in flight may finish; they are
    /// then cut (counted as timeouts).
    #[arg(long, env = "AIRQ_LT_DRAIN", default_value = "30s", value_parser = duration, help_heading = "Load")]
    pub drain: Duration,

    /// Pause between the steps of a matrix or sweep.
    #[arg(long, env = "AIRQ_LT_PAUSE", default_value = "2s", value_parser = duration, help_heading = "Load")]
    pub pause: Duration,

    /// Unrecorded requests (closed loop, --concurrency users) before
    /// measuring, to open connections and warm caches.
    #[arg(
        long,
        env = "AIRQ_LT_WARMUP",
        default_value_t = 0,
        help_heading = "Load"
    )]
    pub warmup: u64,

    // ── journey ─────────────────────────────────────────────────────────
    /// Query mix.
    #[arg(long, env = "AIRQ_LT_QUERY", value_enum, default_value_t = QueryMix::Fixed, help_heading = "Journey")]
    pub query: QueryMix,

    /// Queries from a JSON-lines file (one query object a line), cycled;
    /// overrides --query.
    #[arg(long, env = "AIRQ_LT_QUERIES", help_heading = "Journey")]
    pub queries: Option<PathBuf>,

    /// Seed of the random mix and of Poisson arrivals.
    #[arg(
        long,
        env = "AIRQ_LT_SEED",
        default_value_t = 42,
        help_heading = "Journey"
    )]
    pub seed: u64,

    /// Send `Prefer: respond-async`, forcing the queued path.
    #[arg(long, env = "AIRQ_LT_PREFER_ASYNC", help_heading = "Journey")]
    pub prefer_async: bool,

    /// How a queued result is followed: `poll` (every --poll-interval),
    /// `wait` (long polls, `?wait=20s`) or `events` (its Server-Sent Events
    /// stream, then the answer). Each request after the submit counts as a
    /// poll in the report.
    #[arg(long, env = "AIRQ_LT_FOLLOW", value_enum, default_value_t = Follow::Poll, help_heading = "Journey")]
    pub follow: Follow,

    /// Wait before the first poll of a queued result.
    #[arg(long, env = "AIRQ_LT_POLL_INTERVAL", default_value = "50ms", value_parser = duration, help_heading = "Journey")]
    pub poll_interval: Duration,

    /// Each further poll waits this many times longer (1 = a fixed interval).
    #[arg(
        long,
        env = "AIRQ_LT_POLL_BACKOFF",
        default_value_t = 1.5,
        help_heading = "Journey"
    )]
    pub poll_backoff: f64,

    /// The longest wait between two polls.
    #[arg(long, env = "AIRQ_LT_POLL_MAX_INTERVAL", default_value = "1s", value_parser = duration, help_heading = "Journey")]
    pub poll_max_interval: Duration,

    /// Wait as the server's Retry-After says instead of --poll-interval.
    #[arg(long, env = "AIRQ_LT_POLL_RETRY_AFTER", help_heading = "Journey")]
    pub poll_retry_after: bool,

    /// Most polls per query before giving up (poll_cap error).
    #[arg(
        long,
        env = "AIRQ_LT_MAX_POLLS",
        default_value_t = 1200,
        help_heading = "Journey"
    )]
    pub max_polls: u32,

    /// Longest wait for a queued result, from submit (poll_cap error).
    #[arg(long, env = "AIRQ_LT_POLL_TIMEOUT", default_value = "60s", value_parser = duration, help_heading = "Journey")]
    pub poll_timeout: Duration,

    /// Time limit of one HTTP exchange (connection, request and body).
    #[arg(long, env = "AIRQ_LT_TIMEOUT", default_value = "30s", value_parser = duration, help_heading = "Journey")]
    pub timeout: Duration,

    /// Time limit of opening a connection.
    #[arg(long, env = "AIRQ_LT_CONNECT_TIMEOUT", default_value = "5s", value_parser = duration, help_heading = "Journey")]
    pub connect_timeout: Duration,

    /// API key sent as `X-API-Key` on every request (submits, polls,
    /// downloads, /api/meta). Never printed or written to a report.
    #[arg(long, env = "AIRQ_API_KEY", value_name = "KEY", hide_env_values = true,
          value_parser = ApiKeyParser, help_heading = "Journey")]
    pub api_key: Option<ApiKey>,

    /// Send `Accept-Encoding: gzip` on every request, as browsers do:
    /// answers come gzipped and are timed and counted as they arrive
    /// (compressed), not decoded.
    #[arg(long, env = "AIRQ_LT_GZIP", help_heading = "Journey")]
    pub gzip: bool,

    /// Allow targets that are not loopback addresses.
    #[arg(long, env = "AIRQ_LT_ALLOW_REMOTE", help_heading = "Journey")]
    pub allow_remote: bool,

    // ── output ──────────────────────────────────────────────────────────
    /// Name of the run in reports.
    #[arg(long, env = "AIRQ_LT_LABEL", help_heading = "Output")]
    pub label: Option<String>,

    /// Write the JSON summary here (`-` for stdout, replacing the table).
    #[arg(long, env = "AIRQ_LT_JSON", help_heading = "Output")]
    pub json: Option<PathBuf>,

    /// Write one CSV line per request here.
    #[arg(long, env = "AIRQ_LT_CSV", help_heading = "Output")]
    pub csv: Option<PathBuf>,

    /// Write SVG charts into this directory.
    #[arg(long, env = "AIRQ_LT_CHARTS", help_heading = "Output")]
    pub charts: Option<PathBuf>,

    /// A pass/fail gate such as 'p99<200ms' or 'errors==0' (repeatable);
    /// a failed one makes the exit status 2.
    #[arg(
        long = "threshold",
        env = "AIRQ_LT_THRESHOLDS",
        value_delimiter = ';',
        help_heading = "Output"
    )]
    pub thresholds: Vec<String>,

    /// No live progress bar.
    #[arg(long, env = "AIRQ_LT_NO_PROGRESS", help_heading = "Output")]
    pub no_progress: bool,

    /// Generator threads (default: one per CPU).
    #[arg(long, env = "AIRQ_LT_THREADS", help_heading = "Output")]
    pub threads: Option<usize>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Where the report, charts, summaries and the store go.
    #[arg(long, env = "AIRQ_BENCH_OUT", default_value = "target/bench")]
    pub out: PathBuf,

    /// Days of synthetic readings.
    #[arg(long, env = "AIRQ_BENCH_DAYS", default_value_t = 30)]
    pub days: u32,

    /// Synthetic sensors.
    #[arg(long, env = "AIRQ_BENCH_SENSORS", default_value_t = 15_000)]
    pub sensors: u32,

    /// Rebuild the synthetic store even if one of this shape exists.
    #[arg(long, env = "AIRQ_BENCH_FRESH_STORE")]
    pub fresh_store: bool,

    /// Worker processes of the stack.
    #[arg(long, env = "AIRQ_BENCH_WORKERS", default_value_t = 2)]
    pub workers: usize,

    /// Extra gateway arguments (passed to airq-deploy --gateway-args).
    #[arg(
        long,
        env = "AIRQ_BENCH_GATEWAY_ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub gateway_args: String,

    /// Extra worker arguments (passed to airq-deploy --worker-args).
    #[arg(
        long,
        env = "AIRQ_BENCH_WORKER_ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub worker_args: String,

    /// Where the airq binaries are (default: beside this one).
    #[arg(long, env = "AIRQ_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Length of each open-loop step.
    #[arg(long, env = "AIRQ_BENCH_STEP", default_value = "10s", value_parser = duration)]
    pub step: Duration,

    /// Rates of the fixed-query sweep (arrivals/s).
    #[arg(
        long,
        env = "AIRQ_BENCH_FIXED_RATES",
        default_value = "100,200,400,600,800,1000,1200,1500,2000"
    )]
    pub fixed_rates: String,

    /// Rates of the random-mix sweep (arrivals/s).
    #[arg(
        long,
        env = "AIRQ_BENCH_RANDOM_RATES",
        default_value = "100,200,300,400,500,600,800"
    )]
    pub random_rates: String,

    /// The sustained random-mix run: rate and length.
    #[arg(long, env = "AIRQ_BENCH_RANDOM_RATE", default_value_t = 500.0)]
    pub random_rate: f64,

    #[arg(long, env = "AIRQ_BENCH_RANDOM_DURATION", default_value = "30s", value_parser = duration)]
    pub random_duration: Duration,

    /// Length of the /healthz throughput run, and its users.
    #[arg(long, env = "AIRQ_BENCH_HEALTHZ_DURATION", default_value = "10s", value_parser = duration)]
    pub healthz_duration: Duration,

    #[arg(long, env = "AIRQ_BENCH_HEALTHZ_CONCURRENCY", default_value_t = 64)]
    pub healthz_concurrency: usize,

    /// Stop a sweep after this many failing steps in a row.
    #[arg(long, env = "AIRQ_BENCH_SWEEP_PATIENCE", default_value_t = 2)]
    pub patience: usize,

    /// No progress bars.
    #[arg(long, env = "AIRQ_LT_NO_PROGRESS")]
    pub no_progress: bool,
}

/// Parses `--api-key`. Unlike clap's own parsers, its errors do not repeat
/// the value: it is a secret.
#[derive(Debug, Clone, Copy)]
pub struct ApiKeyParser;

impl clap::builder::TypedValueParser for ApiKeyParser {
    type Value = ApiKey;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<ApiKey, clap::Error> {
        let fail = |why: &dyn std::fmt::Display| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid --api-key (AIRQ_API_KEY): {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| fail(&"the API key is not valid UTF-8"))?;
        ApiKey::new(text).map_err(|e| fail(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed_and_defaults_work() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["airq-loadtest"]).unwrap();
        assert!(c.command.is_none());
        assert_eq!(c.run.url, "http://127.0.0.1:8080");
        assert_eq!(c.run.concurrency, 10);
        let c = Cli::try_parse_from([
            "airq-loadtest",
            "--threshold",
            "p99<200ms",
            "--threshold",
            "errors==0",
            "http://127.0.0.1:9",
        ])
        .unwrap();
        assert_eq!(c.run.thresholds, ["p99<200ms", "errors==0"]);
        assert_eq!(c.run.url, "http://127.0.0.1:9");
        let c = Cli::try_parse_from(["airq-loadtest", "bench", "--days", "2"]).unwrap();
        assert!(matches!(c.command, Some(Command::Bench(b)) if b.days == 2));
    }

    #[test]
    fn the_api_key_is_parsed_and_never_shown() {
        let c = Cli::try_parse_from(["airq-loadtest", "--api-key", "airq_s3cret"]).unwrap();
        let key = c.run.api_key.as_ref().expect("the key");
        assert_eq!(key.header(), "airq_s3cret");
        assert!(!format!("{:?}", c.run).contains("s3cret"));
        for bad in ["", "airq_s3cret\u{7f}"] {
            let e = Cli::try_parse_from(["airq-loadtest", "--api-key", bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains("--api-key"), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}

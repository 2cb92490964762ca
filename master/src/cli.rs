//! Command line: global configuration and one subcommand per mode. Every
//! flag has an environment fallback and a working default.

use airq_cli::connect::BackendArgs;
use airq_cli::logging::LogArgs;
use airq_cli::metrics::MetricsArgs;
use airq_cli::renamed::{self, Renamed};
use airq_cli::{defaults, duration};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// The Sensor.Community feed of 24-hour averages (one entry per sensor).
pub const DEFAULT_SOURCE: &str = "https://data.sensor.community/static/v2/data.24h.json";

#[derive(Debug, Parser)]
#[command(
    name = "airq-master",
    version,
    about = "Fetches the Sensor.Community feed, computes the air-quality indices (DAQI, US EPA, EAQI) and stores the readings",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// The settings every subcommand shares: backend and logs.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    #[command(flatten)]
    pub backend: BackendArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch a feed once, validate it, compute the indices (DAQI, US EPA, EAQI) and store the readings.
    Ingest(IngestArgs),
    /// Run the ingestion on a cron schedule until SIGINT/SIGTERM.
    Schedule(ScheduleArgs),
    /// Generate a deterministic synthetic feed derived from a real snapshot.
    Synth(SynthArgs),
    /// Measure parse + validate + indices + store on a large feed, on fresh databases.
    BenchIngest(BenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// Feed to ingest: an http(s) URL or a file path.
    #[arg(long, env = "AIRQ_SOURCE", default_value = DEFAULT_SOURCE)]
    pub source: String,

    /// Retries after a transient fetch failure (connect error, timeout, 5xx, 429).
    #[arg(long, env = "AIRQ_FETCH_RETRIES", default_value_t = 4)]
    pub retries: u32,

    /// Delay before the first retry; each further retry doubles it.
    /// (Was `--retry-base-ms`, an integer of milliseconds.)
    #[arg(long, env = "AIRQ_FETCH_RETRY_BASE", default_value = "1s", value_parser = duration::parse)]
    pub retry_base: Duration,

    /// Time limit of one download attempt, body included. (Was
    /// `--timeout-secs`, an integer of seconds.)
    #[arg(long, env = "AIRQ_FETCH_TIMEOUT", default_value = "300s", value_parser = positive_duration)]
    pub fetch_timeout: Duration,
}

/// The flags renamed in this binary, still accepted with a warning.
pub const RENAMED: &[Renamed] = &[renamed::RETRY_BASE_MS, renamed::TIMEOUT_SECS];

/// A duration that is not zero (a zero time limit fails every download).
fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration::parse(s)? {
        d if d.is_zero() => Err(format!("{s:?}: must be longer than zero")),
        d => Ok(d),
    }
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Readings written per store call (one transaction each).
    #[arg(long, env = "AIRQ_BATCH_SIZE", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,
}

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub fetch: FetchArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ScheduleArgs {
    /// When to run, as cron with a seconds field: sec min hour day-of-month
    /// month day-of-week, in UTC. Default: nightly at midnight.
    #[arg(long, env = "AIRQ_CRON", default_value = defaults::CRON)]
    pub cron: String,

    /// Also run once right away.
    #[arg(long, env = "AIRQ_RUN_NOW")]
    pub run_now: bool,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    #[command(flatten)]
    pub fetch: FetchArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The shape of a synthetic feed.
#[derive(Debug, Clone, Args)]
pub struct SynthShape {
    /// Days the readings span.
    #[arg(long, env = "AIRQ_SYNTH_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=36_600))]
    pub days: u32,

    /// Number of sensors; beyond the template's, sites are cloned with jitter.
    #[arg(long, env = "AIRQ_SYNTH_SENSORS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    pub sensors: u32,

    /// Readings per sensor per day (each in its own slot of the day).
    #[arg(long, env = "AIRQ_SYNTH_PER_DAY", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub per_day: u32,

    /// Random seed: the same seed and shape give byte-identical output.
    #[arg(long, env = "AIRQ_SYNTH_SEED", default_value_t = 42)]
    pub seed: u64,

    /// First day (UTC) of the readings.
    #[arg(long, env = "AIRQ_SYNTH_START", default_value = "2024-01-01")]
    pub start: NaiveDate,

    /// Real feed snapshot to take locations, sensor types and values from.
    #[arg(long, env = "AIRQ_SYNTH_TEMPLATE", default_value = defaults::SAMPLE_FEED)]
    pub template: PathBuf,
}

impl SynthShape {
    pub fn readings(&self) -> u64 {
        u64::from(self.days) * u64::from(self.sensors) * u64::from(self.per_day)
    }
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("sink").required(true).args(["out", "into_store"])))]
pub struct SynthArgs {
    #[command(flatten)]
    pub shape: SynthShape,

    /// Write the feed as JSON to this file.
    #[arg(long, env = "AIRQ_SYNTH_OUT")]
    pub out: Option<PathBuf>,

    /// Store the readings directly (in `--db`) instead of writing a file.
    #[arg(long, env = "AIRQ_SYNTH_INTO_STORE")]
    pub into_store: bool,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
#[command(mut_arg("sensors", |a| a.default_value("33334").env("AIRQ_BENCH_SENSORS")))]
pub struct BenchArgs {
    /// Feed file or URL to measure with; without it, a synthetic feed of
    /// the given shape is generated in memory (default: 30 days × 33,334
    /// sensors, about 1 million readings).
    #[arg(long, env = "AIRQ_BENCH_SOURCE")]
    pub source: Option<String>,

    #[command(flatten)]
    pub shape: SynthShape,

    /// Timed runs, each on a fresh database.
    #[arg(long, env = "AIRQ_BENCH_RUNS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,

    /// Directory for the fresh embedded databases (default: the system temp
    /// dir); `--db` and `--backend` are not used.
    #[arg(long, env = "AIRQ_BENCH_DIR")]
    pub dir: Option<PathBuf>,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn fetch_durations_take_the_one_syntax_and_the_old_flags() {
        let parse = |args: &[&str]| {
            let mut notes = renamed::Notes::default();
            let args = renamed::rewrite_args(
                args.iter().map(std::ffi::OsString::from),
                RENAMED,
                &mut notes,
            );
            match Cli::try_parse_from(args).map(|c| c.command) {
                Ok(Command::Ingest(a)) => (a.fetch.retry_base, a.fetch.fetch_timeout),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            parse(&["airq-master", "ingest"]),
            (Duration::from_secs(1), Duration::from_secs(300))
        );
        assert_eq!(
            parse(&[
                "airq-master",
                "ingest",
                "--retry-base",
                "20ms",
                "--fetch-timeout",
                "5"
            ]),
            (Duration::from_millis(20), Duration::from_secs(5))
        );
        assert_eq!(
            parse(&[
                "airq-master",
                "ingest",
                "--retry-base-ms",
                "20",
                "--timeout-secs",
                "5"
            ]),
            (Duration::from_millis(20), Duration::from_secs(5))
        );
        assert!(Cli::try_parse_from(["airq-master", "ingest", "--fetch-timeout", "0s"]).is_err());
    }
}

//! Command line: global configuration and one subcommand per mode. Every
//! flag has an environment fallback and a working default.

use airq_cli::connect::BackendArgs;
use airq_cli::logging::LogArgs;
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// The Sensor.Community feed of 24-hour averages (one entry per sensor).
pub const DEFAULT_SOURCE: &str = "https://data.sensor.community/static/v2/data.24h.json";

/// The shipped real snapshot the synthetic generator is derived from.
pub const DEFAULT_TEMPLATE: &str = "data/sample/201806032249_data.dust.min.json";

#[derive(Debug, Parser)]
#[command(
    name = "airq-master",
    version,
    about = "Fetches the Sensor.Community feed, computes the DAQI and stores the readings",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// The settings every airq binary shares: backend and logs.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    #[command(flatten)]
    pub backend: BackendArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch a feed once, validate it, compute the DAQI and store the readings.
    Ingest(IngestArgs),
    /// Run the ingestion on a cron schedule until SIGINT/SIGTERM.
    Schedule(ScheduleArgs),
    /// Generate a deterministic synthetic feed derived from a real snapshot.
    Synth(SynthArgs),
    /// Measure parse + validate + DAQI + store on a large feed, on fresh databases.
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
    #[arg(long, env = "AIRQ_FETCH_RETRY_BASE_MS", default_value_t = 1000)]
    pub retry_base_ms: u64,

    /// Time limit of one download attempt, body included.
    #[arg(long, env = "AIRQ_FETCH_TIMEOUT_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
}

impl FetchArgs {
    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
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
    #[arg(long, env = "AIRQ_CRON", default_value = "0 0 0 * * *")]
    pub cron: String,

    /// Also run once right away.
    #[arg(long, env = "AIRQ_RUN_NOW")]
    pub run_now: bool,

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
    #[arg(long, env = "AIRQ_SYNTH_TEMPLATE", default_value = DEFAULT_TEMPLATE)]
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
}

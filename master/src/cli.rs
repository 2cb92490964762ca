//! Command line: global configuration and one subcommand per mode. Every
//! flag has an environment fallback and a working default.

use crate::backfill::{AirTypes, Resolution, TypeFilter, DEFAULT_AIR_TYPES};
use airq_cli::connect::BackendArgs;
use airq_cli::logging::LogArgs;
use airq_cli::metrics::MetricsArgs;
use airq_cli::renamed::{self, Renamed};
use airq_cli::{defaults, duration};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// The master's feed ([`airq_cli::defaults::FEED_24H`]).
pub const DEFAULT_SOURCE: &str = airq_cli::defaults::FEED_24H;

/// The live master's feed ([`airq_cli::defaults::FEED_5MIN`]).
pub const LIVE_SOURCE: &str = airq_cli::defaults::FEED_5MIN;

/// The Sensor.Community archive: a directory per UTC day of per-sensor CSV
/// files.
pub const DEFAULT_ARCHIVE: &str = "https://archive.sensor.community/";

/// The particulate sensors, as the archive names their files. Not the
/// PPD42NS: its P1/P2 are particle counts per 0.01 ft³, not µg/m³, so no
/// index means anything on them (`--types ppd42ns` still reads them).
pub const DEFAULT_TYPES: &str =
    "sds011,sds021,sps30,pms1003,pms3003,pms5003,pms6003,pms7003,hpm,nextpm";

#[derive(Debug, Parser)]
#[command(
    name = "airq-master",
    version,
    about = "Fetches the Sensor.Community feed, computes the air-quality indices and stores the readings",
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
    /// Fetch a feed once, validate it, compute the air-quality indices and store the readings.
    Ingest(IngestArgs),
    /// Run the ingestion on a cron schedule until SIGINT/SIGTERM.
    Schedule(ScheduleArgs),
    /// Generate a deterministic synthetic feed derived from a real snapshot.
    Synth(SynthArgs),
    /// Measure parse + validate + indices + store on a large feed, on fresh databases.
    BenchIngest(BenchArgs),
    /// Store history from the Sensor.Community archive of daily per-sensor CSV files.
    ///
    /// Reads `SOURCE/YYYY-MM-DD/YYYY-MM-DD_<type>_sensor_<id>.csv` for every
    /// day from --from to --to (UTC), over HTTP (each day's index page is
    /// listed) or from a directory laid out the same way. Only files of the
    /// types asked for (and, at daily resolution, of the T/RH types of
    /// --air-types) are downloaded; other files without P1/P2 columns are
    /// skipped and counted. Rows are checked with the live
    /// feed's rules; the country, which the archive does not give, is derived
    /// offline from the coordinates (OpenStreetMap boundaries, in the live
    /// feed's codes: UK, XK), and a row in no country (the sea, 0/0) is
    /// rejected as "in no country".
    ///
    /// Daily resolution (the default) stores one reading per sensor and day:
    /// the day's mean of P1 and P2 over its valid rows, with two decimals,
    /// the indices computed from it, stamped at 23:59:59 UTC of the day, the
    /// end of the 24 hours it averages, like the 24-hour averages the nightly
    /// ingestion stores, so both fall on the same UTC day; each gets its
    /// station's air (the day's means of the T/RH sensor with its location
    /// id) and its quality flags, as the nightly means do. Raw resolution
    /// stores every valid row at its own time.
    ///
    /// Resumable: a day is done when every file of it was read and all its
    /// readings are durable in the store; it is then recorded in the state
    /// file (--state, by default beside the database), which is rewritten
    /// atomically after each day. The next run skips the days recorded for
    /// the same resolution and types, and says so; --force redoes them. A day
    /// with a file that cannot be read (after the retries) is not recorded:
    /// the other days go on, the summary lists it, the exit status is 1 and
    /// the next run tries it again.
    Backfill(BackfillArgs),
    /// Build the answer segments of every day whose segment is missing or
    /// stale (ingestion and backfill do this for the days they change; this
    /// is for a store loaded otherwise, e.g. by `synth --into-store`).
    Segments,
    /// Write a synthetic archive directory (for the backfill benchmark).
    #[command(hide = true)]
    SynthArchive(SynthArchiveArgs),
}

#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// Feed to ingest: an http(s) URL or a file path. Default: the 24-hour
    /// feed (https://data.sensor.community/static/v2/data.24h.json) for
    /// --resolution day, the 5-minute feed
    /// (https://data.sensor.community/static/v2/data.json) for 5min.
    #[arg(long, env = "AIRQ_SOURCE")]
    pub source: Option<String>,

    #[command(flatten)]
    pub retry: RetryArgs,
}

impl FetchArgs {
    /// The source given, or the default feed of `series`.
    pub fn source(&self, series: airq_core::Resolution) -> &str {
        match (&self.source, series) {
            (Some(source), _) => source,
            (None, airq_core::Resolution::FiveMin) => LIVE_SOURCE,
            (None, _) => DEFAULT_SOURCE,
        }
    }
}

/// Which series a feed goes into, and how long the live tier keeps its
/// series.
#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    /// The series the feed is stored in: `day` (a feed of 24-hour means,
    /// the daily series) or `5min` (the 5-minute feed: the live tier, from
    /// which the hourly series and its NowCast and running-mean indices are
    /// kept).
    #[arg(long, env = "AIRQ_RESOLUTION", default_value = "day", value_parser = series)]
    pub resolution: airq_core::Resolution,
}

/// How long the live tier keeps its series: the schedule deletes older
/// readings after each 5min run, in small batches (a one-off `ingest`, a
/// replay of old feeds, deletes nothing).
#[derive(Debug, Clone, Args)]
pub struct RetentionArgs {
    /// How long 5-minute readings are kept.
    #[arg(long, env = "AIRQ_RECENT_RETENTION", default_value = "48h", value_parser = positive_duration)]
    pub recent_retention: Duration,

    /// How long hourly means are kept.
    #[arg(long, env = "AIRQ_HOURLY_RETENTION", default_value = "400days", value_parser = positive_duration)]
    pub hourly_retention: Duration,
}

/// A series a feed can be ingested into: not `hour`, which is made from
/// the 5-minute readings.
fn series(s: &str) -> Result<airq_core::Resolution, String> {
    match airq_core::Resolution::parse(s) {
        Some(airq_core::Resolution::Hour) => Err(
            "the hourly series is made from the 5-minute feed: ingest it with --resolution 5min"
                .into(),
        ),
        Some(r) => Ok(r),
        None => Err(format!("{s:?}: expected day or 5min")),
    }
}

/// How hard a download tries: the live fetch's settings, which the archive
/// backfill shares (same flags, same variables) for each listing and file.
#[derive(Debug, Clone, Args)]
pub struct RetryArgs {
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
    /// Readings written per store call (one transaction each); a
    /// 5-minute feed is written in one call up to 100,000 readings
    /// whatever this says (`ingest::LIVE_FEED_READINGS`). 20,000: a
    /// transaction rewrites each page it touches once, so larger calls
    /// write less (a 1 M-reading feed wrote 937 MB to SQLite's log at
    /// 5,000, 393 MB at 20,000, and took 14 % less time; BENCHMARKS.md),
    /// while one still holds the embedded store's write lock about 0.1 s.
    #[arg(long, env = "AIRQ_BATCH_SIZE", default_value_t = 20_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,
}

#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// First UTC day to backfill, YYYY-MM-DD. Default: the --to day.
    #[arg(long, env = "AIRQ_BACKFILL_FROM")]
    pub from: Option<NaiveDate>,

    /// Last UTC day to backfill, included. Default: yesterday (UTC), the
    /// last day the archive holds whole.
    #[arg(long, env = "AIRQ_BACKFILL_TO")]
    pub to: Option<NaiveDate>,

    /// Sensor types to read, as the archive names its files (any case),
    /// comma-separated; `all` reads every per-sensor file. Filtered on the
    /// file name, before any download.
    #[arg(long, env = "AIRQ_BACKFILL_TYPES", default_value = DEFAULT_TYPES,
          value_parser = TypeFilter::parse)]
    pub types: TypeFilter,

    /// At daily resolution, the T/RH sensor types (comma-separated, as
    /// --types) whose files are read beside the particulate ones for the
    /// stations' humidity and temperature (the day's means, matched by
    /// location id); `none` reads none, and every mean is then flagged
    /// `no_humidity`.
    #[arg(long, env = "AIRQ_BACKFILL_AIR_TYPES", default_value = DEFAULT_AIR_TYPES,
          value_parser = AirTypes::parse)]
    pub air_types: AirTypes,

    /// The archive: its http(s) URL, or a directory laid out the same way
    /// (YYYY-MM-DD/ directories of YYYY-MM-DD_<type>_sensor_<id>.csv files).
    #[arg(long, env = "AIRQ_BACKFILL_SOURCE", default_value = DEFAULT_ARCHIVE)]
    pub source: String,

    /// `daily`: one mean per sensor and UTC day; `raw`: every measurement.
    #[arg(
        long,
        env = "AIRQ_BACKFILL_RESOLUTION",
        value_enum,
        default_value = "daily"
    )]
    pub resolution: Resolution,

    /// Files downloaded (or read and parsed) at once.
    #[arg(long, env = "AIRQ_BACKFILL_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,

    /// The record of the days finished. Default: beside the database,
    /// `<db>.backfill.json` (with --backend aws,
    /// `data/airq-backfill-<readings table>.json`).
    #[arg(long, env = "AIRQ_BACKFILL_STATE")]
    pub state: Option<PathBuf>,

    /// Do again the days the state file records as finished.
    #[arg(long, env = "AIRQ_BACKFILL_FORCE")]
    pub force: bool,

    #[command(flatten)]
    pub retry: RetryArgs,

    #[command(flatten)]
    pub store: StoreArgs,
}

/// The shape of a synthetic archive: `days` directories of `sensors` files.
#[derive(Debug, Clone, Args)]
pub struct SynthArchiveArgs {
    /// Directory to write the `YYYY-MM-DD/` directories into.
    #[arg(
        long,
        env = "AIRQ_SYNTH_ARCHIVE_OUT",
        default_value = "target/synth-archive"
    )]
    pub out: PathBuf,

    /// Particulate sensors (one file each per day).
    #[arg(long, env = "AIRQ_SYNTH_ARCHIVE_SENSORS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sensors: u32,

    /// Days, from --start.
    #[arg(long, env = "AIRQ_SYNTH_ARCHIVE_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=366))]
    pub days: u32,

    /// First UTC day.
    #[arg(long, env = "AIRQ_SYNTH_ARCHIVE_START", default_value = "2025-09-01")]
    pub start: NaiveDate,

    /// Rows per file (an SDS011 sends one about every 150 s: 576 a day).
    #[arg(long, env = "AIRQ_SYNTH_ARCHIVE_ROWS", default_value_t = 576,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub rows: u32,

    /// Random seed: the same seed and shape give the same bytes.
    #[arg(long, env = "AIRQ_SYNTH_ARCHIVE_SEED", default_value_t = 42)]
    pub seed: u64,

    /// Percent of the stations that also have a DHT22 (temperature and
    /// humidity, the PM sensor's location id), one file each per day.
    #[arg(long, env = "AIRQ_SYNTH_ARCHIVE_AIR_SHARE", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub air_share: u8,
}

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub fetch: FetchArgs,
    #[command(flatten)]
    pub live: LiveArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ScheduleArgs {
    /// When to run, as cron with a seconds field: sec min hour day-of-month
    /// month day-of-week, in UTC. Default: nightly at midnight ("0 0 0 * * *")
    /// for --resolution day, every 5 minutes ("0 */5 * * * *") for 5min.
    #[arg(long, env = "AIRQ_CRON")]
    pub cron: Option<String>,

    /// Also run once right away.
    #[arg(long, env = "AIRQ_RUN_NOW")]
    pub run_now: bool,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    #[command(flatten)]
    pub fetch: FetchArgs,
    #[command(flatten)]
    pub live: LiveArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

impl ScheduleArgs {
    /// The cron given, or the default of the series.
    pub fn cron(&self) -> &str {
        match (&self.cron, self.live.resolution) {
            (Some(cron), _) => cron,
            (None, airq_core::Resolution::FiveMin) => defaults::LIVE_CRON,
            (None, _) => defaults::CRON,
        }
    }
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

    /// `day`: one feed of --per-day readings per sensor and day; `5min`:
    /// the 5-minute feed, 288 feeds a day, each with one reading per
    /// sensor in its 5 minutes (--per-day is not used).
    #[arg(long, env = "AIRQ_SYNTH_RESOLUTION", default_value = "day", value_parser = series)]
    pub resolution: airq_core::Resolution,

    /// The share of readings left out at random (0 to 1): gaps such as a
    /// sensor offline, for hourly validity and NowCast coverage.
    #[arg(long, env = "AIRQ_SYNTH_GAPS", default_value_t = 0.0, value_parser = share)]
    pub gaps: f64,
}

impl SynthShape {
    /// Readings per sensor and day: 288 for the 5-minute feed.
    pub fn per_day(&self) -> u32 {
        match self.resolution {
            airq_core::Resolution::FiveMin => 288,
            _ => self.per_day,
        }
    }

    /// Readings generated before gaps are left out.
    pub fn readings(&self) -> u64 {
        u64::from(self.days) * u64::from(self.sensors) * u64::from(self.per_day())
    }
}

/// A share from 0 (inclusive) to 1 (exclusive).
fn share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?}: expected a number from 0 up to (not including) 1"
        )),
    }
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("sink").required(true).args(["out", "into_store"])))]
pub struct SynthArgs {
    #[command(flatten)]
    pub shape: SynthShape,

    /// Write the feed as JSON to this file; with --resolution 5min, a
    /// directory to write one file per 5-minute feed into
    /// (`YYYY-MM-DDTHH-MM.json`, named by the end of its 5 minutes).
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
    /// sensors, about 1 million readings). With `--resolution 5min`, a
    /// directory of 5-minute feed files (`synth --resolution 5min --out
    /// DIR`) to read instead of generating the feeds beside the ingestion.
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
                Ok(Command::Ingest(a)) => (a.fetch.retry.retry_base, a.fetch.retry.fetch_timeout),
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

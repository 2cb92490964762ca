//! `airq-master`: fetches the Sensor.Community feed, validates it, computes
//! the air-quality indices and stores the readings, once (`ingest`) or on a cron schedule
//! (`schedule`); stores history from the Sensor.Community archive
//! (`backfill`); also generates synthetic feeds (`synth`) and measures the
//! ingestion (`bench-ingest`).
//!
//! Logs and progress go to stderr, summaries to stdout.

mod backfill;
mod bench;
mod cli;
mod fetch;
mod ingest;
mod metrics;
mod progress;
mod schedule;
mod synth;

use airq_cli::connect::{BackendArgs, BackendKind};
use airq_cli::logging::LogFormat;
use airq_core::store::ReadingStore;
use airq_core::{Resolution, Timestamp};
use anyhow::Context as _;
use cli::{Cli, Command, GlobalArgs};
use fetch::{FetchPolicy, Source, Validators};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long blocking work (a parse in progress) may hold up the exit.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(5);

/// An ingestion allocates a few short-lived strings per entry (a million
/// entries a 30-day feed, read twice) on two threads: mimalloc's
/// thread-local free lists take 11 % off the time of a 1 M-reading ingest
/// against glibc's allocator, for 9 % more peak memory (BENCHMARKS.md,
/// "The master on mimalloc"). The gateway stays on glibc's, which gives
/// memory back after a wave of connections (`gateway/src/heap.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // First, before any thread: it may set environment variables.
    let (cli, renamed) = airq_cli::renamed::parse::<Cli>(cli::RENAMED);
    let format = cli.global.log.log_format;
    cli.global.log.init();
    renamed.warn();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if format == LogFormat::Json {
                tracing::error!(error = format!("{e:#}"), "failed");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// What the configured store is, for messages.
fn store_name(b: &BackendArgs) -> String {
    match b.backend {
        BackendKind::Embedded => format!("embedded store at {}", b.db.display()),
        kind => format!("{kind:?} reading store"),
    }
}

/// The reading store of the configured backend.
async fn open_store(global: &GlobalArgs) -> anyhow::Result<Arc<dyn ReadingStore>> {
    open_store_keeping(global, None).await
}

/// [`open_store`] for a writer that knows how long the hourly series is
/// kept (the live items' TTL on AWS).
async fn open_store_keeping(
    global: &GlobalArgs,
    hourly_retention: Option<std::time::Duration>,
) -> anyhow::Result<Arc<dyn ReadingStore>> {
    let b = &global.backend;
    b.reading_store_keeping(hourly_retention)
        .await
        .with_context(|| format!("cannot open the {}", store_name(b)))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Ingest(args) => {
            let series = args.live.resolution;
            let source = Source::parse(args.fetch.source(series))?;
            let store = open_store(&global).await?;
            let summary = ingest::ingest(
                store,
                &source,
                &FetchPolicy::from(&args.fetch),
                args.store.batch_size as usize,
                series,
                &Validators::default(),
                None,
            )
            .await?;
            summary.log();
            print!("{summary}");
            Ok(())
        }
        Command::Schedule(args) => {
            schedule::check_cron(args.cron())?;
            let series = args.live.resolution;
            let plan = schedule::Plan {
                cron: args.cron().to_owned(),
                run_now: args.run_now,
                series,
                retention: ingest::Retention::from(&args.retention),
                source: Source::parse(args.fetch.source(series))?,
                policy: FetchPolicy::from(&args.fetch),
                batch_size: args.store.batch_size as usize,
            };
            let store = open_store_keeping(&global, Some(args.retention.hourly_retention)).await?;
            let stop = CancellationToken::new();
            airq_cli::shutdown::cancel_on_signal(stop.clone(), "no new runs will start")
                .context("installing signal handlers")?;
            // Served until the scheduler has stopped.
            let metrics_stop = CancellationToken::new();
            args.metrics
                .start(metrics_stop.clone(), metrics::register)
                .await
                .context("starting metrics")?;
            if args.metrics.listen().is_some() {
                tokio::spawn(metrics::keep_age(metrics_stop.clone()));
            }
            let ran = schedule::run(store, plan, stop).await;
            metrics_stop.cancel();
            ran
        }
        Command::Synth(args) => synth_command(&global, args).await,
        Command::Segments => {
            let store = open_store(&global).await?;
            let started = std::time::Instant::now();
            // A store may build a bounded number of days a call (AWS:
            // newest first): again until a call builds none (bounded: a
            // store written to all the while could keep one day stale).
            let mut built = 0;
            for _ in 0..10_000 {
                let now = store
                    .refresh_segments()
                    .await
                    .context("cannot build the answer segments")?;
                if now == 0 {
                    break;
                }
                built += now;
            }
            println!(
                "answer segments built: {built} days in {:.3} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::BenchIngest(args) => bench::run(args).await,
        Command::Backfill(args) => backfill_command(&global, args).await,
        Command::SynthArchive(args) => {
            let out = args.out.clone();
            let written = tokio::task::spawn_blocking(move || backfill::synth::write(&args))
                .await
                .context("the generator thread failed")??;
            println!("directory: {}", out.display());
            println!("files:     {}", written.files);
            println!("rows:      {}", written.rows);
            println!("bytes:     {}", written.bytes);
            Ok(())
        }
    }
}

/// The default record of finished backfill days: beside the database, or
/// named after the readings table on AWS.
fn default_backfill_state(b: &BackendArgs) -> PathBuf {
    match b.backend {
        BackendKind::Embedded => {
            let mut path = b.db.clone().into_os_string();
            path.push(".backfill.json");
            PathBuf::from(path)
        }
        #[cfg(feature = "aws")]
        BackendKind::Aws => PathBuf::from(format!(
            "data/airq-backfill-{}.json",
            b.aws.readings_table_name()
        )),
        #[cfg(not(feature = "aws"))]
        BackendKind::Aws => PathBuf::from("data/airq-backfill-aws.json"),
    }
}

async fn backfill_command(global: &GlobalArgs, args: cli::BackfillArgs) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let today = chrono::Utc::now().date_naive();
    let to = match args.to {
        Some(to) => to,
        None => today.pred_opt().context("no day before today")?,
    };
    let from = args.from.unwrap_or(to);
    if from > to {
        anyhow::bail!("--from {from} is after --to {to}");
    }
    if args.to.is_none() {
        // Said up front: `--from` alone can mean a year and more of archive.
        let days = (to - from).num_days() + 1;
        eprintln!(
            "backfilling {from} to {to}, {days} day{}: without --to, up to yesterday (UTC)",
            if days == 1 { "" } else { "s" }
        );
    }
    if to > today {
        anyhow::bail!("--to {to} is in the future (today is {today} UTC)");
    }
    let source = backfill::archive::ArchiveSource::parse(&args.source)?;
    let state = args
        .state
        .clone()
        .unwrap_or_else(|| default_backfill_state(&global.backend));
    // Checked before opening, which creates it.
    let fresh_store =
        global.backend.backend == BackendKind::Embedded && !global.backend.db.exists();
    let store = open_store(global).await?;
    let plan = backfill::Plan {
        source,
        from,
        to,
        types: args.types,
        air_types: args.air_types,
        resolution: args.resolution,
        concurrency: args.concurrency as usize,
        policy: FetchPolicy::from(&args.retry),
        batch_size: args.store.batch_size as usize,
        state,
        force: args.force,
        fresh_store,
        now,
    };
    let summary = backfill::run(store, plan).await?;
    summary.log();
    print!("{summary}");
    summary.check()
}

async fn synth_command(global: &GlobalArgs, args: cli::SynthArgs) -> anyhow::Result<()> {
    let shape = args.shape;
    tracing::info!(
        readings = shape.readings(),
        days = shape.days,
        sensors = shape.sensors,
        per_day = shape.per_day(),
        resolution = shape.resolution.name(),
        seed = shape.seed,
        "generating a synthetic feed"
    );
    let summary = match args.out {
        Some(out) if !args.into_store && shape.resolution == Resolution::FiveMin => {
            tokio::task::spawn_blocking(move || synth::to_directory(&shape, &out))
                .await
                .context("the generator thread failed")??
        }
        Some(out) if !args.into_store => {
            tokio::task::spawn_blocking(move || synth::to_file(&shape, &out))
                .await
                .context("the generator thread failed")??
        }
        _ => {
            let store = open_store(global).await?;
            let name = store_name(&global.backend);
            synth::into_store(&shape, store, name, args.store.batch_size as usize).await?
        }
    };
    print!("{summary}");
    Ok(())
}

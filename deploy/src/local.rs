//! `airq-deploy up`: the whole stack on one machine, embedded backend.
//!
//! Starts a one-shot ingestion of the shipped sample (so the stack has data
//! offline), then, as supervised children: the master on its nightly
//! schedule, a second master on the live schedule (the 5-minute feed every
//! 5 minutes, unless `--no-live`; offline, each run logs the failed fetch
//! and the next tick tries again), one gateway and N workers, all sharing
//! one SQLite file. The
//! master and the workers serve Prometheus metrics on free loopback ports
//! (the gateway serves its own at `/metrics`); each one's URL is printed
//! as it starts (`[worker-1] metrics on http://127.0.0.1:PORT/metrics`),
//! again after a restart.

use crate::supervisor::{supervise, ChildSpec};
use airq_cli::renamed::{self, Renamed};
use airq_cli::shutdown::Signals;
use airq_cli::{defaults, duration};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long past its shutdown grace a child may take to exit (log, flush,
/// hand messages back) before it is killed.
pub const KILL_MARGIN: Duration = Duration::from_secs(5);

/// Where the master and the workers serve their metrics: loopback, a free
/// port each (they print the one they got).
pub const METRICS_LISTEN: &str = "127.0.0.1:0";

/// The flags renamed in `up`, still accepted with a warning.
pub const RENAMED: &[Renamed] = &[renamed::GRACE];

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Worker processes to run.
    #[arg(long, env = "AIRQ_WORKERS", default_value_t = 2)]
    pub workers: usize,

    /// Address the gateway listens on.
    #[arg(long, env = "AIRQ_LISTEN", default_value = defaults::LISTEN)]
    pub listen: String,

    /// The SQLite file every component shares.
    #[arg(long, env = "AIRQ_DB", default_value = defaults::DB)]
    pub db: PathBuf,

    /// Feed ingested once at start ("" to skip).
    #[arg(long, env = "AIRQ_SEED_SOURCE", default_value = defaults::SAMPLE_FEED)]
    pub seed: String,

    /// The master's schedule (cron with seconds, UTC).
    #[arg(long, env = "AIRQ_CRON", default_value = defaults::CRON)]
    pub cron: String,

    /// The master's feed (default: the master's own, Sensor.Community's
    /// 24-hour feed).
    #[arg(long, env = "AIRQ_SOURCE")]
    pub source: Option<String>,

    /// Do not run the live tier's master (the 5-minute feed).
    #[arg(long, env = "AIRQ_NO_LIVE")]
    pub no_live: bool,

    /// The live master's schedule (cron with seconds, UTC).
    #[arg(long, env = "AIRQ_LIVE_CRON", default_value = defaults::LIVE_CRON)]
    pub live_cron: String,

    /// The live master's feed (default: the master's, Sensor.Community's
    /// 5-minute feed).
    #[arg(long, env = "AIRQ_LIVE_SOURCE")]
    pub live_source: Option<String>,

    /// Where the airq binaries are (default: beside this one).
    #[arg(long, env = "AIRQ_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,

    /// After Ctrl-C/SIGTERM, how long the gateway and workers may take to
    /// finish in-flight work (passed on to them); a process still running
    /// [`KILL_MARGIN`] after that is killed. (Was `--grace`, the time before
    /// the kill.)
    #[arg(long, env = "AIRQ_SHUTDOWN_GRACE", default_value = defaults::SHUTDOWN_GRACE,
          value_parser = duration::parse)]
    pub shutdown_grace: Duration,

    /// Extra arguments for every worker (e.g. "--concurrency 4").
    #[arg(
        long,
        env = "AIRQ_WORKER_ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub worker_args: String,

    /// Extra arguments for the gateway.
    #[arg(
        long,
        env = "AIRQ_GATEWAY_ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub gateway_args: String,
}

/// What `up` says the masters are: "nightly" on the default schedules,
/// else the schedule itself.
fn masters_label(cron: &str, live_cron: Option<&String>) -> String {
    let master = if cron == defaults::CRON {
        "nightly master".to_owned()
    } else {
        format!("master on cron {cron:?}")
    };
    match live_cron {
        None => master,
        Some(live) if live == defaults::LIVE_CRON => {
            format!("{master} + live master (every 5 min)")
        }
        Some(live) => format!("{master} + live master on cron {live:?}"),
    }
}

/// Where the seed feed is. The default (the sample, a path inside the
/// repository) is found from any working directory: beside it, or in the
/// checkout the binaries were built in (`target/*/` is two levels below
/// it). Another source (a file or URL) is taken as given.
fn seed_source(seed: &str, bin_dir: &Path) -> anyhow::Result<String> {
    if seed != defaults::SAMPLE_FEED || Path::new(seed).exists() {
        return Ok(seed.to_owned());
    }
    let checkout = bin_dir.parent().and_then(Path::parent);
    let candidates: Vec<PathBuf> = checkout
        .map(|c| c.join(seed))
        .into_iter()
        .chain(std::iter::once(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(seed),
        ))
        .collect();
    candidates
        .iter()
        .find(|c| c.exists())
        .map(|c| c.display().to_string())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the sample feed {seed} is not here (nor in {}): run from the repository's \
                 root, or pass --seed FILE_OR_URL, or --seed '' to start with an empty store",
                candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn bin_dir(args: &UpArgs) -> anyhow::Result<PathBuf> {
    if let Some(d) = &args.bin_dir {
        return Ok(d.clone());
    }
    let exe = std::env::current_exe().context("locating airq-deploy")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("airq-deploy has no parent directory")
}

fn program(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let p = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !p.is_file() {
        bail!(
            "{} not found; build every binary first (cargo build --release --bins) or pass --bin-dir",
            p.display()
        );
    }
    Ok(p)
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let dir = bin_dir(&args)?;
    let master = program(&dir, "airq-master")?;
    let gateway = program(&dir, "airq-gateway")?;
    let worker = program(&dir, "airq-worker")?;
    let db = args.db.display().to_string();
    let stop = CancellationToken::new();
    // Installed once, now: a Ctrl-C during the seed ingestion or at any
    // later point stops the stack gracefully.
    let mut signals = Signals::install().context("installing signal handlers")?;

    // Explicit flags, so an AIRQ_BACKEND=aws left in the environment (after
    // `airq-deploy provision`) cannot turn the local stack into an AWS one.
    let store: Vec<String> = vec![
        "--backend".into(),
        "embedded".into(),
        "--db".into(),
        db.clone(),
    ];
    // Every child gets the one grace, so none is killed while still
    // finishing within it.
    let grace = humantime::format_duration(args.shutdown_grace).to_string();
    let grace: Vec<String> = vec!["--shutdown-grace".into(), grace];
    let metrics: Vec<String> = vec!["--metrics-listen".into(), METRICS_LISTEN.into()];

    if !args.seed.is_empty() {
        let seed = seed_source(&args.seed, &dir)?;
        tracing::info!(source = %seed, "ingesting the seed feed");
        let status = tokio::process::Command::new(&master)
            .args(["ingest", "--source", &seed])
            .args(&store)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .status();
        let status = tokio::select! {
            s = status => s.context("running airq-master ingest")?,
            _ = signals.wait() => return Ok(()),
        };
        if !status.success() {
            bail!(
                "ingesting {} failed ({status}); see the log above",
                args.seed
            );
        }
    }

    let split = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let mut specs = vec![
        ChildSpec {
            name: "master".into(),
            program: master,
            args: [
                vec!["schedule".into(), "--cron".into(), args.cron.clone()],
                args.source
                    .iter()
                    .flat_map(|s| ["--source".to_owned(), s.clone()])
                    .collect(),
                store.clone(),
                metrics.clone(),
            ]
            .concat(),
        },
        ChildSpec {
            name: "gateway".into(),
            program: gateway,
            args: [
                vec!["--listen".into(), args.listen.clone()],
                store.clone(),
                grace.clone(),
                split(&args.gateway_args),
            ]
            .concat(),
        },
    ];
    if !args.no_live {
        // Always named: the live master inherits this process's
        // environment, whose AIRQ_SOURCE (`up --source`) is the 24-hour feed.
        let source = vec![
            "--source".to_owned(),
            args.live_source
                .clone()
                .unwrap_or_else(|| defaults::FEED_5MIN.to_owned()),
        ];
        specs.push(ChildSpec {
            name: "live".into(),
            program: specs[0].program.clone(),
            args: [
                vec![
                    "schedule".into(),
                    "--resolution".into(),
                    "5min".into(),
                    "--cron".into(),
                    args.live_cron.clone(),
                ],
                source,
                store.clone(),
                metrics.clone(),
            ]
            .concat(),
        });
    }
    for i in 1..=args.workers {
        specs.push(ChildSpec {
            name: format!("worker-{i}"),
            program: worker.clone(),
            // The extra arguments last: a worker takes the last value of a
            // flag given twice, so they can override ours.
            args: [
                store.clone(),
                grace.clone(),
                metrics.clone(),
                split(&args.worker_args),
            ]
            .concat(),
        });
    }

    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let mut children = JoinSet::new();
    for spec in specs {
        children.spawn(supervise(
            spec,
            stop.clone(),
            lines_tx.clone(),
            args.shutdown_grace + KILL_MARGIN,
        ));
    }
    drop(lines_tx);

    let workers = args.workers;
    let masters = masters_label(&args.cron, (!args.no_live).then_some(&args.live_cron));
    let printer = tokio::spawn(async move {
        while let Some((name, line)) = lines.recv().await {
            match line.strip_prefix("listening on ") {
                Some(url) if name == "gateway" => {
                    println!("airq is up at {url}  (gateway + {workers} workers + {masters}; Ctrl-C stops everything)");
                }
                _ => println!("[{name}] {line}"),
            }
        }
    });

    let signal = signals.wait().await;
    tracing::info!(signal, "stopping the stack");
    stop.cancel();
    while children.join_next().await.is_some() {}
    printer.abort();
    tracing::info!("stack stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_found_from_anywhere_and_other_seeds_are_kept() {
        let elsewhere = tempfile::tempdir().expect("tempdir");
        // From a binary directory two levels below a checkout holding it.
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let found = seed_source(
            defaults::SAMPLE_FEED,
            &checkout.join("target").join("release"),
        )
        .expect("found");
        assert!(Path::new(&found).exists(), "{found}");
        // From a binary nowhere near a checkout: the one it was built in.
        let found = seed_source(defaults::SAMPLE_FEED, &elsewhere.path().join("a").join("b"))
            .expect("found");
        assert!(Path::new(&found).exists(), "{found}");
        assert_eq!(
            seed_source("https://example.org/feed.json", elsewhere.path()).unwrap(),
            "https://example.org/feed.json"
        );
    }
}

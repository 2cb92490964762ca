//! `airq-loadtest bench`: the benchmark suite, end to end on this machine.
//!
//! 1. A synthetic store (`airq-master synth --into-store`, 30 days × 15,000
//!    sensors by default), built once per shape and copied for each suite.
//! 2. An API key of the `unlimited` tier in that copy (`airq-deploy keys
//!    create`), sent by every run, so that the figures measure the system
//!    and not the rate limiter; then the local stack on it (`airq-deploy
//!    up`, loopback, a free port).
//! 3. `/healthz` at full speed (the generator's own ceiling), the seed
//!    matrix with the fixed query and the random mix, open-loop rate sweeps
//!    (fixed: highest rate with p99 < 100 ms and no error; random: p99 <
//!    1 s), and a sustained random-mix run at the target rate.
//! 4. `report.md`, JSON summaries and SVG charts under `--out`; the stack
//!    is stopped at the end (also on error).

use crate::app::{self, Outcome, ServerCpu};
use crate::chart;
use crate::cli::{BenchArgs, Cli};
use crate::client::ApiKey;
use crate::cpu;
use crate::report::{self, JsonReport};
use crate::stats::Summary;
use anyhow::{bail, Context};
use clap::Parser;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the stack may take to say it is up.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long it may take to stop before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(45);

fn program(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let p = dir.join(name);
    if !p.is_file() {
        bail!(
            "{} not found; build every binary first (cargo build --release --bins) or pass --bin-dir",
            p.display()
        );
    }
    Ok(p)
}

/// The local stack, stopped (SIGTERM, then SIGKILL) when dropped.
struct Stack {
    child: Child,
    url: String,
}

impl Stack {
    fn start(bin: &Path, db: &Path, args: &BenchArgs, log: &Path) -> anyhow::Result<Stack> {
        let deploy = program(bin, "airq-deploy")?;
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(&deploy);
        cmd.args(["up", "--listen", "127.0.0.1:0", "--seed", ""])
            .arg("--db")
            .arg(db)
            .args(["--workers", &args.workers.to_string()])
            // The nightly ingestion would fetch from the network: make it
            // yearly, so it cannot fire during a benchmark.
            .args(["--cron", "0 0 0 1 1 *"])
            .arg("--bin-dir")
            .arg(bin)
            .arg(format!("--gateway-args={}", args.gateway_args))
            .arg(format!("--worker-args={}", args.worker_args))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file.try_clone().context("duplicating the log file")?);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AIRQ_") {
                cmd.env_remove(&k);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        // Every simulated user comes from this one address: the gateway's
        // per-client share of connections (64 by default) is off.
        cmd.env("AIRQ_MAX_CONNECTIONS_PER_CLIENT", "0");
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", deploy.display()))?;
        let stdout = child.stdout.take().context("the stack's stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let mut log_out = log_file;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log_out, "{line}");
                let _ = tx.send(line);
            }
        });
        let mut stack = Stack {
            child,
            url: String::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("airq is up at ") {
                        let url = rest.split_whitespace().next().unwrap_or_default();
                        stack.url = url.trim_end_matches('/').to_owned();
                        return Ok(stack);
                    }
                }
                Err(_) => bail!(
                    "the stack did not come up within {START_TIMEOUT:?}; see {}",
                    log.display()
                ),
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!("the stack did not stop in time; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds (or reuses) the synthetic store; returns its path and how long
/// building took (None if reused).
fn store(bin: &Path, args: &BenchArgs) -> anyhow::Result<(PathBuf, Option<Duration>)> {
    let db = args
        .out
        .join(format!("store-{}d-{}s.db", args.days, args.sensors));
    let marker = db.with_extension("db.ok");
    if marker.is_file() && db.is_file() && !args.fresh_store {
        return Ok((db, None));
    }
    let _ = std::fs::remove_file(&marker);
    remove_store(&db);
    let master = program(bin, "airq-master")?;
    eprintln!(
        "building the synthetic store ({} days × {} sensors) in {}",
        args.days,
        args.sensors,
        db.display()
    );
    let t = Instant::now();
    let status = Command::new(&master)
        .args(["synth", "--into-store"])
        .args(["--days", &args.days.to_string()])
        .args(["--sensors", &args.sensors.to_string()])
        .arg("--db")
        .arg(&db)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {}", master.display()))?;
    if !status.success() {
        bail!("airq-master synth failed ({status})");
    }
    // Its answer segments, as the master builds them after an ingestion.
    let status = Command::new(&master)
        .arg("segments")
        .arg("--db")
        .arg(&db)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {}", master.display()))?;
    if !status.success() {
        bail!("airq-master segments failed ({status})");
    }
    let took = t.elapsed();
    std::fs::write(&marker, format!("{}\n", took.as_secs_f64()))
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok((db, Some(took)))
}

/// Deletes an embedded store with what lives beside it: its WAL files,
/// the folder of large payloads (`-bodies/`, see airq-embedded's `bodies`)
/// and its answer segments (`-segments/`).
fn remove_store(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(wal(db, suffix));
    }
    for folder in ["-bodies", "-segments"] {
        let _ = std::fs::remove_dir_all(wal(db, folder));
    }
}

fn wal(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// A fresh copy of the store for this suite's run.
fn copy_store(store: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let run = out.join("run.db");
    remove_store(&run);
    for suffix in ["", "-wal", "-shm"] {
        let from = wal(store, suffix);
        if suffix != "-shm" && from.is_file() {
            std::fs::copy(&from, wal(&run, suffix))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    // Segment files are never changed in place (a rebuild writes a new
    // file and deletes the old one), so the copy links them.
    let (from, to) = (wal(store, "-segments"), wal(&run, "-segments"));
    if from.is_dir() {
        std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
        for entry in
            std::fs::read_dir(&from).with_context(|| format!("reading {}", from.display()))?
        {
            let entry = entry.with_context(|| format!("reading {}", from.display()))?;
            std::fs::hard_link(entry.path(), to.join(entry.file_name()))
                .with_context(|| format!("linking {}", entry.path().display()))?;
        }
    }
    Ok(run)
}

/// The tier of the benchmark's key: no rate limit, no cap on queued work.
const BENCH_TIER: &str = "unlimited";

/// Creates a key of [`BENCH_TIER`] in the embedded store `db` with
/// `airq-deploy keys create`. The key is read from its stdout and never
/// printed.
fn bench_key(bin: &Path, db: &Path) -> anyhow::Result<ApiKey> {
    let deploy = program(bin, "airq-deploy")?;
    let mut cmd = Command::new(&deploy);
    cmd.args(["keys", "create", "--name", "airq-loadtest bench"])
        .args(["--tier", BENCH_TIER, "--backend", "embedded", "--db"])
        .arg(db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AIRQ_") {
            cmd.env_remove(&k);
        }
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {} keys create", deploy.display()))?;
    if !out.status.success() {
        // Its stderr has the key's details, never the key.
        bail!(
            "creating the benchmark's API key failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = std::str::from_utf8(&out.stdout)
        .context("airq-deploy keys create printed something other than a key")?;
    ApiKey::new(stdout).context("airq-deploy keys create printed something other than a key")
}

/// One measured run of the suite.
struct Run {
    name: String,
    command: String,
    outcome: Outcome,
}

/// The first run's seed of the random mix; each later run adds its number.
const RANDOM_SEED: u64 = 42;

struct Suite {
    url: String,
    /// Sent by every run (`--api-key`); never printed.
    api_key: ApiKey,
    out: PathBuf,
    charts: PathBuf,
    server_cpu: ServerCpu,
    no_progress: bool,
    runs: Vec<Run>,
}

impl Suite {
    /// Runs `airq-loadtest URL ARGV…` in process.
    async fn run(&mut self, name: &str, argv: &[&str]) -> anyhow::Result<&Outcome> {
        let mut full = vec!["airq-loadtest", self.url.as_str()];
        full.extend_from_slice(argv);
        // Every run draws its own random queries: with one seed for all,
        // each sweep step would replay the step before it, and the
        // gateway's answer cache would serve the replay from memory.
        let seed = (RANDOM_SEED + self.runs.len() as u64).to_string();
        if argv.contains(&"random") {
            full.extend_from_slice(&["--seed", &seed]);
        }
        if self.no_progress {
            full.push("--no-progress");
        }
        let cli = Cli::try_parse_from(&full).with_context(|| format!("arguments of {name}"))?;
        let mut args = cli.run;
        // Set here rather than in the arguments, which are shown.
        args.api_key = Some(self.api_key.clone());
        eprintln!(
            "== {name}: airq-loadtest $URL --api-key $KEY {}",
            argv.join(" ")
        );
        let prepared = app::prepare(&args).await?;
        let mut settings = app::settings(&args, Some(self.server_cpu.clone()));
        settings.keep_records = true;
        let outcome = app::execute(&args, &prepared, &settings).await?;
        print!("{}", report::text(&outcome.summaries, &outcome.checks));
        let json = self.out.join("json").join(format!("{name}.json"));
        report::write_json(
            &json,
            &JsonReport {
                tool: "airq-loadtest",
                version: env!("CARGO_PKG_VERSION"),
                target: &self.url,
                work: &prepared.work.describe(),
                gzip: prepared.client.asks_gzip(),
                steps: &outcome.summaries,
                thresholds: &outcome.checks,
                passed: outcome.passed(),
            },
        )?;
        self.runs.push(Run {
            name: name.to_owned(),
            command: format!("airq-loadtest $URL --api-key $KEY {}", shell_words(argv)),
            outcome,
        });
        Ok(&self.runs.last().context("just pushed")?.outcome)
    }

    /// The seed matrix with the `query` mix (`what` in the chart titles),
    /// `extra` arguments before its threshold; charted. Returns its steps.
    async fn matrix(
        &mut self,
        query: &str,
        what: &str,
        extra: &[&str],
    ) -> anyhow::Result<Vec<Summary>> {
        let mut argv = vec!["--matrix", "seed", "--query", query];
        argv.extend_from_slice(extra);
        argv.extend_from_slice(&["--threshold", "errors==0"]);
        let name = format!("matrix-{query}");
        let steps = self.run(&name, &argv).await?.summaries.clone();
        chart::percentiles_vs_load(
            &self.chart(&format!("{name}-percentiles.svg")),
            &format!("Seed matrix, {what}: time to result"),
            &steps,
        )?;
        chart::errors_vs_load(
            &self.chart(&format!("{name}-errors.svg")),
            &format!("Seed matrix, {what}: errors and queued answers"),
            &steps,
        )?;
        Ok(steps)
    }

    /// An open-loop sweep of the `query` mix (`what` in the chart titles)
    /// over `rates` (each step `--step` long), one rate at a time, until
    /// `--patience` steps in a row miss the criteria; charted. Returns the
    /// highest passing rate.
    async fn sweep(
        &mut self,
        args: &BenchArgs,
        query: &str,
        what: &str,
        rates: &str,
        criteria: &[&str],
    ) -> anyhow::Result<Option<f64>> {
        let rates = crate::plan::parse_rates(rates)?;
        let name = format!("sweep-{query}");
        let mut best = None;
        let mut misses = 0;
        let mut steps = Vec::new();
        let d = format!("{}ms", args.step.as_millis());
        for rate in &rates {
            let r = crate::plan::trim_float(*rate);
            let mut argv = vec!["--query", query, "--rate", &r, "--duration", &d];
            for c in criteria {
                argv.push("--threshold");
                argv.push(c);
            }
            let o = self.run(&format!("{name}-{r}"), &argv).await?;
            let passed = o.passed();
            steps.extend(o.summaries.iter().cloned());
            if passed {
                best = Some(*rate);
                misses = 0;
            } else {
                misses += 1;
                if misses >= args.patience {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        if !steps.is_empty() {
            chart::sweep(
                &self.chart(&format!("{name}.svg")),
                &format!("Open-loop sweep, {what}: time to result by offered rate"),
                &steps,
            )?;
            chart::errors_vs_load(
                &self.chart(&format!("{name}-errors.svg")),
                &format!("Open-loop sweep, {what}: errors, late starts, queued"),
                &steps,
            )?;
        }
        Ok(best)
    }

    fn chart(&self, name: &str) -> PathBuf {
        self.charts.join(name)
    }
}

fn shell_words(argv: &[&str]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() || a.contains([' ', '<', '>', '\'', '"', ';', '*', '$']) {
                format!("'{a}'")
            } else {
                (*a).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let mem = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into())
    };
    format!(
        "| | |\n|---|---|\n| date (UTC) | {} |\n| `nproc` | {cpus} |\n| CPU | {model} |\n| memory | {mem} |\n| kernel | {kernel} |\n| rustc | {} |\n| commit | {} |\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        run("rustc", &["--version"]),
        run("git", &["rev-parse", "--short", "HEAD"]),
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**missed**"
    }
}

/// Runs the suite; returns whether every target was met.
pub async fn bench(args: BenchArgs) -> anyhow::Result<bool> {
    let bin = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .context("locating airq-loadtest")?
            .parent()
            .context("airq-loadtest has no directory")?
            .to_path_buf(),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let charts = args.out.join("charts");
    std::fs::create_dir_all(&charts)?;
    let (store, built) = store(&bin, &args)?;
    let run_db = copy_store(&store, &args.out)?;
    let api_key = bench_key(&bin, &run_db)?;
    eprintln!("created an API key of the `{BENCH_TIER}` tier for the runs");
    let log = args.out.join("stack.log");
    let mut stack = Stack::start(&bin, &run_db, &args, &log)?;
    eprintln!("the stack is up at {} (log: {})", stack.url, log.display());
    let pid = stack.pid();
    let server_cpu: ServerCpu = Arc::new(move || {
        let mut t = cpu::tree_seconds(pid);
        // The supervisor itself is idle; keep the report to the services.
        t.retain(|name, _| name.starts_with("airq-") && name != "airq-deploy");
        t
    });

    let mut suite = Suite {
        url: stack.url.clone(),
        api_key,
        out: args.out.clone(),
        charts: charts.clone(),
        server_cpu,
        no_progress: args.no_progress,
        runs: Vec::new(),
    };
    let result = suite_body(&mut suite, &args).await;
    stack.stop();
    let (meta, targets) = result?;

    let md = write_report(&suite, &args, &meta, built, &targets)?;
    let report_path = args.out.join("report.md");
    std::fs::write(&report_path, &md)
        .with_context(|| format!("writing {}", report_path.display()))?;
    eprintln!("report: {}", report_path.display());
    let all = targets.iter().all(|t| t.1);
    for (what, ok, detail) in &targets {
        println!(
            "target {}: {what} — {detail}",
            if *ok { "met" } else { "MISSED" }
        );
    }
    Ok(all)
}

type Targets = Vec<(String, bool, String)>;

async fn suite_body(
    suite: &mut Suite,
    args: &BenchArgs,
) -> anyhow::Result<(crate::mix::Meta, Targets)> {
    // The store's shape, as the gateway reports it.
    let mut probe = Cli::try_parse_from(["airq-loadtest", suite.url.as_str()])?.run;
    probe.api_key = Some(suite.api_key.clone());
    let prepared = app::prepare(&probe).await?;
    let meta = app::meta(&prepared.client).await?;
    drop(prepared);
    let mut targets: Targets = Vec::new();

    // 1. The generator's ceiling.
    let hd = format!("{}ms", args.healthz_duration.as_millis());
    let hc = args.healthz_concurrency.to_string();
    let o = suite
        .run(
            "healthz",
            &[
                "--endpoint",
                "/healthz",
                "-c",
                &hc,
                "-d",
                &hd,
                "--warmup",
                "1000",
            ],
        )
        .await?;
    let h = o.summaries[0].clone();
    targets.push((
        "generator ≥ 20,000 req/s against /healthz".into(),
        h.ok_per_s >= 20_000.0 && h.errors == 0,
        format!(
            "{:.0} req/s, {} errors, generator CPU {:.0} % of one core",
            h.ok_per_s,
            h.errors,
            h.generator_cpu.cores * 100.0
        ),
    ));

    // 2. The seed matrix, fixed query then random mix.
    let steps = suite
        .matrix("fixed", "fixed query", &["--warmup", "50"])
        .await?;
    let last = steps.last().context("the matrix has steps")?;
    let zero = steps.iter().all(|s| s.errors == 0);
    targets.push((
        "seed matrix, fixed query: zero errors at every step, p99 < 250 ms at 2500/500".into(),
        zero && last.time_to_result.p99 < 250.0,
        format!(
            "errors {} ; p99 at {} = {:.1} ms",
            steps
                .iter()
                .map(|s| s.errors.to_string())
                .collect::<Vec<_>>()
                .join("/"),
            last.label,
            last.time_to_result.p99
        ),
    ));
    suite.matrix("random", "random mix", &[]).await?;

    // 3. Open-loop sweeps.
    let best_fixed = suite
        .sweep(
            args,
            "fixed",
            "fixed query",
            &args.fixed_rates,
            &["p99<100ms", "errors==0"],
        )
        .await?;
    targets.push((
        "fixed query, open loop: highest rate with p99 < 100 ms and no error (measured)".into(),
        best_fixed.is_some(),
        best_fixed.map_or_else(|| "no rate passed".into(), |r| format!("{r}/s")),
    ));
    let best_random = suite
        .sweep(
            args,
            "random",
            "random mix",
            &args.random_rates,
            &["p99<1s", "errors==0"],
        )
        .await?;

    // 4. The sustained random-mix run at the target rate.
    let rate = crate::plan::trim_float(args.random_rate);
    let d = format!("{}ms", args.random_duration.as_millis());
    let o = suite
        .run(
            "random-sustained",
            &[
                "--query",
                "random",
                "--rate",
                &rate,
                "--duration",
                &d,
                "--threshold",
                "p99<1s",
                "--threshold",
                "errors==0",
            ],
        )
        .await?;
    let s = o.summaries[0].clone();
    let records = o.records[0].clone();
    chart::latency_over_time(
        &suite.chart("random-sustained-over-time.svg"),
        &format!("Random mix at {rate}/s, open loop: time to result over time"),
        &records,
    )?;
    targets.push((
        format!("random mix, open loop: {rate} queries/s with p99 < 1 s and zero errors"),
        s.errors == 0 && s.time_to_result.p99 < 1000.0 && s.ok_per_s >= args.random_rate * 0.95,
        format!(
            "{:.0} results/s, p99 {:.0} ms, {} errors, {} late starts (best sweep rate passing: {})",
            s.ok_per_s,
            s.time_to_result.p99,
            s.errors,
            s.late,
            best_random.map_or_else(|| "none".into(), |r| format!("{r}/s"))
        ),
    ));
    Ok((meta, targets))
}

fn write_report(
    suite: &Suite,
    args: &BenchArgs,
    meta: &crate::mix::Meta,
    built: Option<Duration>,
    targets: &Targets,
) -> anyhow::Result<String> {
    let mut md = String::new();
    let _ = writeln!(md, "# airq load benchmark\n");
    let _ = writeln!(
        md,
        "Generated by `loadtest/bench.sh` (`airq-loadtest bench`); every figure below comes from \
         this run. Latencies are **time to result** in ms: from each request's intended start \
         (open loop) or its start (closed loop) to the last byte of the CSV, through the \
         queue and polling when the gateway queued the query.\n"
    );
    let _ = writeln!(md, "## Machine\n\n{}", machine());
    let _ = writeln!(
        md,
        "## Stack and data\n\n- `airq-deploy up --listen 127.0.0.1:0 --seed '' --workers {}` \
         on a copy of the synthetic store (`airq-master synth --into-store --days {} --sensors {}`{})\n\
         - {} readings from {} to {}, {} countries\n- generator and stack share the machine\n\
         - every run sends an API key of the `{BENCH_TIER}` tier (`airq-deploy keys create \
         --tier {BENCH_TIER}`, passed as `--api-key $KEY`): no rate limit and no cap on queued \
         work, so the figures measure the system, not the limiter\n",
        args.workers,
        args.days,
        args.sensors,
        built.map_or_else(
            || ", reused".to_owned(),
            |d| format!(", built in {:.1} s", d.as_secs_f64())
        ),
        meta.readings,
        meta.first.as_deref().unwrap_or("?"),
        meta.last.as_deref().unwrap_or("?"),
        meta.countries.len()
    );
    let _ = writeln!(md, "## Targets\n");
    for (what, ok, detail) in targets {
        let _ = writeln!(md, "- {what}: {} — {detail}", verdict(*ok));
    }
    md.push('\n');
    let charts = |names: &[&str]| -> String {
        names
            .iter()
            .filter(|n| suite.chart(n).is_file())
            .map(|n| format!("![{n}](charts/{n})\n"))
            .collect()
    };
    let mut sections: Vec<(&str, Vec<&Run>, Vec<&str>)> = vec![
        (
            "/healthz throughput (the generator's ceiling)",
            vec![],
            vec![],
        ),
        (
            "Seed matrix, fixed query (closed loop)",
            vec![],
            vec!["matrix-fixed-percentiles.svg", "matrix-fixed-errors.svg"],
        ),
        (
            "Seed matrix, random mix (closed loop)",
            vec![],
            vec!["matrix-random-percentiles.svg", "matrix-random-errors.svg"],
        ),
        (
            "Open-loop sweep, fixed query (criterion: p99 < 100 ms, no error)",
            vec![],
            vec!["sweep-fixed.svg", "sweep-fixed-errors.svg"],
        ),
        (
            "Open-loop sweep, random mix (criterion: p99 < 1 s, no error)",
            vec![],
            vec!["sweep-random.svg", "sweep-random-errors.svg"],
        ),
        (
            "Sustained random mix (open loop)",
            vec![],
            vec!["random-sustained-over-time.svg"],
        ),
    ];
    for r in &suite.runs {
        let i = match r.name.as_str() {
            "healthz" => 0,
            "matrix-fixed" => 1,
            "matrix-random" => 2,
            n if n.starts_with("sweep-fixed") => 3,
            n if n.starts_with("sweep-random") => 4,
            _ => 5,
        };
        sections[i].1.push(r);
    }
    for (title, runs, names) in &sections {
        if runs.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## {title}\n\n```sh");
        for r in runs {
            let _ = writeln!(md, "{}", r.command);
        }
        let _ = writeln!(md, "```\n");
        let summaries: Vec<Summary> = runs
            .iter()
            .flat_map(|r| r.outcome.summaries.iter().cloned())
            .collect();
        md.push_str(&report::markdown(&summaries));
        md.push('\n');
        md.push_str(&server_table(&summaries));
        let c = charts(names);
        if !c.is_empty() {
            md.push('\n');
            md.push_str(&c);
        }
        md.push('\n');
    }
    Ok(md)
}

/// Queued share, polls and CPU per step (server processes by name).
fn server_table(steps: &[Summary]) -> String {
    let mut out = String::from(
        "| step | queued % | polls/query | submit p99 | mean result | gen. CPU | server CPU (% of one core) |\n|---|--:|--:|--:|--:|--:|---|\n",
    );
    for s in steps {
        let server = s
            .server_cpu
            .as_ref()
            .map(|m| {
                m.iter()
                    .map(|(n, c)| {
                        format!("{} {:.0}", n.trim_start_matches("airq-"), c.cores * 100.0)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.2} | {:.1} ms | {:.1} KiB | {:.0} % | {} |",
            s.label,
            s.queued_pct,
            s.polls_per_query,
            s.submit.p99,
            s.mean_result_bytes / 1024.0,
            s.generator_cpu.cores * 100.0,
            server
        );
    }
    out
}

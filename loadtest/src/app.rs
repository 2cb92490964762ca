//! The `run` command: turns the flags into a client, a journey and a list
//! of steps, runs them one after the other, prints and writes the results
//! and evaluates the thresholds.

use crate::chart;
use crate::cli::{QueryMix, RunArgs};
use crate::client::{Client, Target};
use crate::idle;
use crate::journey::{PollPolicy, Work};
use crate::mix::{Meta, Mix};
use crate::plan::{self, Load, Profile, StageTarget};
use crate::report::{self, JsonReport};
use crate::runner::{self, Settings};
use crate::stats::{Record, Summary};
use crate::threshold::{Check, Threshold};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Default length of an open-loop run.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Default request count of a closed loop.
const DEFAULT_REQUESTS: u64 = 100;

/// Reads the CPU seconds of the server's processes.
pub type ServerCpu = Arc<dyn Fn() -> BTreeMap<String, f64> + Send + Sync>;

/// A client and a journey, ready to run steps.
pub struct Prepared {
    pub client: Arc<Client>,
    pub work: Arc<Work>,
}

/// Everything a `run` measured.
pub struct Outcome {
    pub summaries: Vec<Summary>,
    pub records: Vec<Vec<Record>>,
    pub checks: Vec<Check>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
}

/// `GET /api/meta`.
pub async fn meta(client: &Client) -> anyhow::Result<Meta> {
    let (status, body) = client.fetch("/api/meta").await?;
    if status != 200 {
        bail!(
            "GET /api/meta answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    serde_json::from_slice(&body).context("reading the /api/meta document")
}

pub async fn prepare(args: &RunArgs) -> anyhow::Result<Prepared> {
    let target = Target::resolve(&args.url, args.allow_remote).await?;
    let client = Arc::new(
        Client::new(target, args.connect_timeout, args.timeout)
            .with_api_key(args.api_key.clone())
            .with_gzip(args.gzip),
    );
    let work = if args.endpoint == "query" {
        let mix = if let Some(path) = &args.queries {
            Mix::file(path)?
        } else {
            match args.query {
                QueryMix::Fixed => match meta(&client).await {
                    Ok(m) => Mix::fixed(Some(&m))?,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "no /api/meta: sending the fixed query unshifted");
                        Mix::fixed(None)?
                    }
                },
                QueryMix::Random => {
                    let m = meta(&client)
                        .await
                        .context("the random mix needs /api/meta to aim at the data")?;
                    Mix::random(&m, args.seed)?
                }
            }
        };
        Work::Query {
            mix,
            submit_uri: client.target().uri("/api/query")?,
            prefer_async: args.prefer_async,
            poll: PollPolicy {
                interval: args.poll_interval,
                backoff: if args.poll_backoff.is_finite() {
                    args.poll_backoff.max(1.0)
                } else {
                    1.0
                },
                max_interval: args.poll_max_interval,
                retry_after: args.poll_retry_after,
                max_polls: args.max_polls,
                max_wait: args.poll_timeout,
                follow: args.follow,
            },
        }
    } else if args.endpoint.starts_with('/') {
        Work::Get {
            uri: client.target().uri(&args.endpoint)?,
        }
    } else {
        bail!(
            "--endpoint must be `query` or a path such as /healthz, not {:?}",
            args.endpoint
        );
    };
    Ok(Prepared {
        client,
        work: Arc::new(work),
    })
}

/// The steps the flags ask for, each with its label.
pub fn steps(args: &RunArgs) -> anyhow::Result<Vec<(String, Load)>> {
    let models = [
        args.matrix.is_some(),
        args.rates.is_some(),
        args.stages.is_some(),
        args.rate.is_some(),
    ];
    if models.iter().filter(|m| **m).count() > 1 {
        bail!("choose one of --matrix, --rates, --stages and --rate");
    }
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let duration = args.duration.unwrap_or(DEFAULT_DURATION);
    let steps: Vec<Load> = if let Some(m) = &args.matrix {
        plan::parse_matrix(m)?
            .into_iter()
            .map(|(n, c)| Load::Closed {
                requests: Some(n),
                concurrency: c,
                duration: args.duration,
            })
            .collect()
    } else if let Some(r) = &args.rates {
        plan::parse_rates(r)?
            .into_iter()
            .map(|rate| Load::Open {
                rate: Profile::constant(rate, duration),
                arrival: args.arrival,
            })
            .collect()
    } else if let Some(s) = &args.stages {
        let profile = Profile::staged(plan::parse_stages(s)?);
        vec![match args.stage_target {
            StageTarget::Rate => Load::Open {
                rate: profile,
                arrival: args.arrival,
            },
            StageTarget::Users => Load::Users { users: profile },
        }]
    } else if let Some(rate) = args.rate {
        if !rate.is_finite() || rate <= 0.0 {
            bail!("--rate must be positive");
        }
        vec![Load::Open {
            rate: Profile::constant(rate, duration),
            arrival: args.arrival,
        }]
    } else {
        let requests = match (args.requests, args.duration) {
            (None, None) => Some(DEFAULT_REQUESTS),
            (n, _) => n,
        };
        if requests == Some(0) {
            bail!("--requests must be at least 1");
        }
        vec![Load::Closed {
            requests,
            concurrency: args.concurrency,
            duration: args.duration,
        }]
    };
    let single = steps.len() == 1;
    Ok(steps
        .into_iter()
        .map(|load| {
            let label = match (&args.label, single) {
                (Some(l), true) => l.clone(),
                (Some(l), false) => format!("{l} {}", load.label()),
                (None, _) => load.label(),
            };
            (label, load)
        })
        .collect())
}

pub fn settings(args: &RunArgs, server_cpu: Option<ServerCpu>) -> Settings {
    Settings {
        late_after: args.late_after,
        drain: args.drain,
        max_in_flight: args.max_in_flight,
        max_requests: args.max_requests,
        seed: args.seed,
        keep_records: args.csv.is_some() || args.charts.is_some(),
        progress: !args.no_progress,
        server_cpu,
    }
}

/// Runs the steps of `args` on `prepared`.
pub async fn execute(
    args: &RunArgs,
    prepared: &Prepared,
    settings: &Settings,
) -> anyhow::Result<Outcome> {
    let steps = steps(args)?;
    let thresholds = args
        .thresholds
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Threshold::parse(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.warmup > 0 {
        let warm = Load::Closed {
            requests: Some(args.warmup),
            concurrency: args.concurrency,
            duration: None,
        };
        let quiet = Settings {
            keep_records: false,
            progress: false,
            server_cpu: None,
            ..settings.clone()
        };
        let w = runner::run(
            prepared.client.clone(),
            prepared.work.clone(),
            &warm,
            "warm-up",
            &quiet,
        )
        .await?;
        tracing::info!(ok = w.summary.ok, errors = w.summary.errors, "warm-up done");
    }
    let mut out = Outcome {
        summaries: Vec::new(),
        records: Vec::new(),
        checks: Vec::new(),
    };
    for (i, (label, load)) in steps.iter().enumerate() {
        if i > 0 && !args.pause.is_zero() {
            tokio::time::sleep(args.pause).await;
        }
        tracing::info!(step = %label, load = %load, "running");
        let r = runner::run(
            prepared.client.clone(),
            prepared.work.clone(),
            load,
            label,
            settings,
        )
        .await?;
        out.checks
            .extend(thresholds.iter().map(|t| t.check(&r.summary)));
        out.summaries.push(r.summary);
        out.records.push(r.records);
    }
    Ok(out)
}

/// Writes the charts of `outcome` into `dir`; returns the files written.
pub fn charts(dir: &Path, title: &str, outcome: &Outcome) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    let s = &outcome.summaries;
    if s.len() > 1 {
        let p = dir.join("percentiles.svg");
        chart::percentiles_vs_load(&p, &format!("{title}: time to result by step"), s)?;
        written.push(p.display().to_string());
        let p = dir.join("errors.svg");
        chart::errors_vs_load(&p, &format!("{title}: errors by step"), s)?;
        written.push(p.display().to_string());
        if s.iter().all(|x| x.rate.is_some()) {
            let p = dir.join("sweep.svg");
            chart::sweep(&p, &format!("{title}: time to result by offered rate"), s)?;
            written.push(p.display().to_string());
        }
    }
    // Latency over time for the last (largest) step.
    if let (Some(sum), Some(recs)) = (s.last(), outcome.records.last()) {
        if !recs.is_empty() {
            let p = dir.join("over-time.svg");
            chart::latency_over_time(
                &p,
                &format!("{title}: time to result over time, {}", sum.label),
                recs,
            )?;
            written.push(p.display().to_string());
        }
    }
    Ok(written)
}

/// The `run` command: returns whether every threshold passed.
pub async fn run_command(args: &RunArgs) -> anyhow::Result<bool> {
    let prepared = prepare(args).await?;
    let settings = settings(args, None);
    let target = prepared.client.target().base.clone();
    let work = prepared.work.describe();
    let to_stdout_json = args.json.as_deref() == Some(Path::new("-"));
    if !to_stdout_json {
        println!("airq-loadtest → {target}: {work}");
    }
    let idle = if args.idle_connections > 0 {
        let holder = idle::Holder::open(
            prepared.client.target(),
            args.idle_connections,
            args.connect_timeout,
        )
        .await;
        tracing::info!(n = args.idle_connections, filled_in = ?holder.filled_in, "idle connections open");
        Some(holder)
    } else {
        None
    };
    let outcome = execute(args, &prepared, &settings).await;
    let idle = match idle {
        Some(holder) => Some(holder.finish(args.idle_wait).await),
        None => None,
    };
    // The idle connections' report even when the run failed: the failure
    // may be what they did.
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            if let Some(idle) = &idle {
                eprintln!("{idle}");
            }
            return Err(e);
        }
    };
    if !to_stdout_json {
        print!("{}", report::text(&outcome.summaries, &outcome.checks));
    }
    if let Some(idle) = &idle {
        if to_stdout_json {
            eprintln!("{idle}");
        } else {
            println!("{idle}");
        }
    }
    if let Some(path) = &args.json {
        report::write_json(
            path,
            &JsonReport {
                tool: "airq-loadtest",
                version: env!("CARGO_PKG_VERSION"),
                target: &target,
                work: &work,
                gzip: args.gzip,
                steps: &outcome.summaries,
                thresholds: &outcome.checks,
                passed: outcome.passed(),
            },
        )?;
    }
    if let Some(path) = &args.csv {
        report::write_csv(
            path,
            outcome
                .summaries
                .iter()
                .zip(&outcome.records)
                .map(|(s, r)| (s.label.as_str(), r.as_slice())),
        )?;
    }
    if let Some(dir) = &args.charts {
        let title = args.label.clone().unwrap_or_else(|| "airq".into());
        for f in charts(dir, &title, &outcome)? {
            tracing::info!(file = %f, "chart written");
        }
    }
    Ok(outcome.passed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn args(extra: &[&str]) -> RunArgs {
        let mut v = vec!["airq-loadtest"];
        v.extend_from_slice(extra);
        Cli::try_parse_from(v).unwrap().run
    }

    #[test]
    fn step_selection() {
        let s = steps(&args(&[])).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, "100/10");
        let s = steps(&args(&["--matrix", "seed"])).unwrap();
        assert_eq!(
            s.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
            ["10/10", "100/50", "500/100", "1000/500", "2500/500"]
        );
        let s = steps(&args(&["--rates", "100,200", "-d", "3s"])).unwrap();
        assert_eq!(s[1].0, "200/s");
        assert_eq!(s[1].1.rate(), Some(200.0));
        let s = steps(&args(&["--stages", "1s:5,1s:0", "--stage-target", "users"])).unwrap();
        assert!(matches!(s[0].1, Load::Users { .. }));
        let s = steps(&args(&["-r", "50", "--label", "x"])).unwrap();
        assert_eq!(s[0].0, "x");
        let s = steps(&args(&["-d", "5s"])).unwrap();
        assert!(matches!(s[0].1, Load::Closed { requests: None, .. }));
        assert!(steps(&args(&["-r", "5", "--matrix", "seed"])).is_err());
        assert!(steps(&args(&["-r", "0"])).is_err());
        assert!(steps(&args(&["-c", "0"])).is_err());
    }
}

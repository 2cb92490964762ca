//! The operator's kit against a real Prometheus (Debian's package, which
//! scripts/test.sh installs): a stack started by `airq-deploy up`, scraped
//! every second; every query of the Grafana dashboard evaluated through
//! Prometheus's HTTP API must return data of the right shape, before any
//! error (errors as 0, not "no data"), and with every worker paused (the
//! backlog per worker shows the backlog, and the alert rules' "backlog
//! with no worker" fires).

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{LocalStack, HOUR_ALL, SAMPLE};

/// The rate window the dashboard's `$__rate_interval` becomes: several
/// scrapes at 1 s.
const RATE: &str = "10s";

fn observability(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("observability")
        .join(file)
}

/// Every (panel title, query) of the dashboard.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(observability("grafana-dashboard.json")).expect("dashboard");
    let doc: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut out = Vec::new();
    for panel in doc["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.clone(), expr.replace("$__rate_interval", RATE)));
            }
        }
    }
    out
}

/// A process killed (and its workers resumed) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pids of this stack's workers: `airq-worker` processes on its
/// database (their command line names it).
fn worker_pids(db: &Path) -> Vec<String> {
    let db = db.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_worker = args.first().is_some_and(|a| a.ends_with("airq-worker"));
        if is_worker && args.contains(&db) {
            pids.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    pids
}

fn signal(pids: &[String], sig: &str) {
    for pid in pids {
        let _ = Command::new("kill").args([sig, pid]).status();
    }
}

/// Resumes paused workers when dropped, so a failing test leaves none
/// stopped.
struct Paused(Vec<String>);

impl Drop for Paused {
    fn drop(&mut self) {
        signal(&self.0, "-CONT");
    }
}

struct Prometheus {
    url: String,
    http: reqwest::Client,
}

impl Prometheus {
    /// An instant query's result: its type and samples (labels, value).
    async fn query(&self, expr: &str) -> (String, Vec<(Value, String)>) {
        let r = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .expect("query Prometheus");
        let body: Value = r.json().await.expect("Prometheus answers JSON");
        assert_eq!(body["status"], "success", "{expr}: {body}");
        let kind = body["data"]["resultType"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let samples = match &body["data"]["result"] {
            Value::Array(items) => items
                .iter()
                .map(|s| {
                    (
                        s["metric"].clone(),
                        s["value"][1].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            scalar => vec![(
                Value::Null,
                scalar[1].as_str().unwrap_or_default().to_owned(),
            )],
        };
        (kind, samples)
    }

    /// Waits (up to `within`) until `expr` has a sample `ok` accepts.
    async fn until(&self, what: &str, expr: &str, within: Duration, ok: impl Fn(f64) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let (_, samples) = self.query(expr).await;
            if samples.iter().any(|(_, v)| v.parse::<f64>().is_ok_and(&ok)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {expr} gave {samples:?} for {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// `host:port` of a metrics URL.
fn target(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_has_data_before_errors_and_with_every_worker_paused() {
    let prometheus = which("prometheus").unwrap_or_else(|| {
        panic!(
            "prometheus is not installed: scripts/test.sh installs Debian's package \
             (apt-get install --no-install-recommends prometheus)"
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("airq.db");
    // The master runs every 2 s on the sample, so its panels have data.
    let stack = LocalStack::start_at(
        &db,
        2,
        &[
            "--cron",
            "*/2 * * * * *",
            "--source",
            SAMPLE,
            "--no-live",
            "--shutdown-grace",
            "5s",
        ],
    );
    // Its addresses: the gateway's, and where each worker and the master
    // serve metrics (printed as they start, in any order).
    let (mut gateway, mut workers, mut master) = (None, Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while gateway.is_none() || workers.len() < 2 || master.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = stack
            .lines
            .recv_timeout(left)
            .expect("up prints every address within 60 s");
        if let Some(rest) = line.strip_prefix("airq is up at ") {
            gateway = rest.split_whitespace().next().map(str::to_owned);
        } else if let Some((name, url)) = line
            .strip_prefix('[')
            .and_then(|l| l.split_once("] metrics on "))
        {
            if name.starts_with("worker") {
                workers.push(target(url.trim()));
            } else if name == "master" {
                master.push(target(url.trim()));
            }
        }
    }
    let gateway = gateway.expect("the gateway's address");

    // Prometheus, scraping every second, with the kit's alert rules.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let list = |t: &[String]| {
        t.iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 800ms\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n\
         \x20 - job_name: airq-gateway\n    static_configs:\n      - targets: [\"{gw}\"]\n\
         \x20 - job_name: airq-worker\n    static_configs:\n      - targets: [{workers}]\n\
         \x20 - job_name: airq-master\n    static_configs:\n      - targets: [{master}]\n",
        rules = observability("alerts.yml").display(),
        gw = target(&gateway),
        workers = list(&workers),
        master = list(&master),
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).expect("writing the config");
    let _prom = Killed(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus"),
    );
    // Every request bounded: a wedged process fails the test, not hangs it.
    let client = || {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client")
    };
    let prom = Prometheus {
        url: format!("http://127.0.0.1:{port}"),
        http: client(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !prom
        .http
        .get(format!("{}/-/ready", prom.url))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            Instant::now() < deadline,
            "Prometheus not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    prom.until(
        "every target up",
        "count(up == 1)",
        Duration::from_secs(30),
        |n| n == 4.0,
    )
    .await;

    // Traffic without an error: direct and queued queries, the latest.
    let http = client();
    let mut results = Vec::new();
    for k in 0..6 {
        let mut r = http
            .post(format!("{gateway}/api/query"))
            .header("content-type", "application/json")
            .body(HOUR_ALL);
        if k % 2 == 1 {
            r = r.header("prefer", "respond-async");
        }
        let r = r.send().await.expect("POST /api/query");
        assert!(r.status().is_success(), "{}", r.status());
        if let Some(l) = r.headers().get("location") {
            results.push(l.to_str().expect("Location").to_owned());
        }
    }
    for path in &results {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = http
                .get(format!("{gateway}{path}?wait=5s"))
                .send()
                .await
                .expect("GET the result");
            if r.status() == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "{path} not done");
        }
    }
    // A master run and several scrapes of all of it.
    prom.until(
        "a master run",
        "sum(airq_ingest_runs_total{outcome=\"success\"})",
        Duration::from_secs(30),
        |n| n >= 2.0,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    for (title, expr) in dashboard_queries() {
        let (kind, samples) = prom.query(&expr).await;
        assert!(
            kind == "vector" || kind == "scalar",
            "{title}: {expr} is a {kind}"
        );
        // A `> 0` filter shows only what happened; the rest always has data.
        if !expr.trim_end().ends_with("> 0") {
            assert!(!samples.is_empty(), "{title}: {expr} has no data");
        }
        if expr.contains(r#"status=~"5.."#) || expr.contains(r#"status=~"4.."#) {
            assert!(
                samples.iter().all(|(_, v)| v == "0"),
                "{title}: before any error, {expr} is 0: {samples:?}"
            );
        }
    }

    // Every worker paused, requests queued: the backlog still shows, and
    // the alert rule sees no worker.
    let pids = worker_pids(&db);
    assert_eq!(pids.len(), 2, "the stack's workers");
    signal(&pids, "-STOP");
    let resume = Paused(pids);
    for _ in 0..3 {
        let r = http
            .post(format!("{gateway}/api/query"))
            .header("content-type", "application/json")
            .header("prefer", "respond-async")
            .body(HOUR_ALL)
            .send()
            .await
            .expect("POST /api/query");
        assert_eq!(r.status(), 202);
    }
    prom.until(
        "no worker up",
        "count(up{job=\"airq-worker\"} == 1) or vector(0)",
        Duration::from_secs(20),
        |n| n == 0.0,
    )
    .await;
    let backlog = dashboard_queries()
        .into_iter()
        .find(|(title, _)| title == "Backlog per worker")
        .map(|(_, expr)| expr)
        .expect("the backlog panel");
    prom.until(
        "the backlog with no worker",
        &backlog,
        Duration::from_secs(20),
        |n| n >= 3.0,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body: Value = prom
            .http
            .get(format!("{}/api/v1/alerts", prom.url))
            .send()
            .await
            .expect("alerts")
            .json()
            .await
            .expect("JSON");
        let fired = body["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| {
                a["labels"]["alertname"] == "AirqBacklogWithoutWorkers"
                    && (a["state"] == "pending" || a["state"] == "firing")
            });
        if fired {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "AirqBacklogWithoutWorkers did not fire: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Workers resumed before the stack stops, so they stop gracefully.
    drop(resume);
    drop(stack);
}

/// A program on the PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

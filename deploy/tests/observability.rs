//! The operator's files in deploy/observability/ against what the binaries
//! export: every metric the Grafana dashboard queries (its PromQL parsed
//! with a real PromQL parser) is in the contract below, with the labels it
//! filters on; and the real worker, master and gateway, started by
//! `airq-deploy up` as a newcomer runs it, print where their metrics are
//! and serve exactly the contract's names (parsed with a real Prometheus
//! text parser).

mod support;

use airq_testkit::metrics::{Scrape, Value};
use promql_parser::parser::{self, Expr};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{bin, stdout_lines, stop_gracefully, LocalStack, SAMPLE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binary {
    Gateway,
    Worker,
    Master,
}

struct Series {
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    from: Binary,
}

const fn series(
    from: Binary,
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
) -> Series {
    Series {
        name,
        kind,
        labels,
        from,
    }
}

use Binary::{Gateway, Master, Worker};
use Kind::{Counter, Gauge, Histogram};

/// The documented contract: every metric the binaries export, its type and
/// its labels (README.md and deploy/observability/README.md list them).
const CONTRACT: &[Series] = &[
    series(
        Gateway,
        "airq_http_requests_total",
        Counter,
        &["route", "status"],
    ),
    series(
        Gateway,
        "airq_http_request_duration_seconds",
        Histogram,
        &["route"],
    ),
    series(Gateway, "airq_http_response_bytes_total", Counter, &[]),
    series(Gateway, "airq_queries_total", Counter, &["answer"]),
    series(Gateway, "airq_answer_cache_total", Counter, &["outcome"]),
    series(Gateway, "airq_gzip_pieces_total", Counter, &["outcome"]),
    series(Gateway, "airq_direct_slots_in_use", Gauge, &[]),
    series(Gateway, "airq_direct_slots", Gauge, &[]),
    series(Gateway, "airq_answer_cache_bytes", Gauge, &[]),
    series(Gateway, "airq_request_queue_messages", Gauge, &["state"]),
    series(Gateway, "airq_request_queue_dlq_messages", Gauge, &[]),
    series(Gateway, "airq_results_created_total", Counter, &[]),
    series(
        Gateway,
        "airq_results_finished_total",
        Counter,
        &["outcome"],
    ),
    series(Gateway, "airq_rejections_total", Counter, &["reason"]),
    series(Gateway, "airq_live_streams", Gauge, &[]),
    series(Gateway, "airq_live_feed_version", Gauge, &[]),
    series(Gateway, "airq_live_feed_errors_total", Counter, &[]),
    series(Gateway, "airq_alert_events_total", Counter, &[]),
    series(
        Gateway,
        "airq_webhook_attempts_total",
        Counter,
        &["outcome"],
    ),
    series(Worker, "airq_worker_jobs_received_total", Counter, &[]),
    series(Worker, "airq_worker_jobs_total", Counter, &["outcome"]),
    series(Worker, "airq_worker_job_duration_seconds", Histogram, &[]),
    series(Worker, "airq_worker_job_rows", Histogram, &[]),
    series(Worker, "airq_worker_heartbeats_total", Counter, &[]),
    series(Worker, "airq_worker_stale_receipts_total", Counter, &[]),
    series(Worker, "airq_worker_receive_wait_seconds", Histogram, &[]),
    series(Worker, "airq_worker_concurrency", Gauge, &[]),
    series(Worker, "airq_worker_busy", Gauge, &[]),
    series(
        Master,
        "airq_ingest_last_run_start_timestamp_seconds",
        Gauge,
        &[],
    ),
    series(
        Master,
        "airq_ingest_last_run_end_timestamp_seconds",
        Gauge,
        &[],
    ),
    series(
        Master,
        "airq_ingest_last_success_timestamp_seconds",
        Gauge,
        &[],
    ),
    series(Master, "airq_ingest_last_run_duration_seconds", Gauge, &[]),
    series(Master, "airq_ingest_last_success_age_seconds", Gauge, &[]),
    series(Master, "airq_ingest_runs_total", Counter, &["outcome"]),
    series(Master, "airq_ingest_readings_stored_total", Counter, &[]),
    series(Master, "airq_ingest_rejections_total", Counter, &["reason"]),
    series(Master, "airq_ingest_fetched_bytes_total", Counter, &[]),
    series(Master, "airq_ingest_run_duration_seconds", Histogram, &[]),
    series(Master, "airq_ingest_not_modified_total", Counter, &[]),
    series(
        Master,
        "airq_ingest_readings_pruned_total",
        Counter,
        &["series"],
    ),
];

/// Labels Prometheus itself puts on every scraped series.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// The master's timestamp gauges appear with its first run (the last
/// success only with a successful one); `up`'s master has not run yet.
const AFTER_A_RUN: &[&str] = &[
    "airq_ingest_last_run_start_timestamp_seconds",
    "airq_ingest_last_run_end_timestamp_seconds",
    "airq_ingest_last_run_duration_seconds",
    "airq_ingest_last_success_timestamp_seconds",
    "airq_ingest_last_success_age_seconds",
    LIVE_ONLY[0],
    LIVE_ONLY[1],
];

/// Series of the live schedule only: after a 304, after a run that pruned.
const LIVE_ONLY: [&str; 2] = [
    "airq_ingest_not_modified_total",
    "airq_ingest_readings_pruned_total",
];

fn observability(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("observability")
        .join(file)
}

/// The series a PromQL selector's name refers to: the contract entry, and
/// whether the name is one of a histogram's `_bucket`, `_sum`, `_count`.
fn resolve(name: &str) -> Option<(&'static Series, Option<&'static str>)> {
    if let Some(s) = CONTRACT.iter().find(|s| s.name == name) {
        return Some((s, None));
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if let Some(s) = CONTRACT
                .iter()
                .find(|s| s.name == base && s.kind == Histogram)
            {
                return Some((s, Some(suffix)));
            }
        }
    }
    None
}

/// Every `expr` string anywhere in the dashboard (panels, nested rows,
/// variables), with the title of the panel it belongs to.
fn expressions(v: &serde_json::Value, title: &str, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            let title = map
                .get("title")
                .and_then(|t| t.as_str())
                .unwrap_or(title)
                .to_owned();
            for (k, child) in map {
                match (k.as_str(), child) {
                    ("expr", serde_json::Value::String(e)) => out.push((title.clone(), e.clone())),
                    _ => expressions(child, &title, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                expressions(item, title, out);
            }
        }
        _ => {}
    }
}

/// Grafana's interval variables, which PromQL does not know.
fn as_promql(expr: &str) -> String {
    ["$__rate_interval", "$__interval", "$__range"]
        .iter()
        .fold(expr.to_owned(), |e, var| e.replace(var, "5m"))
}

/// Every vector selector in `expr`: its metric name and the label names
/// it matches on.
fn selectors(expr: &Expr, out: &mut Vec<(Option<String>, Vec<String>)>) {
    match expr {
        Expr::VectorSelector(vs) => out.push(selector(vs)),
        Expr::MatrixSelector(ms) => out.push(selector(&ms.vs)),
        Expr::Aggregate(a) => {
            selectors(&a.expr, out);
            if let Some(p) = &a.param {
                selectors(p, out);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::Subquery(s) => selectors(&s.expr, out),
        Expr::Call(c) => {
            for arg in &c.args.args {
                selectors(arg, out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn selector(vs: &parser::VectorSelector) -> (Option<String>, Vec<String>) {
    let labels = vs
        .matchers
        .matchers
        .iter()
        .chain(vs.matchers.or_matchers.iter().flatten())
        .map(|m| m.name.clone())
        .filter(|n| n != "__name__")
        .collect();
    (vs.name.clone(), labels)
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let text = std::fs::read_to_string(observability("grafana-dashboard.json"))
        .expect("the dashboard is there");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");

    // Importable: a title, a uid, a Prometheus data source variable the
    // panels use, unique panel ids, every panel with a query.
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["uid"].as_str().is_some_and(|t| !t.is_empty()));
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(variables.iter().any(|v| v["type"] == "datasource"
        && v["name"] == "datasource"
        && v["query"] == "prometheus"));
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        let id = panel["id"].as_u64().expect("a panel id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap_or("?");
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title}: the data source variable"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} queries something");
        let refs: BTreeSet<&str> = targets.iter().filter_map(|t| t["refId"].as_str()).collect();
        assert_eq!(refs.len(), targets.len(), "{title}: unique refIds");
    }

    let mut exprs = Vec::new();
    expressions(&dashboard, "", &mut exprs);
    assert!(exprs.len() >= 20, "{} expressions", exprs.len());
    let mut used = BTreeSet::new();
    for (title, expr) in &exprs {
        let ast = parser::parse(&as_promql(expr))
            .unwrap_or_else(|e| panic!("{title}: {expr:?} is not valid PromQL: {e}"));
        let mut found = Vec::new();
        selectors(&ast, &mut found);
        assert!(!found.is_empty(), "{title}: {expr:?} selects no metric");
        for (name, labels) in found {
            let name =
                name.unwrap_or_else(|| panic!("{title}: {expr:?}: a selector without a name"));
            let (series, suffix) = resolve(&name).unwrap_or_else(|| {
                panic!("{title}: {expr:?}: {name} is not a metric the binaries export")
            });
            assert!(
                series.kind != Histogram || suffix.is_some(),
                "{title}: histogram {name} is queried as _bucket, _sum or _count"
            );
            for label in &labels {
                let known = series.labels.contains(&label.as_str())
                    || TARGET_LABELS.contains(&label.as_str())
                    || (label == "le" && suffix == Some("_bucket"));
                assert!(known, "{title}: {expr:?}: {name} has no label {label}");
            }
            used.insert(series.name);
        }
    }

    // The views the operator needs are there.
    let all: Vec<&str> = exprs.iter().map(|(_, e)| e.as_str()).collect();
    let has = |needle: &str| all.iter().any(|e| e.contains(needle));
    assert!(
        has(
            r#"max(airq_request_queue_messages{state="visible"}) / clamp_min(count(airq_worker_concurrency) or vector(0), 1)"#
        ),
        "backlog per worker"
    );
    assert!(
        has("time() - max(airq_ingest_last_success_timestamp_seconds)"),
        "ingestion freshness"
    );
    for quantile in ["histogram_quantile(0.5", "histogram_quantile(0.99"] {
        for histogram in [
            "airq_http_request_duration_seconds_bucket",
            "airq_worker_job_duration_seconds_bucket",
        ] {
            assert!(
                all.iter()
                    .any(|e| e.contains(quantile) && e.contains(histogram)),
                "{quantile} of {histogram}"
            );
        }
    }
    for needed in [
        "airq_http_requests_total",
        "airq_rejections_total",
        "airq_request_queue_messages",
        "airq_worker_jobs_total",
    ] {
        assert!(used.contains(needed), "the dashboard shows {needed}");
    }
}

#[test]
fn the_scrape_config_names_the_gateway_and_a_job_per_binary() {
    let text = std::fs::read_to_string(observability("prometheus.yml")).expect("prometheus.yml");
    for needle in [
        "job_name: airq-gateway",
        "job_name: airq-worker",
        "job_name: airq-master",
        r#"targets: ["127.0.0.1:8080"]"#,
        "metrics on http://",
    ] {
        assert!(text.contains(needle), "prometheus.yml has {needle:?}");
    }
}

/// `airq-deploy up`, killed (gracefully) when dropped.
/// The master alone, stopped gracefully when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        stop_gracefully(&mut self.child);
    }
}

async fn scrape(http: &reqwest::Client, url: &str) -> Scrape {
    let r = http.get(url).send().await.expect("GET /metrics");
    assert_eq!(r.status(), 200, "{url}");
    let content_type = r.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with(airq_testkit::metrics::CONTENT_TYPE),
        "{url}: {content_type}"
    );
    let body = r.text().await.expect("body");
    airq_testkit::metrics::parse(&body)
}

fn kind_of(v: &Value) -> Option<Kind> {
    match v {
        Value::Counter(_) => Some(Counter),
        Value::Gauge(_) => Some(Gauge),
        Value::Histogram(_) => Some(Histogram),
        _ => None,
    }
}

/// Checks a scrape of `from` against the contract: each `airq_` series it
/// exports is in the contract with that type and labels, and (`complete`)
/// each of the contract's series of `from` is exported, except `absent`.
fn check(scrape: &Scrape, from: Binary, complete: bool, absent: &[&str]) {
    let mut exported = BTreeSet::new();
    for sample in scrape
        .samples
        .iter()
        .filter(|s| s.metric.starts_with("airq_"))
    {
        let name = sample.metric.as_str();
        let (series, suffix) = resolve(name)
            .filter(|(s, _)| s.from == from)
            .unwrap_or_else(|| panic!("{from:?} exports {name}, which is not in the contract"));
        // The parser folds a histogram's `_bucket` lines into one sample
        // named after it, and leaves its `_sum` and `_count` untyped.
        match suffix {
            Some("_sum" | "_count") => {
                assert!(matches!(sample.value, Value::Untyped(_)), "{name}");
            }
            _ => assert_eq!(kind_of(&sample.value), Some(series.kind), "{name}"),
        }
        for label in sample.labels.keys() {
            assert!(
                series.labels.contains(&label.as_str()),
                "{name} has a label {label} the contract does not list"
            );
        }
        exported.insert(series.name);
    }
    if complete {
        for series in CONTRACT.iter().filter(|s| s.from == from) {
            if absent.contains(&series.name) {
                continue;
            }
            assert!(
                exported.contains(series.name),
                "{from:?} does not export {}",
                series.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_prints_where_each_process_serves_metrics_and_they_serve_the_contract() {
    let stack = LocalStack::start(1, &["--shutdown-grace", "10s"]);
    let (mut gateway, mut worker, mut master) = (None, None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while gateway.is_none() || worker.is_none() || master.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = stack.lines.recv_timeout(left).unwrap_or_else(|_| {
            panic!("up did not print every address within 60 s; it printed {seen:#?}")
        });
        if let Some(rest) = line.strip_prefix("airq is up at ") {
            gateway = rest.split_whitespace().next().map(str::to_owned);
        } else if let Some(url) = line.strip_prefix("[worker-1] metrics on ") {
            worker = Some(url.trim().to_owned());
        } else if let Some(url) = line.strip_prefix("[master] metrics on ") {
            master = Some(url.trim().to_owned());
        }
        seen.push(line);
    }
    let (gateway, worker, master) = (
        gateway.expect("gateway"),
        worker.expect("worker"),
        master.expect("master"),
    );
    for url in [&worker, &master] {
        assert!(
            url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"),
            "on loopback: {url}"
        );
    }

    let http = reqwest::Client::new();
    check(&scrape(&http, &worker).await, Worker, true, &[]);
    check(&scrape(&http, &master).await, Master, true, AFTER_A_RUN);
    // The gateway's own: after a request, whatever it exports so far is in
    // the contract.
    let page = http
        .get(format!("{gateway}/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(page.status(), 200);
    let gateway_scrape = scrape(&http, &format!("{gateway}/metrics")).await;
    assert!(
        gateway_scrape
            .samples
            .iter()
            .any(|s| s.metric == "airq_http_requests_total"),
        "the gateway counts requests"
    );
    check(&gateway_scrape, Gateway, false, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_run_the_master_serves_every_series_of_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(bin("airq-master"))
        .args([
            "schedule",
            "--cron",
            "0 0 0 1 1 *",
            "--run-now",
            "--metrics-listen",
            "127.0.0.1:0",
            "--source",
            SAMPLE,
        ])
        .arg("--db")
        .arg(dir.path().join("airq.db"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start airq-master");
    let lines = stdout_lines(&mut child);
    let stack = Running {
        child,
        lines,
        _dir: dir,
    };
    let line = stack
        .lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the master prints its metrics address");
    let url = line
        .strip_prefix("metrics on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let scraped = loop {
        let s = scrape(&http, &url).await;
        let ran = s.samples.iter().any(|x| {
            x.metric == "airq_ingest_runs_total"
                && x.labels.get("outcome") == Some("success")
                && matches!(x.value, Value::Counter(v) if v >= 1.0)
        });
        if ran {
            break s;
        }
        assert!(Instant::now() < deadline, "no successful run within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    check(&scraped, Master, true, &LIVE_ONLY);
    // The kit's README lists every rejection reason the master exports
    // (each is registered at 0).
    let readme = std::fs::read_to_string(observability("README.md")).expect("the kit's README");
    let reasons: BTreeSet<&str> = scraped
        .samples
        .iter()
        .filter(|x| x.metric == "airq_ingest_rejections_total")
        .filter_map(|x| x.labels.get("reason"))
        .collect();
    assert!(reasons.len() >= 15, "{reasons:?}");
    for reason in reasons {
        assert!(
            readme.contains(&format!("`{reason}`")),
            "deploy/observability/README.md does not list the rejection reason {reason}"
        );
    }
}

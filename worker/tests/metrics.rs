//! `airq-worker --metrics-listen`: the real binary on a temporary SQLite
//! file serves Prometheus text (parsed with a real parser) whose counters
//! move as jobs go through, and its JSON log lines about a job carry the
//! job's request id.

mod support;

use airq_core::job::REQUEST_SEND;
use airq_core::queue::Queue;
use airq_core::results::Outcome;
use airq_core::{Query, QueryLimits};
use airq_testkit::metrics::{kind, observations, scrape, value};
use airq_testkit::process::{stdout_lines, wait_for_line, Running};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Env;
use uuid::Uuid;

const HOUR_DE_LOW: &[u8] = br#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE","minAqi":0,"maxAqi":10,"range":"Low"}"#;
const REQUEST_ID: &str = "req-metrics-test.1";

/// Every series the worker exports, with its type: the documented contract
/// (deploy/observability/README.md).
const SERIES: &[(&str, &str)] = &[
    ("airq_worker_jobs_received_total", "counter"),
    ("airq_worker_jobs_total", "counter"),
    ("airq_worker_job_duration_seconds", "histogram"),
    ("airq_worker_job_rows", "histogram"),
    ("airq_worker_heartbeats_total", "counter"),
    ("airq_worker_stale_receipts_total", "counter"),
    ("airq_worker_receive_wait_seconds", "histogram"),
    ("airq_worker_concurrency", "gauge"),
    ("airq_worker_busy", "gauge"),
];

/// Starts the worker with metrics on a free port, JSON logs into `log` and
/// `extra` flags; returns it and the metrics URL it printed.
fn start_worker(env: &Env, log: &std::path::Path, extra: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_airq-worker"))
        .arg("--db")
        .arg(&env.db_path)
        .args([
            "--receive-wait",
            "1s",
            "--concurrency",
            "2",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .args(extra)
        .env_remove("AIRQ_METRICS_LISTEN")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start airq-worker");
    let lines = stdout_lines(&mut child);
    let worker = Running(child);
    match wait_for_line(&lines, Duration::from_secs(30), |line| {
        line.strip_prefix("metrics on ")
            .map(|u| u.trim().to_owned())
    }) {
        Ok(url) => (worker, url),
        Err(_) => panic!("no metrics line within 30 s; log:\n{}", read(log)),
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_jobs_go_through_and_logs_name_the_request_id() {
    let env = Env::new();
    let log = env.dir.path().join("worker.log");
    let (_worker, url) = start_worker(&env, &log, &[]);
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"));

    // Before any job: every series is there, at zero.
    let first = scrape(&url);
    for (name, want) in SERIES {
        let sample = first.samples.iter().find(|s| s.metric == *name);
        let sample = sample.unwrap_or_else(|| panic!("{name} is exported"));
        assert_eq!(kind(&sample.value), *want, "{name}");
    }
    for outcome in ["done", "failed", "duplicate", "retried", "returned"] {
        assert_eq!(
            value(&first, "airq_worker_jobs_total", &[("outcome", outcome)]),
            Some(0.0),
            "{outcome}"
        );
    }
    assert_eq!(value(&first, "airq_worker_concurrency", &[]), Some(2.0));
    assert_eq!(value(&first, "airq_worker_busy", &[]), Some(0.0));

    // One good query and one whose query is bad.
    let query = Query::from_json(HOUR_DE_LOW, &QueryLimits::default()).expect("query");
    let id = env.submit(&query, Some(REQUEST_ID)).await;
    let bad = Uuid::new_v4();
    env.queue(REQUEST_SEND)
        .send(&serde_json::json!({"id": bad, "query": "{\"startDate\":\"nope\"}"}).to_string())
        .await
        .expect("send");
    let got = env.collect(2, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let good = got.iter().find(|r| r.id == id).expect("the good result");
    assert!(
        matches!(good.outcome, Outcome::Stored { rows: 3315, .. }),
        "{:?}",
        good.outcome
    );

    // Counted once the requests are deleted: bounded wait.
    let after = airq_testkit::metrics::scrape_until(&url, Duration::from_secs(20), |s| {
        value(s, "airq_worker_jobs_total", &[("outcome", "done")]) == Some(1.0)
            && value(s, "airq_worker_jobs_total", &[("outcome", "failed")]) == Some(1.0)
            // A job is counted before its task ends and leaves `busy`.
            && value(s, "airq_worker_busy", &[]) == Some(0.0)
    });
    let jobs = |outcome| value(&after, "airq_worker_jobs_total", &[("outcome", outcome)]);
    assert_eq!(jobs("done"), Some(1.0));
    assert_eq!(jobs("failed"), Some(1.0));
    assert_eq!(jobs("duplicate"), Some(0.0));
    assert_eq!(
        value(&after, "airq_worker_jobs_received_total", &[]),
        Some(2.0)
    );
    assert_eq!(
        observations(&after, "airq_worker_job_duration_seconds"),
        Some(2.0),
        "a done and a failed job ran"
    );
    assert_eq!(
        observations(&after, "airq_worker_job_rows"),
        Some(1.0),
        "rows of the done job"
    );
    assert!(observations(&after, "airq_worker_receive_wait_seconds").is_some_and(|n| n >= 1.0));
    assert_eq!(value(&after, "airq_worker_busy", &[]), Some(0.0));
    assert!(
        after.samples.iter().all(|s| !s
            .labels
            .values()
            .any(|v| v == REQUEST_ID || v == &id.to_string())),
        "no id is ever a label"
    );

    // Every JSON log line about the good job names its request id.
    let logs = read(&log);
    let about_job: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["span"]["result"] == id.to_string())
        .collect();
    assert!(
        about_job
            .iter()
            .any(|l| l["fields"]["message"] == "query done"),
        "{logs}"
    );
    for line in &about_job {
        assert_eq!(line["span"]["request_id"], REQUEST_ID, "{line}");
    }
    // The bad job's lines name its result, with no request id to name.
    let about_bad: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["span"]["result"] == bad.to_string())
        .collect();
    assert!(!about_bad.is_empty(), "{logs}");
    for line in &about_bad {
        assert_eq!(line["span"]["request_id"], "", "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_is_busy_and_its_heartbeats_are_counted() {
    let env = Env::new();
    let log = env.dir.path().join("worker.log");
    // Renewed every 333 ms while the query takes 3 s.
    let (_worker, url) = start_worker(
        &env,
        &log,
        &["--visibility-timeout", "1s", "--test-query-delay", "3s"],
    );
    let query = Query::from_json(HOUR_DE_LOW, &QueryLimits::default()).expect("query");
    env.submit(&query, Some(REQUEST_ID)).await;
    let running = airq_testkit::metrics::scrape_until(&url, Duration::from_secs(20), |s| {
        value(s, "airq_worker_heartbeats_total", &[]).is_some_and(|n| n >= 1.0)
    });
    assert!(
        value(&running, "airq_worker_heartbeats_total", &[]).is_some_and(|n| n >= 1.0),
        "heartbeats while it runs; log:\n{}",
        read(&log)
    );
    assert_eq!(value(&running, "airq_worker_busy", &[]), Some(1.0));
    assert_eq!(
        value(&running, "airq_worker_jobs_total", &[("outcome", "done")]),
        Some(0.0)
    );
    assert_eq!(env.collect(1, Duration::from_secs(30)).await.len(), 1);
    // The job's outcome is counted before its `Busy` guard drops (at the
    // end of its task): wait for both, so that a scrape between the two
    // does not read the job as still running.
    let done = airq_testkit::metrics::scrape_until(&url, Duration::from_secs(20), |s| {
        value(s, "airq_worker_jobs_total", &[("outcome", "done")]) == Some(1.0)
            && value(s, "airq_worker_busy", &[]) == Some(0.0)
    });
    assert_eq!(
        value(&done, "airq_worker_jobs_total", &[("outcome", "done")]),
        Some(1.0)
    );
    assert_eq!(value(&done, "airq_worker_busy", &[]), Some(0.0));
    assert_eq!(
        value(&done, "airq_worker_stale_receipts_total", &[]),
        Some(0.0)
    );
}

#[test]
fn a_port_in_use_is_a_clear_startup_error() {
    let env = Env::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let log = env.dir.path().join("stderr.log");
    let mut worker = Running(
        Command::new(env!("CARGO_BIN_EXE_airq-worker"))
            .arg("--db")
            .arg(&env.db_path)
            .args(["--metrics-listen", &addr])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start airq-worker"),
    );
    // Bounded: at most 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = worker.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "still running: {}", read(&log));
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = read(&log);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("listening for metrics on") && stderr.contains(&addr),
        "{stderr}"
    );
}

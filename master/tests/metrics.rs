//! `airq-master schedule --metrics-listen`: the real binary runs once at
//! start (`--run-now`, on the shipped sample or a missing file) with its
//! cron far away, and its scrape (parsed with a real Prometheus parser)
//! records the run.

mod support;

use airq_testkit::metrics::{kind, observations, scrape, value, Scrape};
use airq_testkit::process::{stdout_lines, wait_for_line, Running};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::*;

/// Once a year: never during a test, so only the `--run-now` run happens.
const YEARLY: &str = "0 0 0 1 1 *";

/// Every series the master exports, with its type: the documented contract
/// (deploy/observability/README.md).
const SERIES: &[(&str, &str)] = &[
    ("airq_ingest_last_run_start_timestamp_seconds", "gauge"),
    ("airq_ingest_last_run_end_timestamp_seconds", "gauge"),
    ("airq_ingest_last_success_timestamp_seconds", "gauge"),
    ("airq_ingest_last_success_age_seconds", "gauge"),
    ("airq_ingest_runs_total", "counter"),
    ("airq_ingest_readings_stored_total", "counter"),
    ("airq_ingest_rejections_total", "counter"),
    ("airq_ingest_fetched_bytes_total", "counter"),
    ("airq_ingest_run_duration_seconds", "histogram"),
];

/// The feed's rejection reasons as labels.
const REASONS: &[&str] = &[
    "malformed_entry",
    "bad_timestamp",
    "no_p1_p2_value",
    "non_numeric_value",
    "negative_value",
    "non_finite_value",
    "sensor_saturated",
    "timestamp_out_of_range",
    "bad_country_code",
    "bad_latitude",
    "bad_longitude",
    "bad_altitude",
    "bad_sensor_type",
    "in_no_country",
    "duplicate_timestamp",
];

/// Starts `schedule --run-now` on `source` with metrics on a free port;
/// returns it and the metrics URL it printed.
fn start(source: &Path, db: &Path, log: &Path) -> (Running, String) {
    let mut cmd = airq(&[
        "schedule",
        "--cron",
        YEARLY,
        "--run-now",
        "--metrics-listen",
        "127.0.0.1:0",
        "--source",
        source.to_str().expect("utf-8"),
        "--db",
        db.to_str().expect("utf-8"),
    ]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"));
    let mut child = Running(cmd.spawn().expect("starts"));
    let lines = stdout_lines(child.child());
    match wait_for_line(&lines, Duration::from_secs(30), |line| {
        line.strip_prefix("metrics on ")
            .map(|u| u.trim().to_owned())
    }) {
        Ok(url) => (child, url),
        Err(_) => panic!(
            "no metrics line within 30 s; stderr:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    }
}

/// Scrapes until a run has ended (success or failure), for at most 60 s.
fn after_first_run(url: &str, log: &Path) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = scrape(url);
        let runs = value(&s, "airq_ingest_runs_total", &[("outcome", "success")]).unwrap_or(0.0)
            + value(&s, "airq_ingest_runs_total", &[("outcome", "failure")]).unwrap_or(0.0);
        if runs >= 1.0 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "no run ended within 60 s; stderr:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

fn stop(mut child: Running, log: &Path) {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = wait_for(&mut child.0, Duration::from_secs(20));
    let stderr = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{stderr}");
}

#[test]
fn a_successful_run_is_recorded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let log = dir.path().join("stderr.log");
    let started = unix_now();
    let (child, url) = start(&sample_path(), &db, &log);
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"));

    let s = after_first_run(&url, &log);
    for (name, want) in SERIES {
        let sample = s.samples.iter().find(|x| x.metric == *name);
        let sample = sample.unwrap_or_else(|| panic!("{name} is exported"));
        assert_eq!(kind(&sample.value), *want, "{name}");
    }
    let runs = |outcome| value(&s, "airq_ingest_runs_total", &[("outcome", outcome)]);
    assert_eq!((runs("success"), runs("failure")), (Some(1.0), Some(0.0)));
    assert_eq!(
        value(&s, "airq_ingest_readings_stored_total", &[]),
        Some(SAMPLE_READINGS as f64)
    );
    assert_eq!(
        value(&s, "airq_ingest_fetched_bytes_total", &[]),
        Some(sample_bytes().len() as f64)
    );
    for reason in REASONS {
        let want = if *reason == "sensor_saturated" {
            17.0
        } else {
            0.0
        };
        assert_eq!(
            value(&s, "airq_ingest_rejections_total", &[("reason", reason)]),
            Some(want),
            "{reason}"
        );
    }
    let rejection_series = s
        .samples
        .iter()
        .filter(|x| x.metric == "airq_ingest_rejections_total")
        .count();
    assert_eq!(rejection_series, REASONS.len(), "one series per reason");
    let start_ts = value(&s, "airq_ingest_last_run_start_timestamp_seconds", &[]).expect("start");
    let end_ts = value(&s, "airq_ingest_last_run_end_timestamp_seconds", &[]).expect("end");
    let success_ts = value(&s, "airq_ingest_last_success_timestamp_seconds", &[]).expect("success");
    assert!(
        started - 1.0 <= start_ts && start_ts <= end_ts && end_ts <= unix_now() + 1.0,
        "{started} {start_ts} {end_ts}"
    );
    assert_eq!(success_ts, end_ts);
    // The age since that success, which alarms without a clock compare
    // (CloudWatch): set with the success, kept current between runs.
    let age = value(&s, "airq_ingest_last_success_age_seconds", &[]).expect("age");
    assert!(
        (0.0..=unix_now() - success_ts + 1.0).contains(&age),
        "{age} {success_ts}"
    );
    assert_eq!(
        observations(&s, "airq_ingest_run_duration_seconds"),
        Some(1.0)
    );
    assert_eq!(count_readings(&db), Some(SAMPLE_READINGS));
    stop(child, &log);
}

#[test]
fn a_failed_run_is_recorded_without_a_success() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let log = dir.path().join("stderr.log");
    let (child, url) = start(&dir.path().join("missing.json"), &db, &log);

    let s = after_first_run(&url, &log);
    let runs = |outcome| value(&s, "airq_ingest_runs_total", &[("outcome", outcome)]);
    assert_eq!((runs("success"), runs("failure")), (Some(0.0), Some(1.0)));
    assert!(value(&s, "airq_ingest_last_run_end_timestamp_seconds", &[]).is_some());
    assert_eq!(
        value(&s, "airq_ingest_last_success_timestamp_seconds", &[]),
        None,
        "no success yet: absent, not zero"
    );
    assert_eq!(
        value(&s, "airq_ingest_last_success_age_seconds", &[]),
        None,
        "no success yet: no age either"
    );
    assert_eq!(
        value(&s, "airq_ingest_readings_stored_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        observations(&s, "airq_ingest_run_duration_seconds"),
        Some(1.0)
    );
    stop(child, &log);
}

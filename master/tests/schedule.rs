//! `airq-master schedule`: runs on its cron, stops cleanly on SIGTERM.

mod support;

use airq_testkit::process::Running;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// `airq-master schedule --cron CRON --run-now --source SOURCE --db DB`.
fn schedule(cron: &str, source: &Path, db: &Path) -> Command {
    airq(&[
        "schedule",
        "--cron",
        cron,
        "--run-now",
        "--source",
        source.to_str().expect("utf-8"),
        "--db",
        db.to_str().expect("utf-8"),
    ])
}

/// Starts the schedule every second, its stderr into `log`.
fn start_every_second(source: &Path, db: &Path, log: &Path) -> Running {
    let mut cmd = schedule("*/1 * * * * *", source, db);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    Running(cmd.spawn().expect("starts"))
}

/// Sends `signal` (`-TERM`, `-INT`) to the child with kill(1).
fn kill(child: &Running, signal: &str) {
    let killed = Command::new("kill")
        .args([signal, &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
}

#[test]
fn runs_on_schedule_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let log = dir.path().join("stderr.log");
    let mut child = start_every_second(&sample_path(), &db, &log);

    // Bounded: at most 300 polls and 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stored = None;
    for _ in 0..300 {
        stored = count_readings(&db);
        if stored == Some(SAMPLE_READINGS) || Instant::now() > deadline {
            break;
        }
        assert!(
            matches!(child.0.try_wait(), Ok(None)),
            "exited early: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        stored,
        Some(SAMPLE_READINGS),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // Not only the --run-now run: the cron fires too (every second here).
    // Bounded: at most 100 polls and 20 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    for _ in 0..100 {
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        if stderr.contains("trigger=\"schedule\"") || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        stderr.contains("trigger=\"schedule\""),
        "a scheduled run starts: {stderr}"
    );

    kill(&child, "-TERM");
    let status = wait_for(&mut child.0, Duration::from_secs(20));
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("still running after SIGTERM:\n{stderr}"));
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("ingestion run starting"), "{stderr}");
    assert!(stderr.contains("shutdown requested"), "{stderr}");
    assert!(stderr.contains("scheduler stopped"), "{stderr}");
    // Still exactly once each, however many runs happened.
    assert_eq!(count_readings(&db), Some(SAMPLE_READINGS));
}

#[test]
fn a_failing_run_does_not_stop_the_schedule() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let log = dir.path().join("stderr.log");
    let missing = dir.path().join("not-yet.json");
    let mut child = start_every_second(&missing, &db, &log);

    // The first runs fail (no file yet); once it appears, a later run stores it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failed_first = false;
    for _ in 0..300 {
        if Instant::now() > deadline {
            break;
        }
        if !failed_first {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            if log.contains("ingestion run failed") {
                failed_first = true;
                std::fs::copy(sample_path(), &missing).expect("copy");
            }
        } else if count_readings(&db) == Some(SAMPLE_READINGS) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(failed_first, "{stderr}");
    assert_eq!(count_readings(&db), Some(SAMPLE_READINGS), "{stderr}");

    kill(&child, "-INT");
    let status = wait_for(&mut child.0, Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn an_invalid_cron_expression_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    for cron in ["0 0 * * *", "every night", "61 * * * * *"] {
        let out = run_for(
            schedule(cron, Path::new("unused.json"), &db),
            Duration::from_secs(30),
        );
        out.assert_clean_failure();
        assert!(
            out.stderr.contains("invalid cron expression"),
            "{}",
            out.stderr
        );
    }
    // Refused before anything was stored.
    assert_eq!(count_readings(&db), None);
}

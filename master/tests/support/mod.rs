//! Helpers shared by the integration tests: running the built binary with a
//! time limit, the shipped sample, and reading a store back with rusqlite.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_airq-master");

/// Readings the shipped sample stores, and its entries.
pub const SAMPLE_READINGS: i64 = 4928;
pub const SAMPLE_ENTRIES: u64 = 4945;

pub fn sample_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample/201806032249_data.dust.min.json")
}

pub fn sample_bytes() -> Vec<u8> {
    std::fs::read(sample_path()).expect("the shipped sample is readable")
}

/// The binary with a clean environment: no AIRQ_* or RUST_LOG from the
/// developer's shell.
pub fn airq(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(args);
    cmd
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "expected success, got {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }

    /// Failed with a readable message, no panic.
    pub fn assert_clean_failure(&self) {
        assert!(
            !self.status.success(),
            "expected failure\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert_eq!(self.status.code(), Some(1), "stderr:\n{}", self.stderr);
        assert!(
            !self.stderr.contains("panicked"),
            "panic on stderr:\n{}",
            self.stderr
        );
        assert!(
            self.stderr.contains("error: "),
            "no error message on stderr:\n{}",
            self.stderr
        );
    }

    /// The number on the summary line starting with `label`.
    pub fn summary_value(&self, label: &str) -> Option<u64> {
        self.stdout
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    }
}

/// Runs `cmd` to completion, killing it after `limit`.
pub fn run_for(mut cmd: Command, limit: Duration) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"));
    let mut child = cmd.spawn().expect("the binary starts");
    let status = wait_for(&mut child, limit).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "still running after {limit:?}; stderr:\n{}",
            std::fs::read_to_string(&err).unwrap_or_default()
        )
    });
    Output {
        status,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

pub fn run(cmd: Command) -> Output {
    run_for(cmd, Duration::from_secs(120))
}

/// `airq-master ingest --source FEED --db DB` (the daily feed into an
/// embedded store), run to its end.
pub fn ingest(feed: &Path, db: &Path) -> Output {
    let text = |p: &Path| p.to_str().expect("a UTF-8 path").to_owned();
    run(airq(&[
        "ingest",
        "--source",
        &text(feed),
        "--db",
        &text(db),
    ]))
}

/// `airq-master ingest --resolution 5min --source FEED --db DB` (a saved
/// 5-minute feed into the live tier of an embedded store), run to its end.
pub fn ingest_5min(feed: &Path, db: &Path) -> Output {
    let text = |p: &Path| p.to_str().expect("a UTF-8 path").to_owned();
    run(airq(&[
        "ingest",
        "--resolution",
        "5min",
        "--source",
        &text(feed),
        "--db",
        &text(db),
    ]))
}

/// Waits at most `limit` for `child` to exit.
pub fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    // Bounded in count as well as in time.
    for _ in 0..(limit.as_millis() / 20 + 1) {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.try_wait().ok().flatten()
}

/// `SELECT COUNT(*) FROM readings`, or `None` while the store is not there yet.
pub fn count_readings(db: &Path) -> Option<i64> {
    if !db.exists() {
        return None;
    }
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    conn.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0))
        .ok()
}

/// Every stored row, in key order, as text.
pub fn dump_readings(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).expect("open store");
    let mut stmt = conn
        .prepare(
            "SELECT ts, sensor_id, id, sensor_type, loc_id, loc_country, loc_lat, loc_long,
                    loc_alt, p1, p2, aqi FROM readings ORDER BY ts, sensor_id",
        )
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| {
            let mut cols = Vec::new();
            for i in 0..12 {
                let v: rusqlite::types::Value = r.get(i)?;
                cols.push(format!("{v:?}"));
            }
            Ok(cols.join("|"))
        })
        .expect("query");
    rows.collect::<Result<_, _>>().expect("rows")
}

//! End to end: airq-loadtest against real airq binaries on loopback (a
//! gateway and a worker on a temporary SQLite file holding the sample
//! feed). Asserts that every arrival is accounted for, as a result or a
//! named error; no timing is asserted.
//!
//! The airq binaries are expected in `target/debug`, beside the directory
//! of this test's binary, as `scripts/test.sh` builds every binary first.

use airq_core::feed::parse_feed;
use airq_embedded::{Db, SqliteReadingStore};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SAMPLE: &str = "data/sample/201806032249_data.dust.min.json";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in the workspace")
        .to_path_buf()
}

/// An airq binary in `target/debug` (this test runs from `target/debug/deps`).
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe.parent().and_then(Path::parent).expect("target/debug");
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is missing: build every binary first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

fn load_sample(db: &Path) {
    let doc = std::fs::read(workspace().join(SAMPLE)).expect("reading the sample feed");
    let mut readings = BTreeMap::new();
    parse_feed(&doc, |r| {
        if let Ok(r) = r {
            readings.insert((r.timestamp, r.sensor_id), r);
        }
    })
    .expect("parsing the sample");
    let readings: Vec<_> = readings.into_values().collect();
    SqliteReadingStore::new(Db::open(db).expect("opening the database"))
        .put_batch_blocking(&readings)
        .expect("storing the sample");
}

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("AIRQ_") {
            cmd.env_remove(&k);
        }
    }
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    cmd
}

/// A gateway on a free port and one worker on `db`, and the gateway's URL.
fn stack(db: &Path) -> (Proc, Proc, String) {
    let mut child = command(&bin("airq-gateway"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting airq-gateway");
    let out = child.stdout.take().expect("stdout is piped");
    let gateway = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the gateway says where it listens within 30 s");
        if let Some(url) = line.trim().strip_prefix("listening on ") {
            break url.trim_end_matches('/').to_owned();
        }
    };
    let worker = command(&bin("airq-worker"))
        .arg("--db")
        .arg(db)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting airq-worker");
    (gateway, Proc(worker), url)
}

/// Runs airq-loadtest with `args` and a JSON summary; returns the process
/// output and the summary's steps.
fn loadtest(dir: &Path, name: &str, args: &[&str]) -> (Output, Vec<Value>) {
    let json = dir.join(format!("{name}.json"));
    let out = command(Path::new(env!("CARGO_BIN_EXE_airq-loadtest")))
        .args(args)
        .arg("--no-progress")
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .output()
        .expect("running airq-loadtest");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "{name}: no summary ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let doc: Value = serde_json::from_str(&text).expect("the summary is JSON");
    let steps = doc["steps"].as_array().expect("steps").clone();
    (out, steps)
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// Every planned arrival is a result or a named error, and the named
/// errors add up.
fn assert_accounted(step: &Value) {
    let planned = n(step, "planned");
    let ok = n(step, "ok");
    let errors = n(step, "errors");
    assert_eq!(ok + errors, planned, "ok + errors = planned in {step}");
    let by_kind: u64 = step["errors_by_kind"]
        .as_object()
        .expect("errors_by_kind")
        .values()
        .map(|v| v.as_u64().expect("a count"))
        .sum();
    assert_eq!(by_kind, errors, "errors by kind add up in {step}");
    let unsent = step["errors_by_kind"]
        .get("unsent")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    assert_eq!(
        n(step, "started") + unsent,
        planned,
        "started + unsent in {step}"
    );
}

#[test]
fn closed_and_open_loops_account_for_every_request() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("airq.db");
    load_sample(&db);
    let (_gateway, _worker, url) = stack(&db);

    // Closed loop, fixed query, with the per-request CSV.
    let csv = dir.path().join("closed.csv");
    let (out, steps) = loadtest(
        dir.path(),
        "closed",
        &[
            &url,
            "-n",
            "60",
            "-c",
            "6",
            "--csv",
            csv.to_str().expect("UTF-8"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(steps.len(), 1);
    assert_eq!(n(&steps[0], "planned"), 60);
    assert_eq!(n(&steps[0], "started"), 60);
    assert_accounted(&steps[0]);
    assert!(n(&steps[0], "ok") > 0, "some results: {}", steps[0]);
    let lines = std::fs::read_to_string(&csv).expect("the CSV");
    assert_eq!(
        lines.lines().count(),
        61,
        "a header and one line per request"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("time to result"), "{table}");

    // -n and -d together: the time limit ends the run first, and the
    // requests it left unsent were never due, so they are not errors.
    let (out, steps) = loadtest(
        dir.path(),
        "closed-timed",
        &[
            &url,
            "--endpoint",
            "/healthz",
            "-n",
            "1000000",
            "-c",
            "2",
            "-d",
            "1s",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(n(&steps[0], "errors"), 0, "{}", steps[0]);
    assert_eq!(n(&steps[0], "planned"), n(&steps[0], "started"));
    assert!(n(&steps[0], "started") < 1_000_000, "{}", steps[0]);
    assert!(
        steps[0]["stopped_at_max_requests"].is_null(),
        "{}",
        steps[0]
    );
    assert_accounted(&steps[0]);

    // -d without -n, with a small --max-requests: the run ends at the
    // limit before its duration, and says so.
    let (out, steps) = loadtest(
        dir.path(),
        "closed-capped",
        &[
            &url,
            "--endpoint",
            "/healthz",
            "-c",
            "2",
            "-d",
            "30s",
            "--max-requests",
            "50",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(n(&steps[0], "started"), 50);
    assert_eq!(n(&steps[0], "stopped_at_max_requests"), 50, "{}", steps[0]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("STOPPED EARLY"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(steps[0]["elapsed_s"].as_f64().is_some_and(|s| s < 30.0));
    assert_accounted(&steps[0]);

    // Open loop, constant arrivals: 40/s for 2 s is exactly 80 arrivals.
    let (out, steps) = loadtest(
        dir.path(),
        "open",
        &[
            &url,
            "--query",
            "random",
            "-r",
            "40",
            "-d",
            "2s",
            "--arrival",
            "constant",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(n(&steps[0], "planned"), 80);
    assert_accounted(&steps[0]);
    assert_eq!(steps[0]["load"], "open");
    // The start delay's distribution is reported beside the latencies.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("start delay p50"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        steps[0]["start_delay"]["p99"].as_f64().is_some(),
        "{}",
        steps[0]
    );

    // The queued journey: every answer goes through the worker and polls.
    let (out, steps) = loadtest(
        dir.path(),
        "queued",
        &[
            &url,
            "-n",
            "8",
            "-c",
            "2",
            "--prefer-async",
            "--poll-interval",
            "20ms",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_accounted(&steps[0]);
    assert_eq!(n(&steps[0], "direct"), 0);
    assert_eq!(n(&steps[0], "queued"), n(&steps[0], "ok"));
    assert!(n(&steps[0], "polls") >= n(&steps[0], "queued"));

    // Staged users against /healthz, then a threshold that cannot pass.
    let (out, steps) = loadtest(
        dir.path(),
        "users",
        &[
            &url,
            "--endpoint",
            "/healthz",
            "--stages",
            "500ms:3,500ms:0",
            "--stage-target",
            "users",
            "--threshold",
            "ok<0",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a failed threshold exits 2: {out:?}"
    );
    assert_accounted(&steps[0]);
    assert!(n(&steps[0], "ok") > 0);
}

#[test]
fn connection_errors_are_named_not_dropped() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (out, steps) = loadtest(
        dir.path(),
        "refused",
        &[&url, "--endpoint", "/healthz", "-n", "5", "-c", "2"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_accounted(&steps[0]);
    assert_eq!(n(&steps[0], "ok"), 0);
    assert_eq!(steps[0]["errors_by_kind"]["connect"], 5);

    // An open loop against nothing: every arrival is still accounted for.
    let (_, steps) = loadtest(
        dir.path(),
        "refused-open",
        &[
            &url,
            "--endpoint",
            "/healthz",
            "-r",
            "20",
            "-d",
            "500ms",
            "--arrival",
            "constant",
        ],
    );
    assert_eq!(n(&steps[0], "planned"), 10);
    assert_accounted(&steps[0]);
}

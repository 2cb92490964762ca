//! What the AWS end-to-end tests share: the built binaries, run quiet and
//! configured only by what a test gives them, and the sample's queries with
//! their expected CSV. Every wait is bounded.

#![allow(dead_code)]

use airq_contract::sample::sample;
use airq_contract::store::reference;
use airq_core::export::to_csv;
use airq_core::{Query, QueryLimits};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

pub use airq_testkit::process::{stdout_lines, stop_gracefully, wait_for_line, Running};
use std::time::{Duration, Instant};

pub const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/sample/201806032249_data.dust.min.json"
);
pub const HOUR_DE_LOW: &str = r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE","minAqi":0,"maxAqi":10,"range":"Low"}"#;
/// Every reading of the sample: a CSV larger than an SQS message.
pub const HOUR_ALL: &str = r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00"}"#;

/// A binary built beside `airq-deploy`.
pub fn bin(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_airq-deploy")).with_file_name(name);
    assert!(
        p.is_file(),
        "{} missing: build every binary first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// `name` with no `AIRQ_*` variable of the test's environment (only what
/// the test adds configures it), quiet logs and no stdin.
pub fn command(name: &str) -> Command {
    let mut cmd = Command::new(bin(name));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AIRQ_") {
            cmd.env_remove(&k);
        }
    }
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to the end; it must succeed.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A long-running binary, killed when dropped.
pub type Service = Running;

/// Starts `cmd` and, if `listening`, waits (60 s at most) for
/// `listening on ADDR`; returns it and ADDR.
pub fn start(mut cmd: Command, listening: bool) -> (Service, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let rx = stdout_lines(&mut child);
    let service = Running(child);
    if !listening {
        return (service, String::new());
    }
    let addr = wait_for_line(&rx, Duration::from_secs(60), |line| {
        let addr = line.trim().strip_prefix("listening on ")?;
        Some(addr.trim_end_matches('/').to_owned())
    });
    match addr {
        Ok(addr) => (service, addr),
        Err(seen) => panic!("{cmd:?} did not say it was listening within 60 s: {seen:#?}"),
    }
}

/// The CSV the reference semantics give for `query` on the sample.
pub fn expected_csv(query: &str) -> String {
    let readings = sample();
    let q = Query::from_json(query.as_bytes(), &QueryLimits::default()).expect("query");
    String::from_utf8(to_csv(&reference(&readings, &q)).expect("csv")).expect("utf8")
}

/// The sample's DE hour in the Low band, asked directly and queued of the
/// gateway `base`: both answers must be the reference CSV (header and
/// 3,315 rows), byte for byte.
pub async fn direct_and_queued_agree(http: &reqwest::Client, base: &str) {
    let want = expected_csv(HOUR_DE_LOW);
    let direct = http
        .post(format!("{base}/api/query"))
        .header("content-type", "application/json")
        .body(HOUR_DE_LOW)
        .send()
        .await
        .expect("POST");
    assert_eq!(direct.status(), 200);
    let direct = direct.text().await.expect("body");
    assert_eq!(direct.lines().count(), 3316, "header and 3315 rows");
    assert_eq!(direct, want, "direct CSV");
    assert_eq!(
        queued(http, base, HOUR_DE_LOW).await,
        want,
        "the queued CSV is byte-identical to the direct one"
    );
}

/// Queues `query` at the gateway `base` and polls until its CSV (90 s at
/// most).
pub async fn queued(http: &reqwest::Client, base: &str, query: &str) -> String {
    let r = http
        .post(format!("{base}/api/query"))
        .header("content-type", "application/json")
        .header("prefer", "respond-async")
        .body(query.to_owned())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 202, "queued");
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let poll = format!("{base}{location}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = http.get(&poll).send().await.expect("GET");
        match r.status().as_u16() {
            200 => return r.text().await.expect("body"),
            202 => {
                assert!(
                    Instant::now() < deadline,
                    "the queued result arrives within 90 s"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!(
                "unexpected status {other}: {}",
                r.text().await.unwrap_or_default()
            ),
        }
    }
}

/// `airq-deploy up` on a temporary SQLite file seeded with the sample,
/// its gateway on a free loopback port: the whole local stack as a
/// newcomer runs it. Stopped gracefully when dropped.
pub struct LocalStack {
    pub child: Child,
    /// Its stdout, line by line.
    pub lines: mpsc::Receiver<String>,
    _dir: Option<tempfile::TempDir>,
}

impl LocalStack {
    /// Starts it with `workers` workers and `extra` flags.
    pub fn start(workers: u32, extra: &[&str]) -> LocalStack {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("airq.db");
        LocalStack::launch(&db, workers, extra, Some(dir))
    }

    /// [`LocalStack::start`] on the SQLite file `db` (kept after).
    pub fn start_at(db: &std::path::Path, workers: u32, extra: &[&str]) -> LocalStack {
        LocalStack::launch(db, workers, extra, None)
    }

    fn launch(
        db: &std::path::Path,
        workers: u32,
        extra: &[&str],
        dir: Option<tempfile::TempDir>,
    ) -> LocalStack {
        for name in ["airq-master", "airq-gateway", "airq-worker"] {
            bin(name);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_airq-deploy"))
            .args(["up", "--listen", "127.0.0.1:0", "--workers"])
            .arg(workers.to_string())
            .args(["--seed", SAMPLE])
            .args(extra)
            .arg("--db")
            .arg(db)
            .env_remove("AIRQ_METRICS_LISTEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start airq-deploy");
        let lines = stdout_lines(&mut child);
        LocalStack {
            child,
            lines,
            _dir: dir,
        }
    }

    /// Reads its stdout until `airq is up at URL` (at most 60 s); returns
    /// the URL and the lines before it.
    pub fn wait_until_up(&self) -> (String, Vec<String>) {
        let mut before = Vec::new();
        let up = wait_for_line(&self.lines, Duration::from_secs(60), |line| {
            match line.strip_prefix("airq is up at ") {
                Some(rest) => rest.split_whitespace().next().map(str::to_owned),
                None => {
                    before.push(line.to_owned());
                    None
                }
            }
        });
        match up {
            Ok(url) => (url, before),
            Err(seen) => {
                panic!("the stack did not say it was up within 60 s; it printed {seen:#?}")
            }
        }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        stop_gracefully(&mut self.child);
    }
}

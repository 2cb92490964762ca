//! Test support: running airq binaries as real processes, and the sample
//! data set. Every wait is bounded in time.
//!
//! [`Service`] is binary-agnostic (any airq binary that prints
//! `listening on http://ADDR`, or any long-running one) so worker and deploy
//! tests can copy or share it.

#![allow(dead_code)]

use airq_core::feed::parse_feed;
use airq_core::store::ReadingStore;
use airq_core::{Query, QueryLimits, Reading, Timestamp};
use airq_embedded::{Db, SqliteReadingStore};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a binary may take to say it is listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace root (where `data/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the workspace")
        .to_path_buf()
}

pub const SAMPLE: &str = "data/sample/201806032249_data.dust.min.json";

/// The sample feed's valid readings as the store keeps them: one per
/// `(timestamp, sensor_id)` (the last one sent wins), in store order.
pub fn sample_readings() -> &'static [Reading] {
    static READINGS: OnceLock<Vec<Reading>> = OnceLock::new();
    READINGS.get_or_init(|| {
        let doc = std::fs::read(workspace_root().join(SAMPLE)).expect("reading the sample feed");
        let mut by_key = BTreeMap::new();
        parse_feed(&doc, |r| {
            if let Ok(r) = r {
                by_key.insert((r.timestamp, r.sensor_id), r);
            }
        })
        .expect("parsing the sample feed");
        by_key.into_values().collect()
    })
}

/// Creates the database at `db` and stores the sample readings in it.
pub fn load_sample(db: &Path) -> &'static [Reading] {
    let readings = sample_readings();
    let store = SqliteReadingStore::new(Db::open(db).expect("opening the test database"));
    store
        .put_batch_blocking(readings)
        .expect("storing the sample");
    readings
}

/// A running binary, killed when dropped.
pub struct Service {
    child: Child,
    /// `http://ADDR` as printed by the binary, if it printed one.
    pub base: String,
    /// What it printed on stdout before that line.
    pub printed_before: Vec<String>,
    name: String,
}

impl Service {
    /// Starts `bin` with `args` and waits until it prints
    /// `listening on http://ADDR`. `RUST_LOG` defaults to `warn`; `AIRQ_*`
    /// variables of the test's environment are not passed on, so only
    /// `args` and `envs` configure it.
    pub fn start_listening(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Service {
        Service::start_listening_logged(bin, args, envs, Stdio::inherit())
    }

    /// [`Service::start_listening`], with its log (stderr) going to `log`.
    pub fn start_listening_logged(
        bin: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        log: Stdio,
    ) -> Service {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        quiet_env(&mut cmd);
        cmd.envs(envs.iter().copied());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");

        // A thread reads stdout for as long as the process runs, so the
        // process never blocks on a full pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep draining.
                    continue;
                }
            }
        });
        let name = Path::new(bin)
            .file_name()
            .map_or_else(|| bin.to_owned(), |n| n.to_string_lossy().into_owned());
        let mut service = Service {
            child,
            base: String::new(),
            printed_before: Vec::new(),
            name,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.trim().strip_prefix("listening on ") {
                        service.base = addr.trim_end_matches('/').to_owned();
                        return service;
                    }
                    service.printed_before.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "{} did not say it was listening within {START_TIMEOUT:?}",
                        service.name
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = service.wait_exit(Duration::from_secs(5));
                    panic!("{} exited before listening: {status:?}", service.name)
                }
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `within` for the exit status.
    #[cfg(unix)]
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM failed");
        self.wait_exit(within)
    }

    /// The exit status, if the process ends within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return None,
            }
        }
    }

    /// Kills the process at once and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The tier that lifts the rate limits and the queued cap off clients
/// without a key: every test client comes from 127.0.0.1, and tests not
/// about limits must not meet them. Tests about limits set their own.
pub const NO_LIMITS: &str = "anonymous:submits=off,polls=off,queued=off";

/// Starts the gateway on a free port with `db` and `args` (and
/// [`NO_LIMITS`], which `args` may override with another `--tier
/// anonymous:…`).
pub fn gateway(db: &Path, args: &[&str]) -> Service {
    let db = db.to_str().expect("temp paths are UTF-8");
    let mut all = vec!["--listen", "127.0.0.1:0", "--db", db, "--tier", NO_LIMITS];
    all.extend_from_slice(args);
    Service::start_listening(env!("CARGO_BIN_EXE_airq-gateway"), &all, &[])
}

/// A temporary database holding the sample, and a gateway on it (dropped,
/// and deleted, together).
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub gateway: Service,
}

impl Setup {
    pub fn new(args: &[&str]) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        load_sample(&dir.path().join("airq.db"));
        let gateway = gateway(&dir.path().join("airq.db"), args);
        Setup { dir, gateway }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("airq.db")
    }

    pub fn db(&self) -> Db {
        Db::open(self.db_path()).expect("opening the test database")
    }

    pub fn url(&self, path: &str) -> String {
        self.gateway.url(path)
    }
}

/// Calls `probe` every `every` until it returns `Some`, at most `attempts`
/// times; panics with `what` if it never does.
pub async fn eventually<T, F, Fut>(what: &str, attempts: u32, every: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..attempts {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(every).await;
    }
    panic!("{what}: not after {attempts} attempts {every:?} apart");
}

/// Keeps the test's own `AIRQ_*` variables from configuring a child (only
/// its arguments do), and its logs to warnings unless `RUST_LOG` says
/// otherwise.
fn quiet_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AIRQ_") {
            cmd.env_remove(&k);
        }
    }
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
}

/// The worker binary, built beside the gateway (`cargo build --workspace
/// --bins`, as scripts/test.sh does first).
pub fn worker_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_airq-gateway"))
        .with_file_name(format!("airq-worker{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: build every binary first (`cargo build --workspace --bins`, as scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A worker process on `db`, killed when dropped.
pub struct Worker(Child);

impl Worker {
    pub fn start(db: &Path, args: &[&str]) -> Worker {
        Worker::start_logged(db, args, &[], Stdio::inherit())
    }

    /// [`Worker::start`] with `envs` and its log (stderr) going to `log`.
    pub fn start_logged(db: &Path, args: &[&str], envs: &[(&str, &str)], log: Stdio) -> Worker {
        let mut cmd = Command::new(worker_bin());
        cmd.arg("--db")
            .arg(db)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        quiet_env(&mut cmd);
        cmd.envs(envs.iter().copied());
        Worker(cmd.spawn().expect("starting airq-worker"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The day of the large synthetic answer.
pub const BIG_DAY: &str = r#"{"startDate":"2024-01-01 00:00:00","endDate":"2024-01-01 01:00:00"}"#;
/// Readings in BIG_DAY's hour: 2,000 sensors × 60 minutes, about 12 MB of
/// CSV, several times what loopback socket buffers and hyper hold.
const BIG_SENSORS: u64 = 2_000;
const BIG_MINUTES: i64 = 60;

/// Stores BIG_SENSORS × BIG_MINUTES readings in BIG_DAY's hour, made from
/// one sample reading.
pub fn load_big_hour(db: &Path) {
    let template = sample_readings()[0].clone();
    let start = 1_704_067_200; // 2024-01-01 00:00:00 UTC
    let readings: Vec<Reading> = (0..BIG_MINUTES)
        .flat_map(|m| {
            let template = &template;
            (0..BIG_SENSORS).map(move |s| Reading {
                id: Some((m as u64) * BIG_SENSORS + s),
                timestamp: Timestamp(start + m * 60),
                sensor_id: 100_000 + s,
                ..template.clone()
            })
        })
        .collect();
    SqliteReadingStore::new(Db::open(db).expect("opening the test database"))
        .put_batch_blocking(&readings)
        .expect("storing the synthetic hour");
}

/// The CSV the store itself renders for `query_json`.
pub async fn store_csv(db: &Path, query_json: &str) -> Vec<u8> {
    let q = Query::from_json(query_json.as_bytes(), &QueryLimits::default()).expect("query");
    let store = SqliteReadingStore::new(Db::open(db).expect("opening the test database"));
    let mut chunks = store.query_answer(&q);
    let mut csv = Vec::new();
    while let Some(chunk) = chunks.next().await {
        csv.extend_from_slice(&chunk.expect("reading the store").bytes);
    }
    csv
}

/// A program of the project's Python virtual environment (`.venv/`, or
/// `$AIRQ_VENV`, relative to the workspace root), which scripts/moto.sh
/// creates and scripts/test.sh fills; `None` when it is not installed.
pub fn venv_bin(name: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("AIRQ_VENV")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(".venv"), PathBuf::from);
    let bin = workspace_root().join(venv).join("bin").join(name);
    bin.is_file().then_some(bin)
}

/// An HTTP client for tests: loopback only (no proxy), a bound on every
/// request, and reqwest's transparent gzip.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// [`client`] without transparent gzip: the test sees the bytes and
/// headers the gateway sends.
pub fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .no_gzip()
        .build()
        .expect("HTTP client")
}

/// Polls the result at `url` until it is no longer queued or running
/// (at most 60 s); returns that answer.
pub async fn until_final(url: &str) -> reqwest::Response {
    eventually(
        "the result to be final",
        600,
        Duration::from_millis(100),
        || async move {
            let r = raw_client().get(url).send().await.expect("GET");
            (r.status() != reqwest::StatusCode::ACCEPTED).then_some(r)
        },
    )
    .await
}

/// One block of a `text/event-stream` (up to its blank line), parsed as
/// the spec's processing model does: `(id, event, data)`, the event
/// `message` when unnamed; `None` for a block without data (a heartbeat
/// comment).
pub fn sse_block(block: &str) -> Option<(Option<String>, String, String)> {
    let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    (!data.is_empty()).then_some((id, event, data))
}

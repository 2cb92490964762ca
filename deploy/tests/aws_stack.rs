//! The AWS backend end to end, with the real binaries on `--backend aws`
//! against the moto emulator (`AIRQ_TEST_AWS_ENDPOINT`; `bash
//! scripts/test.sh` starts it): provision (twice: the second run changes
//! nothing) → ingest the sample with `airq-master` → gateway and worker →
//! direct query → queued queries → poll → the same CSV → destroy.

use airq_contract::sample::sample;
use airq_contract::store::reference;
use airq_core::export::to_csv;
use airq_core::{Query, QueryLimits};
use airq_deploy::emulator;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/sample/201806032249_data.dust.min.json"
);
const HOUR_DE_LOW: &str = r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE","minAqi":0,"maxAqi":10,"range":"Low"}"#;
/// Every reading of the sample: a CSV larger than an SQS message.
const HOUR_ALL: &str = r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00"}"#;

fn bin(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_airq-deploy")).with_file_name(name);
    assert!(
        p.is_file(),
        "{} missing: build every binary first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// A command with no `AIRQ_*` variable of the test's environment (only its
/// flags configure it) and quiet logs.
fn command(name: &str) -> Command {
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

fn run(name: &str, args: &[String]) -> Output {
    let out = command(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A long-running binary, killed when dropped.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `name` and, if `listening`, waits for `listening on http://ADDR`.
fn start(name: &str, args: &[String], listening: bool) -> (Service, String) {
    let mut child = command(name)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let service = Service(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    if !listening {
        return (service, String::new());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{name} did not say it was listening within 60 s"));
        if let Some(addr) = line.trim().strip_prefix("listening on ") {
            return (service, addr.trim_end_matches('/').to_owned());
        }
    }
}

fn expected_csv(query: &str) -> String {
    let readings = sample();
    let q = Query::from_json(query.as_bytes(), &QueryLimits::default()).expect("query");
    String::from_utf8(to_csv(&reference(&readings, &q)).expect("csv")).expect("utf8")
}

async fn queued(http: &reqwest::Client, base: &str, query: &str) -> String {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_ingest_and_query_on_aws() {
    let endpoint = emulator::endpoint();
    let prefix = emulator::unique_prefix();
    let bucket = emulator::names(&prefix).bucket;
    let aws: Vec<String> = [
        "--endpoint-url",
        &endpoint,
        "--aws-prefix",
        &prefix,
        "--bucket",
        &bucket,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let with = |head: &[&str], tail: &[&str]| -> Vec<String> {
        head.iter()
            .map(|s| s.to_string())
            .chain(aws.iter().cloned())
            .chain(tail.iter().map(|s| s.to_string()))
            .collect()
    };

    // Provision, then provision again: the second run is a no-op.
    let first = run(
        "airq-deploy",
        &with(&["provision"], &["--max-receives", "2"]),
    );
    let first = String::from_utf8_lossy(&first.stdout).into_owned();
    assert_eq!(
        first.lines().filter(|l| l.starts_with("created")).count(),
        12,
        "4 tables, 2 time-to-live settings, 4 queues, the bucket and its rules:\n{first}"
    );
    assert!(first.contains("export AIRQ_BACKEND=aws"), "{first}");
    assert!(
        first.contains(&format!("export AIRQ_BUCKET={bucket}")),
        "{first}"
    );
    let second = run(
        "airq-deploy",
        &with(&["provision"], &["--max-receives", "2"]),
    );
    let second = String::from_utf8_lossy(&second.stdout).into_owned();
    assert!(
        second.contains("nothing changed")
            && !second
                .lines()
                .any(|l| l.starts_with("created") || l.starts_with("updated")),
        "the second provision changes nothing:\n{second}"
    );

    // A gateway whose results would outlive the bucket's expiry rule for
    // large results (8 days by default) refuses to start, saying what to do.
    let mut refused = command("airq-gateway")
        .args(with(
            &["--backend", "aws", "--listen", "127.0.0.1:0"],
            &["--result-ttl", "30days"],
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting airq-gateway");
    let began = Instant::now();
    let status = loop {
        if let Some(status) = refused.try_wait().expect("waiting for airq-gateway") {
            break status;
        }
        if began.elapsed() > Duration::from_secs(30) {
            let _ = refused.kill();
            panic!("the gateway started with a result TTL the bucket does not keep");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut e) = refused.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("after 8 days") && stderr.contains("--result-object-days 30"),
        "{stderr}"
    );

    // Ingest the sample with the real master.
    run(
        "airq-master",
        &with(&["--backend", "aws"], &["ingest", "--source", SAMPLE]),
    );

    let (_worker, _) = start(
        "airq-worker",
        &with(&["--backend", "aws"], &["--concurrency", "2"]),
        false,
    );
    let (_gateway, base) = start(
        "airq-gateway",
        &with(
            &["--backend", "aws", "--listen", "127.0.0.1:0"],
            &["--key-cache-ttl", "200ms"],
        ),
        true,
    );
    let http = reqwest::Client::new();

    let meta: serde_json::Value = http
        .get(format!("{base}/api/meta"))
        .send()
        .await
        .expect("GET meta")
        .json()
        .await
        .expect("meta json");
    assert_eq!(meta["first"], "2018-06-03 20:42:52", "{meta}");
    assert!(
        meta["countries"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == "DE")),
        "{meta}"
    );

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
        queued(&http, &base, HOUR_DE_LOW).await,
        want,
        "queued CSV is byte-identical to the direct one"
    );

    // API keys on DynamoDB: made by airq-deploy, honoured by the gateway,
    // refused once revoked (this gateway remembers a key for 200 ms).
    let made = run(
        "airq-deploy",
        &with(
            &["keys", "--backend", "aws"],
            &["create", "--name", "e2e", "--json"],
        ),
    );
    let made: serde_json::Value =
        serde_json::from_slice(&made.stdout).expect("keys create --json prints JSON");
    let key = made["key"].as_str().expect("the key").to_owned();
    let id = made["id"].as_str().expect("the key's id").to_owned();
    let with_key = || {
        http.post(format!("{base}/api/query"))
            .header("content-type", "application/json")
            .header("x-api-key", &key)
            .body(HOUR_DE_LOW)
    };
    let keyed = with_key().send().await.expect("POST");
    assert_eq!(keyed.status(), 200);
    assert_eq!(
        keyed.headers()["ratelimit-policy"],
        "\"submits\";q=60;w=60",
        "the key's tier (standard) applies"
    );
    let listed = run(
        "airq-deploy",
        &with(&["keys", "--backend", "aws"], &["list"]),
    );
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains(&id) && !listed.contains(&key[5..]),
        "{listed}"
    );
    run(
        "airq-deploy",
        &with(&["keys", "--backend", "aws"], &["revoke", &id]),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = with_key().send().await.expect("POST").status();
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a revoked key is refused once the gateway's cache forgets it; got {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A result larger than an SQS message: worker → S3 → gateway → S3.
    let want_all = expected_csv(HOUR_ALL);
    assert!(want_all.len() > 256 * 1024, "{} bytes", want_all.len());
    assert_eq!(
        queued(&http, &base, HOUR_ALL).await,
        want_all,
        "a large result arrives intact"
    );

    drop(_gateway);
    drop(_worker);
    let gone = run("airq-deploy", &with(&["destroy"], &["--yes"]));
    let gone = String::from_utf8_lossy(&gone.stdout).into_owned();
    assert_eq!(
        gone.lines().filter(|l| l.starts_with("deleted")).count(),
        9,
        "4 tables, 4 queues and the bucket:\n{gone}"
    );
}

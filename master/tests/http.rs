//! `airq-master ingest` over HTTP from a tiny local server: plain and gzip
//! bodies, retries on transient failures, no retry on permanent ones.

mod support;

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

#[derive(Clone, Copy)]
enum Reply {
    Status(u16, &'static str),
    /// The sample, gzip'ed when the client accepts it and `gzip` is set.
    Sample {
        gzip: bool,
    },
    /// Announces the whole sample but closes the connection halfway.
    CutShort,
    /// The sample with an `ETag` and a `Last-Modified`, or 304 to a
    /// request that sends that `ETag` back in `If-None-Match`.
    Versioned,
}

const ETAG: &str = "\"v1\"";
const LAST_MODIFIED: &str = "Sat, 05 Dec 2026 12:00:00 GMT";

struct Server {
    url: String,
    hits: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

/// Serves `script` in order, one reply per connection; the last reply
/// repeats. The thread ends with the test process.
fn serve(script: Vec<Reply>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/data.24h.json",
        listener.local_addr().expect("addr")
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (h, r) = (hits.clone(), requests.clone());
    let body = sample_bytes();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate().take(50) {
            let Ok(stream) = stream else { continue };
            let reply = script[i.min(script.len() - 1)];
            h.fetch_add(1, Ordering::SeqCst);
            if let Some(req) = answer(stream, reply, &body) {
                r.lock().expect("lock").push(req);
            }
        }
    });
    Server {
        url,
        hits,
        requests,
    }
}

fn read_request(stream: &mut TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn answer(mut stream: TcpStream, reply: Reply, sample: &[u8]) -> Option<String> {
    let request = read_request(&mut stream)?;
    let accepts_gzip = request
        .to_ascii_lowercase()
        .contains("accept-encoding: gzip");
    let (head, body) = match reply {
        Reply::Status(code, reason) => (
            format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            Vec::new(),
        ),
        Reply::Sample { gzip } if gzip && accepts_gzip => {
            let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
            enc.write_all(sample).ok()?;
            let body = enc.finish().ok()?;
            (
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                ),
                body,
            )
        }
        Reply::CutShort => (
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                sample.len()
            ),
            sample[..sample.len() / 2].to_vec(),
        ),
        Reply::Versioned
            if request
                .to_ascii_lowercase()
                .contains(&format!("if-none-match: {ETAG}")) =>
        {
            (
                format!("HTTP/1.1 304 Not Modified\r\nETag: {ETAG}\r\nConnection: close\r\n\r\n"),
                Vec::new(),
            )
        }
        Reply::Versioned => (
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: {ETAG}\r\n\
                 Last-Modified: {LAST_MODIFIED}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                sample.len()
            ),
            sample.to_vec(),
        ),
        Reply::Sample { .. } => (
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                sample.len()
            ),
            sample.to_vec(),
        ),
    };
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(&body).ok()?;
    stream.flush().ok()?;
    Some(request)
}

fn ingest_url(url: &str, db: &std::path::Path, retries: &str) -> Output {
    run(airq(&[
        "ingest",
        "--source",
        url,
        "--db",
        db.to_str().expect("utf-8"),
        "--retries",
        retries,
        "--retry-base-ms",
        "10",
        "--timeout-secs",
        "30",
    ]))
}

#[test]
fn plain_body_with_content_length() {
    let server = serve(vec![Reply::Sample { gzip: false }]);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let out = ingest_url(&server.url, &db, "0");
    out.assert_success();
    assert_eq!(count_readings(&db), Some(SAMPLE_READINGS));
    assert_eq!(out.summary_value("entries read:"), Some(SAMPLE_ENTRIES));
    assert_eq!(
        out.summary_value("bytes:"),
        Some(sample_bytes().len() as u64)
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn gzip_body_is_decoded() {
    let server = serve(vec![Reply::Sample { gzip: true }]);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let out = ingest_url(&server.url, &db, "0");
    out.assert_success();
    assert_eq!(count_readings(&db), Some(SAMPLE_READINGS));
    // The decoded document, not the compressed one.
    assert_eq!(
        out.summary_value("bytes:"),
        Some(sample_bytes().len() as u64)
    );
    let requests = server.requests.lock().expect("lock");
    assert!(
        requests[0]
            .to_ascii_lowercase()
            .contains("accept-encoding: gzip"),
        "{}",
        requests[0]
    );
}

#[test]
fn two_503s_then_success_through_retries() {
    let server = serve(vec![
        Reply::Status(503, "Service Unavailable"),
        Reply::Status(503, "Service Unavailable"),
        Reply::Sample { gzip: true },
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let out = ingest_url(&server.url, &db, "3");
    out.assert_success();
    assert_eq!(count_readings(&db), Some(SAMPLE_READINGS));
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
    assert_eq!(out.stderr.matches("retrying").count(), 2, "{}", out.stderr);
}

#[test]
fn too_many_requests_is_retried() {
    let server = serve(vec![
        Reply::Status(429, "Too Many Requests"),
        Reply::Sample { gzip: false },
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    ingest_url(&server.url, &db, "1").assert_success();
    assert_eq!(count_readings(&db), Some(SAMPLE_READINGS));
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
}

#[test]
fn a_download_cut_short_is_retried() {
    let server = serve(vec![Reply::CutShort, Reply::Sample { gzip: false }]);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let out = ingest_url(&server.url, &db, "2");
    out.assert_success();
    assert_eq!(count_readings(&db), Some(SAMPLE_READINGS));
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
}

#[test]
fn gives_up_after_the_last_retry() {
    let server = serve(vec![Reply::Status(503, "Service Unavailable")]);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = ingest_url(&server.url, &dir.path().join("airq.db"), "2");
    out.assert_clean_failure();
    assert!(out.stderr.contains("503"), "{}", out.stderr);
    assert!(out.stderr.contains("3 attempts"), "{}", out.stderr);
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
}

#[test]
fn a_client_error_is_not_retried() {
    let server = serve(vec![Reply::Status(404, "Not Found")]);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = ingest_url(&server.url, &dir.path().join("airq.db"), "3");
    out.assert_clean_failure();
    assert!(out.stderr.contains("404"), "{}", out.stderr);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn an_unreachable_server_fails_cleanly() {
    // Bound, then closed: nothing listens on the port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{port}/feed.json");
    let out = ingest_url(&url, &dir.path().join("airq.db"), "1");
    out.assert_clean_failure();
    assert!(out.stderr.contains("2 attempts"), "{}", out.stderr);
}

/// The live schedule's conditional GET: the first run downloads the feed
/// and stores it as 5-minute readings; the next runs send its `ETag` and
/// `Last-Modified` back, get 304, and succeed without storing anything.
#[test]
fn an_unchanged_feed_is_a_304_and_a_successful_empty_run() {
    let server = serve(vec![Reply::Versioned]);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let log = dir.path().join("stderr.log");
    let mut cmd = airq(&[
        "schedule",
        "--resolution",
        "5min",
        "--cron",
        "*/1 * * * * *",
        "--run-now",
        "--source",
        &server.url,
        "--db",
        db.to_str().expect("utf-8"),
        // The 2018 sample is older than the default 48 hours: keep it.
        "--recent-retention",
        "36500days",
        "--hourly-retention",
        "36500days",
    ]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    let mut child = airq_testkit::process::Running(cmd.spawn().expect("starts"));
    // Bounded: at most 100 polls and 30 s, for three requests.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for _ in 0..100 {
        if server.hits.load(Ordering::SeqCst) >= 3 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    airq_testkit::process::stop_gracefully(child.child());
    let requests = server.requests.lock().expect("lock").clone();
    assert!(requests.len() >= 3, "three runs: {requests:#?}");
    let first = requests[0].to_ascii_lowercase();
    assert!(!first.contains("if-none-match"), "{first}");
    for later in &requests[1..] {
        let later = later.to_ascii_lowercase();
        assert!(later.contains(&format!("if-none-match: {ETAG}")), "{later}");
        assert!(
            later.contains(&format!(
                "if-modified-since: {}",
                LAST_MODIFIED.to_ascii_lowercase()
            )),
            "{later}"
        );
    }
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(
        log.contains("has not changed since the last run (304)"),
        "{log}"
    );
    assert!(!log.contains("ingestion run failed"), "{log}");
    // Stored once, as 5-minute readings, with their hours.
    let conn = rusqlite::Connection::open(&db).expect("db");
    let count = |table: &str| -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    };
    assert_eq!(count("recent"), SAMPLE_READINGS);
    assert_eq!(count("readings"), 0, "nothing in the daily series");
    // The sample's 4,945 sensors each have one reading in 20:42–20:48,
    // so one hour each.
    assert_eq!(count("hourly"), SAMPLE_READINGS);
}

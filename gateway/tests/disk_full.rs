//! A full disk: a tmpfs of 16 KiB, filled, is mounted where result files go
//! (`<db>-bodies/results`). A queued result then fails with the reason
//! (not retried until it is dead-lettered as "crashed or timed out"),
//! `/readyz` fails naming the check (and nothing of the error's text), and
//! the store stays readable. Mounting needs root: without it the test says
//! so and passes without having checked anything.

#![cfg(target_os = "linux")]

mod support;

use reqwest::{header, StatusCode};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::client;
use support::{eventually, gateway, load_sample, Worker};

const DE_HOUR: &str =
    r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE"}"#;

/// A mounted tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the folder until the file system says it is full.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).expect("filler");
    let block = [0u8; 1024];
    for _ in 0..1024 {
        if std::io::Write::write_all(&mut f, &block).is_err() {
            return filler;
        }
    }
    panic!("{} never filled up", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_result_with_its_reason_and_fails_readiness() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root (run scripts/test.sh as root, as CI does)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    load_sample(&db);
    let results = PathBuf::from(format!("{}-bodies/results", db.display()));
    let Some(_tmpfs) = Tmpfs::mount(&results, "16k") else {
        eprintln!("skipped: `mount -t tmpfs` is not allowed here");
        return;
    };
    let filler = fill(&results);
    let gw = gateway(&db, &[]);
    let _worker = Worker::start(&db, &["--receive-wait", "1s"]);

    let ready = client().get(gw.url("/readyz")).send().await.expect("GET");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = ready.text().await.expect("body");
    assert!(body.contains("resultsWritable"), "{body}");
    assert!(body.contains("cannot be written"), "{body}");
    assert!(
        !body.contains("bodies") && !body.contains("space"),
        "the public answer names the check, not the backend's error: {body}"
    );

    let r = client()
        .post(gw.url("/api/query"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("Prefer", "respond-async")
        .body(DE_HOUR)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v: Value = r.json().await.expect("JSON");
    let url = gw.url(&format!("/api/results/{}", v["id"].as_str().expect("id")));
    let failed = eventually(
        "the result is final",
        300,
        Duration::from_millis(100),
        || {
            let url = url.clone();
            async move {
                let r = client().get(url).send().await.expect("GET");
                (r.status() != StatusCode::ACCEPTED).then_some(r)
            }
        },
    )
    .await;
    assert_eq!(failed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = failed.json().await.expect("JSON");
    let error = v["error"].as_str().expect("error");
    assert!(error.contains("could not be stored"), "{error}");
    assert!(error.to_lowercase().contains("space"), "{error}");

    // The store stays readable: the summary and a direct answer.
    let meta = client().get(gw.url("/api/meta")).send().await.expect("GET");
    assert_eq!(meta.status(), StatusCode::OK);
    let direct = client()
        .post(gw.url("/api/query"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(DE_HOUR)
        .send()
        .await
        .expect("POST");
    assert_eq!(direct.status(), StatusCode::OK);

    // Space again: ready again (once the last answer, reused for a
    // second, has aged out).
    std::fs::remove_file(&filler).expect("remove the filler");
    eventually("ready again", 100, Duration::from_millis(100), || async {
        let ready = client().get(gw.url("/readyz")).send().await.ok()?;
        (ready.status() == StatusCode::OK).then_some(())
    })
    .await;
}

/// Whether this process runs as root (its effective uid, from /proc).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

//! The real `airq-worker` binary against a temporary SQLite file: results,
//! malformed messages, duplicates, crashes (SIGKILL), dead letters and
//! graceful shutdown. The gateway's side of the queues is played in-process.

mod support;

use airq_contract::store::reference;
use airq_core::export::to_csv;
use airq_core::job::{Job, REQUEST_SEND};
use airq_core::queue::{Queue, QueueDepth};
use airq_core::results::{Outcome, ResultStore};
use airq_core::{Query, QueryLimits};
use airq_embedded::SqliteQueue;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Env, MAX_RECEIVES};
use uuid::Uuid;

const HOUR_DE_LOW: &[u8] = br#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE","minAqi":0,"maxAqi":10,"range":"Low"}"#;

impl Env {
    fn worker(&self, extra: &[&str]) -> Worker {
        Worker::start(&self.db_path, extra)
    }
}

struct Worker(Child);

impl Worker {
    fn start(db: &Path, extra: &[&str]) -> Worker {
        let child = Command::new(env!("CARGO_BIN_EXE_airq-worker"))
            .arg("--db")
            .arg(db)
            .args([
                "--max-receives",
                &MAX_RECEIVES.to_string(),
                "--receive-wait",
                "1s",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start airq-worker");
        Worker(child)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// Waits (bounded) for the process to exit; returns whether it exited 0.
    fn wait_exit(&mut self, limit: Duration) -> Option<bool> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn query() -> Query {
    Query::from_json(HOUR_DE_LOW, &QueryLimits::default()).expect("query")
}

/// Waits, at most `limit`, until `q`'s depth is `done`.
async fn wait_until(q: &SqliteQueue, limit: Duration, done: impl Fn(&QueueDepth) -> bool) {
    let start = Instant::now();
    while !done(&q.depth().await.expect("depth")) && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_queue_empty(q: &SqliteQueue) {
    let d = q.depth().await.expect("depth");
    assert_eq!((d.visible, d.in_flight), (0, 0), "{} is empty", q.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_query_and_posts_the_csv() {
    let env = Env::new();
    let _w = env.worker(&[]);
    let q = query();
    let id = env.submit(&q, None).await;
    let got = env.collect(1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "one result");
    assert_eq!(got[0].id, id);
    let want =
        String::from_utf8(to_csv(&reference(&env.readings, &q)).expect("csv")).expect("utf8");
    // 294 KB: written by the worker into the payload space as it was
    // rendered, the message naming it.
    let Outcome::Stored { answer: csv, rows } = &got[0].outcome else {
        panic!("a large answer is stored: {:?}", got[0].outcome);
    };
    assert_eq!(*rows, 3315);
    assert_eq!(csv.bytes, want.len() as u64);
    assert_queue_empty(&env.queue(REQUEST_SEND)).await;
    let results = env.results();
    let rec = results.get(id).await.expect("get").expect("record");
    assert_eq!(
        rec.state.as_str(),
        "running",
        "the worker marks it running; the gateway records the outcome"
    );
    assert!(results
        .finish(id, &got[0].outcome)
        .await
        .expect("record it"));
    let rec = results.get(id).await.expect("get").expect("record");
    let stored = airq_core::results::read_answer(&results, &rec)
        .await
        .expect("read");
    assert!(
        stored.as_deref() == Some(want.as_str()),
        "the stored CSV is the reference"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_fail_readably_and_are_deleted() {
    let env = Env::new();
    let _w = env.worker(&[]);
    let send = env.queue(REQUEST_SEND);
    let id = Uuid::new_v4();
    send.send(&format!(r#"{{"id":"{id}","query":7}}"#))
        .await
        .expect("send");
    send.send("this is not json").await.expect("send");
    let bad_query = Uuid::new_v4();
    send.send(
        &serde_json::json!({"id": bad_query, "query": "{\"startDate\":\"nope\"}"}).to_string(),
    )
    .await
    .expect("send");
    let got = env.collect(2, Duration::from_secs(30)).await;
    assert_eq!(
        got.len(),
        2,
        "results for the two messages with an id: {got:?}"
    );
    for r in &got {
        let Outcome::Failed { error } = &r.outcome else {
            panic!("expected a failure: {r:?}")
        };
        if r.id == id {
            assert!(error.contains("malformed"), "{error}");
        } else {
            assert_eq!(r.id, bad_query);
            assert!(error.contains("startDate"), "the field is named: {error}");
        }
    }
    // Nothing retried: all three are gone (bounded wait for the last delete).
    wait_until(&send, Duration::from_secs(10), |d| d.in_flight == 0).await;
    assert_queue_empty(&send).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_of_a_finished_request_posts_nothing() {
    let env = Env::new();
    let q = query();
    let id = env.submit(&q, None).await;
    let first = Outcome::Done {
        answer: "first\n".into(),
        rows: 0,
    };
    assert!(env.results().finish(id, &first).await.expect("finish"));
    let _w = env.worker(&[]);
    let got = env.collect(1, Duration::from_secs(4)).await;
    assert!(got.is_empty(), "no second result: {got:?}");
    assert_queue_empty(&env.queue(REQUEST_SEND)).await;
    let rec = env.results().get(id).await.expect("get").expect("record");
    assert_eq!(rec.answer.as_deref(), Some("first\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_request_is_finished_by_another() {
    let env = Env::new();
    let send = env.queue(REQUEST_SEND);
    let mut slow = env.worker(&["--visibility-timeout", "2s", "--test-query-delay", "60s"]);
    let id = env.submit(&query(), None).await;
    // Wait until the slow worker holds it.
    wait_until(&send, Duration::from_secs(20), |d| d.in_flight > 0).await;
    assert_eq!(
        send.depth().await.expect("depth").in_flight,
        1,
        "the slow worker took it"
    );
    // The heartbeat keeps it hidden beyond its 2 s timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        send.depth().await.expect("depth").in_flight,
        1,
        "still hidden while it runs"
    );
    slow.signal("-KILL");
    assert!(slow.wait_exit(Duration::from_secs(10)).is_some());
    let _fast = env.worker(&["--visibility-timeout", "2s"]);
    let got = env.collect(1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert!(matches!(got[0].outcome, Outcome::Stored { rows: 3315, .. }));
    // Exactly one result, and nothing left behind.
    assert!(
        env.collect(1, Duration::from_secs(3)).await.is_empty(),
        "exactly one result"
    );
    assert_queue_empty(&send).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_keeps_crashing_workers_is_dead_lettered() {
    let env = Env::new();
    let send = env.queue(REQUEST_SEND);
    let id = env.submit(&query(), None).await;
    for round in 1..=MAX_RECEIVES {
        // Wait for the previous crash's request to become visible again.
        wait_until(&send, Duration::from_secs(20), |d| d.visible > 0).await;
        let mut w = env.worker(&["--visibility-timeout", "1s", "--test-query-delay", "60s"]);
        wait_until(&send, Duration::from_secs(20), |d| d.in_flight > 0).await;
        assert_eq!(
            send.depth().await.expect("depth").in_flight,
            1,
            "round {round}: taken"
        );
        w.signal("-KILL");
        assert!(w.wait_exit(Duration::from_secs(10)).is_some());
    }
    // The next worker's receive finds it over the limit and dead-letters it.
    let _w = env.worker(&["--visibility-timeout", "1s"]);
    let dlq = SqliteQueue::new(env.db.clone(), "RequestSend-dlq", None);
    let start = Instant::now();
    let mut dead = Vec::new();
    while dead.is_empty() && start.elapsed() < Duration::from_secs(30) {
        dead = dlq
            .receive(1, Duration::from_secs(30), Duration::from_millis(500))
            .await
            .expect("receive");
    }
    assert_eq!(dead.len(), 1, "the request reached the dead-letter queue");
    assert_eq!(Job::parse(&dead[0].body).expect("job").id, id);
    assert!(
        env.collect(1, Duration::from_secs(2)).await.is_empty(),
        "no result from a dead letter"
    );
    assert_queue_empty(&send).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_unfinished_requests_back_at_once() {
    let env = Env::new();
    let send = env.queue(REQUEST_SEND);
    let mut w = env.worker(&[
        "--visibility-timeout",
        "60s",
        "--test-query-delay",
        "60s",
        "--shutdown-timeout",
        "1s",
    ]);
    env.submit(&query(), None).await;
    wait_until(&send, Duration::from_secs(20), |d| d.in_flight > 0).await;
    w.signal("-TERM");
    assert_eq!(
        w.wait_exit(Duration::from_secs(20)),
        Some(true),
        "exits cleanly after its shutdown timeout"
    );
    let d = send.depth().await.expect("depth");
    assert_eq!(
        (d.visible, d.in_flight),
        (1, 0),
        "visible again at once, not after 60 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_short_queries_finish() {
    let env = Env::new();
    let mut w = env.worker(&["--test-query-delay", "2s", "--shutdown-timeout", "30s"]);
    let send = env.queue(REQUEST_SEND);
    let id = env.submit(&query(), None).await;
    wait_until(&send, Duration::from_secs(20), |d| d.in_flight > 0).await;
    w.signal("-TERM");
    assert_eq!(w.wait_exit(Duration::from_secs(30)), Some(true));
    let got = env.collect(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "the in-flight query finished before exit");
    assert_eq!(got[0].id, id);
    assert_queue_empty(&send).await;
}

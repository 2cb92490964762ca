//! The contract suites and property tests on the embedded (SQLite) backend.

mod support;

use airq_common::contract;
use airq_common::embedded::{Db, Redrive, SqliteQueue, SqliteReadingStore, SqliteResultStore};
use airq_common::queue::Queue;
use airq_common::{Query, QueryLimits, Reading};
use async_trait::async_trait;
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};
use support::{arb_query, sample};

struct Harness {
    dir: tempfile::TempDir,
}

#[async_trait]
impl contract::queue::QueueHarness for Harness {
    async fn fresh(&self, max_receives: u32) -> (Arc<dyn Queue>, Arc<dyn Queue>) {
        let db = Db::open(self.dir.path().join("q.db")).expect("db");
        let name = format!("q-{}", uuid::Uuid::new_v4());
        let dlq_name = format!("{name}-dlq");
        let q = SqliteQueue::new(
            db.clone(),
            &name,
            Some(Redrive {
                dead_letter: dlq_name.clone(),
                max_receives,
            }),
        );
        (Arc::new(q), Arc::new(SqliteQueue::new(db, &dlq_name, None)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_contract() {
    let h = Harness {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    contract::queue::run_all(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_shared_across_handles() {
    // Two handles on one file stand in for two processes: no in-process
    // wake-up between them, only the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let a = SqliteQueue::new(
        Db::open(dir.path().join("q.db")).expect("db"),
        "shared",
        None,
    );
    let b = SqliteQueue::new(
        Db::open(dir.path().join("q.db")).expect("db"),
        "shared",
        None,
    );
    let other = SqliteQueue::new(
        Db::open(dir.path().join("q.db")).expect("db"),
        "other",
        None,
    );
    a.send("x").await.expect("send");
    let got = b
        .receive(
            1,
            std::time::Duration::from_secs(30),
            std::time::Duration::from_secs(5),
        )
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "x");
    assert!(
        other.depth().await.expect("depth").visible == 0,
        "queues are separate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_store_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteResultStore::new(Db::open(dir.path().join("r.db")).expect("db"));
    contract::results::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_store_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteReadingStore::new(Db::open(dir.path().join("s.db")).expect("db"));
    let readings = sample();
    contract::store::write_is_idempotent_and_exact(&store, &readings).await;
    // The first client's query shape on the sample's hour.
    let q = Query::from_json(
        br#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE","minAqi":0,"maxAqi":10,"range":"Low"}"#,
        &QueryLimits::default(),
    )
    .expect("query");
    let got = contract::store::collect(&store, &q).await;
    assert_eq!(
        got.len(),
        3315,
        "DE readings in the Low band (independently counted)"
    );
    contract::store::matches_reference(&store, &readings, &q).await;
}

/// One store with the sample loaded, shared by every property case.
fn loaded() -> &'static (
    tokio::runtime::Runtime,
    SqliteReadingStore,
    Vec<Reading>,
    tempfile::TempDir,
) {
    static LOADED: OnceLock<(
        tokio::runtime::Runtime,
        SqliteReadingStore,
        Vec<Reading>,
        tempfile::TempDir,
    )> = OnceLock::new();
    LOADED.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteReadingStore::new(Db::open(dir.path().join("p.db")).expect("db"));
        let readings = sample();
        store.put_batch_blocking(&readings).expect("load");
        (rt, store, readings, dir)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn store_filter_equals_in_memory_filter(json in arb_query()) {
        let (rt, store, readings, _) = loaded();
        match Query::from_json(json.to_string().as_bytes(), &QueryLimits::default()) {
            Ok(q) => rt.block_on(contract::store::matches_reference(store, readings, &q)),
            // Only min > max is invalid among generated queries.
            Err(e) => {
                let lo = json.get("minAqi").and_then(|v| v.as_u64());
                let hi = json.get("maxAqi").and_then(|v| v.as_u64());
                prop_assert!(matches!((lo, hi), (Some(a), Some(b)) if a > b), "{e}");
            }
        }
    }
}

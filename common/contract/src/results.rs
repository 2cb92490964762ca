//! The result store contract.

use airq_core::query::Query;
use airq_core::reading::Timestamp;
use airq_core::results::{Outcome, ResultState, ResultStore};
use std::time::Duration;
use uuid::Uuid;

fn query() -> Query {
    Query::between(Timestamp(1_700_000_000), Timestamp(1_700_003_600))
}

pub async fn run_all(store: &dyn ResultStore) {
    lifecycle_done(store).await;
    failure_is_readable(store).await;
    unknown_is_none(store).await;
    expiry(store).await;
    large_results(store).await;
}

/// A CSV of `rows` data rows, about 60 bytes each.
fn csv_of(rows: usize, tag: &str) -> String {
    let mut csv = String::from("id,timestamp,place,P1\n");
    for i in 0..rows {
        csv.push_str(&format!("{i},2024-01-01 00:00:00,\"Zürich, {tag}\",8.13\n"));
    }
    csv
}

/// A result larger than a DynamoDB item (400 KB) or an SQS message is kept
/// whole, served as often as asked, never replaced by a duplicate, and
/// dropped at expiry.
pub async fn large_results(store: &dyn ResultStore) {
    let id = Uuid::new_v4();
    store
        .create(id, &query(), Duration::from_secs(3600))
        .await
        .expect("create");
    let csv = csv_of(12_000, "first");
    assert!(csv.len() > 500 * 1024);
    let done = Outcome::Done {
        csv: csv.clone(),
        rows: 12_000,
    };
    assert!(store.finish(id, &done).await.expect("finish large"));
    let dup = Outcome::Done {
        csv: csv_of(12_000, "duplicate"),
        rows: 12_000,
    };
    assert!(
        !store.finish(id, &dup).await.expect("finish again"),
        "a duplicate large outcome is refused"
    );
    for _ in 0..2 {
        let r = store.get(id).await.expect("get").expect("record");
        assert_eq!(r.state, ResultState::Done);
        assert_eq!(r.rows, Some(12_000));
        assert!(
            r.csv.as_deref() == Some(csv.as_str()),
            "the first large CSV is served whole, every time"
        );
    }

    let gone = Uuid::new_v4();
    store
        .create(gone, &query(), Duration::ZERO)
        .await
        .expect("create");
    store.finish(gone, &done).await.expect("finish");
    store
        .purge_expired(Timestamp::now(), Duration::from_secs(3600))
        .await
        .expect("purge");
    let r = store.get(gone).await.expect("get").expect("tombstone");
    assert_eq!(r.csv, None, "an expired large CSV is dropped");
}

pub async fn lifecycle_done(store: &dyn ResultStore) {
    let id = Uuid::new_v4();
    let q = query();
    store
        .create(id, &q, Duration::from_secs(3600))
        .await
        .expect("create");
    let r = store.get(id).await.expect("get").expect("created record");
    assert_eq!(r.state, ResultState::Queued);
    assert_eq!(r.query, q.to_json());
    assert!(!r.is_expired(Timestamp::now()));
    store.mark_running(id).await.expect("mark running");
    assert_eq!(
        store.get(id).await.expect("get").expect("record").state,
        ResultState::Running
    );
    let done = Outcome::Done {
        csv: "a,b\n1,2\n".into(),
        rows: 1,
    };
    assert!(
        store.finish(id, &done).await.expect("finish"),
        "first outcome is recorded"
    );
    let dup = Outcome::Done {
        csv: "something else\n".into(),
        rows: 9,
    };
    assert!(
        !store.finish(id, &dup).await.expect("finish again"),
        "a duplicate outcome is refused"
    );
    store
        .mark_running(id)
        .await
        .expect("mark running after done");
    let r = store.get(id).await.expect("get").expect("record");
    assert_eq!(r.state, ResultState::Done, "done stays done");
    assert_eq!(
        r.csv.as_deref(),
        Some("a,b\n1,2\n"),
        "the first result is kept"
    );
    assert_eq!(r.rows, Some(1));
    // Served as often as asked.
    let again = store.get(id).await.expect("get").expect("record");
    assert_eq!(again.csv, r.csv);
}

pub async fn failure_is_readable(store: &dyn ResultStore) {
    let id = Uuid::new_v4();
    store
        .create(id, &query(), Duration::from_secs(3600))
        .await
        .expect("create");
    let failed = Outcome::Failed {
        error: "store unavailable".into(),
    };
    assert!(store.finish(id, &failed).await.expect("finish"));
    let r = store.get(id).await.expect("get").expect("record");
    assert_eq!(r.state, ResultState::Failed);
    assert_eq!(r.error.as_deref(), Some("store unavailable"));
    assert_eq!(r.csv, None);
}

pub async fn unknown_is_none(store: &dyn ResultStore) {
    assert!(store.get(Uuid::new_v4()).await.expect("get").is_none());
}

pub async fn expiry(store: &dyn ResultStore) {
    let id = Uuid::new_v4();
    store
        .create(id, &query(), Duration::ZERO)
        .await
        .expect("create");
    let done = Outcome::Done {
        csv: "x\n".into(),
        rows: 0,
    };
    store.finish(id, &done).await.expect("finish");
    let r = store.get(id).await.expect("get").expect("record");
    assert!(
        r.is_expired(Timestamp::now()),
        "a zero-TTL result is expired"
    );
    store
        .purge_expired(Timestamp::now(), Duration::from_secs(3600))
        .await
        .expect("purge");
    let r = store
        .get(id)
        .await
        .expect("get")
        .expect("a tombstone remains, so it answers expired, not unknown");
    assert_eq!(r.csv, None, "expired data is dropped");
    store
        .purge_expired(
            Timestamp(Timestamp::now().0 + 7200),
            Duration::from_secs(3600),
        )
        .await
        .expect("purge");
    assert!(
        store.get(id).await.expect("get").is_none(),
        "old tombstones are forgotten"
    );
}

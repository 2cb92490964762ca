//! The result store contract.

use airq_core::export::{AnswerChunk, AnswerStream};
use airq_core::query::Query;
use airq_core::reading::Timestamp;
use airq_core::results::{
    read_answer, store_answer, Outcome, ResultState, ResultStore, StoredAnswer, Submission,
};
use airq_core::{BackendError, ClientId};
use bytes::Bytes;
use futures::TryStreamExt;
use std::time::Duration;
use uuid::Uuid;

fn query() -> Query {
    Query::between(Timestamp(1_700_000_000), Timestamp(1_700_003_600))
}

/// An anonymous client's submit without a request id, for checks about
/// something else.
fn anyone() -> Submission {
    by(ClientId::address("192.0.2.1".parse().expect("an address")))
}

/// A submit by `client` without a request id.
fn by(client: ClientId) -> Submission {
    Submission {
        client,
        request_id: None,
    }
}

/// A client no other check (or earlier run on a shared store) uses.
fn fresh_key_client() -> ClientId {
    ClientId::Key(Uuid::new_v4())
}

pub async fn run_all(store: &dyn ResultStore) {
    lifecycle_done(store).await;
    clients_are_recorded(store).await;
    request_ids_are_recorded(store).await;
    pending_counts_a_clients_live_unfinished_results(store).await;
    failure_is_readable(store).await;
    unknown_is_none(store).await;
    expiry(store).await;
    large_results(store).await;
    streamed_results(store).await;
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
        .create(id, &query(), Duration::from_secs(3600), &anyone())
        .await
        .expect("create");
    let csv = csv_of(12_000, "first");
    assert!(csv.len() > 500 * 1024);
    let done = Outcome::Done {
        answer: csv.clone(),
        rows: 12_000,
    };
    assert!(store.finish(id, &done).await.expect("finish large"));
    let dup = Outcome::Done {
        answer: csv_of(12_000, "duplicate"),
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
        let got = read_answer(store, &r).await.expect("read the CSV");
        assert!(
            got.as_deref() == Some(csv.as_str()),
            "the first large CSV is served whole, every time"
        );
    }

    let gone = Uuid::new_v4();
    store
        .create(gone, &query(), Duration::ZERO, &anyone())
        .await
        .expect("create");
    store.finish(gone, &done).await.expect("finish");
    store
        .purge_expired(Timestamp::now(), Duration::from_secs(3600))
        .await
        .expect("purge");
    let r = store.get(gone).await.expect("get").expect("tombstone");
    assert_eq!(r.answer, None, "an expired large CSV is dropped");
    assert_eq!(r.stored, None, "an expired large CSV is dropped");
}

/// `csv` as the chunked stream a store renders, `per` bytes a chunk, each
/// chunk counting the rows it completes.
fn chunked(csv: &str, per: usize) -> AnswerStream {
    let chunks: Vec<Result<AnswerChunk, BackendError>> = csv
        .as_bytes()
        .chunks(per)
        .map(|c| {
            Ok(AnswerChunk {
                bytes: Bytes::copy_from_slice(c),
                rows: c.iter().filter(|b| **b == b'\n').count() as u64,
                piece: None,
            })
        })
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

async fn read_range(
    store: &dyn ResultStore,
    csv: &StoredAnswer,
    range: std::ops::Range<u64>,
) -> Vec<u8> {
    store
        .open_answer(csv, Some(range))
        .await
        .expect("open a range")
        .try_fold(Vec::new(), |mut all, c| async move {
            all.extend_from_slice(&c);
            Ok(all)
        })
        .await
        .expect("read a range")
}

/// A worker's answer written chunk by chunk ([`store_answer`]): small ones
/// travel inline, large ones are stored and served whole or by byte range,
/// byte for byte; a duplicate's payload is dropped; a payload name the
/// store did not make is refused; an answer over the row limit fails
/// saying how many rows it has.
pub async fn streamed_results(store: &dyn ResultStore) {
    // Small: inline, as before.
    let id = Uuid::new_v4();
    store
        .create(id, &query(), Duration::from_secs(3600), &anyone())
        .await
        .expect("create");
    let small = csv_of(3, "small");
    match store_answer(store, id, chunked(&small, 7), 1_000)
        .await
        .expect("store small")
    {
        Outcome::Done { answer: csv, rows } => {
            assert_eq!((csv.as_str(), rows), (small.as_str(), 4))
        }
        other => panic!("a small answer travels inline: {other:?}"),
    }

    // Large: stored in chunks, then recorded from the message.
    let id = Uuid::new_v4();
    store
        .create(id, &query(), Duration::from_secs(3600), &anyone())
        .await
        .expect("create");
    let large = csv_of(300_000, "streamed");
    assert!(large.len() > 10 * 1024 * 1024, "several multipart parts");
    let outcome = store_answer(store, id, chunked(&large, 32 * 1024), 1_000_000)
        .await
        .expect("store large");
    let Outcome::Stored {
        answer: stored,
        rows,
    } = outcome.clone()
    else {
        panic!("a large answer is stored: {outcome:?}");
    };
    assert_eq!(
        rows, 300_001,
        "the header's line counts as a row of the chunks"
    );
    assert_eq!(stored.bytes, large.len() as u64);
    // A message naming another result's payload, or anything else, is refused.
    let other = Uuid::new_v4();
    store
        .create(other, &query(), Duration::from_secs(3600), &anyone())
        .await
        .expect("create");
    for key in [stored.key.clone(), "../../etc/passwd".into(), String::new()] {
        let forged = Outcome::Stored {
            answer: StoredAnswer { key, bytes: 1 },
            rows: 1,
        };
        assert!(
            matches!(
                store.finish(other, &forged).await,
                Err(BackendError::Corrupt(_))
            ),
            "a payload the store did not make for this result is refused"
        );
    }
    assert!(store.finish(id, &outcome).await.expect("finish"));
    assert!(
        store.finish(id, &outcome).await.expect("finish again"),
        "recording the same outcome again (a redelivered message) keeps it"
    );
    let r = store.get(id).await.expect("get").expect("record");
    assert_eq!(r.state, ResultState::Done);
    assert_eq!(r.rows, Some(300_001));
    assert_eq!(r.stored.as_ref(), Some(&stored));
    let got = read_answer(store, &r).await.expect("read").expect("a CSV");
    assert!(
        got == large,
        "the stored CSV is the rendered one, byte for byte"
    );
    let len = large.len() as u64;
    for range in [
        0..1,
        5..70_000,
        len - 10..len,
        9 * 1024 * 1024..9 * 1024 * 1024 + 5,
    ] {
        assert_eq!(
            read_range(store, &stored, range.clone()).await,
            large.as_bytes()[range.start as usize..range.end as usize],
            "bytes {range:?}"
        );
    }
    // A second delivery of the same request writes its own payload, which
    // is dropped when the first outcome is already recorded.
    let dup = store_answer(store, id, chunked(&large, 64 * 1024), 1_000_000)
        .await
        .expect("store a duplicate");
    let Outcome::Stored {
        answer: dup_csv, ..
    } = &dup
    else {
        panic!("{dup:?}");
    };
    assert_ne!(dup_csv.key, stored.key, "each attempt has its own payload");
    assert!(!store.finish(id, &dup).await.expect("finish the duplicate"));
    assert!(
        store.open_answer(dup_csv, None).await.is_err()
            || read_range(store, dup_csv, 0..1).await.is_empty(),
        "the duplicate's payload is deleted"
    );
    let again = store.get(id).await.expect("get").expect("record");
    assert_eq!(
        again.stored.as_ref(),
        Some(&stored),
        "the first outcome stays"
    );

    // Over the row limit: a failure that says how big it was.
    let id = Uuid::new_v4();
    store
        .create(id, &query(), Duration::from_secs(3600), &anyone())
        .await
        .expect("create");
    match store_answer(store, id, chunked(&large, 32 * 1024), 1_000)
        .await
        .expect("limit")
    {
        Outcome::Failed { error } => {
            assert!(error.contains("300001 rows"), "{error}");
            assert!(error.contains("limit of 1000"), "{error}");
            assert!(error.contains("narrow the query"), "{error}");
        }
        other => panic!("an answer over the limit fails: {other:?}"),
    }
}

pub async fn lifecycle_done(store: &dyn ResultStore) {
    let id = Uuid::new_v4();
    let q = query();
    store
        .create(id, &q, Duration::from_secs(3600), &anyone())
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
        answer: "a,b\n1,2\n".into(),
        rows: 1,
    };
    assert!(
        store.finish(id, &done).await.expect("finish"),
        "first outcome is recorded"
    );
    let dup = Outcome::Done {
        answer: "something else\n".into(),
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
        r.answer.as_deref(),
        Some("a,b\n1,2\n"),
        "the first result is kept"
    );
    assert_eq!(r.rows, Some(1));
    // Served as often as asked.
    let again = store.get(id).await.expect("get").expect("record");
    assert_eq!(again.answer, r.answer);
}

pub async fn failure_is_readable(store: &dyn ResultStore) {
    let id = Uuid::new_v4();
    store
        .create(id, &query(), Duration::from_secs(3600), &anyone())
        .await
        .expect("create");
    let failed = Outcome::Failed {
        error: "store unavailable".into(),
    };
    assert!(store.finish(id, &failed).await.expect("finish"));
    let r = store.get(id).await.expect("get").expect("record");
    assert_eq!(r.state, ResultState::Failed);
    assert_eq!(r.error.as_deref(), Some("store unavailable"));
    assert_eq!(r.answer, None);
}

pub async fn unknown_is_none(store: &dyn ResultStore) {
    assert!(store.get(Uuid::new_v4()).await.expect("get").is_none());
}

pub async fn expiry(store: &dyn ResultStore) {
    let id = Uuid::new_v4();
    store
        .create(id, &query(), Duration::ZERO, &anyone())
        .await
        .expect("create");
    let done = Outcome::Done {
        answer: "x\n".into(),
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
    assert_eq!(r.answer, None, "expired data is dropped");
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

pub async fn clients_are_recorded(store: &dyn ResultStore) {
    for client in [
        fresh_key_client(),
        ClientId::address("203.0.113.9".parse().expect("an address")),
        ClientId::address("2001:db8:1:2::1".parse().expect("an address")),
    ] {
        let id = Uuid::new_v4();
        store
            .create(id, &query(), Duration::from_secs(3600), &by(client))
            .await
            .expect("create");
        let r = store.get(id).await.expect("get").expect("record");
        assert_eq!(r.client, Some(client), "the client is recorded");
        let done = Outcome::Done {
            answer: "a\n".into(),
            rows: 0,
        };
        assert!(store.finish(id, &done).await.expect("finish"));
        let r = store.get(id).await.expect("get").expect("record");
        assert_eq!(r.client, Some(client), "and kept once done");
    }
}

/// The request id of a result's submit is returned with it for as long as
/// the record lives (queued, running, done inline or stored, failed, and
/// expired), and a submit without one has none.
pub async fn request_ids_are_recorded(store: &dyn ResultStore) {
    let hour = Duration::from_secs(3600);
    let small = Outcome::Done {
        answer: "a\n".into(),
        rows: 0,
    };
    let failed = Outcome::Failed { error: "no".into() };
    let large = csv_of(12_000, "request id");
    for (case, ttl) in [
        ("done", hour),
        ("stored", hour),
        ("failed", hour),
        ("expired", Duration::ZERO),
    ] {
        let id = Uuid::new_v4();
        // Unique, so that no earlier run on a shared store can satisfy it.
        let request_id = format!("req-{}", Uuid::new_v4());
        let submission = Submission {
            client: ClientId::Key(Uuid::new_v4()),
            request_id: Some(request_id.clone()),
        };
        store
            .create(id, &query(), ttl, &submission)
            .await
            .expect("create");
        let read = move || async move {
            store
                .get(id)
                .await
                .expect("get")
                .expect("record")
                .request_id
        };
        assert_eq!(
            read().await.as_deref(),
            Some(request_id.as_str()),
            "{case}: queued"
        );
        store.mark_running(id).await.expect("mark running");
        assert_eq!(
            read().await.as_deref(),
            Some(request_id.as_str()),
            "{case}: running"
        );
        let outcome = match case {
            "stored" => {
                let outcome = store_answer(store, id, chunked(&large, 32 * 1024), 1_000_000)
                    .await
                    .expect("store");
                assert!(matches!(outcome, Outcome::Stored { .. }), "{outcome:?}");
                outcome
            }
            "failed" => failed.clone(),
            _ => small.clone(),
        };
        assert!(store.finish(id, &outcome).await.expect("finish"), "{case}");
        assert!(
            !store.finish(id, &failed).await.expect("duplicate"),
            "{case}"
        );
        let r = store.get(id).await.expect("get").expect("record");
        assert!(r.state.is_final(), "{case}: {:?}", r.state);
        assert_eq!(
            r.request_id.as_deref(),
            Some(request_id.as_str()),
            "{case}: finished"
        );
        if case == "expired" {
            store
                .purge_expired(Timestamp::now(), hour)
                .await
                .expect("purge");
            let r = store.get(id).await.expect("get").expect("a tombstone");
            assert_eq!(r.answer, None, "its data is dropped");
            assert_eq!(
                r.request_id.as_deref(),
                Some(request_id.as_str()),
                "but not its request id"
            );
        }
    }

    // A submit without one has none, before and after its outcome.
    let id = Uuid::new_v4();
    store
        .create(id, &query(), hour, &by(fresh_key_client()))
        .await
        .expect("create");
    let r = store.get(id).await.expect("get").expect("record");
    assert_eq!(r.request_id, None, "none given, none returned");
    assert!(store.finish(id, &small).await.expect("finish"));
    let r = store.get(id).await.expect("get").expect("record");
    assert_eq!(r.request_id, None, "and none once done");
}

pub async fn pending_counts_a_clients_live_unfinished_results(store: &dyn ResultStore) {
    let (me, other) = (fresh_key_client(), fresh_key_client());
    let pending = |client: ClientId| async move {
        store
            .pending(&client, Timestamp::now())
            .await
            .expect("pending")
    };
    assert_eq!(pending(me).await, 0, "a new client has nothing pending");
    let hour = Duration::from_secs(3600);
    let mut mine = Vec::new();
    for _ in 0..4 {
        let id = Uuid::new_v4();
        store
            .create(id, &query(), hour, &by(me))
            .await
            .expect("create");
        mine.push(id);
    }
    store
        .create(Uuid::new_v4(), &query(), hour, &by(other))
        .await
        .expect("create");
    // Expired at once: never counted, finished or not.
    store
        .create(Uuid::new_v4(), &query(), Duration::ZERO, &by(me))
        .await
        .expect("create");
    assert_eq!(
        pending(me).await,
        4,
        "queued results count, expired ones not"
    );
    assert_eq!(pending(other).await, 1, "each client counts its own");

    store.mark_running(mine[0]).await.expect("mark running");
    assert_eq!(pending(me).await, 4, "running results count too");
    let done = Outcome::Done {
        answer: "a\n".into(),
        rows: 0,
    };
    assert!(store.finish(mine[0], &done).await.expect("finish"));
    assert_eq!(pending(me).await, 3, "a finished result no longer counts");
    let failed = Outcome::Failed { error: "no".into() };
    assert!(store.finish(mine[1], &failed).await.expect("fail"));
    assert_eq!(pending(me).await, 2, "nor does a failed one");
    assert!(!store.finish(mine[1], &done).await.expect("finish again"));
    assert_eq!(pending(me).await, 2, "a refused duplicate changes nothing");

    let later = Timestamp(Timestamp::now().0 + 2 * 3600);
    assert_eq!(
        store.pending(&me, later).await.expect("pending"),
        0,
        "results expired by then do not count"
    );
    store
        .purge_expired(Timestamp::now(), Duration::from_secs(3600))
        .await
        .expect("purge");
    assert_eq!(pending(me).await, 2, "a purge leaves live results counted");
    assert_eq!(pending(other).await, 1);
}

//! The contract suites and the AWS-specific checks on the AWS backend,
//! against the moto emulator (`AIRQ_TEST_AWS_ENDPOINT`; `bash
//! scripts/test.sh` starts it). Each test provisions its own resources
//! under a unique prefix, so tests never see each other's data.

use airq_aws::{
    AwsClients, BlobStore, DynamoKeyStore, DynamoReadingStore, DynamoResultStore, ReceiptFence,
    ResourceNames, SqsQueue, INLINE_ANSWER_MAX, SQS_MAX_BODY,
};
use airq_contract::sample::{arb_query, sample};
use airq_core::queue::Queue;
use airq_core::results::{Outcome, ResultStore, Submission};
use airq_core::store::ReadingStore;
use airq_core::{ClientId, Index, Indices, LatestQuery, Query, QueryLimits, Reading, Timestamp};
use airq_deploy::emulator;
use airq_deploy::provision::{ensure_queue_pair, Report};
use async_trait::async_trait;
use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::TryStreamExt;
use proptest::prelude::*;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

fn blobs(clients: &AwsClients, names: &ResourceNames) -> BlobStore {
    BlobStore::new(clients.s3.clone(), names.bucket.clone())
}

/// A result store on a freshly provisioned deployment.
async fn provisioned_results() -> (AwsClients, ResourceNames, DynamoResultStore) {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let store = DynamoResultStore::new(
        clients.dynamodb.clone(),
        names.results_table.clone(),
        blobs(&clients, &names),
    );
    (clients, names, store)
}

/// Objects in the test's bucket under `prefix`.
async fn objects(clients: &AwsClients, names: &ResourceNames, prefix: &str) -> Vec<String> {
    clients
        .s3
        .list_objects_v2()
        .bucket(&names.bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("list objects")
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

struct Harness {
    clients: AwsClients,
    names: ResourceNames,
    prefix: String,
    next: AtomicU32,
}

impl Harness {
    async fn new() -> Harness {
        let clients = emulator::clients().await;
        let names = emulator::provisioned(&clients, 3).await;
        Harness {
            prefix: names
                .request_send
                .trim_end_matches("RequestSend")
                .to_owned(),
            clients,
            names,
            next: AtomicU32::new(0),
        }
    }
}

#[async_trait]
impl airq_contract::queue::QueueHarness for Harness {
    async fn fresh(&self, max_receives: u32) -> (Arc<dyn Queue>, Arc<dyn Queue>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}q{n}", self.prefix);
        let dlq = format!("{name}-dlq");
        ensure_queue_pair(
            &self.clients,
            &name,
            &dlq,
            max_receives,
            &mut Report::default(),
        )
        .await
        .expect("queue pair");
        let fence = ReceiptFence::new(
            self.clients.dynamodb.clone(),
            self.names.receipts_table.clone(),
        );
        let mut opened = Vec::new();
        for n in [&name, &dlq] {
            let q = SqsQueue::open(
                self.clients.sqs.clone(),
                n,
                fence.clone(),
                blobs(&self.clients, &self.names),
            )
            .await
            .expect("open queue");
            opened.push(Arc::new(q) as Arc<dyn Queue>);
        }
        let dlq = opened.pop().expect("dlq");
        (opened.pop().expect("queue"), dlq)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_contract() {
    let h = Harness::new().await;
    airq_contract::queue::run_all(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_travel_through_s3() {
    let h = Harness::new().await;
    let (q, dlq) = airq_contract::queue::QueueHarness::fresh(&h, 1).await;
    let big: String = (0..SQS_MAX_BODY / 10 + 5_000)
        .map(|i| format!("{:09}\n", i))
        .collect();
    assert!(big.len() > SQS_MAX_BODY);
    q.send(&big).await.expect("send a large body");
    assert_eq!(objects(&h.clients, &h.names, "messages/").await.len(), 1);
    let m = q
        .receive(1, Duration::from_secs(30), Duration::from_secs(5))
        .await
        .expect("receive")
        .pop()
        .expect("the large message arrives");
    assert_eq!(m.body.len(), big.len());
    assert!(m.body == big, "the body arrives intact");
    // Over its receive limit it moves to the DLQ, pointer and all, and
    // the DLQ's consumer still gets the whole body.
    q.change_visibility(&m.receipt, Duration::ZERO)
        .await
        .expect("return it");
    assert!(q
        .receive(1, Duration::from_secs(30), Duration::from_secs(1))
        .await
        .expect("receive")
        .is_empty());
    let dead = dlq
        .receive(1, Duration::from_secs(30), Duration::from_secs(5))
        .await
        .expect("dlq receive")
        .pop()
        .expect("the message reached the DLQ");
    assert!(dead.body == big, "the dead letter keeps its whole body");
    dlq.delete(&dead.receipt).await.expect("delete");
    assert!(
        objects(&h.clients, &h.names, "messages/").await.is_empty(),
        "deleting the message deletes its S3 object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_store_contract() {
    let (_, _, store) = provisioned_results().await;
    airq_contract::results::run_all(&store).await;
}

struct Keys {
    clients: AwsClients,
    table: String,
    store: DynamoKeyStore,
}

#[async_trait]
impl airq_contract::keys::KeyHarness for Keys {
    fn store(&self) -> &dyn airq_core::keys::KeyStore {
        &self.store
    }

    /// Every item of the table, every attribute, as the service returns it.
    async fn raw(&self) -> Vec<u8> {
        let mut all = Vec::new();
        let mut start_key = None;
        loop {
            let out = self
                .clients
                .dynamodb
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .expect("scan the keys table");
            for item in out.items.unwrap_or_default() {
                all.extend(format!("{item:?}").into_bytes());
            }
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start_key = Some(k),
                None => return all,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_store_contract() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let store = DynamoKeyStore::new(clients.dynamodb.clone(), names.keys_table.clone());
    let h = Keys {
        clients,
        table: names.keys_table,
        store,
    };
    airq_contract::keys::run_all(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_results_table_without_the_pending_index_gets_it() {
    use airq_aws::schema::{BY_PENDING_CLIENT_INDEX, BY_PURGE_INDEX};
    use airq_deploy::provision::{ensure_results_table, Action, Billing};
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let table = format!("{}OldResults", emulator::unique_prefix());
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .expect("key")
    };
    let attr = |name: &str, t: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(t)
            .build()
            .expect("attribute")
    };
    // The results table as provisioned before clients were recorded.
    clients
        .dynamodb
        .create_table()
        .table_name(&table)
        .key_schema(key("id", KeyType::Hash))
        .attribute_definitions(attr("id", ScalarAttributeType::S))
        .attribute_definitions(attr("gc", ScalarAttributeType::S))
        .attribute_definitions(attr("purge_at", ScalarAttributeType::N))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(BY_PURGE_INDEX)
                .key_schema(key("gc", KeyType::Hash))
                .key_schema(key("purge_at", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .non_key_attributes("expires_at")
                        .non_key_attributes("tombstone")
                        .non_key_attributes("csv_key")
                        .build(),
                )
                .build()
                .expect("index"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create the old table");

    let mut report = Report::default();
    ensure_results_table(&clients, &table, Billing::OnDemand, &mut report)
        .await
        .expect("the old table is brought up to date");
    let added = report
        .steps
        .iter()
        .find(|s| s.kind == "index")
        .unwrap_or_else(|| panic!("no index step: {report}"));
    assert_eq!(added.action, Action::Created, "{report}");
    assert!(added.name.contains(BY_PENDING_CLIENT_INDEX), "{report}");
    let indexes: Vec<String> = clients
        .dynamodb
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("describe")
        .table
        .expect("table")
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name().map(str::to_owned))
        .collect();
    assert!(
        indexes.iter().any(|i| i == BY_PENDING_CLIENT_INDEX),
        "{indexes:?}"
    );

    let mut again = Report::default();
    ensure_results_table(&clients, &table, Billing::OnDemand, &mut again)
        .await
        .expect("provisioning again");
    assert!(!again.changed(), "nothing more to do: {again}");

    // And the store counts through it.
    let store = DynamoResultStore::new(
        clients.dynamodb.clone(),
        table.clone(),
        blobs(&clients, &names),
    );
    let me = ClientId::Key(uuid::Uuid::new_v4());
    let mine = Submission {
        client: me,
        request_id: None,
    };
    let q = Query::between(Timestamp(1_700_000_000), Timestamp(1_700_003_600));
    for _ in 0..2 {
        store
            .create(uuid::Uuid::new_v4(), &q, Duration::from_secs(3600), &mine)
            .await
            .expect("create");
    }
    assert_eq!(
        store.pending(&me, Timestamp::now()).await.expect("pending"),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_result_arrives_intact_through_s3() {
    let (clients, names, store) = provisioned_results().await;
    let q = Query::between(Timestamp(1_700_000_000), Timestamp(1_700_003_600));
    let id = uuid::Uuid::new_v4();
    let submission = Submission {
        client: ClientId::address("127.0.0.1".parse().expect("address")),
        request_id: Some(format!("req-{id}")),
    };
    store
        .create(id, &q, Duration::from_secs(3600), &submission)
        .await
        .expect("create");
    let csv: String = std::iter::once("a,b\n".to_owned())
        .chain((0..40_000).map(|i| format!("{i},ü{i}\n")))
        .collect();
    assert!(csv.len() > SQS_MAX_BODY && csv.len() > INLINE_ANSWER_MAX);
    let done = Outcome::Done {
        answer: csv.clone(),
        rows: 40_000,
    };
    assert!(store.finish(id, &done).await.expect("finish"));
    let dup = Outcome::Done {
        answer: format!("{csv}x"),
        rows: 1,
    };
    assert!(!store.finish(id, &dup).await.expect("finish again"));
    let r = store.get(id).await.expect("get").expect("record");
    assert_eq!(r.rows, Some(40_000));
    assert_eq!(
        r.request_id, submission.request_id,
        "the submit's request id"
    );
    let got = airq_core::results::read_answer(&store, &r)
        .await
        .expect("read");
    assert!(
        got.as_deref() == Some(csv.as_str()),
        "the CSV arrives intact"
    );
    assert_eq!(
        objects(&clients, &names, "results/").await.len(),
        1,
        "the losing duplicate leaves no object behind"
    );
    // Purged after expiry: the object goes with the data.
    store
        .purge_expired(
            Timestamp(Timestamp::now().0 + 7200),
            Duration::from_secs(3600 * 24),
        )
        .await
        .expect("purge");
    let r = store.get(id).await.expect("get").expect("tombstone");
    assert_eq!(r.answer, None);
    assert_eq!(r.stored, None);
    assert!(objects(&clients, &names, "results/").await.is_empty());
}

/// Counts the DynamoDB operations a client issues.
#[derive(Debug, Default, Clone)]
struct OpCounter {
    queries: Arc<AtomicUsize>,
    scans: Arc<AtomicUsize>,
    /// `PutItem` calls (also counted in `other`).
    puts: Arc<AtomicUsize>,
    /// S3 `GetObject` calls (also counted in `other`).
    gets: Arc<AtomicUsize>,
    other: Arc<AtomicUsize>,
}

impl Intercept for OpCounter {
    fn name(&self) -> &'static str {
        "OpCounter"
    }

    fn read_before_execution(
        &self,
        ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = ctx.input();
        let counter = if input
            .downcast_ref::<aws_sdk_dynamodb::operation::query::QueryInput>()
            .is_some()
        {
            &self.queries
        } else if input
            .downcast_ref::<aws_sdk_dynamodb::operation::scan::ScanInput>()
            .is_some()
        {
            &self.scans
        } else {
            &self.other
        };
        if input
            .downcast_ref::<aws_sdk_dynamodb::operation::put_item::PutItemInput>()
            .is_some()
        {
            self.puts.fetch_add(1, Ordering::Relaxed);
        }
        if input
            .downcast_ref::<aws_sdk_s3::operation::get_object::GetObjectInput>()
            .is_some()
        {
            self.gets.fetch_add(1, Ordering::Relaxed);
        }
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl OpCounter {
    fn reset(&self) {
        for c in [
            &self.queries,
            &self.scans,
            &self.puts,
            &self.gets,
            &self.other,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    fn counts(&self) -> (usize, usize, usize) {
        (
            self.queries.load(Ordering::Relaxed),
            self.scans.load(Ordering::Relaxed),
            self.other.load(Ordering::Relaxed),
        )
    }
}

async fn counted_store(
    clients: &AwsClients,
    names: &ResourceNames,
) -> (DynamoReadingStore, OpCounter) {
    let counter = OpCounter::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        clients
            .dynamodb
            .config()
            .to_builder()
            .interceptor(counter.clone())
            .build(),
    );
    (
        DynamoReadingStore::new(client, names.readings_table.clone()),
        counter,
    )
}

const HOUR_DE_LOW: &[u8] = br#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE","minAqi":0,"maxAqi":10,"range":"Low"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_identities_count_once() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, _) = counted_store(&clients, &names).await;
    airq_contract::store::repeated_identities_count_once(&store, &sample()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_store_contract_and_query_only() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, counter) = counted_store(&clients, &names).await;
    let readings = sample();
    airq_contract::store::write_is_idempotent_and_exact(&store, &readings).await;

    let q = Query::from_json(HOUR_DE_LOW, &QueryLimits::default()).expect("query");
    counter.reset();
    let got = airq_contract::store::collect(&store, &q).await;
    assert_eq!(
        got.len(),
        3315,
        "DE readings in the Low band (independently counted)"
    );
    let (queries, scans, other) = counter.counts();
    assert_eq!(scans, 0, "a date-bounded query never scans");
    assert_eq!(other, 0, "only Query calls");
    assert_eq!(
        queries, 1,
        "one day, one country, under 1 MB: one Query call"
    );
    airq_contract::store::matches_reference(&store, &readings, &q).await;

    let summary = store.summary().await.expect("summary");
    assert!(summary.readings > 4_000, "approximate count: {summary:?}");
}

/// Each sensor's latest reading is packed into one of 64 shard items, so a
/// batch of thousands of sensors writes at most 64 latest items; writers
/// racing on the same sensors never move one back in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_shards_take_a_batch_in_a_few_writes_and_never_go_back() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, counter) = counted_store(&clients, &names).await;
    let readings = sample();
    let sensors: std::collections::BTreeSet<u64> = readings.iter().map(|r| r.sensor_id).collect();
    assert!(sensors.len() > 4_000, "the sample has thousands of sensors");
    counter.reset();
    store.put_batch(readings.clone()).await.expect("put_batch");
    let puts = counter.puts.load(Ordering::Relaxed);
    assert!(
        puts <= airq_aws::LATEST_SHARDS as usize,
        "{puts} PutItem calls for {} sensors: one per shard at most",
        sensors.len()
    );
    let everything = LatestQuery::default();
    assert!(
        latest_of(&store, &everything).await
            == airq_contract::store::latest_reference(&readings, &everything)
    );

    // Two writers at once on the same 600 sensors: one an hour later than
    // the other. Whichever lands last, every sensor ends at the later hour.
    let at = |r: &Reading, dt: i64| Reading {
        timestamp: Timestamp(r.timestamp.0 + dt),
        ..r.clone()
    };
    let some: Vec<&Reading> = readings.iter().take(600).collect();
    let later: Vec<Reading> = some.iter().map(|r| at(r, 7_200)).collect();
    let earlier: Vec<Reading> = some.iter().map(|r| at(r, 3_600)).collect();
    for _ in 0..3 {
        let (a, b) = tokio::join!(
            store.put_batch(earlier.clone()),
            store.put_batch(later.clone())
        );
        a.expect("the earlier writer");
        b.expect("the later writer");
    }
    let all: Vec<Reading> = readings
        .iter()
        .cloned()
        .chain(earlier)
        .chain(later)
        .collect();
    assert!(
        latest_of(&store, &everything).await
            == airq_contract::store::latest_reference(&all, &everything),
        "every sensor at its newest reading"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_returns_every_reading() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, counter) = counted_store(&clients, &names).await;
    // 15,000 readings in one hour of one day, in one country: about 3 MB
    // in one day partition (≈ 200 B an item), so several 1 MB pages on the
    // table and the index. 1,500 sensors, ten readings each, five minutes
    // apart: pages need readings, not sensors.
    let t0 = 1_528_041_600; // 2018-06-03 16:00:00
    let readings: Vec<Reading> = (0..15_000u64)
        .map(|i| Reading {
            id: Some(1_000_000 + i),
            timestamp: Timestamp(t0 + 300 * (i / 1_500) as i64 + (i % 7) as i64),
            sensor_id: 10_000 + i % 1_500,
            sensor_type: "SDS011".into(),
            loc_id: Some(i),
            loc_country: "DE".into(),
            loc_lat: format!("52.{i:04}"),
            loc_long: format!("13.{i:04}"),
            loc_alt: "34.5".into(),
            p1: Some(format!("{}.{}", i % 90, i % 7)),
            p2: Some(format!("{}.{}", i % 60, i % 3)),
            indices: Indices::from([
                ((i % 10) as u16 + 1),
                (i % 501) as u16,
                ((i % 6) as u16 + 1),
            ]),
            samples: None,
            basis: None,
            flags: Default::default(),
            air: Default::default(),
        })
        .collect();
    for chunk in readings.chunks(3000) {
        store.put_batch(chunk.to_vec()).await.expect("put_batch");
    }
    for (json, what) in [
        (
            r#"{"startDate":"2018-06-03 00:00:00","endDate":"2018-06-03 23:59:59"}"#,
            "the day",
        ),
        (
            r#"{"startDate":"2018-06-03 16:00:00","endDate":"2018-06-03 16:59:59","country":"DE"}"#,
            "the hour in DE",
        ),
    ] {
        let q = Query::from_json(json.as_bytes(), &QueryLimits::default()).expect("query");
        counter.reset();
        let got = airq_contract::store::collect(&store, &q).await;
        assert_eq!(got.len(), readings.len(), "every reading of {what}");
        assert!(
            got == airq_contract::store::reference(&readings, &q),
            "{what}: exact, in order"
        );
        let (queries, scans, _) = counter.counts();
        assert!(
            queries >= 3,
            "{what}: several pages ({queries} Query calls)"
        );
        assert_eq!(scans, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_day_queries_come_in_order() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let store = DynamoReadingStore::new(clients.dynamodb.clone(), names.readings_table.clone());
    // The sample's readings spread over nine days, countries interleaved.
    let readings: Vec<Reading> = sample()
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r.timestamp = Timestamp(r.timestamp.0 - (i as i64 % 9) * 86_400 + 3 * 3600);
            r
        })
        .collect();
    store.put_batch(readings.clone()).await.expect("put_batch");
    for json in [
        r#"{"startDate":"2018-05-26 12:00:00","endDate":"2018-06-04 06:00:00"}"#,
        r#"{"startDate":"2018-05-27 23:00:00","endDate":"2018-06-02 01:00:00","country":"BG","range":"Low"}"#,
    ] {
        let q = Query::from_json(json.as_bytes(), &QueryLimits::default()).expect("query");
        airq_contract::store::matches_reference(&store, &readings, &q).await;
    }
}

/// One store with the sample loaded, shared by every property case.
fn loaded() -> &'static (tokio::runtime::Runtime, DynamoReadingStore, Vec<Reading>) {
    static LOADED: OnceLock<(tokio::runtime::Runtime, DynamoReadingStore, Vec<Reading>)> =
        OnceLock::new();
    LOADED.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let readings = sample();
        let store = rt.block_on(async {
            let clients = emulator::clients().await;
            let names = emulator::provisioned(&clients, 3).await;
            let store = DynamoReadingStore::new(clients.dynamodb.clone(), names.readings_table);
            store.put_batch(readings.clone()).await.expect("load");
            store
        });
        (rt, store, readings)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn store_filter_equals_in_memory_filter(json in arb_query()) {
        let (rt, store, readings) = loaded();
        if let Ok(q) = Query::from_json(json.to_string().as_bytes(), &QueryLimits::default()) {
            rt.block_on(airq_contract::store::matches_reference(store, readings, &q));
        }
    }
}

#[test]
fn a_missing_emulator_fails_with_instructions() {
    let msg =
        std::panic::catch_unwind(|| emulator::endpoint_from(Some("http://127.0.0.1:1".into())))
            .expect_err("an unreachable emulator is an error");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("scripts/moto.sh start"), "{msg}");
    let msg = std::panic::catch_unwind(|| emulator::endpoint_from(None))
        .expect_err("an unset emulator is an error");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("AIRQ_TEST_AWS_ENDPOINT is not set"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pointer_to_someone_elses_object_is_not_followed() {
    let h = Harness::new().await;
    let (q, _dlq) = airq_contract::queue::QueueHarness::fresh(&h, 3).await;
    // A message shaped like an offloaded one, pointing at another bucket.
    let url = h
        .clients
        .sqs
        .get_queue_url()
        .queue_name(q.name())
        .send()
        .await
        .expect("queue url")
        .queue_url
        .expect("a url");
    let size = aws_sdk_sqs::types::MessageAttributeValue::builder()
        .data_type("Number")
        .string_value("300000")
        .build()
        .expect("attribute");
    h.clients
        .sqs
        .send_message()
        .queue_url(url)
        .message_body(
            r#"["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"someone-else","s3Key":"messages/x"}]"#,
        )
        .message_attributes("ExtendedPayloadSize", size)
        .send()
        .await
        .expect("send a foreign pointer");
    let got = q
        .receive(10, Duration::from_secs(30), Duration::from_secs(2))
        .await
        .expect("receive");
    assert!(
        got.is_empty(),
        "a foreign pointer is not delivered: {got:?}"
    );
    // It is still on the queue (in flight), not lost.
    let depth = q.depth().await.expect("depth");
    assert_eq!(depth.in_flight, 1, "{depth:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_refuses_a_table_of_another_shape() {
    use airq_deploy::provision::ensure_readings_table;
    use airq_deploy::provision::Billing;
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let clients = emulator::clients().await;
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .expect("key")
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    // The first version's table: readings keyed by `id` alone; and one with
    // airq's keys but without its country index.
    let old = format!("{}QualityAirTable", emulator::unique_prefix());
    let no_index = format!("{}Readings", emulator::unique_prefix());
    for (name, keys, attrs) in [
        (&old, vec![key("id", KeyType::Hash)], vec![attr("id")]),
        (
            &no_index,
            vec![key("day", KeyType::Hash), key("at_sensor", KeyType::Range)],
            vec![attr("day"), attr("at_sensor")],
        ),
    ] {
        clients
            .dynamodb
            .create_table()
            .table_name(name)
            .set_key_schema(Some(keys))
            .set_attribute_definitions(Some(attrs))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("create a foreign table");
    }
    let err = ensure_readings_table(&clients, &old, Billing::OnDemand, &mut Report::default())
        .await
        .expect_err("a table keyed by id alone is refused");
    let text = err.to_string();
    assert!(
        text.contains("id (HASH)") && text.contains("day (HASH), at_sensor (RANGE)"),
        "{text}"
    );
    let err = ensure_readings_table(
        &clients,
        &no_index,
        Billing::OnDemand,
        &mut Report::default(),
    )
    .await
    .expect_err("a table without the country index is refused");
    assert!(
        err.to_string().contains("without the index by_country"),
        "{err}"
    );

    // A table provisioned by airq passes, again and again.
    let ours = format!("{}Ours", emulator::unique_prefix());
    for _ in 0..2 {
        ensure_readings_table(&clients, &ours, Billing::OnDemand, &mut Report::default())
            .await
            .expect("airq's own table is accepted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_rule_shorter_than_the_result_ttl_is_refused() {
    use airq_core::BackendError;
    // The emulator's deployment keeps result objects 2 days.
    let (_, _, store) = provisioned_results().await;
    for ok in [
        Duration::from_secs(24 * 3600),
        Duration::from_secs(2 * 86_400),
    ] {
        store
            .check_retention(ok)
            .await
            .expect("a TTL the bucket outlives");
    }
    let err = store
        .check_retention(Duration::from_secs(3 * 86_400))
        .await
        .expect_err("a TTL longer than the bucket keeps objects");
    assert!(matches!(err, BackendError::Schema(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("after 2 days") && text.contains("--result-object-days 3"),
        "{text}"
    );
}

// ------------------------------------------------------------ the three indices, places, latest

/// A reading as the DynamoDB item the previous version of airq wrote:
/// no `AQI_US_EPA`, `AQI_EAQI` or `cell_key`.
fn old_item(r: &Reading) -> std::collections::HashMap<String, AttributeValue> {
    let (day, second) = airq_aws::day_of(r.timestamp).expect("a day");
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: String| AttributeValue::N(v);
    let mut item = std::collections::HashMap::from([
        ("day".to_owned(), s(&day)),
        (
            "at_sensor".to_owned(),
            s(&format!("{second:05}#{:020}", r.sensor_id)),
        ),
        (
            "country_at".to_owned(),
            s(&format!(
                "{}#{second:05}#{:020}",
                r.loc_country, r.sensor_id
            )),
        ),
        ("timestamp".to_owned(), n(r.timestamp.0.to_string())),
        ("sensor_id".to_owned(), n(r.sensor_id.to_string())),
        ("sensor_type".to_owned(), s(&r.sensor_type)),
        ("loc_country".to_owned(), s(&r.loc_country)),
        ("loc_lat".to_owned(), s(&r.loc_lat)),
        ("loc_long".to_owned(), s(&r.loc_long)),
        ("loc_alt".to_owned(), s(&r.loc_alt)),
        ("AQI".to_owned(), n(r.index(Index::Daqi).to_string())),
    ]);
    if let Some(id) = r.id {
        item.insert("id".into(), n(id.to_string()));
    }
    if let Some(id) = r.loc_id {
        item.insert("loc_id".into(), n(id.to_string()));
    }
    if let Some(p) = &r.p1 {
        item.insert("P1".into(), s(p));
    }
    if let Some(p) = &r.p2 {
        item.insert("P2".into(), s(p));
    }
    item
}

/// The readings table as the previous version provisioned it: no
/// `by_cell` index.
async fn create_old_readings_table(clients: &AwsClients, table: &str, tags: &[(&str, &str)]) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType, Tag,
    };
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .expect("key")
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let mut req = clients
        .dynamodb
        .create_table()
        .table_name(table)
        .key_schema(key("day", KeyType::Hash))
        .key_schema(key("at_sensor", KeyType::Range))
        .attribute_definitions(attr("day"))
        .attribute_definitions(attr("at_sensor"))
        .attribute_definitions(attr("country_at"))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("by_country")
                .key_schema(key("day", KeyType::Hash))
                .key_schema(key("country_at", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("index"),
        )
        .billing_mode(BillingMode::PayPerRequest);
    for (k, v) in tags {
        req = req.tags(Tag::builder().key(*k).value(*v).build().expect("tag"));
    }
    req.send().await.expect("create the old readings table");
}

/// Writes `readings` as the previous version did: old-shaped items and the
/// summary item, with raw calls.
async fn write_old(clients: &AwsClients, table: &str, readings: &[Reading]) {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    for chunk in readings.chunks(25) {
        let requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|r| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(old_item(r)))
                            .build()
                            .expect("put"),
                    )
                    .build()
            })
            .collect();
        let out = clients
            .dynamodb
            .batch_write_item()
            .request_items(table, requests)
            .send()
            .await
            .expect("batch write old items");
        assert!(
            out.unprocessed_items.unwrap_or_default().is_empty(),
            "moto processes every item"
        );
    }
    let countries: std::collections::BTreeSet<String> = readings
        .iter()
        .map(|r| format!("c:{}", r.loc_country))
        .collect();
    let (first, last) = readings.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| {
        (lo.min(r.timestamp.0), hi.max(r.timestamp.0))
    });
    clients
        .dynamodb
        .update_item()
        .table_name(table)
        .key("day", AttributeValue::S("#summary".into()))
        .key("at_sensor", AttributeValue::S("summary".into()))
        .update_expression("ADD #c :c SET first_ts = :f, last_ts = :l")
        .expression_attribute_names("#c", "countries")
        .expression_attribute_values(":c", AttributeValue::Ss(countries.into_iter().collect()))
        .expression_attribute_values(":f", AttributeValue::N(first.to_string()))
        .expression_attribute_values(":l", AttributeValue::N(last.to_string()))
        .send()
        .await
        .expect("the old summary item");
}

async fn latest_of(store: &dyn ReadingStore, latest: &LatestQuery) -> Vec<Reading> {
    store
        .latest(latest)
        .try_collect()
        .await
        .expect("latest stream")
}

/// Part of the sample on 2018-06-03 (every sensor within 30 km of
/// Stuttgart and Sofia, the sample's densest cities, every sensor of a
/// rarer type than SDS011, and every fifth of the others: the emulator
/// reads slowly) and, for every third of those, a
/// later reading with other values on 2018-06-04.
fn two_days() -> Vec<Reading> {
    let cities = [(48.7758, 9.1829), (42.6977, 23.3219)];
    let first: Vec<Reading> = sample()
        .into_iter()
        .enumerate()
        .filter(|(i, r)| {
            i % 5 == 0
                || r.sensor_type != "SDS011"
                || r.position().is_some_and(|(lat, lon)| {
                    cities.iter().any(|&(clat, clon)| {
                        airq_core::place::distance_km(lat, lon, clat, clon) <= 30.0
                    })
                })
        })
        .map(|(_, r)| r)
        .collect();
    let later: Vec<Reading> = first
        .iter()
        .step_by(3)
        .map(|r| {
            let mut r = r.clone();
            r.timestamp = Timestamp(r.timestamp.0 + 86_400 - 3_600);
            r.p1 = Some(format!("{}.7", (r.sensor_id % 97) + 3));
            r.p2 = Some(format!("{}.1", (r.sensor_id % 61) + 1));
            let i = airq_core::Indices::of_text(r.p1.as_deref(), r.p2.as_deref()).expect("indices");
            r.indices = i;
            r
        })
        .collect();
    first.into_iter().chain(later).collect()
}

/// Queries over both days on every index, place and type filter.
const TWO_DAY_QUERIES: &[&str] = &[
    r#"{"startDate":"2018-06-03 00:00:00","endDate":"2018-06-04 23:59:59"}"#,
    r#"{"startDate":"2018-06-03 00:00:00","endDate":"2018-06-04 23:59:59","index":"us-epa","range":"Moderate"}"#,
    r#"{"startDate":"2018-06-03 20:44:00","endDate":"2018-06-04 23:59:59","index":"us-epa","minAqi":20,"maxAqi":80}"#,
    r#"{"startDate":"2018-06-03 00:00:00","endDate":"2018-06-04 23:59:59","index":"eaqi","minAqi":3,"country":"DE"}"#,
    r#"{"startDate":"2018-06-03 00:00:00","endDate":"2018-06-04 23:59:59","near":{"lat":48.7758,"lon":9.1829,"radiusKm":10}}"#,
    r#"{"startDate":"2018-06-03 00:00:00","endDate":"2018-06-04 23:59:59","near":{"lat":42.6977,"lon":23.3219,"radiusKm":25},"index":"eaqi","maxAqi":2,"sensorType":["sds011","SPS30"]}"#,
    r#"{"startDate":"2018-06-03 00:00:00","endDate":"2018-06-04 23:59:59","bbox":[9.0,48.6,9.4,48.9],"country":"DE","index":"us-epa"}"#,
    r#"{"startDate":"2018-06-03 00:00:00","endDate":"2018-06-04 23:59:59","bbox":[5,45,15,55],"index":"eaqi","range":"Good"}"#,
    r#"{"startDate":"2018-06-03 00:00:00","endDate":"2018-06-04 23:59:59","sensorType":["pms7003","PPD42NS","hpm"],"index":"us-epa","maxAqi":50}"#,
];

/// `GET /api/latest` filters, as query strings.
const LATEST_QUERIES: &[&[(&str, &str)]] = &[
    &[],
    &[("country", "DE")],
    &[("country", "BG"), ("sensorType", "SDS011")],
    &[("near", "48.7758,9.1829,10")],
    &[("near", "42.6977,23.3219,25"), ("country", "BG")],
    &[("bbox", "5,45,15,55")],
    &[("bbox", "9.0,48.6,9.4,48.9"), ("index", "eaqi")],
];

/// The store's rows equal the reference's for [`TWO_DAY_QUERIES`] and
/// [`LATEST_QUERIES`]. Rows only: rendering is the core's, and the
/// contract suites check it on this store; the emulator reads an index by
/// scanning the whole table, so every call here counts.
async fn check_answers(store: &DynamoReadingStore, written: &[Reading]) {
    for json in TWO_DAY_QUERIES {
        let q = Query::from_json(json.as_bytes(), &QueryLimits::default())
            .unwrap_or_else(|e| panic!("{json}: {e}"));
        let want = airq_contract::store::reference(written, &q);
        assert!(!want.is_empty(), "{json} selects something");
        let got = airq_contract::store::collect(store, &q).await;
        assert_eq!(got.len(), want.len(), "{json}: count");
        assert!(got == want, "{json}: exact, in order");
    }
    for pairs in LATEST_QUERIES {
        let lq = LatestQuery::from_pairs(pairs.iter().copied())
            .unwrap_or_else(|e| panic!("{pairs:?}: {e}"));
        let want = airq_contract::store::latest_reference(written, &lq);
        assert!(!want.is_empty(), "{pairs:?} selects something");
        let got = latest_of(store, &lq).await;
        assert_eq!(got.len(), want.len(), "latest {pairs:?}: count");
        assert!(got == want, "latest {pairs:?}: exact, in sensor order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_table_is_migrated_and_answers_every_index_and_latest() {
    use airq_aws::{MigrateOptions, MigrateProgress};
    use airq_core::BackendError;
    let clients = emulator::clients().await;
    let table = format!("{}QualityAirTable", emulator::unique_prefix());
    create_old_readings_table(&clients, &table, &[]).await;
    // An item of the old shape keeps no quality flags or air.
    let written: Vec<Reading> = two_days()
        .into_iter()
        .map(Reading::without_quality)
        .collect();
    // Half in the old shape, as the previous version wrote them; half by
    // this version (new shape, latest items): what a live deployment
    // holds when new binaries ran before the migration, or when a
    // migration was cut short.
    let old: Vec<Reading> = written.iter().step_by(2).cloned().collect();
    let new: Vec<Reading> = written.iter().skip(1).step_by(2).cloned().collect();
    write_old(&clients, &table, &old).await;
    let store = DynamoReadingStore::new(clients.dynamodb.clone(), table.clone());
    store
        .put_batch(new.clone())
        .await
        .expect("new-shape writes");
    // On a table an older airq wrote, readings are not packed until the
    // operator says every binary reads packed items (`--pack-readings`).
    assert!(!is_packed(&clients, &table, &new[0]).await);
    // And per-sensor latest items, as the version before the latest shards
    // wrote them (partition `#latest`, counted on the summary item).
    let old_latest: Vec<&Reading> = old.iter().take(5).collect();
    for r in &old_latest {
        let mut item = old_item(r);
        item.insert("day".into(), AttributeValue::S("#latest".into()));
        item.insert(
            "at_sensor".into(),
            AttributeValue::S(format!("{:020}", r.sensor_id)),
        );
        clients
            .dynamodb
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .expect("an old latest item");
    }
    clients
        .dynamodb
        .update_item()
        .table_name(&table)
        .key("day", AttributeValue::S("#summary".into()))
        .key("at_sensor", AttributeValue::S("summary".into()))
        .update_expression("ADD latest_items :n")
        .expression_attribute_values(":n", AttributeValue::N(old_latest.len().to_string()))
        .send()
        .await
        .expect("the old count of latest items");

    // Before the migration, a query that meets an old item says what to do
    // (an index range does not quietly drop it).
    for json in [
        r#"{"startDate":"2018-06-03 00:00:00","endDate":"2018-06-04 23:59:59"}"#,
        r#"{"startDate":"2018-06-03 00:00:00","endDate":"2018-06-04 23:59:59","index":"eaqi","range":"Poor"}"#,
    ] {
        let q = Query::from_json(json.as_bytes(), &QueryLimits::default()).expect("query");
        let err = store
            .query(&q)
            .try_collect::<Vec<Reading>>()
            .await
            .expect_err("old items are refused");
        assert!(
            matches!(&err, BackendError::Schema(m) if m.contains("airq-deploy migrate")),
            "{err}"
        );
    }

    // A stack's table gets its index from the stack, not from migrate.
    let options = MigrateOptions {
        segments: 3,
        concurrency: 8,
        pack_readings: false,
    };
    let quiet = |_: &MigrateProgress| {};
    let err = airq_deploy::migrate::migrate(&clients, &table, Some("airq-prod"), &options, &quiet)
        .await
        .expect_err("with --stack the index must come from the stack");
    assert!(
        err.to_string().contains("provision --stack airq-prod"),
        "{err}"
    );

    let seen = Arc::new(AtomicUsize::new(0));
    let calls = seen.clone();
    let progress = move |_: &MigrateProgress| {
        calls.fetch_add(1, Ordering::Relaxed);
    };
    let report = airq_deploy::migrate::migrate(&clients, &table, None, &options, &progress)
        .await
        .expect("migrate");
    assert!(seen.load(Ordering::Relaxed) >= 3, "progress was reported");
    let added = report
        .index
        .steps
        .iter()
        .find(|s| s.kind == "index")
        .unwrap_or_else(|| panic!("no index step: {}", report.index));
    assert_eq!(added.action, airq_deploy::provision::Action::Created);
    let items = &report.items;
    let sensors: std::collections::BTreeSet<u64> = written.iter().map(|r| r.sensor_id).collect();
    assert_eq!(items.readings, written.len() as u64, "{items:?}");
    assert_eq!(items.upgraded, old.len() as u64, "{items:?}");
    assert_eq!(items.current, new.len() as u64, "{items:?}");
    assert_eq!((items.raced, items.problems), (0, 0), "{items:?}");
    assert_eq!(items.sensors, sensors.len() as u64, "{items:?}");
    assert!(items.scan_done);
    assert_eq!(
        items.old_latest_deleted,
        old_latest.len() as u64,
        "the per-sensor latest items are gone: {items:?}"
    );
    assert_eq!(
        items.latest.created + items.latest.replaced + items.latest.kept,
        sensors.len() as u64,
        "{items:?}"
    );

    check_answers(&store, &written).await;
    let summary = store.summary().await.expect("summary");
    assert_eq!(
        summary.readings,
        written.len() as u64,
        "neither the summary item nor the latest items count as readings"
    );

    // Again: nothing left to do, nothing moves.
    let again = airq_deploy::migrate::migrate(&clients, &table, None, &options, &quiet)
        .await
        .expect("migrate again");
    assert_eq!(
        again.index.steps[0].action,
        airq_deploy::provision::Action::Found
    );
    assert_eq!(again.items.upgraded, 0, "{:?}", again.items);
    assert_eq!(again.items.old_latest_deleted, 0, "{:?}", again.items);
    assert_eq!(again.items.current, written.len() as u64);
    assert_eq!(
        again.items.latest,
        airq_aws::LatestWrites {
            created: 0,
            replaced: 0,
            kept: sensors.len() as u64
        },
        "a complete run leaves nothing to write"
    );
    let everything = LatestQuery::default();
    assert!(
        latest_of(&store, &everything).await
            == airq_contract::store::latest_reference(&written, &everything),
        "the latest readings have not moved"
    );
    assert!(!again.items.packing);

    // `--pack-readings`: readings written from then on are packed, and
    // the answers over items of every shape stay exact.
    let packing = MigrateOptions {
        pack_readings: true,
        ..options
    };
    let third = airq_deploy::migrate::migrate(&clients, &table, None, &packing, &quiet)
        .await
        .expect("migrate --pack-readings");
    assert!(third.items.packing);
    let mut later = written[0].clone();
    later.timestamp = Timestamp(later.timestamp.0 + 1);
    later.p2 = Some("77.7".into());
    let store = DynamoReadingStore::new(clients.dynamodb.clone(), table.clone());
    store
        .put_batch(vec![later.clone()])
        .await
        .expect("a packed write");
    assert!(is_packed(&clients, &table, &later).await);
    assert!(
        !is_packed(&clients, &table, &new[0]).await,
        "left as it was"
    );
    let mut all = written.clone();
    all.push(later);
    check_answers(&store, &all).await;
}

/// Whether the item of `r` holds it packed (`reading`, one attribute).
async fn is_packed(clients: &AwsClients, table: &str, r: &Reading) -> bool {
    let (day, second) = airq_aws::day_of(r.timestamp).expect("a day");
    let item = clients
        .dynamodb
        .get_item()
        .table_name(table)
        .key("day", AttributeValue::S(day))
        .key(
            "at_sensor",
            AttributeValue::S(format!("{second:05}#{:020}", r.sensor_id)),
        )
        .send()
        .await
        .expect("get_item")
        .item
        .expect("the reading's item");
    assert_eq!(
        item.contains_key("sensor_type"),
        !item.contains_key("reading"),
        "{item:?}"
    );
    item.contains_key("reading")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_a_stack_made_gets_its_index_from_the_stack() {
    use airq_aws::{MigrateOptions, MigrateProgress};
    let clients = emulator::clients().await;
    let table = format!("{}QualityAirTable", emulator::unique_prefix());
    create_old_readings_table(
        &clients,
        &table,
        &[("aws:cloudformation:stack-name", "airq-demo")],
    )
    .await;
    let err = airq_deploy::migrate::migrate(
        &clients,
        &table,
        None,
        &MigrateOptions::default(),
        &|_: &MigrateProgress| {},
    )
    .await
    .expect_err("the stack's table is left to the stack");
    assert!(
        err.to_string().contains("provision --stack airq-demo"),
        "{err}"
    );
    let missing = airq_deploy::migrate::migrate(
        &clients,
        &format!("{table}-absent"),
        None,
        &MigrateOptions::default(),
        &|_: &MigrateProgress| {},
    )
    .await
    .expect_err("no table, nothing to migrate");
    assert!(missing.to_string().contains("does not exist"), "{missing}");
}

/// Per `Query` call: items read (ScannedCount) and their size in bytes as
/// DynamoDB counts it.
#[derive(Debug, Default, Clone)]
struct ReadCounter {
    calls: Arc<std::sync::Mutex<Vec<(usize, usize)>>>,
}

impl Intercept for ReadCounter {
    fn name(&self) -> &'static str {
        "ReadCounter"
    }

    fn read_after_deserialization(
        &self,
        ctx: &aws_sdk_dynamodb::config::interceptors::AfterDeserializationInterceptorContextRef<'_>,
        _rc: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(out) = ctx.output_or_error() {
            if let Some(q) = out.downcast_ref::<aws_sdk_dynamodb::operation::query::QueryOutput>() {
                let bytes = q.items().iter().map(item_size).sum();
                assert_eq!(
                    q.count, q.scanned_count,
                    "DynamoDB filters nothing, so the items returned are those billed"
                );
                self.calls
                    .lock()
                    .map_err(|_| "poisoned")?
                    .push((q.scanned_count as usize, bytes));
            }
        }
        Ok(())
    }
}

impl ReadCounter {
    /// (Query calls, items read, bytes read, read units when eventually
    /// consistent: 0.5 per 4 KB per call, rounded up, at least 0.5).
    fn take(&self) -> (usize, usize, usize, f64) {
        let calls = std::mem::take(&mut *self.calls.lock().expect("counter"));
        let units: f64 = calls
            .iter()
            .map(|&(_, bytes)| (bytes.div_ceil(4096).max(1)) as f64 * 0.5)
            .sum();
        (
            calls.len(),
            calls.iter().map(|c| c.0).sum(),
            calls.iter().map(|c| c.1).sum(),
            units,
        )
    }
}

/// An item's size as DynamoDB bills it: each attribute's name and value in
/// bytes, a number taking one byte per two significant digits plus one.
fn item_size(item: &std::collections::HashMap<String, AttributeValue>) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => {
                let digits = n
                    .trim_start_matches('-')
                    .replace('.', "")
                    .trim_start_matches('0')
                    .trim_end_matches('0')
                    .len();
                digits.div_ceil(2) + 1
            }
            AttributeValue::Ss(ss) => ss.iter().map(String::len).sum(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

/// The figures of ARCHITECTURE.md's cost table: a `near` 10 km query in
/// the densest city of the sample (Stuttgart: 300 sensors within 10 km)
/// over one day, against the same day without a place; run with
/// `--nocapture` to see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_place_reads_only_its_cells() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let counter = ReadCounter::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        clients
            .dynamodb
            .config()
            .to_builder()
            .interceptor(counter.clone())
            .build(),
    );
    let store = DynamoReadingStore::new(client, names.readings_table.clone());
    // A dense day: every sensor of the sample `AIRQ_TEST_DENSE_DAY` times
    // (default 1; 3 makes about the ~15,000 readings a day of the cost
    // table, and takes the emulator a while longer).
    let copies: i64 = std::env::var("AIRQ_TEST_DENSE_DAY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let base = sample();
    let day: Vec<Reading> = (0..copies)
        .flat_map(|k| {
            base.iter().map(move |r| {
                let mut r = r.clone();
                r.timestamp = Timestamp(r.timestamp.0 - 6 * 3600 * k);
                r
            })
        })
        .collect();
    store.put_batch(day.clone()).await.expect("the day");

    let whole = Query::from_json(
        br#"{"startDate":"2018-06-03 00:00:00","endDate":"2018-06-03 23:59:59"}"#,
        &QueryLimits::default(),
    )
    .expect("query");
    let near = Query::from_json(
        br#"{"startDate":"2018-06-03 00:00:00","endDate":"2018-06-03 23:59:59","near":{"lat":48.7758,"lon":9.1829,"radiusKm":10}}"#,
        &QueryLimits::default(),
    )
    .expect("query");
    counter.take();
    let all = airq_contract::store::collect(&store, &whole).await;
    let (day_calls, day_items, day_bytes, day_units) = counter.take();
    let near_rows = airq_contract::store::collect(&store, &near).await;
    let (near_calls, near_items, near_bytes, near_units) = counter.take();
    assert_eq!(all.len(), day.len());
    assert!(near_rows == airq_contract::store::reference(&day, &near));
    eprintln!(
        "item size: {:.0} B on average ({day_bytes} B / {day_items} items)",
        day_bytes as f64 / day_items as f64
    );
    eprintln!(
        "whole day: {day_calls} Query calls, {day_items} items read ({day_bytes} B), {} rows, {day_units} RCU",
        all.len()
    );
    eprintln!(
        "near 10 km (Stuttgart): {near_calls} Query calls, {near_items} items read ({near_bytes} B), {} rows, {near_units} RCU",
        near_rows.len()
    );
    assert!(
        near_items * 5 < day_items,
        "a city reads a small part of the day ({near_items} of {day_items} items)"
    );
    assert!(near_items >= near_rows.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_match_the_reference_on_every_index_place_and_format() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let store = DynamoReadingStore::new(clients.dynamodb.clone(), names.readings_table);
    airq_contract::store::filters_match_reference(&store, 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_hints_are_kept_contract() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let store = DynamoReadingStore::new(clients.dynamodb.clone(), names.readings_table);
    airq_contract::store::latest_hints_are_kept(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_follows_ingestion_contract() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let store = DynamoReadingStore::new(clients.dynamodb.clone(), names.readings_table);
    airq_contract::store::latest_follows_ingestion(&store).await;
}

/// Aggregates, as on the embedded backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_contract() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, _) = counted_store(&clients, &names).await;
    airq_contract::aggregate::run_all(&store).await;
}

/// The data version's contract, as on the embedded backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_version_contract() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, _) = counted_store(&clients, &names).await;
    airq_contract::changes::run_all(&store).await;
}

/// Three writers at once (each version reserved, written and released out
/// of order) and a reader asking for the changes after the version it has
/// all along: when the writers are done, what the reader has put together
/// is every sensor's latest reading, each as the reference says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_beside_concurrent_writers_misses_nothing() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, _) = counted_store(&clients, &names).await;
    let base: Vec<Reading> = sample().into_iter().take(300).collect();
    // Writer w's batch b: every third sensor from w, b hours on, so the
    // writers overlap on no sensor within a round but race on the shards.
    let batch = |w: usize, b: i64| -> Vec<Reading> {
        base.iter()
            .skip(w)
            .step_by(3)
            .map(|r| Reading {
                timestamp: Timestamp(r.timestamp.0 + 3_600 * (b + 1)),
                ..r.clone()
            })
            .collect()
    };
    let done = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (store, done) = (store.clone(), done.clone());
            let batches: Vec<Vec<Reading>> = (0..4).map(|b| batch(w, b)).collect();
            tokio::spawn(async move {
                for b in batches {
                    store.put_batch(b).await.expect("put_batch");
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let mut seen: std::collections::BTreeMap<u64, Reading> = Default::default();
    let mut version = None;
    let mut polls = 0;
    loop {
        let finished = done.load(Ordering::SeqCst) == 3;
        let c = store.latest_changes(version).await.expect("latest_changes");
        assert!(
            version.is_none_or(|v| c.version >= v),
            "the version never goes back"
        );
        for (v, r) in c.readings {
            assert!(v <= c.version && version.is_none_or(|since| v > since));
            seen.insert(r.sensor_id, r);
        }
        version = Some(c.version);
        polls += 1;
        if finished || polls > 2_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in writers {
        w.await.expect("a writer");
    }
    assert!(
        polls > 2,
        "the reader read while the writers wrote ({polls} polls)"
    );
    let mut all = base.clone();
    for w in 0..3 {
        for b in 0..4 {
            all.extend(batch(w, b));
        }
    }
    let expected = airq_contract::store::latest_reference(&all, &LatestQuery::default());
    let got: Vec<Reading> = seen.into_values().collect();
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "the reader's copy is every sensor's latest reading"
    );
}

/// The live tier's contract (5-minute readings in, the hourly series and
/// its indices out, retention), as on the embedded backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tier_contract() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, counter) = counted_store(&clients, &names).await;
    airq_contract::live::run_all(&store).await;
    let (_, scans, _) = counter.counts();
    assert_eq!(scans, 0, "the live tier never scans");
}

/// Write units per partition key, from every write request the store
/// sends: `ceil(item size / 1 KB)` per item put (DynamoDB's on-demand
/// billing), one per update or delete (small items here).
#[derive(Debug, Default, Clone)]
struct WriteUnits(Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>);

impl WriteUnits {
    fn add(&self, item: &std::collections::HashMap<String, AttributeValue>) {
        let key = match item.get(airq_aws::schema::PARTITION_KEY) {
            Some(AttributeValue::S(k)) => k.clone(),
            _ => "?".into(),
        };
        let units = item_size_with_binary(item).div_ceil(1024).max(1) as u64;
        if let Ok(mut map) = self.0.lock() {
            *map.entry(key).or_default() += units;
        }
    }

    fn take(&self) -> std::collections::HashMap<String, u64> {
        self.0
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

/// [`item_size`] with binary attributes (the live items' packed rows).
fn item_size_with_binary(item: &std::collections::HashMap<String, AttributeValue>) -> usize {
    item_size(item)
        + item
            .values()
            .map(|v| match v {
                AttributeValue::B(b) => b.as_ref().len(),
                _ => 0,
            })
            .sum::<usize>()
}

impl Intercept for WriteUnits {
    fn name(&self) -> &'static str {
        "WriteUnits"
    }

    fn read_before_execution(
        &self,
        ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_sdk_dynamodb::operation::{
            batch_write_item::BatchWriteItemInput, put_item::PutItemInput,
            update_item::UpdateItemInput,
        };
        let input = ctx.input();
        if let Some(put) = input.downcast_ref::<PutItemInput>() {
            if let Some(item) = put.item() {
                self.add(item);
            }
        } else if let Some(batch) = input.downcast_ref::<BatchWriteItemInput>() {
            for requests in batch.request_items().into_iter().flat_map(|m| m.values()) {
                for r in requests {
                    if let Some(put) = r.put_request() {
                        self.add(put.item());
                    } else if let Some(delete) = r.delete_request() {
                        self.add(delete.key());
                    }
                }
            }
        } else if let Some(update) = input.downcast_ref::<UpdateItemInput>() {
            if let Some(key) = update.key() {
                self.add(key);
            }
        }
        Ok(())
    }
}

/// A 5-minute feed of `sensors` sensors at `minute` past 10:00 on
/// 2026-12-01, each a few seconds after the 5-minute mark, with values
/// that vary by sensor and feed.
fn live_feed(sensors: u64, minute: i64) -> Vec<Reading> {
    let start = Timestamp::parse_feed("2026-12-01 10:00:00")
        .expect("a time")
        .0;
    (1..=sensors)
        .map(|sensor| {
            let k = minute as u64;
            Reading {
                id: Some(sensor * 1_000 + k),
                timestamp: Timestamp(start + minute * 60 + (sensor % 50) as i64),
                sensor_id: sensor,
                sensor_type: if sensor % 3 == 0 { "PMS5003" } else { "SDS011" }.into(),
                loc_id: Some(sensor + 100_000),
                loc_country: ["DE", "FR", "PL", "NL", "BG"][(sensor % 5) as usize].into(),
                loc_lat: format!("{:.3}", 40.0 + (sensor % 2000) as f64 * 0.01),
                loc_long: format!("{:.3}", (sensor / 2000) as f64 * 1.7 + 2.0),
                loc_alt: format!("{}", sensor % 700),
                p1: Some(format!(
                    "{}.{:02}",
                    5 + (sensor * 7 + k) % 60,
                    (sensor + k) % 100
                )),
                p2: Some(format!(
                    "{}.{:02}",
                    2 + (sensor * 3 + k) % 30,
                    (sensor * 11 + k) % 100
                )),
                indices: Indices::lowest(),
                samples: None,
                basis: None,
                flags: Default::default(),
                air: Default::default(),
            }
        })
        .collect()
}

/// Issue 23's bounds for the live tier at the feed's real size: 15,000
/// sensors, an hour of 5-minute feeds (each rewriting the hour's items as
/// they grow) and the first feed of the next hour. No partition key takes
/// more than 1,000 write units in one feed (so not in any one second), and
/// the month's writes at on-demand prices ($0.625 per million write units)
/// stay under $50. Run with `--nocapture` for the figures BENCHMARKS.md
/// quotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_writes_per_partition_and_per_month_stay_within_bounds() {
    const SENSORS: u64 = 15_000;
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let units = WriteUnits::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        clients
            .dynamodb
            .config()
            .to_builder()
            .interceptor(units.clone())
            .build(),
    );
    let store = DynamoReadingStore::new(client, names.readings_table.clone());
    let mut hour_units = 0u64;
    let mut last_of_hour = std::collections::HashMap::new();
    let mut worst = (String::new(), 0u64);
    for minute in (0..=60).step_by(5) {
        let started = std::time::Instant::now();
        let written = store
            .put_recent(live_feed(SENSORS, minute))
            .await
            .expect("a feed");
        assert_eq!(written.new, SENSORS, "feed at minute {minute}");
        let feed = units.take();
        let total: u64 = feed.values().sum();
        let (key, most) = feed
            .iter()
            .max_by_key(|(_, u)| **u)
            .map(|(k, u)| (k.clone(), *u))
            .unwrap_or_default();
        println!(
            "feed at {:02}:{:02}: {total} write units over {} partition keys, at most {most} on {key:?}, {:.2} s",
            10 + minute / 60,
            minute % 60,
            feed.len(),
            started.elapsed().as_secs_f64()
        );
        assert!(
            most <= 1_000,
            "{key:?} takes {most} write units in one feed, over a partition's 1,000 a second"
        );
        if most > worst.1 {
            worst = (key, most);
        }
        if minute < 60 {
            hour_units += total;
        }
        if minute == 55 {
            last_of_hour = feed;
        }
    }
    // Retention strips the hour's values once, when the whole hour has
    // passed the cut: a rewrite of its 64 items, billed at the larger of
    // the item's size before (its size at 10:55) and after.
    let stripped = store
        .prune(
            airq_core::Resolution::FiveMin,
            live_feed(1, 60)[0].timestamp,
        )
        .await
        .expect("retention");
    assert_eq!(stripped, 12 * SENSORS, "the hour's 5-minute readings");
    let strip_units: u64 = last_of_hour
        .iter()
        .filter(|(key, _)| key.starts_with("#hour#"))
        .map(|(_, units)| units)
        .sum();
    assert!(units.take().values().sum::<u64>() <= strip_units + 10);
    // 12 feeds and one strip an hour, 24 hours, 30 days.
    let month_units = (hour_units + strip_units) * 24 * 30;
    let dollars = month_units as f64 * 0.625 / 1e6;
    println!(
        "an hour of feeds: {hour_units} write units, and {strip_units} to strip its values; \
         a month: {month_units} = ${dollars:.2} on demand; \
         the most on one key in one feed: {} on {:?}",
        worst.1, worst.0
    );
    assert!(dollars <= 50.0, "${dollars:.2} a month");
    // The hourly series answers for every sensor.
    let q = Query::from_json(
        br#"{"startDate":"2026-12-01 10:00:00","endDate":"2026-12-01 10:59:59","resolution":"hour","country":"DE"}"#,
        &QueryLimits::default(),
    )
    .expect("query");
    let rows = airq_contract::store::collect(&store, &q).await;
    assert_eq!(rows.len() as u64, SENSORS / 5, "every DE sensor's hour");
    assert!(rows.iter().all(|r| r.samples == Some(12)));
}

/// The alert store's contract, as on the embedded backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_store_contract() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let store = airq_aws::DynamoAlertStore::new(clients.dynamodb.clone(), names.alerts_table);
    airq_contract::alerts::run_all(&store).await;
}

/// A live run that stopped after writing its hour items (here: its means
/// item and a latest shard deleted behind its back) is finished by the
/// next run of the same feed, which finds every reading stored already.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_that_stopped_half_way_is_finished_by_the_next() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let table = names.readings_table.clone();
    let store = DynamoReadingStore::new(clients.dynamodb.clone(), table.clone());
    let feed: Vec<Reading> = (0..12).flat_map(|k| live_feed(3, 5 * k)).collect();
    let first = store.put_recent(feed.clone()).await.expect("a feed");
    assert_eq!(first.new, 36);
    let hour = Timestamp::parse_feed("2026-12-01 10:00:00")
        .expect("a time")
        .0;
    let means_key = airq_aws::hour_partition_of(1, hour)
        .expect("a key")
        .replacen("#hour#", "#means#", 1);
    let key = |day: &str, sort: &str| {
        std::collections::HashMap::from([
            (
                airq_aws::schema::PARTITION_KEY.to_owned(),
                AttributeValue::S(day.to_owned()),
            ),
            (
                airq_aws::schema::SORT_KEY.to_owned(),
                AttributeValue::S(sort.to_owned()),
            ),
        ])
    };
    let latest_key = airq_aws::latest_partition_of(1);
    for (day, sort) in [
        (means_key.as_str(), "live"),
        (latest_key.as_str(), "latest"),
    ] {
        clients
            .dynamodb
            .delete_item()
            .table_name(&table)
            .set_key(Some(key(day, sort)))
            .send()
            .await
            .expect("delete");
    }
    let again = store.put_recent(feed).await.expect("the same feed");
    assert_eq!((again.new, again.unchanged), (0, 36));
    let means = clients
        .dynamodb
        .get_item()
        .table_name(&table)
        .set_key(Some(key(&means_key, "live")))
        .send()
        .await
        .expect("get");
    assert!(
        means
            .item
            .is_some_and(|i| i.contains_key("means") && i.contains_key("of")),
        "the means item is back"
    );
    let latest = LatestQuery::from_pairs([("format", "csv")]).expect("a latest query");
    let got: Vec<Reading> = store.latest(&latest).try_collect().await.expect("latest");
    let one = got
        .iter()
        .find(|r| r.sensor_id == 1)
        .expect("sensor 1's latest is back");
    assert_eq!(
        one.timestamp,
        Timestamp::parse_feed("2026-12-01 10:55:01").expect("a time")
    );
}

/// `query`'s whole answer from `store`.
async fn answer(store: &DynamoReadingStore, q: &Query) -> Vec<u8> {
    store
        .query_answer(q)
        .try_fold(Vec::new(), |mut out, chunk| async move {
            out.extend_from_slice(&chunk.bytes);
            Ok(out)
        })
        .await
        .expect("answer")
}

/// A reading store with answer segments in the test's bucket; its
/// DynamoDB and S3 calls counted.
async fn segmented_store(
    clients: &AwsClients,
    names: &ResourceNames,
) -> (DynamoReadingStore, OpCounter, OpCounter) {
    let (store, dynamodb) = counted_store(clients, names).await;
    let s3 = OpCounter::default();
    let client = aws_sdk_s3::Client::from_conf(
        clients
            .s3
            .config()
            .to_builder()
            .interceptor(s3.clone())
            .build(),
    );
    let store = store.with_segments(BlobStore::new(client, names.bucket.clone()));
    (store, dynamodb, s3)
}

/// The AWS store keeps no gzip pieces yet (a gzip answer is compressed
/// whole in the gateway): its answers in pieces are the reference's bytes
/// and name none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_pieces_follow_segments_contract() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, _, _) = segmented_store(&clients, &names).await;
    let named = airq_contract::store::gzip_pieces_follow_segments(&store).await;
    assert_eq!(named, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_follow_changes_contract() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, _, _) = segmented_store(&clients, &names).await;
    airq_contract::store::segments_follow_changes(&store).await;
    // Three days of three countries, each day built twice (the first and
    // third changed): the replaced versions' objects are gone.
    let prefix = format!("segments/{}/day/", names.readings_table);
    let mut keys = objects(&clients, &names, &prefix).await;
    keys.sort();
    assert_eq!(
        keys.len(),
        12,
        "one object per day, one per day and country: {keys:?}"
    );
    for day in ["2023-03-01", "2023-03-02", "2023-03-03"] {
        let mut of_day: Vec<_> = keys
            .iter()
            .filter(|k| k.contains(day))
            .filter_map(|k| k.rsplit('/').next())
            .collect();
        of_day.sort();
        assert_eq!(of_day, ["0.seg", "1.seg", "2.seg", "all.seg"], "{day}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_match_the_reference_from_segments() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, _, s3) = segmented_store(&clients, &names).await;
    airq_contract::store::filters_match_reference_from_segments(&store, 30).await;
    // Most generated queries span less than a day (read from the items);
    // the others come from the segments.
    let gets = s3.gets.load(Ordering::Relaxed);
    assert!(gets > 0, "answers came from the segments: {gets} objects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_contract_from_segments() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, _, s3) = segmented_store(&clients, &names).await;
    airq_contract::aggregate::run_all_from_segments(&store).await;
    let gets = s3.gets.load(Ordering::Relaxed);
    assert!(
        gets > 10,
        "aggregates came from the segments: {gets} objects"
    );
}

/// A country's days come from one `Query` (their versions) and one
/// `GetObject` a day, whatever the number of readings; a day a write made
/// stale is read from its items until the next refresh, and a store
/// without segments reads every day's items. The answers are the same
/// bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_countrys_days_are_one_query_and_one_object_a_day() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, dynamodb, s3) = segmented_store(&clients, &names).await;
    let (rows, _) = counted_store(&clients, &names).await;
    // 2023-03-01, three days, 30 sensors in DE and 30 in NL each day.
    const DAY: i64 = 1_677_628_800;
    let mut written = Vec::new();
    for d in 0..3i64 {
        for s in 0..60u64 {
            written.push(airq_contract::generate::reading(
                9_100_000 + s,
                DAY + d * 86_400 + s as i64 * 600,
                "SDS011",
                if s % 2 == 0 { "DE" } else { "NL" },
                format!("{:.4}", 50.0 + s as f64 / 100.0),
                "8.5".into(),
                Some(format!("{}.5", 3 + s)),
                Some("4.25".into()),
            ));
        }
    }
    store.put_batch(written.clone()).await.expect("put_batch");
    assert_eq!(store.refresh_segments().await.expect("refresh"), 3);
    let mut q = Query::between(Timestamp(DAY), Timestamp(DAY + 3 * 86_400 - 1));
    q.country = Some("DE".into());
    let from_rows = answer(&rows, &q).await;
    assert_eq!(
        from_rows.iter().filter(|&&b| b == b'\n').count(),
        1 + 90,
        "a header and DE's 90 readings"
    );

    dynamodb.reset();
    s3.reset();
    assert_eq!(answer(&store, &q).await, from_rows);
    assert_eq!(dynamodb.counts(), (1, 0, 0), "one Query: the versions");
    assert_eq!(s3.counts(), (0, 0, 3), "one GetObject a day");

    // A value of the second day replaced: that day comes from its items.
    let mut changed = written[60].clone();
    assert_eq!(changed.loc_country, "DE");
    changed.p1 = Some("77.5".into());
    changed.indices = Indices::of_text(changed.p1.as_deref(), changed.p2.as_deref())
        .expect("indices of the changed reading");
    store.put_batch(vec![changed]).await.expect("the change");
    let from_rows = answer(&rows, &q).await;
    dynamodb.reset();
    s3.reset();
    assert_eq!(answer(&store, &q).await, from_rows);
    assert_eq!(
        dynamodb.counts(),
        (2, 0, 0),
        "the versions, and the stale day's items"
    );
    assert_eq!(s3.counts(), (0, 0, 2), "the two fresh days' objects");
    assert_eq!(store.refresh_segments().await.expect("refresh"), 1);
    dynamodb.reset();
    assert_eq!(answer(&store, &q).await, from_rows);
    assert_eq!(dynamodb.counts(), (1, 0, 0));

    // Every country: one object a day as well.
    q.country = None;
    let from_rows = answer(&rows, &q).await;
    dynamodb.reset();
    s3.reset();
    assert_eq!(answer(&store, &q).await, from_rows);
    assert_eq!(dynamodb.counts(), (1, 0, 0));
    assert_eq!(s3.counts(), (0, 0, 3));
}

/// An SDS011 reading of `sensor` in DE at `ts` (the segment tests' rows).
fn de_reading(sensor: u64, ts: i64) -> Reading {
    airq_contract::generate::reading(
        sensor,
        ts,
        "SDS011",
        "DE",
        "50.5".into(),
        "8.5".into(),
        Some("12.5".into()),
        Some("4.25".into()),
    )
}

/// The gateway answers a query beyond `--direct-max-span` directly when
/// the store says it is cheap at any span: on AWS, when every day of it
/// that has readings has a fresh segment. Days written before versions
/// were kept are found once, at the next refresh, and marked so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_is_cheap_at_any_span_when_each_day_with_readings_is_built() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, dynamodb, _) = segmented_store(&clients, &names).await;
    let (items_only, _) = counted_store(&clients, &names).await;
    // 2023-03-01 and 2023-03-03, four DE sensors each; none on 03-02.
    const DAY: i64 = 1_677_628_800;
    let written: Vec<Reading> = [0i64, 2]
        .into_iter()
        .flat_map(|d| {
            (0..4u64).map(move |s| de_reading(9_300_000 + s, DAY + d * 86_400 + s as i64 * 60))
        })
        .collect();
    store.put_batch(written.clone()).await.expect("put_batch");
    let cheap = |store: &DynamoReadingStore, q: &Query| {
        let (store, q) = (store.clone(), q.clone());
        async move {
            store
                .cheap_at_any_span(&q)
                .await
                .expect("cheap_at_any_span")
        }
    };
    let summary_item = || async {
        clients
            .dynamodb
            .get_item()
            .table_name(&names.readings_table)
            .key("day", AttributeValue::S("#summary".into()))
            .key("at_sensor", AttributeValue::S("summary".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("the summary item")
            .item
            .unwrap_or_default()
    };
    const MARK: &str = "segments_older_days_versioned";
    // Ten days before the first reading to ten after the last.
    let mut q = Query::between(
        Timestamp(DAY - 10 * 86_400),
        Timestamp(DAY + 13 * 86_400 - 1),
    );
    q.country = Some("DE".into());
    assert!(!cheap(&store, &q).await, "no segment built yet");
    assert_eq!(store.refresh_segments().await.expect("refresh"), 2);
    assert!(
        summary_item().await.contains_key(MARK),
        "the older days looked for"
    );
    assert!(
        cheap(&store, &q).await,
        "the two days built; 03-02 has no version item, so no readings (the mark says)"
    );
    assert!(!cheap(&items_only, &q).await, "a store without segments");
    let mut hourly = q.clone();
    hourly.resolution = airq_core::Resolution::Hour;
    assert!(!cheap(&store, &hourly).await, "the hourly series has none");

    // A changed reading makes its day stale until it is built again.
    let mut changed = written[4].clone();
    changed.p1 = Some("77.5".into());
    changed.indices = Indices::of_text(changed.p1.as_deref(), changed.p2.as_deref())
        .expect("indices of the changed reading");
    store.put_batch(vec![changed]).await.expect("the change");
    assert!(!cheap(&store, &q).await, "the third day is stale");
    assert_eq!(store.refresh_segments().await.expect("refresh"), 1);
    assert!(cheap(&store, &q).await);

    // As a table written before versions were kept: 03-03 without its
    // version item (and the summary's count without it), the summary
    // without the mark. Queries over the days from the first reading to
    // the last are not cheap (03-02 and 03-03 may hold readings); the
    // first day's alone still is. The next refresh reads one key of each
    // of those two days, versions and builds 03-03, and marks again.
    clients
        .dynamodb
        .delete_item()
        .table_name(&names.readings_table)
        .key("day", AttributeValue::S("#segments".into()))
        .key("at_sensor", AttributeValue::S("day#2023-03-03".into()))
        .send()
        .await
        .expect("deleting the version item");
    clients
        .dynamodb
        .update_item()
        .table_name(&names.readings_table)
        .key("day", AttributeValue::S("#summary".into()))
        .key("at_sensor", AttributeValue::S("summary".into()))
        .update_expression("REMOVE #m ADD #c :minus")
        .expression_attribute_names("#m", MARK)
        .expression_attribute_names("#c", "segment_days")
        .expression_attribute_values(":minus", AttributeValue::N("-1".into()))
        .send()
        .await
        .expect("removing the mark");
    assert!(
        !cheap(&store, &q).await,
        "days with no version inside the range"
    );
    let first_day = Query::between(Timestamp(DAY), Timestamp(DAY + 86_400 - 1));
    assert!(cheap(&store, &first_day).await);
    assert_eq!(
        store.refresh_segments().await.expect("refresh"),
        1,
        "the older day found and built"
    );
    assert!(summary_item().await.contains_key(MARK));
    assert!(cheap(&store, &q).await);
    assert_eq!(answer(&store, &q).await, answer(&items_only, &q).await);
    assert_eq!(
        store.summary().await.expect("summary").readings,
        8,
        "the version items are counted, so not taken for readings"
    );
    dynamodb.reset();
    assert_eq!(store.refresh_segments().await.expect("refresh"), 0);
    assert_eq!(
        dynamodb.counts().0,
        1,
        "marked: the next refresh reads the version items only"
    );
}

/// A refresh builds at most 16 days, newest first (the first one after
/// an upgrade would otherwise build the whole history while the master's
/// schedule waits); the next builds the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_builds_sixteen_days_at_most_newest_first() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, _, _) = segmented_store(&clients, &names).await;
    // 2023-03-01 to 2023-03-18, one DE sensor a day.
    const DAY: i64 = 1_677_628_800;
    let written: Vec<Reading> = (0..18i64)
        .map(|d| de_reading(9_400_000, DAY + d * 86_400))
        .collect();
    store.put_batch(written).await.expect("put_batch");
    let day = |d: i64| {
        Query::between(
            Timestamp(DAY + d * 86_400),
            Timestamp(DAY + d * 86_400 + 86_399),
        )
    };
    assert_eq!(store.refresh_segments().await.expect("refresh"), 16);
    for d in 0..18 {
        assert_eq!(
            store.cheap_at_any_span(&day(d)).await.expect("cheap"),
            d >= 2,
            "day {d}: the sixteen newest are built"
        );
    }
    assert_eq!(store.refresh_segments().await.expect("refresh"), 2);
    assert!(store.cheap_at_any_span(&day(0)).await.expect("cheap"));
    assert_eq!(store.refresh_segments().await.expect("refresh"), 0);
}

/// A day a writer is still in (its token in the day's `writing` set, as
/// `put_batch` leaves it between its two bumps) is not built: its rows
/// may be half written. A token past its lease is a dead writer's: taken
/// out, and the day built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_a_writer_is_in_is_built_only_once_the_writer_is_gone() {
    let clients = emulator::clients().await;
    let names = emulator::provisioned(&clients, 3).await;
    let (store, _, s3) = segmented_store(&clients, &names).await;
    let (rows, _) = counted_store(&clients, &names).await;
    // 2023-03-01: ten DE sensors.
    const DAY: i64 = 1_677_628_800;
    let written: Vec<Reading> = (0..10u64)
        .map(|s| {
            airq_contract::generate::reading(
                9_200_000 + s,
                DAY + s as i64 * 60,
                "SDS011",
                "DE",
                "50.5".into(),
                "8.5".into(),
                Some("12.5".into()),
                None,
            )
        })
        .collect();
    store.put_batch(written).await.expect("put_batch");
    let writer = |token: &str| {
        clients
            .dynamodb
            .update_item()
            .table_name(&names.readings_table)
            .key("day", AttributeValue::S("#segments".into()))
            .key("at_sensor", AttributeValue::S("day#2023-03-01".into()))
            .update_expression("ADD #w :t")
            .expression_attribute_names("#w", "writing")
            .expression_attribute_values(":t", AttributeValue::Ss(vec![token.to_owned()]))
            .send()
    };
    // A writer whose lease runs to the year 2286.
    writer("9999999999:alive")
        .await
        .expect("a live writer's token");
    assert_eq!(store.refresh_segments().await.expect("refresh"), 0);
    let mut q = Query::between(Timestamp(DAY), Timestamp(DAY + 86_399));
    q.country = Some("DE".into());
    let want = answer(&rows, &q).await;
    assert_eq!(want.iter().filter(|&&b| b == b'\n').count(), 11);
    s3.reset();
    assert_eq!(answer(&store, &q).await, want);
    assert_eq!(s3.counts().2, 0, "not built: read from the items");

    // The live writer leaves; one that died long ago stays behind.
    clients
        .dynamodb
        .update_item()
        .table_name(&names.readings_table)
        .key("day", AttributeValue::S("#segments".into()))
        .key("at_sensor", AttributeValue::S("day#2023-03-01".into()))
        .update_expression("DELETE #w :t")
        .expression_attribute_names("#w", "writing")
        .expression_attribute_values(":t", AttributeValue::Ss(vec!["9999999999:alive".into()]))
        .send()
        .await
        .expect("the live writer's token out");
    writer("1:dead").await.expect("a dead writer's token");
    assert_eq!(store.refresh_segments().await.expect("refresh"), 1);
    s3.reset();
    assert_eq!(answer(&store, &q).await, want);
    assert_eq!(s3.gets.load(Ordering::Relaxed), 1, "built: one object");
}

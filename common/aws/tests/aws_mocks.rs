//! The paths an emulator never takes: throttling and unprocessed batch
//! items, with DynamoDB answers scripted by `aws-smithy-mocks`. No emulator
//! is needed.

use airq_aws::{DynamoReadingStore, RetryPolicy, BATCH_WRITE_MAX};
use airq_core::store::ReadingStore;
use airq_core::{BackendError, Indices, Reading, Timestamp};
use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::batch_get_item::{BatchGetItemInput, BatchGetItemOutput};
use aws_sdk_dynamodb::operation::batch_write_item::{
    BatchWriteItemError, BatchWriteItemInput, BatchWriteItemOutput,
};
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException;
use aws_sdk_dynamodb::types::WriteRequest;
use aws_sdk_dynamodb::Client;
use aws_smithy_mocks::{mock, mock_client, MockResponse, Rule, RuleMode};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TABLE: &str = "QualityAirTable";

fn readings(n: u64) -> Vec<Reading> {
    (0..n)
        .map(|i| Reading {
            id: Some(i),
            timestamp: Timestamp(1_528_058_572 + i as i64),
            sensor_id: 100 + i,
            sensor_type: "SDS011".into(),
            loc_id: Some(i),
            loc_country: "DE".into(),
            loc_lat: "52.5".into(),
            loc_long: "13.4".into(),
            loc_alt: String::new(),
            p1: Some("8.13".into()),
            p2: Some("3.2".into()),
            indices: Indices::from([1, 18, 1]),
            samples: None,
            basis: None,
            flags: Default::default(),
            air: Default::default(),
        })
        .collect()
}

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
        max_attempts,
    }
}

/// The summary item updates succeed (they are not under test here).
fn summary_rule() -> Rule {
    mock!(Client::update_item)
        .sequence()
        .output(|| UpdateItemOutput::builder().build())
        .repeatedly()
        .build()
}

/// The latest shards' writes succeed (each a new shard item).
fn latest_rule() -> Rule {
    mock!(Client::put_item)
        .sequence()
        .output(|| PutItemOutput::builder().build())
        .repeatedly()
        .build()
}

/// The read-back of a batch's keys finds none of them stored.
fn nothing_stored_rule() -> Rule {
    mock!(Client::batch_get_item)
        .sequence()
        .output(|| BatchGetItemOutput::builder().build())
        .repeatedly()
        .build()
}

/// The data version item is not there yet (each batch that changes a
/// latest reading reads it before reserving a version).
fn no_version_rule() -> Rule {
    mock!(Client::get_item)
        .sequence()
        .output(|| GetItemOutput::builder().build())
        .repeatedly()
        .build()
}

/// A store whose client answers with `rules` (and, after them, finds
/// nothing stored), the SDK's own retries off so every retry seen is the
/// adapter's.
fn store(rules: &[&Rule], retry: RetryPolicy) -> DynamoReadingStore {
    let none = nothing_stored_rule();
    let version = no_version_rule();
    let mut rules = rules.to_vec();
    rules.push(&none);
    rules.push(&version);
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &rules, |c| c
        .retry_config(RetryConfig::disabled()));
    DynamoReadingStore::new(client, TABLE).with_retry(retry)
}

/// The sort keys of a batch's put requests.
fn keys(reqs: &[WriteRequest]) -> Vec<String> {
    reqs.iter()
        .filter_map(|w| w.put_request())
        .filter_map(|p| p.item().get("at_sensor"))
        .filter_map(|v| v.as_s().ok().cloned())
        .collect()
}

fn throttled() -> BatchWriteItemError {
    BatchWriteItemError::ProvisionedThroughputExceededException(
        ProvisionedThroughputExceededException::builder()
            .message("The level of configured provisioned throughput for the table was exceeded")
            .build(),
    )
}

/// Records the sort keys of every `BatchWriteItem` call, in call order.
#[derive(Debug, Default, Clone)]
struct Recorder(Arc<Mutex<Vec<Vec<String>>>>);

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }

    fn read_before_execution(
        &self,
        ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(input) = ctx.input().downcast_ref::<BatchWriteItemInput>() {
            let items = input
                .request_items()
                .and_then(|m| m.get(TABLE))
                .map(|v| keys(v))
                .unwrap_or_default();
            self.0.lock().map_err(|_| "poisoned")?.push(items);
        }
        Ok(())
    }
}

#[tokio::test]
async fn throttling_and_unprocessed_items_are_retried_until_written() {
    // Call 1: throttled (the modelled error). Call 2: throttled, as
    // DynamoDB sends it on the wire. Call 3: 10 items left unprocessed.
    // Then every call succeeds.
    let throttles = mock!(Client::batch_write_item)
        .sequence()
        .error(throttled)
        .http_status(
            400,
            Some(
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}"#
                    .into(),
            ),
        )
        .build();
    let calls = Arc::new(Mutex::new(0u32));
    let batch = mock!(Client::batch_write_item).then_compute_response(move |req| {
        let mut n = calls.lock().unwrap();
        *n += 1;
        let left = match *n {
            1 => req
                .request_items()
                .and_then(|m| m.get(TABLE))
                .map(|items| items[..10].to_vec()),
            _ => None,
        };
        MockResponse::Output(
            BatchWriteItemOutput::builder()
                .set_unprocessed_items(left.map(|l| HashMap::from([(TABLE.to_owned(), l)])))
                .build(),
        )
    });
    let summary = summary_rule();
    let latest = latest_rule();
    let none = nothing_stored_rule();
    let version = no_version_rule();
    let recorder = Recorder::default();
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        [&throttles, &batch, &summary, &latest, &none, &version],
        |c| c
            .retry_config(RetryConfig::disabled())
            .interceptor(recorder.clone())
    );
    let store = DynamoReadingStore::new(client, TABLE).with_retry(fast_retries(10));
    // One batch of 25, so the calls are strictly sequential.
    store
        .put_batch(readings(BATCH_WRITE_MAX as u64))
        .await
        .expect("written despite throttling");

    let seen = recorder.0.lock().unwrap();
    assert_eq!(seen.len(), 4, "two throttled calls, one partial, one retry");
    assert_eq!(seen[0].len(), 25);
    assert_eq!(seen[1], seen[0], "a throttled batch is sent again whole");
    assert_eq!(seen[2], seen[0]);
    assert_eq!(
        seen[3],
        seen[0][..10].to_vec(),
        "only the unprocessed items are sent again"
    );
}

#[tokio::test]
async fn many_batches_in_flight_all_get_written() {
    // Every call leaves its last item unprocessed the first time it is seen.
    let written: Arc<Mutex<HashSet<String>>> = Arc::default();
    let deferred: Arc<Mutex<HashSet<String>>> = Arc::default();
    let (w, d) = (written.clone(), deferred.clone());
    let batch = mock!(Client::batch_write_item).then_compute_response(move |req| {
        let items = req
            .request_items()
            .and_then(|m| m.get(TABLE))
            .cloned()
            .unwrap_or_default();
        let mut left = Vec::new();
        for (item, key) in items.iter().zip(keys(&items)) {
            if d.lock().unwrap().insert(key.clone()) && left.is_empty() {
                left.push(item.clone());
            } else {
                w.lock().unwrap().insert(key);
            }
        }
        MockResponse::Output(
            BatchWriteItemOutput::builder()
                .set_unprocessed_items(
                    (!left.is_empty()).then(|| HashMap::from([(TABLE.to_owned(), left)])),
                )
                .build(),
        )
    });
    let summary = summary_rule();
    let latest = latest_rule();
    let store = store(&[&batch, &summary, &latest], fast_retries(10));
    let rs = readings(1_000);
    store.put_batch(rs.clone()).await.expect("all written");
    assert_eq!(
        written.lock().unwrap().len(),
        rs.len(),
        "every reading written"
    );
}

#[tokio::test]
async fn sustained_throttling_fails_clearly() {
    let batch = mock!(Client::batch_write_item)
        .sequence()
        .error(throttled)
        .repeatedly()
        .build();
    let summary = summary_rule();
    let store = store(&[&batch, &summary], fast_retries(4));
    match store.put_batch(readings(3)).await {
        Err(BackendError::Remote { message, .. }) => {
            assert!(message.contains("gave up after 4 attempts"), "{message}");
            assert!(
                message.contains("ProvisionedThroughputExceeded") || message.contains("throttled"),
                "{message}"
            );
        }
        other => panic!("expected a clear failure, got {other:?}"),
    }
    assert_eq!(batch.num_calls(), 4, "exactly the policy's attempts");
}

#[tokio::test]
async fn other_errors_are_not_retried() {
    let batch = mock!(Client::batch_write_item)
        .sequence()
        .error(|| {
            BatchWriteItemError::ResourceNotFoundException(
                aws_sdk_dynamodb::types::error::ResourceNotFoundException::builder()
                    .message("Requested resource not found")
                    .build(),
            )
        })
        .repeatedly()
        .build();
    let summary = summary_rule();
    let store = store(&[&batch, &summary], fast_retries(10));
    assert!(store.put_batch(readings(3)).await.is_err());
    assert_eq!(batch.num_calls(), 1);
}

/// A batch whose latest shard write fails still releases the data
/// version it reserved, so that readers do not wait on it for the
/// reservation's lease.
#[tokio::test]
async fn a_failed_shard_write_releases_its_data_version() {
    let batch =
        mock!(Client::batch_write_item).then_output(|| BatchWriteItemOutput::builder().build());
    let failing = mock!(Client::put_item)
        .sequence()
        .error(|| {
            PutItemError::ResourceNotFoundException(
                aws_sdk_dynamodb::types::error::ResourceNotFoundException::builder()
                    .message("Requested resource not found")
                    .build(),
            )
        })
        .repeatedly()
        .build();
    let expressions: Arc<Mutex<Vec<String>>> = Arc::default();
    let e = expressions.clone();
    let updates = mock!(Client::update_item).then_compute_response(move |req: &UpdateItemInput| {
        e.lock()
            .unwrap()
            .push(req.update_expression().unwrap_or_default().to_owned());
        MockResponse::Output(UpdateItemOutput::builder().build())
    });
    let store = store(&[&batch, &failing, &updates], fast_retries(2));
    assert!(store.put_batch(readings(3)).await.is_err());
    let expressions = expressions.lock().unwrap();
    let reserved = expressions
        .iter()
        .position(|x| x.starts_with("SET #n = :n ADD #p"));
    let released = expressions.iter().position(|x| x == "DELETE #p :gone");
    assert!(
        reserved.is_some() && released > reserved,
        "reserved, then released: {expressions:?}"
    );
}

/// A latest shard item as the store keeps it, by hand from the format in
/// `readings/latest.rs`: `readings` is the gzip of a JSON array of the
/// sensors' latest readings, `version` the condition of the next write.
fn shard_item(
    partition: &str,
    version: u64,
    readings: &[&Reading],
) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    use aws_sdk_dynamodb::types::AttributeValue::{B, N, S};
    use std::io::Write;
    let entries: Vec<serde_json::Value> = readings
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id, "ts": r.timestamp.0, "sensor": r.sensor_id,
                "type": r.sensor_type, "loc": r.loc_id, "country": r.loc_country,
                "lat": r.loc_lat, "lon": r.loc_long, "alt": r.loc_alt,
                "p1": r.p1, "p2": r.p2, "aqi": r.indices.values(),
            })
        })
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(serde_json::to_string(&entries).unwrap().as_bytes())
        .unwrap();
    HashMap::from([
        ("day".to_owned(), S(partition.to_owned())),
        ("at_sensor".to_owned(), S("latest".into())),
        (
            "readings".to_owned(),
            B(aws_sdk_dynamodb::primitives::Blob::new(
                gz.finish().unwrap(),
            )),
        ),
        ("version".to_owned(), N(version.to_string())),
        ("sensors".to_owned(), N(readings.len().to_string())),
    ])
}

/// A shard write seen: its partition, condition and `:v`.
type Condition = (String, Option<String>, Option<String>);

/// Three sensors in three shards: one new (its write throttled twice,
/// then made on condition that no shard item exists), one whose stored
/// reading is older (the write, conditioned on the version read, loses a
/// race; the shard read again shows the racing writer already moved the
/// sensor past ours, so nothing more is written), one whose stored
/// reading is newer (no write at all). One new shard item is counted.
#[tokio::test]
async fn latest_shards_are_version_conditioned_retried_and_counted() {
    // Three sensor ids in three different shards.
    let mut ids: Vec<u64> = Vec::new();
    for id in 100u64.. {
        let p = airq_aws::latest_partition_of(id);
        if ids.iter().all(|&i| airq_aws::latest_partition_of(i) != p) {
            ids.push(id);
        }
        if ids.len() == 3 {
            break;
        }
    }
    let rs: Vec<Reading> = readings(3)
        .into_iter()
        .zip(&ids)
        .map(|(r, &id)| Reading { sensor_id: id, ..r })
        .collect();
    let (new, behind, ahead) = (&rs[0], &rs[1], &rs[2]);
    let [p_new, p_behind, p_ahead] =
        [new, behind, ahead].map(|r| airq_aws::latest_partition_of(r.sensor_id));
    let at = |r: &Reading, dt: i64| Reading {
        timestamp: Timestamp(r.timestamp.0 + dt),
        ..r.clone()
    };
    let (older, newer) = (at(behind, -60), at(ahead, 60));
    let raced = at(behind, 120);

    let shard_reads: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let reads = shard_reads.clone();
    let (pb, pa) = (p_behind.clone(), p_ahead.clone());
    let (o, nw, rc) = (older.clone(), newer.clone(), raced.clone());
    let get =
        mock!(Client::batch_get_item).then_compute_response(move |req: &BatchGetItemInput| {
            let keys = req
                .request_items()
                .and_then(|m| m.get(TABLE))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
            let mut found = Vec::new();
            for k in keys {
                let Some(day) = k.get("day").and_then(|v| v.as_s().ok()) else {
                    continue;
                };
                let mut reads = reads.lock().unwrap();
                let n = reads.entry(day.clone()).or_insert(0);
                *n += 1;
                if *day == pb {
                    // First read: version 7, our sensor older; then the racer's
                    // version 8, our sensor newer than what we send.
                    found.push(if *n == 1 {
                        shard_item(&pb, 7, &[&o])
                    } else {
                        shard_item(&pb, 8, &[&rc])
                    });
                } else if *day == pa {
                    found.push(shard_item(&pa, 3, &[&nw]));
                }
            }
            MockResponse::Output(
                BatchGetItemOutput::builder()
                    .responses(TABLE, found)
                    .build(),
            )
        });
    let partition = |req: &aws_sdk_dynamodb::operation::put_item::PutItemInput| {
        req.item()
            .and_then(|i| i.get("day"))
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    let conditions: Arc<Mutex<Vec<Condition>>> = Arc::default();
    let seen = conditions.clone();
    let record = move |req: &aws_sdk_dynamodb::operation::put_item::PutItemInput| {
        seen.lock().unwrap().push((
            partition(req),
            req.condition_expression().map(str::to_owned),
            req.expression_attribute_values()
                .and_then(|v| v.get(":v"))
                .and_then(|v| v.as_n().ok())
                .cloned(),
        ));
    };
    let (r1, r2) = (record.clone(), record);
    let pn = p_new.clone();
    let throttles = mock!(Client::put_item)
        .match_requests(move |req| {
            r1(req);
            partition(req) == pn
        })
        .sequence()
        // As DynamoDB sends it on the wire (its code is what is retried).
        .http_status(
            400,
            Some(
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}"#
                    .into(),
            ),
        )
        .times(2)
        .output(|| PutItemOutput::builder().build())
        .build();
    let pb2 = p_behind.clone();
    let lost = mock!(Client::put_item)
        .match_requests(move |req| {
            r2(req);
            partition(req) == pb2
        })
        .then_error(|| {
            PutItemError::ConditionalCheckFailedException(
                aws_sdk_dynamodb::types::error::ConditionalCheckFailedException::builder()
                    .message("The conditional request failed")
                    .build(),
            )
        });
    let batch =
        mock!(Client::batch_write_item).then_output(|| BatchWriteItemOutput::builder().build());
    let counted: Arc<Mutex<Vec<String>>> = Arc::default();
    let c = counted.clone();
    let summary = mock!(Client::update_item).then_compute_response(move |req: &UpdateItemInput| {
        let latest_count = req
            .expression_attribute_names()
            .and_then(|n| n.get("#n"))
            .is_some_and(|n| n == "latest_items");
        if latest_count
            && req
                .update_expression()
                .is_some_and(|e| e.starts_with("ADD #n"))
        {
            let n = req
                .expression_attribute_values()
                .and_then(|v| v.get(":n"))
                .and_then(|v| v.as_n().ok())
                .cloned()
                .unwrap_or_default();
            c.lock().unwrap().push(n);
        }
        MockResponse::Output(UpdateItemOutput::builder().build())
    });
    let store = store(
        &[&get, &throttles, &lost, &batch, &summary],
        fast_retries(5),
    );
    // The new sensor twice in the batch: only its newer reading counts.
    let mut batch_readings = rs.clone();
    batch_readings.push(at(new, -60));
    store.put_batch(batch_readings).await.expect("written");

    assert_eq!(throttles.num_calls(), 3, "throttled twice, then written");
    assert_eq!(
        lost.num_calls(),
        1,
        "the race lost once, then nothing to write"
    );
    let conditions = conditions.lock().unwrap();
    assert!(
        conditions
            .iter()
            .filter(|(p, ..)| *p == p_new)
            .all(|(_, c, _)| c.as_deref() == Some("attribute_not_exists(#v)")),
        "{conditions:?}"
    );
    assert!(
        conditions
            .iter()
            .filter(|(p, ..)| *p == p_behind)
            .all(|(_, c, v)| c.as_deref() == Some("#v = :v") && v.as_deref() == Some("7")),
        "{conditions:?}"
    );
    assert!(
        !conditions.iter().any(|(p, ..)| *p == p_ahead),
        "a shard with nothing newer is not written: {conditions:?}"
    );
    let reads = shard_reads.lock().unwrap();
    assert_eq!(reads.get(&p_behind), Some(&2), "read again after the race");
    assert_eq!(reads.get(&p_ahead), Some(&1));
    assert_eq!(
        *counted.lock().unwrap(),
        vec!["1".to_owned(), "1".to_owned()],
        "the data version's item (made by the first reservation) and one new shard item counted"
    );
}

/// The read-back before a write: keys DynamoDB leaves unprocessed are
/// asked again, a stored reading equal to the one sent is not written
/// again, and one stored with other values is replaced.
#[tokio::test]
async fn the_read_back_retries_unprocessed_keys_and_skips_unchanged_readings() {
    let rs = readings(3);
    // What the table holds: reading 0 exactly as sent, reading 1 with
    // another P1 (the items the store itself would write).
    let same = rs[0].clone();
    let mut other = rs[1].clone();
    other.p1 = Some("9.99".into());
    let table = Arc::new(vec![same, other]);
    let calls = Arc::new(Mutex::new(0u32));
    let c = calls.clone();
    let t = table.clone();
    let get =
        mock!(Client::batch_get_item).then_compute_response(move |req: &BatchGetItemInput| {
            let keys = req
                .request_items()
                .and_then(|m| m.get(TABLE))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
            // The latest shards' read (after the writes) finds none.
            if keys.iter().any(|k| {
                k.get("day")
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|d| d.starts_with("#latest"))
            }) {
                return MockResponse::Output(BatchGetItemOutput::builder().build());
            }
            let mut n = c.lock().unwrap();
            *n += 1;
            // The first call processes only the first key.
            let (now, later) = if *n == 1 {
                keys.split_at(1)
            } else {
                (&keys[..], &[][..])
            };
            let found: Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> = now
                .iter()
                .filter_map(|k| {
                    let sk = k.get("at_sensor")?.as_s().ok()?;
                    t.iter()
                        .find(|r| sk.ends_with(&format!("{:020}", r.sensor_id)))
                        .map(item_of)
                })
                .collect();
            let mut out = BatchGetItemOutput::builder().responses(TABLE, found);
            if !later.is_empty() {
                out = out.unprocessed_keys(
                    TABLE,
                    aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                        .set_keys(Some(later.to_vec()))
                        .build()
                        .unwrap(),
                );
            }
            MockResponse::Output(out.build())
        });
    let recorder = Recorder::default();
    let batch =
        mock!(Client::batch_write_item).then_output(|| BatchWriteItemOutput::builder().build());
    let summary = summary_rule();
    let latest = latest_rule();
    let version = no_version_rule();
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        [&get, &batch, &summary, &latest, &version],
        |c| c
            .retry_config(RetryConfig::disabled())
            .interceptor(recorder.clone())
    );
    let store = DynamoReadingStore::new(client, TABLE).with_retry(fast_retries(5));
    let written = store.put_batch(rs).await.expect("written");
    assert_eq!(
        *calls.lock().unwrap(),
        2,
        "the unprocessed keys asked again"
    );
    assert_eq!(
        (written.new, written.replaced, written.unchanged),
        (1, 1, 1)
    );
    let seen = recorder.0.lock().unwrap();
    let sent: Vec<&String> = seen.iter().flatten().collect();
    assert_eq!(
        sent.len(),
        2,
        "the unchanged reading is not written: {sent:?}"
    );
    assert!(!sent.iter().any(|k| k.ends_with(&format!("{:020}", 100))));
}

/// A reading as the store writes it, by hand: the attribute names of the
/// schema (ARCHITECTURE.md), measurements as text, indices as numbers.
fn item_of(r: &Reading) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    let second = r.timestamp.0.rem_euclid(86_400);
    let mut item = HashMap::from([
        ("day".to_owned(), S("2018-06-03".into())),
        (
            "at_sensor".to_owned(),
            S(format!("{second:05}#{:020}", r.sensor_id)),
        ),
        (
            "country_at".to_owned(),
            S(format!("DE#{second:05}#{:020}", r.sensor_id)),
        ),
        ("cell_key".to_owned(), S("2018-06-03#1".into())),
        ("timestamp".to_owned(), N(r.timestamp.0.to_string())),
        ("sensor_id".to_owned(), N(r.sensor_id.to_string())),
        ("sensor_type".to_owned(), S(r.sensor_type.clone())),
        ("loc_country".to_owned(), S(r.loc_country.clone())),
        ("loc_lat".to_owned(), S(r.loc_lat.clone())),
        ("loc_long".to_owned(), S(r.loc_long.clone())),
        ("loc_alt".to_owned(), S(r.loc_alt.clone())),
        ("AQI".to_owned(), N("1".into())),
        ("AQI_US_EPA".to_owned(), N("18".into())),
        ("AQI_EAQI".to_owned(), N("1".into())),
    ]);
    for (name, v) in [("id", r.id), ("loc_id", r.loc_id)] {
        if let Some(v) = v {
            item.insert(name.to_owned(), N(v.to_string()));
        }
    }
    for (name, v) in [("P1", &r.p1), ("P2", &r.p2)] {
        if let Some(v) = v {
            item.insert(name.to_owned(), S(v.clone()));
        }
    }
    item
}

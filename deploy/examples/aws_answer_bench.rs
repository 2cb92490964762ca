//! Large answers on the AWS backend, two ways side by side: from the
//! reading items (a store without answer segments) and from the answer
//! segments in S3, on the same table. The shipped sample (one day of real
//! feed) is written as `--days` consecutive days, the segments are built,
//! then each query is asked `--runs` times of each way, alternated; the
//! answers must be the same bytes. Prints the medians, and what each way
//! reads: DynamoDB requests and item bytes (read units are billed on
//! them), S3 requests and object bytes.
//!
//! ```sh
//! eval "$(bash scripts/moto.sh start)"
//! cargo run --release -p airq-deploy --example aws_answer_bench -- \
//!     --endpoint-url "$AIRQ_TEST_AWS_ENDPOINT" --days 7 --runs 5
//! bash scripts/moto.sh stop
//! ```
//!
//! Without `--endpoint-url` it runs against real AWS (standard credential
//! chain), creating a table `airq-bench-*` and objects under `segments/`
//! in `--bucket`, deleting the table at the end.

use airq_aws::{AwsClients, BlobStore, DynamoReadingStore};
use airq_core::export::Format;
use airq_core::feed::parse_feed;
use airq_core::store::ReadingStore;
use airq_core::{Query, Reading, Timestamp};
use airq_deploy::provision::{ensure_bucket, ensure_readings_table, Billing, Report};
use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::TryStreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/sample/201806032249_data.dust.min.json"
);
const DAY: i64 = 86_400;

struct Args {
    endpoint: Option<String>,
    region: Option<String>,
    bucket: String,
    days: i64,
    runs: usize,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        endpoint: None,
        region: None,
        bucket: "airq-bench-answers".into(),
        days: 7,
        runs: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--endpoint-url" => out.endpoint = Some(value()?),
            "--region" => out.region = Some(value()?),
            "--bucket" => out.bucket = value()?,
            "--days" => out.days = value()?.parse().map_err(|e| format!("--days: {e}"))?,
            "--runs" => out.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !(1..=31).contains(&out.days) || out.runs == 0 {
        return Err("--days is 1 to 31, --runs at least 1".into());
    }
    Ok(out)
}

/// Counts requests, and the bytes of the DynamoDB items they return.
#[derive(Debug, Default, Clone)]
struct Counter {
    requests: Arc<AtomicUsize>,
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "Counter"
    }

    fn read_before_execution(
        &self,
        _ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// An item's size as DynamoDB bills it: each attribute's name and value.
fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
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
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Ss(ss) => ss.iter().map(String::len).sum(),
            AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value(v)).sum::<usize>(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

async fn answer(store: &DynamoReadingStore, q: &Query) -> Result<Vec<u8>, String> {
    store
        .query_answer(q)
        .try_fold(Vec::new(), |mut out, chunk| async move {
            out.extend_from_slice(&chunk.bytes);
            Ok(out)
        })
        .await
        .map_err(|e| e.to_string())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The bytes of the items a query of `country` (every one for `None`)
/// over the days reads from DynamoDB: what its read units are billed on.
async fn item_bytes(
    aws: &AwsClients,
    table: &str,
    first: i64,
    days: i64,
    country: Option<&str>,
) -> Result<(usize, usize), String> {
    let (mut items, mut bytes) = (0, 0);
    for d in 0..days {
        let (day, _) = airq_aws::day_of(Timestamp(first + d * DAY)).map_err(|e| e.to_string())?;
        let mut start = None;
        loop {
            let mut req = aws
                .dynamodb
                .query()
                .table_name(table)
                .expression_attribute_values(":d", AttributeValue::S(day.clone()))
                .set_exclusive_start_key(start.take());
            req = match country {
                Some(c) => req
                    .index_name("by_country")
                    .key_condition_expression("#d = :d AND begins_with(country_at, :c)")
                    .expression_attribute_names("#d", "day")
                    .expression_attribute_values(":c", AttributeValue::S(format!("{c}#"))),
                None => req
                    .key_condition_expression("#d = :d")
                    .expression_attribute_names("#d", "day"),
            };
            let page = req.send().await.map_err(|e| format!("{e:?}"))?;
            for item in page.items() {
                items += 1;
                bytes += item_size(item);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
    }
    Ok((items, bytes))
}

/// Where `country` is in the days' lists of countries (the sample's
/// days all have the same).
async fn country_at(aws: &AwsClients, table: &str, country: &str) -> Result<usize, String> {
    let page = aws
        .dynamodb
        .query()
        .table_name(table)
        .key_condition_expression("#d = :d")
        .expression_attribute_names("#d", "day")
        .expression_attribute_values(":d", AttributeValue::S("#segments".into()))
        .limit(1)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let item = page.items().first().ok_or("no segment version item")?;
    match item.get("countries") {
        Some(AttributeValue::L(list)) => list
            .iter()
            .position(|c| c.as_s().is_ok_and(|c| c == country))
            .ok_or(format!("{country} is not in the day's countries")),
        _ => Err("a version item without its countries".into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = args()?;
    let aws = AwsClients::load(args.endpoint.as_deref(), args.region.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let doc = std::fs::read(SAMPLE).map_err(|e| format!("{SAMPLE}: {e}"))?;
    let mut one_day = Vec::new();
    parse_feed(&doc, |r| one_day.extend(r.ok())).map_err(|e| e.to_string())?;
    let one_day: Vec<Reading> = one_day;
    let first = one_day
        .iter()
        .map(|r| r.timestamp.0.div_euclid(DAY) * DAY)
        .min()
        .ok_or("the sample is empty")?;
    let mut readings = Vec::with_capacity(one_day.len() * args.days as usize);
    for d in 0..args.days {
        readings.extend(one_day.iter().cloned().map(|mut r| {
            r.timestamp = Timestamp(r.timestamp.0 + d * DAY);
            r
        }));
    }
    let table = format!("airq-bench-answers-{}", uuid::Uuid::new_v4().simple());
    let mut report = Report::default();
    ensure_readings_table(&aws, &table, Billing::OnDemand, &mut report)
        .await
        .map_err(|e| e.to_string())?;
    ensure_bucket(&aws, &args.bucket, 1, &mut report)
        .await
        .map_err(|e| e.to_string())?;

    let dynamodb = Counter::default();
    let s3 = Counter::default();
    let counted_dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws.dynamodb
            .config()
            .to_builder()
            .interceptor(dynamodb.clone())
            .build(),
    );
    let counted_s3 =
        aws_sdk_s3::Client::from_conf(aws.s3.config().to_builder().interceptor(s3.clone()).build());
    let rows = DynamoReadingStore::new(counted_dynamodb.clone(), table.clone());
    let segments = DynamoReadingStore::new(counted_dynamodb, table.clone())
        .with_segments(BlobStore::new(counted_s3, args.bucket.clone()));

    let t = Instant::now();
    for chunk in readings.chunks(5_000) {
        segments
            .put_batch(chunk.to_vec())
            .await
            .map_err(|e| e.to_string())?;
    }
    let written = t.elapsed();
    let t = Instant::now();
    let built = segments
        .refresh_segments()
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "{} readings ({} days of the sample) written in {:.2?}; {built} days' segments built in {:.2?}",
        readings.len(),
        args.days,
        written,
        t.elapsed()
    );
    let sizes = objects(&aws, &args.bucket, &format!("segments/{table}/")).await?;

    println!("| query | format | rows | bytes | items: time | items: DynamoDB requests, item bytes | segments: time | segments: DynamoDB, S3 requests, object bytes |");
    println!("|---|---|--:|--:|--:|---|--:|---|");
    for country in [Some("DE"), None] {
        for format in [Format::Csv, Format::Ndjson] {
            let mut q = Query::between(Timestamp(first), Timestamp(first + args.days * DAY - 1));
            q.country = country.map(str::to_owned);
            q.format = format;
            let want = answer(&rows, &q).await?;
            let (mut from_items, mut from_segments) = (Vec::new(), Vec::new());
            let (mut item_requests, mut seg_requests) = ((0, 0), (0, 0));
            for _ in 0..args.runs {
                dynamodb.requests.store(0, Ordering::Relaxed);
                let t = Instant::now();
                let got = answer(&rows, &q).await?;
                from_items.push(t.elapsed());
                item_requests = (dynamodb.requests.load(Ordering::Relaxed), 0);
                if got != want {
                    return Err("the answers from the items differ between runs".into());
                }
                dynamodb.requests.store(0, Ordering::Relaxed);
                s3.requests.store(0, Ordering::Relaxed);
                let t = Instant::now();
                let got = answer(&segments, &q).await?;
                from_segments.push(t.elapsed());
                seg_requests = (
                    dynamodb.requests.load(Ordering::Relaxed),
                    s3.requests.load(Ordering::Relaxed),
                );
                if got != want {
                    return Err(format!(
                        "the answer from segments differs from the items' ({} vs {} bytes)",
                        got.len(),
                        want.len()
                    ));
                }
            }
            let (items, bytes) = item_bytes(&aws, &table, first, args.days, country).await?;
            // The objects a query reads: each day's of its country, or
            // each day's whole.
            let name = match country {
                Some(c) => format!("/{}.seg", country_at(&aws, &table, c).await?),
                None => "/all.seg".to_owned(),
            };
            let object_bytes: i64 = sizes
                .iter()
                .filter(|(k, _)| k.ends_with(&name))
                .map(|(_, s)| *s)
                .sum();
            println!(
                "| {} days, {} | {} | {} | {} | {:.1} ms | {} requests, {items} items, {bytes} B | {:.1} ms | {}, {} requests, {object_bytes} B |",
                args.days,
                country.unwrap_or("all countries"),
                format.name(),
                want.iter().filter(|&&b| b == b'\n').count(),
                want.len(),
                median(from_items).as_secs_f64() * 1e3,
                item_requests.0,
                median(from_segments).as_secs_f64() * 1e3,
                seg_requests.0,
                seg_requests.1,
            );
        }
    }
    let per_day: i64 = sizes
        .iter()
        .filter(|(k, _)| k.ends_with("/all.seg"))
        .map(|(_, s)| *s)
        .sum::<i64>()
        / args.days;
    println!(
        "objects: {} ({} bytes in all; a day's all.seg {per_day} bytes)",
        sizes.len(),
        sizes.values().sum::<i64>()
    );
    // What it made: the objects, then the table.
    for key in sizes.keys() {
        let _ = aws
            .s3
            .delete_object()
            .bucket(&args.bucket)
            .key(key)
            .send()
            .await;
    }
    let _ = aws.dynamodb.delete_table().table_name(&table).send().await;
    Ok(())
}

/// Every object under `prefix`, with its size.
async fn objects(
    aws: &AwsClients,
    bucket: &str,
    prefix: &str,
) -> Result<HashMap<String, i64>, String> {
    let mut out = HashMap::new();
    let mut token = None;
    loop {
        let page = aws
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        for o in page.contents() {
            if let (Some(key), Some(size)) = (o.key(), o.size()) {
                out.insert(key.to_owned(), size);
            }
        }
        match page.next_continuation_token {
            Some(t) if page.is_truncated == Some(true) => token = Some(t),
            _ => return Ok(out),
        }
    }
}

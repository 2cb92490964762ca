//! Ingestion of the shipped sample into DynamoDB, two ways side by side:
//! `put_batch` (BatchWriteItem, 25 items per call, 8 calls in flight) and
//! one `PutItem` call per reading, one at a time (what the first version of
//! this system did). Each run writes into fresh tables, checks both hold the
//! same readings, then deletes them. Prints each run and the medians.
//!
//! ```sh
//! eval "$(bash scripts/moto.sh start)"
//! cargo run --release -p airq-deploy --example aws_ingest_bench -- \
//!     --endpoint-url "$AIRQ_TEST_AWS_ENDPOINT" --runs 3
//! bash scripts/moto.sh stop
//! ```
//!
//! Without `--endpoint-url` it runs against real AWS (standard credential
//! chain), creating and deleting tables named `airq-bench-*`.

use airq_aws::{AwsClients, DynamoReadingStore};
use airq_core::feed::parse_feed;
use airq_core::store::ReadingStore;
use airq_core::{Query, Reading, Timestamp};
use airq_deploy::provision::{ensure_readings_table, Billing, Report};
use futures::TryStreamExt;
use std::time::{Duration, Instant};

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/sample/201806032249_data.dust.min.json"
);

struct Args {
    endpoint: Option<String>,
    region: Option<String>,
    runs: usize,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        endpoint: None,
        region: None,
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--endpoint-url" => out.endpoint = Some(value()?),
            "--region" => out.region = Some(value()?),
            "--runs" => out.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(out)
}

async fn fresh_table(aws: &AwsClients, what: &str) -> Result<DynamoReadingStore, String> {
    let name = format!("airq-bench-{what}-{}", uuid::Uuid::new_v4().simple());
    ensure_readings_table(aws, &name, Billing::OnDemand, &mut Report::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(DynamoReadingStore::new(aws.dynamodb.clone(), name))
}

async fn all(store: &DynamoReadingStore, readings: &[Reading]) -> Result<Vec<Reading>, String> {
    let lo = readings
        .iter()
        .map(|r| r.timestamp)
        .min()
        .unwrap_or(Timestamp(0));
    let hi = readings
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(Timestamp(0));
    store
        .query(&Query::between(lo, hi))
        .try_collect()
        .await
        .map_err(|e| e.to_string())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = args()?;
    let doc = std::fs::read(SAMPLE).map_err(|e| format!("{SAMPLE}: {e}"))?;
    let mut readings = Vec::new();
    parse_feed(&doc, |r| readings.extend(r.ok())).map_err(|e| e.to_string())?;
    let aws = AwsClients::load(args.endpoint.as_deref(), args.region.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "{} readings from {SAMPLE}, on {}, {} runs",
        readings.len(),
        aws.location(),
        args.runs
    );
    println!("run  batched (BatchWriteItem x8)  one PutItem at a time  speed-up");
    let (mut batched, mut single) = (Vec::new(), Vec::new());
    for run in 1..=args.runs.max(1) {
        let a = fresh_table(&aws, "batched").await?;
        let t = Instant::now();
        a.put_batch(readings.clone())
            .await
            .map_err(|e| e.to_string())?;
        let tb = t.elapsed();
        let shards = a.latest_shard_sizes().await.map_err(|e| e.to_string())?;
        let bytes: usize = shards.iter().map(|&(b, _)| b).sum();
        let sensors: u64 = shards.iter().map(|&(_, s)| s).sum();
        println!(
            "     latest: {} shard items, {sensors} sensors, {bytes} bytes packed ({:.1} B a sensor, largest item {} B)",
            shards.len(),
            bytes as f64 / sensors.max(1) as f64,
            shards.iter().map(|&(b, _)| b).max().unwrap_or(0)
        );

        let b = fresh_table(&aws, "single").await?;
        let t = Instant::now();
        for r in &readings {
            b.put_one(r).await.map_err(|e| e.to_string())?;
        }
        let ts = t.elapsed();

        let (got_a, got_b) = (all(&a, &readings).await?, all(&b, &readings).await?);
        if got_a != got_b || got_a.is_empty() {
            return Err(format!(
                "the two tables differ: {} vs {} readings",
                got_a.len(),
                got_b.len()
            ));
        }
        for s in [&a, &b] {
            aws.dynamodb
                .delete_table()
                .table_name(s.table())
                .send()
                .await
                .map_err(|e| e.to_string())?;
        }
        println!(
            "{run:>3}  {:>26.2?}  {:>21.2?}  {:>7.1}x",
            tb,
            ts,
            ts.as_secs_f64() / tb.as_secs_f64()
        );
        batched.push(tb);
        single.push(ts);
    }
    let (mb, ms) = (median(batched), median(single));
    println!(
        "median  batched {mb:.2?}  one at a time {ms:.2?}  speed-up {:.1}x",
        ms.as_secs_f64() / mb.as_secs_f64()
    );
    Ok(())
}

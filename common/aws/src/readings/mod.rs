//! The reading store on DynamoDB.
//!
//! Key schema (see ARCHITECTURE.md for the read-cost arithmetic):
//!
//! - table: partition key `day` (`YYYY-MM-DD`, UTC), sort key `at_sensor`
//!   (`SSSSS#SENSOR`: second of the day, 5 digits, then the sensor id, 20
//!   digits). A reading's identity `(sensor_id, timestamp)` is its key, so
//!   writing it again replaces it (idempotent), and one day's readings come
//!   back in `(timestamp, sensor_id)` order.
//! - global secondary index `by_country` (all attributes): partition key
//!   `day`, sort key `country_at` (`COUNTRY#SSSSS#SENSOR`), so one country's
//!   readings of one day are one contiguous key range, in the same order.
//! - global secondary index `by_cell` (all attributes): partition key
//!   `cell_key` (`YYYY-MM-DD#CELL`, the day and the reading's 0.25° grid
//!   cell), sort key `at_sensor`, so a place reads only the rows of the
//!   cells it covers, each cell in the day's order.
//! - each sensor's latest reading, a copy kept by `put_batch`, packed with
//!   those of the other sensors of its shard into one of 64 items
//!   (partition `#latest#NN`, see `latest.rs`): no date, so no date query
//!   reads them, and no index key, so no index holds them.
//!
//! A date-bounded query is one `Query` per day of its range (per day and
//! cell for a small place), each bounded by the range's seconds on its
//! first and last day and paginated to the end; never a `Scan`. Days are
//! fetched a few at a time and emitted in day order; the cells of a day are
//! merged in key order. What the key ranges do not decide (the AQI bounds,
//! sensor types compared case-insensitively, the exact distance or box) is
//! checked on the decoded reading with the reference semantics,
//! [`Query::matches`], so the answer is exactly the reference's; DynamoDB
//! filters nothing (a filter never lowers the read units, and the items
//! are packed: `item.rs`).
//!
//! Files by job: `item.rs` the item codec, `route.rs` a query's key
//! ranges, `merge.rs` the fan-out and merge in key order, `write.rs` batch
//! writes, the read-back and the summary item, `latest.rs` the latest
//! readings packed into shards. This file
//! holds the store, the port's implementation, and the imports and limits
//! the others share (`use super::*`).

use crate::retry::{with_backoff, RetryPolicy};
use crate::schema::{
    BY_CELL_INDEX, BY_COUNTRY_INDEX, CELL_KEY, COUNTRY_SORT_KEY, LATEST_PARTITION, PARTITION_KEY,
    SORT_KEY,
};
use crate::{error_code, is_throttling, remote};
use airq_core::air::Air;
use airq_core::error::BackendError;
use airq_core::export::AnswerStream;
use airq_core::place::{cell_of_text, Place};
use airq_core::quality::Flags;
use airq_core::query::{LatestQuery, Query};
use airq_core::reading::{Reading, Timestamp};
use airq_core::store::{LatestChanges, ReadingStore, ReadingStream, StoreSummary, Written};
use airq_core::{Index, Indices, Resolution};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

mod item;
mod latest;
mod live;
mod merge;
mod route;
mod segments;
mod version;
mod write;

pub use item::day_of;
pub(crate) use item::{
    cell_key, index_attribute, key_of, n, packed_item, reading_of_item, s, ReadingItem,
    ITEMS_PACKED, READING,
};
use item::{cell_key_of, day_name};
pub(crate) use latest::{is_shard_partition, Shard};
pub use latest::{latest_partition_of, LATEST_SHARDS};
pub use live::hour_partition_of;
use merge::{time_then_sensor, Pages};
use route::Fetch;
pub use write::LatestWrites;

/// On a packed item (a latest shard, a live hour item): bumped by every
/// write, the condition of the next one ([`DynamoReadingStore::put_versioned`]).
const VERSION: &str = "version";
/// The most items one `BatchWriteItem` call takes.
pub const BATCH_WRITE_MAX: usize = 25;
/// The most keys one `BatchGetItem` call takes.
const BATCH_GET_MAX: usize = 100;
/// `BatchWriteItem` (and `BatchGetItem`) calls in flight per `put_batch`.
const WRITES_IN_FLIGHT: usize = 8;
/// Conditional latest-item writes in flight per `put_batch` (one call per
/// sensor: a condition cannot ride in a batch).
const LATEST_IN_FLIGHT: usize = 16;
/// Day partitions fetched at once by one query.
const DAYS_IN_FLIGHT: usize = 4;
/// Cell fetches (one per cell and day) in flight at once by one place
/// query: a place of many cells fetches fewer days ahead.
const CELL_FETCHES_IN_FLIGHT: usize = 32;
/// Items per page of a cell fetch. Up to 64 cells are merged at once, each
/// holding a few pages, so their pages are kept well under DynamoDB's 1 MB;
/// a page costs the same read units per byte whatever its size.
const CELL_PAGE_ITEMS: i32 = 1_000;
/// Readings per chunk a merge hands on.
const MERGE_CHUNK: usize = 256;
/// Pages a day's fetch may run ahead of the consumer.
const PAGES_AHEAD: usize = 2;
/// Readings streamed ahead of the consumer.
const STREAM_BUFFER: usize = 512;
const DAY: i64 = 86_400;

/// The one item that is not a reading: first and last timestamps and the
/// set of countries, kept up to date by every `put_batch`. Its `day` is no
/// date, so no query ever reads it, and it has no `country_at` or
/// `cell_key`, so it is in no index.
const SUMMARY_DAY: &str = "#summary";
const SUMMARY_SORT: &str = "summary";
/// Set members cannot be empty strings, and a country code can be.
const COUNTRY_MEMBER_PREFIX: &str = "c:";
/// The summary item's count of the items that are no readings besides it
/// (the latest shards; per-sensor latest items of an older shape until the
/// migration deletes them), so that the readings count (the table's item
/// count) can leave them out.
const LATEST_COUNT: &str = "latest_items";

/// Readings on DynamoDB. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DynamoReadingStore {
    pub(crate) client: aws_sdk_dynamodb::Client,
    pub(crate) table: String,
    pub(crate) retry: RetryPolicy,
    /// How long the live tier's hour items are kept: their TTL (`live.rs`).
    pub(crate) live_retention: std::time::Duration,
    /// Where the answer segments are (`segments.rs`); `None`: answers are
    /// read from the items.
    pub(crate) segments: Option<crate::blobs::BlobStore>,
    /// Whether queries of the table read strongly consistent (a segment's
    /// build: `segments.rs`); an index cannot.
    pub(crate) consistent_reads: bool,
    /// Whether readings are written packed, once known to be
    /// ([`Self::writes_packed`]): shared by the clones.
    pub(crate) packs: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DynamoReadingStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoReadingStore {
            client,
            table: table.into(),
            retry: RetryPolicy::default(),
            live_retention: Resolution::Hour
                .default_retention()
                .unwrap_or(std::time::Duration::from_secs(400 * 86_400)),
            segments: None,
            consistent_reads: false,
            packs: Default::default(),
        }
    }

    /// Sets how long the hourly series is kept: the live tier's items get
    /// a TTL of their hour's end plus this (the master passes its
    /// `--hourly-retention`; the registry's default otherwise).
    pub fn with_live_retention(mut self, hourly: std::time::Duration) -> Self {
        self.live_retention = hourly;
        self
    }

    /// Replaces the retry policy of batch writes (tests use short waits).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

/// One stream of results from a task that writes into `tx`.
fn spawned<F, Fut>(run: F) -> ReadingStream
where
    F: FnOnce(mpsc::Sender<Result<Reading, BackendError>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(run(tx));
    ReceiverStream::new(rx).boxed()
}

impl DynamoReadingStore {
    /// [`ReadingStore::put_batch`], leaving the latest shards alone for the
    /// readings keyed `(timestamp, sensor id)` in `not_latest`.
    async fn put_batch_with(
        &self,
        readings: Vec<Reading>,
        not_latest: HashSet<(i64, u64)>,
    ) -> Result<Written, BackendError> {
        // One item per identity, the last one sent winning (as a replace
        // would): a BatchWriteItem call refuses duplicate keys, and
        // concurrent calls would leave the winner to chance.
        let mut unique = BTreeMap::new();
        for r in readings {
            unique.insert((r.timestamp, r.sensor_id), r);
        }
        let readings: Vec<Reading> = unique.into_values().collect();
        if readings.is_empty() {
            return Ok(Written::default());
        }
        // What is stored already decides what is written: a reading stored
        // exactly as sent is not written again, so a repeated ingest costs
        // reads (a fifth of a write's price) and says so.
        let stored = self.stored_of(&readings).await?;
        let mut written = Written::default();
        let mut requests = Vec::with_capacity(readings.len());
        let mut days = BTreeSet::new();
        let packed = self.writes_packed().await?;
        for r in &readings {
            let item = match packed {
                true => packed_item(r)?,
                false => ReadingItem::of(r)?.encode()?,
            };
            match stored.get(&(r.timestamp.0, r.sensor_id)) {
                Some(have) if have == r => {
                    written.unchanged += 1;
                    continue;
                }
                Some(_) => written.replaced += 1,
                None => written.new += 1,
            }
            days.insert(r.timestamp.0.div_euclid(DAY));
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| BackendError::Corrupt(format!("encoding a reading: {e}")))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        if !requests.is_empty() {
            self.update_summary(&readings).await?;
        }
        // The days' answer segments are stale from before the first
        // reading is written until after the last (`segments.rs`).
        let token = segments::Token::issue();
        self.bump_days(&days, segments::Bump::Start(&token)).await?;
        // The token's lease holds the days' segments back while this
        // writes; past half of it the batch stops (requests already sent
        // land long before the lease ends), so a build never reads a day
        // this writer may still change.
        tokio::time::timeout(segments::WRITER_LEASE / 2, self.write_all(requests))
            .await
            .map_err(|_| BackendError::Remote {
                context: format!("DynamoDB BatchWriteItem on {}", self.table),
                message: format!(
                    "the batch took longer than {:?} and was stopped part way; ingest it again",
                    segments::WRITER_LEASE / 2
                ),
            })??;
        self.bump_days(&days, segments::Bump::End(&token)).await?;
        // After the readings: a latest item is only ever a copy of a
        // reading already stored. Unchanged readings go too: their latest
        // item may be what a crash between the two writes left behind.
        self.put_latest(
            readings
                .into_iter()
                .filter(|r| !not_latest.contains(&(r.timestamp.0, r.sensor_id))),
        )
        .await?;
        Ok(written)
    }
}

#[async_trait]
impl ReadingStore for DynamoReadingStore {
    async fn put_batch(&self, readings: Vec<Reading>) -> Result<Written, BackendError> {
        self.put_batch_with(readings, HashSet::new()).await
    }

    /// Skips the latest shards for the readings hinted away: a batch of a
    /// month's feed whose sensors all have a newer reading to come reads
    /// and writes no shard.
    async fn put_batch_hinted(
        &self,
        readings: Vec<Reading>,
        may_be_latest: Vec<bool>,
    ) -> Result<Written, BackendError> {
        let not_latest = airq_core::store::hinted_away(&readings, &may_be_latest)?;
        self.put_batch_with(readings, not_latest).await
    }

    fn series(&self) -> &'static [Resolution] {
        &Resolution::ALL
    }

    /// Stores the 5-minute readings and their hours in the live items
    /// (`live.rs`), then the latest readings.
    async fn put_recent(&self, readings: Vec<Reading>) -> Result<Written, BackendError> {
        self.put_live(readings).await
    }

    async fn prune(&self, resolution: Resolution, before: Timestamp) -> Result<u64, BackendError> {
        self.prune_live(resolution, before).await
    }

    /// Builds the daily series' stale answer segments in S3, when this
    /// store has them (`segments.rs`).
    async fn refresh_segments(&self) -> Result<u64, BackendError> {
        self.refresh_s3_segments().await
    }

    /// A query the answer segments serve for every day that has readings
    /// (`segments.rs`): the gateway answers it directly beyond
    /// `--direct-max-span`, as the embedded store's.
    async fn cheap_at_any_span(&self, query: &Query) -> Result<bool, BackendError> {
        self.all_days_fresh(query).await
    }

    /// From the answer segments where they serve the query
    /// (`segments.rs`), else rendered from [`ReadingStore::query`].
    fn query_answer(&self, query: &Query) -> AnswerStream {
        if self.segmented(query) {
            return self.segmented_answer(query);
        }
        airq_core::store::answer_from_readings(self, query)
    }

    fn query(&self, query: &Query) -> ReadingStream {
        if query.correction.is_some() {
            let read = self.query(&query.before_correction());
            return airq_core::store::corrected_readings(read, query);
        }
        let this = self.clone();
        let query = query.clone();
        spawned(|tx| async move {
            let run = match query.resolution {
                Resolution::Day => this.run_query(&query, &tx).await,
                _ => this.run_live_query(&query, &tx).await,
            };
            if let Err(e) = run {
                let _ = tx.send(Err(e)).await;
            }
        })
    }

    /// Reads only the latest shard items (all of them, one
    /// `BatchGetItem`), in sensor id order.
    fn latest(&self, latest: &LatestQuery) -> ReadingStream {
        let this = self.clone();
        let latest = latest.clone();
        spawned(|tx| async move {
            if let Err(e) = this.run_latest(&latest, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        })
    }

    /// The version item, then every shard when the reader is behind
    /// (`version.rs`).
    async fn latest_changes(&self, since: Option<u64>) -> Result<LatestChanges, BackendError> {
        self.run_latest_changes(since).await
    }

    /// `readings` is DynamoDB's `ItemCount` (which AWS refreshes about
    /// every six hours: approximate) less the summary item and the latest
    /// items (counted exactly on the summary item); the time range and
    /// countries come from the summary item, one strongly consistent read.
    async fn summary(&self) -> Result<StoreSummary, BackendError> {
        let describe = self.client.describe_table().table_name(&self.table).send();
        let (describe, item) = tokio::join!(describe, self.summary_item());
        let count = describe
            .map_err(|e| remote(format!("DynamoDB DescribeTable {}", self.table), e))?
            .table
            .and_then(|t| t.item_count)
            .unwrap_or(0)
            .max(0) as u64;
        let item = item?;
        if item.is_empty() {
            return Ok(StoreSummary {
                readings: count,
                ..StoreSummary::default()
            });
        }
        let number = |name: &str| -> Option<i64> {
            match item.get(name) {
                Some(AttributeValue::N(v)) => v.parse().ok(),
                _ => None,
            }
        };
        let mut countries: Vec<String> = match item.get("countries") {
            Some(AttributeValue::Ss(set)) => set
                .iter()
                .filter_map(|c| c.strip_prefix(COUNTRY_MEMBER_PREFIX))
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        countries.sort();
        let latest_items = number(LATEST_COUNT).unwrap_or(0).max(0) as u64;
        let segment_days = number(segments::SEGMENT_DAYS).unwrap_or(0).max(0) as u64;
        Ok(StoreSummary {
            // The summary item, the latest shard items and the segment
            // version items are no readings.
            readings: count
                .saturating_sub(1)
                .saturating_sub(latest_items)
                .saturating_sub(segment_days),
            first: number("first_ts").map(Timestamp),
            last: number("last_ts").map(Timestamp),
            countries,
        })
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| remote(format!("DynamoDB DescribeTable {}", self.table), e))?;
        Ok(())
    }
}

//! Bringing readings written before the US EPA AQI, the EAQI and the place
//! index existed up to the current item shape, on a live table.
//!
//! Items of the old shape lack `AQI_US_EPA`, `AQI_EAQI` and `cell_key`, so
//! queries refuse them (see `ReadingItem::into_reading`) and the `by_cell`
//! index does not hold them; and no sensor has a latest reading yet. The
//! migration scans the table once (in parallel segments) and
//!
//! - sets the missing attributes on each old item, computed from the stored
//!   text exactly as ingestion computes them (`Indices::of_text`,
//!   `place::cell_of_text`), with an `UpdateItem` conditioned on the item
//!   still lacking them and not packed: a reading rewritten meanwhile by a
//!   current writer (which stores all three, packed or not) is left as
//!   that writer wrote it, and no
//!   attribute but the missing ones is written, so a concurrent ingestion
//!   loses nothing;
//! - keeps the newest reading of each sensor seen, of either shape, and at
//!   the end writes the latest readings that are missing or behind it into
//!   the latest shard items, as `put_batch` does (only ever forwards in
//!   time);
//! - deletes the per-sensor latest items of the shape before the shards
//!   (partition `#latest`): copies of readings, which the shards now hold.
//!
//! Packed items (`readings/item.rs`) are current; with
//! [`MigrateOptions::pack_readings`] a complete run also marks the table so
//! that readings are written packed from then on.
//!
//! It is idempotent, so resuming is running it again: items already of the
//! current shape are only read, and latest items only move forwards. The
//! latest items are built from the whole scan, so a run must reach its end
//! for them to be complete; a run cut short leaves the items it upgraded
//! upgraded and the next run finishes the job.

use crate::readings::{
    cell_key, index_attribute, is_shard_partition, n, reading_of_item, s, DynamoReadingStore,
    LatestWrites, ReadingItem, Shard, BATCH_WRITE_MAX, READING,
};
use crate::remote;
use crate::retry::with_backoff;
use crate::schema::{CELL_KEY, LATEST_PARTITION, PARTITION_KEY, SORT_KEY};
use airq_core::{BackendError, Indices, Reading};
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use futures::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// How hard a migration works the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateOptions {
    /// Parallel scan segments (DynamoDB `TotalSegments`): each reads its
    /// own share of the table's partitions, so the writes that follow also
    /// spread over several day partitions.
    pub segments: u32,
    /// Item updates in flight per segment.
    pub concurrency: usize,
    /// Whether a complete run marks the table's readings as written
    /// packed from then on (`readings/item.rs`, `ITEMS_PACKED`): only once
    /// every binary of the deployment reads packed items.
    pub pack_readings: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            segments: 4,
            concurrency: 16,
            pack_readings: false,
        }
    }
}

/// How many problem items a report names (the count has them all).
const NAMED_PROBLEMS: usize = 10;

/// What a migration has done so far, and at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateProgress {
    /// Items the scan has read (readings, latest items, the summary item).
    pub scanned: u64,
    /// Reading items among them.
    pub readings: u64,
    /// Readings given their missing attributes by this run.
    pub upgraded: u64,
    /// Readings that already had them.
    pub current: u64,
    /// Readings rewritten by someone else between this run's read and its
    /// update (a current writer): left as they are.
    pub raced: u64,
    /// Reading items that could not be upgraded: they do not decode, or
    /// neither P1 nor P2 is a number (ingestion never stores such a
    /// reading). Queries that read them keep failing until they are
    /// deleted or repaired.
    pub problems: u64,
    /// The first [`NAMED_PROBLEMS`] of them: `day at_sensor: why`.
    pub problem_keys: Vec<String>,
    /// Distinct sensors seen.
    pub sensors: u64,
    /// The latest items written at the end (all zero until then); `kept`
    /// counts those found up to date, whether by the scan or by the write's
    /// condition.
    pub latest: LatestWrites,
    /// Per-sensor latest items of the shape before the latest shards,
    /// deleted at the end (after the shards hold their sensors).
    pub old_latest_deleted: u64,
    /// Whether the scan has reached the end of the table.
    pub scan_done: bool,
    /// Whether this run marked the table so that new readings are
    /// written packed from now on ([`MigrateOptions::pack_readings`]).
    pub packing: bool,
}

/// What the segments share.
struct Shared {
    progress: MigrateProgress,
    /// Each sensor's newest reading seen so far.
    newest: HashMap<u64, Reading>,
    /// The timestamp of each sensor's latest reading in the shards, so
    /// that a run after a complete one writes no latest reading again.
    latest: HashMap<u64, i64>,
    /// The keys of the per-sensor latest items of the old shape.
    old_latest: Vec<HashMap<String, AttributeValue>>,
}

/// One old item's missing attributes.
struct Upgrade {
    key: HashMap<String, AttributeValue>,
    set: Vec<(&'static str, AttributeValue)>,
}

/// What the scan made of one item.
enum Seen {
    /// The summary item.
    NotAReading,
    /// A latest shard: its sensors and their timestamps.
    LatestShard(Vec<(u64, i64)>),
    /// A per-sensor latest item of the old shape: its key.
    OldLatest(HashMap<String, AttributeValue>),
    Current(Reading),
    Old(Reading, Upgrade),
    Problem(String),
}

impl DynamoReadingStore {
    /// Upgrades every reading of the old shape and builds the latest items
    /// (see the module documentation), calling `progress` after every page
    /// of every segment and once at the end.
    pub async fn migrate(
        &self,
        options: &MigrateOptions,
        progress: &(dyn Fn(&MigrateProgress) + Send + Sync),
    ) -> Result<MigrateProgress, BackendError> {
        let segments = options.segments.max(1);
        let shared = Mutex::new(Shared {
            progress: MigrateProgress::default(),
            newest: HashMap::new(),
            latest: HashMap::new(),
            old_latest: Vec::new(),
        });
        futures::future::try_join_all(
            (0..segments)
                .map(|segment| self.scan_segment(segment, segments, options, &shared, progress)),
        )
        .await?;
        let Shared {
            progress: mut done,
            newest,
            latest,
            old_latest,
        } = shared.into_inner().unwrap_or_else(PoisonError::into_inner);
        done.scan_done = true;
        progress(&done);
        // A latest item at least as new as every reading of its sensor is
        // left alone (it can only have moved forwards since it was read):
        // only what is missing or behind is written, conditionally.
        let (behind, current): (Vec<Reading>, Vec<Reading>) = newest.into_values().partition(|r| {
            latest
                .get(&r.sensor_id)
                .is_none_or(|&ts| ts < r.timestamp.0)
        });
        done.latest = self.put_latest(behind).await?;
        done.latest.kept += current.len() as u64;
        progress(&done);
        done.old_latest_deleted = self.delete_old_latest(old_latest).await?;
        // The operator says every binary of the deployment reads packed
        // items by now.
        if options.pack_readings {
            self.mark_items_packed().await?;
            done.packing = true;
        }
        progress(&done);
        Ok(done)
    }

    async fn scan_segment(
        &self,
        segment: u32,
        segments: u32,
        options: &MigrateOptions,
        shared: &Mutex<Shared>,
        progress: &(dyn Fn(&MigrateProgress) + Send + Sync),
    ) -> Result<(), BackendError> {
        let mut start_key = None;
        loop {
            let out = with_backoff(&self.retry, || {
                self.client
                    .scan()
                    .table_name(&self.table)
                    .segment(segment as i32)
                    .total_segments(segments as i32)
                    .set_exclusive_start_key(start_key.clone())
                    .send()
            })
            .await
            .map_err(|e| {
                remote(
                    format!("DynamoDB Scan on {} (segment {segment})", self.table),
                    e,
                )
            })?;
            let items = out.items.unwrap_or_default();
            let scanned = items.len() as u64;
            let mut upgrades = Vec::new();
            let mut readings = Vec::new();
            let mut current = 0;
            let mut problems = Vec::new();
            let mut latest = Vec::new();
            let mut old_latest = Vec::new();
            for item in items {
                match self.inspect(item) {
                    Seen::NotAReading => {}
                    Seen::LatestShard(sensors) => latest.extend(sensors),
                    Seen::OldLatest(key) => old_latest.push(key),
                    Seen::Current(r) => {
                        current += 1;
                        readings.push(r);
                    }
                    Seen::Old(r, u) => {
                        readings.push(r);
                        upgrades.push(u);
                    }
                    Seen::Problem(why) => problems.push(why),
                }
            }
            let outcomes: Vec<bool> = futures::stream::iter(upgrades)
                .map(|u| self.upgrade(u))
                .buffer_unordered(options.concurrency.max(1))
                .try_collect()
                .await?;
            let snapshot = {
                let mut sh = shared.lock().unwrap_or_else(PoisonError::into_inner);
                let p = &mut sh.progress;
                p.scanned += scanned;
                p.readings += readings.len() as u64 + problems.len() as u64;
                p.current += current;
                p.upgraded += outcomes.iter().filter(|&&won| won).count() as u64;
                p.raced += outcomes.iter().filter(|&&won| !won).count() as u64;
                p.problems += problems.len() as u64;
                let room = NAMED_PROBLEMS.saturating_sub(p.problem_keys.len());
                p.problem_keys.extend(problems.into_iter().take(room));
                sh.latest.extend(latest);
                sh.old_latest.extend(old_latest);
                for r in readings {
                    match sh.newest.get(&r.sensor_id) {
                        Some(have) if have.timestamp >= r.timestamp => {}
                        _ => {
                            sh.newest.insert(r.sensor_id, r);
                        }
                    }
                }
                sh.progress.sensors = sh.newest.len() as u64;
                sh.progress.clone()
            };
            progress(&snapshot);
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start_key = Some(k),
                None => return Ok(()),
            }
        }
    }

    /// Classifies one scanned item.
    fn inspect(&self, item: HashMap<String, AttributeValue>) -> Seen {
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => v.clone(),
            _ => String::new(),
        };
        let (day, at_sensor) = (text(PARTITION_KEY), text(SORT_KEY));
        if day == LATEST_PARTITION {
            return Seen::OldLatest(HashMap::from([
                (PARTITION_KEY.to_owned(), s(&day)),
                (SORT_KEY.to_owned(), s(&at_sensor)),
            ]));
        }
        if is_shard_partition(&day) {
            return match Shard::decode(&self.table, &item) {
                Ok((_, shard)) => Seen::LatestShard(
                    shard
                        .readings
                        .values()
                        .map(|r| (r.sensor_id, r.timestamp.0))
                        .collect(),
                ),
                Err(e) => Seen::Problem(e.to_string()),
            };
        }
        // `#summary`: no date, no reading.
        if day.starts_with('#') {
            return Seen::NotAReading;
        }
        let key = HashMap::from([
            (PARTITION_KEY.to_owned(), s(&day)),
            (SORT_KEY.to_owned(), s(&at_sensor)),
        ]);
        // A packed item is of the current shape (`readings/item.rs`).
        if item.contains_key(READING) {
            return match reading_of_item(&self.table, item) {
                Ok(r) => Seen::Current(r),
                Err(e) => Seen::Problem(e.to_string()),
            };
        }
        let decoded = match ReadingItem::decode(item) {
            Ok(i) => i,
            Err(e) => return Seen::Problem(format!("{day} {at_sensor}: does not decode: {e}")),
        };
        let mut set = Vec::new();
        if decoded.cell_key.is_empty() {
            set.push((
                CELL_KEY,
                s(cell_key(&day, &decoded.loc_lat, &decoded.loc_long)),
            ));
        }
        // Each index the item lacks (it was written before that index was
        // computed) is computed as ingestion does.
        let computed = match decoded.indices.contains(&None) {
            false => None,
            true => match Indices::of_text(decoded.p1.as_deref(), decoded.p2.as_deref()) {
                Some(i) => Some(i),
                None => {
                    return Seen::Problem(format!(
                        "{day} {at_sensor}: neither P1 nor P2 is a number, so it has no index"
                    ))
                }
            },
        };
        let indices =
            Indices::from_fn(
                |index| match (decoded.indices[index.position()], computed) {
                    (Some(stored), _) => stored,
                    (None, computed) => {
                        let value = computed.map_or(index.min(), |c| c.get(index));
                        set.push((index_attribute(index), n(value)));
                        value
                    }
                },
            );
        let reading = match decoded.into_reading_with(indices) {
            Ok(r) => r,
            Err(e) => return Seen::Problem(format!("{day} {at_sensor}: {e}")),
        };
        if set.is_empty() {
            Seen::Current(reading)
        } else {
            Seen::Old(reading, Upgrade { key, set })
        }
    }

    /// Deletes the per-sensor latest items of the old shape (25 a call, a
    /// few calls in flight) and takes them off the summary item's count of
    /// items that are no readings. Returns how many were deleted.
    async fn delete_old_latest(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<u64, BackendError> {
        let mut requests = Vec::with_capacity(keys.len());
        for key in keys {
            let delete = DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .map_err(|e| BackendError::Corrupt(format!("a latest item's key: {e}")))?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        let deleted = requests.len() as u64;
        if deleted == 0 {
            return Ok(0);
        }
        futures::stream::iter(requests.chunks(BATCH_WRITE_MAX).map(<[_]>::to_vec))
            .map(|chunk| self.write_chunk(chunk))
            .buffer_unordered(4)
            .try_collect::<()>()
            .await?;
        self.count_latest_items(-i64::try_from(deleted).unwrap_or(i64::MAX))
            .await?;
        Ok(deleted)
    }

    /// Sets an old item's missing attributes, if it still lacks them and
    /// still exists. Returns whether this call wrote them.
    async fn upgrade(&self, u: Upgrade) -> Result<bool, BackendError> {
        let mut names = HashMap::from([
            ("#sk".to_owned(), SORT_KEY.to_owned()),
            ("#packed".to_owned(), READING.to_owned()),
        ]);
        let mut values = HashMap::new();
        let mut sets = Vec::new();
        let mut missing = Vec::new();
        for (i, (attr, value)) in u.set.into_iter().enumerate() {
            names.insert(format!("#a{i}"), attr.to_owned());
            values.insert(format!(":v{i}"), value);
            sets.push(format!("#a{i} = :v{i}"));
            missing.push(format!("attribute_not_exists(#a{i})"));
        }
        let update = format!("SET {}", sets.join(", "));
        // Never create an item (UpdateItem would), never overwrite what a
        // current writer has set meanwhile, and leave an item a current
        // writer has rewritten packed alone.
        let condition = format!(
            "attribute_exists(#sk) AND attribute_not_exists(#packed) AND ({})",
            missing.join(" OR ")
        );
        let result = with_backoff(&self.retry, || {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(u.key.clone()))
                .update_expression(&update)
                .condition_expression(&condition)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if crate::condition_failed(&e, |se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(remote(
                format!("DynamoDB UpdateItem (migration) on {}", self.table),
                e,
            )),
        }
    }
}

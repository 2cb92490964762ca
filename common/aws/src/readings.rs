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
//! - each sensor's latest reading, a copy kept by `put_batch`, in the
//!   partition `day = #latest` (sort key: the sensor id, 20 digits), with
//!   `country_at = COUNTRY#SENSOR` and `cell_key = #latest#CELL`, so that
//!   the same two indexes serve `latest` by country and by place. `#latest`
//!   is no date, so no date query reads these items.
//!
//! A date-bounded query is one `Query` per day of its range (per day and
//! cell for a small place), each bounded by the range's seconds on its
//! first and last day and paginated to the end; never a `Scan`. Days are
//! fetched a few at a time and emitted in day order; the cells of a day are
//! merged in key order. What DynamoDB cannot decide (sensor types compared
//! case-insensitively, the exact distance or box) is checked on the decoded
//! reading with the reference semantics, [`Query::matches`], so the answer
//! is exactly the reference's.

use crate::retry::{with_backoff, RetryPolicy};
use crate::schema::{
    BY_CELL_INDEX, BY_COUNTRY_INDEX, CELL_KEY, COUNTRY_SORT_KEY, LATEST_PARTITION, PARTITION_KEY,
    SORT_KEY,
};
use crate::{error_code, is_throttling, remote};
use airq_core::error::BackendError;
use airq_core::place::{cell_of_text, Place};
use airq_core::query::{LatestQuery, Query};
use airq_core::reading::{Reading, Timestamp};
use airq_core::store::{ReadingStore, ReadingStream, StoreSummary, Written};
use airq_core::{Index, Indices};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, PutRequest, ReturnValue, WriteRequest,
};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

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
/// The summary item's count of latest items (one per sensor), so that the
/// readings count (the table's item count) can leave them out.
const LATEST_COUNT: &str = "latest_items";

/// The UTC day (`YYYY-MM-DD`) of a timestamp and its second in that day.
pub fn day_of(ts: Timestamp) -> Result<(String, i64), BackendError> {
    Ok((day_name(ts.0.div_euclid(DAY))?, ts.0.rem_euclid(DAY)))
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
fn day_name(day: i64) -> Result<String, BackendError> {
    day.checked_mul(DAY)
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|d| d.format("%Y-%m-%d").to_string())
        .ok_or_else(|| BackendError::Corrupt(format!("day {day} is out of range")))
}

/// The `cell_key` of a reading of `day` (or of a latest item, with
/// `day = #latest`) at the stored coordinates.
pub(crate) fn cell_key(day: &str, lat: &str, lon: &str) -> String {
    cell_key_of(day, cell_of_text(lat, lon))
}

fn cell_key_of(day: &str, cell: u32) -> String {
    format!("{day}#{cell}")
}

/// The number attribute holding each index's value: the one place this
/// backend names an index. (`AQI` holds the DAQI, named before the other
/// indices existed; renaming it would take a migration.)
pub(crate) fn index_attribute(index: Index) -> &'static str {
    match index {
        Index::Daqi => "AQI",
        Index::UsEpa => "AQI_US_EPA",
        Index::Eaqi => "AQI_EAQI",
    }
}

/// A reading as a DynamoDB item: the attribute names of the embedded
/// schema and the CSV, measurements and coordinates as the exact text sent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ReadingItem {
    pub(crate) day: String,
    pub(crate) at_sensor: String,
    pub(crate) country_at: String,
    /// Absent on items written before the `by_cell` index existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) cell_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<u64>,
    /// Unix seconds.
    pub(crate) timestamp: i64,
    pub(crate) sensor_id: u64,
    pub(crate) sensor_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) loc_id: Option<u64>,
    pub(crate) loc_country: String,
    pub(crate) loc_lat: String,
    pub(crate) loc_long: String,
    pub(crate) loc_alt: String,
    #[serde(rename = "P1", default, skip_serializing_if = "Option::is_none")]
    pub(crate) p1: Option<String>,
    #[serde(rename = "P2", default, skip_serializing_if = "Option::is_none")]
    pub(crate) p2: Option<String>,
    /// Each index's value, in [`Index::ALL`]'s order, stored as the number
    /// attribute [`index_attribute`] names; `None` where an item written
    /// before that index was computed lacks it. The bands (the CSV's
    /// `Range`) follow from the values, so they are not stored. Encoded by
    /// [`ReadingItem::encode`] and [`ReadingItem::decode`], not serde.
    #[serde(skip)]
    pub(crate) indices: [Option<u16>; Index::COUNT],
    /// How many measurements a daily mean of the archive backfill averages;
    /// absent on a reading as the feed sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) samples: Option<u32>,
}

impl ReadingItem {
    /// The item of a reading in its day partition.
    fn of(r: &Reading) -> Result<ReadingItem, BackendError> {
        let (day, second) = day_of(r.timestamp)?;
        Ok(Self::keyed(
            r,
            cell_key(&day, &r.loc_lat, &r.loc_long),
            format!("{second:05}#{:020}", r.sensor_id),
            format!("{}#{second:05}#{:020}", r.loc_country, r.sensor_id),
            day,
        ))
    }

    /// The sensor's latest item, holding `r`.
    fn latest(r: &Reading) -> ReadingItem {
        Self::keyed(
            r,
            cell_key(LATEST_PARTITION, &r.loc_lat, &r.loc_long),
            format!("{:020}", r.sensor_id),
            format!("{}#{:020}", r.loc_country, r.sensor_id),
            LATEST_PARTITION.to_owned(),
        )
    }

    fn keyed(
        r: &Reading,
        cell_key: String,
        at_sensor: String,
        country_at: String,
        day: String,
    ) -> ReadingItem {
        ReadingItem {
            day,
            at_sensor,
            country_at,
            cell_key,
            id: r.id,
            timestamp: r.timestamp.0,
            sensor_id: r.sensor_id,
            sensor_type: r.sensor_type.clone(),
            loc_id: r.loc_id,
            loc_country: r.loc_country.clone(),
            loc_lat: r.loc_lat.clone(),
            loc_long: r.loc_long.clone(),
            loc_alt: r.loc_alt.clone(),
            p1: r.p1.clone(),
            p2: r.p2.clone(),
            indices: r.indices.values().map(Some),
            samples: r.samples,
        }
    }

    /// The item's attributes.
    pub(crate) fn encode(&self) -> Result<HashMap<String, AttributeValue>, BackendError> {
        let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(self)
            .map_err(|e| BackendError::Corrupt(format!("encoding a reading: {e}")))?;
        for (index, value) in Index::ALL.into_iter().zip(self.indices) {
            if let Some(value) = value {
                item.insert(index_attribute(index).to_owned(), n(value));
            }
        }
        Ok(item)
    }

    /// An item read back; the error says what does not decode.
    pub(crate) fn decode(mut item: HashMap<String, AttributeValue>) -> Result<ReadingItem, String> {
        let mut indices = [None; Index::COUNT];
        for index in Index::ALL {
            let name = index_attribute(index);
            if let Some(value) = item.remove(name) {
                let value = match &value {
                    AttributeValue::N(text) => text.parse::<u16>().ok(),
                    _ => None,
                };
                indices[index.position()] =
                    Some(value.ok_or_else(|| format!("{name} is not an index value"))?);
            }
        }
        let mut decoded: ReadingItem = serde_dynamo::from_item(item).map_err(|e| e.to_string())?;
        decoded.indices = indices;
        Ok(decoded)
    }

    /// The reading, with the indices as stored. An item written before an
    /// index was stored is an error naming the migration: computing it
    /// here would answer the row, but such an item is also missing from
    /// the `by_cell` index and fails the new index's filters, so place and
    /// index queries would quietly leave it out. A clear failure until
    /// `airq-deploy migrate` has run is better than answers that look
    /// right and are not.
    pub(crate) fn into_reading(self, table: &str) -> Result<Reading, BackendError> {
        let Ok(indices) = Indices::try_from_fn(|index| self.indices[index.position()].ok_or(()))
        else {
            return Err(not_migrated(table, &self.day, &self.at_sensor));
        };
        Ok(self.into_reading_with(indices))
    }

    pub(crate) fn into_reading_with(self, indices: Indices) -> Reading {
        Reading {
            id: self.id,
            timestamp: Timestamp(self.timestamp),
            sensor_id: self.sensor_id,
            sensor_type: self.sensor_type,
            loc_id: self.loc_id,
            loc_country: self.loc_country,
            loc_lat: self.loc_lat,
            loc_long: self.loc_long,
            loc_alt: self.loc_alt,
            p1: self.p1,
            p2: self.p2,
            indices,
            samples: self.samples,
        }
    }
}

/// The error for an item of the shape before the three indices.
pub(crate) fn not_migrated(table: &str, day: &str, at_sensor: &str) -> BackendError {
    BackendError::Schema(format!(
        "DynamoDB table {table} holds readings written before airq stored the US EPA AQI \
         and the EAQI (the first found: day {day}, at_sensor {at_sensor}); run \
         `airq-deploy migrate` (with this deployment's --aws-prefix and table flags) to \
         fill them in and build the place index and the latest readings"
    ))
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Readings on DynamoDB. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DynamoReadingStore {
    pub(crate) client: aws_sdk_dynamodb::Client,
    pub(crate) table: String,
    pub(crate) retry: RetryPolicy,
}

/// Which key range a query reads.
#[derive(Debug, Clone, PartialEq)]
enum Route {
    /// The whole day (or the whole latest partition).
    All,
    /// One country's range of the `by_country` index.
    Country(String),
    /// The place's grid cells, on the `by_cell` index.
    Cells(Vec<u32>),
}

impl Route {
    /// The cheapest read: a small place's cells, else the country, else
    /// everything (a large place is then filtered after reading).
    fn of(place: Option<&Place>, country: Option<&str>) -> Route {
        if let Some(cells) = place.and_then(Place::cells).filter(|c| !c.is_empty()) {
            return Route::Cells(cells);
        }
        match country {
            Some(c) => Route::Country(c.to_owned()),
            None => Route::All,
        }
    }
}

/// One `Query`, to be paginated to the end.
#[derive(Debug, Clone, Default)]
struct Fetch {
    /// What it reads, for error messages (`2018-06-03`, `latest cell 7`).
    what: String,
    index: Option<&'static str>,
    key_condition: &'static str,
    filter: Option<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    limit: Option<i32>,
}

impl Fetch {
    fn name(mut self, placeholder: &str, name: &str) -> Self {
        self.names.insert(placeholder.to_owned(), name.to_owned());
        self
    }

    fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_owned(), value);
        self
    }

    /// Filters on the index range `[lo, hi]` of `index`, and lets through
    /// items that lack any index, so that decoding them fails loudly
    /// instead of the filter dropping them quietly (see
    /// [`ReadingItem::into_reading`]).
    fn index_filter(self, index: Index, (lo, hi): (u16, u16)) -> Self {
        let mut this = self
            .name("#idx", index_attribute(index))
            .value(":lo", n(lo))
            .value(":hi", n(hi));
        let mut missing = String::new();
        for other in Index::ALL {
            let placeholder = format!("#i{}", other.position());
            missing.push_str(&format!(" OR attribute_not_exists({placeholder})"));
            this = this.name(&placeholder, index_attribute(other));
        }
        this.and_filter(format!("(#idx BETWEEN :lo AND :hi{missing})"))
    }

    /// Keeps only items of exactly `country` (a key range or a cell also
    /// admits others).
    fn country_filter(self, country: &str) -> Self {
        self.name("#country", "loc_country")
            .value(":country", s(country))
            .and_filter("#country = :country".to_owned())
    }

    fn and_filter(mut self, clause: String) -> Self {
        self.filter = Some(match self.filter.take() {
            Some(f) => format!("{f} AND {clause}"),
            None => clause,
        });
        self
    }
}

/// A source of pages of readings in key order.
type Pages = mpsc::Receiver<Result<Vec<Reading>, BackendError>>;

/// The merge order of readings (by time, then sensor).
fn time_then_sensor(r: &Reading) -> (i64, u64) {
    (r.timestamp.0, r.sensor_id)
}

/// The merge order of latest items (by sensor).
fn sensor_only(r: &Reading) -> (i64, u64) {
    (0, r.sensor_id)
}

/// How a batch's latest readings were written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatestWrites {
    /// Sensors seen for the first time: a new latest item.
    pub created: u64,
    /// Sensors whose latest item was older (or the same reading): replaced.
    pub replaced: u64,
    /// Sensors whose latest item was newer already: left alone.
    pub kept: u64,
}

enum LatestWrite {
    Created,
    Replaced,
    Kept,
}

impl DynamoReadingStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoReadingStore {
            client,
            table: table.into(),
            retry: RetryPolicy::default(),
        }
    }

    /// Replaces the retry policy of batch writes (tests use short waits).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes one reading with one `PutItem` call, as the first version of
    /// this system did for every reading. Only for comparison (see
    /// BENCHMARKS.md): [`ReadingStore::put_batch`] is the way to write.
    /// Neither the summary item nor the sensor's latest item is updated.
    pub async fn put_one(&self, reading: &Reading) -> Result<(), BackendError> {
        let item = ReadingItem::of(reading)?.encode()?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| remote(format!("DynamoDB PutItem on {}", self.table), e))?;
        Ok(())
    }

    /// The stored reading under each of `readings`' keys, by `(timestamp,
    /// sensor id)`: `BatchGetItem` calls of at most 100 keys, a few in
    /// flight, unprocessed keys and throttling retried with backoff. An
    /// item that does not decode counts as absent (it is overwritten).
    async fn stored_of(
        &self,
        readings: &[Reading],
    ) -> Result<HashMap<(i64, u64), Reading>, BackendError> {
        let mut keys = Vec::with_capacity(readings.len());
        for r in readings {
            let item = ReadingItem::of(r)?;
            keys.push(HashMap::from([
                (PARTITION_KEY.to_owned(), s(item.day)),
                (SORT_KEY.to_owned(), s(item.at_sensor)),
            ]));
        }
        let pages: Vec<Vec<HashMap<String, AttributeValue>>> =
            futures::stream::iter(keys.chunks(BATCH_GET_MAX).map(<[_]>::to_vec))
                .map(|chunk| self.get_chunk(chunk))
                .buffer_unordered(WRITES_IN_FLIGHT)
                .try_collect()
                .await?;
        let table = &self.table;
        Ok(pages
            .into_iter()
            .flatten()
            .filter_map(|item| ReadingItem::decode(item).ok()?.into_reading(table).ok())
            .map(|r| ((r.timestamp.0, r.sensor_id), r))
            .collect())
    }

    /// Reads one `BatchGetItem` of at most 100 keys, as [`Self::write_chunk`]
    /// writes: retrying what DynamoDB left unprocessed.
    async fn get_chunk(
        &self,
        mut pending: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, BackendError> {
        let context = || format!("DynamoDB BatchGetItem on {}", self.table);
        let mut items = Vec::with_capacity(pending.len());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let keys = KeysAndAttributes::builder()
                .set_keys(Some(pending.clone()))
                .build()
                .map_err(|e| BackendError::Corrupt(format!("{}: {e}", context())))?;
            let why = match self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
            {
                Ok(out) => {
                    if let Some(mut got) = out.responses {
                        items.extend(got.remove(&self.table).unwrap_or_default());
                    }
                    pending = out
                        .unprocessed_keys
                        .and_then(|mut m| m.remove(&self.table))
                        .map(|k| k.keys)
                        .unwrap_or_default();
                    if pending.is_empty() {
                        return Ok(items);
                    }
                    format!("{} keys unprocessed", pending.len())
                }
                Err(e)
                    if is_throttling(error_code(&e))
                        || e.as_service_error().is_some_and(|se| {
                            se.is_provisioned_throughput_exceeded_exception()
                                || se.is_request_limit_exceeded()
                                || se.is_internal_server_error()
                        }) =>
                {
                    format!("throttled ({})", error_code(&e).unwrap_or("?"))
                }
                Err(e) => return Err(remote(context(), e)),
            };
            if attempt >= self.retry.max_attempts {
                return Err(BackendError::Remote {
                    context: context(),
                    message: format!("gave up after {attempt} attempts: {why}"),
                });
            }
            let wait = self.retry.delay(attempt);
            tracing::debug!(table = %self.table, attempt, ?wait, %why, "retrying a batch read");
            tokio::time::sleep(wait).await;
        }
    }

    /// Writes one batch of at most 25 items, retrying unprocessed items and
    /// throttling with backoff until every item is written or the policy's
    /// attempts run out.
    async fn write_chunk(&self, mut pending: Vec<WriteRequest>) -> Result<(), BackendError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let why = match self
                .client
                .batch_write_item()
                .request_items(&self.table, pending.clone())
                .send()
                .await
            {
                Ok(out) => {
                    pending = out
                        .unprocessed_items
                        .and_then(|mut m| m.remove(&self.table))
                        .unwrap_or_default();
                    if pending.is_empty() {
                        return Ok(());
                    }
                    format!("{} items unprocessed", pending.len())
                }
                Err(e) if throttled(&e) => {
                    format!("throttled ({})", error_code(&e).unwrap_or("?"))
                }
                Err(e) => {
                    return Err(remote(
                        format!("DynamoDB BatchWriteItem on {}", self.table),
                        e,
                    ))
                }
            };
            if attempt >= self.retry.max_attempts {
                return Err(BackendError::Remote {
                    context: format!("DynamoDB BatchWriteItem on {}", self.table),
                    message: format!("gave up after {attempt} attempts: {why}"),
                });
            }
            let wait = self.retry.delay(attempt);
            tracing::debug!(table = %self.table, attempt, ?wait, %why, "retrying a batch write");
            tokio::time::sleep(wait).await;
        }
    }

    fn summary_key() -> HashMap<String, AttributeValue> {
        HashMap::from([
            (PARTITION_KEY.to_owned(), s(SUMMARY_DAY)),
            (SORT_KEY.to_owned(), s(SUMMARY_SORT)),
        ])
    }

    /// Folds a batch's time range and countries into the summary item.
    async fn update_summary(&self, readings: &[Reading]) -> Result<(), BackendError> {
        let (Some(first), Some(last)) = (
            readings.iter().map(|r| r.timestamp.0).min(),
            readings.iter().map(|r| r.timestamp.0).max(),
        ) else {
            return Ok(());
        };
        let countries: BTreeSet<String> = readings
            .iter()
            .map(|r| format!("{COUNTRY_MEMBER_PREFIX}{}", r.loc_country))
            .collect();
        let add = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::summary_key()))
            .update_expression("ADD #c :c")
            .expression_attribute_names("#c", "countries")
            .expression_attribute_values(":c", AttributeValue::Ss(countries.into_iter().collect()))
            .send();
        // Conditional: only ever moves the bound outwards, so concurrent
        // writers cannot undo each other.
        let bound = |attr: &'static str, op: &'static str, t: i64| {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::summary_key()))
                .update_expression("SET #t = :t")
                .condition_expression(format!("attribute_not_exists(#t) OR #t {op} :t"))
                .expression_attribute_names("#t", attr)
                .expression_attribute_values(":t", n(t))
                .send()
        };
        let (a, f, l) = tokio::join!(
            add,
            bound("first_ts", ">", first),
            bound("last_ts", "<", last)
        );
        a.map_err(|e| {
            remote(
                format!("DynamoDB UpdateItem (summary) on {}", self.table),
                e,
            )
        })?;
        for r in [f, l] {
            match r {
                Ok(_) => {}
                Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => {}
                Err(e) => {
                    return Err(remote(
                        format!("DynamoDB UpdateItem (summary) on {}", self.table),
                        e,
                    ))
                }
            }
        }
        Ok(())
    }

    /// Brings the latest item of every sensor in `readings` up to the
    /// newest of its readings there: one conditional `PutItem` per sensor
    /// (a write only wins over an older timestamp, or the same reading
    /// written again, so concurrent writers and late batches cannot move a
    /// sensor back in time), then one count of the new items on the
    /// summary item.
    pub(crate) async fn put_latest(
        &self,
        readings: impl IntoIterator<Item = Reading>,
    ) -> Result<LatestWrites, BackendError> {
        let mut newest: BTreeMap<u64, Reading> = BTreeMap::new();
        for r in readings {
            match newest.get(&r.sensor_id) {
                Some(have) if have.timestamp > r.timestamp => {}
                _ => {
                    newest.insert(r.sensor_id, r);
                }
            }
        }
        let mut items = Vec::with_capacity(newest.len());
        for r in newest.values() {
            let item = ReadingItem::latest(r).encode()?;
            items.push((r.timestamp.0, item));
        }
        let writes: Vec<LatestWrite> = futures::stream::iter(items)
            .map(|(ts, item)| self.put_latest_one(ts, item))
            .buffer_unordered(LATEST_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut out = LatestWrites::default();
        for w in writes {
            match w {
                LatestWrite::Created => out.created += 1,
                LatestWrite::Replaced => out.replaced += 1,
                LatestWrite::Kept => out.kept += 1,
            }
        }
        if out.created > 0 {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::summary_key()))
                .update_expression("ADD #n :n")
                .expression_attribute_names("#n", LATEST_COUNT)
                .expression_attribute_values(":n", n(out.created))
                .send()
                .await
                .map_err(|e| {
                    remote(
                        format!("DynamoDB UpdateItem (summary) on {}", self.table),
                        e,
                    )
                })?;
        }
        Ok(out)
    }

    /// One sensor's latest item, written if it is not older than what is
    /// there; throttling is retried with backoff as batch writes are.
    async fn put_latest_one(
        &self,
        timestamp: i64,
        item: HashMap<String, AttributeValue>,
    ) -> Result<LatestWrite, BackendError> {
        let result = with_backoff(&self.retry, || {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(#ts) OR #ts <= :ts")
                .expression_attribute_names("#ts", "timestamp")
                .expression_attribute_values(":ts", n(timestamp))
                // The old item tells a new sensor from a replaced one, for
                // the count of latest items; returning it costs no
                // capacity.
                .return_values(ReturnValue::AllOld)
                .send()
        })
        .await;
        match result {
            Ok(out) => Ok(if out.attributes.is_some_and(|a| !a.is_empty()) {
                LatestWrite::Replaced
            } else {
                LatestWrite::Created
            }),
            Err(e)
                if error_code(&e) == Some("ConditionalCheckFailedException")
                    || e.as_service_error()
                        .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(LatestWrite::Kept)
            }
            Err(e) => Err(remote(
                format!("DynamoDB PutItem (latest) on {}", self.table),
                e,
            )),
        }
    }

    /// Streams the readings of `query` into `tx`, day by day, with a few
    /// days being fetched at once.
    async fn run_query(
        &self,
        query: &Query,
        tx: &mpsc::Sender<Result<Reading, BackendError>>,
    ) -> Result<(), BackendError> {
        let Some(aqi) = query.aqi_bounds() else {
            return Ok(());
        };
        if query.start > query.end {
            return Ok(());
        }
        let route = Route::of(query.place.as_ref(), query.country.as_deref());
        let in_flight = match &route {
            Route::Cells(cells) => (CELL_FETCHES_IN_FLIGHT / cells.len()).clamp(1, DAYS_IN_FLIGHT),
            _ => DAYS_IN_FLIGHT,
        };
        let (first, last) = (query.start.0.div_euclid(DAY), query.end.0.div_euclid(DAY));
        let mut next = first;
        let mut fetching = VecDeque::new();
        loop {
            while fetching.len() < in_flight && next <= last {
                let lo = if next == first {
                    query.start.0.rem_euclid(DAY)
                } else {
                    0
                };
                let hi = if next == last {
                    query.end.0.rem_euclid(DAY)
                } else {
                    DAY - 1
                };
                let day = day_name(next)?;
                fetching.push_back(self.spawn_day(query, &route, aqi, &day, (lo, hi)));
                next += 1;
            }
            let Some(mut pages) = fetching.pop_front() else {
                return Ok(());
            };
            while let Some(page) = pages.recv().await {
                for r in page? {
                    // The reference decides: what DynamoDB filtered is
                    // checked again, and what it cannot (sensor types,
                    // the exact place) is checked only here.
                    if !query.matches(&r) {
                        continue;
                    }
                    if tx.send(Ok(r)).await.is_err() {
                        // The consumer went away: dropping the receivers
                        // stops the fetches.
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Fetches one day's candidate readings, in key order.
    fn spawn_day(
        &self,
        query: &Query,
        route: &Route,
        aqi: (u16, u16),
        day: &str,
        (lo, hi): (i64, i64),
    ) -> Pages {
        let base = Fetch {
            what: day.to_owned(),
            ..Fetch::default()
        };
        match route {
            Route::All => self.spawn_fetch(
                Fetch {
                    key_condition: "#day = :day AND #sk BETWEEN :from AND :to",
                    ..base
                }
                .name("#day", PARTITION_KEY)
                .name("#sk", SORT_KEY)
                .value(":day", s(day))
                .value(":from", s(format!("{lo:05}#")))
                .value(":to", s(format!("{hi:05}#~")))
                .index_filter(query.index, aqi),
            ),
            Route::Country(country) => self.spawn_fetch(
                Fetch {
                    index: Some(BY_COUNTRY_INDEX),
                    key_condition: "#day = :day AND #sk BETWEEN :from AND :to",
                    ..base
                }
                .name("#day", PARTITION_KEY)
                .name("#sk", COUNTRY_SORT_KEY)
                .value(":day", s(day))
                .value(":from", s(format!("{country}#{lo:05}#")))
                .value(":to", s(format!("{country}#{hi:05}#~")))
                .index_filter(query.index, aqi)
                // The key range alone would also admit a country that
                // starts with this one followed by '#'.
                .country_filter(country),
            ),
            Route::Cells(cells) => {
                let fetches = cells
                    .iter()
                    .map(|&cell| {
                        let f = Fetch {
                            what: format!("{day} cell {cell}"),
                            index: Some(BY_CELL_INDEX),
                            key_condition: "#ck = :ck AND #sk BETWEEN :from AND :to",
                            limit: Some(CELL_PAGE_ITEMS),
                            ..Fetch::default()
                        }
                        .name("#ck", CELL_KEY)
                        .name("#sk", SORT_KEY)
                        .value(":ck", s(cell_key_of(day, cell)))
                        .value(":from", s(format!("{lo:05}#")))
                        .value(":to", s(format!("{hi:05}#~")))
                        .index_filter(query.index, aqi);
                        match &query.country {
                            Some(c) => f.country_filter(c),
                            None => f,
                        }
                    })
                    .collect();
                self.spawn_merge(fetches, time_then_sensor)
            }
        }
    }

    /// Fetches one `Query` page by page into a small channel (so a fetch
    /// that runs ahead holds at most a few pages).
    fn spawn_fetch(&self, fetch: Fetch) -> Pages {
        let (tx, rx) = mpsc::channel(PAGES_AHEAD);
        let this = self.clone();
        tokio::spawn(async move {
            let mut start_key = None;
            loop {
                match this.query_page(&fetch, start_key.take()).await {
                    Ok((page, next)) => {
                        if tx.send(Ok(page)).await.is_err() {
                            return;
                        }
                        match next {
                            Some(k) => start_key = Some(k),
                            None => return,
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        rx
    }

    /// Fetches several `Query`s, each in key order, and merges them into
    /// one sequence in `key` order (no reading is in two of them: a reading
    /// has one cell).
    fn spawn_merge(&self, fetches: Vec<Fetch>, key: fn(&Reading) -> (i64, u64)) -> Pages {
        let sources: Vec<Pages> = fetches.into_iter().map(|f| self.spawn_fetch(f)).collect();
        let (tx, rx) = mpsc::channel(PAGES_AHEAD);
        tokio::spawn(async move {
            if let Err(e) = merge(sources, key, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }

    /// One `Query` page.
    async fn query_page(
        &self,
        fetch: &Fetch,
        start_key: Option<HashMap<String, AttributeValue>>,
    ) -> Result<(Vec<Reading>, Option<HashMap<String, AttributeValue>>), BackendError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(fetch.index.map(str::to_owned))
            .key_condition_expression(fetch.key_condition)
            .set_filter_expression(fetch.filter.clone())
            .set_expression_attribute_names(Some(fetch.names.clone()))
            .set_expression_attribute_values(Some(fetch.values.clone()))
            .set_limit(fetch.limit)
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(|e| {
                remote(
                    format!("DynamoDB Query on {} ({})", self.table, fetch.what),
                    e,
                )
            })?;
        let page = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                ReadingItem::decode(item)
                    .map_err(|e| {
                        BackendError::Corrupt(format!(
                            "a reading in {} ({}): {e}",
                            self.table, fetch.what
                        ))
                    })
                    .and_then(|i| i.into_reading(&self.table))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = out.last_evaluated_key.filter(|k| !k.is_empty());
        Ok((page, next))
    }

    /// Streams each sensor's latest reading that `latest` matches into
    /// `tx`, in sensor id order.
    async fn run_latest(
        &self,
        latest: &LatestQuery,
        tx: &mpsc::Sender<Result<Reading, BackendError>>,
    ) -> Result<(), BackendError> {
        let base = Fetch {
            what: "latest".to_owned(),
            ..Fetch::default()
        };
        let mut pages = match Route::of(latest.place.as_ref(), latest.country.as_deref()) {
            Route::All => self.spawn_fetch(
                Fetch {
                    key_condition: "#day = :day",
                    ..base
                }
                .name("#day", PARTITION_KEY)
                .value(":day", s(LATEST_PARTITION)),
            ),
            Route::Country(country) => self.spawn_fetch(
                Fetch {
                    index: Some(BY_COUNTRY_INDEX),
                    key_condition: "#day = :day AND begins_with(#sk, :prefix)",
                    ..base
                }
                .name("#day", PARTITION_KEY)
                .name("#sk", COUNTRY_SORT_KEY)
                .value(":day", s(LATEST_PARTITION))
                .value(":prefix", s(format!("{country}#")))
                .country_filter(&country),
            ),
            Route::Cells(cells) => {
                let fetches = cells
                    .iter()
                    .map(|&cell| {
                        Fetch {
                            what: format!("latest cell {cell}"),
                            index: Some(BY_CELL_INDEX),
                            key_condition: "#ck = :ck",
                            limit: Some(CELL_PAGE_ITEMS),
                            ..Fetch::default()
                        }
                        .name("#ck", CELL_KEY)
                        .value(":ck", s(cell_key_of(LATEST_PARTITION, cell)))
                    })
                    .collect();
                self.spawn_merge(fetches, sensor_only)
            }
        };
        while let Some(page) = pages.recv().await {
            for r in page? {
                if !latest.matches(&r) {
                    continue;
                }
                if tx.send(Ok(r)).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Merges sources that are each in `key` order into `tx`, in `key` order,
/// in chunks of [`MERGE_CHUNK`].
async fn merge(
    mut sources: Vec<Pages>,
    key: fn(&Reading) -> (i64, u64),
    tx: &mpsc::Sender<Result<Vec<Reading>, BackendError>>,
) -> Result<(), BackendError> {
    /// The next non-empty page of a source, or `None` at its end.
    async fn refill(src: &mut Pages) -> Result<Option<VecDeque<Reading>>, BackendError> {
        while let Some(page) = src.recv().await {
            let page = page?;
            if !page.is_empty() {
                return Ok(Some(page.into()));
            }
        }
        Ok(None)
    }
    let mut buffers: Vec<VecDeque<Reading>> = Vec::with_capacity(sources.len());
    let mut heap = BinaryHeap::new();
    for (i, src) in sources.iter_mut().enumerate() {
        let buf = refill(src).await?.unwrap_or_default();
        if let Some(front) = buf.front() {
            heap.push(Reverse((key(front), i)));
        }
        buffers.push(buf);
    }
    let mut out = Vec::with_capacity(MERGE_CHUNK);
    while let Some(Reverse((_, i))) = heap.pop() {
        let (Some(buf), Some(src)) = (buffers.get_mut(i), sources.get_mut(i)) else {
            continue;
        };
        if let Some(r) = buf.pop_front() {
            out.push(r);
        }
        if buf.is_empty() {
            if let Some(page) = refill(src).await? {
                *buf = page;
            }
        }
        if let Some(front) = buf.front() {
            heap.push(Reverse((key(front), i)));
        }
        if out.len() >= MERGE_CHUNK {
            let chunk = std::mem::replace(&mut out, Vec::with_capacity(MERGE_CHUNK));
            if tx.send(Ok(chunk)).await.is_err() {
                return Ok(());
            }
        }
    }
    if !out.is_empty() {
        let _ = tx.send(Ok(out)).await;
    }
    Ok(())
}

/// Whether a batch write failed for want of capacity (or a transient
/// service fault): by its modelled type or by its code.
fn throttled(
    e: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemError,
        aws_sdk_dynamodb::config::http::HttpResponse,
    >,
) -> bool {
    e.as_service_error().is_some_and(|se| {
        se.is_provisioned_throughput_exceeded_exception()
            || se.is_request_limit_exceeded()
            || se.is_throttling_exception()
            || se.is_internal_server_error()
    }) || is_throttling(error_code(e))
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

#[async_trait]
impl ReadingStore for DynamoReadingStore {
    async fn put_batch(&self, readings: Vec<Reading>) -> Result<Written, BackendError> {
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
        for r in &readings {
            let item = ReadingItem::of(r)?;
            match stored.get(&(r.timestamp.0, r.sensor_id)) {
                Some(have) if have == r => {
                    written.unchanged += 1;
                    continue;
                }
                Some(_) => written.replaced += 1,
                None => written.new += 1,
            }
            let put = PutRequest::builder()
                .set_item(Some(item.encode()?))
                .build()
                .map_err(|e| BackendError::Corrupt(format!("encoding a reading: {e}")))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        if !requests.is_empty() {
            self.update_summary(&readings).await?;
        }
        let chunks: Vec<Vec<WriteRequest>> = requests
            .chunks(BATCH_WRITE_MAX)
            .map(<[WriteRequest]>::to_vec)
            .collect();
        futures::stream::iter(chunks)
            .map(|chunk| self.write_chunk(chunk))
            .buffer_unordered(WRITES_IN_FLIGHT)
            .try_collect::<()>()
            .await?;
        // After the readings: a latest item is only ever a copy of a
        // reading already stored. Unchanged readings go too: their latest
        // item may be what a crash between the two writes left behind.
        self.put_latest(readings).await?;
        Ok(written)
    }

    fn query(&self, query: &Query) -> ReadingStream {
        let this = self.clone();
        let query = query.clone();
        spawned(|tx| async move {
            if let Err(e) = this.run_query(&query, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        })
    }

    /// Reads only the latest items: by country (`by_country`, partition
    /// `#latest`), by place (`by_cell`, the place's cells) or all of them,
    /// in sensor id order.
    fn latest(&self, latest: &LatestQuery) -> ReadingStream {
        let this = self.clone();
        let latest = latest.clone();
        spawned(|tx| async move {
            if let Err(e) = this.run_latest(&latest, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        })
    }

    /// `readings` is DynamoDB's `ItemCount` (which AWS refreshes about
    /// every six hours: approximate) less the summary item and the latest
    /// items (counted exactly on the summary item); the time range and
    /// countries come from the summary item, one strongly consistent read.
    async fn summary(&self) -> Result<StoreSummary, BackendError> {
        let describe = self.client.describe_table().table_name(&self.table).send();
        let get = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(SUMMARY_DAY))
            .key(SORT_KEY, s(SUMMARY_SORT))
            .consistent_read(true)
            .send();
        let (describe, get) = tokio::join!(describe, get);
        let count = describe
            .map_err(|e| remote(format!("DynamoDB DescribeTable {}", self.table), e))?
            .table
            .and_then(|t| t.item_count)
            .unwrap_or(0)
            .max(0) as u64;
        let item = get
            .map_err(|e| remote(format!("DynamoDB GetItem (summary) on {}", self.table), e))?
            .item;
        let Some(item) = item else {
            return Ok(StoreSummary {
                readings: count,
                ..StoreSummary::default()
            });
        };
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
        Ok(StoreSummary {
            // The summary item and the latest items are no readings.
            readings: count.saturating_sub(1).saturating_sub(latest_items),
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

#[cfg(test)]
mod tests {
    use super::*;
    use airq_core::place::{cell, Bbox, Near};

    fn reading(ts: i64, sensor: u64) -> Reading {
        Reading {
            id: None,
            timestamp: Timestamp(ts),
            sensor_id: sensor,
            sensor_type: "SDS011".into(),
            loc_id: None,
            loc_country: "DE".into(),
            loc_lat: "48.78".into(),
            loc_long: "9.18".into(),
            loc_alt: String::new(),
            p1: Some("20".into()),
            p2: Some("9.1".into()),
            indices: Indices::from([2, 51, 2]),
            samples: None,
        }
    }

    #[test]
    fn days_and_seconds() {
        assert_eq!(day_of(Timestamp(0)).unwrap(), ("1970-01-01".into(), 0));
        assert_eq!(
            day_of(Timestamp(1_528_058_572)).unwrap(),
            ("2018-06-03".into(), 74_572)
        );
        assert_eq!(
            day_of(Timestamp(-1)).unwrap(),
            ("1969-12-31".into(), 86_399)
        );
    }

    #[test]
    fn sort_keys_order_as_time_then_sensor() {
        let keys: Vec<(String, String)> = [(5, 900), (5, 1000), (60, 2), (86_399, 1)]
            .iter()
            .map(|&(t, s)| {
                let i = ReadingItem::of(&reading(t, s)).unwrap();
                (i.at_sensor, i.country_at)
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn items_carry_the_schemas_attributes() {
        let r = reading(1_528_058_572, 42);
        let item: HashMap<String, AttributeValue> = ReadingItem::of(&r).unwrap().encode().unwrap();
        assert_eq!(item["AQI"], n(2));
        assert_eq!(item["AQI_US_EPA"], n(51));
        assert_eq!(item["AQI_EAQI"], n(2));
        let cell = cell(48.78, 9.18);
        assert_eq!(item[CELL_KEY], s(format!("2018-06-03#{cell}")));
        assert_eq!(item[PARTITION_KEY], s("2018-06-03"));

        let latest: HashMap<String, AttributeValue> = ReadingItem::latest(&r).encode().unwrap();
        assert_eq!(latest[PARTITION_KEY], s(LATEST_PARTITION));
        assert_eq!(latest[SORT_KEY], s(format!("{:020}", 42)));
        assert_eq!(latest[COUNTRY_SORT_KEY], s(format!("DE#{:020}", 42)));
        assert_eq!(latest[CELL_KEY], s(format!("#latest#{cell}")));
        // A latest item reads back as the reading it copies.
        let back = ReadingItem::decode(latest).unwrap();
        assert_eq!(back.into_reading("t").unwrap(), r);
    }

    #[test]
    fn an_item_of_the_old_shape_names_the_migration() {
        let r = reading(1_528_058_572, 42);
        let mut item: HashMap<String, AttributeValue> =
            ReadingItem::of(&r).unwrap().encode().unwrap();
        for a in ["AQI_US_EPA", "AQI_EAQI", CELL_KEY] {
            item.remove(a);
        }
        let old = ReadingItem::decode(item).unwrap();
        let err = old.into_reading("QualityAirTable").unwrap_err();
        assert!(matches!(err, BackendError::Schema(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("airq-deploy migrate") && text.contains("QualityAirTable"),
            "{text}"
        );
    }

    #[test]
    fn routes_prefer_a_small_place_then_the_country() {
        let city = Place::Near(Near {
            lat: 48.78,
            lon: 9.18,
            radius_km: 10.0,
        });
        let continent = Place::Bbox(Bbox {
            min_lon: -10.0,
            min_lat: 35.0,
            max_lon: 30.0,
            max_lat: 60.0,
        });
        assert!(matches!(Route::of(Some(&city), Some("DE")), Route::Cells(c) if c.len() <= 6));
        assert_eq!(
            Route::of(Some(&continent), Some("DE")),
            Route::Country("DE".into())
        );
        assert_eq!(Route::of(Some(&continent), None), Route::All);
        assert_eq!(Route::of(None, None), Route::All);
    }

    #[test]
    fn index_filters_let_unmigrated_items_through_to_fail() {
        for index in Index::ALL {
            let f = Fetch::default().index_filter(index, (1, 3));
            let filter = f.filter.unwrap();
            assert!(filter.contains("attribute_not_exists("), "{filter}");
            // Every placeholder used is defined and every one defined is
            // used (DynamoDB refuses unused ones).
            for p in f.names.keys().chain(f.values.keys()) {
                assert!(filter.contains(p.as_str()), "{p} unused in {filter}");
            }
            assert_eq!(f.names["#idx"], index_attribute(index));
        }
    }

    #[tokio::test]
    async fn merging_keeps_key_order_across_sources() {
        let mut sources = Vec::new();
        let mut all = Vec::new();
        for src in 0..5u64 {
            let (tx, rx) = mpsc::channel(100);
            let mut rs: Vec<Reading> = (0..40u64)
                .filter(|i| i % 5 == src || i % 7 == 0 && src == 0)
                .map(|i| reading(1000 + (i as i64 / 3), 100 * src + i))
                .collect();
            rs.sort_by_key(time_then_sensor);
            all.extend(rs.clone());
            // Pages of uneven sizes, an empty one among them.
            for page in rs.chunks(3) {
                tx.send(Ok(page.to_vec())).await.unwrap();
                tx.send(Ok(Vec::new())).await.unwrap();
            }
            sources.push(rx);
        }
        let (tx, mut rx) = mpsc::channel(1000);
        merge(sources, time_then_sensor, &tx).await.unwrap();
        drop(tx);
        let mut got = Vec::new();
        while let Some(page) = rx.recv().await {
            got.extend(page.unwrap());
        }
        all.sort_by_key(time_then_sensor);
        assert_eq!(got, all);
    }

    #[tokio::test]
    async fn a_failing_source_fails_the_merge() {
        let (tx1, rx1) = mpsc::channel(4);
        let (tx2, rx2) = mpsc::channel(4);
        tx1.send(Ok(vec![reading(1, 1)])).await.unwrap();
        tx2.send(Err(BackendError::Corrupt("x".into())))
            .await
            .unwrap();
        drop((tx1, tx2));
        let (tx, _rx) = mpsc::channel(4);
        assert!(merge(vec![rx1, rx2], time_then_sensor, &tx).await.is_err());
    }
}

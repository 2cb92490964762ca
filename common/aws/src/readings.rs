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
//!
//! A date-bounded query is one `Query` per day of its range, each bounded by
//! the range's seconds on its first and last day and paginated to the end;
//! never a `Scan`. Days are fetched a few at a time and emitted in day order.

use crate::retry::RetryPolicy;
use crate::schema::{BY_COUNTRY_INDEX, COUNTRY_SORT_KEY, PARTITION_KEY, SORT_KEY};
use crate::{error_code, is_throttling, remote};
use airq_core::error::BackendError;
use airq_core::query::Query;
use airq_core::reading::{Reading, Timestamp};
use airq_core::store::{ReadingStore, ReadingStream, StoreSummary};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// The most items one `BatchWriteItem` call takes.
pub const BATCH_WRITE_MAX: usize = 25;
/// `BatchWriteItem` calls in flight per `put_batch`.
const WRITES_IN_FLIGHT: usize = 8;
/// Day partitions fetched at once by one query.
const DAYS_IN_FLIGHT: usize = 4;
/// Pages a day's fetch may run ahead of the consumer.
const PAGES_AHEAD: usize = 2;
/// Readings streamed ahead of the consumer.
const STREAM_BUFFER: usize = 512;
const DAY: i64 = 86_400;

/// The one item that is not a reading: first and last timestamps and the
/// set of countries, kept up to date by every `put_batch`. Its `day` is no
/// date, so no query ever reads it, and it has no `country_at`, so it is not
/// in the index.
const SUMMARY_DAY: &str = "#summary";
const SUMMARY_SORT: &str = "summary";
/// Set members cannot be empty strings, and a country code can be.
const COUNTRY_MEMBER_PREFIX: &str = "c:";

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

/// A reading as a DynamoDB item: the attribute names of the embedded
/// schema and the CSV, measurements and coordinates as the exact text sent.
#[derive(Debug, Serialize, Deserialize)]
struct ReadingItem {
    day: String,
    at_sensor: String,
    country_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    /// Unix seconds.
    timestamp: i64,
    sensor_id: u64,
    sensor_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    loc_id: Option<u64>,
    loc_country: String,
    loc_lat: String,
    loc_long: String,
    loc_alt: String,
    #[serde(rename = "P1", default, skip_serializing_if = "Option::is_none")]
    p1: Option<String>,
    #[serde(rename = "P2", default, skip_serializing_if = "Option::is_none")]
    p2: Option<String>,
    /// The DAQI; its band (the CSV's `Range`) follows from it, so it is
    /// not stored.
    #[serde(rename = "AQI")]
    aqi: u8,
}

impl ReadingItem {
    fn of(r: &Reading) -> Result<ReadingItem, BackendError> {
        let (day, second) = day_of(r.timestamp)?;
        Ok(ReadingItem {
            at_sensor: format!("{second:05}#{:020}", r.sensor_id),
            country_at: format!("{}#{second:05}#{:020}", r.loc_country, r.sensor_id),
            day,
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
            aqi: r.aqi,
        })
    }

    fn into_reading(self) -> Reading {
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
            us_epa: airq_core::Indices::of_text(self.p1.as_deref(), self.p2.as_deref())
                .map_or(0, |i| i.us_epa),
            eaqi: airq_core::Indices::of_text(self.p1.as_deref(), self.p2.as_deref())
                .map_or(1, |i| i.eaqi),
            p1: self.p1,
            p2: self.p2,
            aqi: self.aqi,
        }
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Readings on DynamoDB. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DynamoReadingStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retry: RetryPolicy,
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
    /// BENCHMARKS.md): [`ReadingStore::put_batch`] is the way to write. The
    /// summary item is not updated.
    pub async fn put_one(&self, reading: &Reading) -> Result<(), BackendError> {
        let item = serde_dynamo::to_item(ReadingItem::of(reading)?)
            .map_err(|e| BackendError::Corrupt(format!("encoding a reading: {e}")))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| remote(format!("DynamoDB PutItem on {}", self.table), e))?;
        Ok(())
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
        let key = || {
            HashMap::from([
                (PARTITION_KEY.to_owned(), s(SUMMARY_DAY)),
                (SORT_KEY.to_owned(), s(SUMMARY_SORT)),
            ])
        };
        let add = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key()))
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
                .set_key(Some(key()))
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

    /// Streams the readings of `query` into `tx`, day by day, with up to
    /// [`DAYS_IN_FLIGHT`] days being fetched at once.
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
        let (first, last) = (query.start.0.div_euclid(DAY), query.end.0.div_euclid(DAY));
        let mut next = first;
        let mut fetching = VecDeque::new();
        loop {
            while fetching.len() < DAYS_IN_FLIGHT && next <= last {
                let (lo, hi) = (
                    if next == first {
                        query.start.0.rem_euclid(DAY)
                    } else {
                        0
                    },
                    if next == last {
                        query.end.0.rem_euclid(DAY)
                    } else {
                        DAY - 1
                    },
                );
                let plan = DayQuery {
                    day: day_name(next)?,
                    seconds: (lo, hi),
                    country: query.country.clone(),
                    aqi,
                };
                fetching.push_back(self.spawn_day(plan));
                next += 1;
            }
            let Some(mut pages) = fetching.pop_front() else {
                return Ok(());
            };
            while let Some(page) = pages.recv().await {
                for r in page? {
                    if tx.send(Ok(r)).await.is_err() {
                        // The consumer went away: dropping the receivers
                        // stops the fetches.
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Fetches one day's matching readings, page by page, into a small
    /// channel (so a day fetched ahead holds at most a few pages).
    fn spawn_day(&self, plan: DayQuery) -> mpsc::Receiver<Result<Vec<Reading>, BackendError>> {
        let (tx, rx) = mpsc::channel(PAGES_AHEAD);
        let this = self.clone();
        tokio::spawn(async move {
            let mut start_key = None;
            loop {
                match this.query_page(&plan, start_key.take()).await {
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

    /// One `Query` page of one day.
    async fn query_page(
        &self,
        plan: &DayQuery,
        start_key: Option<HashMap<String, AttributeValue>>,
    ) -> Result<(Vec<Reading>, Option<HashMap<String, AttributeValue>>), BackendError> {
        let (lo, hi) = plan.seconds;
        let (aqi_lo, aqi_hi) = plan.aqi;
        let mut req = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#day = :day AND #sk BETWEEN :from AND :to")
            .expression_attribute_names("#day", PARTITION_KEY)
            .expression_attribute_names("#aqi", "AQI")
            .expression_attribute_values(":day", s(&plan.day))
            .expression_attribute_values(":lo", n(aqi_lo))
            .expression_attribute_values(":hi", n(aqi_hi))
            .set_exclusive_start_key(start_key);
        req = match &plan.country {
            Some(country) => req
                .index_name(BY_COUNTRY_INDEX)
                .expression_attribute_names("#sk", COUNTRY_SORT_KEY)
                .expression_attribute_names("#country", "loc_country")
                .expression_attribute_values(":from", s(format!("{country}#{lo:05}#")))
                .expression_attribute_values(":to", s(format!("{country}#{hi:05}#~")))
                .expression_attribute_values(":country", s(country))
                // The key range alone would also admit a country that
                // starts with this one followed by '#'.
                .filter_expression("#aqi BETWEEN :lo AND :hi AND #country = :country"),
            None => req
                .expression_attribute_names("#sk", SORT_KEY)
                .expression_attribute_values(":from", s(format!("{lo:05}#")))
                .expression_attribute_values(":to", s(format!("{hi:05}#~")))
                .filter_expression("#aqi BETWEEN :lo AND :hi"),
        };
        let out = req.send().await.map_err(|e| {
            remote(
                format!("DynamoDB Query on {} ({})", self.table, plan.day),
                e,
            )
        })?;
        let page = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item::<_, ReadingItem>(item)
                    .map(ReadingItem::into_reading)
                    .map_err(|e| {
                        BackendError::Corrupt(format!(
                            "a reading in {} ({}): {e}",
                            self.table, plan.day
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = out.last_evaluated_key.filter(|k| !k.is_empty());
        Ok((page, next))
    }
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

/// What to fetch from one day partition.
#[derive(Debug, Clone)]
struct DayQuery {
    day: String,
    /// Inclusive seconds of the day.
    seconds: (i64, i64),
    country: Option<String>,
    aqi: (u16, u16),
}

#[async_trait]
impl ReadingStore for DynamoReadingStore {
    async fn put_batch(&self, readings: Vec<Reading>) -> Result<(), BackendError> {
        // One item per identity, the last one sent winning (as a replace
        // would): a BatchWriteItem call refuses duplicate keys, and
        // concurrent calls would leave the winner to chance.
        let mut unique = BTreeMap::new();
        for r in readings {
            unique.insert((r.timestamp, r.sensor_id), r);
        }
        let readings: Vec<Reading> = unique.into_values().collect();
        if readings.is_empty() {
            return Ok(());
        }
        self.update_summary(&readings).await?;
        let mut requests = Vec::with_capacity(readings.len());
        for r in &readings {
            let item = serde_dynamo::to_item(ReadingItem::of(r)?)
                .map_err(|e| BackendError::Corrupt(format!("encoding a reading: {e}")))?;
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| BackendError::Corrupt(format!("encoding a reading: {e}")))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        let chunks: Vec<Vec<WriteRequest>> = requests
            .chunks(BATCH_WRITE_MAX)
            .map(<[WriteRequest]>::to_vec)
            .collect();
        futures::stream::iter(chunks)
            .map(|chunk| self.write_chunk(chunk))
            .buffer_unordered(WRITES_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    fn query(&self, query: &Query) -> ReadingStream {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let this = self.clone();
        let query = query.clone();
        tokio::spawn(async move {
            if let Err(e) = this.run_query(&query, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        ReceiverStream::new(rx).boxed()
    }

    fn latest(&self, _latest: &airq_core::LatestQuery) -> ReadingStream {
        futures::stream::once(async {
            Err(BackendError::Unsupported("latest: not built yet".into()))
        })
        .boxed()
    }

    /// `readings` is DynamoDB's `ItemCount`, which AWS refreshes about every
    /// six hours (approximate); the time range and countries come from the
    /// summary item, one strongly consistent read.
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
        let ts = |name: &str| -> Option<Timestamp> {
            match item.get(name) {
                Some(AttributeValue::N(v)) => v.parse().ok().map(Timestamp),
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
        Ok(StoreSummary {
            // The summary item is no reading.
            readings: count.saturating_sub(1),
            first: ts("first_ts"),
            last: ts("last_ts"),
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
        let r = |ts: i64, sensor: u64| Reading {
            id: None,
            timestamp: Timestamp(ts),
            sensor_id: sensor,
            sensor_type: "SDS011".into(),
            loc_id: None,
            loc_country: "DE".into(),
            loc_lat: "1".into(),
            loc_long: "2".into(),
            loc_alt: String::new(),
            p1: None,
            p2: None,
            aqi: 1,
            us_epa: 0,
            eaqi: 1,
        };
        let keys: Vec<(String, String)> = [(5, 900), (5, 1000), (60, 2), (86_399, 1)]
            .iter()
            .map(|&(t, s)| {
                let i = ReadingItem::of(&r(t, s)).unwrap();
                (i.at_sensor, i.country_at)
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}

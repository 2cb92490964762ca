//! The live tier on DynamoDB: the 5-minute readings and the hourly series
//! made from them ([`airq_core::hourly`]), packed into one item per hour
//! and shard.
//!
//! **Items.** The sensors are spread over [`LATEST_SHARDS`] shards by the
//! latest shards' hash (`latest.rs`). Each UTC hour `H` and shard `SS` has:
//!
//! - an *hour item* (partition `#hour#YYYY-MM-DDTHH#SS`, sort key `live`):
//!   `hours`, the shard's hourly readings (gzip of JSON rows: the hour's
//!   means, `samples`, indices and basis, the site of its newest reading,
//!   its valid means for the index windows, and what retention stripped),
//!   and `values`, the 5-minute readings themselves (gzip of JSON, each
//!   with the indices its hour had when it arrived). A reading's 5-minute
//!   value and its hour's sums are in one item, so one conditional write
//!   changes both: a repeated or interrupted ingest can neither count a
//!   value twice nor lose one, and the hour is recomputed from its values
//!   rather than patched.
//! - a *means item* (partition `#means#YYYY-MM-DDTHH#SS`): each row's valid
//!   hourly means, 16 bytes a sensor, which the NowCast and running means
//!   of the 23 following hours read. Written after its hour item; a few KB,
//!   so a feed reads 24 hours of windows for the price of 24 small items
//!   rather than 24 hour items.
//!
//! Neither has a `country_at` or `cell_key`, so no index holds them, and
//! their partition key is no date, so no daily query reads them. Both carry
//! `delete_after` (DynamoDB's TTL): the end of the hour plus the hourly
//! retention the writer was given ([`DynamoReadingStore::with_live_retention`]).
//! The 5-minute values cannot expire on their own (TTL removes whole
//! items), so `prune(5min)` strips them from their hour items, keeping
//! the hour's sums, an hour at a time: a 5-minute reading is kept until
//! its whole hour is older than the retention (up to an hour more than
//! on the embedded store, which deletes to the second), so that each
//! hour item is rewritten once by retention, not at every run.
//!
//! **Cost** (ARCHITECTURE.md has the arithmetic, BENCHMARKS.md the
//! measured bytes): a feed of 15,000 sensors rewrites the current hour's 64
//! items (each sensor's row and its values so far), 64 means items and the
//! 64 latest shards; DynamoDB bills by the kilobyte, so packing, not the
//! number of readings, sets the price, and each partition key takes one
//! write of well under 1,000 units per feed.
//!
//! **Writes** are conditioned on the hour item's `version`; a batch that
//! loses a race with another writer is redone from what is stored
//! (idempotent by construction), a bounded number of times. A means item
//! says which hour item version it was made from (`of`) and is never
//! written over a later one's; every batch, one that changes nothing
//! too, rewrites a means item left behind its hour item, moves the
//! markers and hands its newest readings to the latest shards, so a run
//! that stopped half way is finished by the next one with the same feed.
//! One live writer at a time is assumed for the index windows (two at
//! once stay correct item by item; see docs/internals.md).

use super::latest::{shard_of, Entry};
use super::*;
use airq_core::hourly::{self, Basis, HourMean, Window, HOUR_SECS};
use airq_core::mean::{value_of, ExactSum};
use airq_core::quality::HourQuality;
use aws_sdk_dynamodb::primitives::Blob;
use std::io::{Read, Write};

/// Partition prefixes of the two items of an hour and shard.
const HOUR_PREFIX: &str = "#hour";
const MEANS_PREFIX: &str = "#means";
/// The sort key of both.
const LIVE_SORT: &str = "live";
/// The hourly rows (gzip of JSON [`RowItem`]s).
const HOURS: &str = "hours";
/// The 5-minute readings (gzip of JSON [`Entry`]s, by sensor and time).
const VALUES: &str = "values";
/// The valid means (`means.rs`-style fixed records, see [`encode_means`]).
const MEANS: &str = "means";
/// On a means item: the version of the hour item it was made from, so
/// that a late writer never replaces newer means and a run that stopped
/// between the two writes is seen and finished.
const MEANS_OF: &str = "of";
/// Rows and 5-minute readings an hour item holds (for people, and for
/// counting what retention removes without decoding).
const SENSORS: &str = "sensors";
const READINGS: &str = "readings";
/// The summary item's markers: the earliest hour that may have an hour
/// item, and the earliest that may still hold 5-minute values, so that
/// retention knows where to start without a scan.
const FIRST_HOUR: &str = "live_first_hour";
const FIRST_VALUES: &str = "live_first_values";
/// And the latest hour that may have one: no later hour's window needs
/// reading (absent means items cost a read unit each all the same).
const LAST_HOUR: &str = "live_last_hour";
/// Hour and shard items written at once.
const ITEMS_IN_FLIGHT: usize = 16;
/// Hours read ahead by a query.
const HOURS_IN_FLIGHT: usize = 4;
/// Hours of items prune reads at once.
const PRUNE_HOURS: usize = 4;
/// Redoes of a batch that lost a race with another writer.
const MAX_REDOS: u32 = 10;
/// DynamoDB's item size limit is 400 KB; this leaves room for the key and
/// the small attributes.
const MAX_ITEM_BYTES: usize = 390 * 1024;

/// The hour of `t`'s item partitions: `2026-12-01T10`.
fn hour_name(hour: i64) -> Result<String, BackendError> {
    chrono::DateTime::from_timestamp(hour, 0)
        .map(|d| d.format("%Y-%m-%dT%H").to_string())
        .ok_or_else(|| BackendError::Corrupt(format!("hour {hour} is out of range")))
}

fn live_key(
    prefix: &str,
    hour: i64,
    shard: u32,
) -> Result<HashMap<String, AttributeValue>, BackendError> {
    Ok(HashMap::from([
        (
            PARTITION_KEY.to_owned(),
            s(format!("{prefix}#{}#{shard:02}", hour_name(hour)?)),
        ),
        (SORT_KEY.to_owned(), s(LIVE_SORT)),
    ]))
}

/// The partition key of the hour item holding `sensor`'s hour `hour`
/// (Unix seconds at the hour's start): for tests and tools.
pub fn hour_partition_of(sensor: u64, hour: i64) -> Result<String, BackendError> {
    Ok(format!(
        "{HOUR_PREFIX}#{}#{:02}",
        hour_name(hour)?,
        shard_of(sensor)
    ))
}

/// The hour and shard an item's partition key names.
fn parse_key(day: &str) -> Option<(i64, u32)> {
    let rest = day
        .strip_prefix(HOUR_PREFIX)
        .or_else(|| day.strip_prefix(MEANS_PREFIX))?
        .strip_prefix('#')?;
    let (hour, shard) = rest.rsplit_once('#')?;
    let t = chrono::NaiveDateTime::parse_from_str(&format!("{hour}:00"), "%Y-%m-%dT%H:%M").ok()?;
    Some((t.and_utc().timestamp(), shard.parse().ok()?))
}

/// What retention took from a row: the sums of the 5-minute values it
/// stripped and their offsets in the hour (seconds), so that the hour
/// keeps its means and a stripped reading sent again counts as unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Stripped {
    /// PM10 and PM2.5 sums, nano-units as decimal text (`u128`).
    s1: String,
    c1: u64,
    s2: String,
    c2: u64,
    at: Vec<i64>,
    /// What the stripped readings say of the hour's quality
    /// ([`HourQuality::to_text`]); empty before the hours kept it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    q: String,
}

impl Stripped {
    fn sums(&self) -> (ExactSum, ExactSum) {
        let sum = |text: &str, n| ExactSum::from_parts(text.parse().unwrap_or(0), n);
        (sum(&self.s1, self.c1), sum(&self.s2, self.c2))
    }

    /// What the stripped readings say of the hour's quality (nothing when
    /// the item holds none, as for an hour stripped before it was kept).
    fn quality(&self) -> HourQuality {
        HourQuality::from_text(&self.q).unwrap_or_default()
    }
}

/// One sensor's hour as stored.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    /// The hourly reading answers give: means, samples, indices, basis,
    /// the site of the newest 5-minute reading.
    reading: Reading,
    /// That newest reading's time.
    last: i64,
    /// The valid means, for the index windows.
    means: HourMeans,
    stripped: Option<Stripped>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RowItem {
    r: Entry,
    last: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m10: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m25: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stripped: Option<Stripped>,
}

/// One hour item as read (version 0: none stored yet).
#[derive(Debug, Default)]
struct HourShard {
    version: u64,
    rows: BTreeMap<u64, Row>,
    /// The 5-minute readings by (sensor, time).
    values: BTreeMap<(u64, i64), Reading>,
}

fn gzip_json<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>, BackendError> {
    let json = serde_json::to_vec(v)
        .map_err(|e| BackendError::Corrupt(format!("encoding {what}: {e}")))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json)
        .and_then(|()| gz.finish())
        .map_err(|e| BackendError::Corrupt(format!("compressing {what}: {e}")))
}

fn gunzip_json<T: serde::de::DeserializeOwned>(packed: &[u8]) -> Result<T, String> {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(packed)
        .read_to_end(&mut json)
        .map_err(|e| format!("does not decompress: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("does not decode: {e}"))
}

/// The valid means of an item's rows: per sensor 8 bytes of id and two
/// 4-byte values (hundredths + 1; 0 for an hour that is not valid), little
/// endian. Fixed records: 15,000 sensors over 64 shards fit one read unit.
fn encode_means(rows: &BTreeMap<u64, Row>) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 16);
    let value = |v: Option<u64>| {
        v.map_or(0u32, |v| {
            u32::try_from(v).unwrap_or(u32::MAX).min(u32::MAX - 1) + 1
        })
    };
    for (sensor, row) in rows {
        out.extend_from_slice(&sensor.to_le_bytes());
        out.extend_from_slice(&value(row.means.0).to_le_bytes());
        out.extend_from_slice(&value(row.means.1).to_le_bytes());
    }
    out
}

/// An hour's valid means (PM10, PM2.5) in hundredths.
type HourMeans = (Option<u64>, Option<u64>);
type Means = BTreeMap<u64, HourMeans>;

fn decode_means(bytes: &[u8]) -> Result<Means, String> {
    if !bytes.len().is_multiple_of(16) {
        return Err(format!(
            "{} bytes is no whole number of records",
            bytes.len()
        ));
    }
    let value = |b: &[u8]| {
        let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        v.checked_sub(1).map(u64::from)
    };
    Ok(bytes
        .chunks_exact(16)
        .map(|r| {
            let mut id = [0u8; 8];
            id.copy_from_slice(&r[..8]);
            (
                u64::from_le_bytes(id),
                (value(&r[8..12]), value(&r[12..16])),
            )
        })
        .collect())
}

fn number<T: std::str::FromStr>(item: &HashMap<String, AttributeValue>, name: &str) -> Option<T> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

fn binary<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a [u8]> {
    match item.get(name) {
        Some(AttributeValue::B(b)) => Some(b.as_ref()),
        _ => None,
    }
}

impl HourShard {
    /// An hour item read with the attributes in `parts` (`HOURS`,
    /// `VALUES`); the others stay empty.
    fn decode(
        table: &str,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<HourShard, BackendError> {
        let day = match item.get(PARTITION_KEY) {
            Some(AttributeValue::S(d)) => d.as_str(),
            _ => "",
        };
        let corrupt = |why: String| {
            BackendError::Corrupt(format!("DynamoDB table {table}, live item {day:?}: {why}"))
        };
        let mut shard = HourShard {
            version: number(item, VERSION).unwrap_or(0),
            ..HourShard::default()
        };
        if let Some(packed) = binary(item, HOURS) {
            let rows: Vec<RowItem> =
                gunzip_json(packed).map_err(|e| corrupt(format!("the hourly rows {e}")))?;
            for row in rows {
                let Some(reading) = row.r.into_reading_or_undefined() else {
                    return Err(corrupt("an hourly row does not decode".into()));
                };
                shard.rows.insert(
                    reading.sensor_id,
                    Row {
                        reading,
                        last: row.last,
                        means: (row.m10, row.m25),
                        stripped: row.stripped,
                    },
                );
            }
        }
        if let Some(packed) = binary(item, VALUES) {
            let values: Vec<Entry> =
                gunzip_json(packed).map_err(|e| corrupt(format!("the 5-minute readings {e}")))?;
            for v in values {
                let Some(r) = v.into_reading_or_undefined() else {
                    return Err(corrupt("a 5-minute reading does not decode".into()));
                };
                shard.values.insert((r.sensor_id, r.timestamp.0), r);
            }
        }
        Ok(shard)
    }

    /// The hour item and the means item, one version on.
    fn encode(
        &self,
        hour: i64,
        shard: u32,
        delete_after: i64,
    ) -> Result<[HashMap<String, AttributeValue>; 2], BackendError> {
        let rows: Vec<RowItem> = self
            .rows
            .values()
            .map(|row| RowItem {
                r: Entry::of(&row.reading, 0),
                last: row.last,
                m10: row.means.0,
                m25: row.means.1,
                stripped: row.stripped.clone(),
            })
            .collect();
        let values: Vec<Entry> = self.values.values().map(|r| Entry::of(r, 0)).collect();
        let hours = gzip_json("hourly rows", &rows)?;
        let values = gzip_json("5-minute readings", &values)?;
        let means = encode_means(&self.rows);
        let bytes = hours.len() + values.len() + means.len();
        if bytes > MAX_ITEM_BYTES {
            return Err(BackendError::Unsupported(format!(
                "the live item of hour {} shard {shard} would hold {} sensors in {bytes} bytes, over \
                 DynamoDB's 400 KB item limit: this many sensors needs more than {LATEST_SHARDS} shards",
                hour_name(hour)?,
                self.rows.len()
            )));
        }
        let mut item = live_key(HOUR_PREFIX, hour, shard)?;
        item.insert(HOURS.to_owned(), AttributeValue::B(Blob::new(hours)));
        item.insert(VALUES.to_owned(), AttributeValue::B(Blob::new(values)));
        item.insert(
            MEANS.to_owned(),
            AttributeValue::B(Blob::new(means.clone())),
        );
        item.insert(VERSION.to_owned(), n(self.version + 1));
        item.insert(SENSORS.to_owned(), n(self.rows.len()));
        item.insert(READINGS.to_owned(), n(self.values.len()));
        item.insert(
            crate::schema::READINGS_TTL_ATTRIBUTE.to_owned(),
            n(delete_after),
        );
        let mut means_item = live_key(MEANS_PREFIX, hour, shard)?;
        means_item.insert(MEANS.to_owned(), AttributeValue::B(Blob::new(means)));
        means_item.insert(MEANS_OF.to_owned(), n(self.version + 1));
        means_item.insert(
            crate::schema::READINGS_TTL_ATTRIBUTE.to_owned(),
            n(delete_after),
        );
        Ok([item, means_item])
    }

    /// Rebuilds `sensor`'s row from its 5-minute readings and what
    /// retention stripped (indices and basis kept until recomputed);
    /// `None` when nothing is left of it.
    fn rebuild(&self, hour: i64, sensor: u64) -> Option<Row> {
        let prev = self.rows.get(&sensor);
        let stripped = prev.and_then(|p| p.stripped.clone());
        let (mut p1, mut p2) = stripped.as_ref().map(Stripped::sums).unwrap_or_default();
        let mut samples = stripped.as_ref().map_or(0, |s| s.at.len());
        let mut quality = stripped.as_ref().map(Stripped::quality).unwrap_or_default();
        let mut newest: Option<&Reading> = None;
        for v in self
            .values
            .range((sensor, i64::MIN)..=(sensor, i64::MAX))
            .map(|(_, v)| v)
        {
            p1.add(value_of(v.p1.as_deref()));
            p2.add(value_of(v.p2.as_deref()));
            quality.add(v.flags, &v.air);
            samples += 1;
            if newest.is_none_or(|n| v.timestamp >= n.timestamp) {
                newest = Some(v);
            }
        }
        // The hour takes the site of its newest reading (as the embedded
        // store does); a stripped one newer than any left keeps its site.
        let (site, last) = match (newest, prev) {
            (Some(v), Some(p)) if p.last > v.timestamp.0 => (&p.reading, p.last),
            (Some(v), _) => (v, v.timestamp.0),
            (None, Some(p)) => (&p.reading, p.last),
            (None, None) => return None,
        };
        let (m1, m2) = (HourMean::of(p1), HourMean::of(p2));
        let valid = |m: Option<HourMean>| m.filter(|m| m.is_valid()).map(|m| m.hundredths);
        let (p1, p2) = (m1.map(HourMean::text), m2.map(HourMean::text));
        let (flags, air) = quality.assess(p1.as_deref(), p2.as_deref());
        Some(Row {
            reading: Reading {
                id: None,
                timestamp: Timestamp(hour),
                sensor_id: sensor,
                p1,
                p2,
                samples: Some(u32::try_from(samples).unwrap_or(u32::MAX)),
                indices: prev.map_or(Indices::undefined(), |p| p.reading.indices),
                basis: Some(prev.and_then(|p| p.reading.basis).unwrap_or_default()),
                flags,
                air,
                ..site.clone()
            },
            last,
            means: (valid(m1), valid(m2)),
            stripped,
        })
    }
}

/// Whether a stored 5-minute reading is the one sent: everything the feed
/// sends and what ingestion found of it (the indices are its hour's, not
/// the feed's).
fn same_as_sent(stored: &Reading, sent: &Reading) -> bool {
    stored.id == sent.id
        && stored.sensor_type == sent.sensor_type
        && stored.loc_id == sent.loc_id
        && stored.loc_country == sent.loc_country
        && stored.loc_lat == sent.loc_lat
        && stored.loc_long == sent.loc_long
        && stored.loc_alt == sent.loc_alt
        && stored.p1 == sent.p1
        && stored.p2 == sent.p2
        && stored.samples == sent.samples
        && stored.flags == sent.flags
        && stored.air == sent.air
}

/// The hours from `first` to `last` (hour starts), both included.
fn hours(first: i64, last: i64) -> impl Iterator<Item = i64> {
    (0..)
        .map(move |k| first + k * HOUR_SECS)
        .take_while(move |&h| h <= last)
}

/// A batch that lost a race with another writer: redo it. What the
/// attempt found is what the batch did (a redo finds its own writes).
struct Raced(Written);

impl DynamoReadingStore {
    /// Reads hour items (every shard key given), decoded; the attributes
    /// in `parts` only (and the version).
    async fn hour_items(
        &self,
        keys: impl IntoIterator<Item = (i64, u32)>,
        consistent: bool,
        parts: &[&str],
    ) -> Result<HashMap<(i64, u32), HourShard>, BackendError> {
        let keys: Vec<_> = keys
            .into_iter()
            .map(|(h, s)| live_key(HOUR_PREFIX, h, s))
            .collect::<Result<_, _>>()?;
        let mut projection = vec![PARTITION_KEY, VERSION];
        projection.extend_from_slice(parts);
        let mut out = HashMap::new();
        for item in self.get_items_with(keys, consistent, &projection).await? {
            let Some(AttributeValue::S(day)) = item.get(PARTITION_KEY) else {
                continue;
            };
            let Some(key) = parse_key(day) else {
                return Err(BackendError::Corrupt(format!(
                    "DynamoDB table {}: {day:?} is no live item's key",
                    self.table
                )));
            };
            out.insert(key, HourShard::decode(&self.table, &item)?);
        }
        Ok(out)
    }

    /// Reads means items: each hour and shard's valid means by sensor.
    async fn means_items(
        &self,
        keys: impl IntoIterator<Item = (i64, u32)>,
    ) -> Result<HashMap<(i64, u32), (Means, Option<u64>)>, BackendError> {
        let keys: Vec<_> = keys
            .into_iter()
            .map(|(h, s)| live_key(MEANS_PREFIX, h, s))
            .collect::<Result<_, _>>()?;
        let mut out = HashMap::new();
        for item in self
            .get_items_with(keys, true, &[PARTITION_KEY, MEANS, MEANS_OF])
            .await?
        {
            let Some(AttributeValue::S(day)) = item.get(PARTITION_KEY) else {
                continue;
            };
            let key = parse_key(day).ok_or_else(|| {
                BackendError::Corrupt(format!(
                    "DynamoDB table {}: {day:?} is no live item's key",
                    self.table
                ))
            })?;
            let means = decode_means(binary(&item, MEANS).unwrap_or_default()).map_err(|e| {
                BackendError::Corrupt(format!(
                    "DynamoDB table {}, {day:?}: the means: {e}",
                    self.table
                ))
            })?;
            out.insert(key, (means, number(&item, MEANS_OF)));
        }
        Ok(out)
    }

    /// When an hour's items may be deleted: the end of the hour plus the
    /// hourly retention.
    fn delete_after(&self, hour: i64) -> i64 {
        let keep = i64::try_from(self.live_retention.as_secs()).unwrap_or(i64::MAX / 4);
        hour.saturating_add(HOUR_SECS).saturating_add(keep)
    }

    /// `put_recent`: stores the 5-minute readings and keeps the hourly
    /// series (see the module documentation).
    pub(crate) async fn put_live(&self, readings: Vec<Reading>) -> Result<Written, BackendError> {
        let mut unique = BTreeMap::new();
        for r in readings {
            unique.insert((r.timestamp.0, r.sensor_id), r);
        }
        let readings: Vec<Reading> = unique.into_values().collect();
        if readings.is_empty() {
            return Ok(Written::default());
        }
        // A table first written here is marked for packed daily items
        // before this makes its summary item (`write.rs`).
        self.writes_packed().await?;
        let mut redos = 0;
        let mut first: Option<Written> = None;
        loop {
            match self.put_live_once(&readings).await? {
                Ok(written) => return Ok(first.unwrap_or(written)),
                Err(Raced(written)) => {
                    first.get_or_insert(written);
                    redos += 1;
                    if redos > MAX_REDOS {
                        return Err(BackendError::Remote {
                            context: format!("DynamoDB live items on {}", self.table),
                            message: format!(
                                "gave up after losing {redos} races with other writers"
                            ),
                        });
                    }
                }
            }
        }
    }

    async fn put_live_once(
        &self,
        readings: &[Reading],
    ) -> Result<Result<Written, Raced>, BackendError> {
        let mut by_item: BTreeMap<(i64, u32), Vec<&Reading>> = BTreeMap::new();
        for r in readings {
            by_item
                .entry((hourly::hour_start(r.timestamp).0, shard_of(r.sensor_id)))
                .or_default()
                .push(r);
        }
        let mut items = self
            .hour_items(by_item.keys().copied(), true, &[HOURS, VALUES])
            .await?;
        let mut written = Written::default();
        // (hour, shard, sensor) of every row with a new or changed value.
        let mut touched: BTreeSet<(i64, u32, u64)> = BTreeSet::new();
        for (&(hour, shard), batch) in &by_item {
            let item = items.entry((hour, shard)).or_default();
            for r in batch {
                let key = (r.sensor_id, r.timestamp.0);
                let stripped = item
                    .rows
                    .get(&r.sensor_id)
                    .and_then(|row| row.stripped.as_ref())
                    .is_some_and(|s| s.at.contains(&(r.timestamp.0 - hour)));
                match item.values.get(&key) {
                    _ if stripped => {
                        written.unchanged += 1;
                        continue;
                    }
                    Some(old) if same_as_sent(old, r) => {
                        written.unchanged += 1;
                        continue;
                    }
                    Some(_) => written.replaced += 1,
                    None => written.new += 1,
                }
                let mut value = (*r).clone();
                value.indices = Indices::undefined();
                value.basis = Some(Basis::default());
                item.values.insert(key, value);
                touched.insert((hour, shard, r.sensor_id));
            }
        }
        // What follows runs for a batch that changed nothing too: each step
        // is idempotent, and it finishes what a run that stopped half-way
        // (a crash, a lost race) left undone: the means items, the
        // markers, the latest readings.
        let mut dirty: BTreeSet<(i64, u32)> = BTreeSet::new();
        for &(hour, shard, sensor) in &touched {
            let Some(item) = items.get_mut(&(hour, shard)) else {
                continue;
            };
            if let Some(row) = item.rebuild(hour, sensor) {
                item.rows.insert(sensor, row);
            }
            dirty.insert((hour, shard));
        }
        let (_, _, last_hour) = self.markers().await?;
        // The version each of the batch's means items follows.
        let means_of: HashMap<(i64, u32), Option<u64>> = self
            .means_items(by_item.keys().copied())
            .await?
            .into_iter()
            .map(|(k, (_, of))| (k, of))
            .collect();
        self.recompute_indices(&mut items, &touched, &mut dirty, last_hour)
            .await?;
        // The readings of the batch take their hour's indices (as they are
        // now), and the newest of each sensor becomes its latest.
        let mut newest: BTreeMap<u64, Reading> = BTreeMap::new();
        for r in readings {
            let (hour, shard) = (hourly::hour_start(r.timestamp).0, shard_of(r.sensor_id));
            let touched = touched.contains(&(hour, shard, r.sensor_id));
            let Some(item) = items.get_mut(&(hour, shard)) else {
                continue;
            };
            let hour_of = item
                .rows
                .get(&r.sensor_id)
                .map(|row| (row.reading.indices, row.reading.basis));
            let Some(value) = item.values.get_mut(&(r.sensor_id, r.timestamp.0)) else {
                continue;
            };
            if let (true, Some((indices, basis))) = (touched, hour_of) {
                if value.indices != indices || value.basis != basis {
                    value.indices = indices;
                    value.basis = basis;
                    dirty.insert((hour, shard));
                }
            }
            if newest
                .get(&r.sensor_id)
                .is_none_or(|n| n.timestamp <= value.timestamp)
            {
                newest.insert(r.sensor_id, value.clone());
            }
        }
        let (new_items, raced) = self.write_hour_items(&items, &dirty).await?;
        if new_items > 0 {
            self.count_latest_items(new_items).await?;
        }
        if raced {
            return Ok(Err(Raced(written)));
        }
        // Means items a stopped run did not write (their hour item is at a
        // version they do not say they follow).
        let stale: Vec<(i64, u32)> = by_item
            .keys()
            .filter(|k| !dirty.contains(k))
            .filter(|k| {
                let version = items.get(k).map_or(0, |i| i.version);
                version > 0 && means_of.get(k).copied().flatten() != Some(version)
            })
            .copied()
            .collect();
        for (hour, shard) in stale {
            if let Some(item) = items.get(&(hour, shard)) {
                let [_, mut means] = item.encode(hour, shard, self.delete_after(hour))?;
                // `encode` is one version on; these follow the stored one.
                means.insert(MEANS_OF.to_owned(), n(item.version));
                self.put_means(means, item.version).await?;
            }
        }
        if let (Some(&(first, _)), Some(&(last, _))) =
            (by_item.keys().next(), by_item.keys().last())
        {
            self.move_bound(FIRST_HOUR, ">", first).await?;
            self.move_bound(FIRST_VALUES, ">", first).await?;
            self.move_bound(LAST_HOUR, "<", last).await?;
        }
        self.put_latest(newest.into_values()).await?;
        Ok(Ok(written))
    }

    /// Recomputes the indices of every touched row and of the sensor's
    /// rows in the 23 hours after it, from the valid means of the 23 hours
    /// before each: the items at hand, the means items for the rest.
    /// Loads the later hour items that need rewriting.
    async fn recompute_indices(
        &self,
        items: &mut HashMap<(i64, u32), HourShard>,
        touched: &BTreeSet<(i64, u32, u64)>,
        dirty: &mut BTreeSet<(i64, u32)>,
        last_hour: Option<i64>,
    ) -> Result<(), BackendError> {
        let span = (hourly::RUNNING_HOURS as i64 - 1) * HOUR_SECS;
        // The 23 hours on either side of each touched hour (a batch of
        // scattered late hours reads around each, not every hour between),
        // and none after the last hour stored.
        let mut wanted: BTreeSet<(i64, u32)> = BTreeSet::new();
        for &(hour, shard, _) in touched {
            let end = (hour + span).min(last_hour.unwrap_or(hour).max(hour));
            for h in hours(hour - span, end) {
                if !items.contains_key(&(h, shard)) {
                    wanted.insert((h, shard));
                }
            }
        }
        let read = self.means_items(wanted).await?;
        // (shard, sensor, hour) → valid means, from both sources.
        let mut means: HashMap<(u32, u64, i64), HourMeans> = HashMap::new();
        for (&(hour, shard), (m, _)) in &read {
            for (&sensor, &v) in m {
                means.insert((shard, sensor, hour), v);
            }
        }
        for (&(hour, shard), item) in items.iter() {
            for (&sensor, row) in &item.rows {
                means.insert((shard, sensor, hour), row.means);
            }
        }
        // The rows to recompute: the touched ones and their sensors' rows
        // up to 23 hours later.
        let mut recompute: BTreeSet<(i64, u32, u64)> = BTreeSet::new();
        for &(hour, shard, sensor) in touched {
            for h in hours(hour, hour + span) {
                if means.contains_key(&(shard, sensor, h)) {
                    recompute.insert((h, shard, sensor));
                }
            }
        }
        let missing: BTreeSet<(i64, u32)> = recompute
            .iter()
            .map(|&(h, s, _)| (h, s))
            .filter(|k| !items.contains_key(k))
            .collect();
        if !missing.is_empty() {
            let loaded = self.hour_items(missing, true, &[HOURS, VALUES]).await?;
            items.extend(loaded);
        }
        for (hour, shard, sensor) in recompute {
            let mut pm10: Window = [None; hourly::RUNNING_HOURS];
            let mut pm25: Window = [None; hourly::RUNNING_HOURS];
            for k in 0..hourly::RUNNING_HOURS {
                if let Some(&(a, b)) = means.get(&(shard, sensor, hour - k as i64 * HOUR_SECS)) {
                    pm10[k] = a;
                    pm25[k] = b;
                }
            }
            let (indices, basis) = hourly::hour_indices(&pm10, &pm25);
            let Some(row) = items
                .get_mut(&(hour, shard))
                .and_then(|item| item.rows.get_mut(&sensor))
            else {
                continue;
            };
            if row.reading.indices != indices || row.reading.basis != Some(basis) {
                row.reading.indices = indices;
                row.reading.basis = Some(basis);
                dirty.insert((hour, shard));
            }
        }
        Ok(())
    }

    /// Writes the dirty hour items (each on condition of the version read)
    /// and then their means items; returns how many items are new and
    /// whether a write lost a race (the rest are written all the same:
    /// each is whole).
    async fn write_hour_items(
        &self,
        items: &HashMap<(i64, u32), HourShard>,
        dirty: &BTreeSet<(i64, u32)>,
    ) -> Result<(i64, bool), BackendError> {
        let mut work = Vec::with_capacity(dirty.len());
        for &(hour, shard) in dirty {
            let Some(item) = items.get(&(hour, shard)) else {
                continue;
            };
            let [hour_item, means_item] = item.encode(hour, shard, self.delete_after(hour))?;
            work.push((item.version, hour_item, means_item));
        }
        let outcomes: Vec<Option<(bool, HashMap<String, AttributeValue>)>> =
            futures::stream::iter(work)
                .map(|(version, item, means)| async move {
                    Ok::<_, BackendError>(
                        self.put_versioned(item, version, "live item")
                            .await?
                            .then_some((version == 0, means)),
                    )
                })
                .buffer_unordered(ITEMS_IN_FLIGHT)
                .try_collect()
                .await?;
        let raced = outcomes.iter().any(Option::is_none);
        let mut new_items = 0i64;
        let mut means = Vec::new();
        for (created, item) in outcomes.into_iter().flatten() {
            new_items += if created { 2 } else { 0 };
            let of = number::<u64>(&item, MEANS_OF).unwrap_or(0);
            means.push((item, of));
        }
        futures::stream::iter(means)
            .map(|(item, of)| self.put_means(item, of))
            .buffer_unordered(ITEMS_IN_FLIGHT)
            .try_collect::<()>()
            .await?;
        Ok((new_items, raced))
    }

    /// Puts a means item unless one made from a later hour item is there.
    async fn put_means(
        &self,
        item: HashMap<String, AttributeValue>,
        of: u64,
    ) -> Result<(), BackendError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#of) OR #of < :of")
            .expression_attribute_names("#of", MEANS_OF)
            .expression_attribute_values(":of", n(of));
        self.put_if(put, "means item").await.map(|_| ())
    }

    /// Moves a marker from `from` (what retention read) to `to`; left as it
    /// is when a writer moved it meanwhile (back to an hour it wrote), so
    /// that the next retention run starts there.
    async fn replace_marker(&self, marker: &str, from: i64, to: i64) -> Result<(), BackendError> {
        self.set_summary_number(marker, to, "#t = :from", Some(from))
            .await
    }

    /// The summary item's markers (`None` where unset): the first hour,
    /// the first with 5-minute values, the last hour.
    async fn markers(&self) -> Result<(Option<i64>, Option<i64>, Option<i64>), BackendError> {
        let item = self.summary_item().await?;
        Ok((
            number(&item, FIRST_HOUR),
            number(&item, FIRST_VALUES),
            number(&item, LAST_HOUR),
        ))
    }

    /// The readings of `query` (on `hour` or `5min`), hour by hour: each
    /// hour's 64 items read at once (only the part the series needs),
    /// filtered with [`Query::matches`] and sorted by time and sensor.
    pub(crate) async fn run_live_query(
        &self,
        query: &Query,
        tx: &mpsc::Sender<Result<Reading, BackendError>>,
    ) -> Result<(), BackendError> {
        let part = match query.resolution {
            Resolution::Hour => HOURS,
            _ => VALUES,
        };
        let first = hourly::hour_start(query.start).0;
        let last = hourly::hour_start(query.end).0;
        let mut pages = futures::stream::iter(hours(first, last))
            .map(|hour| self.hour_readings(hour, part, query))
            .buffered(HOURS_IN_FLIGHT);
        while let Some(page) = pages.next().await {
            for r in page? {
                if tx.send(Ok(r)).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn hour_readings(
        &self,
        hour: i64,
        part: &'static str,
        query: &Query,
    ) -> Result<Vec<Reading>, BackendError> {
        let items = self
            .hour_items((0..LATEST_SHARDS).map(|s| (hour, s)), false, &[part])
            .await?;
        let mut out: Vec<Reading> = items
            .into_values()
            .flat_map(|item| {
                if part == HOURS {
                    item.rows
                        .into_values()
                        .map(|row| row.reading)
                        .collect::<Vec<_>>()
                } else {
                    item.values.into_values().collect()
                }
            })
            .filter(|r| query.matches(r))
            .collect();
        out.sort_unstable_by_key(time_then_sensor);
        Ok(out)
    }

    /// `prune`: strips the 5-minute readings of the hours that end by
    /// `before` from their hour items (whole hours: up to an hour more is
    /// kept than on the embedded store), or deletes the hour items that
    /// start before it.
    pub(crate) async fn prune_live(
        &self,
        resolution: Resolution,
        before: Timestamp,
    ) -> Result<u64, BackendError> {
        let (first_hour, first_values, _) = self.markers().await?;
        match resolution {
            Resolution::Day => Ok(0),
            Resolution::FiveMin => {
                let Some(first) = first_values else {
                    return Ok(0);
                };
                // Whole hours only: the hours that end by `before` lose
                // all their values, the one holding `before` keeps them
                // until the next hour's prune. Stripping to the exact
                // time would rewrite that hour's 64 items at every run
                // (each run's cut moves by 5 minutes), which costs about
                // as much as the feed's own writes.
                let cut = hourly::hour_start(before).0;
                let mut removed = 0;
                let all: Vec<i64> = hours(first, cut - HOUR_SECS).collect();
                for chunk in all.chunks(PRUNE_HOURS) {
                    removed += self.strip_values(chunk, cut).await?;
                }
                if cut > first {
                    self.replace_marker(FIRST_VALUES, first, cut).await?;
                }
                Ok(removed)
            }
            Resolution::Hour => {
                let Some(first) = first_hour else {
                    return Ok(0);
                };
                let last = hourly::hour_start(Timestamp(before.0 - 1)).0;
                let mut removed = 0;
                let all: Vec<i64> = hours(first, last).collect();
                for chunk in all.chunks(PRUNE_HOURS) {
                    removed += self.delete_hours(chunk).await?;
                }
                if last >= first {
                    self.replace_marker(FIRST_HOUR, first, last + HOUR_SECS)
                        .await?;
                }
                Ok(removed)
            }
        }
    }

    /// Strips the 5-minute readings older than `before` from the items of
    /// `chunk`'s hours; returns how many.
    async fn strip_values(&self, chunk: &[i64], before: i64) -> Result<u64, BackendError> {
        let keys = chunk
            .iter()
            .flat_map(|&h| (0..LATEST_SHARDS).map(move |s| (h, s)));
        let mut redos = 0;
        let mut removed = 0u64;
        let mut pending: Vec<(i64, u32)> = keys.collect();
        while !pending.is_empty() {
            let items = self
                .hour_items(pending.iter().copied(), true, &[HOURS, VALUES])
                .await?;
            let mut changed = HashMap::new();
            let mut count: HashMap<(i64, u32), u64> = HashMap::new();
            for ((hour, shard), mut item) in items {
                let old: Vec<(u64, i64)> = item
                    .values
                    .iter()
                    .filter(|(_, v)| v.timestamp.0 < before)
                    .map(|(&k, _)| k)
                    .collect();
                if old.is_empty() {
                    continue;
                }
                for key in &old {
                    let Some(v) = item.values.remove(key) else {
                        continue;
                    };
                    let Some(row) = item.rows.get_mut(&key.0) else {
                        continue;
                    };
                    let stripped = row.stripped.get_or_insert_with(Stripped::default);
                    let (mut s1, mut s2) = stripped.sums();
                    s1.add(value_of(v.p1.as_deref()));
                    s2.add(value_of(v.p2.as_deref()));
                    let ((n1, c1), (n2, c2)) = (s1.parts(), s2.parts());
                    (stripped.s1, stripped.c1) = (n1.to_string(), c1);
                    (stripped.s2, stripped.c2) = (n2.to_string(), c2);
                    let mut quality = stripped.quality();
                    quality.add(v.flags, &v.air);
                    stripped.q = quality.to_text();
                    stripped.at.push(v.timestamp.0 - hour);
                }
                count.insert((hour, shard), old.len() as u64);
                changed.insert((hour, shard), item);
            }
            let dirty: BTreeSet<(i64, u32)> = changed.keys().copied().collect();
            let mut raced = Vec::new();
            for &(hour, shard) in &dirty {
                let Some(item) = changed.get(&(hour, shard)) else {
                    continue;
                };
                let [hour_item, _] = item.encode(hour, shard, self.delete_after(hour))?;
                if self
                    .put_versioned(hour_item, item.version, "live item")
                    .await?
                {
                    removed += count.get(&(hour, shard)).copied().unwrap_or(0);
                } else {
                    raced.push((hour, shard));
                }
            }
            if !raced.is_empty() {
                redos += 1;
                if redos > MAX_REDOS {
                    return Err(BackendError::Remote {
                        context: format!("DynamoDB live items on {}", self.table),
                        message: format!("retention gave up after losing {redos} races"),
                    });
                }
            }
            pending = raced;
        }
        Ok(removed)
    }

    /// Deletes the hour and means items of `chunk`'s hours; returns how
    /// many hourly rows they held.
    async fn delete_hours(&self, chunk: &[i64]) -> Result<u64, BackendError> {
        let keys: Vec<(i64, u32)> = chunk
            .iter()
            .flat_map(|&h| (0..LATEST_SHARDS).map(move |s| (h, s)))
            .collect();
        let hour_keys: Vec<_> = keys
            .iter()
            .map(|&(h, s)| live_key(HOUR_PREFIX, h, s))
            .collect::<Result<_, _>>()?;
        let found = self
            .get_items_with(hour_keys, true, &[PARTITION_KEY, SENSORS])
            .await?;
        let mut rows = 0u64;
        let mut requests = Vec::new();
        for item in &found {
            rows += number::<u64>(item, SENSORS).unwrap_or(0);
            let Some(AttributeValue::S(day)) = item.get(PARTITION_KEY) else {
                continue;
            };
            let Some((hour, shard)) = parse_key(day) else {
                continue;
            };
            for prefix in [HOUR_PREFIX, MEANS_PREFIX] {
                let delete = aws_sdk_dynamodb::types::DeleteRequest::builder()
                    .set_key(Some(live_key(prefix, hour, shard)?))
                    .build()
                    .map_err(|e| BackendError::Corrupt(format!("a delete request: {e}")))?;
                requests.push(WriteRequest::builder().delete_request(delete).build());
            }
        }
        if requests.is_empty() {
            return Ok(0);
        }
        self.write_all(requests).await?;
        self.count_latest_items(-(2 * found.len() as i64)).await?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(sensor: u64, ts: i64, p2: &str) -> Reading {
        Reading {
            id: Some(ts as u64),
            timestamp: Timestamp(ts),
            sensor_id: sensor,
            sensor_type: "SDS011".into(),
            loc_id: None,
            loc_country: "DE".into(),
            loc_lat: "48.800".into(),
            loc_long: "9.000".into(),
            loc_alt: "".into(),
            p1: None,
            p2: Some(p2.into()),
            indices: Indices::undefined(),
            samples: None,
            basis: Some(Basis::default()),
            flags: Default::default(),
            air: Default::default(),
        }
    }

    #[test]
    fn keys_name_the_hour_and_shard_and_parse_back() {
        // 2026-12-01 10:00:00 UTC.
        let hour = 1_796_119_200;
        let key = live_key(HOUR_PREFIX, hour, 7).expect("key");
        assert_eq!(key[PARTITION_KEY], s("#hour#2026-12-01T10#07"));
        assert_eq!(parse_key("#hour#2026-12-01T10#07"), Some((hour, 7)));
        assert_eq!(parse_key("#means#2026-12-01T10#63"), Some((hour, 63)));
        assert_eq!(parse_key("#latest#07"), None);
        assert_eq!(parse_key("2026-12-01"), None);
    }

    #[test]
    fn means_round_trip_in_sixteen_bytes_a_sensor() {
        let mut shard = HourShard::default();
        for (sensor, means) in [(1, (Some(1234), None)), (u64::MAX, (None, Some(0)))] {
            let mut row = shard.rows.get(&sensor).cloned();
            if row.is_none() {
                shard.values.insert((sensor, 0), value(sensor, 0, "1.00"));
                row = shard.rebuild(0, sensor);
            }
            let mut row = row.expect("a row");
            row.means = means;
            shard.rows.insert(sensor, row);
        }
        let bytes = encode_means(&shard.rows);
        assert_eq!(bytes.len(), 32);
        let back = decode_means(&bytes).expect("decode");
        assert_eq!(back[&1], (Some(1234), None));
        assert_eq!(back[&u64::MAX], (None, Some(0)));
        assert!(decode_means(&bytes[..31]).is_err());
    }

    #[test]
    fn a_row_is_rebuilt_from_its_values_and_what_was_stripped() {
        use airq_core::quality::{Flag, Flags};
        let hour = 3600 * 100;
        let mut shard = HourShard::default();
        // Nine values of 10.00 and one of 10.05 → 100.05 / 10 = 10.005 →
        // 10.01 (half up); ten values: valid (≥ 9).
        for k in 0..9 {
            shard
                .values
                .insert((5, hour + 300 * k), value(5, hour + 300 * k, "10.00"));
        }
        shard
            .values
            .insert((5, hour + 2700), value(5, hour + 2700, "10.05"));
        // The first indoors with a humidity of 80.00: the hour is indoor,
        // its humidity 80.00 (the only one); P1 is not sent.
        if let Some(first) = shard.values.get_mut(&(5, hour)) {
            first.flags = Flags::of(&[Flag::Indoor]);
            first.air.humidity = Some("80.00".into());
        }
        let row = shard.rebuild(hour, 5).expect("a row");
        assert_eq!(row.reading.flags, Flags::of(&[Flag::Indoor]));
        assert_eq!(row.reading.air.humidity.as_deref(), Some("80.00"));
        assert_eq!(row.reading.p2.as_deref(), Some("10.01"));
        assert_eq!(row.reading.samples, Some(10));
        assert_eq!(row.means, (None, Some(1001)));
        assert_eq!(row.last, hour + 2700);
        // Strip the first four values (40.00 over 4): the same hour.
        shard.rows.insert(5, row.clone());
        let stripped = Stripped {
            s1: "0".into(),
            c1: 0,
            s2: (40 * airq_core::mean::NANO).to_string(),
            c2: 4,
            at: vec![0, 300, 600, 900],
            // Indoor once, one humidity of 80.00 (`HourQuality::to_text`).
            q: "1 0 0 0|80000000000 1 0 0 0 0".into(),
        };
        for k in 0..4 {
            shard.values.remove(&(5, hour + 300 * k));
        }
        shard.rows.get_mut(&5).expect("row").stripped = Some(stripped.clone());
        let again = shard.rebuild(hour, 5).expect("a row");
        assert_eq!(again.reading, row.reading);
        assert_eq!(again.means, row.means);
        // A value of 20.00 arrives: (100.05 + 20) / 11 = 10.913… → 10.91.
        shard
            .values
            .insert((5, hour + 3000), value(5, hour + 3000, "20.00"));
        let late = shard.rebuild(hour, 5).expect("a row");
        assert_eq!(late.reading.p2.as_deref(), Some("10.91"));
        assert_eq!(late.reading.samples, Some(11));
    }

    #[test]
    fn an_hour_item_round_trips() {
        let hour = 3600 * 200;
        let mut shard = HourShard::default();
        shard.values.insert((9, hour), value(9, hour, "3.5"));
        let row = shard.rebuild(hour, 9).expect("row");
        shard.rows.insert(9, row);
        let [item, means] = shard.encode(hour, 3, 42).expect("encode");
        assert_eq!(item[VERSION], n(1));
        assert_eq!(item[SENSORS], n(1));
        assert_eq!(item[READINGS], n(1));
        assert_eq!(item[crate::schema::READINGS_TTL_ATTRIBUTE], n(42));
        assert_eq!(means[MEANS], item[MEANS]);
        let back = HourShard::decode("t", &item).expect("decode");
        assert_eq!(back.version, 1);
        assert_eq!(back.rows, shard.rows);
        assert_eq!(back.values, shard.values);
    }
}

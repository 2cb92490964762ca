//! Each sensor's latest reading, packed into a few shard items.
//!
//! One item per sensor (what this backend first did) costs a conditional
//! `PutItem` per sensor per batch, which is what made ingestion as slow as
//! the first system's one-by-one writer, and at the live tier's pace (every
//! sensor every 5 minutes) it would cost a write unit per sensor per feed,
//! all in one partition key. Instead the sensors are spread over
//! [`LATEST_SHARDS`] items by a fixed hash of their id ([`shard_of`]); each
//! item (partition `#latest#NN`, sort key `latest`) holds its sensors'
//! latest readings as one gzip-compressed JSON array (attribute
//! `readings`), a `version` number and a `sensors` count. DynamoDB bills a
//! write by the kilobyte, not by the reading, and each shard is its own
//! partition key, so rewriting the latest readings of 15,000 sensors costs
//! about 576 write units spread over 64 keys (docs/internals.md has the
//! arithmetic).
//!
//! Writing never moves a sensor back in time: a writer reads the shard,
//! merges in only readings at least as new as the stored ones, and writes
//! the shard back on condition that its `version` is still the one read;
//! a writer that lost the race reads again and merges again. The shard
//! items carry no `country_at` or `cell_key`, so they are in no index and
//! no date query reads them; `latest` reads every shard (one
//! `BatchGetItem`) and filters with [`LatestQuery::matches`], the reference
//! semantics.

use super::*;
use aws_sdk_dynamodb::primitives::Blob;
use std::io::{Read, Write};

/// Shard items the latest readings are spread over. Each holds about
/// 1/64 of the sensors, about 38 B a sensor packed (the shipped sample's
/// 4,928 sensors: 186,074 B): 15,000 sensors make items of about 9 KB;
/// DynamoDB's 400 KB item limit is reached near 650,000 sensors (checked
/// on every write, with an error that says so).
pub const LATEST_SHARDS: u32 = 64;
/// The sort key of every shard item.
const LATEST_SORT: &str = "latest";
/// The packed readings (binary: gzip of a JSON array of [`Entry`]).
const PACKED: &str = "readings";
/// How many sensors the item holds (for people reading the table).
const SENSORS: &str = "sensors";
/// DynamoDB's item size limit is 400 KB; this leaves room for the key and
/// the other attributes.
const MAX_PACKED_BYTES: usize = 390 * 1024;
/// Shard writes that lose the version race are retried this many times
/// (each after a fresh read) before the batch fails.
const MAX_RACES: u32 = 20;

/// The shard of a sensor: the splitmix64 finaliser of its id, modulo
/// [`LATEST_SHARDS`]. Fixed forever (stored items depend on it), and it
/// spreads consecutive ids evenly.
pub(crate) fn shard_of(sensor: u64) -> u32 {
    let mut z = sensor.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % u64::from(LATEST_SHARDS)) as u32
}

/// The partition key of the shard item holding `sensor`'s latest reading
/// (`#latest#07`): for tests and tools that look at the table.
pub fn latest_partition_of(sensor: u64) -> String {
    shard_partition(shard_of(sensor))
}

/// The partition key of a shard item: `#latest#07`.
pub(crate) fn shard_partition(shard: u32) -> String {
    format!("{LATEST_PARTITION}#{shard:02}")
}

/// Whether a partition key is a shard item's.
pub(crate) fn is_shard_partition(day: &str) -> bool {
    day.strip_prefix(LATEST_PARTITION)
        .and_then(|rest| rest.strip_prefix('#'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn shard_key(shard: u32) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PARTITION_KEY.to_owned(), s(shard_partition(shard))),
        (SORT_KEY.to_owned(), s(LATEST_SORT)),
    ])
}

/// One sensor's latest reading as packed: the reading's fields, short
/// names (they repeat for every sensor). The live tier's items pack their
/// readings the same way (`live.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    ts: i64,
    sensor: u64,
    #[serde(rename = "type")]
    sensor_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    loc: Option<u64>,
    country: String,
    lat: String,
    lon: String,
    alt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p2: Option<String>,
    /// In [`Index::ALL`]'s order.
    aqi: Vec<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    samples: Option<u32>,
    /// A live-tier reading's basis ([`airq_core::hourly::Basis::values`]);
    /// absent on a daily reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    basis: Option<[Option<u64>; 4]>,
    /// The data version this entry changed at (`version.rs`); absent on
    /// entries written before the store kept one, read as 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    ver: u64,
    /// The quality flags' bits; absent for none.
    #[serde(default, skip_serializing_if = "super::item::no_flags")]
    flags: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    temp: Option<String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Entry {
    pub(crate) fn of(r: &Reading, ver: u64) -> Entry {
        Entry {
            ver,
            id: r.id,
            ts: r.timestamp.0,
            sensor: r.sensor_id,
            sensor_type: r.sensor_type.clone(),
            loc: r.loc_id,
            country: r.loc_country.clone(),
            lat: r.loc_lat.clone(),
            lon: r.loc_long.clone(),
            alt: r.loc_alt.clone(),
            p1: r.p1.clone(),
            p2: r.p2.clone(),
            aqi: r.indices.values().to_vec(),
            samples: r.samples,
            basis: r.basis.map(|b| b.values()),
            flags: r.flags.bits(),
            rh: r.air.humidity.clone(),
            temp: r.air.temperature.clone(),
        }
    }

    /// The reading, with every index undefined when the entry's indices
    /// are not this version's (an item written before an index was
    /// added): the live tier recomputes them at the hour's next write.
    pub(crate) fn into_reading_or_undefined(mut self) -> Option<Reading> {
        if self.aqi.len() != Index::COUNT {
            self.aqi = Indices::undefined().values().to_vec();
        }
        self.into_reading().map(|(r, _)| r)
    }

    /// The reading and its data version, unless its indices are not this
    /// version's (an entry written before an index was added): then it is
    /// as if absent, and the sensor's next reading replaces it.
    pub(crate) fn into_reading(self) -> Option<(Reading, u64)> {
        let indices: [u16; Index::COUNT] = self.aqi.try_into().ok()?;
        let ver = self.ver;
        Some((
            Reading {
                id: self.id,
                timestamp: Timestamp(self.ts),
                sensor_id: self.sensor,
                sensor_type: self.sensor_type,
                loc_id: self.loc,
                loc_country: self.country,
                loc_lat: self.lat,
                loc_long: self.lon,
                loc_alt: self.alt,
                p1: self.p1,
                p2: self.p2,
                indices: Indices::from(indices),
                samples: self.samples,
                basis: self.basis.map(airq_core::hourly::Basis::from_values),
                // An entry whose flags this build does not know is as if
                // absent, as one whose indices are not this version's.
                flags: Flags::from_bits(self.flags)?,
                air: Air {
                    humidity: self.rh,
                    temperature: self.temp,
                },
            },
            ver,
        ))
    }
}

/// One shard as read: its version (0: no item yet; the condition of the
/// next write), its readings by sensor, and the data version each changed
/// at (absent: 0).
#[derive(Debug, Default)]
pub(crate) struct Shard {
    version: u64,
    pub(crate) readings: BTreeMap<u64, Reading>,
    pub(crate) versions: BTreeMap<u64, u64>,
}

/// Counts what merging `r` into a shard holding `old` for its sensor does
/// (kept: the stored one is newer; replaced: as new or newer; created), and
/// says whether the shard changes.
fn fate(out: &mut LatestWrites, old: Option<&Reading>, r: &Reading) -> bool {
    match old {
        Some(old) if old.timestamp > r.timestamp => {
            out.kept += 1;
            false
        }
        Some(old) => {
            out.replaced += 1;
            old != r
        }
        None => {
            out.created += 1;
            true
        }
    }
}

impl Shard {
    pub(crate) fn decode(
        table: &str,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<(u32, Shard), BackendError> {
        let day = match item.get(PARTITION_KEY) {
            Some(AttributeValue::S(d)) => d.as_str(),
            _ => "",
        };
        let corrupt = |why: String| {
            BackendError::Corrupt(format!(
                "DynamoDB table {table}, latest item {day:?}: {why}"
            ))
        };
        let shard = day
            .strip_prefix(LATEST_PARTITION)
            .and_then(|rest| rest.strip_prefix('#'))
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| corrupt("not a latest shard".into()))?;
        let version = match item.get(VERSION) {
            Some(AttributeValue::N(v)) => v
                .parse()
                .map_err(|_| corrupt(format!("version {v:?} is no number")))?,
            _ => return Err(corrupt("no version".into())),
        };
        let Some(AttributeValue::B(packed)) = item.get(PACKED) else {
            return Err(corrupt("no packed readings".into()));
        };
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(packed.as_ref())
            .read_to_end(&mut json)
            .map_err(|e| corrupt(format!("the packed readings do not decompress: {e}")))?;
        let entries: Vec<Entry> = serde_json::from_slice(&json)
            .map_err(|e| corrupt(format!("the packed readings do not decode: {e}")))?;
        let mut readings = BTreeMap::new();
        let mut versions = BTreeMap::new();
        for (r, ver) in entries.into_iter().filter_map(Entry::into_reading) {
            if ver > 0 {
                versions.insert(r.sensor_id, ver);
            }
            readings.insert(r.sensor_id, r);
        }
        Ok((
            shard,
            Shard {
                version,
                readings,
                versions,
            },
        ))
    }

    /// Merges in the readings at least as new as the stored ones, stamping
    /// each sensor it changes with data version `stamp`, and each of
    /// `incoming`'s sensors stamped `restamp` (a reservation that ran out,
    /// see `version.rs`) too; returns what happened to each sensor and
    /// whether anything changed.
    fn merge(
        &mut self,
        incoming: &BTreeMap<u64, Reading>,
        stamp: u64,
        restamp: Option<u64>,
    ) -> (LatestWrites, bool) {
        let mut out = LatestWrites::default();
        let mut changed = false;
        for r in incoming.values() {
            let sensor = r.sensor_id;
            if fate(&mut out, self.readings.get(&sensor), r) {
                self.readings.insert(sensor, r.clone());
                self.versions.insert(sensor, stamp);
                changed = true;
            }
            if restamp.is_some() && self.versions.get(&sensor).copied() == restamp {
                self.versions.insert(sensor, stamp);
                changed = true;
            }
        }
        (out, changed)
    }

    /// What [`Shard::merge`] would do with `incoming` (without a restamp),
    /// without doing it.
    fn preview(&self, incoming: &BTreeMap<u64, Reading>) -> (LatestWrites, bool) {
        let mut out = LatestWrites::default();
        let mut changed = false;
        for r in incoming.values() {
            changed |= fate(&mut out, self.readings.get(&r.sensor_id), r);
        }
        (out, changed)
    }

    /// The shard's item, one version on.
    fn encode(&self, shard: u32) -> Result<HashMap<String, AttributeValue>, BackendError> {
        let entries: Vec<Entry> = self
            .readings
            .values()
            .map(|r| Entry::of(r, self.versions.get(&r.sensor_id).copied().unwrap_or(0)))
            .collect();
        let json = serde_json::to_vec(&entries)
            .map_err(|e| BackendError::Corrupt(format!("encoding latest shard {shard}: {e}")))?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let packed = gz
            .write_all(&json)
            .and_then(|()| gz.finish())
            .map_err(|e| BackendError::Corrupt(format!("compressing latest shard {shard}: {e}")))?;
        if packed.len() > MAX_PACKED_BYTES {
            return Err(BackendError::Unsupported(format!(
                "latest shard {shard} would hold {} sensors in {} bytes, over DynamoDB's 400 KB \
                 item limit: this many sensors needs more than {LATEST_SHARDS} latest shards",
                self.readings.len(),
                packed.len()
            )));
        }
        let mut item = shard_key(shard);
        item.insert(PACKED.to_owned(), AttributeValue::B(Blob::new(packed)));
        item.insert(VERSION.to_owned(), n(self.version + 1));
        item.insert(SENSORS.to_owned(), n(self.readings.len()));
        Ok(item)
    }
}

impl DynamoReadingStore {
    /// Reads the given shards (one `BatchGetItem` per 100), decoded. A
    /// shard with no item is absent from the answer.
    pub(crate) async fn shards(
        &self,
        shards: impl IntoIterator<Item = u32>,
        consistent: bool,
    ) -> Result<HashMap<u32, Shard>, BackendError> {
        let keys: Vec<_> = shards.into_iter().map(shard_key).collect();
        self.get_items(keys, consistent)
            .await?
            .iter()
            .map(|item| Shard::decode(&self.table, item))
            .collect()
    }

    /// Brings the latest reading of every sensor in `readings` up to the
    /// newest of its readings there, shard by shard (see the module
    /// documentation), under a data version reserved when anything
    /// changes (`version.rs`), then counts new shard items on the summary
    /// item.
    pub(crate) async fn put_latest(
        &self,
        readings: impl IntoIterator<Item = Reading>,
    ) -> Result<LatestWrites, BackendError> {
        let mut by_shard: BTreeMap<u32, BTreeMap<u64, Reading>> = BTreeMap::new();
        for r in readings {
            let newest = by_shard.entry(shard_of(r.sensor_id)).or_default();
            match newest.get(&r.sensor_id) {
                Some(have) if have.timestamp > r.timestamp => {}
                _ => {
                    newest.insert(r.sensor_id, r);
                }
            }
        }
        if by_shard.is_empty() {
            return Ok(LatestWrites::default());
        }
        let stored = self.shards(by_shard.keys().copied(), true).await?;
        // A version is reserved only when something changes, so a repeated
        // batch moves no reader: a preview of the merge tells.
        let mut dry = LatestWrites::default();
        let mut changes = false;
        let empty = Shard::default();
        for (shard, incoming) in &by_shard {
            let (w, changed) = stored.get(shard).unwrap_or(&empty).preview(incoming);
            dry.add(w);
            changes |= changed;
        }
        if !changes {
            return Ok(dry);
        }
        let mut reservation = self.reserve_version().await?;
        // On an error the reservation is released all the same: what was
        // written is whole, and readers must not wait on it for the lease.
        let written = self
            .merge_shards(&by_shard, Some(stored), reservation.version, None)
            .await;
        let (out, new_items) = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = self.release_version(reservation).await;
                return Err(e);
            }
        };
        // A writer slower than its reservation's lease may have been passed
        // by a reader: it stamps its sensors again under a new version
        // (bounded: each round is a fresh lease).
        let mut rounds = 0;
        while !reservation.holds() {
            rounds += 1;
            let again = if rounds > 3 {
                Err(BackendError::Remote {
                    context: format!("DynamoDB latest shards on {}", self.table),
                    message: "writing the latest shards took longer than the data version's \
                              lease three times over"
                        .into(),
                })
            } else {
                self.reserve_version().await
            };
            let again = match again {
                Ok(again) => again,
                Err(e) => {
                    let _ = self.release_version(reservation).await;
                    return Err(e);
                }
            };
            let restamped = self
                .merge_shards(&by_shard, None, again.version, Some(reservation.version))
                .await;
            let _ = self.release_version(reservation).await;
            reservation = again;
            if let Err(e) = restamped {
                let _ = self.release_version(reservation).await;
                return Err(e);
            }
        }
        self.release_version(reservation).await?;
        if new_items > 0 {
            self.count_latest_items(i64::try_from(new_items).unwrap_or(i64::MAX))
                .await?;
        }
        Ok(out)
    }

    /// Merges each shard's incoming readings (into `stored`, or what is
    /// read now) and writes the shards that changed, a few at a time;
    /// returns the sum of what happened and how many shard items are new.
    async fn merge_shards(
        &self,
        by_shard: &BTreeMap<u32, BTreeMap<u64, Reading>>,
        stored: Option<HashMap<u32, Shard>>,
        stamp: u64,
        restamp: Option<u64>,
    ) -> Result<(LatestWrites, u64), BackendError> {
        let mut stored = match stored {
            Some(stored) => stored,
            None => self.shards(by_shard.keys().copied(), true).await?,
        };
        let work: Vec<_> = by_shard
            .iter()
            .map(|(&shard, incoming)| (shard, incoming.clone(), stored.remove(&shard)))
            .collect();
        let outcomes: Vec<(LatestWrites, bool)> = futures::stream::iter(work)
            .map(|(shard, incoming, have)| self.merge_shard(shard, incoming, have, stamp, restamp))
            .buffer_unordered(LATEST_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut out = LatestWrites::default();
        let mut new_items = 0u64;
        for (w, created) in outcomes {
            out.add(w);
            new_items += u64::from(created);
        }
        Ok((out, new_items))
    }

    /// Adds `delta` to the summary item's count of items that are no
    /// readings (latest shards; old per-sensor latest items).
    pub(crate) async fn count_latest_items(&self, delta: i64) -> Result<(), BackendError> {
        self.add_to_summary(LATEST_COUNT, delta).await
    }

    /// Adds `delta` to the summary item's number `name` (a count of the
    /// items that are no readings: [`LATEST_COUNT`], the segment days).
    pub(crate) async fn add_to_summary(&self, name: &str, delta: i64) -> Result<(), BackendError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::summary_key()))
            .update_expression("ADD #n :n")
            .expression_attribute_names("#n", name)
            .expression_attribute_values(":n", n(delta))
            .send()
            .await
            .map_err(|e| {
                remote(
                    format!("DynamoDB UpdateItem (summary) on {}", self.table),
                    e,
                )
            })?;
        Ok(())
    }

    /// Merges one shard's incoming readings into what is stored and writes
    /// it back if anything changed, conditioned on the version read;
    /// returns what happened to each sensor and whether the item is new.
    async fn merge_shard(
        &self,
        shard: u32,
        incoming: BTreeMap<u64, Reading>,
        mut have: Option<Shard>,
        stamp: u64,
        restamp: Option<u64>,
    ) -> Result<(LatestWrites, bool), BackendError> {
        let context = || format!("DynamoDB PutItem (latest shard {shard}) on {}", self.table);
        let mut races = 0;
        loop {
            let mut current = have.take().unwrap_or_default();
            let (out, changed) = current.merge(&incoming, stamp, restamp);
            if !changed {
                return Ok((out, false));
            }
            let item = current.encode(shard)?;
            if self
                .put_versioned(item, current.version, &format!("latest shard {shard}"))
                .await?
            {
                return Ok((out, current.version == 0));
            }
            // Another writer got there first: merge into what it wrote.
            races += 1;
            if races >= MAX_RACES {
                return Err(BackendError::Remote {
                    context: context(),
                    message: format!("gave up after losing {races} races with other writers"),
                });
            }
            have = self.shards([shard], true).await?.remove(&shard);
        }
    }

    /// The packed size in bytes of each latest shard item there is, and
    /// the sensors it holds (for the cost figures in BENCHMARKS.md).
    pub async fn latest_shard_sizes(&self) -> Result<Vec<(usize, u64)>, BackendError> {
        let keys: Vec<_> = (0..LATEST_SHARDS).map(shard_key).collect();
        let items = self.get_items(keys, false).await?;
        Ok(items
            .iter()
            .map(|item| {
                let bytes = match item.get(PACKED) {
                    Some(AttributeValue::B(b)) => b.as_ref().len(),
                    _ => 0,
                };
                let sensors = match item.get(SENSORS) {
                    Some(AttributeValue::N(v)) => v.parse().unwrap_or(0),
                    _ => 0,
                };
                (bytes, sensors)
            })
            .collect())
    }

    /// Every latest reading `latest` matches, in sensor id order: every
    /// shard is read (one `BatchGetItem`), and only the matching readings
    /// are kept while the rest are decoded.
    pub(crate) async fn run_latest(
        &self,
        latest: &LatestQuery,
        tx: &mpsc::Sender<Result<Reading, BackendError>>,
    ) -> Result<(), BackendError> {
        let shards = self.shards(0..LATEST_SHARDS, false).await?;
        let mut matching: Vec<Reading> = shards
            .into_values()
            .flat_map(|s| s.readings.into_values())
            .filter(|r| latest.matches(r))
            .collect();
        matching.sort_unstable_by_key(|r| r.sensor_id);
        for r in matching {
            if tx.send(Ok(r)).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(sensor: u64, ts: i64) -> Reading {
        Reading {
            id: Some(7),
            timestamp: Timestamp(ts),
            sensor_id: sensor,
            sensor_type: "SDS011".into(),
            loc_id: None,
            loc_country: "DE".into(),
            loc_lat: "48.800".into(),
            loc_long: "9.000".into(),
            loc_alt: "".into(),
            p1: Some("12.5".into()),
            p2: None,
            indices: Indices::from([2, 50, 1]),
            samples: Some(3),
            basis: None,
            flags: Default::default(),
            air: Default::default(),
        }
    }

    #[test]
    fn shards_spread_consecutive_sensors_evenly() {
        let mut counts = [0u32; LATEST_SHARDS as usize];
        for sensor in 0..15_000u64 {
            counts[shard_of(sensor) as usize] += 1;
        }
        // 15,000 / 64 = 234.4 a shard.
        let (min, max) = (
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
        );
        assert!(min >= 180 && max <= 290, "{min}..{max}");
        // Fixed forever: stored items depend on it.
        assert_eq!(shard_of(0), shard_of(0));
        assert_eq!(shard_partition(7), "#latest#07");
        assert!(is_shard_partition("#latest#07"));
        assert!(!is_shard_partition("#latest"));
        assert!(!is_shard_partition("#summary"));
    }

    #[test]
    fn a_shard_round_trips_through_its_item() {
        let mut shard = Shard::default();
        for r in [reading(1, 100), reading(99, 200)] {
            shard.readings.insert(r.sensor_id, r);
        }
        let item = shard.encode(5).expect("encode");
        assert_eq!(item[VERSION], n(1));
        assert_eq!(item[SENSORS], n(2));
        let (number, back) = Shard::decode("t", &item).expect("decode");
        assert_eq!(number, 5);
        assert_eq!(back.version, 1);
        assert!(back.readings == shard.readings);
    }

    #[test]
    fn an_entry_of_another_index_count_is_as_if_absent() {
        let mut e = Entry::of(&reading(1, 100), 3);
        e.aqi.push(4);
        assert!(e.into_reading().is_none());
    }
}

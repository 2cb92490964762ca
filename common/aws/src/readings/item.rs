//! A reading as a DynamoDB item: the key attributes (`day`, `at_sensor`,
//! `country_at`, `cell_key`) and the rest of the reading packed into one
//! attribute ([`READING`], [`Packed`]).
//!
//! Why packed: DynamoDB bills an item by its bytes, whatever its
//! attributes, but every attribute is a name, a type and a value to
//! encode, send, parse and check on both sides; five attributes instead of
//! eighteen made writing the shipped sample on moto, which spends most of
//! its time per attribute, 1.8× as fast (BENCHMARKS.md, "AWS backend on
//! moto"), and the items a fifth smaller. Nothing filters on the reading's
//! fields in DynamoDB: a filter expression never lowered the read units
//! (they are billed before it), and every answer is decided by
//! [`Query::matches`] on the decoded reading anyway.
//!
//! Items written before (the fields as attributes under the embedded
//! schema's names, each index a number attribute named by
//! [`index_attribute`]: [`ReadingItem`]) are still read, without a
//! migration, and such a table keeps getting that shape until it is
//! marked ([`ITEMS_PACKED`]); `put_one`, the first system's writer kept
//! for comparison, writes that shape.

use super::*;

/// The UTC day (`YYYY-MM-DD`) of a timestamp and its second in that day.
pub fn day_of(ts: Timestamp) -> Result<(String, i64), BackendError> {
    Ok((day_name(ts.0.div_euclid(DAY))?, ts.0.rem_euclid(DAY)))
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
pub(crate) fn day_name(day: i64) -> Result<String, BackendError> {
    day.checked_mul(DAY)
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|d| d.format("%Y-%m-%d").to_string())
        .ok_or_else(|| BackendError::Corrupt(format!("day {day} is out of range")))
}

/// The attribute of a reading item holding the reading packed ([`Packed`]).
pub(crate) const READING: &str = "reading";

/// The summary item's mark that readings are written packed. An airq
/// before packing reads a packed item wrongly (its country filter drops
/// it, its other queries fail on it), so on a table that held readings
/// before, the unpacked shape is written until `airq-deploy migrate
/// --pack-readings`, run once every binary of the deployment reads both
/// shapes, sets the mark; a table no airq has written before is marked by
/// this airq's first write (`DynamoReadingStore::writes_packed`).
pub(crate) const ITEMS_PACKED: &str = "items_packed";

/// A reading's fields but its identity, as a JSON array in this order:
/// what a reading item holds beside its keys, which give the rest (the
/// timestamp from `day` and `at_sensor`, the sensor from `at_sensor`, the
/// country from `country_at`). Positional, because the names would repeat
/// in every item: the shipped sample's items are 213 B on average this
/// way, 266 B with a named attribute per field (DynamoDB bills reads by
/// the byte), e.g. `[null,"SDS011",2213,"48.77","9.18","",
/// "20","9.1",[2,51,2],null,0,null,null]`. Never reordered: a new field
/// goes at the end with `#[serde(default)]`. A new index lengthens the
/// indices' array at its end: an item packed before it is read with the
/// missing value computed from P1 and P2 (as ingestion computes it; no
/// key of a packed item depends on an index, so nothing else is
/// missing), and values past [`Index::COUNT`], from a newer release, are
/// left alone ([`indices_of_packed`]).
#[derive(Debug, Serialize, Deserialize)]
struct Packed(
    /// The feed's reading id.
    Option<u64>,
    /// The sensor type.
    String,
    /// The location id.
    Option<u64>,
    /// Latitude, longitude, altitude: the exact text sent.
    String,
    String,
    String,
    /// P1 and P2: the exact text sent.
    Option<String>,
    Option<String>,
    /// Each index's value, in [`Index::ALL`]'s order (of the release
    /// that packed it: fewer or more values than [`Index::COUNT`] are read).
    Vec<u16>,
    /// Measurements a backfilled daily mean averages.
    Option<u32>,
    /// The quality flags' bits ([`Flags::bits`]).
    u16,
    /// The station's humidity and temperature, as sent.
    Option<String>,
    Option<String>,
);

/// A reading's item as written: its keys and the reading packed
/// ([`READING`]). The reading's basis is not kept (the daily series has
/// none; the live tier's readings are in the live items).
pub(crate) fn packed_item(r: &Reading) -> Result<HashMap<String, AttributeValue>, BackendError> {
    let (day, second) = day_of(r.timestamp)?;
    let packed = serde_json::to_string(&Packed(
        r.id,
        r.sensor_type.clone(),
        r.loc_id,
        r.loc_lat.clone(),
        r.loc_long.clone(),
        r.loc_alt.clone(),
        r.p1.clone(),
        r.p2.clone(),
        r.indices.values().to_vec(),
        r.samples,
        r.flags.bits(),
        r.air.humidity.clone(),
        r.air.temperature.clone(),
    ))
    .map_err(|e| BackendError::Corrupt(format!("encoding a reading: {e}")))?;
    Ok(HashMap::from([
        (
            CELL_KEY.to_owned(),
            s(cell_key(&day, &r.loc_lat, &r.loc_long)),
        ),
        (
            COUNTRY_SORT_KEY.to_owned(),
            s(country_sort_key(&r.loc_country, second, r.sensor_id)),
        ),
        (SORT_KEY.to_owned(), s(sort_key(second, r.sensor_id))),
        (PARTITION_KEY.to_owned(), s(day)),
        (READING.to_owned(), s(packed)),
    ]))
}

/// The reading of an item of either shape: packed ([`packed_item`]) or
/// with the fields as attributes ([`ReadingItem`]). The error names the
/// item and what does not decode.
pub(crate) fn reading_of_item(
    table: &str,
    mut item: HashMap<String, AttributeValue>,
) -> Result<Reading, BackendError> {
    // The item's name in an error, made only for one: every item of an
    // answer passes here.
    let what = |item: &HashMap<String, AttributeValue>| {
        format!(
            "{} {}",
            text(item, PARTITION_KEY).unwrap_or("?"),
            text(item, SORT_KEY).unwrap_or("?")
        )
    };
    let corrupt = |what: String, e: String| {
        BackendError::Corrupt(format!("a reading in {table} ({what}): {e}"))
    };
    match item.remove(READING) {
        None => {
            // Decoding takes the item: its name first (the older shape).
            let name = what(&item);
            ReadingItem::decode(item)
                .map_err(|e| corrupt(name, e))?
                .into_reading(table)
        }
        Some(AttributeValue::S(packed)) => {
            unpack(&item, &packed).map_err(|e| corrupt(what(&item), e))
        }
        Some(_) => Err(corrupt(
            what(&item),
            format!("its {READING} attribute is not text"),
        )),
    }
}

/// A text attribute of an item.
fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Result<&'a str, String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(format!("its {name} is missing or not text")),
    }
}

/// The reading of a packed item: its keys and `packed`, its [`READING`].
fn unpack(item: &HashMap<String, AttributeValue>, packed: &str) -> Result<Reading, String> {
    let (day, at, country_at) = (
        text(item, PARTITION_KEY)?,
        text(item, SORT_KEY)?,
        text(item, COUNTRY_SORT_KEY)?,
    );
    let (second, sensor) = at
        .split_once('#')
        .and_then(|(s, id)| Some((s.parse::<i64>().ok()?, id.parse::<u64>().ok()?)))
        .filter(|&(second, _)| (0..DAY).contains(&second))
        .ok_or_else(|| format!("its {SORT_KEY} {at:?} is not SSSSS#SENSOR"))?;
    let country = country_at
        .strip_suffix(at)
        .and_then(|c| c.strip_suffix('#'))
        .ok_or_else(|| format!("its {COUNTRY_SORT_KEY} {country_at:?} does not end in {at:?}"))?;
    let midnight = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_err(|e| format!("its {PARTITION_KEY} {day:?}: {e}"))?
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp();
    let p: Packed = serde_json::from_str(packed).map_err(|e| format!("its {READING}: {e}"))?;
    let flags = flags_of(p.10).map_err(|e| e.to_string())?;
    let indices = indices_of_packed(&p.8, p.6.as_deref(), p.7.as_deref())?;
    Ok(Reading {
        id: p.0,
        timestamp: Timestamp(midnight + second),
        sensor_id: sensor,
        sensor_type: p.1,
        loc_id: p.2,
        loc_country: country.to_owned(),
        loc_lat: p.3,
        loc_long: p.4,
        loc_alt: p.5,
        p1: p.6,
        p2: p.7,
        indices,
        samples: p.9,
        basis: None,
        flags,
        air: Air {
            humidity: p.11,
            temperature: p.12,
        },
    })
}

/// A packed item's indices: `stored` in [`Index::ALL`]'s order as far as
/// it goes (an item packed by a newer release may hold more, which this
/// one does not know), the ones packed after it computed from `p1` and
/// `p2` as ingestion computes them ([`Indices::of_text`]).
fn indices_of_packed(
    stored: &[u16],
    p1: Option<&str>,
    p2: Option<&str>,
) -> Result<Indices, String> {
    let kept = |index: Index| stored.get(index.position()).copied();
    if let Ok(all) = Indices::try_from_fn(|index| kept(index).ok_or(())) {
        return Ok(all);
    }
    let computed = Indices::of_text(p1, p2).ok_or_else(|| {
        format!(
            "it holds {} of the {} indices and no P1 or P2 to compute the others from",
            stored.len(),
            Index::COUNT
        )
    })?;
    Ok(Indices::from_fn(|index| {
        kept(index).unwrap_or_else(|| computed.get(index))
    }))
}

/// The table key of a reading's item (either shape).
pub(crate) fn key_of(r: &Reading) -> Result<HashMap<String, AttributeValue>, BackendError> {
    let (day, second) = day_of(r.timestamp)?;
    Ok(HashMap::from([
        (PARTITION_KEY.to_owned(), s(day)),
        (SORT_KEY.to_owned(), s(sort_key(second, r.sensor_id))),
    ]))
}

/// The `by_country` index's sort key: the country, then the sort key.
fn country_sort_key(country: &str, second: i64, sensor: u64) -> String {
    format!("{country}#{}", sort_key(second, sensor))
}

/// The sort key: the second of the day, then the sensor.
fn sort_key(second: i64, sensor: u64) -> String {
    format!("{second:05}#{sensor:020}")
}

/// The `cell_key` of a reading of `day` at the stored coordinates.
pub(crate) fn cell_key(day: &str, lat: &str, lon: &str) -> String {
    cell_key_of(day, cell_of_text(lat, lon))
}

pub(crate) fn cell_key_of(day: &str, cell: u32) -> String {
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

/// A reading as a DynamoDB item of the shape before [`packed_item`]: the
/// attribute names of the embedded schema and the CSV, measurements and
/// coordinates as the exact text sent. Still read (tables written before
/// hold such items), and written only by `put_one`.
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
    /// The quality flags' bits ([`Flags::bits`]); absent for none.
    #[serde(default, skip_serializing_if = "no_flags")]
    pub(crate) flags: u16,
    /// The station's humidity and temperature as sent; absent for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) humidity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) temperature: Option<String>,
}

pub(crate) fn no_flags(bits: &u16) -> bool {
    *bits == 0
}

/// The flags of stored bits; an error for a bit this build does not know.
pub(crate) fn flags_of(bits: u16) -> Result<Flags, BackendError> {
    Flags::from_bits(bits).ok_or_else(|| {
        BackendError::Corrupt(format!(
            "the flags of a reading: bits {bits:#x} name a flag this build does not know"
        ))
    })
}

impl ReadingItem {
    /// The item of a reading in its day partition.
    pub(crate) fn of(r: &Reading) -> Result<ReadingItem, BackendError> {
        let (day, second) = day_of(r.timestamp)?;
        Ok(Self::keyed(
            r,
            cell_key(&day, &r.loc_lat, &r.loc_long),
            sort_key(second, r.sensor_id),
            country_sort_key(&r.loc_country, second, r.sensor_id),
            day,
        ))
    }

    pub(crate) fn keyed(
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
            flags: r.flags.bits(),
            humidity: r.air.humidity.clone(),
            temperature: r.air.temperature.clone(),
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
    /// the `by_cell` index, so place queries would quietly leave it out. A
    /// clear failure until `airq-deploy migrate` has run is better than
    /// answers that look right and are not.
    pub(crate) fn into_reading(self, table: &str) -> Result<Reading, BackendError> {
        let Ok(indices) = Indices::try_from_fn(|index| self.indices[index.position()].ok_or(()))
        else {
            return Err(not_migrated(table, &self.day, &self.at_sensor));
        };
        self.into_reading_with(indices)
    }

    pub(crate) fn into_reading_with(self, indices: Indices) -> Result<Reading, BackendError> {
        Ok(Reading {
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
            basis: None,
            flags: flags_of(self.flags)?,
            air: Air {
                humidity: self.humidity,
                temperature: self.temperature,
            },
        })
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use airq_core::place::cell;
    /// A reading of sensor `sensor` at `ts`, in Stuttgart.
    pub(crate) fn reading(ts: i64, sensor: u64) -> Reading {
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
            basis: None,
            flags: Default::default(),
            air: Default::default(),
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
    }
    #[test]
    fn packed_items_hold_the_keys_and_the_reading() {
        let mut r = reading(1_528_058_572, 42);
        r.loc_id = Some(7);
        r.samples = Some(24);
        r.air.humidity = Some("81.5".into());
        r.flags = Flags::from_bits(1).unwrap();
        let item = packed_item(&r).unwrap();
        // 1_528_058_572 is 2018-06-03 20:42:52 UTC: second 74,572 of the day.
        let at = "74572#00000000000000000042";
        assert_eq!(item[PARTITION_KEY], s("2018-06-03"));
        assert_eq!(item[SORT_KEY], s(at));
        assert_eq!(item[COUNTRY_SORT_KEY], s(format!("DE#{at}")));
        assert_eq!(
            item[CELL_KEY],
            s(format!("2018-06-03#{}", cell(48.78, 9.18)))
        );
        // Five attributes, whatever the reading holds.
        assert_eq!(item.len(), 5, "{item:?}");
        let AttributeValue::S(packed) = &item[READING] else {
            panic!("{item:?}")
        };
        // The fields but the identity, in `Packed`'s order.
        assert_eq!(
            packed,
            r#"[null,"SDS011",7,"48.78","9.18","","20","9.1",[2,51,2],24,1,"81.5",null]"#
        );
        assert_eq!(key_of(&r).unwrap().len(), 2);
        assert_eq!(key_of(&r).unwrap()[SORT_KEY], s(at));
        assert_eq!(reading_of_item("t", item).unwrap(), r);
    }
    #[test]
    fn packed_items_read_back_at_the_edges() {
        // A country code holding '#', every optional field set, and the
        // first and last second of days before and after 1970.
        for ts in [-86_400, -1, 0, 86_399, 1_528_070_399] {
            let mut r = reading(ts, u64::MAX);
            r.loc_country = "DE#X".into();
            r.id = Some(7);
            r.loc_id = Some(8);
            r.samples = Some(1);
            r.air.humidity = Some("99".into());
            r.air.temperature = Some("-3.5".into());
            let item = packed_item(&r).unwrap();
            assert_eq!(reading_of_item("t", item).unwrap(), r, "{ts}");
        }
        // 1969-12-31 23:59:59 is second 86,399 of day -1.
        let item = packed_item(&reading(-1, 1)).unwrap();
        assert_eq!(item[PARTITION_KEY], s("1969-12-31"));
        assert_eq!(item[SORT_KEY], s("86399#00000000000000000001"));
    }
    #[test]
    fn both_shapes_read_back_alike() {
        let r = reading(1_528_058_572, 42);
        let old = ReadingItem::of(&r).unwrap().encode().unwrap();
        assert!(!old.contains_key(READING));
        assert_eq!(reading_of_item("t", old).unwrap(), r);
        assert_eq!(reading_of_item("t", packed_item(&r).unwrap()).unwrap(), r);
    }
    #[test]
    fn a_packed_item_this_build_cannot_read_says_which() {
        let r = reading(1_528_058_572, 42);
        let mut item = packed_item(&r).unwrap();
        // Too few indices, and no P1 or P2 to compute the others from.
        item.insert(
            READING.into(),
            s(r#"[null,"SDS011",null,"48.78","9.18","",null,null,[2],null,0,null,null]"#),
        );
        let err = reading_of_item("T", item.clone()).unwrap_err().to_string();
        assert!(
            err.contains("in T (2018-06-03 74572#") && err.contains("1 of the 3 indices"),
            "{err}"
        );
        // A flag this build does not know.
        item.insert(
            READING.into(),
            s(r#"[null,"SDS011",null,"48.78","9.18","","20","9.1",[2,51,2],null,32768,null,null]"#),
        );
        let err = reading_of_item("T", item.clone()).unwrap_err().to_string();
        assert!(err.contains("0x8000") && err.contains("flag"), "{err}");
        // Keys that do not agree.
        let mut odd = packed_item(&r).unwrap();
        odd.insert(COUNTRY_SORT_KEY.into(), s("DE#74573#00000000000000000042"));
        let err = reading_of_item("T", odd).unwrap_err().to_string();
        assert!(err.contains("does not end in"), "{err}");
        item.insert(READING.into(), s("{"));
        let err = reading_of_item("T", item.clone()).unwrap_err().to_string();
        assert!(
            err.contains("74572#") && err.contains("its reading: "),
            "{err}"
        );
        item.insert(READING.into(), n(3));
        let err = reading_of_item("T", item).unwrap_err().to_string();
        assert!(err.contains("its reading attribute is not text"), "{err}");
    }
    #[test]
    fn items_packed_with_fewer_or_more_indices_read() {
        let r = reading(1_528_058_572, 42);
        let mut item = packed_item(&r).unwrap();
        let with = |indices: &str| {
            s(format!(
                r#"[null,"SDS011",null,"48.78","9.18","","20","9.1",{indices},null,0,null,null]"#
            ))
        };
        // Packed before the US EPA AQI and the EAQI: the DAQI as stored
        // (7, not what P1 and P2 give), the others computed from P1 20 and
        // P2 9.1 µg/m³: US EPA 51 (PM2.5 9.1 opens "Moderate", 51–100, of
        // the 2024 breakpoints), EAQI 2 (PM10 15–45 and PM2.5 5–15: "Fair").
        item.insert(READING.into(), with("[7]"));
        assert_eq!(
            reading_of_item("t", item.clone()).unwrap().indices,
            Indices::from([7, 51, 2])
        );
        // Packed by a release with an index more: this one's three.
        item.insert(READING.into(), with("[3,52,1,9]"));
        assert_eq!(
            reading_of_item("t", item).unwrap().indices,
            Indices::from([3, 52, 1])
        );
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
}

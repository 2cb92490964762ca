//! Parser and validator for the Sensor.Community JSON feeds (`data.json`,
//! `data.1h.json`, `data.24h.json`, `data.dust.min.json`; one schema).
//!
//! The feed is tens of MB. The caller holds the document once, as bytes; the
//! parser walks the top-level array with a streaming visitor and borrows each
//! entry from that buffer (`&RawValue`), so no `serde_json::Value` is built
//! and nothing but the accepted readings is allocated. Each entry is decoded
//! on its own, which is what lets one malformed entry be counted and skipped
//! instead of aborting the run.

use crate::aqi;
use crate::reading::{Reading, Timestamp};
use serde::de::{Deserializer as _, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// `value_type` of a PM10 value: Sensor.Community's firmware and API call
/// PM10 `P1`.
pub const PM10_TYPE: &str = "P1";
/// `value_type` of a PM2.5 value, `P2`.
pub const PM25_TYPE: &str = "P2";

/// PM2.5 at or above this is the SDS011's saturation rail, not a measurement.
pub const PM25_RAIL: f64 = 999.9;
/// PM10 at or above this is the SDS011's saturation rail.
pub const PM10_RAIL: f64 = 1999.9;

/// Why an entry was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rejection {
    /// Not an object of the feed's shape (missing `location`, `sensor`, ...).
    Malformed,
    /// `timestamp` missing or not `YYYY-MM-DD HH:MM:SS`.
    BadTimestamp,
    /// Neither `P1` nor `P2` present (e.g. a temperature-only sensor).
    NoParticulates,
    /// A `P1`/`P2` value that is not a number (`"unavailable"`, `null`, ...).
    NonNumeric,
    /// A negative `P1`/`P2`.
    Negative,
    /// `NaN` or infinite.
    NonFinite,
    /// At the SDS011 saturation rail (PM2.5 >= 999.9 or PM10 >= 1999.9).
    Saturated,
}

impl Rejection {
    pub const ALL: [Rejection; 7] = [
        Rejection::Malformed,
        Rejection::BadTimestamp,
        Rejection::NoParticulates,
        Rejection::NonNumeric,
        Rejection::Negative,
        Rejection::NonFinite,
        Rejection::Saturated,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed entry",
            Rejection::BadTimestamp => "bad timestamp",
            Rejection::NoParticulates => "no P1/P2 value",
            Rejection::NonNumeric => "non-numeric value",
            Rejection::Negative => "negative value",
            Rejection::NonFinite => "non-finite value",
            Rejection::Saturated => "sensor saturated",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The document as a whole could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("feed is not a JSON array of entries: {0}")]
    NotAnArray(String),
    #[error("feed is not valid JSON after {entries} entries: {source}")]
    Syntax {
        entries: u64,
        #[source]
        source: serde_json::Error,
    },
}

/// Counts of one parse: every entry read is either accepted or rejected for
/// exactly one reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedStats {
    pub entries: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<Rejection, u64>,
}

impl FeedStats {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub fn rejected(&self, why: Rejection) -> u64 {
        self.rejected.get(&why).copied().unwrap_or(0)
    }

    pub fn merge(&mut self, other: &FeedStats) {
        self.entries += other.entries;
        self.accepted += other.accepted;
        for (k, v) in &other.rejected {
            *self.rejected.entry(*k).or_default() += v;
        }
    }
}

// ---- the feed's wire shape ----
//
// These structs are the project's one declaration of the feed's JSON shape:
// the parser reads entries with them, and `airq-master synth` reads its
// template and writes the entries it generates with them (serde writes the
// fields in declaration order, which is the feed's own), so what is written
// cannot drift from what is read. Deserializing borrows from the document.
//
// `Skipped` is the type of the fields the parser has no use for (a sensor
// type's `id` and `manufacturer`, a value's `id`). The parser reads them as
// `IgnoredAny`, which costs about what an unknown key costs and accepts any
// value or none (a repeated key is malformed, as for every declared key);
// readers and writers that need them take the default, their raw JSON.

/// One entry of the feed.
#[derive(Deserialize, Serialize)]
#[serde(bound(deserialize = "Skipped: Deserialize<'de> + Default"))]
pub struct RawEntry<'a, Skipped = Option<&'a RawValue>> {
    pub id: Option<u64>,
    #[serde(borrow)]
    pub timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub location: RawLocation<'a>,
    #[serde(borrow)]
    pub sensor: RawSensor<'a, Skipped>,
    #[serde(borrow)]
    pub sensordatavalues: Vec<RawDataValue<'a, Skipped>>,
}

/// Where a sensor is. Coordinates and altitude are scalars the feed writes
/// as strings or numbers (see [`scalar_text`]).
#[derive(Deserialize, Serialize)]
pub struct RawLocation<'a> {
    pub id: Option<u64>,
    #[serde(borrow, default)]
    pub latitude: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub longitude: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub altitude: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub country: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Serialize)]
#[serde(bound(deserialize = "Skipped: Deserialize<'de> + Default"))]
pub struct RawSensor<'a, Skipped = Option<&'a RawValue>> {
    pub id: u64,
    #[serde(borrow)]
    pub sensor_type: RawSensorType<'a, Skipped>,
}

#[derive(Deserialize, Serialize)]
pub struct RawSensorType<'a, Skipped = Option<&'a RawValue>> {
    /// A number in the feed.
    #[serde(default)]
    pub id: Skipped,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// A string in the feed.
    #[serde(default)]
    pub manufacturer: Skipped,
}

/// One measurement of an entry: [`PM10_TYPE`], [`PM25_TYPE`] or another
/// quantity the parser passes over (temperature, humidity, ...).
#[derive(Deserialize, Serialize)]
pub struct RawDataValue<'a, Skipped = Option<&'a RawValue>> {
    /// A number in the feed.
    #[serde(default)]
    pub id: Skipped,
    /// A scalar, as a string or a number (see [`scalar_text`]).
    #[serde(borrow, default)]
    pub value: Option<&'a RawValue>,
    #[serde(borrow)]
    pub value_type: Cow<'a, str>,
}

/// An entry as the parser reads it.
type ParsedEntry<'a> = RawEntry<'a, IgnoredAny>;

/// The text of a scalar that the feed writes either as a JSON string or as a
/// JSON number: a string's contents, or a number's literal text as sent.
/// `None` for `null` or anything that is not a scalar.
pub fn scalar_text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let s = raw.get().trim();
    match s.as_bytes().first()? {
        b'"' => serde_json::from_str::<Cow<'_, str>>(s).ok(),
        b'-' | b'0'..=b'9' => Some(Cow::Borrowed(s)),
        _ => None,
    }
}

/// A particulate value: its text as sent and its parsed number.
fn particulate(raw: Option<&RawValue>, rail: f64) -> Result<(String, f64), Rejection> {
    let text = raw.and_then(scalar_text).ok_or(Rejection::NonNumeric)?;
    let text = text.trim();
    let v: f64 = text.parse().map_err(|_| Rejection::NonNumeric)?;
    if !v.is_finite() {
        return Err(Rejection::NonFinite);
    }
    if v < 0.0 {
        return Err(Rejection::Negative);
    }
    if v >= rail {
        return Err(Rejection::Saturated);
    }
    Ok((text.to_owned(), v))
}

/// Validates one decoded entry and computes its index.
fn validate(e: ParsedEntry<'_>) -> Result<Reading, Rejection> {
    let ts = e
        .timestamp
        .as_deref()
        .and_then(Timestamp::parse_feed)
        .ok_or(Rejection::BadTimestamp)?;

    let (mut p1, mut p2) = (None, None);
    for dv in &e.sensordatavalues {
        match dv.value_type.as_ref() {
            PM10_TYPE => p1 = Some(particulate(dv.value, PM10_RAIL)?),
            PM25_TYPE => p2 = Some(particulate(dv.value, PM25_RAIL)?),
            _ => {}
        }
    }
    let aqi = aqi::daqi(p1.as_ref().map(|p| p.1), p2.as_ref().map(|p| p.1))
        .ok_or(Rejection::NoParticulates)?;

    let text = |v: Option<&RawValue>| {
        v.and_then(scalar_text)
            .map(Cow::into_owned)
            .unwrap_or_default()
    };
    Ok(Reading {
        id: e.id,
        timestamp: ts,
        sensor_id: e.sensor.id,
        sensor_type: e.sensor.sensor_type.name.into_owned(),
        loc_id: e.location.id,
        loc_country: e.location.country.map(Cow::into_owned).unwrap_or_default(),
        loc_lat: text(e.location.latitude),
        loc_long: text(e.location.longitude),
        loc_alt: text(e.location.altitude),
        p1: p1.map(|p| p.0),
        p2: p2.map(|p| p.0),
        aqi,
    })
}

/// Decodes and validates one entry given as its JSON text.
pub fn parse_entry(json: &str) -> Result<Reading, Rejection> {
    let e: ParsedEntry<'_> = serde_json::from_str(json).map_err(|_| Rejection::Malformed)?;
    validate(e)
}

struct EntriesVisitor<'f, F> {
    on_entry: &'f mut F,
    entries: &'f mut u64,
}

impl<'de, F> Visitor<'de> for EntriesVisitor<'_, F>
where
    F: FnMut(Result<Reading, Rejection>),
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of feed entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            *self.entries += 1;
            (self.on_entry)(parse_entry(raw.get()));
        }
        Ok(())
    }
}

/// Streams every entry of a feed document to `on_entry`, as a reading or the
/// reason it was rejected, and returns the counts.
///
/// Entries before a syntax error (a truncated download, say) have already
/// been handed to `on_entry` when the error is returned: they were complete,
/// and storing them is idempotent, so the caller may keep them.
pub fn parse_feed<F>(doc: &[u8], mut on_entry: F) -> Result<FeedStats, FeedError>
where
    F: FnMut(Result<Reading, Rejection>),
{
    let mut stats = FeedStats::default();
    let mut entries = 0u64;
    let mut record = |r: Result<Reading, Rejection>| {
        match &r {
            Ok(_) => stats.accepted += 1,
            Err(why) => *stats.rejected.entry(*why).or_default() += 1,
        }
        on_entry(r);
    };
    let mut de = serde_json::Deserializer::from_slice(doc);
    let visited = de
        .deserialize_seq(EntriesVisitor {
            on_entry: &mut record,
            entries: &mut entries,
        })
        .and_then(|()| de.end());
    if let Err(e) = visited {
        return Err(match e.classify() {
            serde_json::error::Category::Data => FeedError::NotAnArray(e.to_string()),
            _ => FeedError::Syntax { entries, source: e },
        });
    }
    stats.entries = entries;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::to_raw_value;

    #[test]
    fn an_entry_written_with_the_wire_shape_parses() {
        // Scalars the wire shape keeps as raw JSON, written as strings.
        let string = |s: &str| to_raw_value(s).expect("a string");
        let (lat, lon, alt) = (string("48.7220"), string("9.2100"), string(""));
        let (p2, value_id) = (string("20.5"), string("x"));
        let type_id = to_raw_value(&14).expect("a number");
        let entry = RawEntry {
            id: Some(7),
            timestamp: Some(Cow::Borrowed("2024-01-01 10:00:00")),
            location: RawLocation {
                id: None,
                latitude: Some(&lat),
                longitude: Some(&lon),
                altitude: Some(&alt),
                country: Some(Cow::Borrowed("DE")),
            },
            sensor: RawSensor {
                id: 5,
                sensor_type: RawSensorType {
                    id: Some(&*type_id),
                    name: Cow::Borrowed("SDS011"),
                    manufacturer: None,
                },
            },
            sensordatavalues: vec![RawDataValue {
                // Not the number the feed has: the parser skips this field
                // whatever it holds.
                id: Some(&*value_id),
                value: Some(&p2),
                value_type: Cow::Borrowed(PM25_TYPE),
            }],
        };
        let json = serde_json::to_string(&entry).expect("serializable");
        let r = parse_entry(&json).expect("accepted");
        assert_eq!((r.id, r.sensor_id, r.loc_id), (Some(7), 5, None));
        assert_eq!((r.loc_lat.as_str(), r.loc_alt.as_str()), ("48.7220", ""));
        assert_eq!((r.p1, r.p2.as_deref()), (None, Some("20.5")));
        assert_eq!(
            r.timestamp,
            Timestamp::parse_feed("2024-01-01 10:00:00").expect("valid")
        );
    }
}

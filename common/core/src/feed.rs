//! Parser and validator for the Sensor.Community JSON feeds (`data.json`,
//! `data.1h.json`, `data.24h.json`, `data.dust.min.json`; one schema).
//!
//! The feed is tens of MB, and a file given to ingest may be far larger. The
//! parser reads the top-level array from any `std::io::Read` in chunks, into
//! one buffer of fixed size ([`parse_feed_from`]), or from a slice in place
//! ([`parse_feed_at`]), and decodes each entry straight from that buffer, so
//! no `serde_json::Value` is built and nothing but the accepted readings is
//! allocated. Each entry is decoded on its own, which is what lets one
//! malformed entry be counted and skipped instead of aborting the run.

use crate::air::{Air, Measured};
use crate::aqi;
use crate::quality::{self, Flag, Flags};
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
///
/// The variants after [`Rejection::Saturated`] keep hostile or broken text
/// out of the store (and so out of users' spreadsheets and `/api/meta`): each
/// text field is checked against the shape the real feed sends, with a rule
/// cheap enough for the ingestion hot path (byte loops, no allocation).
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
    /// A well-formed `timestamp` outside [`TimeWindow`]: before
    /// [`EARLIEST`] (2015-01-01 00:00:00) or more than [`FUTURE_SLACK_SECS`]
    /// after the ingestion time.
    TimestampOutOfRange,
    /// `country` missing or not two or three ASCII capital letters
    /// (the feed's codes: `DE`, and the non-ISO `UK` and `XK`).
    BadCountry,
    /// `latitude` missing or not a plain decimal number in [-90, 90]
    /// (see [`decimal`]).
    BadLatitude,
    /// `longitude` missing or not a plain decimal number in [-180, 180].
    BadLongitude,
    /// `altitude` neither empty (or absent, or `null`) nor a plain decimal
    /// number.
    BadAltitude,
    /// `sensor_type.name` not a short printable ASCII name (see
    /// [`valid_sensor_type`]).
    BadSensorType,
    /// Coordinates in no country (the sea, `0/0`): only the archive backfill
    /// (`airq-master backfill`) derives the country from the coordinates, as
    /// the archive's rows carry none.
    NoCountry,
    /// A second its sensor already had: only the archive backfill counts it
    /// (a file is one sensor's day; its first row at a second is kept, so
    /// that a file repeating rows cannot weigh a day's mean).
    Duplicate,
}

impl Rejection {
    /// Every reason, in the order summaries list them.
    pub const ALL: [Rejection; 15] = [
        Rejection::Malformed,
        Rejection::BadTimestamp,
        Rejection::NoParticulates,
        Rejection::NonNumeric,
        Rejection::Negative,
        Rejection::NonFinite,
        Rejection::Saturated,
        Rejection::TimestampOutOfRange,
        Rejection::BadCountry,
        Rejection::BadLatitude,
        Rejection::BadLongitude,
        Rejection::BadAltitude,
        Rejection::BadSensorType,
        Rejection::NoCountry,
        Rejection::Duplicate,
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
            Rejection::TimestampOutOfRange => "timestamp out of range",
            Rejection::BadCountry => "bad country code",
            Rejection::BadLatitude => "bad latitude",
            Rejection::BadLongitude => "bad longitude",
            Rejection::BadAltitude => "bad altitude",
            Rejection::BadSensorType => "bad sensor type",
            Rejection::NoCountry => "in no country",
            Rejection::Duplicate => "duplicate timestamp",
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
    #[error(
        "the feed's entry at byte {offset}, after {entries} entries, is longer than {} KiB \
         (a feed's entries are under 2 KB); refusing to read further",
        limit >> 10
    )]
    EntryTooLarge {
        entries: u64,
        offset: u64,
        limit: usize,
    },
    #[error("cannot read the feed after {entries} entries: {source}")]
    Read {
        entries: u64,
        #[source]
        source: std::io::Error,
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
    /// Counts an entry read.
    fn count<T>(&mut self, parsed: &Result<T, Rejection>) {
        self.entries += 1;
        match parsed {
            Ok(_) => self.accepted += 1,
            Err(why) => *self.rejected.entry(*why).or_default() += 1,
        }
    }

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
    /// Whether the station is indoors (see [`indoor`]); feeds before about
    /// 2020 do not send it.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub indoor: Option<&'a RawValue>,
}

/// Whether a `location.indoor` says indoors: `1`, `true`, or either as a
/// string (Sensor.Community's database keeps a boolean, `False` by
/// default). Anything else, or nothing, is outdoors.
pub fn indoor(raw: Option<&RawValue>) -> bool {
    raw.is_some_and(|raw| {
        let literal = raw.get().trim();
        literal == "true"
            || scalar_text(raw).is_some_and(|t| t == "1" || t.eq_ignore_ascii_case("true"))
    })
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
    let v = particulate_value(text, rail)?;
    Ok((text.to_owned(), v))
}

/// The rules a particulate value's text passes, with the rail of its
/// pollutant ([`PM10_RAIL`] or [`PM25_RAIL`]): a number, finite, not
/// negative, below the rail. Public so that the archive backfill applies
/// the same rules to its CSV cells.
pub fn particulate_value(text: &str, rail: f64) -> Result<f64, Rejection> {
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
    Ok(v)
}

// ---- the text fields' rules ----
//
// Every check below is a loop over at most a few dozen bytes, run once per
// accepted entry: the parser is the ingestion benchmark's hot path, so no
// regex and no allocation (what is stored is the text as sent, owned once
// it has passed).

/// The earliest timestamp stored: 2015-01-01 00:00:00 UTC. The network
/// (then luftdaten.info) started in 2015; anything earlier is a sensor whose
/// clock was never set (the epoch, year 0000) or a forged entry, and one such
/// entry is enough to move `/api/meta`'s first day (and the web page's
/// default day) there.
pub const EARLIEST: Timestamp = Timestamp(1_420_070_400);

/// How far after the ingestion time a timestamp may be: one day. The feeds
/// are the last 5 minutes to 24 hours, so a later timestamp is a wrong clock
/// (or year 9999) and would move `/api/meta`'s last day; a day's slack
/// forgives clocks a few hours off and a feed published just before
/// midnight in some zone.
pub const FUTURE_SLACK_SECS: i64 = 86_400;

/// The timestamps an ingestion stores: from [`EARLIEST`] to
/// [`FUTURE_SLACK_SECS`] after the ingestion time, both included.
///
/// The ingestion time is given, not read from the clock here, so that a run
/// checks every entry against one instant and tests can choose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub earliest: Timestamp,
    pub latest: Timestamp,
}

impl TimeWindow {
    /// The window of an ingestion at `now`.
    pub fn at(now: Timestamp) -> TimeWindow {
        TimeWindow {
            earliest: EARLIEST,
            latest: Timestamp(now.0.saturating_add(FUTURE_SLACK_SECS)),
        }
    }

    pub fn contains(self, t: Timestamp) -> bool {
        self.earliest <= t && t <= self.latest
    }
}

/// Longest coordinate or altitude text stored, in bytes. The feed's are
/// under a dozen (`"-122.4194"`); 32 still holds any `f64` written out in
/// full (17 significant digits) and keeps a 5,000-digit "number" out.
pub const MAX_NUMBER_LEN: usize = 32;

/// Longest sensor type name, in bytes (the feed's are 3 to 8: `HPM`,
/// `SDS011`, `PMS7003`, `NextPM`).
pub const MAX_SENSOR_TYPE_LEN: usize = 32;

/// A plain decimal number as the feed writes coordinates and altitudes: an
/// optional `-`, one or more digits, then optionally `.` and one or more
/// digits; at most [`MAX_NUMBER_LEN`] bytes. No `+`, exponent, spaces,
/// `NaN` or `inf`: the feed never sends them, and a spreadsheet reads the
/// text as sent.
///
/// Returns the whole part (saturating, so a long one is simply too large)
/// and whether the fraction has a digit other than 0, which is what a range
/// check needs, decided on the digits: `"90.0000000000000001"` is above 90,
/// where an `f64` would round it to 90.
pub fn decimal(text: &str) -> Option<(u64, bool)> {
    let b = text.as_bytes();
    if b.len() > MAX_NUMBER_LEN {
        return None;
    }
    let unsigned = b.strip_prefix(b"-").unwrap_or(b);
    let (whole, fraction) = match unsigned.iter().position(|&c| c == b'.') {
        Some(dot) => (&unsigned[..dot], Some(&unsigned[dot + 1..])),
        None => (unsigned, None),
    };
    if whole.is_empty() || !whole.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let nonzero_fraction = match fraction {
        None => false,
        Some(f) if f.is_empty() || !f.iter().all(u8::is_ascii_digit) => return None,
        Some(f) => f.iter().any(|&c| c != b'0'),
    };
    let value = whole.iter().fold(0u64, |acc, &c| {
        acc.saturating_mul(10).saturating_add(u64::from(c - b'0'))
    });
    Some((value, nonzero_fraction))
}

/// `text` is a plain decimal number (see [`decimal`]) in `[-limit, limit]`.
pub fn decimal_within(text: &str, limit: u64) -> bool {
    match decimal(text) {
        Some((whole, nonzero_fraction)) => whole < limit || (whole == limit && !nonzero_fraction),
        None => false,
    }
}

/// The feed's country code shape: two or three ASCII capital letters. Not
/// a list of ISO codes: the feed has its own (`UK`, `XK`) and new ones may
/// come.
pub fn valid_country(code: &str) -> bool {
    let b = code.as_bytes();
    (2..=3).contains(&b.len()) && b.iter().all(u8::is_ascii_uppercase)
}

/// A short printable ASCII sensor type name: 1 to [`MAX_SENSOR_TYPE_LEN`]
/// bytes of ASCII letters, digits, `_`, `.`, `-` and space, starting with a
/// letter or digit and not ending with a space.
///
/// Every name the shipped feeds hold passes (`SDS011`, `SDS021`, `PPD42NS`,
/// `PMS3003`, `PMS5003`, `PMS7003`, `HPM`, `DHT22`, `BMP180`, `BMP280`), as
/// do other sensors' names of the same kind (`SPS30`, `NextPM`, `IPS-7100`)
/// and names with a space (`Radiation SBM-20`). A first byte that is a
/// letter or digit also means a name can never read as a spreadsheet
/// formula; control bytes (NUL, newlines), quotes and commas are out.
pub fn valid_sensor_type(name: &str) -> bool {
    let b = name.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(&last)) => {
            b.len() <= MAX_SENSOR_TYPE_LEN
                && first.is_ascii_alphanumeric()
                && last != b' '
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b' '))
        }
        _ => false,
    }
}

/// A coordinate as sent, if it is a plain decimal number within
/// `[-limit, limit]`.
fn coordinate(raw: Option<&RawValue>, limit: u64) -> Option<Cow<'_, str>> {
    raw.and_then(scalar_text)
        .filter(|text| decimal_within(text, limit))
}

/// The altitude as sent: empty when absent or `null` (three entries of the
/// sample have `""`), else a plain decimal number.
fn altitude(raw: Option<&RawValue>) -> Result<Cow<'_, str>, Rejection> {
    let Some(raw) = raw else {
        return Ok(Cow::Borrowed(""));
    };
    match scalar_text(raw) {
        Some(text) if text.is_empty() || decimal(&text).is_some() => Ok(text),
        Some(_) => Err(Rejection::BadAltitude),
        None if raw.get().trim() == "null" => Ok(Cow::Borrowed("")),
        None => Err(Rejection::BadAltitude),
    }
}

/// Validates one decoded entry and computes its index.
///
/// The order of the checks decides which reason a bad entry is counted
/// under: the timestamp, then the particulate values (so a temperature
/// sensor is still "no P1/P2 value", whatever its text), then the text
/// fields.
fn validate(e: ParsedEntry<'_>, window: TimeWindow) -> Result<Reading, Rejection> {
    let ts = e
        .timestamp
        .as_deref()
        .and_then(Timestamp::parse_feed)
        .ok_or(Rejection::BadTimestamp)?;
    if !window.contains(ts) {
        return Err(Rejection::TimestampOutOfRange);
    }

    let (mut p1, mut p2) = (None, None);
    for dv in &e.sensordatavalues {
        match dv.value_type.as_ref() {
            PM10_TYPE => p1 = Some(particulate(dv.value, PM10_RAIL)?),
            PM25_TYPE => p2 = Some(particulate(dv.value, PM25_RAIL)?),
            _ => {}
        }
    }
    let (v1, v2) = (p1.as_ref().map(|p| p.1), p2.as_ref().map(|p| p.1));
    let indices = aqi::Indices::of(v1, v2).ok_or(Rejection::NoParticulates)?;
    // The flags the entry decides by itself; the feed's others are added
    // once the whole feed is read (`quality::Assessment`).
    let flags = Flags::NONE
        .with_if(Flag::Indoor, indoor(e.location.indoor))
        .with_if(Flag::Pm25AbovePm10, quality::pm25_above_pm10(v1, v2));

    let sensor_type = e.sensor.sensor_type.name;
    if !valid_sensor_type(&sensor_type) {
        return Err(Rejection::BadSensorType);
    }
    let country = e
        .location
        .country
        .filter(|c| valid_country(c))
        .ok_or(Rejection::BadCountry)?;
    let lat = coordinate(e.location.latitude, 90).ok_or(Rejection::BadLatitude)?;
    let long = coordinate(e.location.longitude, 180).ok_or(Rejection::BadLongitude)?;
    let alt = altitude(e.location.altitude)?;

    Ok(Reading {
        id: e.id,
        timestamp: ts,
        sensor_id: e.sensor.id,
        sensor_type: sensor_type.into_owned(),
        loc_id: e.location.id,
        loc_country: country.into_owned(),
        loc_lat: lat.into_owned(),
        loc_long: long.into_owned(),
        loc_alt: alt.into_owned(),
        p1: p1.map(|p| p.0),
        p2: p2.map(|p| p.0),
        indices,
        samples: None,
        basis: None,
        flags,
        air: Default::default(),
    })
}

/// Decodes and validates one entry given as its JSON text, with timestamps
/// checked against an ingestion at `now` (see [`TimeWindow`]).
pub fn parse_entry_at(json: &str, now: Timestamp) -> Result<Reading, Rejection> {
    parse_in(json, TimeWindow::at(now))
}

fn parse_in(json: &str, window: TimeWindow) -> Result<Reading, Rejection> {
    let e: ParsedEntry<'_> = serde_json::from_str(json).map_err(|_| Rejection::Malformed)?;
    validate(e, window)
}

/// [`parse_entry_at`] the current time.
pub fn parse_entry(json: &str) -> Result<Reading, Rejection> {
    parse_entry_at(json, Timestamp::now())
}

// ---- the document: a top-level array read entry by entry ----
//
// The parser never holds the document: it reads it in chunks of
// [`CHUNK_BYTES`] into one buffer and finds each top-level entry with a byte
// scanner that tracks only strings (and their escapes) and bracket depth.
// Each complete entry is a slice of the buffer, decoded by `parse_in` (the
// one JSON parse of an accepted entry); only an entry refused as malformed
// is parsed a second time, as a raw JSON value, to tell a document that is
// not JSON (an error, as before) from an entry of the wrong shape (a
// rejection). Bytes between entries (whitespace, commas, the brackets) are
// checked by the scanner itself. A slice is read the same way without a
// copy: the whole slice is the buffer.

/// Longest entry read, in bytes: 1 MiB. A real entry is under 2 KB; a longer
/// one (or an unclosed string or bracket, which reads as one) fails the
/// document with [`FeedError::EntryTooLarge`] rather than grow the buffer.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

/// Bytes read from a source at a time.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Where the scanner is between entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the document's first byte that is not whitespace.
    Start,
    /// After `[`: an entry or `]`.
    FirstOrEnd,
    /// After `,`: an entry.
    Entry,
    /// After an entry: `,` or `]`.
    CommaOrEnd,
    /// After `]`: only whitespace.
    Trailing,
}

/// The scan of one entry that starts with `{`, `[` or `"`, resumable when
/// the buffer ends inside it.
#[derive(Debug, Default)]
struct EntryScan {
    /// Bytes of the entry scanned so far.
    scanned: usize,
    depth: u32,
    in_string: bool,
    /// The scanned part ends with a backslash inside a string.
    escaped: bool,
}

impl EntryScan {
    /// The entry's length if `entry` (the buffer from the entry's first byte)
    /// holds all of it.
    #[inline]
    fn end(&mut self, entry: &[u8]) -> Option<usize> {
        let n = entry.len();
        let mut i = self.scanned;
        if self.escaped {
            if i >= n {
                return None;
            }
            i += 1;
            self.escaped = false;
        }
        while i < n {
            if self.in_string {
                // The string's end: the next quote not escaped.
                loop {
                    if i >= n {
                        self.scanned = i;
                        return None;
                    }
                    match entry[i] {
                        b'"' => break,
                        b'\\' => {
                            if i + 1 >= n {
                                self.escaped = true;
                                self.scanned = n;
                                return None;
                            }
                            i += 2;
                        }
                        _ => i += 1,
                    }
                }
                self.in_string = false;
                i += 1;
                if self.depth == 0 {
                    // A string entry.
                    return Some(i);
                }
                continue;
            }
            match entry[i] {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        self.scanned = i;
        None
    }
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

/// The bytes the parser reads: a slice (all there from the start) or a
/// reader's chunks.
trait Input {
    /// The bytes not consumed yet.
    fn data(&self) -> &[u8];
    /// Drops the first `n` bytes of [`Input::data`].
    fn consume(&mut self, n: usize);
    /// Offset in the document of `data()[0]`.
    fn offset(&self) -> u64;
    /// Appends at least one byte to [`Input::data`]; `false` at the end.
    /// Called only while `data()` is shorter than [`MAX_ENTRY_BYTES`].
    fn fill(&mut self) -> std::io::Result<bool>;
}

struct SliceInput<'a> {
    doc: &'a [u8],
    at: usize,
}

impl Input for SliceInput<'_> {
    fn data(&self) -> &[u8] {
        &self.doc[self.at..]
    }
    fn consume(&mut self, n: usize) {
        self.at += n;
    }
    fn offset(&self) -> u64 {
        self.at as u64
    }
    fn fill(&mut self) -> std::io::Result<bool> {
        Ok(false)
    }
}

/// A reader's bytes in one buffer of [`CHUNK_BYTES`] + [`MAX_ENTRY_BYTES`]:
/// room for a whole chunk after the longest partial entry.
struct ReaderInput<R> {
    reader: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Offset in the document of `buf[0]`.
    base: u64,
}

impl<R> ReaderInput<R> {
    /// An input of `reader` with its one buffer of [`CHUNK_BYTES`] +
    /// [`MAX_ENTRY_BYTES`].
    fn new(reader: R) -> Self {
        ReaderInput {
            reader,
            buf: vec![0; CHUNK_BYTES + MAX_ENTRY_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            base: 0,
        }
    }
}

impl<R: std::io::Read> Input for ReaderInput<R> {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    fn consume(&mut self, n: usize) {
        self.start += n;
    }
    fn offset(&self) -> u64 {
        self.base + self.start as u64
    }
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.buf.len() - self.end < CHUNK_BYTES && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        let room = (self.buf.len() - self.end).min(CHUNK_BYTES);
        loop {
            match self.reader.read(&mut self.buf[self.end..self.end + room]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A syntax error found by the scanner, at `offset` in the document.
fn syntax_error(entries: u64, what: &str, offset: u64) -> FeedError {
    FeedError::Syntax {
        entries,
        source: serde::de::Error::custom(format_args!("{what} at byte {offset}")),
    }
}

/// serde_json's error about an entry starting at `offset`, placed in the
/// document: its line and column are within the entry.
fn entry_error(entries: u64, e: serde_json::Error, entry: &[u8], offset: u64) -> FeedError {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let what = text.strip_suffix(&suffix).unwrap_or(&text);
    // The byte the error is at: the column-th byte of the line-th line.
    let line_start = if e.line() <= 1 {
        0
    } else {
        entry
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(e.line() - 2)
            .map_or(entry.len(), |(i, _)| i + 1)
    };
    let within = (line_start + e.column()).saturating_sub(1).min(entry.len());
    syntax_error(entries, what, offset + within as u64)
}

/// The error for a document whose first value is not an array, as serde_json
/// words it: a value of another type is [`FeedError::NotAnArray`], anything
/// else a syntax error.
fn not_an_array(doc: &[u8]) -> FeedError {
    struct ArrayExpected;
    impl<'de> Visitor<'de> for ArrayExpected {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON array of feed entries")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<(), A::Error> {
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_slice(doc);
    match de.deserialize_seq(ArrayExpected) {
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            FeedError::NotAnArray(e.to_string())
        }
        Err(e) => FeedError::Syntax {
            entries: 0,
            source: e,
        },
        // Not reached: the document does not start with `[`.
        Ok(()) => FeedError::NotAnArray("not an array".to_owned()),
    }
}

/// Reads the document from `input`, handing each entry to `on_entry`.
fn parse_input<I, F>(input: I, window: TimeWindow, mut on_entry: F) -> Result<FeedStats, FeedError>
where
    I: Input,
    F: FnMut(Result<Reading, Rejection>, &str),
{
    let mut stats = FeedStats::default();
    scan_input(input, |entry, offset| {
        let (parsed, text) = parse_entry_bytes(entry, window, stats.entries, offset)?;
        stats.count(&parsed);
        on_entry(parsed, text);
        Ok::<_, FeedError>(())
    })?;
    Ok(stats)
}

/// One entry's bytes (at `offset` in the document, after `entries`
/// others) as a reading or the reason it is refused, and its text; an
/// error when it is not JSON at all: the document is broken there.
fn parse_entry_bytes(
    entry: &[u8],
    window: TimeWindow,
    entries: u64,
    offset: u64,
) -> Result<(Result<Reading, Rejection>, &str), FeedError> {
    let text = std::str::from_utf8(entry);
    let parsed = match text {
        Ok(text) => parse_in(text, window),
        Err(_) => Err(Rejection::Malformed),
    };
    if matches!(parsed, Err(Rejection::Malformed)) {
        // Not an entry of the feed's shape; if not JSON either, the
        // document is broken here.
        if let Err(e) = serde_json::from_slice::<&RawValue>(entry) {
            return Err(entry_error(entries, e, entry, offset));
        }
    }
    Ok((parsed, text.unwrap_or("")))
}

/// Finds each entry of the document in `input` and hands its bytes and
/// offset to `on_entry`, which may stop the scan with an error; the
/// document's own errors (its shape, an entry too long, a read) are
/// returned as they come, after the entries before them.
fn scan_input<I, E>(
    mut input: I,
    mut on_entry: impl FnMut(&[u8], u64) -> Result<(), E>,
) -> Result<(), E>
where
    I: Input,
    E: From<FeedError>,
{
    // Entries handed to `on_entry`, for the errors' counts.
    let mut entries = 0u64;
    let mut at = At::Start;
    // The input has no more bytes than `data()`.
    let mut ended = false;
    let mut scan = EntryScan::default();
    macro_rules! fill_or {
        ($at_end:expr) => {
            if ended {
                $at_end
            } else {
                match input.fill() {
                    Ok(more) => {
                        ended = !more;
                        continue;
                    }
                    Err(source) => return Err(FeedError::Read { entries, source }.into()),
                }
            }
        };
    }
    loop {
        let data = input.data();
        let blank = data.iter().position(|&b| !is_whitespace(b));
        let Some(skip) = blank else {
            // Only whitespace: drop it, except before the document's first
            // value, where serde_json words the error with it (unless there
            // is too much of it to keep).
            if at != At::Start || data.len() >= MAX_ENTRY_BYTES {
                input.consume(data.len());
            }
            fill_or!({
                let offset = input.offset().saturating_sub(1);
                return match at {
                    At::Trailing => Ok(()),
                    At::Start => Err(not_an_array(input.data()).into()),
                    At::FirstOrEnd | At::CommaOrEnd => {
                        Err(syntax_error(entries, "EOF while parsing a list", offset).into())
                    }
                    At::Entry => {
                        Err(syntax_error(entries, "EOF while parsing a value", offset).into())
                    }
                };
            })
        };
        if at == At::Start {
            if data[skip] == b'[' {
                input.consume(skip + 1);
                at = At::FirstOrEnd;
                continue;
            }
            // The whole value (up to the limit on an entry), for serde_json
            // to say what it is.
            if data.len() < MAX_ENTRY_BYTES {
                fill_or!(return Err(not_an_array(input.data()).into()));
            }
            return Err(not_an_array(&data[..MAX_ENTRY_BYTES]).into());
        }
        input.consume(skip);
        let data = input.data();
        let offset = input.offset();
        match (at, data[0]) {
            (At::FirstOrEnd | At::CommaOrEnd, b']') => {
                input.consume(1);
                at = At::Trailing;
                continue;
            }
            (At::CommaOrEnd, b',') => {
                input.consume(1);
                at = At::Entry;
                continue;
            }
            (At::CommaOrEnd, _) => {
                return Err(syntax_error(entries, "expected `,` or `]`", offset).into())
            }
            (At::Entry, b']') => return Err(syntax_error(entries, "trailing comma", offset).into()),
            (At::Trailing, _) => {
                return Err(syntax_error(entries, "trailing characters", offset).into())
            }
            _ => {}
        }
        // An entry starts at data[0]. It is looked for in its first
        // MAX_ENTRY_BYTES only, so that a longer one is refused however the
        // input is cut into chunks.
        let capped = data.len() > MAX_ENTRY_BYTES;
        let head = &data[..data.len().min(MAX_ENTRY_BYTES)];
        let len = match head[0] {
            b'{' | b'[' | b'"' => scan.end(head),
            _ => scalar_end(head, ended && !capped)
                .map_err(|e| E::from(entry_error(entries, e, head, offset)))?,
        };
        let Some(len) = len else {
            if data.len() >= MAX_ENTRY_BYTES {
                return Err(FeedError::EntryTooLarge {
                    entries,
                    offset,
                    limit: MAX_ENTRY_BYTES,
                }
                .into());
            }
            fill_or!({
                // Parsed alone, the partial entry gives serde_json's word
                // for where it breaks off.
                let e = match serde_json::from_slice::<&RawValue>(head) {
                    Err(e) => e,
                    Ok(_) => serde::de::Error::custom("EOF while parsing a list"),
                };
                return Err(entry_error(entries, e, head, offset).into());
            })
        };
        scan = EntryScan::default();
        on_entry(&data[..len], offset)?;
        entries += 1;
        input.consume(len);
        at = At::CommaOrEnd;
    }
}

/// The length of the scalar (number, `true`, `null`, ...) at the start of
/// `data`, as serde_json reads it inside an array; `None` when it may go on
/// past the bytes there (and the input has not ended).
fn scalar_end(data: &[u8], ended: bool) -> Result<Option<usize>, serde_json::Error> {
    // A number or literal ends at a byte that cannot be in one; until that
    // byte is read, serde_json's verdict could change (`-` is an invalid
    // number, `-1` a valid one).
    let in_scalar = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.');
    if !ended && data.iter().all(in_scalar) {
        return Ok(None);
    }
    let mut de = serde_json::Deserializer::from_slice(data);
    match <&RawValue>::deserialize(&mut de) {
        Ok(raw) if raw.get().len() < data.len() || ended => Ok(Some(raw.get().len())),
        Ok(_) => Ok(None),
        Err(e) if e.is_eof() && !ended => Ok(None),
        Err(e) => Err(e),
    }
}

/// Streams every entry of a feed document to `on_entry`, as a reading or the
/// reason it was rejected, and returns the counts. Timestamps are checked
/// against an ingestion at `now` (see [`TimeWindow`]): the caller reads the
/// clock once per run, and tests choose the instant.
///
/// Entries before a syntax error (a truncated download, say) have already
/// been handed to `on_entry` when the error is returned: they were complete,
/// and storing them is idempotent, so the caller may keep them.
///
/// An entry over [`MAX_ENTRY_BYTES`] fails the document
/// ([`FeedError::EntryTooLarge`]), as [`parse_feed_from`] does.
pub fn parse_feed_at<F>(doc: &[u8], now: Timestamp, on_entry: F) -> Result<FeedStats, FeedError>
where
    F: FnMut(Result<Reading, Rejection>),
{
    let mut on_entry = on_entry;
    parse_input(SliceInput { doc, at: 0 }, TimeWindow::at(now), |e, _| {
        on_entry(e)
    })
}

/// [`parse_feed_at`], also handing each station measurement of the
/// document to `on_air`: an entry without P1/P2 (still counted "no P1/P2
/// value") whose timestamp is in the window, with a location id and a
/// humidity or temperature measurement ([`crate::air`]).
pub fn parse_feed_with_air_at<F, A>(
    doc: &[u8],
    now: Timestamp,
    on_entry: F,
    on_air: A,
) -> Result<FeedStats, FeedError>
where
    F: FnMut(Result<Reading, Rejection>),
    A: FnMut(Measured),
{
    let window = TimeWindow::at(now);
    parse_input(
        SliceInput { doc, at: 0 },
        window,
        with_air(window, on_entry, on_air),
    )
}

/// The entry callback of the parsers that also hand out station
/// measurements: an entry refused for having no P1/P2 may be one.
fn with_air(
    window: TimeWindow,
    mut on_entry: impl FnMut(Result<Reading, Rejection>),
    mut on_air: impl FnMut(Measured),
) -> impl FnMut(Result<Reading, Rejection>, &str) {
    move |e, text| {
        if let Some(m) = station_air(&e, text, window) {
            on_air(m);
        }
        on_entry(e)
    }
}

/// The station measurement of an entry refused for having no P1/P2, if
/// it is one.
fn station_air(
    parsed: &Result<Reading, Rejection>,
    text: &str,
    window: TimeWindow,
) -> Option<Measured> {
    matches!(parsed, Err(Rejection::NoParticulates))
        .then(|| station_measurement(text, window))
        .flatten()
}

/// The station measurement an entry's text holds, if any (see
/// [`parse_feed_with_air_at`]).
fn station_measurement(json: &str, window: TimeWindow) -> Option<Measured> {
    let e: ParsedEntry<'_> = serde_json::from_str(json).ok()?;
    let timestamp = e.timestamp.as_deref().and_then(Timestamp::parse_feed)?;
    let air = Air::of_values(&e.sensordatavalues);
    (window.contains(timestamp) && !air.is_empty()).then_some(Measured {
        location: e.location.id?,
        sensor_id: e.sensor.id,
        timestamp,
        air,
    })
}

/// [`parse_feed_at`] on a document read from `reader`, in chunks of
/// [`CHUNK_BYTES`]: memory is one buffer of [`CHUNK_BYTES`] +
/// [`MAX_ENTRY_BYTES`] (2 MiB) whatever the document's size. Entries,
/// rejections, counts and errors are those of [`parse_feed_at`] on the same
/// bytes; a read error is [`FeedError::Read`], after the entries before it.
pub fn parse_feed_from<R, F>(reader: R, now: Timestamp, on_entry: F) -> Result<FeedStats, FeedError>
where
    R: std::io::Read,
    F: FnMut(Result<Reading, Rejection>),
{
    let input = ReaderInput::new(reader);
    let mut on_entry = on_entry;
    parse_input(input, TimeWindow::at(now), |e, _| on_entry(e))
}

/// [`parse_feed_from`], also handing each station measurement to
/// `on_air` as [`parse_feed_with_air_at`] does.
pub fn parse_feed_from_with_air<R, F, A>(
    reader: R,
    now: Timestamp,
    on_entry: F,
    on_air: A,
) -> Result<FeedStats, FeedError>
where
    R: std::io::Read,
    F: FnMut(Result<Reading, Rejection>),
    A: FnMut(Measured),
{
    let input = ReaderInput::new(reader);
    let window = TimeWindow::at(now);
    parse_input(input, window, with_air(window, on_entry, on_air))
}

/// Entries handed to a parsing thread at a time: about this many bytes,
/// and at most [`PARALLEL_CHUNK_ENTRIES`] entries, so that what a chunk's
/// parse makes (a few hundred bytes an entry) stays bounded however short
/// the entries are (`[0,0,…]` is 2 bytes an entry).
const PARALLEL_CHUNK_BYTES: usize = 1 << 20;
const PARALLEL_CHUNK_ENTRIES: usize = 4096;

/// [`parse_feed_from_with_air`] with the entries parsed on `threads`
/// threads (1 to 8) beside the one reading the document, each accepted
/// reading turned by `map` there too: the same callbacks in the same
/// order, the same counts and errors (a broken entry ends the document
/// where it is, whatever was parsed after it), for up to `threads` times
/// the speed where parsing is the work. The callbacks run on the calling
/// thread. Memory: a few chunks per thread (about 1 MiB, at most
/// 4,096 entries each), what `map` makes of them, and
/// the reader's buffer.
pub fn parse_feed_from_with_air_parallel<R, M, T, F, A>(
    reader: R,
    now: Timestamp,
    threads: usize,
    map: M,
    on_entry: F,
    on_air: A,
) -> Result<FeedStats, FeedError>
where
    R: std::io::Read + Send,
    M: Fn(Reading) -> T + Sync,
    T: Send,
    F: FnMut(Result<T, Rejection>),
    A: FnMut(Measured),
{
    parse_parallel(
        ReaderInput::new(reader),
        TimeWindow::at(now),
        (threads, PARALLEL_CHUNK_BYTES),
        map,
        on_entry,
        on_air,
    )
}

/// Entries of a document as the scanner found them: their bytes one after
/// the other, where each ends and its offset in the document, and how many
/// entries came before the first.
#[derive(Default)]
struct RawChunk {
    bytes: Vec<u8>,
    entries: Vec<(usize, u64)>,
    before: u64,
}

/// An entry as a parsing thread leaves it for the calling thread.
enum Parsed<T> {
    Entry(Result<T, Rejection>, Option<Measured>),
    /// Not JSON: the document ends here.
    Broken(FeedError),
}

impl RawChunk {
    fn parse<T>(&self, window: TimeWindow, map: impl Fn(Reading) -> T) -> Vec<Parsed<T>> {
        let mut start = 0;
        let mut out = Vec::with_capacity(self.entries.len());
        for (k, &(end, offset)) in self.entries.iter().enumerate() {
            let entry = &self.bytes[start..end];
            start = end;
            match parse_entry_bytes(entry, window, self.before + k as u64, offset) {
                Ok((parsed, text)) => {
                    let air = station_air(&parsed, text, window);
                    out.push(Parsed::Entry(parsed.map(&map), air));
                }
                Err(e) => {
                    out.push(Parsed::Broken(e));
                    break;
                }
            }
        }
        out
    }
}

/// Why the scanning thread stopped before the document's end.
enum ScanStop {
    Feed(FeedError),
    /// The calling thread stopped reading (a broken entry).
    Unread,
}

impl From<FeedError> for ScanStop {
    fn from(e: FeedError) -> Self {
        ScanStop::Feed(e)
    }
}

/// [`parse_feed_from_with_air_parallel`] on any input, on `threads`
/// threads in chunks of about `chunk_bytes`. Chunk `k` goes to thread
/// `k % threads` and its entries come back from that thread, so the
/// calling thread takes them in the document's order.
fn parse_parallel<I, M, T, F, A>(
    input: I,
    window: TimeWindow,
    (threads, chunk_bytes): (usize, usize),
    map: M,
    mut on_entry: F,
    mut on_air: A,
) -> Result<FeedStats, FeedError>
where
    I: Input + Send,
    M: Fn(Reading) -> T + Sync,
    T: Send,
    F: FnMut(Result<T, Rejection>),
    A: FnMut(Measured),
{
    use std::sync::mpsc::sync_channel;
    let threads = threads.clamp(1, 8);
    std::thread::scope(|scope| {
        let (mut to_parse, mut parsed, mut workers) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..threads {
            let (raw_tx, raw_rx) = sync_channel::<RawChunk>(2);
            let (out_tx, out_rx) = sync_channel::<Vec<Parsed<T>>>(2);
            let map = &map;
            workers.push(scope.spawn(move || {
                for chunk in raw_rx {
                    if out_tx.send(chunk.parse(window, map)).is_err() {
                        return;
                    }
                }
            }));
            to_parse.push(raw_tx);
            parsed.push(out_rx);
        }
        let scanner = scope.spawn(move || {
            let mut chunk = RawChunk::default();
            let mut sent = 0usize;
            let mut send = |chunk: RawChunk| {
                let to = &to_parse[sent % to_parse.len()];
                sent += 1;
                to.send(chunk).map_err(|_| ScanStop::Unread)
            };
            let scanned = scan_input(input, |entry, offset| {
                chunk.bytes.extend_from_slice(entry);
                chunk.entries.push((chunk.bytes.len(), offset));
                if chunk.bytes.len() >= chunk_bytes || chunk.entries.len() >= PARALLEL_CHUNK_ENTRIES
                {
                    let before = chunk.before + chunk.entries.len() as u64;
                    let full = std::mem::replace(
                        &mut chunk,
                        RawChunk {
                            before,
                            ..RawChunk::default()
                        },
                    );
                    send(full)?;
                }
                Ok::<_, ScanStop>(())
            });
            // The entries before the document's end or its error.
            if !chunk.entries.is_empty() {
                send(chunk)?;
            }
            scanned
        });
        let mut stats = FeedStats::default();
        for k in 0.. {
            // Closed when its thread has handed back all its chunks: chunk
            // `k` does not exist, nor any after it.
            let Ok(entries) = parsed[k % threads].recv() else {
                break;
            };
            for entry in entries {
                match entry {
                    // Dropping the receivers stops the threads.
                    Parsed::Broken(e) => return Err(e),
                    Parsed::Entry(reading, air) => {
                        stats.count(&reading);
                        if let Some(m) = air {
                            on_air(m);
                        }
                        on_entry(reading);
                    }
                }
            }
        }
        // A thread that panicked closed its channel early: its panic, not
        // a document cut short, is the outcome. (Receivers dropped first,
        // so that no other thread waits to hand over a chunk.)
        drop(parsed);
        for worker in workers {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        match scanner.join() {
            Ok(Ok(())) => Ok(stats),
            Ok(Err(ScanStop::Feed(e))) => Err(e),
            // Not reached: every parsing thread took every chunk.
            Ok(Err(ScanStop::Unread)) => Ok(stats),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// [`parse_feed_at`] the current time, read once.
pub fn parse_feed<F>(doc: &[u8], on_entry: F) -> Result<FeedStats, FeedError>
where
    F: FnMut(Result<Reading, Rejection>),
{
    parse_feed_at(doc, Timestamp::now(), on_entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::to_raw_value;

    #[test]
    fn indoor_is_one_or_true() {
        fn raw(json: &str) -> &RawValue {
            serde_json::from_str(json).expect("JSON")
        }
        for yes in ["1", "true", "\"1\"", "\"True\""] {
            assert!(indoor(Some(raw(yes))), "{yes}");
        }
        for no in ["0", "false", "null", "\"0\"", "2", "[1]"] {
            assert!(!indoor(Some(raw(no))), "{no}");
        }
        assert!(!indoor(None));
    }

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
                indoor: None,
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

    #[test]
    fn decimals_are_plain_and_checked_on_their_digits() {
        for ok in ["0", "52.52", "-33.8688", "90", "-90.000", "0.0", "007.5"] {
            assert!(decimal_within(ok, 90), "{ok}");
        }
        for out in [
            "90.0000000000000001",
            "-90.1",
            "91",
            "1000000000000000000000000",
        ] {
            assert!(decimal(out).is_some() && !decimal_within(out, 90), "{out}");
        }
        assert!(decimal_within("-180", 180) && decimal_within("179.999999", 180));
        assert!(!decimal_within("180.5", 180));
        for bad in [
            "", "-", ".5", "5.", "+5", "1e5", "5,2", " 5", "5 ", "NaN", "inf", "--5", "5.5.5",
            "=1+1", "0x10",
        ] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
        let long = "1".repeat(MAX_NUMBER_LEN + 1);
        assert_eq!(decimal(&long), None, "too long");
        assert!(decimal(&long[1..]).is_some(), "at the cap");
    }

    #[test]
    fn country_codes_are_two_or_three_capitals() {
        for ok in ["DE", "UK", "XK", "BIH"] {
            assert!(valid_country(ok), "{ok}");
        }
        for bad in [
            "",
            "D",
            "de",
            "DEUT",
            "D1",
            "DE ",
            "É",
            "DE'; DROP TABLE readings; --",
        ] {
            assert!(!valid_country(bad), "{bad:?}");
        }
    }

    #[test]
    fn sensor_types_are_short_printable_names() {
        for ok in [
            "SDS011",
            "SDS021",
            "PPD42NS",
            "PMS3003",
            "PMS5003",
            "PMS7003",
            "HPM",
            "SPS30",
            "NextPM",
            "IPS-7100",
            "SEN5X",
            "DHT22",
            "Radiation SBM-20",
            "a.b_c",
        ] {
            assert!(valid_sensor_type(ok), "{ok}");
        }
        let long = "S".repeat(MAX_SENSOR_TYPE_LEN + 1);
        for bad in [
            "",
            " SDS011",
            "SDS011 ",
            "-SDS011",
            "=cmd|' /C calc'!A0",
            "SDS\0",
            "SDS\n011",
            "SDS011\u{0}",
            "SDS,011",
            "SDS\"011",
            "SDSµ",
            long.as_str(),
        ] {
            assert!(!valid_sensor_type(bad), "{bad:?}");
        }
        assert!(valid_sensor_type(&long[1..]), "at the cap");
    }

    #[test]
    fn the_time_window_runs_from_2015_to_a_day_after_now() {
        let now = Timestamp::parse_feed("2024-06-01 12:00:00").expect("valid");
        let w = TimeWindow::at(now);
        let t = |s: &str| Timestamp::parse_feed(s).expect("valid");
        assert!(w.contains(t("2015-01-01 00:00:00")));
        assert!(!w.contains(t("2014-12-31 23:59:59")));
        assert!(w.contains(t("2024-06-02 12:00:00")));
        assert!(!w.contains(t("2024-06-02 12:00:01")));
        assert!(!w.contains(t("0000-01-01 00:00:00")));
        assert!(!w.contains(t("9999-12-31 23:59:59")));
        // A clock at the end of time does not overflow.
        assert!(TimeWindow::at(Timestamp(i64::MAX)).contains(now));
    }

    /// One entry with a P2 value and the given location, sensor type and
    /// timestamp, all as raw JSON.
    fn entry_with(location: &str, sensor_type: &str, timestamp: &str) -> String {
        format!(
            r#"{{"timestamp":{timestamp},"location":{{{location}}},"sensor":{{"id":1,"sensor_type":{{"name":{sensor_type}}}}},"sensordatavalues":[{{"value":"5","value_type":"P2"}}]}}"#
        )
    }

    #[test]
    fn each_text_field_has_its_reason() {
        let now = Timestamp::parse_feed("2024-06-01 12:00:00").expect("valid");
        let good_loc = r#""latitude":"52.52","longitude":"-13.4","altitude":"","country":"DE""#;
        let at = |loc: &str, ty: &str, ts: &str| parse_entry_at(&entry_with(loc, ty, ts), now);
        let ok = at(good_loc, r#""SDS011""#, r#""2024-06-02 12:00:00""#).expect("accepted");
        assert_eq!(
            (
                ok.loc_lat.as_str(),
                ok.loc_long.as_str(),
                ok.loc_alt.as_str()
            ),
            ("52.52", "-13.4", "")
        );
        let ts = r#""2024-06-01 00:00:00""#;
        let cases = [
            (
                good_loc.replace("\"DE\"", "\"de\""),
                "\"SDS011\"",
                Rejection::BadCountry,
            ),
            (
                good_loc.replace(r#","country":"DE""#, ""),
                "\"SDS011\"",
                Rejection::BadCountry,
            ),
            (
                good_loc.replace("\"52.52\"", "\"=HYPERLINK(1)\""),
                "\"SDS011\"",
                Rejection::BadLatitude,
            ),
            (
                good_loc.replace("\"52.52\"", "90.5"),
                "\"SDS011\"",
                Rejection::BadLatitude,
            ),
            (
                good_loc.replace("\"52.52\"", "null"),
                "\"SDS011\"",
                Rejection::BadLatitude,
            ),
            (
                good_loc.replace("\"-13.4\"", "\"-180.01\""),
                "\"SDS011\"",
                Rejection::BadLongitude,
            ),
            (
                good_loc.replace("\"\",", "\"@SUM(1)\","),
                "\"SDS011\"",
                Rejection::BadAltitude,
            ),
            (
                good_loc.replace("\"\",", "{},"),
                "\"SDS011\"",
                Rejection::BadAltitude,
            ),
            (
                good_loc.to_owned(),
                "\"SDS\\u0000\"",
                Rejection::BadSensorType,
            ),
        ];
        for (loc, ty, want) in &cases {
            assert_eq!(at(loc, ty, ts).unwrap_err(), *want, "{loc} {ty}");
        }
        // An altitude that is absent, null or a number is kept (as text).
        for (alt, want) in [
            ("", ""),
            (r#","altitude":null"#, ""),
            (r#","altitude":-12.5"#, "-12.5"),
        ] {
            let loc = format!(r#""latitude":1,"longitude":2,"country":"UK"{alt}"#);
            assert_eq!(at(&loc, "\"HPM\"", ts).expect("accepted").loc_alt, want);
        }
        assert_eq!(
            at(good_loc, "\"SDS011\"", r#""2024-06-02 12:00:01""#).unwrap_err(),
            Rejection::TimestampOutOfRange
        );
        assert_eq!(
            at(good_loc, "\"SDS011\"", r#""0000-01-01 00:00:00""#).unwrap_err(),
            Rejection::TimestampOutOfRange
        );
        // The particulates are checked before the text: a temperature sensor
        // with an odd name is still "no P1/P2 value".
        let no_pm = entry_with(good_loc, "\"\"", ts).replace("\"P2\"", "\"temperature\"");
        assert_eq!(
            parse_entry_at(&no_pm, now).unwrap_err(),
            Rejection::NoParticulates
        );
    }

    /// Every callback of a parse in its order, and how it ended.
    fn calls(
        parse: impl FnOnce(
            &mut dyn FnMut(Result<Reading, Rejection>),
            &mut dyn FnMut(Measured),
        ) -> Result<FeedStats, FeedError>,
    ) -> (Vec<String>, String) {
        let calls = std::cell::RefCell::new(Vec::new());
        let end = parse(
            &mut |e| calls.borrow_mut().push(format!("{e:?}")),
            &mut |m| calls.borrow_mut().push(format!("air {m:?}")),
        );
        let end = match end {
            Ok(stats) => format!("{stats:?}"),
            Err(e) => format!("error: {e}"),
        };
        (calls.into_inner(), end)
    }

    #[test]
    fn the_parallel_parse_is_the_sequential_one() {
        let read = |path: &str| {
            std::fs::read(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).expect("a shipped file")
        };
        let sample = read("../../data/sample/201806032249_data.dust.min.json");
        let fragment = [
            &b"["[..],
            read("tests/fixtures/20190416_v1_data.json.fragment").trim_ascii(),
            b"]",
        ]
        .concat();
        let hostile = read("tests/fixtures/hostile_text.json");
        // An entry that is not JSON after the 50th of the fragment; entries
        // that are JSON but not of the feed's shape (counted, not fatal);
        // an entry over the limit; many short entries (a chunk is cut at
        // its count of entries as well as at its bytes).
        // Entries of the fragment are separated by `},\n{`.
        let cut = fragment
            .windows(4)
            .enumerate()
            .filter(|(_, w)| w == b"},\n{")
            .nth(49)
            .map(|(i, _)| i + 3)
            .expect("50 entries");
        let broken = [&fragment[..cut], b"{\"id\":1,,},", &fragment[cut..]].concat();
        let odd = [&fragment[..cut], b"[1,2],\"x\",7,", &fragment[cut..]].concat();
        let mut docs: Vec<Vec<u8>> = vec![
            sample,
            fragment.clone(),
            hostile,
            broken,
            odd,
            b"[]".to_vec(),
            b" {\"a\":1}".to_vec(),
            [&fragment[..], b" ]"].concat(),
            [
                &fragment[..cut],
                b"\"",
                &vec![b'x'; MAX_ENTRY_BYTES],
                b"\",",
                &fragment[cut..],
            ]
            .concat(),
            format!("[{}0]", "0,".repeat(3 * PARALLEL_CHUNK_ENTRIES)).into_bytes(),
        ];
        // Broken off anywhere: inside an entry, a string, between two.
        let step = fragment.len() / 23;
        docs.extend((1..23).map(|k| fragment[..k * step + k].to_vec()));
        let now = Timestamp::parse_feed("2019-04-16 14:30:00").expect("a time");
        let window = TimeWindow::at(now);
        let mut ends = Vec::new();
        for doc in &docs {
            let sequential = calls(|on_entry, on_air| {
                parse_input(
                    SliceInput { doc, at: 0 },
                    window,
                    with_air(window, on_entry, on_air),
                )
            });
            assert!(sequential.0.len() > 1 || doc.len() < 20, "{}", sequential.1);
            ends.push(sequential.1.clone());
            for threads in [1, 2, 3] {
                for chunk in [1, 700, 20_000, PARALLEL_CHUNK_BYTES] {
                    let parallel = calls(|on_entry, on_air| {
                        parse_parallel(
                            SliceInput { doc, at: 0 },
                            window,
                            (threads, chunk),
                            |r| r,
                            on_entry,
                            on_air,
                        )
                    });
                    assert!(
                        parallel == sequential,
                        "{threads} threads, chunks of {chunk} B: {} calls, {} against {} calls, {}",
                        parallel.0.len(),
                        parallel.1,
                        sequential.0.len(),
                        sequential.1
                    );
                }
            }
        }
        // The documents break where they were made to.
        assert!(
            ends[3].contains("not valid JSON after 50 entries"),
            "{}",
            ends[3]
        );
        assert!(ends[4].contains("entries: 246,"), "{}", ends[4]);
        assert!(
            ends[8].contains("after 50 entries, is longer than"),
            "{}",
            ends[8]
        );
        assert!(ends[9].contains("entries: 12289,"), "{}", ends[9]);
        // From a reader, as a feed file is read.
        let doc = &docs[1];
        let from_reader = calls(|on_entry, on_air| {
            parse_feed_from_with_air_parallel(&doc[..], now, 2, |r| r, on_entry, on_air)
        });
        let sequential =
            calls(|on_entry, on_air| parse_feed_from_with_air(&doc[..], now, on_entry, on_air));
        assert!(from_reader == sequential);
        assert!(sequential.0.iter().any(|c| c.starts_with("air ")));
        // A reader that fails part way.
        struct Failing<'a>(&'a [u8]);
        impl std::io::Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("the disk went away"));
                }
                let n = buf.len().min(self.0.len()).min(1000);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let half = &doc[..doc.len() / 2];
        let failing = calls(|on_entry, on_air| {
            parse_feed_from_with_air_parallel(Failing(half), now, 2, |r| r, on_entry, on_air)
        });
        let sequential = calls(|on_entry, on_air| {
            parse_feed_from_with_air(Failing(half), now, on_entry, on_air)
        });
        assert!(failing.1.contains("the disk went away"), "{}", failing.1);
        assert!(failing == sequential);
    }
}

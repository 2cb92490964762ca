//! The reading record: one validated feed entry with its computed index.

use crate::air::Air;
use crate::aqi::{Index, Indices};
use crate::hourly::Basis;
use crate::quality::Flags;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A UTC instant with one-second resolution, stored as Unix seconds so that
/// every backend compares and sorts it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_naive(dt: NaiveDateTime) -> Self {
        Timestamp(dt.and_utc().timestamp())
    }

    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp())
    }

    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.0, 0)
    }

    /// Parses the feed's `YYYY-MM-DD HH:MM:SS` (or, in older data,
    /// `YYYY-MM-DDTHH:MM:SS`), always UTC. A hand-written parser: this runs
    /// once per entry on feeds of millions of entries.
    pub fn parse_feed(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 19
            || b[4] != b'-'
            || b[7] != b'-'
            || (b[10] != b' ' && b[10] != b'T')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            b[r].iter().try_fold(0u32, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
            })
        };
        let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
        let dt = date.and_hms_opt(num(11..13)?, num(14..16)?, num(17..19)?)?;
        Some(Self::from_naive(dt))
    }
}

impl Timestamp {
    /// Appends the same text as `Display` to `out`, digit by digit: this
    /// runs once per CSV row, where the formatting machinery was a visible
    /// share of the cost.
    pub fn push_to(self, out: &mut Vec<u8>) {
        match self.to_datetime() {
            Some(dt) if (0..=9999).contains(&dt.year()) => {
                let two = |out: &mut Vec<u8>, v: u32| {
                    out.push(b'0' + (v / 10 % 10) as u8);
                    out.push(b'0' + (v % 10) as u8);
                };
                let year = dt.year() as u32;
                two(out, year / 100);
                two(out, year % 100);
                out.push(b'-');
                two(out, dt.month());
                out.push(b'-');
                two(out, dt.day());
                out.push(b' ');
                two(out, dt.hour());
                out.push(b':');
                two(out, dt.minute());
                out.push(b':');
                two(out, dt.second());
            }
            _ => {
                use std::io::Write;
                let _ = write!(out, "{self}");
            }
        }
    }
}

impl fmt::Display for Timestamp {
    /// `YYYY-MM-DD HH:MM:SS`, the feed's own format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            // Fields rather than a strftime pattern: this runs once per CSV
            // row, and parsing the pattern each time was most of its cost.
            Some(dt) => write!(
                f,
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            ),
            None => write!(f, "@{}", self.0),
        }
    }
}

/// One stored reading. Text fields hold the exact text the sensor sent
/// (`"8.13"` stays `"8.13"`), so no output ever shows float noise; the index is
/// computed once, at ingestion.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The feed entry id (absent in some feeds).
    pub id: Option<u64>,
    pub timestamp: Timestamp,
    pub sensor_id: u64,
    pub sensor_type: String,
    pub loc_id: Option<u64>,
    /// Country code exactly as sent (the feed uses `UK`, not `GB`).
    pub loc_country: String,
    pub loc_lat: String,
    pub loc_long: String,
    /// Altitude as sent; can be empty.
    pub loc_alt: String,
    /// PM10 in µg/m³ (the feed's `P1`), as sent.
    pub p1: Option<String>,
    /// PM2.5 in µg/m³ (the feed's `P2`), as sent.
    pub p2: Option<String>,
    /// The reading's value in each index ([`Index::ALL`]).
    pub indices: Indices,
    /// How many measurements the reading averages, when it is a mean the
    /// archive backfill computed (one sensor's UTC day); `None` for a
    /// reading as the feed sent it.
    pub samples: Option<u32>,
    /// For a reading of the live tier (an hour, or a 5-minute reading
    /// with its hour's indices), the concentrations its indices were
    /// computed from ([`crate::hourly`]); `None` for a daily reading.
    pub basis: Option<Basis>,
    /// What ingestion found of the reading's quality ([`crate::quality`]).
    pub flags: Flags,
    /// The humidity and temperature measured at its station in its period
    /// ([`crate::air`]), as sent.
    pub air: Air,
}

impl Reading {
    /// The reading without flags or air: what a store written before the
    /// flags keeps of it.
    #[must_use]
    pub fn without_quality(self) -> Reading {
        Reading {
            flags: Flags::NONE,
            air: Air::default(),
            ..self
        }
    }

    /// The reading's value in `index`.
    pub fn index(&self, index: Index) -> u16 {
        self.indices.get(index)
    }

    /// Latitude and longitude in degrees, when the stored text is a number
    /// (ingestion only stores readings whose text is).
    pub fn position(&self) -> Option<(f64, f64)> {
        crate::place::position(&self.loc_lat, &self.loc_long)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn push_to_writes_what_display_writes(secs in -70_000_000_000i64..300_000_000_000i64) {
            let t = Timestamp(secs);
            let mut out = Vec::new();
            t.push_to(&mut out);
            prop_assert_eq!(String::from_utf8(out).unwrap(), t.to_string());
        }
    }

    #[test]
    fn push_to_edges() {
        for t in [
            Timestamp(0),
            Timestamp(1_528_058_878),
            Timestamp(i64::MAX),
            Timestamp(-1),
        ] {
            let mut out = Vec::new();
            t.push_to(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), t.to_string());
        }
    }
}

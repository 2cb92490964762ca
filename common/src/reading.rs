//! The reading record: one validated feed entry with its computed index.

use crate::aqi::Band;
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// DAQI, 1..=10.
    pub aqi: u8,
}

impl Reading {
    pub fn band(&self) -> Band {
        Band::of_index(self.aqi)
    }
}

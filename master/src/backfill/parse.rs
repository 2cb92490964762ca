//! One archive file, read as it streams in: `;`-separated values with a
//! header row, columns found by name (sensors differ in their columns:
//! SDS011 `P1;durP1;ratioP1;P2;durP2;ratioP2`, SPS30 adds `P0`, `N05`, …),
//! each row validated with the live feed's rules and either averaged into
//! the file's daily mean or kept as a reading of its own.
//!
//! A row is rejected for exactly one reason, checked in the live feed's
//! order (structure, timestamp, values, then text):
//!
//! - `malformed entry`: too few cells, text that is not UTF-8, a
//!   `sensor_id` that is not the file name's, a `location` that is not a
//!   number, or any row of a file whose header lacks the columns needed;
//! - `bad timestamp`: not `YYYY-MM-DDTHH:MM:SS` (or `… HH:MM:SS`);
//! - `timestamp out of range`: outside the live feed's window (2015-01-01
//!   to a day after now) or on another UTC day than the file's;
//! - `no P1/P2 value` (both cells empty), `non-numeric value`,
//!   `negative value`, `non-finite value`, `sensor saturated`: the feed's
//!   value rules (`airq_core::feed::particulate_value`);
//! - `bad sensor type`, `bad latitude`, `bad longitude`: the feed's text
//!   rules;
//! - `in no country`: the coordinates are in no country (the sea, 0/0);
//! - `duplicate timestamp` ([`Rejection::Duplicate`]): a valid row at a
//!   second an earlier valid row of the file already had. A measurement is its sensor
//!   and its second, once (a file is one sensor's day): the first is kept,
//!   so that a file repeating its rows cannot weigh a mean with more than
//!   the day's 86,400 seconds.
//!
//! The format has no quoting: a `"` is a character like any other (the
//! archive never quotes, and a CSV reader's quote rules would let one stray
//! `"` swallow the rest of the file as one cell). Each line is split at
//! every `;`. A line longer than [`super::lines::MAX_LINE_BYTES`] is a malformed
//! row, skipped without being held in memory (see [`super::lines`]).
//!
//! A file whose header has no `P1` and no `P2` column is not a particulate
//! sensor's. At daily resolution, one of a type `--air-types` names with
//! `location`, `timestamp` and a `humidity` or `temperature` column (a
//! DHT22, a BME280, an SHT3x) gives
//! its station's air for the day ([`FileKind::Air`]): the exact means of
//! its humidities and temperatures ([`airq_core::air::AirMean`]) over its
//! rows of the file's day, one per second, of the file's sensor, stamped
//! like a daily mean; rows that are not are left out, uncounted (the
//! counts are of particulate rows). Any other such file is skipped and
//! counted, its rows are not.

use super::archive::ArchiveFile;
use super::country::Countries;
use super::lines::{Line, Lines};
use super::{Backfilled, Resolution, TypeFilter};
use airq_core::air::{AirMean, Measured};
use airq_core::feed::{self, FeedStats, Rejection, TimeWindow, PM10_RAIL, PM25_RAIL};
use airq_core::mean::ExactSum;
use airq_core::quality::{self, Flag, Flags};
use airq_core::{Indices, Reading, Timestamp};
use chrono::{NaiveDate, NaiveTime};
use std::io::BufRead;

/// What reading one file gave.
#[derive(Debug, Default)]
pub struct Parsed {
    pub kind: FileKind,
    /// Rows read (`entries`), accepted and rejected by reason.
    pub stats: FeedStats,
    /// The file's readings: at most one (per sensor) at daily resolution,
    /// one per accepted row at raw resolution.
    pub readings: Vec<Backfilled>,
    /// Lines over [`super::lines::MAX_LINE_BYTES`], each counted as a malformed row.
    pub long_lines: u64,
    /// A T/RH sensor's day ([`FileKind::Air`]): its station's mean air,
    /// when a row had a humidity or a temperature.
    pub air: Option<Measured>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Read; its rows are counted.
    #[default]
    Read,
    /// A sensor without `P1`/`P2` columns (BME280, DHT22, …) read for its
    /// station's air (daily resolution).
    Air,
    /// A sensor without `P1`/`P2` columns, not read.
    NoParticulates,
    /// A header without the columns a row needs: every row is malformed.
    BrokenHeader,
}

/// What every file of a run is read against.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub countries: &'a Countries,
    pub resolution: Resolution,
    /// The T/RH sensor types read for the stations' air (`--air-types`,
    /// daily resolution); `None` for none.
    pub air: Option<&'a TypeFilter>,
    /// The live feed's window of timestamps, at the run's start.
    pub window: TimeWindow,
}

/// Where the columns a backfill reads are.
struct Columns {
    sensor_id: usize,
    sensor_type: usize,
    location: Option<usize>,
    lat: usize,
    lon: usize,
    timestamp: usize,
    p1: Option<usize>,
    p2: Option<usize>,
}

/// Where the columns of a T/RH sensor's file are.
struct AirColumns {
    sensor_id: usize,
    location: usize,
    timestamp: usize,
    humidity: Option<usize>,
    temperature: Option<usize>,
}

enum Header {
    Columns(Columns),
    Air(AirColumns),
    NoParticulates,
    Broken,
}

fn header(names: &csv::ByteRecord) -> Header {
    let find = |want: &str| {
        names.iter().position(|n| {
            // A byte-order mark before the first name, spaces around any.
            let n = n.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(n);
            n.trim_ascii() == want.as_bytes()
        })
    };
    let (p1, p2) = (find("P1"), find("P2"));
    if p1.is_none() && p2.is_none() {
        let (humidity, temperature) = (find("humidity"), find("temperature"));
        return match (find("sensor_id"), find("location"), find("timestamp")) {
            (Some(sensor_id), Some(location), Some(timestamp))
                if humidity.is_some() || temperature.is_some() =>
            {
                Header::Air(AirColumns {
                    sensor_id,
                    location,
                    timestamp,
                    humidity,
                    temperature,
                })
            }
            (Some(_), _, Some(_))
                if [find("sensor_type"), find("lat"), find("lon")]
                    .iter()
                    .all(Option::is_some) =>
            {
                Header::NoParticulates
            }
            _ => Header::Broken,
        };
    }
    let required = (
        find("sensor_id"),
        find("sensor_type"),
        find("lat"),
        find("lon"),
        find("timestamp"),
    );
    match required {
        (Some(sensor_id), Some(sensor_type), Some(lat), Some(lon), Some(timestamp)) => {
            Header::Columns(Columns {
                sensor_id,
                sensor_type,
                location: find("location"),
                lat,
                lon,
                timestamp,
                p1,
                p2,
            })
        }
        _ => Header::Broken,
    }
}

/// The timestamp every daily mean of `day` gets: the day's last second,
/// 23:59:59 UTC, the end of the 24 hours it averages. The nightly run at
/// 00:00 UTC stores each sensor's 24-hour average with the feed's timestamp,
/// the end of its window, just before midnight: a backfilled day and a
/// nightly day fall on the same UTC day, in its last hour.
pub fn daily_timestamp(day: NaiveDate) -> Timestamp {
    Timestamp::from_naive(day.and_time(NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default()))
}

/// The day's mean of one sensor as rows are accepted, with the last row's
/// site (a sensor moved during the day is where it ended it, as in the
/// nightly 24-hour feed).
#[derive(Default)]
struct Daily {
    p1: ExactSum,
    p2: ExactSum,
    rows: u64,
    sensor_type: String,
    loc_id: Option<u64>,
    lat: String,
    lon: String,
    country: String,
}

fn set(field: &mut String, text: &str) {
    // Most rows repeat the site: compare before allocating.
    if field != text {
        text.clone_into(field);
    }
}

/// The country of the last coordinates looked up, as most rows of a file
/// repeat them.
struct CountryCache {
    key: (String, String),
    country: Option<String>,
}

/// One row's cells, once the row is accepted.
struct Row<'r> {
    ts: Timestamp,
    p1: Option<(&'r str, f64)>,
    p2: Option<(&'r str, f64)>,
    sensor_type: &'r str,
    loc_id: Option<u64>,
    lat: &'r str,
    lon: &'r str,
}

/// Validates one row (see the module's documentation for the order).
fn row<'r>(
    record: &'r csv::ByteRecord,
    cols: &Columns,
    file: &ArchiveFile,
    window: TimeWindow,
    day: TimeWindow,
) -> Result<Row<'r>, Rejection> {
    let cell = |i: usize| -> Result<&'r str, Rejection> {
        let bytes = record.get(i).ok_or(Rejection::Malformed)?;
        std::str::from_utf8(bytes)
            .map(str::trim)
            .map_err(|_| Rejection::Malformed)
    };
    // A column the header does not have is empty; one the header has but
    // the row is too short for is a malformed row.
    let optional = |i: Option<usize>| -> Result<&'r str, Rejection> { i.map_or(Ok(""), cell) };
    if cell(cols.sensor_id)?.parse::<u64>().ok() != Some(file.sensor_id) {
        return Err(Rejection::Malformed);
    }
    let loc_id = match optional(cols.location)? {
        "" => None,
        text => Some(text.parse::<u64>().map_err(|_| Rejection::Malformed)?),
    };
    let sensor_type = cell(cols.sensor_type)?;
    let lat = cell(cols.lat)?;
    let lon = cell(cols.lon)?;

    let ts = Timestamp::parse_feed(cell(cols.timestamp)?).ok_or(Rejection::BadTimestamp)?;
    if !window.contains(ts) || !day.contains(ts) {
        return Err(Rejection::TimestampOutOfRange);
    }

    let value = |i: Option<usize>, rail: f64| -> Result<Option<(&'r str, f64)>, Rejection> {
        match optional(i)? {
            "" => Ok(None),
            text => Ok(Some((text, feed::particulate_value(text, rail)?))),
        }
    };
    let p1 = value(cols.p1, PM10_RAIL)?;
    let p2 = value(cols.p2, PM25_RAIL)?;
    if p1.is_none() && p2.is_none() {
        return Err(Rejection::NoParticulates);
    }

    if !feed::valid_sensor_type(sensor_type) {
        return Err(Rejection::BadSensorType);
    }
    if !feed::decimal_within(lat, 90) {
        return Err(Rejection::BadLatitude);
    }
    if !feed::decimal_within(lon, 180) {
        return Err(Rejection::BadLongitude);
    }
    Ok(Row {
        ts,
        p1,
        p2,
        sensor_type,
        loc_id,
        lat,
        lon,
    })
}

/// The seconds of one UTC day a file's valid rows had: 86,400 bits.
struct Seconds(Vec<u64>);

impl Seconds {
    fn new() -> Seconds {
        Seconds(vec![0; 86_400 / 64 + 1])
    }

    /// Marks second `s` of the day; false if it was marked already.
    fn first(&mut self, s: usize) -> bool {
        let (word, bit) = (s / 64, 1u64 << (s % 64));
        match self.0.get_mut(word) {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                true
            }
            Some(_) => false,
            // Not a second of the day: rows are checked to be in it.
            None => true,
        }
    }
}

/// `line` split at every `;` into `record` (no quoting: see the module).
fn split(line: &[u8], record: &mut csv::ByteRecord) {
    record.clear();
    for cell in line.split(|&b| b == b';') {
        record.push_field(cell);
    }
}

fn blank(line: &[u8]) -> bool {
    line.trim_ascii().is_empty()
}

/// Reads one file from `input` as it streams, a line at a time. `Err` is an
/// I/O error (a file that could not be read to its end): the file is not
/// done, and neither is its day. Everything in the text is counted, never
/// an error.
pub fn parse<R: BufRead>(
    input: R,
    file: &ArchiveFile,
    ctx: Context<'_>,
) -> std::io::Result<Parsed> {
    let mut lines = Lines::new(input);
    let mut out = Parsed::default();
    let mut names = csv::ByteRecord::new();
    // The header is the first line that is not blank. An empty file has
    // none and no rows: read, nothing in it.
    let mut header_too_long = false;
    while let Some(line) = lines.next_line()? {
        match line {
            Line::Text(t) if blank(t) => continue,
            Line::Text(t) => split(t, &mut names),
            Line::TooLong { .. } => {
                out.long_lines += 1;
                header_too_long = true;
            }
        }
        break;
    }
    let cols = match header(&names) {
        _ if header_too_long => {
            out.kind = FileKind::BrokenHeader;
            None
        }
        _ if names.is_empty() => None,
        Header::Columns(cols) => Some(cols),
        Header::Air(cols)
            if ctx.resolution == Resolution::Daily
                && ctx.air.is_some_and(|t| t.wants(&file.sensor_type)) =>
        {
            out.kind = FileKind::Air;
            out.air = air_day(&mut lines, &cols, file, ctx.window)?;
            return Ok(out);
        }
        Header::Air(_) | Header::NoParticulates => {
            out.kind = FileKind::NoParticulates;
            return Ok(out);
        }
        Header::Broken => {
            out.kind = FileKind::BrokenHeader;
            None
        }
    };

    // The file's UTC day, as a window of timestamps: a row of another day
    // is out of range.
    let day = day_window(file);
    let first = day.earliest;
    let mut seconds = Seconds::new();
    let mut daily = Daily::default();
    let mut cache = CountryCache {
        key: (String::new(), String::new()),
        country: None,
    };
    let mut record = csv::ByteRecord::new();
    while let Some(line) = lines.next_line()? {
        match line {
            // A blank line (a trailing newline too many) is no row.
            Line::Text(t) if blank(t) => continue,
            Line::Text(t) => split(t, &mut record),
            Line::TooLong { .. } => {
                out.long_lines += 1;
                out.stats.entries += 1;
                *out.stats.rejected.entry(Rejection::Malformed).or_default() += 1;
                continue;
            }
        }
        out.stats.entries += 1;
        let accepted = match &cols {
            None => Err(Rejection::Malformed),
            Some(cols) => row(&record, cols, file, ctx.window, day).and_then(|r| {
                if cache.key.0 != r.lat || cache.key.1 != r.lon {
                    // Checked as numbers within range above.
                    let at = match (r.lat.parse::<f64>(), r.lon.parse::<f64>()) {
                        (Ok(lat), Ok(lon)) => ctx.countries.at(lat, lon).map(str::to_owned),
                        _ => None,
                    };
                    cache = CountryCache {
                        key: (r.lat.to_owned(), r.lon.to_owned()),
                        country: at,
                    };
                }
                let country = cache.country.as_deref().ok_or(Rejection::NoCountry)?;
                Ok((r, country))
            }),
        };
        let accepted = accepted.map(|(r, country)| {
            // The row is in the file's day (checked above): its second of
            // the day is in 0..86,400.
            let fresh = usize::try_from(r.ts.0 - first.0).map_or(true, |s| seconds.first(s));
            (r, country, fresh)
        });
        match accepted {
            Err(why) => *out.stats.rejected.entry(why).or_default() += 1,
            Ok((_, _, false)) => *out.stats.rejected.entry(Rejection::Duplicate).or_default() += 1,
            Ok((r, country, true)) => {
                out.stats.accepted += 1;
                match ctx.resolution {
                    Resolution::Raw => out.readings.push(raw_reading(file, &r, country)),
                    Resolution::Daily => {
                        daily.p1.add(r.p1);
                        daily.p2.add(r.p2);
                        daily.rows += 1;
                        set(&mut daily.sensor_type, r.sensor_type);
                        set(&mut daily.lat, r.lat);
                        set(&mut daily.lon, r.lon);
                        set(&mut daily.country, country);
                        daily.loc_id = r.loc_id;
                    }
                }
            }
        }
    }
    if ctx.resolution == Resolution::Daily && daily.rows > 0 {
        out.readings.push(daily_reading(file, daily));
    }
    Ok(out)
}

/// The file's UTC day as a window of timestamps.
fn day_window(file: &ArchiveFile) -> TimeWindow {
    let first = Timestamp::from_naive(file.day.and_time(NaiveTime::MIN));
    TimeWindow {
        earliest: first,
        latest: Timestamp(first.0 + 86_399),
    }
}

/// The mean air of a T/RH sensor's day (see the module): `None` when no
/// row of the file's sensor and day had a humidity or a temperature.
fn air_day<R: BufRead>(
    lines: &mut Lines<R>,
    cols: &AirColumns,
    file: &ArchiveFile,
    window: TimeWindow,
) -> std::io::Result<Option<Measured>> {
    let day = day_window(file);
    let mut seconds = Seconds::new();
    let mut mean = AirMean::default();
    let mut location = None;
    let mut record = csv::ByteRecord::new();
    while let Some(line) = lines.next_line()? {
        let Line::Text(t) = line else { continue };
        split(t, &mut record);
        let cell = |i: usize| {
            record
                .get(i)
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(str::trim)
        };
        let ours = cell(cols.sensor_id).and_then(|t| t.parse::<u64>().ok()) == Some(file.sensor_id);
        let at = cell(cols.location).and_then(|t| t.parse::<u64>().ok());
        let ts = cell(cols.timestamp).and_then(Timestamp::parse_feed);
        let (Some(at), Some(ts), true) = (at, ts, ours) else {
            continue;
        };
        if !window.contains(ts) || !day.contains(ts) {
            continue;
        }
        let (h, t) = (
            cols.humidity.and_then(cell),
            cols.temperature.and_then(cell),
        );
        let fresh = usize::try_from(ts.0 - day.earliest.0).is_ok_and(|s| seconds.first(s));
        if fresh && mean.add(h, t) {
            location = Some(at);
        }
    }
    let air = mean.mean();
    Ok(location
        .filter(|_| !air.is_empty())
        .map(|location| Measured {
            location,
            sensor_id: file.sensor_id,
            timestamp: daily_timestamp(file.day),
            air,
        }))
}

fn raw_reading(file: &ArchiveFile, r: &Row<'_>, country: &str) -> Backfilled {
    let mut reading = Reading {
        id: None,
        timestamp: r.ts,
        sensor_id: file.sensor_id,
        sensor_type: r.sensor_type.to_owned(),
        loc_id: r.loc_id,
        loc_country: country.to_owned(),
        loc_lat: r.lat.to_owned(),
        loc_long: r.lon.to_owned(),
        // The archive's rows carry no altitude (the live feed's is often
        // empty too).
        loc_alt: String::new(),
        p1: r.p1.map(|(text, _)| text.to_owned()),
        p2: r.p2.map(|(text, _)| text.to_owned()),
        indices: Indices::lowest(),
        samples: None,
        basis: None,
        flags: Default::default(),
        air: Default::default(),
    };
    if let Some(i) = Indices::of(r.p1.map(|p| p.1), r.p2.map(|p| p.1)) {
        reading.indices = i;
    }
    Backfilled {
        reading,
        samples: 1,
    }
}

fn daily_reading(file: &ArchiveFile, d: Daily) -> Backfilled {
    let p1 = d.p1.mean();
    let p2 = d.p2.mean();
    let mut reading = Reading {
        id: None,
        timestamp: daily_timestamp(file.day),
        sensor_id: file.sensor_id,
        sensor_type: d.sensor_type,
        loc_id: d.loc_id,
        loc_country: d.country,
        loc_lat: d.lat,
        loc_long: d.lon,
        loc_alt: String::new(),
        p1: None,
        p2: None,
        indices: Indices::lowest(),
        // Stored with the mean: how many measurements it averages.
        samples: Some(u32::try_from(d.rows).unwrap_or(u32::MAX)),
        basis: None,
        flags: Default::default(),
        air: Default::default(),
    };
    // Rows were accepted, so one of the two has a mean.
    let (v1, v2) = (p1.as_ref().map(|p| p.1), p2.as_ref().map(|p| p.1));
    if let Some(i) = Indices::of(v1, v2) {
        reading.indices = i;
    }
    // The entry's own flag, as the nightly feed's 24-hour means get it;
    // the archive says nothing of `indoor`. The others are the day's
    // (`super::assess`).
    reading.flags = Flags::NONE.with_if(Flag::Pm25AbovePm10, quality::pm25_above_pm10(v1, v2));
    reading.p1 = p1.map(|p| p.0);
    reading.p2 = p2.map(|p| p.0);
    Backfilled {
        reading,
        samples: d.rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: u64) -> ArchiveFile {
        ArchiveFile {
            day: "2025-10-15".parse().expect("a date"),
            sensor_type: "sds011".into(),
            sensor_id: id,
            name: format!("2025-10-15_sds011_sensor_{id}.csv"),
        }
    }

    static EVERY_TYPE: TypeFilter = TypeFilter::All;

    fn ctx(countries: &Countries, resolution: Resolution) -> Context<'_> {
        Context {
            countries,
            resolution,
            air: Some(&EVERY_TYPE),
            window: TimeWindow::at(Timestamp::parse_feed("2026-01-01 00:00:00").expect("a time")),
        }
    }

    const HEADER: &str =
        "sensor_id;sensor_type;location;lat;lon;timestamp;P1;durP1;ratioP1;P2;durP2;ratioP2\n";

    #[test]
    fn rows_are_rejected_by_reason_and_averaged() {
        let countries = Countries::load().expect("boundaries");
        let text = format!(
            "{HEADER}\
             7;SDS011;1;51.5074;-0.1278;2025-10-15T00:00:01;10.00;;;4.00;;\n\
             7;SDS011;1;51.5074;-0.1278;2025-10-15T12:00:00;20.01;;;;;\n\
             7;SDS011;1;51.5074;-0.1278;2025-10-15 23:59:59;;;;5.00;;\n\
             7;SDS011;1;51.5074;-0.1278;2025-10-15T13:00:00\n\
             8;SDS011;1;51.5074;-0.1278;2025-10-15T13:00:00;1;;;1;;\n\
             7;SDS011;x;51.5074;-0.1278;2025-10-15T13:00:00;1;;;1;;\n\
             7;SDS011;1;51.5074;-0.1278;2025-10-16T00:00:00;1;;;1;;\n\
             7;SDS011;1;51.5074;-0.1278;2014-10-15T00:00:00;1;;;1;;\n\
             7;SDS011;1;51.5074;-0.1278;15.10.2025 13:00;1;;;1;;\n\
             7;SDS011;1;51.5074;-0.1278;2025-10-15T13:00:00;;;;;;\n\
             7;SDS011;1;51.5074;-0.1278;2025-10-15T13:00:00;unavailable;;;1;;\n\
             7;SDS011;1;51.5074;-0.1278;2025-10-15T13:00:00;-1;;;1;;\n\
             7;SDS011;1;51.5074;-0.1278;2025-10-15T13:00:00;1;;;NaN;;\n\
             7;SDS011;1;51.5074;-0.1278;2025-10-15T13:00:00;1;;;999.90;;\n\
             7;=cmd;1;51.5074;-0.1278;2025-10-15T13:00:00;1;;;1;;\n\
             7;SDS011;1;91;-0.1278;2025-10-15T13:00:00;1;;;1;;\n\
             7;SDS011;1;51.5074;1e2;2025-10-15T13:00:00;1;;;1;;\n\
             7;SDS011;1;45.0;-30.0;2025-10-15T13:00:00;1;;;1;;\n\
             7;SDS011;1;0;0;2025-10-15T13:00:00;1;;;1;;\n\
             \n"
        );
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"7;SDS\xff;1;51.5;-0.1;2025-10-15T13:00:00;1;;;1;;\n");
        let p = parse(&bytes[..], &file(7), ctx(&countries, Resolution::Daily)).expect("reads");
        assert_eq!(p.kind, FileKind::Read);
        assert_eq!((p.stats.entries, p.stats.accepted), (20, 3));
        for (why, n) in [
            (Rejection::Malformed, 4),
            (Rejection::TimestampOutOfRange, 2),
            (Rejection::BadTimestamp, 1),
            (Rejection::NoParticulates, 1),
            (Rejection::NonNumeric, 1),
            (Rejection::Negative, 1),
            (Rejection::NonFinite, 1),
            (Rejection::Saturated, 1),
            (Rejection::BadSensorType, 1),
            (Rejection::BadLatitude, 1),
            (Rejection::BadLongitude, 1),
            (Rejection::NoCountry, 2),
        ] {
            assert_eq!(p.stats.rejected(why), n, "{why}");
        }
        assert_eq!(p.stats.rejected_total() + p.stats.accepted, p.stats.entries);
        let [daily] = &p.readings[..] else {
            panic!("one daily reading: {:?}", p.readings)
        };
        let r = &daily.reading;
        assert_eq!(daily.samples, 3);
        // P1 over the two rows with one: (10.00 + 20.01) / 2 = 15.005 → 15.01.
        assert_eq!(
            (r.p1.as_deref(), r.p2.as_deref()),
            (Some("15.01"), Some("4.50"))
        );
        assert_eq!(r.loc_country, "UK");
        assert_eq!(r.timestamp, daily_timestamp(file(7).day));
        assert_eq!(
            r.indices,
            Indices::of(Some(15.01), Some(4.5)).expect("indices")
        );
        assert_eq!((r.loc_id, r.id, r.loc_alt.as_str()), (Some(1), None, ""));

        let raw = parse(&bytes[..], &file(7), ctx(&countries, Resolution::Raw)).expect("reads");
        assert_eq!(raw.readings.len(), 3);
        assert_eq!(raw.readings[1].reading.p1.as_deref(), Some("20.01"));
        assert_eq!(raw.readings[1].reading.p2, None);
        assert_eq!(
            raw.readings[2].reading.timestamp,
            Timestamp::parse_feed("2025-10-15 23:59:59").expect("a time")
        );
    }

    /// Issue: one `"` made a CSV reader's quoted cell of the rest of the
    /// file: 500 rows became one rejection.
    #[test]
    fn a_stray_quote_is_a_character() {
        let countries = Countries::load().expect("boundaries");
        let mut text =
            format!("{HEADER}7;SDS011;\"1;51.5074;-0.1278;2025-10-15T00:00:00;1;;;1;;\n");
        for i in 0..500 {
            text.push_str(&format!(
                "7;SDS011;1;51.5074;-0.1278;2025-10-15T{:02}:{:02}:{:02};10.00;;;4.00;;\n",
                i / 3600,
                i / 60 % 60,
                i % 60
            ));
        }
        text.push_str("7;SDS011;1;51.5074;-0.1278;2025-10-15T12:00:00;\"2.00\";;;4.00;;\n");
        let p = parse(
            text.as_bytes(),
            &file(7),
            ctx(&countries, Resolution::Daily),
        )
        .expect("reads");
        assert_eq!((p.stats.entries, p.stats.accepted), (502, 500));
        assert_eq!(
            p.stats.rejected(Rejection::Malformed),
            1,
            "the quoted location"
        );
        assert_eq!(
            p.stats.rejected(Rejection::NonNumeric),
            1,
            "the quoted value"
        );
        assert_eq!(p.readings[0].samples, 500);
    }

    /// Issue: every row of a repeated second was averaged (a sensor-day of
    /// 2,690,000 measurements). The first valid row of a second is kept.
    #[test]
    fn a_second_is_one_measurement() {
        let countries = Countries::load().expect("boundaries");
        let mut text = format!(
            "{HEADER}\
             7;SDS011;1;51.5074;-0.1278;2025-10-15T01:00:00;unavailable;;;1;;\n\
             7;SDS011;1;51.5074;-0.1278;2025-10-15T01:00:00;10.00;;;4.00;;\n\
             7;SDS011;1;51.5074;-0.1278;2025-10-15T02:00:00;20.00;;;6.00;;\n"
        );
        for _ in 0..1000 {
            text.push_str("7;SDS011;1;51.5074;-0.1278;2025-10-15 01:00:00;99.00;;;99.00;;\n");
            text.push_str("7;SDS011;1;51.5074;-0.1278;2025-10-15T02:00:00;99.00;;;99.00;;\n");
        }
        for resolution in [Resolution::Daily, Resolution::Raw] {
            let p = parse(text.as_bytes(), &file(7), ctx(&countries, resolution)).expect("reads");
            assert_eq!((p.stats.entries, p.stats.accepted), (2003, 2));
            assert_eq!(p.stats.rejected(Rejection::Duplicate), 2000);
            assert_eq!(p.stats.rejected_total(), 2001);
            let kept: u64 = p.readings.iter().map(|r| r.samples).sum();
            assert_eq!(kept, 2, "{resolution:?}");
        }
        let p = parse(
            text.as_bytes(),
            &file(7),
            ctx(&countries, Resolution::Daily),
        )
        .expect("reads");
        let r = &p.readings[0].reading;
        assert_eq!(
            (r.p1.as_deref(), r.p2.as_deref()),
            (Some("15.00"), Some("5.00"))
        );
        assert_eq!(r.samples, Some(2));
    }

    #[test]
    fn negative_zero_is_a_zero_in_every_index() {
        // The red-team pass stored `-0` with US EPA 500. A zero is the
        // bottom of each scale: DAQI 1, US EPA 0, EAQI 1; in a daily mean
        // and in a raw reading alike.
        let countries = Countries::load().expect("boundaries");
        let text = format!(
            "{HEADER}\
             7;SDS011;1;51.5074;-0.1278;2025-10-15T01:00:00;-0;;;-0.00;;\n\
             7;SDS011;1;51.5074;-0.1278;2025-10-15T02:00:00;-0e0;;;-0.0;;\n"
        );
        for resolution in [Resolution::Daily, Resolution::Raw] {
            let p = parse(text.as_bytes(), &file(7), ctx(&countries, resolution)).expect("reads");
            assert!(!p.readings.is_empty(), "{resolution:?}");
            for b in &p.readings {
                let r = &b.reading;
                assert_eq!(r.indices.values(), [1, 0, 1], "{resolution:?}");
            }
        }
    }

    /// A line over the cap is one malformed row, and the rows after it are
    /// read; a header over it makes a broken header.
    #[test]
    fn an_overlong_line_is_one_malformed_row() {
        let countries = Countries::load().expect("boundaries");
        let c = ctx(&countries, Resolution::Daily);
        let long = "7;".repeat(super::super::lines::MAX_LINE_BYTES);
        let text = format!(
            "{HEADER}{long}\n7;SDS011;1;51.5074;-0.1278;2025-10-15T02:00:00;20.00;;;6.00;;\n"
        );
        let p = parse(text.as_bytes(), &file(7), c).expect("reads");
        assert_eq!((p.stats.entries, p.stats.accepted, p.long_lines), (2, 1, 1));
        assert_eq!(p.stats.rejected(Rejection::Malformed), 1);
        let text =
            format!("{long}\n7;SDS011;1;51.5074;-0.1278;2025-10-15T02:00:00;20.00;;;6.00;;\n");
        let p = parse(text.as_bytes(), &file(7), c).expect("reads");
        assert_eq!(
            (p.kind, p.stats.entries, p.stats.accepted),
            (FileKind::BrokenHeader, 1, 0)
        );
    }

    #[test]
    fn a_humidity_sensors_day_is_its_stations_mean_air() {
        let countries = Countries::load().expect("boundaries");
        let c = ctx(&countries, Resolution::Daily);
        // Rows of the day, one per second: another sensor's row, a row of
        // another day, a second row at 00:10:00, a humidity over 100 % and
        // an unreadable temperature are left out. The station moved to
        // location 2 for the last row with a value.
        let dht = "sensor_id;sensor_type;location;lat;lon;timestamp;temperature;humidity\n\
                   7;DHT22;1;51.5;-0.1;2025-10-15T00:10:00;-1.25;90.10\n\
                   7;DHT22;1;51.5;-0.1;2025-10-15T00:10:00;30.00;10.00\n\
                   8;DHT22;1;51.5;-0.1;2025-10-15T01:00:00;30.00;10.00\n\
                   7;DHT22;1;51.5;-0.1;2025-10-16T00:00:00;30.00;10.00\n\
                   7;DHT22;1;51.5;-0.1;2025-10-15T12:00:00;2.00;101.00\n\
                   7;DHT22;2;51.5;-0.1;2025-10-15T23:00:00;n/a;95.01\n\
                   7;DHT22;3;51.5;-0.1;2025-10-15T23:30:00;;\n";
        let p = parse(dht.as_bytes(), &file(7), c).expect("reads");
        assert_eq!(p.kind, FileKind::Air);
        assert_eq!(p.stats, FeedStats::default(), "T/RH rows are not counted");
        // Humidity (90.10 + 95.01) / 2 = 92.555 → 92.56; temperature
        // (−1.25 + 2.00) / 2 = 0.375 → 0.38.
        assert_eq!(
            p.air,
            Some(Measured {
                location: 2,
                sensor_id: 7,
                timestamp: daily_timestamp(file(7).day),
                air: airq_core::air::Air {
                    humidity: Some("92.56".into()),
                    temperature: Some("0.38".into()),
                },
            })
        );
        let nothing = "sensor_id;sensor_type;location;lat;lon;timestamp;temperature;humidity\n\
                       7;DHT22;1;51.5;-0.1;2025-10-15T00:10:00;;\n";
        let p = parse(nothing.as_bytes(), &file(7), c).expect("reads");
        assert_eq!((p.kind, p.air), (FileKind::Air, None));
    }

    #[test]
    fn headers_decide_what_a_file_is() {
        let countries = Countries::load().expect("boundaries");
        let c = ctx(&countries, Resolution::Daily);
        let bme = "sensor_id;sensor_type;location;lat;lon;timestamp;pressure;altitude;pressure_sealevel;temperature;humidity\n\
                   7;BME280;1;51.5;-0.1;2025-10-15T00:00:56;98610.97;;;4.34;100.00\n";
        let p = parse(bme.as_bytes(), &file(7), c).expect("reads");
        assert_eq!((p.kind, p.stats.entries), (FileKind::Air, 0));
        let raw = parse(bme.as_bytes(), &file(7), ctx(&countries, Resolution::Raw));
        assert_eq!(raw.expect("reads").kind, FileKind::NoParticulates);
        // A type --air-types does not name, or none, is not read for air.
        let dht_only = TypeFilter::parse("dht22").expect("a list");
        for air in [Some(&dht_only), None] {
            let p = parse(bme.as_bytes(), &file(7), Context { air, ..c }).expect("reads");
            assert_eq!((p.kind, p.air), (FileKind::NoParticulates, None));
        }
        let pressure = "sensor_id;sensor_type;location;lat;lon;timestamp;pressure\n\
                        7;BMP180;1;51.5;-0.1;2025-10-15T00:00:56;98610.97\n";
        let p = parse(pressure.as_bytes(), &file(7), c).expect("reads");
        assert_eq!((p.kind, p.air), (FileKind::NoParticulates, None));

        let broken = "<html>not a csv</html>\nsecond line\nthird;line\n";
        let p = parse(broken.as_bytes(), &file(7), c).expect("reads");
        assert_eq!(p.kind, FileKind::BrokenHeader);
        assert_eq!(
            (p.stats.entries, p.stats.rejected(Rejection::Malformed)),
            (2, 2)
        );

        let p = parse(&b""[..], &file(7), c).expect("reads");
        assert_eq!(
            (p.kind, p.stats.entries, p.readings.len()),
            (FileKind::Read, 0, 0)
        );

        // Columns by name, in any order, with extra ones; a BOM and CRLF.
        let sps = "\u{feff}sensor_id;sensor_type;location;lat;lon;timestamp;P1;P4;P2;P0;N05;N1\r\n\
                   7;SPS30;;48.7758;9.1829;2025-10-15T10:00:00;3.10;2.9;2.20;1.5;10;11\r\n";
        let p = parse(sps.as_bytes(), &file(7), c).expect("reads");
        let r = &p.readings[0].reading;
        assert_eq!(
            (r.p1.as_deref(), r.p2.as_deref()),
            (Some("3.10"), Some("2.20"))
        );
        assert_eq!(
            (r.sensor_type.as_str(), r.loc_country.as_str(), r.loc_id),
            ("SPS30", "DE", None)
        );
    }
}

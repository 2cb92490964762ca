//! CSV output: the one documented column order every result uses.
//!
//! | column        | meaning                                        |
//! |---------------|------------------------------------------------|
//! | `id`          | feed entry id (empty when the feed had none)   |
//! | `timestamp`   | UTC, `YYYY-MM-DD HH:MM:SS`                     |
//! | `sensor_id`   | Sensor.Community sensor id                     |
//! | `sensor_type` | e.g. `SDS011`                                  |
//! | `loc_id`      | location id                                    |
//! | `loc_country` | country code as sent (`UK`, not `GB`)          |
//! | `loc_lat`     | latitude as sent                               |
//! | `loc_long`    | longitude as sent                              |
//! | `loc_alt`     | altitude as sent (may be empty)                |
//! | `P1`          | PM10, µg/m³, as sent (empty if not measured)   |
//! | `P2`          | PM2.5, µg/m³, as sent (empty if not measured)  |
//! | `AQI`         | the query's index (UK DAQI, 1–10, by default)  |
//! | `Range`       | its band (`Low`, `Moderate`, `High` or `Very High` for DAQI) |
//!
//! Rows come in the store's order: by timestamp, then sensor id.
//!
//! **NDJSON and GeoJSON** ([`Format`]) carry the same fields under the same
//! names: NDJSON one object per line; GeoJSON a `FeatureCollection` of
//! `Point`s `[lon, lat]` with the fields as `properties`. Numbers are
//! written as the sensor sent them (`48.8000` stays `48.8000`), as JSON
//! numbers; text fields and the timestamp (the CSV's text) are JSON
//! strings; an empty cell of the CSV is `null`. A stored number whose text
//! is not JSON's syntax (`.5`, `+5`) is written as the number it parses
//! to. A daily mean of the archive backfill adds `samples`, the number of
//! measurements it averages (the CSV's columns stay as they were). Every
//! format streams: a row is written as it is read.
//!
//! **Formula cells (CSV injection).** A spreadsheet may run a cell that
//! starts with `=`, `+`, `-`, `@`, a tab or a carriage return as a formula
//! (OWASP's list). Ingestion rejects such text, but a store may hold readings
//! ingested before it did, so the writer enforces the rule on every cell of
//! every answer, here, once (the direct path, the workers and every backend
//! render through [`CsvWriter::write_row`]): a cell whose first byte is one
//! of those six and which is not a number (see [`is_number`]) is written
//! with a single quote `'` before it ([`FORMULA_GUARD`]), which spreadsheets
//! show as text and a program can strip. A number such as `-3.5` is written
//! unchanged, so the CSV of valid data is byte for byte what it was.

use crate::air::Air;
use crate::aqi::{Index, Indices};
use crate::correction::{Corrected, Correction};
use crate::error::BackendError;
use crate::gzip::PieceKey;
use crate::hourly::Basis;
use crate::quality::Flags;
use crate::reading::{Reading, Timestamp};
use crate::resolution::Resolution;
use crate::store::ReadingStream;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

pub const CSV_HEADER: [&str; 13] = [
    "id",
    "timestamp",
    "sensor_id",
    "sensor_type",
    "loc_id",
    "loc_country",
    "loc_lat",
    "loc_long",
    "loc_alt",
    "P1",
    "P2",
    "AQI",
    "Range",
];

/// One row's fields, borrowed: what the CSV writer needs, whether they come
/// from a [`Reading`] or straight from a database row, so the hot path
/// allocates nothing per field.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub id: Option<u64>,
    pub timestamp: Timestamp,
    pub sensor_id: u64,
    pub sensor_type: &'a str,
    pub loc_id: Option<u64>,
    pub loc_country: &'a str,
    pub loc_lat: &'a str,
    pub loc_long: &'a str,
    pub loc_alt: &'a str,
    pub p1: Option<&'a str>,
    pub p2: Option<&'a str>,
    pub indices: Indices,
    pub samples: Option<u32>,
    pub basis: Option<Basis>,
    pub flags: Flags,
    /// The station's relative humidity (%) and temperature (°C), as sent.
    pub humidity: Option<&'a str>,
    pub temperature: Option<&'a str>,
}

impl RowRef<'_> {
    /// The row's value in `index`.
    pub fn index(&self, index: Index) -> u16 {
        self.indices.get(index)
    }
}

impl<'a> From<&'a Reading> for RowRef<'a> {
    fn from(r: &'a Reading) -> Self {
        RowRef {
            id: r.id,
            timestamp: r.timestamp,
            sensor_id: r.sensor_id,
            sensor_type: &r.sensor_type,
            loc_id: r.loc_id,
            loc_country: &r.loc_country,
            loc_lat: &r.loc_lat,
            loc_long: &r.loc_long,
            loc_alt: &r.loc_alt,
            p1: r.p1.as_deref(),
            p2: r.p2.as_deref(),
            indices: r.indices,
            samples: r.samples,
            basis: r.basis,
            flags: r.flags,
            humidity: r.air.humidity.as_deref(),
            temperature: r.air.temperature.as_deref(),
        }
    }
}

impl From<RowRef<'_>> for Reading {
    fn from(r: RowRef<'_>) -> Self {
        Reading {
            id: r.id,
            timestamp: r.timestamp,
            sensor_id: r.sensor_id,
            sensor_type: r.sensor_type.to_owned(),
            loc_id: r.loc_id,
            loc_country: r.loc_country.to_owned(),
            loc_lat: r.loc_lat.to_owned(),
            loc_long: r.loc_long.to_owned(),
            loc_alt: r.loc_alt.to_owned(),
            p1: r.p1.map(str::to_owned),
            p2: r.p2.map(str::to_owned),
            indices: r.indices,
            samples: r.samples,
            basis: r.basis,
            flags: r.flags,
            air: Air {
                humidity: r.humidity.map(str::to_owned),
                temperature: r.temperature.map(str::to_owned),
            },
        }
    }
}

/// Writes readings as CSV, header first.
pub struct CsvWriter<W: Write> {
    inner: csv::Writer<W>,
    rows: u64,
    /// Formatting space for a row's numeric fields, reused.
    scratch: Vec<u8>,
    /// The index the `AQI` and `Range` columns show.
    index: Index,
    /// Whether rows end with [`FLAGS_COLUMN`] ([`Rendering::quality`]).
    quality: bool,
    /// The correction whose [`CORRECTION_COLUMNS`] rows end with
    /// ([`Rendering::correction`]).
    correction: Option<Correction>,
    /// Formatting space for a row's corrected values, reused.
    corrected_scratch: Vec<u8>,
}

/// The CSV column a query with a `quality` filter appends: the reading's
/// flags by name, separated by spaces, empty for none.
pub const FLAGS_COLUMN: &str = "flags";

/// The CSV columns a query with a `correction` appends (after
/// [`FLAGS_COLUMN`] when both are asked): the station's relative humidity
/// the values were corrected for, and the corrected PM10 and PM2.5. The
/// JSON formats name the corrected values alike.
pub const CORRECTION_COLUMNS: [&str; 3] = ["humidity", "P1_corrected", "P2_corrected"];

impl<W: Write> CsvWriter<W> {
    /// A writer whose `AQI` and `Range` columns are the DAQI.
    pub fn new(out: W) -> csv::Result<Self> {
        Self::with_index(out, Index::Daqi)
    }

    /// A writer whose `AQI` and `Range` columns are `index`'s.
    pub fn with_index(out: W, index: Index) -> csv::Result<Self> {
        Self::with(out, index, false, None)
    }

    /// A writer of `rendering`'s columns.
    pub fn for_rendering(out: W, rendering: &Rendering) -> csv::Result<Self> {
        Self::with(
            out,
            rendering.index,
            rendering.quality,
            rendering.correction,
        )
    }

    fn with(
        out: W,
        index: Index,
        quality: bool,
        correction: Option<Correction>,
    ) -> csv::Result<Self> {
        let mut inner = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(out);
        let mut header = CSV_HEADER.to_vec();
        if quality {
            header.push(FLAGS_COLUMN);
        }
        if correction.is_some() {
            header.extend(CORRECTION_COLUMNS);
        }
        inner.write_record(header)?;
        Ok(CsvWriter {
            inner,
            rows: 0,
            scratch: Vec::with_capacity(64),
            index,
            quality,
            correction,
            corrected_scratch: Vec::new(),
        })
    }

    pub fn write(&mut self, r: &Reading) -> csv::Result<()> {
        self.write_row(&RowRef::from(r))
    }

    pub fn write_row(&mut self, r: &RowRef<'_>) -> csv::Result<()> {
        let corrected = self.correction.map(|c| c.apply(r.p1, r.p2, r.humidity));
        let indices = corrected.as_ref().map_or(r.indices, |c| c.indices);
        // An undefined index (an hour with too little data, a reading
        // with no corrected value) is empty.
        let value = indices.defined(self.index);
        let mut digits = itoa::Buffer::new();
        let aqi = value.map_or(&b""[..], |v| digits.format(v).as_bytes());
        let range = value.map_or("", |v| self.index.label(v)).as_bytes();
        self.rows += 1;
        let inner = &mut self.inner;
        if self.quality || corrected.is_some() {
            // Flag names are plain words and corrected values numbers;
            // the humidity is text as stored, checked with the rest.
            let flags = self.quality.then(|| r.flags.to_string());
            let values = &mut self.corrected_scratch;
            values.clear();
            let mut ends = [0; 2];
            if let Some(c) = &corrected {
                for (end, value) in ends.iter_mut().zip([c.p1, c.p2]) {
                    if let Some(h) = value {
                        h.push_to(values);
                    }
                    *end = values.len();
                }
            }
            let values = &*values;
            return with_leading_cells(r, &mut self.scratch, |cells| {
                let mut record: Vec<&[u8]> = Vec::with_capacity(18);
                record.extend_from_slice(cells);
                record.extend([aqi, range]);
                if let Some(flags) = &flags {
                    record.push(flags.as_bytes());
                }
                if corrected.is_some() {
                    record.extend([
                        r.humidity.unwrap_or("").as_bytes(),
                        &values[..ends[0]],
                        &values[ends[0]..ends[1]],
                    ]);
                }
                if record.iter().any(|cell| is_formula(cell)) {
                    return inner.write_record(record.into_iter().map(defused));
                }
                inner.write_record(record)
            });
        }
        with_leading_cells(r, &mut self.scratch, |cells| {
            let [a, b, c, d, e, f, g, h, i, j, k] = *cells;
            let record: [&[u8]; 13] = [a, b, c, d, e, f, g, h, i, j, k, aqi, range];
            // One byte compared per cell in the common case; only a row
            // with a formula-like cell pays for copies.
            if record.iter().any(|cell| is_formula(cell)) {
                return inner.write_record(record.map(defused));
            }
            inner.write_record(record)
        })
    }

    /// Hands what the writer has buffered to its output, so that bytes
    /// written to the output next come after it.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// Rows written so far (the header not counted).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The output, as far as it has been flushed (the writer buffers up to
    /// 8 KiB of its own).
    pub fn get_ref(&self) -> &W {
        self.inner.get_ref()
    }

    pub fn finish(self) -> csv::Result<W> {
        self.inner
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))
    }
}

/// Calls `f` with a row's cells before `AQI` and `Range` (the first 11 of
/// [`CSV_HEADER`]). The numbers and the timestamp are formatted into one
/// reused buffer and handed on as slices of it: no allocation per field,
/// which adds up over millions of rows.
fn with_leading_cells<T>(r: &RowRef<'_>, s: &mut Vec<u8>, f: impl FnOnce(&[&[u8]; 11]) -> T) -> T {
    s.clear();
    let mut digits = itoa::Buffer::new();
    let mut ends = [0usize; 4];
    if let Some(v) = r.id {
        s.extend_from_slice(digits.format(v).as_bytes());
    }
    ends[0] = s.len();
    r.timestamp.push_to(s);
    ends[1] = s.len();
    s.extend_from_slice(digits.format(r.sensor_id).as_bytes());
    ends[2] = s.len();
    if let Some(v) = r.loc_id {
        s.extend_from_slice(digits.format(v).as_bytes());
    }
    ends[3] = s.len();
    let field = |i: usize| &s[if i == 0 { 0 } else { ends[i - 1] }..ends[i]];
    f(&[
        field(0),
        field(1),
        field(2),
        r.sensor_type.as_bytes(),
        field(3),
        r.loc_country.as_bytes(),
        r.loc_lat.as_bytes(),
        r.loc_long.as_bytes(),
        r.loc_alt.as_bytes(),
        r.p1.unwrap_or("").as_bytes(),
        r.p2.unwrap_or("").as_bytes(),
    ])
}

/// What a cell is prefixed with when a spreadsheet would read it as a
/// formula: the single quote spreadsheets themselves use for "this is text".
pub const FORMULA_GUARD: u8 = b'\'';

/// A cell a spreadsheet would run as a formula (OWASP's CSV-injection rule):
/// it starts with `=`, `+`, `-`, `@`, a tab or a carriage return and is not
/// a number. Only the first byte is looked at unless it is one of those.
pub fn is_formula(cell: &[u8]) -> bool {
    matches!(
        cell.first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    ) && !is_number(cell)
}

/// A decimal number a spreadsheet reads as a number, never as a formula: an
/// optional sign, digits with at most one `.` (at least one digit), and an
/// optional exponent (`e` or `E`, an optional sign, digits). `-3.5`, `+5`,
/// `-0.1` and `1e-3` are numbers; `-`, `-inf`, `-1+1` and `--5` are not.
pub fn is_number(cell: &[u8]) -> bool {
    let rest = match cell.first() {
        Some(b'+' | b'-') => &cell[1..],
        _ => cell,
    };
    let (mantissa, exponent) = match rest.iter().position(|&c| c == b'e' || c == b'E') {
        Some(e) => (&rest[..e], Some(&rest[e + 1..])),
        None => (rest, None),
    };
    let mut digits = 0usize;
    let mut dots = 0usize;
    for &c in mantissa {
        match c {
            b'0'..=b'9' => digits += 1,
            b'.' => dots += 1,
            _ => return false,
        }
    }
    if digits == 0 || dots > 1 {
        return false;
    }
    match exponent {
        None => true,
        Some(e) => {
            let e = match e.first() {
                Some(b'+' | b'-') => &e[1..],
                _ => e,
            };
            !e.is_empty() && e.iter().all(u8::is_ascii_digit)
        }
    }
}

/// The cell as written: [`FORMULA_GUARD`] before a formula-like one.
pub(crate) fn defused(cell: &[u8]) -> Cow<'_, [u8]> {
    if is_formula(cell) {
        let mut guarded = Vec::with_capacity(cell.len() + 1);
        guarded.push(FORMULA_GUARD);
        guarded.extend_from_slice(cell);
        Cow::Owned(guarded)
    } else {
        Cow::Borrowed(cell)
    }
}

/// The CSV of a list of readings, in memory.
pub fn to_csv<'a>(readings: impl IntoIterator<Item = &'a Reading>) -> csv::Result<Vec<u8>> {
    let mut w = CsvWriter::new(Vec::new())?;
    for r in readings {
        w.write(r)?;
    }
    w.finish()
}

/// The formats an answer can be written in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Csv,
    Ndjson,
    Geojson,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Csv, Format::Ndjson, Format::Geojson];

    /// The name queries use.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
            Format::Geojson => "geojson",
        }
    }

    /// Parses a name case-insensitively.
    pub fn parse(name: &str) -> Option<Format> {
        Format::ALL
            .into_iter()
            .find(|f| crate::name::matches(name, f.name()))
    }

    /// Its name for people: `CSV`, `NDJSON`, `GeoJSON`.
    pub fn label(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Ndjson => "NDJSON",
            Format::Geojson => "GeoJSON",
        }
    }

    /// Its media type, without parameters.
    pub fn media_type(self) -> &'static str {
        self.content_type()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
    }

    /// The `Content-Type` of an answer.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
            Format::Geojson => "application/geo+json",
        }
    }

    /// The file name extension of a downloaded answer.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
            Format::Geojson => "geojson",
        }
    }
}

/// How an answer is written: its format and the index its `AQI` and
/// `Range` fields show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rendering {
    pub format: Format,
    pub index: Index,
    /// For the latest readings: the time of the request, from which the
    /// JSON formats give each reading's `ageSeconds`, with the series it
    /// is of (`resolution`: `5min` for a reading of the live tier, which
    /// carries a basis, else `day`). The CSV keeps its columns.
    pub age_at: Option<Timestamp>,
    /// Whether rows carry their quality flags and air (the query named a
    /// `quality` filter): a `flags` column appended to the CSV; `flags`,
    /// `humidity` and `temperature` in the JSON formats.
    pub quality: bool,
    /// The humidity correction asked for: the `AQI` and `Range` fields
    /// are the corrected values' and rows add [`CORRECTION_COLUMNS`] (CSV)
    /// or `humidity`, `P1_corrected`, `P2_corrected` and `correction` (the
    /// method and its parameters; JSON formats).
    pub correction: Option<Correction>,
}

/// JSON's number syntax: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub fn is_json_number(text: &[u8]) -> bool {
    let mut i = 0;
    let at = |i: usize| text.get(i).copied();
    if at(i) == Some(b'-') {
        i += 1;
    }
    match at(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while matches!(at(i), Some(b'0'..=b'9')) {
                i += 1;
            }
        }
        _ => return false,
    }
    if at(i) == Some(b'.') {
        i += 1;
        let from = i;
        while matches!(at(i), Some(b'0'..=b'9')) {
            i += 1;
        }
        if i == from {
            return false;
        }
    }
    if matches!(at(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(at(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let from = i;
        while matches!(at(i), Some(b'0'..=b'9')) {
            i += 1;
        }
        if i == from {
            return false;
        }
    }
    i == text.len()
}

/// Writes readings as NDJSON or GeoJSON into a byte buffer.
struct JsonWriter {
    geojson: bool,
    index: Index,
    age_at: Option<Timestamp>,
    /// [`Rendering::quality`].
    quality: bool,
    /// [`Rendering::correction`], and its `correction` member (the same
    /// on every row: written once).
    correction: Option<(Correction, String)>,
    rows: u64,
}

impl JsonWriter {
    fn new(geojson: bool, rendering: Rendering, out: &mut Vec<u8>) -> JsonWriter {
        if geojson {
            out.extend_from_slice(br#"{"type":"FeatureCollection","features":["#);
        }
        JsonWriter {
            geojson,
            index: rendering.index,
            age_at: rendering.age_at,
            quality: rendering.quality,
            correction: rendering.correction.map(|c| (c, c.json_member())),
            rows: 0,
        }
    }

    /// A JSON string (escaped by serde_json).
    fn string(out: &mut Vec<u8>, text: &str) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }

    /// A number as sent, or the number it parses to, or (never for stored
    /// readings, which are validated) a string; `null` when empty.
    fn number(out: &mut Vec<u8>, text: &str) {
        if text.is_empty() {
            out.extend_from_slice(b"null");
        } else if is_json_number(text.as_bytes()) {
            out.extend_from_slice(text.as_bytes());
        } else {
            match text.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => {
                    let _ = serde_json::to_writer(&mut *out, &v);
                }
                _ => Self::string(out, text),
            }
        }
    }

    fn write_row(&mut self, out: &mut Vec<u8>, r: &RowRef<'_>) {
        if self.geojson {
            if self.rows > 0 {
                out.push(b',');
            }
            Self::geo_head(out, r);
        }
        Self::head(out, r);
        let corrected = self
            .correction
            .as_ref()
            .map(|(c, member)| (c.apply(r.p1, r.p2, r.humidity), member.as_str()));
        let indices = corrected.as_ref().map_or(r.indices, |(c, _)| c.indices);
        Self::index_part(out, self.index, indices);
        Self::tail(out, r, self.age_at, self.quality, corrected);
        self.close(out);
    }

    /// A row from its [`Pieces`]: the same bytes as [`JsonWriter::write_row`].
    fn write_pieces(&mut self, out: &mut Vec<u8>, p: &Pieces<'_>) {
        if self.geojson {
            if self.rows > 0 {
                out.push(b',');
            }
            out.extend_from_slice(p.geo_head);
        }
        out.extend_from_slice(p.json_head);
        Self::index_part(out, self.index, p.indices);
        out.extend_from_slice(p.json_tail);
        self.close(out);
    }

    /// A GeoJSON feature up to its properties.
    fn geo_head(out: &mut Vec<u8>, r: &RowRef<'_>) {
        out.extend_from_slice(br#"{"type":"Feature","geometry":{"type":"Point","coordinates":["#);
        Self::number(out, r.loc_long);
        out.push(b',');
        Self::number(out, r.loc_lat);
        out.extend_from_slice(br#"]},"properties":"#);
    }

    /// The object up to its `AQI` value.
    fn head(out: &mut Vec<u8>, r: &RowRef<'_>) {
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(br#"{"id":"#);
        match r.id {
            Some(id) => out.extend_from_slice(digits.format(id).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(br#","timestamp":""#);
        r.timestamp.push_to(out);
        out.extend_from_slice(br#"","sensor_id":"#);
        out.extend_from_slice(digits.format(r.sensor_id).as_bytes());
        out.extend_from_slice(br#","sensor_type":"#);
        Self::string(out, r.sensor_type);
        out.extend_from_slice(br#","loc_id":"#);
        match r.loc_id {
            Some(id) => out.extend_from_slice(digits.format(id).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(br#","loc_country":"#);
        Self::string(out, r.loc_country);
        out.extend_from_slice(br#","loc_lat":"#);
        Self::number(out, r.loc_lat);
        out.extend_from_slice(br#","loc_long":"#);
        Self::number(out, r.loc_long);
        out.extend_from_slice(br#","loc_alt":"#);
        Self::number(out, r.loc_alt);
        out.extend_from_slice(br#","P1":"#);
        Self::number(out, r.p1.unwrap_or(""));
        out.extend_from_slice(br#","P2":"#);
        Self::number(out, r.p2.unwrap_or(""));
        out.extend_from_slice(br#","AQI":"#);
    }

    /// The `AQI` value and the `Range` field: what depends on the index.
    fn index_part(out: &mut Vec<u8>, index: Index, indices: Indices) {
        match indices.defined(index) {
            Some(value) => {
                out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
                out.extend_from_slice(br#","Range":"#);
                Self::string(out, index.label(value));
            }
            None => out.extend_from_slice(br#"null,"Range":null"#),
        }
    }

    /// The fields after `Range`, and the object's end.
    fn tail(
        out: &mut Vec<u8>,
        r: &RowRef<'_>,
        age_at: Option<Timestamp>,
        quality: bool,
        corrected: Option<(Corrected, &str)>,
    ) {
        let mut digits = itoa::Buffer::new();
        if let Some(n) = r.samples {
            out.extend_from_slice(br#","samples":"#);
            out.extend_from_slice(digits.format(n).as_bytes());
        }
        if let Some(basis) = &r.basis {
            for (name, value) in basis.fields() {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\":");
                Self::number(out, value.as_deref().unwrap_or(""));
            }
        }
        if let Some(at) = age_at {
            let series = match r.basis {
                Some(_) => Resolution::FiveMin,
                None => Resolution::Day,
            };
            out.extend_from_slice(br#","resolution":""#);
            out.extend_from_slice(series.name().as_bytes());
            out.extend_from_slice(br#"","ageSeconds":"#);
            out.extend_from_slice(digits.format(at.0.saturating_sub(r.timestamp.0)).as_bytes());
        }
        if quality {
            out.extend_from_slice(br#","flags":["#);
            for (i, flag) in r.flags.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                Self::string(out, flag.name());
            }
            out.extend_from_slice(b"]");
        }
        if quality || corrected.is_some() {
            out.extend_from_slice(br#","humidity":"#);
            Self::number(out, r.humidity.unwrap_or(""));
            out.extend_from_slice(br#","temperature":"#);
            Self::number(out, r.temperature.unwrap_or(""));
        }
        if let Some((c, member)) = corrected {
            for (name, value) in [
                (&br#","P1_corrected":"#[..], c.p1),
                (br#","P2_corrected":"#, c.p2),
            ] {
                out.extend_from_slice(name);
                match value {
                    Some(h) => h.push_to(out),
                    None => out.extend_from_slice(b"null"),
                }
            }
            out.extend_from_slice(br#","correction":"#);
            out.extend_from_slice(member.as_bytes());
        }
        out.push(b'}');
    }

    /// Ends a row: the feature's brace, or the line.
    fn close(&mut self, out: &mut Vec<u8>) {
        if self.geojson {
            out.push(b'}');
        } else {
            out.push(b'\n');
        }
        self.rows += 1;
    }

    fn finish(self, out: &mut Vec<u8>) {
        if self.geojson {
            out.extend_from_slice(b"]}");
        }
    }
}

/// One reading as a line of an NDJSON answer with `index` (no
/// `ageSeconds`, which would be stale by the time a stored line is sent),
/// appended to `out` without its newline: what a live stream's event
/// carries.
pub fn ndjson_line(out: &mut Vec<u8>, r: &Reading, index: Index) {
    let rendering = Rendering {
        format: Format::Ndjson,
        index,
        age_at: None,
        quality: false,
        correction: None,
    };
    JsonWriter::new(false, rendering, out).write_row(out, &RowRef::from(r));
    if out.last() == Some(&b'\n') {
        out.pop();
    }
}

/// A row rendered ahead of time, for answers assembled from stored pieces
/// (the embedded store's segments): every byte of the row in each format
/// except the fields that depend on the query's index, which are written
/// from `indices`. [`Chunker::push_pieces`] writes exactly what
/// [`Chunker::push`] writes for the row the pieces were made from.
#[derive(Debug, Clone, Copy)]
pub struct Pieces<'a> {
    /// The CSV record up to and including the comma before `AQI`.
    pub csv_head: &'a [u8],
    /// The GeoJSON feature up to its properties.
    pub geo_head: &'a [u8],
    /// The JSON object up to its `AQI` value.
    pub json_head: &'a [u8],
    /// The JSON object after its `Range` field, with its closing brace.
    pub json_tail: &'a [u8],
    pub indices: Indices,
}

/// Renders rows into [`Pieces`].
pub struct PieceWriter {
    csv: csv::Writer<Sink>,
    record: Sink,
    scratch: Vec<u8>,
}

/// Where a row's JSON pieces end in the bytes [`PieceWriter::write`]
/// appended: the GeoJSON head, then the JSON head, then the tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonEnds {
    pub geo_head: usize,
    pub json_head: usize,
    pub json_tail: usize,
}

impl Default for PieceWriter {
    fn default() -> Self {
        let record = Sink::default();
        PieceWriter {
            csv: csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(record.clone()),
            record,
            scratch: Vec::with_capacity(64),
        }
    }
}

impl PieceWriter {
    /// Appends `r`'s CSV head to `csv_out` and its three JSON pieces to
    /// `json_out`; returns the JSON pieces' lengths.
    pub fn write(
        &mut self,
        r: &RowRef<'_>,
        csv_out: &mut Vec<u8>,
        json_out: &mut Vec<u8>,
    ) -> Result<JsonEnds, BackendError> {
        // The leading cells as a record of their own, whose terminator
        // becomes the comma before `AQI`: the csv crate quotes cell by
        // cell, so these are the 13-cell record's first bytes.
        let csv = &mut self.csv;
        with_leading_cells(r, &mut self.scratch, |cells| {
            if cells.iter().any(|cell| is_formula(cell)) {
                csv.write_record(cells.map(defused))
            } else {
                csv.write_record(cells)
            }
        })
        .and_then(|()| Ok(csv.flush()?))
        .map_err(csv_failed)?;
        let mut record = self.record.0.lock().unwrap_or_else(PoisonError::into_inner);
        if record.pop() != Some(b'\n') {
            return Err(BackendError::Corrupt(
                "a CSV record did not end with its newline".into(),
            ));
        }
        csv_out.extend_from_slice(&record);
        csv_out.push(b',');
        record.clear();
        drop(record);
        let start = json_out.len();
        JsonWriter::geo_head(json_out, r);
        let geo_head = json_out.len() - start;
        JsonWriter::head(json_out, r);
        let json_head = json_out.len() - start - geo_head;
        JsonWriter::tail(json_out, r, None, false, None);
        Ok(JsonEnds {
            geo_head,
            json_head,
            json_tail: json_out.len() - start - geo_head - json_head,
        })
    }
}

/// An answer of `rows`, in memory: the reference every streamed answer
/// must equal byte for byte.
pub fn to_answer<'a>(
    rows: impl IntoIterator<Item = &'a Reading>,
    rendering: Rendering,
) -> Result<Vec<u8>, BackendError> {
    let mut chunker = Chunker::new(rendering)?;
    let mut out = Vec::new();
    for r in rows {
        if let Some(chunk) = chunker.push(&RowRef::from(r))? {
            out.extend_from_slice(&chunk.bytes);
        }
    }
    out.extend_from_slice(&chunker.finish()?.bytes);
    Ok(out)
}

/// Bytes gathered before a chunk of an answer is handed on.
pub const CHUNK: usize = 32 * 1024;

/// A piece of an answer.
#[derive(Debug, Clone, Default)]
pub struct AnswerChunk {
    pub bytes: Bytes,
    /// Rows completed while this chunk was made. A row may straddle two
    /// chunks; the sum over the stream is the answer's row count.
    pub rows: u64,
    /// When these bytes are a whole section of an answer segment, as a
    /// gzip piece holds them compressed ([`crate::gzip`]); only in answers
    /// asked for in pieces ([`crate::store::ReadingStore::query_answer_in_pieces`]).
    pub piece: Option<Arc<PieceKey>>,
}

/// An answer as it is produced: in its format, rows in store order, in
/// chunks of about [`CHUNK`] bytes. The first item is an error when the
/// store cannot run the query at all; an error later ends a partial answer.
pub type AnswerStream = BoxStream<'static, Result<AnswerChunk, BackendError>>;

/// Where a [`CsvWriter`] puts its bytes, emptied chunk by chunk. Shared with
/// the writer, which only writes to it when its own 8 KiB buffer fills, so
/// the lock is taken a few times per chunk.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Sink {
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn take(&self) -> Bytes {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Bytes::from(std::mem::replace(&mut *buf, Vec::with_capacity(BUFFER)))
    }
}

/// A chunk buffer's capacity: a chunk and the row that tops it up.
const BUFFER: usize = CHUNK + 8 * 1024;

/// The bytes of `out` once they make a chunk of `limit` bytes, leaving it
/// empty.
fn full_chunk(out: &mut Vec<u8>, limit: usize) -> Option<Bytes> {
    (out.len() >= limit).then(|| Bytes::from(std::mem::replace(out, Vec::with_capacity(BUFFER))))
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn csv_failed(e: csv::Error) -> BackendError {
    BackendError::Corrupt(format!("could not render the CSV: {e}"))
}

/// The writer of one answer's format.
enum Writer {
    // Boxed: the CSV writer's buffers make it far larger than the JSON one.
    Csv {
        writer: Box<CsvWriter<Sink>>,
        sink: Sink,
    },
    Json {
        writer: JsonWriter,
        out: Vec<u8>,
    },
}

/// Cuts an answer into [`AnswerChunk`]s as rows are written: the one
/// renderer behind every backend's [`AnswerStream`].
pub struct Chunker {
    writer: Writer,
    /// Rows written since the last chunk was taken.
    pending_rows: u64,
    /// Bytes gathered before a chunk is cut: [`CHUNK`], or unbounded
    /// while a run is gathered whole ([`Chunker::begin_run`]).
    limit: usize,
}

impl Chunker {
    pub fn new(rendering: Rendering) -> Result<Chunker, BackendError> {
        let writer = match rendering.format {
            Format::Csv => {
                let sink = Sink::default();
                Writer::Csv {
                    writer: Box::new(
                        CsvWriter::for_rendering(sink.clone(), &rendering).map_err(csv_failed)?,
                    ),
                    sink,
                }
            }
            json => {
                let mut out = Vec::with_capacity(BUFFER);
                let writer = JsonWriter::new(json == Format::Geojson, rendering, &mut out);
                Writer::Json { writer, out }
            }
        };
        Ok(Chunker {
            writer,
            pending_rows: 0,
            limit: CHUNK,
        })
    }

    /// Whether the next row is the answer's first and its bytes depend on
    /// it (a GeoJSON feature has no comma before it then).
    pub fn opens(&self) -> bool {
        match &self.writer {
            Writer::Json { writer, .. } => writer.geojson && writer.rows == 0,
            Writer::Csv { .. } => false,
        }
    }

    /// The bytes gathered so far as a chunk, if any: what stands before a
    /// run.
    pub fn take(&mut self) -> Result<Option<AnswerChunk>, BackendError> {
        let bytes = match &mut self.writer {
            Writer::Csv { writer, sink } => {
                writer.flush().map_err(|e| csv_failed(e.into()))?;
                sink.take()
            }
            Writer::Json { out, .. } => {
                Bytes::from(std::mem::replace(out, Vec::with_capacity(BUFFER)))
            }
        };
        Ok(
            (!bytes.is_empty() || self.pending_rows > 0).then(|| AnswerChunk {
                bytes,
                rows: std::mem::take(&mut self.pending_rows),
                piece: None,
            }),
        )
    }

    /// Starts a run: the rows pushed until [`Chunker::end_run`] make one
    /// chunk, however large (the caller bounds it). Returns what was
    /// gathered before ([`Chunker::take`]).
    pub fn begin_run(&mut self) -> Result<Option<AnswerChunk>, BackendError> {
        let before = self.take()?;
        self.limit = usize::MAX;
        Ok(before)
    }

    /// Ends a run: its rows as one chunk, which `piece` names.
    pub fn end_run(&mut self, piece: PieceKey) -> Result<AnswerChunk, BackendError> {
        self.limit = CHUNK;
        let mut chunk = self.take()?.unwrap_or_default();
        chunk.piece = Some(Arc::new(piece));
        Ok(chunk)
    }

    /// Writes a row; returns a chunk once about [`CHUNK`] bytes are ready.
    pub fn push(&mut self, row: &RowRef<'_>) -> Result<Option<AnswerChunk>, BackendError> {
        self.pending_rows += 1;
        let bytes = match &mut self.writer {
            Writer::Csv { writer, sink } => {
                writer.write_row(row).map_err(csv_failed)?;
                if sink.len() < self.limit {
                    return Ok(None);
                }
                sink.take()
            }
            Writer::Json { writer, out } => {
                writer.write_row(out, row);
                let Some(bytes) = full_chunk(out, self.limit) else {
                    return Ok(None);
                };
                bytes
            }
        };
        Ok(Some(AnswerChunk {
            bytes,
            rows: std::mem::take(&mut self.pending_rows),
            piece: None,
        }))
    }

    /// Writes a row from its [`Pieces`]: the bytes [`Chunker::push`] writes
    /// for the row they were made from; returns a chunk once about
    /// [`CHUNK`] bytes are ready. Rows and pieces may be mixed.
    pub fn push_pieces(&mut self, p: &Pieces<'_>) -> Result<Option<AnswerChunk>, BackendError> {
        self.pending_rows += 1;
        let bytes = match &mut self.writer {
            Writer::Csv { writer, sink } => {
                // What the CSV writer holds goes first (the header, rows
                // pushed before); it buffers nothing else meanwhile.
                writer.flush().map_err(|e| csv_failed(e.into()))?;
                let mut out = sink.0.lock().unwrap_or_else(PoisonError::into_inner);
                out.extend_from_slice(p.csv_head);
                if let Some(value) = p.indices.defined(writer.index) {
                    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
                    out.push(b',');
                    out.extend_from_slice(writer.index.label(value).as_bytes());
                } else {
                    out.push(b',');
                }
                out.push(b'\n');
                writer.rows += 1;
                let Some(bytes) = full_chunk(&mut out, self.limit) else {
                    return Ok(None);
                };
                bytes
            }
            Writer::Json { writer, out } => {
                writer.write_pieces(out, p);
                let Some(bytes) = full_chunk(out, self.limit) else {
                    return Ok(None);
                };
                bytes
            }
        };
        Ok(Some(AnswerChunk {
            bytes,
            rows: std::mem::take(&mut self.pending_rows),
            piece: None,
        }))
    }

    /// The last chunk (the header, or the empty collection, alone for an
    /// empty answer).
    pub fn finish(self) -> Result<AnswerChunk, BackendError> {
        let bytes = match self.writer {
            Writer::Csv { writer, sink } => {
                writer.finish().map_err(csv_failed)?;
                sink.take()
            }
            Writer::Json { writer, mut out } => {
                writer.finish(&mut out);
                Bytes::from(out)
            }
        };
        Ok(AnswerChunk {
            bytes,
            rows: self.pending_rows,
            piece: None,
        })
    }
}

/// Renders a stream of readings as an [`AnswerStream`]: for stores without
/// a faster path of their own.
pub fn chunks(rows: ReadingStream, rendering: Rendering) -> AnswerStream {
    futures::stream::unfold(Some((rows, None::<Chunker>)), move |state| async move {
        let (mut rows, chunker) = state?;
        let mut chunker = match chunker {
            Some(c) => c,
            None => match Chunker::new(rendering) {
                Ok(c) => c,
                Err(e) => return Some((Err(e), None)),
            },
        };
        loop {
            match rows.next().await {
                Some(Ok(r)) => match chunker.push(&RowRef::from(&r)) {
                    Ok(Some(chunk)) => return Some((Ok(chunk), Some((rows, Some(chunker))))),
                    Ok(None) => {}
                    Err(e) => return Some((Err(e), None)),
                },
                Some(Err(e)) => return Some((Err(e), None)),
                None => return Some((chunker.finish(), None)),
            }
        }
    })
    .boxed()
}

/// Why [`render`] produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The store failed mid-stream (possibly transient).
    #[error(transparent)]
    Store(#[from] BackendError),
    /// The answer passed the size limit; the stream was dropped there,
    /// which stops the scan.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

/// Gathers a whole answer's chunks in memory, with its row count, giving
/// up once it is larger than `max` bytes: [`render`] for a reader that
/// wants its chunks (their [`AnswerChunk::piece`]s).
pub async fn gather(
    mut chunks: AnswerStream,
    max: usize,
) -> Result<(Vec<AnswerChunk>, u64), RenderError> {
    let (mut gathered, mut bytes, mut rows) = (Vec::new(), 0usize, 0);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        bytes = bytes.saturating_add(chunk.bytes.len());
        if bytes > max {
            return Err(RenderError::TooLarge(max));
        }
        rows += chunk.rows;
        gathered.push(chunk);
    }
    Ok((gathered, rows))
}

/// Gathers a whole answer in memory, with its row count, giving up once
/// it is larger than `max` bytes (give `usize::MAX` for no limit).
pub async fn render(chunks: AnswerStream, max: usize) -> Result<(Vec<u8>, u64), RenderError> {
    let rendered = render_pieced(chunks, max).await?;
    Ok((rendered.bytes, rendered.rows))
}

/// A whole answer in memory ([`render_pieced`]).
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub rows: u64,
    /// Where in `bytes` each chunk that named a gzip piece lies, with it.
    pub pieces: Vec<(std::ops::Range<usize>, Arc<PieceKey>)>,
}

/// [`render`], keeping where the chunks that named gzip pieces
/// ([`AnswerChunk::piece`]) lie in the answer.
pub async fn render_pieced(mut chunks: AnswerStream, max: usize) -> Result<Rendered, RenderError> {
    let (mut bytes, mut rows, mut pieces) = (Vec::new(), 0, Vec::new());
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        if bytes.len() + chunk.bytes.len() > max {
            return Err(RenderError::TooLarge(max));
        }
        let at = bytes.len();
        bytes.extend_from_slice(&chunk.bytes);
        rows += chunk.rows;
        if let Some(key) = chunk.piece {
            pieces.push((at..bytes.len(), key));
        }
    }
    Ok(Rendered {
        bytes,
        rows,
        pieces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Timestamp;

    #[test]
    fn header_and_values_as_sent() {
        let r = Reading {
            id: Some(7),
            timestamp: Timestamp::parse_feed("2018-06-03 20:47:58").unwrap(),
            sensor_id: 92,
            sensor_type: "SDS011".into(),
            loc_id: None,
            loc_country: "DE".into(),
            loc_lat: "48.8000".into(),
            loc_long: "9.0020".into(),
            loc_alt: "".into(),
            p1: Some("8.13".into()),
            p2: None,
            indices: Indices::from([1, 0, 1]),
            samples: None,
            basis: None,
            flags: Default::default(),
            air: Default::default(),
        };
        let csv = String::from_utf8(to_csv([&r]).unwrap()).unwrap();
        assert_eq!(
            csv,
            "id,timestamp,sensor_id,sensor_type,loc_id,loc_country,loc_lat,loc_long,loc_alt,P1,P2,AQI,Range\n\
             7,2018-06-03 20:47:58,92,SDS011,,DE,48.8000,9.0020,,8.13,,1,Low\n"
        );
        let empty = String::from_utf8(to_csv([]).unwrap()).unwrap();
        assert_eq!(
            empty.lines().count(),
            1,
            "an empty result is the header alone"
        );
    }

    #[test]
    fn text_with_commas_is_quoted() {
        let mut r = Reading {
            id: None,
            timestamp: Timestamp(0),
            sensor_id: 1,
            sensor_type: "Very, odd \"sensor\"".into(),
            loc_id: Some(1),
            loc_country: "DE".into(),
            loc_lat: "1".into(),
            loc_long: "2".into(),
            loc_alt: "3".into(),
            p1: None,
            p2: Some("12".into()),
            indices: Indices::from([2, 0, 1]),
            samples: None,
            basis: None,
            flags: Default::default(),
            air: Default::default(),
        };
        r.indices.set(Index::Daqi, 10);
        let csv = String::from_utf8(to_csv([&r]).unwrap()).unwrap();
        assert!(csv.contains("\"Very, odd \"\"sensor\"\"\""));
        assert!(csv.ends_with(",12,10,Very High\n"));
        // No id, then the epoch, the sensor, the quoted type and the loc id.
        assert!(csv
            .lines()
            .nth(1)
            .unwrap()
            .starts_with(",1970-01-01 00:00:00,1,\"Very, odd \"\"sensor\"\"\",1,DE,"));
    }

    /// The `i`-th of a run of plain readings, one second apart.
    fn reading(i: u64) -> Reading {
        Reading {
            id: Some(i),
            timestamp: Timestamp(1_528_058_400 + i as i64),
            sensor_id: i,
            sensor_type: "SDS011".into(),
            loc_id: Some(i),
            loc_country: "DE".into(),
            loc_lat: "48.8000".into(),
            loc_long: "9.0020".into(),
            loc_alt: "".into(),
            p1: Some("8.13".into()),
            p2: Some("4.2".into()),
            indices: Indices::from([
                (i % 10 + 1) as u16,
                (i * 37 % 501) as u16,
                (i % 6 + 1) as u16,
            ]),
            samples: None,
            basis: None,
            flags: Default::default(),
            air: Default::default(),
        }
    }

    #[test]
    fn chunks_split_a_large_answer_and_add_up() {
        let rows: Vec<Reading> = (0..2_000u64).map(reading).collect();
        let want = to_csv(&rows).unwrap();
        assert!(want.len() > 3 * CHUNK);
        let stream = futures::stream::iter(rows.into_iter().map(Ok)).boxed();
        let got: Vec<AnswerChunk> = futures::executor::block_on(
            chunks(stream, Rendering::default())
                .map(|c| c.unwrap())
                .collect::<Vec<_>>(),
        );
        assert!(got.len() > 3, "a large answer comes in several chunks");
        assert!(got[..got.len() - 1]
            .iter()
            .all(|c| c.bytes.len() >= CHUNK && c.bytes.len() < CHUNK + 9 * 1024));
        assert_eq!(got.iter().map(|c| c.rows).sum::<u64>(), 2_000);
        let joined: Vec<u8> = got.iter().flat_map(|c| c.bytes.iter().copied()).collect();
        assert!(joined == want, "the chunks are the CSV, in order");

        let empty = futures::executor::block_on(
            chunks(futures::stream::empty().boxed(), Rendering::default()).collect::<Vec<_>>(),
        );
        assert_eq!(empty.len(), 1, "an empty answer is one chunk");
        let header = empty.into_iter().next().unwrap().unwrap();
        assert_eq!(
            (header.bytes.as_ref(), header.rows),
            (to_csv([]).unwrap().as_slice(), 0)
        );
    }

    #[test]
    fn render_matches_to_csv_and_stops_at_its_limit() {
        let rows: Vec<Reading> = (0..100u64).map(reading).collect();
        let stream = |items: Vec<Result<Reading, BackendError>>| -> ReadingStream {
            futures::stream::iter(items).boxed()
        };
        let want = to_csv(&rows).unwrap();
        let ok = || rows.iter().cloned().map(Ok).collect::<Vec<_>>();
        let (csv, count) = futures::executor::block_on(render(
            chunks(stream(ok()), Rendering::default()),
            usize::MAX,
        ))
        .unwrap();
        assert_eq!((csv, count), (want.clone(), 100));

        let small = futures::executor::block_on(render(
            chunks(stream(ok()), Rendering::default()),
            want.len() - 1,
        ));
        assert!(matches!(small, Err(RenderError::TooLarge(n)) if n == want.len() - 1));

        let mut failing: Vec<_> = rows.iter().take(3).cloned().map(Ok).collect();
        failing.push(Err(BackendError::Corrupt("bad row".into())));
        let failed = futures::executor::block_on(render(
            chunks(stream(failing), Rendering::default()),
            usize::MAX,
        ));
        assert!(matches!(failed, Err(RenderError::Store(_))));
    }

    #[test]
    fn numbers_and_formulas() {
        for n in [
            "0", "-3.5", "-0.1", "+5", "-12", "1e-3", "-2.5E+4", ".5", "5.",
        ] {
            assert!(is_number(n.as_bytes()), "{n}");
            assert!(!is_formula(n.as_bytes()), "{n}");
        }
        for f in [
            "-",
            "+",
            "-inf",
            "-NaN",
            "-1+1",
            "--5",
            "-5-",
            "-1e",
            "-1e+",
            "-.",
            "-1.2.3",
            "=1",
            "@SUM(A1)",
            "\t1",
            "\r1",
            "+HYPERLINK(\"x\")",
        ] {
            assert!(is_formula(f.as_bytes()), "{f:?}");
        }
        for text in ["", "DE", "SDS011", "52.52", " =1", "a=1", "'=1"] {
            assert!(!is_formula(text.as_bytes()), "{text:?}");
        }
    }

    /// A reading whose every text field starts with `lead`.
    fn hostile(lead: char) -> Reading {
        Reading {
            sensor_type: format!("{lead}SDS011"),
            loc_country: format!("{lead}DE"),
            loc_lat: format!("{lead}HYPERLINK(\"http://x\",\"y\")"),
            loc_long: format!("{lead}1+1"),
            loc_alt: format!("{lead}cmd|' /C calc'!A0"),
            p1: Some(format!("{lead}SUM(A1:A9)")),
            p2: Some(format!("{lead}x")),
            ..reading(1)
        }
    }

    /// The CSV of `rows` through every renderer: `CsvWriter::write` on a
    /// `Reading` (what `to_csv` does), `write_row` on a `RowRef` made by
    /// hand (as the embedded store does from a database row), and the
    /// chunked stream. All three must agree.
    fn every_renderer(rows: &[Reading]) -> Vec<u8> {
        let by_reading = to_csv(rows).unwrap();
        let mut w = CsvWriter::new(Vec::new()).unwrap();
        for r in rows {
            w.write_row(&RowRef::from(r)).unwrap();
        }
        let by_row = w.finish().unwrap();
        // Owned: a reading stream is 'static.
        let owned: Vec<Reading> = rows.to_vec();
        let stream = futures::stream::iter(owned.into_iter().map(Ok)).boxed();
        let (chunked, n) =
            futures::executor::block_on(render(chunks(stream, Rendering::default()), usize::MAX))
                .unwrap();
        assert_eq!(n, rows.len() as u64);
        assert!(by_row == by_reading, "write_row and write agree");
        assert!(chunked == by_reading, "the chunked stream and write agree");
        by_reading
    }

    #[test]
    fn formula_cells_are_neutralised_on_every_path() {
        for lead in ['=', '+', '-', '@', '\t', '\r'] {
            let r = hostile(lead);
            let csv = every_renderer(std::slice::from_ref(&r));
            let mut rdr = csv::ReaderBuilder::new().from_reader(csv.as_slice());
            let rec = rdr.records().next().unwrap().unwrap();
            let guarded = |s: &str| format!("'{s}");
            let want = [
                (3, guarded(&r.sensor_type)),
                (5, guarded(&r.loc_country)),
                (6, guarded(&r.loc_lat)),
                (7, guarded(&r.loc_long)),
                (8, guarded(&r.loc_alt)),
                (9, guarded(r.p1.as_deref().unwrap())),
                (10, guarded(r.p2.as_deref().unwrap())),
            ];
            for (col, text) in want {
                assert_eq!(&rec[col], text, "{lead:?} in {}", CSV_HEADER[col]);
            }
            // The generated columns are untouched.
            assert_eq!(&rec[1], "2018-06-03 20:40:01");
            assert_eq!(&rec[12], Index::Daqi.label(r.index(Index::Daqi)));
            // No line of the output starts a cell with a formula byte.
            let text = String::from_utf8(csv).unwrap();
            assert!(!text.contains(&format!(",{lead}")), "{lead:?}: {text:?}");
        }
    }

    #[test]
    fn numbers_starting_with_a_sign_are_written_unchanged() {
        let r = Reading {
            loc_lat: "-3.5".into(),
            loc_long: "-0.1".into(),
            loc_alt: "-12".into(),
            p1: Some("+5".into()),
            ..reading(1)
        };
        let csv = String::from_utf8(every_renderer(&[r])).unwrap();
        assert_eq!(
            csv.lines().nth(1).unwrap(),
            "1,2018-06-03 20:40:01,1,SDS011,1,DE,-3.5,-0.1,-12,+5,4.2,2,Low"
        );
    }

    #[test]
    fn a_daily_mean_says_how_many_it_averages_in_json_and_not_in_csv() {
        let mean = Reading {
            samples: Some(581),
            basis: None,
            flags: Default::default(),
            air: Default::default(),
            ..reading(3)
        };
        let plain = reading(3);
        let csv = |r: &Reading| to_answer([r], Rendering::default()).unwrap();
        assert_eq!(
            csv(&mean),
            csv(&plain),
            "the CSV's columns stay as they were"
        );
        let ndjson = Rendering {
            format: Format::Ndjson,
            index: Index::Daqi,
            age_at: None,
            quality: false,
            correction: None,
        };
        let line = String::from_utf8(to_answer([&mean], ndjson).unwrap()).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["samples"], 581);
        let line = String::from_utf8(to_answer([&plain], ndjson).unwrap()).unwrap();
        assert!(!line.contains("samples"), "{line}");
    }
}

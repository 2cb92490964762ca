//! Answer segments: a day of a series with its rows already rendered, so
//! that a large answer or aggregation is assembled from stored bytes
//! instead of read row by row and formatted again (issue 27; BENCHMARKS.md
//! has the figures and the designs tried). This module is the file format
//! and how a query reads it; where files live and how a store knows one is
//! fresh is each backend's (`airq_embedded::segments`: files beside the
//! database; `airq_aws`: S3 objects, one per day and country).
//!
//! **What a segment holds.** One series' UTC day (or one country of it),
//! one section per country. A section holds its rows in the store's order
//! (`ts`, then `sensor_id`) as [`Pieces`]: the CSV record up to `AQI`, and
//! the JSON object (with its GeoJSON head) around its `AQI` and `Range`,
//! which are written at query time from the row's indices, so one file
//! serves every format and index. Beside them, a fixed-size record per
//! row (timestamp, sensor id, indices, sensor type, where its bytes end)
//! is what filters and merges read, and a values record (P1 and P2 in
//! nano-units, cell, samples, position) is what aggregations read.
//!
//! **Bounds.** A query reads from a segment only what it needs: the
//! records of its time window in its country's section (every section
//! without a country), and the rendered bytes of the rows it keeps. Every
//! read is checked against the segment's length first: a damaged file is
//! an error, never a panic or a wrong answer.

use crate::aggregate::Parsed;
use crate::aqi::{Index, Indices};
use crate::error::BackendError;
use crate::export::{Format, PieceWriter, Pieces, RowRef};
use crate::mean::nano_units_of;
use crate::place::{cell_of_text, Place};
use crate::query::Query;
use crate::resolution::Resolution;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io::Write;

/// The layout of segment files this build writes and reads: the last
/// byte of their magic, and recorded beside each built segment, so that a file of
/// another layout counts as stale and is built again.
pub const LAYOUT: u8 = 1;

/// The first bytes of a segment file.
const MAGIC: &[u8; 8] = &[b'A', b'I', b'R', b'Q', b'S', b'E', b'G', LAYOUT];

/// Bytes of one row's values record, what aggregations read: P1 and P2 in
/// nano-units ([`crate::mean::nano_units_of`]; `u64::MAX` for none), the
/// grid cell, `samples` (`u32::MAX` for none), and where the row's
/// position (latitude and longitude text) is in the section's sites.
const VALUES: usize = 8 + 8 + 4 + 4 + 4;

/// Bytes of one row's sidecar record: `ts` (i64), `sensor_id` (u64), the
/// indices in [`Index::ALL`] order (u16 each), the sensor type's number in
/// its section (u16), and where the row's CSV, GeoJSON head, JSON head and
/// JSON tail end in their section's bytes (u32 each); little-endian.
const RECORD: usize = 8 + 8 + 2 * Index::COUNT + 2 + 4 * 4;

/// "No value" in a values record.
const NONE_U64: u64 = u64::MAX;
const NONE_U32: u32 = u32::MAX;

fn corrupt(name: &str, what: &str) -> BackendError {
    BackendError::Corrupt(format!("answer segment {name}: {what}"))
}

/// The table of contents at the head of a segment file (JSON, after the
/// magic and its length as a u32).
#[derive(Debug, Serialize, Deserialize)]
struct Directory {
    series: String,
    day: i64,
    version: i64,
    sections: Vec<Section>,
}

/// One country's rows. Offsets count from the end of the directory.
#[derive(Debug, Serialize, Deserialize)]
struct Section {
    country: String,
    rows: u32,
    /// The sensor types as stored; a record names one by its position.
    types: Vec<String>,
    sidecar: u64,
    csv: (u64, u64),
    json: (u64, u64),
    /// The values records; `None` when a value did not fit (never for a
    /// validated reading), and aggregations read the day's rows.
    values: Option<u64>,
    /// Every distinct position: latitude and longitude text, each after
    /// its length (u16).
    sites: (u64, u64),
}

/// A section as it is built.
#[derive(Default)]
struct SectionBuilder {
    rows: u32,
    types: Vec<String>,
    sidecar: Vec<u8>,
    csv: Vec<u8>,
    json: Vec<u8>,
    values: Vec<u8>,
    /// Whether every value fitted its record.
    exact: bool,
    sites: Vec<u8>,
    site_at: HashMap<(String, String), u32>,
}

/// Builds one day's segment from its rows, pushed in the store's order.
pub struct Builder {
    series: Resolution,
    day: i64,
    version: i64,
    sections: BTreeMap<String, SectionBuilder>,
    pieces: PieceWriter,
}

impl Builder {
    pub fn new(series: Resolution, day: i64, version: i64) -> Builder {
        Builder {
            series,
            day,
            version,
            sections: BTreeMap::new(),
            pieces: PieceWriter::default(),
        }
    }

    pub fn push(&mut self, r: &RowRef<'_>) -> Result<(), BackendError> {
        if !self.sections.contains_key(r.loc_country) {
            let section = SectionBuilder {
                exact: true,
                ..SectionBuilder::default()
            };
            self.sections.insert(r.loc_country.to_owned(), section);
        }
        let Some(s) = self.sections.get_mut(r.loc_country) else {
            return Ok(());
        };
        let kind = match s.types.iter().position(|t| t == r.sensor_type) {
            Some(k) => k,
            None => {
                s.types.push(r.sensor_type.to_owned());
                s.types.len() - 1
            }
        };
        let json_start = s.json.len();
        let ends = self.pieces.write(r, &mut s.csv, &mut s.json)?;
        let too_large = || {
            BackendError::Corrupt(format!(
                "the day {} is too large for an answer segment",
                self.day
            ))
        };
        let kind = u16::try_from(kind).map_err(|_| too_large())?;
        let end = |n: usize| u32::try_from(n).map_err(|_| too_large());
        let geo = json_start + ends.geo_head;
        let head = geo + ends.json_head;
        let tail = head + ends.json_tail;
        let record = &mut s.sidecar;
        record.extend_from_slice(&r.timestamp.0.to_le_bytes());
        record.extend_from_slice(&r.sensor_id.to_le_bytes());
        for index in Index::ALL {
            record.extend_from_slice(&r.index(index).to_le_bytes());
        }
        record.extend_from_slice(&kind.to_le_bytes());
        for n in [s.csv.len(), geo, head, tail] {
            record.extend_from_slice(&end(n)?.to_le_bytes());
        }
        // The values, parsed as an aggregation parses them.
        let site = (r.loc_lat.to_owned(), r.loc_long.to_owned());
        let site = match s.site_at.get(&site) {
            Some(&at) => at,
            None => {
                let at = end(s.sites.len())?;
                for text in [r.loc_lat, r.loc_long] {
                    let len = u16::try_from(text.len()).map_err(|_| too_large())?;
                    s.sites.extend_from_slice(&len.to_le_bytes());
                    s.sites.extend_from_slice(text.as_bytes());
                }
                s.site_at.insert(site, at);
                at
            }
        };
        for value in [r.p1, r.p2] {
            let nano = value.and_then(|t| nano_units_of(t.trim()));
            let nano = match nano.map(u64::try_from) {
                None => NONE_U64,
                Some(Ok(n)) if n != NONE_U64 => n,
                Some(_) => {
                    s.exact = false;
                    NONE_U64
                }
            };
            s.values.extend_from_slice(&nano.to_le_bytes());
        }
        s.values
            .extend_from_slice(&cell_of_text(r.loc_lat, r.loc_long).to_le_bytes());
        s.values
            .extend_from_slice(&r.samples.unwrap_or(NONE_U32).to_le_bytes());
        s.values.extend_from_slice(&site.to_le_bytes());
        if r.samples == Some(NONE_U32) {
            s.exact = false;
        }
        s.rows += 1;
        Ok(())
    }

    /// Writes the whole file (every country's section) into `out`.
    pub fn write_to(self, out: &mut impl Write) -> std::io::Result<()> {
        let directory = directory(self.series, self.day, self.version, &self.sections)
            .map_err(std::io::Error::other)?;
        write_file(out, &directory, self.sections.values())
    }

    /// The whole file, and one whole file per country with that
    /// country's section only, in country order: what a store that reads
    /// a country's rows on their own keeps (a country's query then reads
    /// none of the others', a query of every country one file).
    pub fn into_files(self) -> Result<Files, BackendError> {
        let (series, day, version) = (self.series, self.day, self.version);
        let failed = |e: std::io::Error| {
            BackendError::Corrupt(format!("the answer segment of the day {day}: {e}"))
        };
        let mut all = Vec::new();
        let head = directory(series, day, version, &self.sections)?;
        write_file(&mut all, &head, self.sections.values()).map_err(failed)?;
        let mut countries = Vec::with_capacity(self.sections.len());
        for (country, s) in self.sections {
            let one = BTreeMap::from([(country, s)]);
            let head = directory(series, day, version, &one)?;
            let mut out = Vec::new();
            write_file(&mut out, &head, one.values()).map_err(failed)?;
            if let Some((country, _)) = one.into_iter().next() {
                countries.push((country, out));
            }
        }
        Ok(Files { all, countries })
    }
}

/// A day's segment as whole files ([`Builder::into_files`]).
pub struct Files {
    /// Every country's section.
    pub all: Vec<u8>,
    /// Each country's section alone, in country order.
    pub countries: Vec<(String, Vec<u8>)>,
}

/// The directory of `sections`, as JSON.
fn directory(
    series: Resolution,
    day: i64,
    version: i64,
    sections: &BTreeMap<String, SectionBuilder>,
) -> Result<Vec<u8>, BackendError> {
    let mut listed = Vec::with_capacity(sections.len());
    let mut at = 0u64;
    let mut take = |n: usize| {
        let range = (at, n as u64);
        at += n as u64;
        range
    };
    for (country, s) in sections {
        let sidecar = take(s.sidecar.len()).0;
        let csv = take(s.csv.len());
        let json = take(s.json.len());
        let values = take(s.values.len()).0;
        listed.push(Section {
            country: country.clone(),
            rows: s.rows,
            types: s.types.clone(),
            sidecar,
            csv,
            json,
            values: s.exact.then_some(values),
            sites: take(s.sites.len()),
        });
    }
    serde_json::to_vec(&Directory {
        series: series.name().to_owned(),
        day,
        version,
        sections: listed,
    })
    .map_err(|e| BackendError::Corrupt(e.to_string()))
}

/// A file: the magic, the directory's length and the directory, then each
/// section's bytes in the directory's order.
fn write_file<'a>(
    out: &mut impl Write,
    directory: &[u8],
    sections: impl Iterator<Item = &'a SectionBuilder>,
) -> std::io::Result<()> {
    let len = u32::try_from(directory.len())
        .map_err(|_| std::io::Error::other("the segment's directory is too large"))?;
    out.write_all(MAGIC)?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(directory)?;
    for s in sections {
        out.write_all(&s.sidecar)?;
        out.write_all(&s.csv)?;
        out.write_all(&s.json)?;
        out.write_all(&s.values)?;
        out.write_all(&s.sites)?;
    }
    out.flush()
}

/// A segment file and its directory.
pub struct Segment {
    /// The whole file (mapped, on the embedded store: a query reads the
    /// pages of what it keeps and nothing else, a place's rows among a
    /// country's, say); the bytes it answers with are copied once, into
    /// the answer.
    map: Bytes,
    /// What the segment is, for error messages (its path or its key).
    name: String,
    sections: Vec<Section>,
    /// Where the sections' bytes start in the file.
    base: u64,
}

impl Segment {
    /// The segment in `map`, a whole file, which must be `series`' `day`
    /// built from `version`; `name` says what it is in errors.
    pub fn parse(
        map: Bytes,
        name: String,
        series: Resolution,
        day: i64,
        version: i64,
    ) -> Result<Segment, BackendError> {
        let head = map
            .get(..12)
            .ok_or_else(|| corrupt(&name, "not a segment file of this layout"))?;
        if &head[..8] != MAGIC {
            return Err(corrupt(&name, "not a segment file of this layout"));
        }
        let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        let directory = 12usize
            .checked_add(len)
            .and_then(|end| map.get(12..end))
            .ok_or_else(|| corrupt(&name, "its directory runs past its end"))?;
        let directory: Directory = serde_json::from_slice(directory)
            .map_err(|e| corrupt(&name, &format!("its directory: {e}")))?;
        if (directory.series.as_str(), directory.day, directory.version)
            != (series.name(), day, version)
        {
            return Err(corrupt(&name, "its directory names another day or version"));
        }
        Ok(Segment {
            map,
            name,
            sections: directory.sections,
            base: 12 + len as u64,
        })
    }

    /// `len` bytes at `at` of the sections' bytes, checked against the
    /// file's length (a view of the map, nothing copied).
    fn read(&self, at: u64, len: u64) -> Result<Bytes, BackendError> {
        let bad = || corrupt(&self.name, "a section lies outside the file");
        let from = self.base.checked_add(at).ok_or_else(bad)?;
        let to = from.checked_add(len).ok_or_else(bad)?;
        let (from, to) = (
            usize::try_from(from).map_err(|_| bad())?,
            usize::try_from(to).map_err(|_| bad())?,
        );
        if from > to || to > self.map.len() {
            return Err(bad());
        }
        Ok(self.map.slice(from..to))
    }

    /// Loads the sections of `country` (every one for `None`) with the
    /// bytes `need`s, and with `positions` each row's cell and position
    /// (for a place's check, [`Loaded::in_place`]); `None` when values or
    /// positions are asked of a section that could not keep them (then
    /// the day is read from its rows).
    pub fn load(
        &self,
        country: Option<&str>,
        need: Need,
        positions: bool,
        window: (i64, i64),
    ) -> Result<Option<Vec<Loaded>>, BackendError> {
        let mut loaded = Vec::new();
        for s in &self.sections {
            if country.is_some_and(|c| c != s.country) {
                continue;
            }
            let rows = s.rows as usize;
            let sidecar = self.read(s.sidecar, (rows as u64) * RECORD as u64)?;
            // The rows in the time window: the section is in time order,
            // so they are one run, and only their bytes are read.
            let ts = |i: usize| i64::from_le_bytes(le(&sidecar, i * RECORD));
            let first = |pred: &dyn Fn(i64) -> bool| {
                let (mut lo, mut hi) = (0, rows);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if pred(ts(mid)) {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            };
            let from = first(&|t| t < window.0);
            let to = first(&|t| t <= window.1);
            if from >= to {
                continue;
            }
            let end_of = |i: usize, k: usize| ends_in(&sidecar, i)[k] as u64;
            let span = |k: usize| {
                let start = if from == 0 { 0 } else { end_of(from - 1, k) };
                (start, end_of(to - 1, k).saturating_sub(start))
            };
            let (bytes, base) = match need {
                Need::Rendered(format) => {
                    let (blob, k) = match format {
                        Format::Csv => (s.csv, 0),
                        _ => (s.json, 3),
                    };
                    let (start, len) = span(k);
                    let bad = || corrupt(&self.name, "a row's bytes lie outside its section");
                    if start.checked_add(len).is_none_or(|end| end > blob.1) {
                        return Err(bad());
                    }
                    let at = blob.0.checked_add(start).ok_or_else(bad)?;
                    (self.read(at, len)?, start)
                }
                Need::Values { .. } => (Bytes::new(), 0),
            };
            let (values, sites) = match need {
                Need::Values { sites, .. } => (true, sites || positions),
                Need::Rendered(_) => (positions, positions),
            };
            let values = match (values, s.values) {
                (false, _) => Bytes::new(),
                (true, None) => return Ok(None),
                (true, Some(at)) => {
                    let at = at
                        .checked_add((from * VALUES) as u64)
                        .ok_or_else(|| corrupt(&self.name, "values lie outside the file"))?;
                    self.read(at, ((to - from) * VALUES) as u64)?
                }
            };
            let sites = match sites {
                true => self.read(s.sites.0, s.sites.1)?,
                false => Bytes::new(),
            };
            loaded.push(Loaded {
                from,
                to,
                rows,
                base,
                country: s.country.clone(),
                types: s.types.clone(),
                sidecar,
                bytes,
                values,
                sites,
                need,
                name: self.name.clone(),
            });
        }
        Ok(Some(loaded))
    }
}

/// Where row `i`'s CSV, GeoJSON head, JSON head and JSON tail end in
/// their section's bytes.
fn ends_in(sidecar: &[u8], i: usize) -> [u32; 4] {
    let b = &sidecar[i * RECORD..(i + 1) * RECORD];
    let at = 16 + 2 * Index::COUNT + 2;
    [0, 1, 2, 3].map(|k| u32::from_le_bytes(le(b, at + 4 * k)))
}

/// What a query reads of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The rows rendered, for an answer in this format.
    Rendered(Format),
    /// The values, for an aggregation; with the positions' text when it
    /// groups by sensor; `ordered` when it needs a day's rows in time
    /// order (`Aggregator::orders_within_a_day`).
    Values { sites: bool, ordered: bool },
}

/// A section in memory.
pub struct Loaded {
    /// The rows loaded: `from..to` of the section's `rows`.
    from: usize,
    to: usize,
    rows: usize,
    /// Where `bytes` starts in the section's rendered bytes.
    base: u64,
    country: String,
    types: Vec<String>,
    sidecar: Bytes,
    /// The rendered rows (an answer's).
    bytes: Bytes,
    /// The values records of the rows loaded (an aggregation's, or for a
    /// place's check).
    values: Bytes,
    /// The section's positions (grouping by sensor, or a place's check).
    sites: Bytes,
    need: Need,
    /// What the segment is, for error messages.
    name: String,
}

/// One row's sidecar record, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    pub ts: i64,
    pub sensor_id: u64,
    pub indices: Indices,
    pub kind: u16,
}

fn le<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

impl Loaded {
    /// The positions of the rows loaded.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.from..self.to
    }

    pub fn types(&self) -> &[String] {
        &self.types
    }

    pub fn country(&self) -> &str {
        &self.country
    }

    /// How many rendered bytes were loaded.
    pub fn rendered_len(&self) -> usize {
        self.bytes.len()
    }

    pub fn record(&self, i: usize) -> Record {
        let b = &self.sidecar[i * RECORD..(i + 1) * RECORD];
        let at = 16 + 2 * Index::COUNT;
        Record {
            ts: i64::from_le_bytes(le(b, 0)),
            sensor_id: u64::from_le_bytes(le(b, 8)),
            indices: Indices::from_fn(|index| u16::from_le_bytes(le(b, 16 + 2 * index.position()))),
            kind: u16::from_le_bytes(le(b, at)),
        }
    }

    /// Where row `i`'s pieces end in `bytes` (read only by answers, not
    /// by aggregations).
    fn ends(&self, i: usize) -> [u64; 4] {
        ends_in(&self.sidecar, i).map(|e| u64::from(e).saturating_sub(self.base))
    }

    /// Row `i`'s pieces (`record` is its record).
    pub fn pieces(&self, i: usize, record: &Record) -> Result<Pieces<'_>, BackendError> {
        let previous = (i > 0).then(|| self.ends(i - 1));
        let bad = || corrupt(&self.name, "a row's bytes lie outside its section");
        let slice = |from: u64, to: u64| -> Result<&[u8], BackendError> {
            let range = usize::try_from(from).map_err(|_| bad())?
                ..usize::try_from(to).map_err(|_| bad())?;
            self.bytes.get(range).ok_or_else(bad)
        };
        let [csv, geo, head, tail] = self.ends(i);
        Ok(match self.need {
            Need::Rendered(Format::Csv) | Need::Values { .. } => Pieces {
                csv_head: slice(previous.map_or(0, |p| p[0]), csv)?,
                geo_head: &[],
                json_head: &[],
                json_tail: &[],
                indices: record.indices,
            },
            Need::Rendered(_) => Pieces {
                csv_head: &[],
                geo_head: slice(previous.map_or(0, |p| p[3]), geo)?,
                json_head: slice(geo, head)?,
                json_tail: slice(head, tail)?,
                indices: record.indices,
            },
        })
    }
}

impl Loaded {
    /// Row `i` as an aggregation reads it (`record` is its record); the
    /// position's text is empty unless the sites were loaded.
    pub fn parsed(&self, i: usize, record: &Record) -> Result<Parsed<'_>, BackendError> {
        let v = self.values_of(i)?;
        let bad = || corrupt(&self.name, "a row's values lie outside its section");
        let nano = |at: usize| match u64::from_le_bytes(le(v, at)) {
            NONE_U64 => None,
            n => Some(u128::from(n)),
        };
        let samples = match u32::from_le_bytes(le(v, 20)) {
            NONE_U32 => None,
            n => Some(n),
        };
        let (loc_lat, loc_long) = match self.sites.is_empty() {
            true => ("", ""),
            false => self
                .site(u32::from_le_bytes(le(v, 24)) as usize)
                .ok_or_else(bad)?,
        };
        Ok(Parsed {
            timestamp: crate::reading::Timestamp(record.ts),
            sensor_id: record.sensor_id,
            samples,
            p1: nano(0),
            p2: nano(8),
            indices: record.indices,
            // Segments serve no query with a quality filter.
            flags: crate::quality::Flags::NONE,
            cell: u32::from_le_bytes(le(v, 16)),
            sensor_type: self
                .types
                .get(record.kind as usize)
                .map_or("", String::as_str),
            loc_country: &self.country,
            loc_lat,
            loc_long,
        })
    }

    /// Row `i`'s values record.
    fn values_of(&self, i: usize) -> Result<&[u8], BackendError> {
        let bad = || corrupt(&self.name, "a row's values lie outside its section");
        let at = i.checked_sub(self.from).ok_or_else(bad)? * VALUES;
        self.values.get(at..at + VALUES).ok_or_else(bad)
    }

    /// Whether row `i` is in `place`, by the row path's rule: its stored
    /// position's text, checked with [`Place::contains_text`]. `cells`,
    /// the place's cells in ascending order (`Place::cells`), when it has
    /// them: a row in none of them is not in the place (they hold every
    /// point of it), and is refused without reading its text. Needs the
    /// positions loaded (`load`'s `positions`).
    pub fn in_place(
        &self,
        i: usize,
        place: &Place,
        cells: Option<&[u32]>,
    ) -> Result<bool, BackendError> {
        let v = self.values_of(i)?;
        if cells.is_some_and(|c| c.binary_search(&u32::from_le_bytes(le(v, 16))).is_err()) {
            return Ok(false);
        }
        let (lat, lon) = self
            .site(u32::from_le_bytes(le(v, 24)) as usize)
            .ok_or_else(|| corrupt(&self.name, "a row's position lies outside its section"))?;
        Ok(place.contains_text(lat, lon))
    }

    /// The position's text at `at` in the sites.
    fn site(&self, at: usize) -> Option<(&str, &str)> {
        let text = |at: usize| -> Option<(&str, usize)> {
            let len = u16::from_le_bytes(self.sites.get(at..at + 2)?.try_into().ok()?) as usize;
            let bytes = self.sites.get(at + 2..at + 2 + len)?;
            Some((std::str::from_utf8(bytes).ok()?, at + 2 + len))
        };
        let (lat, next) = text(at)?;
        let (lon, _) = text(next)?;
        Some((lat, lon))
    }
}

/// How a store orders sensor ids within a timestamp: its rows and so each
/// section of its segments are in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdOrder {
    /// As SQLite holds them, signed integers: an id above `i64::MAX`
    /// comes first.
    Signed,
    /// As numbers (DynamoDB's 20-digit sort keys).
    Unsigned,
}

impl IdOrder {
    fn key(self, id: u64) -> i128 {
        match self {
            IdOrder::Signed => i128::from(id as i64),
            IdOrder::Unsigned => i128::from(id),
        }
    }
}

/// The rows of `sections` in the store's order (`ts`, then `sensor_id` in
/// `order`): each section is in that order, so this merges them. Calls
/// `each` with a section's position in `sections` and a row's in it until
/// it returns false. Without `ordered`, the sections follow one another
/// instead.
pub fn merged<E: From<BackendError>>(
    sections: &[Loaded],
    ordered: bool,
    order: IdOrder,
    mut each: impl FnMut(usize, usize, &Record) -> Result<bool, E>,
) -> Result<(), E> {
    if sections.len() == 1 || !ordered {
        for (k, section) in sections.iter().enumerate() {
            for i in section.range() {
                if !each(k, i, &section.record(i))? {
                    return Ok(());
                }
            }
        }
        return Ok(());
    }
    let mut heads = BinaryHeap::with_capacity(sections.len());
    for (k, s) in sections.iter().enumerate() {
        if !s.range().is_empty() {
            let i = s.range().start;
            let r = s.record(i);
            heads.push(Reverse((r.ts, order.key(r.sensor_id), k, i)));
        }
    }
    while let Some(Reverse((_, _, k, i))) = heads.pop() {
        let s = &sections[k];
        let r = s.record(i);
        if !each(k, i, &r)? {
            break;
        }
        if i + 1 < s.range().end {
            let next = s.record(i + 1);
            heads.push(Reverse((next.ts, order.key(next.sensor_id), k, i + 1)));
        }
    }
    Ok(())
}

/// Whether segments hold what `query` reads, in a series that has them:
/// rows from 1970 on, without a quality filter or a correction (segments
/// keep neither the flags nor the air).
pub fn holds(query: &Query) -> bool {
    query.start.0 >= 0 && query.quality.is_none() && query.correction.is_none()
}

/// Whether `query` keeps every row of `sections`, one country's section
/// loaded whole: a country named, no index bounds, place or sensor type
/// it lacks; its time window holds the whole section (loaded so). Its
/// rows are then the section's, in its order, as a gzip piece holds them
/// ([`crate::gzip`]).
pub fn keeps_whole(query: &Query, sections: &[Loaded]) -> bool {
    let [s] = sections else {
        return false;
    };
    query.country.is_some()
        && query.index_filter().is_none()
        && query.place.is_none()
        && s.from == 0
        && s.to == s.rows
        && s.types.iter().all(|t| query.wants_type(t))
}

/// Hands the rows of one day's `sections` (loaded for `query`) that
/// `query` keeps to `each`, in the store's order (ids in `order`) when
/// `ordered`, by the row path's rules: its time window, sensor types,
/// index bounds and place (checked on each row's stored position, as the
/// row path checks it). Returns false once `each` did.
pub fn each_kept<E: From<BackendError>>(
    query: &Query,
    sections: &[Loaded],
    ordered: bool,
    order: IdOrder,
    mut each: impl FnMut(&Loaded, usize, &Record) -> Result<bool, E>,
) -> Result<bool, E> {
    let bounds = match query.index_filter() {
        // The index bounds exclude every value: no rows.
        Some(None) => return Ok(true),
        bounds => bounds.flatten(),
    };
    let cells = query.place.and_then(|p| p.cells());
    let wanted: Vec<Vec<bool>> = sections
        .iter()
        .map(|s| s.types().iter().map(|t| query.wants_type(t)).collect())
        .collect();
    let mut open = true;
    merged::<E>(sections, ordered, order, |k, i, r| {
        let keep = r.ts >= query.start.0
            && r.ts <= query.end.0
            && wanted[k].get(r.kind as usize).copied().unwrap_or(false)
            && bounds.is_none_or(|(lo, hi)| (lo..=hi).contains(&r.indices.get(query.index)));
        let keep = match (&query.place, keep) {
            (Some(place), true) => sections[k].in_place(i, place, cells.as_deref())?,
            (_, keep) => keep,
        };
        if keep {
            open = each(&sections[k], i, r)?;
        }
        Ok(open)
    })?;
    Ok(open)
}

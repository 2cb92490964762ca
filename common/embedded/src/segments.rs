//! Answer segments: each day of the daily and the hourly series with its
//! rows already rendered, in files beside the database (`<db>-segments/`),
//! so that a large answer or aggregation is assembled from stored bytes
//! instead of read row by row from SQLite and formatted again (issue 27;
//! BENCHMARKS.md has the figures and the designs tried).
//!
//! **What a segment holds.** One file per series and UTC day,
//! `<series>.<day>.<version>.seg`, with one section per country. A section
//! holds its rows in the store's order (`ts`, then `sensor_id`) as
//! [`Pieces`]: the CSV record up to `AQI`, and the JSON object (with its
//! GeoJSON head) around its `AQI` and `Range`, which are written at query
//! time from the row's indices, so one file serves every format and
//! index. Beside them, a fixed-size record per row (timestamp, sensor id,
//! indices, sensor type, where its bytes end) is what filters and merges
//! read, and a values record (P1 and P2 in nano-units, cell, samples,
//! position) is what aggregations read.
//!
//! **Fresh or not.** Every write that adds or changes a row of a day sets
//! the day's version in `day_versions` to the next tick of one clock, in
//! the write's transaction ([`bump`]); `segments` names the version each
//! built file was made from, read with the rows in one read transaction
//! (`readings::build_day`) and recorded only while the day is still at
//! it ([`record_built`]). A query, in one read transaction, uses a day's
//! file only when the two versions are equal, and reads any other day
//! (late data, backfill, a re-ingest that changed a value, a day never
//! built) the row path's way: answers are the same bytes on either path,
//! which the contract suites check on both. `refresh_segments` rebuilds
//! what is stale; the master runs it after every ingestion.
//!
//! **Bounds.** A query maps one day's file at a time and reads from the
//! map only the pages it needs: the records of its time window in its
//! country's section (every section without a country), and the rendered
//! bytes of the rows it keeps; the pages are the OS's page cache, shared
//! and reclaimable (for 15,000 sensors a day of the daily series is about
//! 0.6 MB of records and 1.4 MB of CSV or 4 MB of JSON, 24 times that for
//! the hourly series). Every read is checked against the file's length
//! first. Names are built from numbers and UUIDs only; no outside input
//! reaches a path.

use crate::db::DbError;
use crate::readings::DAY_OF_TS;
use airq_core::aggregate::Parsed;
use airq_core::aqi::{Index, Indices};
use airq_core::error::BackendError;
use airq_core::export::{Format, PieceWriter, Pieces, RowRef};
use airq_core::mean::nano_units_of;
use airq_core::place::{cell_of_text, Place};
use airq_core::reading::Timestamp;
use airq_core::resolution::Resolution;
use bytes::Bytes;
use rusqlite::{params, Transaction};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The layout of segment files this build writes and reads: the last
/// byte of their magic, and recorded in `segments`, so that a file of
/// another layout counts as stale and is built again.
const LAYOUT: u8 = 1;

/// The first bytes of a segment file.
const MAGIC: &[u8; 8] = &[b'A', b'I', b'R', b'Q', b'S', b'E', b'G', LAYOUT];

/// Bytes of one row's values record, what aggregations read: P1 and P2 in
/// nano-units (`airq_core::mean::nano_units_of`; `u64::MAX` for none), the
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

/// The series that have segments: the daily one and the hourly one (the
/// 5-minute readings, kept for two days, are read from their rows).
pub(crate) const SERIES: [Resolution; 2] = [Resolution::Day, Resolution::Hour];

/// Migration 10: the versions of each series' days (every day stored so
/// far starts at 1) and of the segments built from them, and the clock
/// versions are taken from.
pub(crate) fn create_tables(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.execute_batch(
        "CREATE TABLE day_versions (
             series  TEXT    NOT NULL,
             day     INTEGER NOT NULL,
             version INTEGER NOT NULL,
             PRIMARY KEY (series, day)
         ) WITHOUT ROWID;
         CREATE TABLE segments (
             series  TEXT    NOT NULL,
             day     INTEGER NOT NULL,
             version INTEGER NOT NULL,
             layout  INTEGER NOT NULL,
             PRIMARY KEY (series, day)
         ) WITHOUT ROWID;
         CREATE TABLE segment_clock (
             one INTEGER PRIMARY KEY CHECK (one = 1),
             n   INTEGER NOT NULL
         );
         INSERT INTO segment_clock (one, n) VALUES (1, 1);",
    )?;
    for series in SERIES {
        tx.execute(
            &format!(
                "INSERT INTO day_versions (series, day, version)
                 SELECT DISTINCT ?1, {DAY_OF_TS}, 1 FROM {} WHERE ts >= 0",
                crate::live::table(series)
            ),
            [series.name()],
        )?;
    }
    Ok(())
}

/// Moves the versions of `series`' `days` on, in the writer's
/// transaction: their segments are stale from its commit on. A version
/// is the next tick of one clock, never a day's own count, so a day that
/// was forgotten (pruned) and written again never takes a version an old
/// segment of it was built from.
pub(crate) fn bump(
    tx: &Transaction<'_>,
    series: Resolution,
    days: impl IntoIterator<Item = i64>,
) -> Result<(), DbError> {
    let mut days = days.into_iter().peekable();
    if days.peek().is_none() {
        return Ok(());
    }
    let version: i64 = tx
        .prepare_cached("UPDATE segment_clock SET n = n + 1 RETURNING n")?
        .query_row([], |r| r.get(0))?;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO day_versions (series, day, version) VALUES (?1, ?2, ?3)
         ON CONFLICT (series, day) DO UPDATE SET version = excluded.version",
    )?;
    for day in days {
        stmt.execute(params![series.name(), day, version])?;
    }
    Ok(())
}

/// Forgets `series`' days before `day` (their rows are pruned), with their
/// segments' files.
pub(crate) fn forget_before(
    conn: &mut rusqlite::Connection,
    folder: &Path,
    series: Resolution,
    day: i64,
) -> Result<(), DbError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let files: Vec<(i64, i64)> = tx
        .prepare_cached("SELECT day, version FROM segments WHERE series = ?1 AND day < ?2")?
        .query_map(params![series.name(), day], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    tx.execute(
        "DELETE FROM segments WHERE series = ?1 AND day < ?2",
        params![series.name(), day],
    )?;
    tx.execute(
        "DELETE FROM day_versions WHERE series = ?1 AND day < ?2",
        params![series.name(), day],
    )?;
    tx.commit()?;
    for (day, version) in files {
        remove(folder, series, day, version);
    }
    Ok(())
}

/// The folder of a database's segments.
pub fn folder(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-segments");
    PathBuf::from(p)
}

fn file_name(series: Resolution, day: i64, version: i64) -> String {
    format!("{}.{day}.{version}.seg", series.name())
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> DbError {
    DbError(BackendError::Remote {
        context: format!("{what} {}", path.display()),
        message: e.to_string(),
    })
}

fn corrupt(path: &Path, what: &str) -> DbError {
    DbError(BackendError::Corrupt(format!(
        "answer segment {}: {what}",
        path.display()
    )))
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
    site_at: std::collections::HashMap<(String, String), u32>,
}

/// Builds one day's segment from its rows, pushed in the store's order.
pub(crate) struct Builder {
    series: Resolution,
    day: i64,
    version: i64,
    sections: BTreeMap<String, SectionBuilder>,
    pieces: PieceWriter,
}

impl Builder {
    pub(crate) fn new(series: Resolution, day: i64, version: i64) -> Builder {
        Builder {
            series,
            day,
            version,
            sections: BTreeMap::new(),
            pieces: PieceWriter::default(),
        }
    }

    pub(crate) fn push(&mut self, r: &RowRef<'_>) -> Result<(), DbError> {
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
            DbError(BackendError::Corrupt(format!(
                "the day {} is too large for an answer segment",
                self.day
            )))
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

    /// Writes the file into `folder` (under a temporary name, then
    /// renamed, so a reader sees all of it or none); returns its path.
    pub(crate) fn write(self, folder: &Path) -> Result<PathBuf, DbError> {
        let mut sections = Vec::with_capacity(self.sections.len());
        let mut at = 0u64;
        let mut take = |n: usize| {
            let range = (at, n as u64);
            at += n as u64;
            range
        };
        for (country, s) in &self.sections {
            let sidecar = take(s.sidecar.len()).0;
            let csv = take(s.csv.len());
            let json = take(s.json.len());
            let values = take(s.values.len()).0;
            sections.push(Section {
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
        let directory = serde_json::to_vec(&Directory {
            series: self.series.name().to_owned(),
            day: self.day,
            version: self.version,
            sections,
        })
        .map_err(|e| DbError(BackendError::Corrupt(e.to_string())))?;
        std::fs::create_dir_all(folder).map_err(|e| io_error("creating", folder, e))?;
        let name = file_name(self.series, self.day, self.version);
        let path = folder.join(&name);
        // Each writer its own temporary file: two processes may build
        // the same day at once.
        let part = folder.join(format!("{name}.{}.part", uuid::Uuid::new_v4()));
        let write = || -> std::io::Result<()> {
            let mut f = std::io::BufWriter::new(File::create(&part)?);
            f.write_all(MAGIC)?;
            f.write_all(&(directory.len() as u32).to_le_bytes())?;
            f.write_all(&directory)?;
            for s in self.sections.values() {
                f.write_all(&s.sidecar)?;
                f.write_all(&s.csv)?;
                f.write_all(&s.json)?;
                f.write_all(&s.values)?;
                f.write_all(&s.sites)?;
            }
            f.into_inner().map_err(|e| e.into_error())?.flush()?;
            std::fs::rename(&part, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&part);
            io_error("writing", &path, e)
        })?;
        Ok(path)
    }
}

/// An open segment file and its directory.
pub(crate) struct Segment {
    /// The whole file, mapped: a query reads the pages of what it keeps
    /// and nothing else (a place's rows among a country's, say), and the
    /// bytes it answers with are copied once, into the answer.
    map: Bytes,
    path: PathBuf,
    sections: Vec<Section>,
    /// Where the sections' bytes start in the file.
    base: u64,
}

impl Segment {
    /// Opens the segment of `day` built from `version`; `None` when the
    /// file is gone (a rebuild replaced it meanwhile).
    pub(crate) fn open(
        folder: &Path,
        series: Resolution,
        day: i64,
        version: i64,
    ) -> Result<Option<Segment>, DbError> {
        let path = folder.join(file_name(series, day, version));
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("opening", &path, e)),
        };
        // SAFETY: a mapped file must not change while it is mapped. airq
        // never changes a segment file: it is written whole under a
        // temporary name and renamed into place (`Builder::write`), and a
        // newer version is a new file; a file deleted while mapped stays
        // readable until unmapped. Only someone writing into the folder
        // by hand could change one, as they could SQLite's own mapped
        // pages (`db::MMAP_BYTES`). A page the disk fails to read ends the
        // process (SIGBUS) where `pread` would return an error; so does
        // SQLite's map.
        let map =
            unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io_error("mapping", &path, e))?;
        let map = Bytes::from_owner(map);
        let head = map
            .get(..12)
            .ok_or_else(|| corrupt(&path, "not a segment file of this layout"))?;
        if &head[..8] != MAGIC {
            return Err(corrupt(&path, "not a segment file of this layout"));
        }
        let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        let directory = 12usize
            .checked_add(len)
            .and_then(|end| map.get(12..end))
            .ok_or_else(|| corrupt(&path, "its directory runs past its end"))?;
        let directory: Directory = serde_json::from_slice(directory)
            .map_err(|e| corrupt(&path, &format!("its directory: {e}")))?;
        if (directory.series.as_str(), directory.day, directory.version)
            != (series.name(), day, version)
        {
            return Err(corrupt(&path, "its directory names another day or version"));
        }
        Ok(Some(Segment {
            map,
            path,
            sections: directory.sections,
            base: 12 + len as u64,
        }))
    }

    /// `len` bytes at `at` of the sections' bytes, checked against the
    /// file's length (a view of the map, nothing copied).
    fn read(&self, at: u64, len: u64) -> Result<Bytes, DbError> {
        let bad = || corrupt(&self.path, "a section lies outside the file");
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
    pub(crate) fn load(
        &self,
        country: Option<&str>,
        need: Need,
        positions: bool,
        window: (i64, i64),
    ) -> Result<Option<Vec<Loaded>>, DbError> {
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
                    let bad = || corrupt(&self.path, "a row's bytes lie outside its section");
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
                        .ok_or_else(|| corrupt(&self.path, "values lie outside the file"))?;
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
                base,
                country: s.country.clone(),
                types: s.types.clone(),
                sidecar,
                bytes,
                values,
                sites,
                need,
                path: self.path.clone(),
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
pub(crate) enum Need {
    /// The rows rendered, for an answer in this format.
    Rendered(Format),
    /// The values, for an aggregation; with the positions' text when it
    /// groups by sensor; `ordered` when it needs a day's rows in time
    /// order (`Aggregator::orders_within_a_day`).
    Values { sites: bool, ordered: bool },
}

/// A section in memory.
pub(crate) struct Loaded {
    /// The rows loaded: `from..to` of the section.
    from: usize,
    to: usize,
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
    path: PathBuf,
}

/// One row's sidecar record, decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) ts: i64,
    pub(crate) sensor_id: u64,
    pub(crate) indices: Indices,
    pub(crate) kind: u16,
}

fn le<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

impl Loaded {
    /// The positions of the rows loaded.
    pub(crate) fn range(&self) -> std::ops::Range<usize> {
        self.from..self.to
    }

    pub(crate) fn types(&self) -> &[String] {
        &self.types
    }

    pub(crate) fn record(&self, i: usize) -> Record {
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
    pub(crate) fn pieces(&self, i: usize, record: &Record) -> Result<Pieces<'_>, DbError> {
        let previous = (i > 0).then(|| self.ends(i - 1));
        let bad = || corrupt(&self.path, "a row's bytes lie outside its section");
        let slice = |from: u64, to: u64| -> Result<&[u8], DbError> {
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
    pub(crate) fn parsed(&self, i: usize, record: &Record) -> Result<Parsed<'_>, DbError> {
        let v = self.values_of(i)?;
        let bad = || corrupt(&self.path, "a row's values lie outside its section");
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
            timestamp: Timestamp(record.ts),
            sensor_id: record.sensor_id,
            samples,
            p1: nano(0),
            p2: nano(8),
            indices: record.indices,
            // Segments serve no query with a quality filter.
            flags: airq_core::quality::Flags::NONE,
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
    fn values_of(&self, i: usize) -> Result<&[u8], DbError> {
        let bad = || corrupt(&self.path, "a row's values lie outside its section");
        let at = i.checked_sub(self.from).ok_or_else(bad)? * VALUES;
        self.values.get(at..at + VALUES).ok_or_else(bad)
    }

    /// Whether row `i` is in `place`, by the row path's rule: its stored
    /// position's text, checked with [`Place::contains_text`]. `cells`,
    /// the place's cells in ascending order (`Place::cells`), when it has
    /// them: a row in none of them is not in the place (they hold every
    /// point of it), and is refused without reading its text. Needs the
    /// positions loaded (`load`'s `positions`).
    pub(crate) fn in_place(
        &self,
        i: usize,
        place: &Place,
        cells: Option<&[u32]>,
    ) -> Result<bool, DbError> {
        let v = self.values_of(i)?;
        if cells.is_some_and(|c| c.binary_search(&u32::from_le_bytes(le(v, 16))).is_err()) {
            return Ok(false);
        }
        let (lat, lon) = self
            .site(u32::from_le_bytes(le(v, 24)) as usize)
            .ok_or_else(|| corrupt(&self.path, "a row's position lies outside its section"))?;
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

/// The rows of `sections` in the store's order (`ts`, then `sensor_id` as
/// SQLite holds it, a signed integer: an id above `i64::MAX` comes first):
/// each section is in that order, so this merges them. Calls `each` with
/// a section's position in `sections` and a row's in it until it returns
/// false. Without `ordered`, the sections follow one another instead.
pub(crate) fn merged(
    sections: &[Loaded],
    ordered: bool,
    mut each: impl FnMut(usize, usize, &Record) -> Result<bool, DbError>,
) -> Result<(), DbError> {
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
            heads.push(Reverse((r.ts, r.sensor_id as i64, k, i)));
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
            heads.push(Reverse((next.ts, next.sensor_id as i64, k, i + 1)));
        }
    }
    Ok(())
}

/// The days of `series` whose segment is fresh (built from the day's
/// current version), with that version, between `first` and `last`.
pub(crate) fn fresh(
    conn: &rusqlite::Connection,
    series: Resolution,
    first: i64,
    last: i64,
) -> Result<BTreeMap<i64, i64>, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.day, s.version FROM segments s
         JOIN day_versions d ON d.series = s.series AND d.day = s.day AND d.version = s.version
         WHERE s.series = ?1 AND s.day BETWEEN ?2 AND ?3 AND s.layout = ?4",
    )?;
    let rows = stmt.query_map(params![series.name(), first, last, LAYOUT], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether every day of `series` from `first` to `last` that has rows has
/// its segment, built from its current version.
pub(crate) fn all_fresh(
    conn: &rusqlite::Connection,
    series: Resolution,
    first: i64,
    last: i64,
) -> Result<bool, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT NOT EXISTS (SELECT 1 FROM day_versions d
             LEFT JOIN segments s ON s.series = d.series AND s.day = d.day
             WHERE d.series = ?1 AND d.day BETWEEN ?2 AND ?3
               AND (s.version IS NULL OR s.version <> d.version OR s.layout <> ?4))",
    )?;
    Ok(stmt.query_row(params![series.name(), first, last, LAYOUT], |r| r.get(0))?)
}

/// The days of `series` whose segment is missing or stale, oldest first.
pub(crate) fn stale(conn: &rusqlite::Connection, series: Resolution) -> Result<Vec<i64>, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.day FROM day_versions d
         LEFT JOIN segments s ON s.series = d.series AND s.day = d.day
         WHERE d.series = ?1 AND (s.version IS NULL OR s.version <> d.version OR s.layout <> ?2)
         ORDER BY d.day",
    )?;
    let rows = stmt.query_map(params![series.name(), LAYOUT], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The current version of `series`' `day`, if it has rows.
pub(crate) fn day_version(
    conn: &rusqlite::Connection,
    series: Resolution,
    day: i64,
) -> Result<Option<i64>, DbError> {
    Ok(conn
        .prepare_cached("SELECT version FROM day_versions WHERE series = ?1 AND day = ?2")?
        .query_row(params![series.name(), day], |r| r.get(0))
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?)
}

/// What [`record_built`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// The segment is the day's now; it replaced the one of this version
    /// (whose file goes, unless it is of the same version: then the new
    /// file took its name).
    Replaced(Option<i64>),
    /// Another process recorded a file of the same version and layout
    /// meanwhile: both are complete and alike, and the name holds one.
    Already,
    /// The day moved on (a write) or was forgotten (a prune) since its
    /// rows were read: the new file is of no use.
    Outdated,
}

/// Records that `series`' `day` has its segment of `version`, if the day
/// is still at that version.
pub(crate) fn record_built(
    conn: &mut rusqlite::Connection,
    series: Resolution,
    day: i64,
    version: i64,
) -> Result<Recorded, DbError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if day_version(&tx, series, day)? != Some(version) {
        return Ok(Recorded::Outdated);
    }
    let old: Option<(i64, u8)> = tx
        .query_row(
            "SELECT version, layout FROM segments WHERE series = ?1 AND day = ?2",
            params![series.name(), day],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    if old == Some((version, LAYOUT)) {
        return Ok(Recorded::Already);
    }
    tx.execute(
        "INSERT INTO segments (series, day, version, layout) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (series, day)
         DO UPDATE SET version = excluded.version, layout = excluded.layout",
        params![series.name(), day, version, LAYOUT],
    )?;
    tx.commit()?;
    Ok(Recorded::Replaced(old.map(|(v, _)| v)))
}

/// A file being written is this old at most unless its writer died:
/// older ones are deleted by the next refresh.
const PART_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes the unfinished files (`.part`) of writers that died.
pub(crate) fn sweep_parts(folder: &Path) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > PART_AGE);
        if old && entry.file_name().to_string_lossy().ends_with(".part") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Deletes a segment file; one already gone is fine.
pub(crate) fn remove(folder: &Path, series: Resolution, day: i64, version: i64) {
    let _ = std::fs::remove_file(folder.join(file_name(series, day, version)));
}

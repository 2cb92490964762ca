//! Answer segments: each day of the daily series with its rows already
//! rendered, in files beside the database (`<db>-segments/`), so that a
//! large answer is assembled from stored bytes instead of read row by row
//! from SQLite and formatted again (issue 27; BENCHMARKS.md has the
//! figures and the designs tried).
//!
//! **What a segment holds.** One file per UTC day, `<day>.<version>.seg`,
//! with one section per country. A section holds its rows in the store's
//! order (`ts`, then `sensor_id`) as [`Pieces`]: the CSV record up to
//! `AQI`, and the JSON object (with its GeoJSON head) around its `AQI`
//! and `Range`, which are written at query time from the row's indices,
//! so one file serves every format and index. Beside them, a fixed-size
//! record per row (a *sidecar*: timestamp, sensor id, indices, sensor
//! type, where its bytes end) is what filters and merges read.
//!
//! **Fresh or not.** Every write that adds or changes a reading of a day
//! moves that day's number in `day_versions` on, in its own transaction
//! ([`bump`]); `segments` names the version each built file was made
//! from, which [`build_day`] reads with the rows in one read transaction.
//! A query uses a day's file only when the two versions are equal, and
//! reads any other day (late data, backfill, a re-ingest that changed a
//! value, a day never built) the row path's way: answers are the same
//! bytes on either path, which the contract suite checks on both.
//! [`refresh`] rebuilds what is stale; the master runs it after every
//! ingestion.
//!
//! **Bounds.** A query holds one day's section (one country's, or every
//! country's for a query without one) in memory at a time: for 15,000
//! sensors a day about 0.6 MB of sidecar and 1.4 MB of CSV (or 4 MB of
//! JSON). Names are built from numbers only; no outside input reaches a
//! path.

use crate::db::DbError;
use crate::readings::DAY_OF_TS;
use airq_core::aqi::{Index, Indices};
use airq_core::error::BackendError;
use airq_core::export::{Format, PieceWriter, Pieces, RowRef};
use rusqlite::{params, Transaction};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The first bytes of a segment file; the last one is the layout's
/// version.
const MAGIC: &[u8; 8] = b"AIRQSEG\x01";

/// Bytes of one row's sidecar record: `ts` (i64), `sensor_id` (u64), the
/// indices in [`Index::ALL`] order (u16 each), the sensor type's number in
/// its section (u16), and where the row's CSV, GeoJSON head, JSON head and
/// JSON tail end in their section's bytes (u32 each); little-endian.
const RECORD: usize = 8 + 8 + 2 * Index::COUNT + 2 + 4 * 4;

/// Migration 10: the versions of the days (every day stored so far starts
/// at 1) and of the segments built from them.
pub(crate) fn create_tables(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.execute_batch(&format!(
        "CREATE TABLE day_versions (
             day     INTEGER PRIMARY KEY,
             version INTEGER NOT NULL
         );
         CREATE TABLE segments (
             day     INTEGER PRIMARY KEY,
             version INTEGER NOT NULL
         );
         INSERT INTO day_versions (day, version)
             SELECT DISTINCT {DAY_OF_TS}, 1 FROM readings WHERE ts >= 0;"
    ))?;
    Ok(())
}

/// Moves the versions of `days` on, in the writer's transaction: their
/// segments are stale from its commit on.
pub(crate) fn bump(
    tx: &Transaction<'_>,
    days: impl IntoIterator<Item = i64>,
) -> Result<(), DbError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO day_versions (day, version) VALUES (?1, 1)
         ON CONFLICT (day) DO UPDATE SET version = version + 1",
    )?;
    for day in days {
        stmt.execute([day])?;
    }
    Ok(())
}

/// The folder of a database's segments.
pub fn folder(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-segments");
    PathBuf::from(p)
}

fn file_name(day: i64, version: i64) -> String {
    format!("{day}.{version}.seg")
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
}

/// A section as it is built.
#[derive(Default)]
struct SectionBuilder {
    rows: u32,
    types: Vec<String>,
    sidecar: Vec<u8>,
    csv: Vec<u8>,
    json: Vec<u8>,
}

/// Builds one day's segment from its rows, pushed in the store's order.
pub(crate) struct Builder {
    day: i64,
    version: i64,
    sections: BTreeMap<String, SectionBuilder>,
    pieces: PieceWriter,
}

impl Builder {
    pub(crate) fn new(day: i64, version: i64) -> Builder {
        Builder {
            day,
            version,
            sections: BTreeMap::new(),
            pieces: PieceWriter::default(),
        }
    }

    pub(crate) fn push(&mut self, r: &RowRef<'_>) -> Result<(), DbError> {
        if !self.sections.contains_key(r.loc_country) {
            self.sections
                .insert(r.loc_country.to_owned(), SectionBuilder::default());
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
            sections.push(Section {
                country: country.clone(),
                rows: s.rows,
                types: s.types.clone(),
                sidecar,
                csv: take(s.csv.len()),
                json: take(s.json.len()),
            });
        }
        let directory = serde_json::to_vec(&Directory {
            day: self.day,
            version: self.version,
            sections,
        })
        .map_err(|e| DbError(BackendError::Corrupt(e.to_string())))?;
        std::fs::create_dir_all(folder).map_err(|e| io_error("creating", folder, e))?;
        let path = folder.join(file_name(self.day, self.version));
        let part = folder.join(format!("{}.part", file_name(self.day, self.version)));
        let write = || -> std::io::Result<()> {
            let mut f = std::io::BufWriter::new(File::create(&part)?);
            f.write_all(MAGIC)?;
            f.write_all(&(directory.len() as u32).to_le_bytes())?;
            f.write_all(&directory)?;
            for s in self.sections.values() {
                f.write_all(&s.sidecar)?;
                f.write_all(&s.csv)?;
                f.write_all(&s.json)?;
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
    file: File,
    path: PathBuf,
    sections: Vec<Section>,
    /// Where the sections' bytes start in the file.
    base: u64,
}

impl Segment {
    /// Opens the segment of `day` built from `version`; `None` when the
    /// file is gone (a rebuild replaced it meanwhile).
    pub(crate) fn open(folder: &Path, day: i64, version: i64) -> Result<Option<Segment>, DbError> {
        let path = folder.join(file_name(day, version));
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("opening", &path, e)),
        };
        let mut head = [0u8; 12];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| io_error("reading", &path, e))?;
        if &head[..8] != MAGIC {
            return Err(corrupt(&path, "not a segment file of this layout"));
        }
        let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        let mut directory = vec![0u8; len];
        file.read_exact_at(&mut directory, 12)
            .map_err(|e| io_error("reading", &path, e))?;
        let directory: Directory = serde_json::from_slice(&directory)
            .map_err(|e| corrupt(&path, &format!("its directory: {e}")))?;
        if (directory.day, directory.version) != (day, version) {
            return Err(corrupt(&path, "its directory names another day or version"));
        }
        Ok(Some(Segment {
            file,
            path,
            sections: directory.sections,
            base: 12 + len as u64,
        }))
    }

    fn read(&self, at: u64, len: u64) -> Result<Vec<u8>, DbError> {
        let len = usize::try_from(len).map_err(|_| corrupt(&self.path, "a section's length"))?;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, self.base + at)
            .map_err(|e| io_error("reading", &self.path, e))?;
        Ok(buf)
    }

    /// Loads the sections of `country` (every one for `None`) with the
    /// bytes `format` needs.
    pub(crate) fn load(
        &self,
        country: Option<&str>,
        format: Format,
    ) -> Result<Vec<Loaded>, DbError> {
        let mut loaded = Vec::new();
        for s in &self.sections {
            if country.is_some_and(|c| c != s.country) {
                continue;
            }
            let sidecar = self.read(s.sidecar, s.rows as u64 * RECORD as u64)?;
            let (at, len) = match format {
                Format::Csv => s.csv,
                _ => s.json,
            };
            loaded.push(Loaded {
                rows: s.rows as usize,
                types: s.types.clone(),
                sidecar,
                bytes: self.read(at, len)?,
                format,
                path: self.path.clone(),
            });
        }
        Ok(loaded)
    }
}

/// A section in memory.
pub(crate) struct Loaded {
    rows: usize,
    types: Vec<String>,
    sidecar: Vec<u8>,
    bytes: Vec<u8>,
    format: Format,
    path: PathBuf,
}

/// One row's sidecar record, decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) ts: i64,
    pub(crate) sensor_id: u64,
    pub(crate) indices: Indices,
    pub(crate) kind: u16,
    ends: [u32; 4],
}

fn le<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

impl Loaded {
    pub(crate) fn rows(&self) -> usize {
        self.rows
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
            ends: [0, 1, 2, 3].map(|k| u32::from_le_bytes(le(b, at + 2 + 4 * k))),
        }
    }

    /// Row `i`'s pieces (`record` is its record).
    pub(crate) fn pieces(&self, i: usize, record: &Record) -> Result<Pieces<'_>, DbError> {
        let previous = (i > 0).then(|| self.record(i - 1).ends);
        let bad = || corrupt(&self.path, "a row's bytes lie outside its section");
        let slice = |from: u32, to: u32| -> Result<&[u8], DbError> {
            self.bytes.get(from as usize..to as usize).ok_or_else(bad)
        };
        let [csv, geo, head, tail] = record.ends;
        Ok(match self.format {
            Format::Csv => Pieces {
                csv_head: slice(previous.map_or(0, |p| p[0]), csv)?,
                geo_head: &[],
                json_head: &[],
                json_tail: &[],
                indices: record.indices,
            },
            _ => Pieces {
                csv_head: &[],
                geo_head: slice(previous.map_or(0, |p| p[3]), geo)?,
                json_head: slice(geo, head)?,
                json_tail: slice(head, tail)?,
                indices: record.indices,
            },
        })
    }
}

/// The rows of `sections` in the store's order (`ts`, then `sensor_id`):
/// each section is in that order, so this merges them. Calls `each` with
/// a section's position in `sections` and a row's in it until it returns
/// false.
pub(crate) fn merged(
    sections: &[Loaded],
    mut each: impl FnMut(usize, usize, &Record) -> Result<bool, DbError>,
) -> Result<(), DbError> {
    if let [only] = sections {
        for i in 0..only.rows() {
            if !each(0, i, &only.record(i))? {
                break;
            }
        }
        return Ok(());
    }
    let mut heads = BinaryHeap::with_capacity(sections.len());
    for (k, s) in sections.iter().enumerate() {
        if s.rows() > 0 {
            let r = s.record(0);
            heads.push(Reverse((r.ts, r.sensor_id, k, 0usize)));
        }
    }
    while let Some(Reverse((_, _, k, i))) = heads.pop() {
        let s = &sections[k];
        let r = s.record(i);
        if !each(k, i, &r)? {
            break;
        }
        if i + 1 < s.rows() {
            let next = s.record(i + 1);
            heads.push(Reverse((next.ts, next.sensor_id, k, i + 1)));
        }
    }
    Ok(())
}

/// The days whose segment is fresh (built from the day's current
/// version), with that version, between `first` and `last`.
pub(crate) fn fresh(
    conn: &rusqlite::Connection,
    first: i64,
    last: i64,
) -> Result<BTreeMap<i64, i64>, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.day, s.version FROM segments s
         JOIN day_versions d ON d.day = s.day AND d.version = s.version
         WHERE s.day BETWEEN ?1 AND ?2",
    )?;
    let rows = stmt.query_map(params![first, last], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The days whose segment is missing or stale, oldest first, with their
/// current versions.
pub(crate) fn stale(conn: &rusqlite::Connection) -> Result<Vec<(i64, i64)>, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.day, d.version FROM day_versions d
         LEFT JOIN segments s ON s.day = d.day
         WHERE s.version IS NULL OR s.version <> d.version
         ORDER BY d.day",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What [`record_built`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// The segment is `day`'s now; it replaced the one of this version.
    Replaced(Option<i64>),
    /// One built from the same or a newer version is recorded already
    /// (another process built it meanwhile): the new file is not needed.
    Superseded,
}

/// Records that `day`'s segment of `version` is built, unless one of the
/// same or a newer version is.
pub(crate) fn record_built(
    conn: &mut rusqlite::Connection,
    day: i64,
    version: i64,
) -> Result<Recorded, DbError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let old: Option<i64> = tx
        .query_row("SELECT version FROM segments WHERE day = ?1", [day], |r| {
            r.get(0)
        })
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    if old.is_some_and(|old| old >= version) {
        return Ok(Recorded::Superseded);
    }
    tx.execute(
        "INSERT INTO segments (day, version) VALUES (?1, ?2)
         ON CONFLICT (day) DO UPDATE SET version = excluded.version",
        params![day, version],
    )?;
    tx.commit()?;
    Ok(Recorded::Replaced(old))
}

/// Deletes a segment file; one already gone is fine.
pub(crate) fn remove(folder: &Path, day: i64, version: i64) {
    let _ = std::fs::remove_file(folder.join(file_name(day, version)));
}

//! Answer segments (the format: `airq_core::segment`) of each day of the
//! daily and the hourly series, in files beside the database
//! (`<db>-segments/`), one per series and UTC day,
//! `<series>.<day>.<version>.seg`, with one section per country.
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
//! first. Names are built from numbers, UUIDs and the registries' names
//! only (a gzip piece's country as the hex of its bytes); no outside
//! input reaches a path as text.
//!
//! **gzip pieces** (`airq_core::gzip`): a segment's file has a folder
//! beside it, `<file>.gz/`, where the gateway's pieces of its whole
//! sections are kept ([`write_piece`]: only while the file exists); it
//! goes with the file ([`remove`]), and one left by a piece written as
//! its file went is swept by a later refresh ([`sweep_parts`]).

use crate::db::DbError;
use crate::readings::DAY_OF_TS;
use airq_core::error::BackendError;
use airq_core::gzip::PieceKey;
use airq_core::resolution::Resolution;
pub(crate) use airq_core::segment::{Builder, Loaded, Need, Record, Segment, LAYOUT};
use bytes::Bytes;
use rusqlite::{params, Transaction};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

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

/// Writes `builder`'s file of `series`' `day` built from `version` into
/// `folder` (under a temporary name, then renamed, so a reader sees all of
/// it or none); returns its path.
pub(crate) fn write(
    builder: Builder,
    folder: &Path,
    series: Resolution,
    day: i64,
    version: i64,
) -> Result<PathBuf, DbError> {
    std::fs::create_dir_all(folder).map_err(|e| io_error("creating", folder, e))?;
    let name = file_name(series, day, version);
    let path = folder.join(&name);
    // Each writer its own temporary file: two processes may build the
    // same day at once.
    let part = folder.join(format!("{name}.{}.part", uuid::Uuid::new_v4()));
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(File::create(&part)?);
        builder.write_to(&mut f)?;
        drop(f.into_inner().map_err(|e| e.into_error())?);
        std::fs::rename(&part, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&part);
        io_error("writing", &path, e)
    })?;
    Ok(path)
}

/// Opens the segment of `day` built from `version`; `None` when the file
/// is gone (a rebuild replaced it meanwhile).
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
    // SAFETY: a mapped file must not change while it is mapped. airq never
    // changes a segment file: it is written whole under a temporary name
    // and renamed into place (`write`), and a newer version is a new file;
    // a file deleted while mapped stays readable until unmapped. Only
    // someone writing into the folder by hand could change one, as they
    // could SQLite's own mapped pages (`db::MMAP_BYTES`). A page the disk
    // fails to read ends the process (SIGBUS) where `pread` would return
    // an error; so does SQLite's map.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io_error("mapping", &path, e))?;
    let name = path.display().to_string();
    Ok(Some(Segment::parse(
        Bytes::from_owner(map),
        name,
        series,
        day,
        version,
    )?))
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

/// Deletes the unfinished files (`.part`) of writers that died, in the
/// folder and its pieces' folders, and the pieces of a segment that is
/// gone (a piece written as its segment was deleted).
pub(crate) fn sweep_parts(folder: &Path) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    let old = |entry: &std::fs::DirEntry| {
        entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > PART_AGE)
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(segment) = name.strip_suffix(".gz") {
            if !folder.join(segment).exists() {
                if old(&entry) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
                continue;
            }
            for part in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if old(&part) && part.file_name().to_string_lossy().ends_with(".part") {
                    let _ = std::fs::remove_file(part.path());
                }
            }
        } else if old(&entry) && name.ends_with(".part") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Deletes a segment file and its gzip pieces; what is already gone is
/// fine.
pub(crate) fn remove(folder: &Path, series: Resolution, day: i64, version: i64) {
    let name = file_name(series, day, version);
    let _ = std::fs::remove_file(folder.join(&name));
    let _ = std::fs::remove_dir_all(folder.join(pieces_dir(&name)));
}

/// The folder of a segment's gzip pieces (`airq_core::gzip`), beside it.
fn pieces_dir(segment: &str) -> String {
    format!("{segment}.gz")
}

/// Where the piece `key` is kept.
fn piece_path(folder: &Path, key: &PieceKey) -> PathBuf {
    folder
        .join(pieces_dir(&file_name(key.series, key.day, key.version)))
        .join(key.name())
}

/// The gzip piece `key` names, if kept (at most a few MB: a section of
/// at most `airq_core::gzip::PIECE_MAX` bytes, compressed).
pub(crate) fn read_piece(folder: &Path, key: &PieceKey) -> Result<Option<Bytes>, DbError> {
    let path = piece_path(folder, key);
    // A piece is a section of at most `PIECE_MAX` bytes compressed: a
    // file far larger is not one (and is not read into memory).
    let too_large =
        std::fs::metadata(&path).is_ok_and(|m| m.len() > 2 * airq_core::gzip::PIECE_MAX as u64);
    if too_large {
        return Ok(None);
    }
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(Bytes::from(bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("reading", &path, e)),
    }
}

/// Keeps the gzip piece `key` names, unless its segment is gone (a
/// rebuild or a prune deleted it meanwhile: the piece would outlive it).
/// Written whole under a temporary name and renamed, as segments are.
pub(crate) fn write_piece(folder: &Path, key: &PieceKey, piece: &[u8]) -> Result<(), DbError> {
    if !folder
        .join(file_name(key.series, key.day, key.version))
        .exists()
    {
        return Ok(());
    }
    let path = piece_path(folder, key);
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))?;
    let part = dir.join(format!("{}.{}.part", key.name(), uuid::Uuid::new_v4()));
    let write = || -> std::io::Result<()> {
        std::fs::write(&part, piece)?;
        std::fs::rename(&part, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&part);
        io_error("writing", &path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// Sets `path`'s modification time `age` in the past (a file or a
    /// folder).
    fn age(path: &Path, age: Duration) {
        File::open(path)
            .and_then(|f| f.set_modified(SystemTime::now() - age))
            .expect("setting a modification time");
    }

    #[test]
    fn a_sweep_deletes_dead_writers_parts_and_the_pieces_of_segments_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path();
        let old = PART_AGE + Duration::from_secs(60);
        let write = |name: &str| {
            let path = folder.join(name);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, b"x").expect("write");
            path
        };
        write("day.1.1.seg");
        write("day.1.1.seg.gz/a.gzp");
        age(&write("day.1.1.seg.gz/b.gzp.1234.part"), old);
        write("day.1.1.seg.gz/c.gzp.5678.part");
        age(&write("day.1.1.seg.77.part"), old);
        // Pieces of segments gone: an hour old, and just written (its
        // writer may still be there).
        write("day.2.5.seg.gz/a.gzp");
        age(&folder.join("day.2.5.seg.gz"), old);
        write("day.3.1.seg.gz/a.gzp");
        sweep_parts(folder);
        let mut left: Vec<String> = walk(folder);
        left.sort();
        assert_eq!(
            left,
            [
                "day.1.1.seg",
                "day.1.1.seg.gz/a.gzp",
                "day.1.1.seg.gz/c.gzp.5678.part",
                "day.3.1.seg.gz/a.gzp",
            ]
        );
    }

    /// Every file under `folder`, by its path from there.
    fn walk(folder: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(folder).expect("read_dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                out.extend(
                    walk(&entry.path())
                        .into_iter()
                        .map(|n| format!("{name}/{n}")),
                );
            } else {
                out.push(name);
            }
        }
        out
    }
}

//! The reading store on SQLite.
//!
//! Two tables: `readings`, every reading by `(ts, sensor_id)`, and
//! `latest`, each sensor's most recent reading, kept up to date by
//! [`ReadingStore::put_batch`] so that `latest` never reads the history.
//! Both carry every index (computed at ingestion) and the reading's
//! grid cell ([`airq_core::place::cell`]); an index by day and cell lets
//! a small place read only its cells. The cells only narrow what SQLite
//! reads: every row it hands out is checked with [`Place::contains_text`],
//! the reference, so answers are exactly the reference's.

use crate::db::{Db, DbError};
use crate::segments;
use airq_core::aggregate::{AggregateChunker, Aggregator, GroupBy, Row as AggregateRow};
use airq_core::aqi::{Index, Indices};
use airq_core::error::BackendError;
use airq_core::export::{AnswerChunk, AnswerStream, Chunker, Rendering, RowRef};
use airq_core::gzip::PieceKey;
use airq_core::place::{cell_of_text, Place};
use airq_core::quality::Flags;
use airq_core::query::{LatestQuery, Query};
use airq_core::reading::{Reading, Timestamp};
use airq_core::resolution::Resolution;
use airq_core::store::{LatestChanges, ReadingStore, ReadingStream, StoreSummary, Written};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Row, Statement, Transaction, TransactionBehavior};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use tokio::sync::mpsc::Sender;
use tokio_stream::wrappers::ReceiverStream;

/// The stored column of each index's values: the one place this backend
/// names an index. (`aqi` holds the DAQI, named before the other indices
/// existed; renaming it would take a migration.) Every statement below
/// is built from it.
pub(crate) fn index_column(index: Index) -> &'static str {
    match index {
        Index::Daqi => "aqi",
        Index::UsEpa => "aqi_us_epa",
        Index::Eaqi => "aqi_eaqi",
    }
}

/// A reading's columns before its indices, in the order statements bind
/// and decoders read them; the same in `readings` and `latest`.
pub(crate) const LEADING_COLUMNS: [&str; 11] = [
    "id",
    "ts",
    "sensor_id",
    "sensor_type",
    "loc_id",
    "loc_country",
    "loc_lat",
    "loc_long",
    "loc_alt",
    "p1",
    "p2",
];
/// Positions of the coordinates in [`LEADING_COLUMNS`], for the place check.
const LAT: usize = 6;
const LONG: usize = 7;
/// Where the indices start in a row: one column per [`Index::ALL`] entry,
/// in its order.
const FIRST_INDEX: usize = LEADING_COLUMNS.len();
/// The column after the indices in a query's row.
const SAMPLES: usize = FIRST_INDEX + Index::COUNT;
/// A reading's quality columns (migration 11), after `samples` in a
/// query's row, each with the value of a reading without flags or air:
/// the quality flags' bits ([`Flags::bits`]), the station's humidity and
/// temperature as sent.
pub(crate) const QUALITY_COLUMNS: [(&str, &str); 3] = [
    ("flags", "0"),
    ("humidity", "NULL"),
    ("temperature", "NULL"),
];
/// Where they start in a query's row.
const FLAGS: usize = SAMPLES + 1;
/// The column after them in a query's row: the live tier's basis.
const AFTER_QUALITY: usize = FLAGS + QUALITY_COLUMNS.len();

/// The statements that read and write readings, built once from the
/// columns above.
struct Statements {
    /// The columns a query reads, in the order [`row_ref`] expects:
    /// [`LEADING_COLUMNS`], the indices, `samples`.
    columns: Vec<&'static str>,
    /// Adds a reading to `readings` unless its identity `(ts, sensor_id)`
    /// is stored; binds [`write_row`]'s parameters.
    insert_new: String,
    /// Rewrites a stored reading whose columns differ from the ones sent;
    /// changes no row when they are the same (already stored).
    replace_changed: String,
    /// Makes a reading its sensor's latest unless a newer one is stored.
    /// On a tie the later write wins, as it does in `readings`. Writes (and
    /// stamps with the data version) only a row that changes.
    upsert_latest: String,
    /// [`Statements::upsert_latest`] for the usual case, a sensor that has
    /// not moved: its country and cell stay, so they are conditions rather
    /// than assignments, and SQLite leaves `latest`'s indices (on those
    /// two) untouched. Updating them for every reading made ingestion
    /// about 40% slower. Changes no row when the sensor is new, has moved,
    /// or has a newer reading: then `upsert_latest` decides.
    update_latest_in_place: String,
}

/// Every column a reading is written with, in [`write_row`]'s parameter
/// order (`?1` is the first): [`LEADING_COLUMNS`], the indices, `cell`,
/// `samples`, [`QUALITY_COLUMNS`].
fn write_columns() -> Vec<&'static str> {
    let mut columns = LEADING_COLUMNS.to_vec();
    columns.extend(Index::ALL.map(index_column));
    columns.extend(["cell", "samples"]);
    columns.extend(QUALITY_COLUMNS.map(|(c, _)| c));
    columns
}

/// `?N` of a column in [`write_columns`].
fn param(columns: &[&str], name: &str) -> String {
    let at = columns.iter().position(|c| *c == name).unwrap_or(0);
    format!("?{}", at + 1)
}

/// The parameter of the data version a write of `latest` stamps a changed
/// row with (see [`crate::changes`]): the one after [`write_columns`]'.
const VERSION_PARAM: usize = SAMPLES + 3 + QUALITY_COLUMNS.len();

/// Whether a latest row, as `old` names its columns, differs from what is
/// written, as `new` names them: any written column, or a live reading's
/// series and basis that a daily one resets. Only a row that changed takes
/// the write's data version, so a repeated feed moves nothing.
fn latest_changed(
    write: &[&str],
    old: &dyn Fn(&str) -> String,
    new: &dyn Fn(&str) -> String,
) -> String {
    let mut tests: Vec<String> = write
        .iter()
        .filter(|c| **c != "sensor_id")
        .map(|c| format!("{} IS NOT {}", old(c), new(c)))
        .collect();
    tests.push(format!(
        "{} IS NOT '{}'",
        old(crate::live::LATEST_SERIES),
        Resolution::Day.name()
    ));
    tests.extend(
        crate::live::BASIS_COLUMNS
            .iter()
            .map(|c| format!("{} IS NOT NULL", old(c))),
    );
    format!("({})", tests.join(" OR "))
}

static SQL: LazyLock<Statements> = LazyLock::new(|| {
    let write = write_columns();
    let version = VERSION_PARAM;
    // A daily reading that becomes the latest replaces a live one's
    // series and basis.
    let daily = std::iter::once(format!(
        "{} = '{}'",
        crate::live::LATEST_SERIES,
        Resolution::Day.name()
    ))
    .chain(
        crate::live::BASIS_COLUMNS
            .iter()
            .map(|c| format!("{c} = NULL")),
    )
    .collect::<Vec<_>>()
    .join(", ");
    let names = write.join(", ");
    let params = (1..=write.len())
        .map(|n| format!("?{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let key = |c: &&str| matches!(*c, "ts" | "sensor_id");
    let p = |c: &str| param(&write, c);
    let assign = |c: &&str, from: &dyn Fn(&str) -> String| format!("{c} = {}", from(c));
    let values: Vec<&str> = write.iter().copied().filter(|c| !key(c)).collect();
    let differs = values
        .iter()
        .map(|c| format!("{c} IS NOT {}", p(c)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let set = |from: &dyn Fn(&str) -> String, skip: &[&str]| {
        write
            .iter()
            .filter(|c| *c != &"sensor_id" && !skip.contains(c))
            .map(|c| assign(c, from))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Statements {
        // A query reads what is written but the cell (only the indices use it).
        columns: write.iter().copied().filter(|c| *c != "cell").collect(),
        insert_new: format!("INSERT OR IGNORE INTO readings ({names}) VALUES ({params})"),
        replace_changed: format!(
            "UPDATE readings SET {} WHERE ts = {} AND sensor_id = {} AND ({differs})",
            values
                .iter()
                .map(|c| assign(c, &|c| p(c)))
                .collect::<Vec<_>>()
                .join(", "),
            p("ts"),
            p("sensor_id"),
        ),
        upsert_latest: format!(
            "INSERT INTO latest ({names}, version) VALUES ({params}, ?{version})
             ON CONFLICT (sensor_id) DO UPDATE SET {}, {daily}, version = ?{version}
             WHERE excluded.ts >= latest.ts AND {}",
            set(&|c| format!("excluded.{c}"), &[]),
            latest_changed(&write, &|c| format!("latest.{c}"), &|c| format!(
                "excluded.{c}"
            )),
        ),
        update_latest_in_place: format!(
            "UPDATE latest SET {}, {daily}, version = ?{version}
             WHERE sensor_id = {} AND loc_country = {} AND cell = {} AND ts <= {} AND {}",
            set(&|c| p(c), &["loc_country", "cell"]),
            p("sensor_id"),
            p("loc_country"),
            p("cell"),
            p("ts"),
            latest_changed(&write, &|c| c.to_owned(), &|c| p(c)),
        ),
    }
});

/// The time key of `readings_by_cell`, in SQL: the day (UTC) of a reading,
/// `ts / DAY_SECS`. The index is ordered by day, then cell, so that a batch
/// of readings (which share a day or two) adds to one small section of it;
/// ordered by cell first, every batch wrote a page at the end of every
/// cell's range, which made ingestion three times slower. A query names
/// the expression exactly as the index does, or SQLite cannot use it.
pub(crate) const DAY_OF_TS: &str = "ts / 86400";
/// The length of a [`DAY_OF_TS`] day, seconds. SQLite's integer division
/// truncates as Rust's does, so the days of a time range are
/// `start / DAY_SECS ..= end / DAY_SECS`, before 1970 too.
pub(crate) const DAY_SECS: i64 = 86_400;
/// Most (day, cell) ranges a query reads through `readings_by_cell`: 64
/// cells for 64 days, a few milliseconds of index seeks. Past that the
/// query reads by time (or country) and checks the place on each row.
const MAX_CELL_SEEKS: u64 = 4096;
/// A place of at most this many grid cells is read through
/// `readings_by_cell` (within [`MAX_CELL_SEEKS`]) even where the days have
/// answer segments: its few cells hold far fewer rows than the country
/// (or the network) whose records a segment would test one by one, the
/// more so for the hourly series. Measured (BENCHMARKS.md, "Places from
/// segments, and long answers direct"): a 2 km circle (1 cell) took 1.5
/// ms from segments and 0.9 ms from its cells, a 10 km one (4 cells)
/// about the same either way, a 50 km one (28 cells) 0.26× the rows'
/// time from segments.
const FEW_CELLS: usize = 16;

/// Readings streamed ahead of the consumer; bounds memory on huge results.
const STREAM_BUFFER: usize = 512;
/// Readings handed over per channel message: one wake-up of the consumer
/// per batch rather than per row.
const BATCH: usize = 64;

type Batch = Vec<Result<Reading, BackendError>>;

/// Rows a prune deletes per transaction: a few milliseconds of writing,
/// so that ingestion and queries behind it wait no longer.
pub const PRUNE_BATCH: usize = 500;

#[derive(Clone)]
pub struct SqliteReadingStore {
    db: Db,
    /// Whether answers are read from, and refreshes build, the answer
    /// segments (see [`crate::segments`]).
    segments: bool,
}

impl SqliteReadingStore {
    pub fn new(db: Db) -> Self {
        SqliteReadingStore { db, segments: true }
    }

    /// With `false`, answers are read from the rows only and
    /// [`ReadingStore::refresh_segments`] builds nothing: the same bytes,
    /// more slowly (for comparisons, or a disk without room for them).
    pub fn with_segments(mut self, segments: bool) -> Self {
        self.segments = segments;
        self
    }

    /// Writes a batch in one transaction. Public for callers already on a
    /// blocking thread (bulk loaders).
    pub fn put_batch_blocking(&self, readings: &[Reading]) -> Result<Written, BackendError> {
        Ok(self.put_batch_inner(readings, &Default::default())?)
    }

    /// For benchmarks: how many rows SQLite hands out for `query` (what
    /// the indices narrowed the read to) and how many of them the answer
    /// keeps after the exact place check, as `(read, returned)`. Runs the
    /// query without rendering it; blocks, so call it from a blocking
    /// thread.
    pub fn rows_read(&self, query: &Query) -> Result<(u64, u64), BackendError> {
        let Some(select) = Select::readings(query) else {
            return Ok((0, 0));
        };
        let counts = run(&self.db, &select, |_| Ok(true))?;
        Ok((counts.read, counts.returned))
    }

    /// Stores `readings`; those keyed `(timestamp, sensor id)` in
    /// `not_latest` skip `latest` ([`ReadingStore::put_batch_hinted`]).
    fn put_batch_inner(
        &self,
        readings: &[Reading],
        not_latest: &std::collections::HashSet<(i64, u64)>,
    ) -> Result<Written, DbError> {
        // Computed before the write lock is taken: parsing coordinates and
        // sorting need no database.
        let (readings, cells) = unique_with_cells(readings);
        let readings = &readings[..];
        let mut newest = newest_per_sensor(readings);
        newest.retain(|&i| !not_latest.contains(&(readings[i].timestamp.0, readings[i].sensor_id)));
        let mut written = Written::default();
        let mut conn = self.db.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            // A new reading is one INSERT (the usual case); a stored one
            // costs a second statement, which writes only when a value
            // differs, so that a repeated ingest writes nothing and says so.
            let mut insert = tx.prepare_cached(&SQL.insert_new)?;
            let mut replace = tx.prepare_cached(&SQL.replace_changed)?;
            // The days this write changes, whose answer segments it makes
            // stale (see `segments`).
            let mut days = std::collections::BTreeSet::new();
            for (r, &cell) in readings.iter().zip(&cells) {
                if write_row(&mut insert, r, cell)? == 1 {
                    written.new += 1;
                } else if write_row(&mut replace, r, cell)? == 1 {
                    written.replaced += 1;
                } else {
                    written.unchanged += 1;
                    continue;
                }
                if r.timestamp.0 >= 0 {
                    days.insert(r.timestamp.0 / DAY_SECS);
                }
            }
            segments::bump(&tx, Resolution::Day, days)?;
            let version = crate::changes::next_version(&tx)?;
            let mut changed = false;
            let mut in_place = tx.prepare_cached(&SQL.update_latest_in_place)?;
            let mut upsert = tx.prepare_cached(&SQL.upsert_latest)?;
            for i in newest {
                // Each writes only a row it changes: the usual case, in
                // place; a new or moved sensor, or no change, the upsert.
                changed |= write_latest(&mut in_place, &readings[i], cells[i], version)?
                    || write_latest(&mut upsert, &readings[i], cells[i], version)?;
            }
            crate::changes::commit_version(&tx, version, changed)?;
        }
        tx.commit()?;
        Ok(written)
    }
}

/// Binds a reading's [`LEADING_COLUMNS`] (`?1 … ?11`).
pub(crate) fn bind_leading(stmt: &mut Statement<'_>, r: &Reading) -> Result<(), DbError> {
    stmt.raw_bind_parameter(1, r.id.map(|v| v as i64))?;
    stmt.raw_bind_parameter(2, r.timestamp.0)?;
    stmt.raw_bind_parameter(3, r.sensor_id as i64)?;
    stmt.raw_bind_parameter(4, &r.sensor_type)?;
    stmt.raw_bind_parameter(5, r.loc_id.map(|v| v as i64))?;
    stmt.raw_bind_parameter(6, &r.loc_country)?;
    stmt.raw_bind_parameter(7, &r.loc_lat)?;
    stmt.raw_bind_parameter(8, &r.loc_long)?;
    stmt.raw_bind_parameter(9, &r.loc_alt)?;
    stmt.raw_bind_parameter(10, &r.p1)?;
    stmt.raw_bind_parameter(11, &r.p2)?;
    Ok(())
}

/// Runs one of [`Statements`]' writes (they bind the same parameters,
/// [`write_columns`]) for `r`; returns the rows changed.
fn write_row(stmt: &mut Statement<'_>, r: &Reading, cell: u32) -> Result<usize, DbError> {
    bind_leading(stmt, r)?;
    for (k, (_, value)) in r.indices.iter().enumerate() {
        stmt.raw_bind_parameter(FIRST_INDEX + 1 + k, value)?;
    }
    stmt.raw_bind_parameter(SAMPLES + 1, cell)?;
    stmt.raw_bind_parameter(SAMPLES + 2, r.samples)?;
    bind_quality(stmt, SAMPLES + 3, r)?;
    Ok(stmt.raw_execute()?)
}

/// Binds a reading's [`QUALITY_COLUMNS`] from `?at`, in their order.
pub(crate) fn bind_quality(
    stmt: &mut Statement<'_>,
    at: usize,
    r: &Reading,
) -> Result<(), DbError> {
    stmt.raw_bind_parameter(at, r.flags.bits())?;
    stmt.raw_bind_parameter(at + 1, &r.air.humidity)?;
    stmt.raw_bind_parameter(at + 2, &r.air.temperature)?;
    Ok(())
}

/// Runs one of the writes of `latest` ([`Statements::upsert_latest`],
/// [`Statements::update_latest_in_place`]) for `r` with the data version
/// `version`: whether it wrote the row (which it does only when the row
/// changes, stamping it with `version`).
fn write_latest(
    stmt: &mut Statement<'_>,
    r: &Reading,
    cell: u32,
    version: i64,
) -> Result<bool, DbError> {
    stmt.raw_bind_parameter(VERSION_PARAM, version)?;
    Ok(write_row(stmt, r, cell)? == 1)
}

/// A batch as it is written: one reading per identity, the last one sent
/// (what a replace would leave), so that each is counted against what was
/// stored before the batch (copied only when the batch repeats one, which
/// is rare), and each one's grid cell.
pub(crate) fn unique_with_cells(readings: &[Reading]) -> (Cow<'_, [Reading]>, Vec<u32>) {
    let readings = match last_of_each(readings) {
        Some(last) => Cow::Owned(last),
        None => Cow::Borrowed(readings),
    };
    let cells = readings
        .iter()
        .map(|r| cell_of_text(&r.loc_lat, &r.loc_long))
        .collect();
    (readings, cells)
}

/// The batch with only the last one sent of each identity, in the order
/// sent; `None` when no identity repeats.
fn last_of_each(readings: &[Reading]) -> Option<Vec<Reading>> {
    let mut seen = std::collections::HashSet::with_capacity(readings.len());
    let mut last: Vec<bool> = readings
        .iter()
        .rev()
        .map(|r| seen.insert((r.timestamp, r.sensor_id)))
        .collect();
    if last.iter().all(|l| *l) {
        return None;
    }
    last.reverse();
    Some(
        readings
            .iter()
            .zip(last)
            .filter(|(_, l)| *l)
            .map(|(r, _)| r.clone())
            .collect(),
    )
}

/// Positions in `readings` of each sensor's newest reading (the later one
/// of equal timestamps, as in `readings`), in sensor id order: only those
/// can become the latest, and writing `latest` in key order keeps its
/// pages warm.
fn newest_per_sensor(readings: &[Reading]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..readings.len()).collect();
    order.sort_unstable_by_key(|&i| (readings[i].sensor_id, readings[i].timestamp, i));
    let mut newest = Vec::with_capacity(order.len());
    for (k, &i) in order.iter().enumerate() {
        let next_same = order
            .get(k + 1)
            .is_some_and(|&j| readings[j].sensor_id == readings[i].sensor_id);
        if !next_same {
            newest.push(i);
        }
    }
    newest
}

/// A SELECT of rows in [`COLUMN_NAMES`] order: its text, its parameters,
/// and the place every row it hands out is checked against.
struct Select {
    sql: String,
    params: Vec<Value>,
    place: Option<Place>,
    /// Whether `sql` has its WHERE yet.
    conditions: bool,
}

impl Select {
    /// The history's rows `query` asks for, in `(ts, sensor_id)` order;
    /// `None` when its index bounds exclude every value.
    ///
    /// Which index SQLite walks is named, not left to the planner, which
    /// (without statistics) may prefer the primary key's time range: the
    /// place's cells when it has few enough (a range of `readings_by_cell`
    /// per day and cell, merged by a sort), else the country's range of
    /// `readings_by_country`, else the primary key's. Other filters are
    /// checked on the rows those ranges hold. One statement per shape,
    /// rather than `(? IS NULL OR …)`, which would keep the planner from
    /// using the indices at all.
    fn readings(query: &Query) -> Option<Select> {
        Self::rows(query, false)
    }

    /// [`Select::readings`], or with `aggregate` the rows an aggregation
    /// of `query` reads: the same, with the columns it does not read (ids,
    /// altitude, the other indices, the basis) replaced in their places by
    /// constants, which SQLite hands out without decoding them from the
    /// row; `run` and `row_ref` read the row as ever.
    fn rows(query: &Query, aggregate: bool) -> Option<Select> {
        let bounds = match query.index_filter() {
            None => None,
            Some(None) => return None,
            Some(bounds) => bounds,
        };
        let table = crate::live::table(query.resolution);
        let (first_day, last_day) = (query.start.0 / DAY_SECS, query.end.0 / DAY_SECS);
        let days = u64::try_from(last_day.saturating_sub(first_day)).map_or(0, |d| d + 1);
        let cells = query
            .place
            .and_then(|p| p.cells())
            .filter(|c| days > 0 && days.saturating_mul(c.len() as u64) <= MAX_CELL_SEEKS);
        let from = match (&cells, &query.country) {
            (Some(_), _) => format!("{table} INDEXED BY {table}_by_cell"),
            (None, Some(_)) => format!("{table} INDEXED BY {table}_by_country"),
            (None, None) => table.to_owned(),
        };
        let mut s = if aggregate {
            let wanted = index_column(query.index);
            let columns: Vec<&str> = SQL
                .columns
                .iter()
                .map(|c| match *c {
                    "id" | "loc_id" => "NULL",
                    "loc_alt" => "''",
                    c if c == wanted => c,
                    c if Index::ALL.iter().any(|i| index_column(*i) == c) => "0",
                    "flags" if query.quality.is_some() => "flags",
                    c => QUALITY_COLUMNS
                        .iter()
                        .find(|(q, _)| *q == c)
                        .map_or(c, |(_, none)| *none),
                })
                .collect();
            Select::with_columns(&from, &columns)
        } else {
            Select::with_basis(&from, table != "readings")
        };
        if cells.is_some() {
            s.and_in(DAY_OF_TS, (first_day..=last_day).map(Value::from).collect());
        }
        s.and_cells(cells.as_deref());
        s.and("ts BETWEEN ? AND ?", [query.start.0, query.end.0]);
        // Without bounds, no condition: an undefined index (an hour with
        // too little data) is kept, as the reference keeps it.
        if let Some((lo, hi)) = bounds {
            let between = format!("{} BETWEEN ? AND ?", index_column(query.index));
            s.and(&between, [i64::from(lo), i64::from(hi)]);
        }
        s.and_country(query.country.as_deref());
        s.and_types(&query.sensor_types);
        // An aggregation reads every reading: its aggregator leaves out
        // (and counts) what the filter names.
        if let Some(q) = query
            .quality
            .filter(|q| !aggregate && !q.exclude.is_empty())
        {
            s.and("flags & ? = 0", [i64::from(q.exclude.bits())]);
        }
        s.place = query.place;
        s.finish("ts, sensor_id");
        Some(s)
    }

    /// The latest rows `latest` asks for, in sensor id order: through the
    /// place's cells or the country when there are (`latest_by_cell`,
    /// `latest_by_country`), else the whole table, which holds one row
    /// per sensor.
    fn latest(latest: &LatestQuery) -> Select {
        let mut s = Select::latest_rows(latest);
        s.finish("sensor_id");
        s
    }

    /// [`Select::latest`] without its order, for more conditions.
    fn latest_rows(latest: &LatestQuery) -> Select {
        let cells = latest.place.and_then(|p| p.cells());
        let from = match (&cells, &latest.country) {
            (Some(_), _) => "latest INDEXED BY latest_by_cell",
            (None, Some(_)) => "latest INDEXED BY latest_by_country",
            (None, None) => "latest",
        };
        let mut s = Select::new(from);
        // The basis and the series of the live tier's latest readings.
        s.sql = s.sql.replacen(
            " FROM ",
            &format!(
                ", {}, {} FROM ",
                crate::live::BASIS_COLUMNS.join(", "),
                crate::live::LATEST_SERIES
            ),
            1,
        );
        s.and_cells(cells.as_deref());
        s.and_country(latest.country.as_deref());
        s.and_types(&latest.sensor_types);
        s.place = latest.place;
        s
    }

    fn new(from: &str) -> Select {
        Select::with_basis(from, false)
    }

    /// A SELECT of a reading's columns, and with `basis` the live tier's
    /// [`crate::live::BASIS_COLUMNS`] after them.
    fn with_basis(from: &str, basis: bool) -> Select {
        let mut columns = SQL.columns.clone();
        if basis {
            columns.extend(crate::live::BASIS_COLUMNS);
        }
        Self::with_columns(from, &columns)
    }

    fn with_columns(from: &str, columns: &[&str]) -> Select {
        Select {
            sql: format!("SELECT {} FROM {from}", columns.join(", ")),
            params: Vec::new(),
            place: None,
            conditions: false,
        }
    }

    /// Adds a condition with its parameters.
    fn and(&mut self, condition: &str, params: impl IntoIterator<Item = impl Into<Value>>) {
        self.sql
            .push_str(if self.conditions { " AND " } else { " WHERE " });
        self.conditions = true;
        self.sql.push_str(condition);
        self.params.extend(params.into_iter().map(Into::into));
    }

    /// Adds `expr IN (?, …)` for a non-empty list.
    fn and_in(&mut self, expr: &str, values: Vec<Value>) {
        if values.is_empty() {
            return;
        }
        let marks = vec!["?"; values.len()].join(", ");
        self.and(&format!("{expr} IN ({marks})"), values);
    }

    /// The place's cells, when it is read cell by cell.
    fn and_cells(&mut self, cells: Option<&[u32]>) {
        if let Some(cells) = cells {
            self.and_in("cell", cells.iter().map(|&c| Value::from(c)).collect());
        }
    }

    fn and_country(&mut self, country: Option<&str>) {
        if let Some(country) = country {
            self.and("loc_country = ?", [country.to_owned()]);
        }
    }

    fn and_types(&mut self, types: &[String]) {
        // NOCASE folds ASCII letters only, as the reference's
        // `eq_ignore_ascii_case` does; the query's types are upper-cased,
        // stored ones are as sent.
        self.and_in(
            "sensor_type COLLATE NOCASE",
            types.iter().map(|t| Value::from(t.clone())).collect(),
        );
    }

    fn finish(&mut self, order: &str) {
        self.sql.push_str(" ORDER BY ");
        self.sql.push_str(order);
    }
}

/// Rows SQLite handed out, and those of them in the place.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    read: u64,
    returned: u64,
}

/// Runs `select`, calling `each` on every row in the place, in order, until
/// it returns false.
fn run(
    db: &Db,
    select: &Select,
    each: impl FnMut(&Row<'_>) -> Result<bool, DbError>,
) -> Result<Counts, DbError> {
    run_on(&*db.conn()?, select, each)
}

/// [`run`] on a connection (in its transaction, if it has one open).
fn run_on(
    conn: &rusqlite::Connection,
    select: &Select,
    mut each: impl FnMut(&Row<'_>) -> Result<bool, DbError>,
) -> Result<Counts, DbError> {
    let mut stmt = conn.prepare_cached(&select.sql)?;
    let mut rows = stmt.query(params_from_iter(&select.params))?;
    let mut counts = Counts::default();
    while let Some(row) = rows.next()? {
        counts.read += 1;
        if let Some(place) = &select.place {
            if !place.contains_text(text(row, LAT)?, text(row, LONG)?) {
                continue;
            }
        }
        counts.returned += 1;
        if !each(row)? {
            break;
        }
    }
    Ok(counts)
}

/// A row's fields, borrowed from SQLite's row: the one decoder of
/// [`COLUMN_NAMES`], for readings and answers alike.
fn row_ref<'r>(row: &'r Row<'_>) -> Result<RowRef<'r>, DbError> {
    Ok(RowRef {
        id: row.get::<_, Option<i64>>(0)?.map(|v| v as u64),
        timestamp: Timestamp(row.get(1)?),
        sensor_id: row.get::<_, i64>(2)? as u64,
        sensor_type: text(row, 3)?,
        loc_id: row.get::<_, Option<i64>>(4)?.map(|v| v as u64),
        loc_country: text(row, 5)?,
        loc_lat: text(row, LAT)?,
        loc_long: text(row, LONG)?,
        loc_alt: text(row, 8)?,
        p1: text_or_null(row, 9)?,
        p2: text_or_null(row, 10)?,
        indices: Indices::try_from_fn(|index| small_int(row, FIRST_INDEX + index.position()))?,
        samples: match row.get_ref(SAMPLES)? {
            rusqlite::types::ValueRef::Null => None,
            _ => Some(small_int(row, SAMPLES)?),
        },
        basis: match row.as_ref().column_count() {
            // A latest row: a basis for the live tier's readings only.
            n if n > AFTER_QUALITY + crate::live::BASIS_COLUMNS.len() => {
                let at = AFTER_QUALITY + crate::live::BASIS_COLUMNS.len();
                let series = row.get_ref(at)?.as_str().map_err(|e| {
                    BackendError::Corrupt(format!("the series of a latest reading: {e}"))
                })?;
                if series == Resolution::Day.name() {
                    None
                } else {
                    Some(crate::live::basis(row, AFTER_QUALITY)?)
                }
            }
            n if n > AFTER_QUALITY => Some(crate::live::basis(row, AFTER_QUALITY)?),
            _ => None,
        },
        flags: {
            let bits: u16 = small_int(row, FLAGS)?;
            Flags::from_bits(bits).ok_or_else(|| {
                BackendError::Corrupt(format!(
                    "the flags of a reading: bits {bits:#x} name a flag this build does not know"
                ))
            })?
        },
        humidity: text_or_null(row, FLAGS + 1)?,
        temperature: text_or_null(row, FLAGS + 2)?,
    })
}

/// An index value: a stored integer within the field's type.
fn small_int<T: TryFrom<i64>>(row: &Row<'_>, i: usize) -> Result<T, DbError> {
    let corrupt = |what: String| {
        DbError(BackendError::Corrupt(format!(
            "column {} of a reading: {what}",
            SQL.columns[i]
        )))
    };
    let v = row
        .get_ref(i)?
        .as_i64()
        .map_err(|e| corrupt(e.to_string()))?;
    T::try_from(v).map_err(|_| corrupt(format!("{v} is out of range")))
}

/// A nullable text column, borrowed from the row.
fn text_or_null<'r>(row: &'r Row<'_>, i: usize) -> Result<Option<&'r str>, DbError> {
    Ok(row.get_ref(i)?.as_str_or_null().map_err(|e| {
        BackendError::Corrupt(format!("column {} of a reading: {e}", SQL.columns[i]))
    })?)
}

fn text<'r>(row: &'r Row<'_>, i: usize) -> Result<&'r str, DbError> {
    Ok(text_or_null(row, i)?.ok_or_else(|| {
        BackendError::Corrupt(format!("column {} of a reading is NULL", SQL.columns[i]))
    })?)
}

/// Streams the rows of `select` (none when `None`) into `tx` as readings,
/// in batches, until done or until the receiver hangs up (a client that
/// went away stops the scan).
fn scan_readings(db: &Db, select: Option<&Select>, tx: &Sender<Batch>) {
    if let Some(select) = select {
        scan_rows(db, select, BATCH, tx, |row| {
            Ok(Reading::from(row_ref(row)?))
        });
    }
}

/// Streams the rows of `select` into `tx` as the readings `reading` makes
/// of them, `batch` at a time, until done or until the receiver hangs up.
/// An error ends the stream after the rows read before it.
fn scan_rows(
    db: &Db,
    select: &Select,
    batch: usize,
    tx: &Sender<Batch>,
    mut reading: impl FnMut(&Row<'_>) -> Result<Reading, DbError>,
) {
    let mut rows: Batch = Vec::with_capacity(batch);
    let scanned = run(db, select, |row| {
        rows.push(Ok(reading(row)?));
        if rows.len() < batch {
            return Ok(true);
        }
        let full = std::mem::replace(&mut rows, Vec::with_capacity(batch));
        Ok(tx.blocking_send(full).is_ok())
    });
    if let Err(e) = scanned {
        rows.push(Err(e.into()));
    }
    if !rows.is_empty() {
        let _ = tx.blocking_send(rows);
    }
}

/// Readings a batch of [`ReadingStore::history`] holds: few batches for
/// the 180,000 readings of an hour of 15,000 sensors.
const HISTORY_BATCH: usize = 4096;

/// [`ReadingStore::history`] of the embedded store: a reading's sensor,
/// time, values and position, the other fields empty.
fn scan_history(db: &Db, series: Resolution, start: Timestamp, end: Timestamp, tx: &Sender<Batch>) {
    let select = Select {
        sql: format!(
            "SELECT sensor_id, ts, p1, p2, loc_lat, loc_long FROM {} WHERE ts BETWEEN ?1 AND ?2",
            crate::live::table(series)
        ),
        params: vec![Value::from(start.0), Value::from(end.0)],
        place: None,
        conditions: true,
    };
    scan_rows(db, &select, HISTORY_BATCH, tx, |row| {
        Ok(Reading {
            id: None,
            timestamp: Timestamp(row.get(1)?),
            sensor_id: row.get::<_, i64>(0)? as u64,
            sensor_type: String::new(),
            loc_id: None,
            loc_country: String::new(),
            loc_lat: row.get(4)?,
            loc_long: row.get(5)?,
            loc_alt: String::new(),
            p1: row.get(2)?,
            p2: row.get(3)?,
            indices: Indices::lowest(),
            samples: None,
            basis: None,
            flags: Flags::NONE,
            air: Default::default(),
        })
    });
}

/// Renders the answer of `select` (an empty one when `None`) straight from
/// the rows SQLite hands out, borrowing their text: no [`Reading`] is
/// built, nothing is allocated per row. Chunks go into `tx` until done or
/// the receiver hangs up.
fn scan_answer(
    db: &Db,
    select: Option<&Select>,
    rendering: Rendering,
    tx: &Sender<Result<AnswerChunk, BackendError>>,
) {
    let rendered = Chunker::new(rendering).and_then(|mut chunker| {
        let mut open = true;
        if let Some(select) = select {
            run(db, select, |row| {
                if let Some(chunk) = chunker.push(&row_ref(row)?)? {
                    open = tx.blocking_send(Ok(chunk)).is_ok();
                }
                Ok(open)
            })?;
        }
        Ok(open.then_some(chunker))
    });
    let last = match rendered {
        Ok(Some(chunker)) => chunker.finish(),
        Ok(None) => return,
        Err(e) => Err(e),
    };
    let _ = tx.blocking_send(last);
}

/// Aggregates the rows of `select` (none when `None`) as SQLite hands them
/// out, borrowing their text like [`scan_answer`]; chunks go into `tx`.
/// The later half's rows, from `later` (a second thread's, see
/// `stream_aggregate`), and the flag that tells it to stop.
type LaterHalf = (
    std::sync::mpsc::Receiver<Result<Vec<AggregateRow>, DbError>>,
    Arc<AtomicBool>,
);

fn scan_aggregate(
    db: &Db,
    query: &Query,
    segments_on: bool,
    chunker: AggregateChunker,
    later: Option<LaterHalf>,
    tx: &Sender<Result<AnswerChunk, BackendError>>,
) {
    let stop = |later: &Option<LaterHalf>| {
        if let Some((_, stop)) = later {
            stop.store(true, Ordering::Relaxed);
        }
    };
    let need = segments::Need::Values {
        sites: chunker.reads() == GroupBy::Sensor,
        ordered: chunker.orders_within_a_day(),
    };
    let mut out = Aggregated {
        chunker,
        out: Outlet::new(tx),
    };
    if let Err(e) = walk(db, query, segments_on, need, &mut out) {
        stop(&later);
        let _ = tx.blocking_send(Err(e.into()));
        return;
    }
    if !out.out.open {
        stop(&later);
        return;
    }
    let rows = match later {
        None => Ok(Vec::new()),
        Some((rows, _)) => rows.recv().unwrap_or_else(|_| {
            Err(DbError(BackendError::Corrupt(
                "the second half of an aggregation ended without its rows".into(),
            )))
        }),
    };
    let _ = match rows {
        Ok(rows) => tx.blocking_send(Ok(out.chunker.finish_with(&rows))),
        Err(e) => tx.blocking_send(Err(e.into())),
    };
}

/// The rows of `query` aggregated (no rendering), unless `stop` is set.
fn aggregate_half(
    db: &Db,
    query: &Query,
    segments_on: bool,
    aggregator: Aggregator,
    stop: &AtomicBool,
) -> Result<Vec<AggregateRow>, DbError> {
    let need = segments::Need::Values {
        sites: aggregator.reads() == GroupBy::Sensor,
        ordered: aggregator.orders_within_a_day(),
    };
    let mut out = Collected {
        aggregator,
        rows: Vec::new(),
        stop,
    };
    walk(db, query, segments_on, need, &mut out)?;
    let mut rows = out.rows;
    rows.extend(out.aggregator.finish());
    Ok(rows)
}

/// `query` cut in two at the period boundary nearest the middle of its
/// range, or `None` when it spans one period.
fn halves(query: &Query) -> Option<(Query, Query)> {
    let period = query.aggregate?.period;
    let middle = query.start.0 + (query.end.0 - query.start.0) / 2;
    let mut at = period.start_of(query.start);
    let mut best: Option<i64> = None;
    // Periods are at least an hour; a query spans at most a few years.
    for _ in 0..100_000 {
        at = period.next(at);
        if at.0 > query.end.0 {
            break;
        }
        if best.is_none_or(|b| (at.0 - middle).abs() < (b - middle).abs()) {
            best = Some(at.0);
        }
    }
    let cut = best?;
    let mut early = query.clone();
    early.end = Timestamp(cut - 1);
    let mut late = query.clone();
    late.start = Timestamp(cut);
    Some((early, late))
}

/// Whether `query`'s rows may be read from answer segments: a series
/// that has them, from 1970 on, without a quality filter or a correction
/// (segments keep neither the flags nor the air), and without a place the
/// row path reads through its cells ([`by_few_cells`]). A place is
/// checked on each row's stored position, as the row path checks it.
fn segmented(query: &Query) -> bool {
    segments_hold(query) && !by_few_cells(query)
}

/// Whether answer segments hold what `query` reads: a series that has
/// them, from 1970 on, without a quality filter or a correction.
fn segments_hold(query: &Query) -> bool {
    segments::SERIES.contains(&query.resolution) && airq_core::segment::holds(query)
}

/// Whether `query` has a place of [`FEW_CELLS`] or fewer that the row
/// path reads through its cells' index ranges (within `MAX_CELL_SEEKS`).
fn by_few_cells(query: &Query) -> bool {
    let days = u64::try_from((query.end.0 / DAY_SECS).saturating_sub(query.start.0 / DAY_SECS))
        .map_or(0, |d| d + 1);
    query.place.and_then(|p| p.cells()).is_some_and(|c| {
        c.len() <= FEW_CELLS && days.saturating_mul(c.len() as u64) <= MAX_CELL_SEEKS
    })
}

/// What a scan hands its rows to: rows from SQLite, or rows of answer
/// segments; each returns whether to go on.
trait Consumer {
    fn row(&mut self, row: &RowRef<'_>) -> Result<bool, DbError>;
    fn segment_row(
        &mut self,
        section: &segments::Loaded,
        i: usize,
        record: &segments::Record,
    ) -> Result<bool, DbError>;

    /// Every row of `section`, `series`' `day` built from `version`
    /// ([`airq_core::segment::keeps_whole`]): `None` when the consumer
    /// takes them row by row instead, else whether to go on.
    fn whole_section(
        &mut self,
        section: &segments::Loaded,
        day: (Resolution, i64, i64),
    ) -> Result<Option<bool>, DbError> {
        let _ = (section, day);
        Ok(None)
    }
}

/// Hands `query`'s rows (an aggregation's, with `need` values) in store
/// order to `consumer`: day by day, a day whose segment is fresh from its
/// segment, every run of other days with the row path's statement (with
/// `segments` off, all of them in one). The rows are the same either way.
///
/// Everything is read in one read transaction, so the answer is one
/// snapshot, as the row path's single statement is: a segment file is
/// never changed (a rebuild writes a new one), so the file of the version
/// the snapshot names holds the snapshot's rows, and one deleted since
/// (replaced by a newer version) is read from the snapshot's rows.
fn walk(
    db: &Db,
    query: &Query,
    segments_on: bool,
    need: segments::Need,
    consumer: &mut impl Consumer,
) -> Result<(), DbError> {
    let aggregate = matches!(need, segments::Need::Values { .. });
    let select = |q: &Query| Select::rows(q, aggregate);
    if !segments_on || !segmented(query) {
        if let Some(select) = select(query) {
            run(db, &select, |row| consumer.row(&row_ref(row)?))?;
        }
        return Ok(());
    }
    if query.index_filter() == Some(None) {
        // The index bounds exclude every value: no rows.
        return Ok(());
    }
    let mut conn = db.conn()?;
    let tx = conn.transaction()?;
    let (first, last) = (query.start.0 / DAY_SECS, query.end.0 / DAY_SECS);
    let series = query.resolution;
    let fresh = segments::fresh(&tx, series, first, last)?;
    let folder = segments::folder(db.path());
    let ordered = match need {
        segments::Need::Values { ordered, .. } => ordered,
        segments::Need::Rendered(_) => true,
    };
    let mut day = first;
    while day <= last {
        let sections = match fresh.get(&day) {
            Some(&version) => match segments::open(&folder, series, day, version)? {
                Some(segment) => segment.load(
                    query.country.as_deref(),
                    need,
                    query.place.is_some(),
                    (query.start.0, query.end.0),
                )?,
                None => None,
            },
            None => None,
        };
        if let Some(sections) = sections {
            if let (Some(version), [section]) = (fresh.get(&day), sections.as_slice()) {
                if airq_core::segment::keeps_whole(query, &sections) {
                    if let Some(open) = consumer.whole_section(section, (series, day, *version))? {
                        if !open {
                            return Ok(());
                        }
                        day += 1;
                        continue;
                    }
                }
            }
            let order = airq_core::segment::IdOrder::Signed;
            let open =
                airq_core::segment::each_kept(query, &sections, ordered, order, |s, i, r| {
                    consumer.segment_row(s, i, r)
                })?;
            if !open {
                return Ok(());
            }
            day += 1;
            continue;
        }
        // The run of days without a fresh segment, in one statement.
        let mut to = day;
        while to < last && !fresh.contains_key(&(to + 1)) {
            to += 1;
        }
        let mut part = query.clone();
        part.start = Timestamp(query.start.0.max(day * DAY_SECS));
        part.end = Timestamp(query.end.0.min(to * DAY_SECS + DAY_SECS - 1));
        if let Some(select) = select(&part) {
            let mut open = true;
            run_on(&tx, &select, |row| {
                open = consumer.row(&row_ref(row)?)?;
                Ok(open)
            })?;
            if !open {
                return Ok(());
            }
        }
        day = to + 1;
    }
    Ok(())
}

/// Where a streamed answer's chunks go, and whether its reader is still
/// there.
struct Outlet<'a> {
    tx: &'a Sender<Result<AnswerChunk, BackendError>>,
    open: bool,
}

impl<'a> Outlet<'a> {
    fn new(tx: &'a Sender<Result<AnswerChunk, BackendError>>) -> Self {
        Outlet { tx, open: true }
    }

    /// Sends `chunk`, if any; whether the reader is still there.
    fn send(&mut self, chunk: Option<AnswerChunk>) -> bool {
        if let Some(chunk) = chunk {
            self.open = self.tx.blocking_send(Ok(chunk)).is_ok();
        }
        self.open
    }
}

/// Renders rows into chunks sent to an [`Outlet`].
struct Rendered<'a> {
    chunker: Chunker,
    out: Outlet<'a>,
    /// Whether whole sections of at most so many bytes go in chunks of
    /// their own that name their gzip piece
    /// ([`ReadingStore::query_answer_in_pieces`]).
    pieces: Option<(Rendering, usize)>,
}

impl Consumer for Rendered<'_> {
    fn row(&mut self, row: &RowRef<'_>) -> Result<bool, DbError> {
        let chunk = self.chunker.push(row)?;
        Ok(self.out.send(chunk))
    }

    fn segment_row(
        &mut self,
        section: &segments::Loaded,
        i: usize,
        record: &segments::Record,
    ) -> Result<bool, DbError> {
        let chunk = self.chunker.push_pieces(&section.pieces(i, record)?)?;
        Ok(self.out.send(chunk))
    }

    fn whole_section(
        &mut self,
        section: &segments::Loaded,
        (series, day, version): (Resolution, i64, i64),
    ) -> Result<Option<bool>, DbError> {
        let Some((rendering, max_piece)) = self.pieces else {
            return Ok(None);
        };
        if section.rendered_len() > max_piece {
            return Ok(None);
        }
        let key = PieceKey {
            series,
            day,
            version,
            country: section.country().to_owned(),
            index: rendering.index,
            format: rendering.format,
            opens: self.chunker.opens(),
        };
        if !self.out.send(self.chunker.begin_run()?) {
            return Ok(Some(false));
        }
        for i in section.range() {
            // Gathered whole: no chunk is cut within a run.
            self.chunker
                .push_pieces(&section.pieces(i, &section.record(i))?)?;
        }
        let run = self.chunker.end_run(key)?;
        Ok(Some(self.out.send(Some(run))))
    }
}

/// Renders the answer of `query` through [`walk`]: the bytes are
/// [`scan_answer`]'s.
/// Each whole section of at most `max_piece` bytes in a chunk of its own
/// that names its gzip piece (0: none).
fn scan_segmented(
    db: &Db,
    query: &Query,
    max_piece: usize,
    tx: &Sender<Result<AnswerChunk, BackendError>>,
) {
    let rendering = query.rendering();
    let chunker = match Chunker::new(rendering) {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.blocking_send(Err(e));
            return;
        }
    };
    let mut out = Rendered {
        chunker,
        out: Outlet::new(tx),
        pieces: (max_piece > 0).then_some((rendering, max_piece)),
    };
    let walked = walk(
        db,
        query,
        true,
        segments::Need::Rendered(rendering.format),
        &mut out,
    );
    let last = match walked {
        Ok(()) if !out.out.open => return,
        Ok(()) => out.chunker.finish(),
        Err(e) => Err(e.into()),
    };
    let _ = tx.blocking_send(last);
}

/// Aggregates rows, streaming the answer's chunks to an [`Outlet`].
struct Aggregated<'a> {
    chunker: AggregateChunker,
    out: Outlet<'a>,
}

impl Consumer for Aggregated<'_> {
    fn row(&mut self, row: &RowRef<'_>) -> Result<bool, DbError> {
        let chunk = self.chunker.push(row);
        Ok(self.out.send(chunk))
    }

    fn segment_row(
        &mut self,
        section: &segments::Loaded,
        i: usize,
        record: &segments::Record,
    ) -> Result<bool, DbError> {
        let chunk = self.chunker.push_parsed(&section.parsed(i, record)?);
        Ok(self.out.send(chunk))
    }
}

/// Aggregates rows into a list of answer rows, until `stop` is set.
struct Collected<'a> {
    aggregator: Aggregator,
    rows: Vec<AggregateRow>,
    stop: &'a AtomicBool,
}

impl Consumer for Collected<'_> {
    fn row(&mut self, row: &RowRef<'_>) -> Result<bool, DbError> {
        self.rows.extend(self.aggregator.push(row));
        Ok(!self.stop.load(Ordering::Relaxed))
    }

    fn segment_row(
        &mut self,
        section: &segments::Loaded,
        i: usize,
        record: &segments::Record,
    ) -> Result<bool, DbError> {
        let parsed = section.parsed(i, record)?;
        self.rows.extend(self.aggregator.push_parsed(&parsed));
        Ok(!self.stop.load(Ordering::Relaxed))
    }
}

/// Builds the answer segment of `series`' `day` from its rows and the
/// day's version, read in one transaction; returns whether the day has a
/// version (rows were written to it).
fn build_day(db: &Db, series: Resolution, day: i64) -> Result<bool, DbError> {
    let mut conn = db.conn()?;
    let tx = conn.transaction()?;
    let Some(version) = segments::day_version(&tx, series, day)? else {
        return Ok(false);
    };
    let mut builder = segments::Builder::new(series, day, version);
    let mut all = Query::between(
        Timestamp(day * DAY_SECS),
        Timestamp(day * DAY_SECS + DAY_SECS - 1),
    );
    all.resolution = series;
    if let Some(select) = Select::readings(&all) {
        run_on(&tx, &select, |row| {
            builder.push(&row_ref(row)?)?;
            Ok(true)
        })?;
    }
    drop(tx);
    let folder = segments::folder(db.path());
    segments::write(builder, &folder, series, day, version)?;
    match segments::record_built(&mut conn, series, day, version)? {
        // The same version in another layout: the new file took its name.
        segments::Recorded::Replaced(Some(old)) if old != version => {
            segments::remove(&folder, series, day, old)
        }
        segments::Recorded::Replaced(_) | segments::Recorded::Already => {}
        segments::Recorded::Outdated => segments::remove(&folder, series, day, version),
    }
    Ok(true)
}

/// Rebuilds every missing or stale answer segment, a day at a time on
/// each of up to [`BUILDERS`] threads; returns how many it built.
fn refresh_segments(db: &Db) -> Result<u64, DbError> {
    segments::sweep_parts(&segments::folder(db.path()));
    let mut stale = Vec::new();
    for series in segments::SERIES {
        let conn = db.conn()?;
        stale.extend(
            segments::stale(&conn, series)?
                .into_iter()
                .map(|d| (series, d)),
        );
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let built = std::sync::atomic::AtomicU64::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, BUILDERS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<(), DbError> {
                    while let Some(&(series, day)) = stale.get(next.fetch_add(1, Ordering::Relaxed))
                    {
                        if build_day(db, series, day)? {
                            built.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join().unwrap_or_else(|_| {
                Err(DbError(BackendError::Corrupt(
                    "a thread building answer segments panicked".into(),
                )))
            })
        })
    })?;
    Ok(built.into_inner())
}

/// Threads that build answer segments at once: a day's build reads its
/// rows and renders them, one core's work; on the 2-core machine two
/// builders took the 30 days of a 1 M-reading feed from 2.2 s to about
/// half (BENCHMARKS.md).
const BUILDERS: usize = 2;

/// Every sensor's latest reading changed after data version `since` (all
/// for `None`), with the version it was changed at and the data version
/// now, read in one transaction (see [`crate::changes`]).
pub(crate) fn latest_changes(db: &Db, since: Option<u64>) -> Result<LatestChanges, DbError> {
    let mut select = Select::latest_rows(&LatestQuery::default());
    select.sql = select.sql.replacen(" FROM ", ", version FROM ", 1);
    if let Some(since) = since {
        select.and("version > ?", [i64::try_from(since).unwrap_or(i64::MAX)]);
    }
    select.finish("sensor_id");
    let mut conn = db.conn()?;
    let tx = conn.transaction()?;
    let version: i64 = tx.query_row("SELECT n FROM data_version", [], |r| r.get(0))?;
    let mut changes = LatestChanges {
        version: u64::try_from(version).unwrap_or(0),
        readings: Vec::new(),
    };
    // Nothing changed (the usual answer to a poll): no scan. `version` is
    // not indexed, which would cost every write of `latest` an index
    // update; a scan of one row per sensor, once per change, costs less.
    if since == Some(changes.version) {
        return Ok(changes);
    }
    {
        let mut stmt = tx.prepare_cached(&select.sql)?;
        let mut rows = stmt.query(params_from_iter(&select.params))?;
        while let Some(row) = rows.next()? {
            let at: i64 = row.get(row.as_ref().column_count() - 1)?;
            changes
                .readings
                .push((u64::try_from(at).unwrap_or(0), Reading::from(row_ref(row)?)));
        }
    }
    Ok(changes)
}

impl SqliteReadingStore {
    fn stream_readings(&self, select: Option<Select>) -> ReadingStream {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER / BATCH);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || scan_readings(&db, select.as_ref(), &tx));
        ReceiverStream::new(rx)
            .flat_map(futures::stream::iter)
            .boxed()
    }

    /// An aggregation in two halves at once, split at the period boundary
    /// nearest the middle of the range (a query of one period is one
    /// half): the later half is aggregated on a second thread while the
    /// first streams, and its rows follow the first's. Each half reads
    /// only its own periods, so no group is split.
    fn stream_aggregate(&self, query: &Query, aggregator: Aggregator) -> AnswerStream {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (db, on) = (self.db.clone(), self.segments);
        let chunker = AggregateChunker::new(aggregator, query.format);
        let Some((early, late)) = halves(query) else {
            let query = query.clone();
            tokio::task::spawn_blocking(move || {
                scan_aggregate(&db, &query, on, chunker, None, &tx)
            });
            return ReceiverStream::new(rx).boxed();
        };
        let later = query.aggregator();
        let stop = Arc::new(AtomicBool::new(false));
        let (rows_tx, rows_rx) = std::sync::mpsc::sync_channel(1);
        {
            let (db, stop) = (db.clone(), stop.clone());
            tokio::task::spawn_blocking(move || {
                let rows =
                    later.map_or(Ok(Vec::new()), |a| aggregate_half(&db, &late, on, a, &stop));
                let _ = rows_tx.send(rows);
            });
        }
        tokio::task::spawn_blocking(move || {
            scan_aggregate(&db, &early, on, chunker, Some((rows_rx, stop)), &tx)
        });
        ReceiverStream::new(rx).boxed()
    }

    /// [`ReadingStore::query_answer`], with whole sections of at most
    /// `max_piece` bytes as pieces ([`ReadingStore::query_answer_in_pieces`];
    /// 0: none).
    fn answer(&self, query: &Query, max_piece: usize) -> AnswerStream {
        if query.correction.is_some() {
            // The index filters read the corrected values, computed from
            // each reading: no segment or row path filters on them.
            return match query.aggregator() {
                Some(aggregator) => airq_core::aggregate::answer(
                    self.query(&query.without_quality()),
                    aggregator,
                    query.format,
                ),
                None => airq_core::export::chunks(self.query(query), query.rendering()),
            };
        }
        if let Some(aggregator) = query.aggregator() {
            return self.stream_aggregate(query, aggregator);
        }
        if self.segments && segmented(query) && Select::readings(query).is_some() {
            return self.stream_segmented(query, max_piece);
        }
        self.stream_answer(Select::readings(query), query.rendering())
    }

    fn stream_segmented(&self, query: &Query, max_piece: usize) -> AnswerStream {
        // A few chunks ahead of the consumer; one, when a chunk may be a
        // whole section.
        let ahead = if max_piece > 0 { 1 } else { 4 };
        let (tx, rx) = tokio::sync::mpsc::channel(ahead);
        let (db, query) = (self.db.clone(), query.clone());
        tokio::task::spawn_blocking(move || scan_segmented(&db, &query, max_piece, &tx));
        ReceiverStream::new(rx).boxed()
    }

    fn stream_answer(&self, select: Option<Select>, rendering: Rendering) -> AnswerStream {
        // A few chunks ahead of the consumer, at most.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || scan_answer(&db, select.as_ref(), rendering, &tx));
        ReceiverStream::new(rx).boxed()
    }
}

#[async_trait]
impl ReadingStore for SqliteReadingStore {
    async fn put_batch(&self, readings: Vec<Reading>) -> Result<Written, BackendError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.put_batch_blocking(&readings))
            .await
            .map_err(DbError::from)?
    }

    async fn put_batch_hinted(
        &self,
        readings: Vec<Reading>,
        may_be_latest: Vec<bool>,
    ) -> Result<Written, BackendError> {
        let not_latest = airq_core::store::hinted_away(&readings, &may_be_latest)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || Ok(this.put_batch_inner(&readings, &not_latest)?))
            .await
            .map_err(DbError::from)?
    }

    fn series(&self) -> &'static [Resolution] {
        &Resolution::ALL
    }

    async fn put_recent(&self, readings: Vec<Reading>) -> Result<Written, BackendError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || Ok(crate::live::put_recent(&db, &readings)?))
            .await
            .map_err(DbError::from)?
    }

    async fn prune(&self, resolution: Resolution, before: Timestamp) -> Result<u64, BackendError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            Ok(crate::live::prune(&db, resolution, before.0, PRUNE_BATCH)?)
        })
        .await
        .map_err(DbError::from)?
    }

    async fn cheap_at_any_span(&self, query: &Query) -> Result<bool, BackendError> {
        // The daily series only: a week of the hourly one holds 24 times
        // the rows, which a selective filter would test one by one.
        if !self.segments || query.resolution != Resolution::Day {
            return Ok(false);
        }
        if by_few_cells(query) {
            return Ok(true);
        }
        if !segments_hold(query) {
            return Ok(false);
        }
        // Every day of the span that has rows has its segment built from
        // them (a day being built, or a master that builds none, is read
        // row by row: not cheap).
        let (series, first, last) = (
            query.resolution,
            query.start.0 / DAY_SECS,
            query.end.0 / DAY_SECS,
        );
        self.db
            .run(move |conn| segments::all_fresh(conn, series, first, last))
            .await
    }

    async fn refresh_segments(&self) -> Result<u64, BackendError> {
        if !self.segments {
            return Ok(0);
        }
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || Ok(refresh_segments(&db)?))
            .await
            .map_err(DbError::from)?
    }

    /// Only the columns a survey reads, in batches of [`HISTORY_BATCH`]:
    /// the hour before a 5-minute feed is 12 readings of every sensor.
    fn history(&self, series: Resolution, start: Timestamp, end: Timestamp) -> ReadingStream {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || scan_history(&db, series, start, end, &tx));
        ReceiverStream::new(rx)
            .flat_map(futures::stream::iter)
            .boxed()
    }

    fn query(&self, query: &Query) -> ReadingStream {
        if query.correction.is_some() {
            let read = self.stream_readings(Select::readings(&query.before_correction()));
            return airq_core::store::corrected_readings(read, query);
        }
        self.stream_readings(Select::readings(query))
    }

    fn query_answer(&self, query: &Query) -> AnswerStream {
        self.answer(query, 0)
    }

    fn query_answer_in_pieces(&self, query: &Query, max_piece: usize) -> AnswerStream {
        self.answer(query, max_piece.min(airq_core::gzip::PIECE_MAX))
    }

    async fn gzip_piece(&self, key: &PieceKey) -> Result<Option<Bytes>, BackendError> {
        let folder = segments::folder(self.db.path());
        let key = key.clone();
        tokio::task::spawn_blocking(move || segments::read_piece(&folder, &key))
            .await
            .map_err(DbError::from)?
            .map_err(Into::into)
    }

    async fn keep_gzip_piece(&self, key: &PieceKey, piece: Bytes) -> Result<(), BackendError> {
        let folder = segments::folder(self.db.path());
        let key = key.clone();
        tokio::task::spawn_blocking(move || segments::write_piece(&folder, &key, &piece))
            .await
            .map_err(DbError::from)?
            .map_err(Into::into)
    }

    fn latest(&self, latest: &LatestQuery) -> ReadingStream {
        self.stream_readings(Some(Select::latest(latest)))
    }

    fn latest_answer(&self, latest: &LatestQuery) -> AnswerStream {
        self.stream_answer(Some(Select::latest(latest)), latest.rendering())
    }

    async fn latest_changes(&self, since: Option<u64>) -> Result<LatestChanges, BackendError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || Ok(latest_changes(&db, since)?))
            .await
            .map_err(DbError::from)?
    }

    async fn summary(&self) -> Result<StoreSummary, BackendError> {
        self.db
            .run(|conn| {
                let (readings, first, last) =
                    conn.query_row("SELECT COUNT(*), MIN(ts), MAX(ts) FROM readings", [], |r| {
                        Ok((
                            r.get::<_, i64>(0)? as u64,
                            r.get::<_, Option<i64>>(1)?.map(Timestamp),
                            r.get::<_, Option<i64>>(2)?.map(Timestamp),
                        ))
                    })?;
                // Hop from one country to the next through the index instead
                // of reading every entry for DISTINCT.
                let mut stmt = conn.prepare_cached(
                    "WITH RECURSIVE c(x) AS (
                        SELECT MIN(loc_country) FROM readings
                        UNION ALL
                        SELECT (SELECT MIN(loc_country) FROM readings WHERE loc_country > x)
                        FROM c WHERE x IS NOT NULL)
                     SELECT x FROM c WHERE x IS NOT NULL",
                )?;
                let countries = stmt
                    .query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(StoreSummary {
                    readings,
                    first,
                    last,
                    countries,
                })
            })
            .await
    }

    /// Reads real pages, cheaply: the first and last readings by primary
    /// key (the table's b-tree from its root down both edges), the first
    /// entry of the country index and a latest reading. `SELECT 1` reads no page at
    /// all, so a corrupt file passed it while every query failed.
    async fn ping(&self) -> Result<(), BackendError> {
        self.db
            .run(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT (SELECT sensor_id FROM readings ORDER BY ts, sensor_id LIMIT 1),
                            (SELECT sensor_id FROM readings
                                ORDER BY ts DESC, sensor_id DESC LIMIT 1),
                            (SELECT loc_country FROM readings INDEXED BY readings_by_country
                                ORDER BY loc_country LIMIT 1),
                            (SELECT sensor_id FROM latest LIMIT 1)",
                )?;
                Ok(stmt.query_row([], |_| Ok(()))?)
            })
            .await
    }
}

// ---- schema version 4 ----

/// Readings the migration to version 4 computes and writes per round, so
/// that a large file is migrated in bounded memory.
const MIGRATION_BATCH: usize = 4096;

/// Migration 4: the US EPA AQI, the EAQI and the grid cell of every
/// stored reading, computed here (by the domain's code, so that they are
/// what ingestion now computes), the cell index, and the `latest` table
/// filled from the history.
/// Migration 11: [`QUALITY_COLUMNS`] in `readings`, `latest` and the live
/// tier's tables.
pub(crate) fn add_quality_columns(tx: &Transaction<'_>) -> Result<(), DbError> {
    for table in ["readings", "latest", "recent", "hourly"] {
        for (column, none) in QUALITY_COLUMNS {
            let shape = match column {
                "flags" => format!("INTEGER NOT NULL DEFAULT {none}"),
                _ => "TEXT".to_owned(),
            };
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {shape};"))?;
        }
    }
    Ok(())
}

pub(crate) fn migrate_to_indices_and_latest(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.execute_batch(
        "ALTER TABLE readings ADD COLUMN aqi_us_epa INTEGER;
         ALTER TABLE readings ADD COLUMN aqi_eaqi INTEGER;
         ALTER TABLE readings ADD COLUMN cell INTEGER;",
    )?;
    let filled = fill_indices_and_cells(tx)?;
    // The indices are made after the fill: one sort of the finished
    // column rather than an index update per row written.
    tx.execute_batch(&format!(
        "-- A place with few cells reads their ranges only, in time order
         -- within each day and cell (see `DAY_OF_TS`).
         CREATE INDEX readings_by_cell ON readings ({DAY_OF_TS}, cell, ts, sensor_id);

         -- Each sensor's most recent reading (see `UPSERT_LATEST`). The
         -- sensor id is the rowid, so every index below is in sensor order
         -- within its key, the order answers are in.
         CREATE TABLE latest (
             sensor_id   INTEGER PRIMARY KEY,
             ts          INTEGER NOT NULL,
             id          INTEGER,
             sensor_type TEXT    NOT NULL,
             loc_id      INTEGER,
             loc_country TEXT    NOT NULL,
             loc_lat     TEXT    NOT NULL,
             loc_long    TEXT    NOT NULL,
             loc_alt     TEXT    NOT NULL,
             p1          TEXT,
             p2          TEXT,
             aqi         INTEGER NOT NULL,
             aqi_us_epa  INTEGER NOT NULL,
             aqi_eaqi    INTEGER NOT NULL,
             cell        INTEGER NOT NULL
         );
         CREATE INDEX latest_by_country ON latest (loc_country);
         CREATE INDEX latest_by_cell ON latest (cell);

         -- With one max() in a query, SQLite takes the bare columns from
         -- the row holding it: each sensor's newest reading.
         INSERT INTO latest
             (sensor_id, ts, id, sensor_type, loc_id, loc_country, loc_lat, loc_long, loc_alt,
              p1, p2, aqi, aqi_us_epa, aqi_eaqi, cell)
         SELECT sensor_id, MAX(ts), id, sensor_type, loc_id, loc_country, loc_lat, loc_long,
                loc_alt, p1, p2, aqi, aqi_us_epa, aqi_eaqi, cell
         FROM readings GROUP BY sensor_id;"
    ))?;
    if filled > 0 {
        tracing::info!(
            readings = filled,
            "migrated the readings to schema 4 (US EPA AQI, EAQI, cells, latest)"
        );
    }
    Ok(())
}

/// Sets `aqi_us_epa`, `aqi_eaqi` and `cell` on every reading, a batch of
/// [`MIGRATION_BATCH`] at a time in key order (each batch starting after
/// the last key of the one before). Returns how many it set.
fn fill_indices_and_cells(tx: &Transaction<'_>) -> Result<u64, DbError> {
    const COLUMNS: &str = "ts, sensor_id, p1, p2, loc_lat, loc_long";
    let mut first = tx.prepare(&format!(
        "SELECT {COLUMNS} FROM readings ORDER BY ts, sensor_id LIMIT ?1"
    ))?;
    let mut next = tx.prepare(&format!(
        "SELECT {COLUMNS} FROM readings WHERE (ts, sensor_id) > (?2, ?3)
         ORDER BY ts, sensor_id LIMIT ?1"
    ))?;
    let mut update = tx.prepare(
        "UPDATE readings SET aqi_us_epa = ?3, aqi_eaqi = ?4, cell = ?5
         WHERE ts = ?1 AND sensor_id = ?2",
    )?;
    let mut after: Option<(i64, i64)> = None;
    let mut filled = 0u64;
    let mut batch = Vec::with_capacity(MIGRATION_BATCH);
    loop {
        batch.clear();
        let limit = MIGRATION_BATCH as i64;
        let mut rows = match after {
            None => first.query(params![limit])?,
            Some((ts, sensor)) => next.query(params![limit, ts, sensor])?,
        };
        while let Some(row) = rows.next()? {
            let (ts, sensor): (i64, i64) = (row.get(0)?, row.get(1)?);
            let p1 = row.get_ref(2)?.as_str_or_null().ok().flatten();
            let p2 = row.get_ref(3)?.as_str_or_null().ok().flatten();
            // No stored reading lacks both values (ingestion refuses
            // them); one would get each index's lowest value.
            let indices = Indices::of_text(p1, p2).unwrap_or_else(Indices::lowest);
            let cell = match (
                row.get_ref(4)?.as_str_or_null(),
                row.get_ref(5)?.as_str_or_null(),
            ) {
                (Ok(Some(lat)), Ok(Some(lon))) => cell_of_text(lat, lon),
                _ => cell_of_text("", ""),
            };
            // Schema 4's two new columns, by name: this migration is
            // history and must not follow the index list.
            batch.push((
                ts,
                sensor,
                indices.get(Index::UsEpa),
                indices.get(Index::Eaqi),
                cell,
            ));
        }
        drop(rows);
        let Some(&(ts, sensor, ..)) = batch.last() else {
            return Ok(filled);
        };
        for &(ts, sensor, us_epa, eaqi, cell) in &batch {
            update.execute(params![ts, sensor, us_epa, eaqi, cell])?;
        }
        filled += batch.len() as u64;
        after = Some((ts, sensor));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airq_core::place::{Bbox, Near};

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path().join("plan.db")).expect("db");
        (dir, db)
    }

    /// SQLite's plan for `select`, one line per step.
    fn plan(db: &Db, select: &Select) -> Vec<String> {
        let conn = db.conn().expect("conn");
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", select.sql))
            .expect("prepare");
        stmt.query_map(params_from_iter(&select.params), |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("plan rows")
    }

    fn day() -> Query {
        Query::between(Timestamp(1_700_000_000), Timestamp(1_700_086_399))
    }

    /// An aggregation's range is cut at the period boundary nearest its
    /// middle; one period is not cut.
    #[test]
    fn aggregations_are_cut_between_periods() {
        use airq_core::aggregate::{Aggregate, GroupBy, Period};
        let t = |s: &str| Timestamp::parse_feed(s).expect("a time");
        let mut q = Query::between(t("2024-01-01 00:00:00"), t("2024-12-31 23:59:59"));
        q.aggregate = Some(Aggregate {
            period: Period::Month,
            by: GroupBy::Country,
        });
        let (early, late) = halves(&q).expect("a year of months is cut");
        assert_eq!(early.end.to_string(), "2024-06-30 23:59:59");
        assert_eq!(late.start.to_string(), "2024-07-01 00:00:00");
        assert_eq!((early.start, late.end), (q.start, q.end));
        q.end = t("2024-01-31 23:59:59");
        assert!(halves(&q).is_none(), "one month");
        q.aggregate = None;
        assert!(halves(&q).is_none(), "no aggregate");
    }

    const STUTTGART: Place = Place::Near(Near {
        lat: 48.78,
        lon: 9.18,
        radius_km: 10.0,
    });

    const EUROPE: Place = Place::Bbox(Bbox {
        min_lon: -10.0,
        min_lat: 35.0,
        max_lon: 30.0,
        max_lat: 60.0,
    });

    #[test]
    fn a_small_place_reads_its_cells_through_the_cell_index() {
        let (_dir, db) = db();
        for country in [None, Some("DE".to_owned())] {
            let mut q = day();
            q.place = Some(STUTTGART);
            q.country = country;
            q.sensor_types = vec!["SDS011".into(), "SPS30".into()];
            q.index = Index::UsEpa;
            q.min_aqi = 51;
            q.max_aqi = 500;
            let select = Select::readings(&q).expect("a select");
            assert!(select.sql.contains("aqi_us_epa BETWEEN"), "{}", select.sql);
            assert_eq!(
                plan(&db, &select),
                [
                    "SEARCH readings USING INDEX readings_by_cell (<expr>=? AND cell=? AND ts>? AND ts<?)",
                    "USE TEMP B-TREE FOR ORDER BY"
                ],
                "one range per day and cell, merged by a sort; never a scan"
            );
        }
    }

    #[test]
    fn the_day_expression_is_the_day_length() {
        assert_eq!(DAY_OF_TS, format!("ts / {DAY_SECS}"));
        // SQLite truncates toward zero, as Rust does.
        let (_dir, db) = db();
        let conn = db.conn().expect("conn");
        for ts in [-86_401i64, -86_400, -1, 0, 86_399, 86_400, 1_700_000_000] {
            let day: i64 = conn
                .query_row(
                    &format!("SELECT {}", DAY_OF_TS.replace("ts", "?1")),
                    [ts],
                    |r| r.get(0),
                )
                .expect("day");
            assert_eq!(day, ts / DAY_SECS, "{ts}");
        }
    }

    #[test]
    fn a_long_span_reads_by_time() {
        let (_dir, db) = db();
        let mut q = day();
        q.end = Timestamp(q.start.0 + 400 * DAY_SECS);
        q.place = Some(Place::Near(Near {
            lat: 0.0,
            lon: 0.0,
            radius_km: 100.0,
        }));
        assert!(q
            .place
            .and_then(|p| p.cells())
            .is_some_and(|c| c.len() > 10));
        let select = Select::readings(&q).expect("a select");
        assert_eq!(
            plan(&db, &select),
            ["SEARCH readings USING PRIMARY KEY (ts>? AND ts<?)"],
            "400 days of over ten cells are too many ranges"
        );
        q.end = Timestamp(q.start.0 + 30 * DAY_SECS);
        let select = Select::readings(&q).expect("a select");
        assert!(plan(&db, &select)[0].contains("readings_by_cell"));
    }

    #[test]
    fn a_large_place_reads_by_country_or_time() {
        let (_dir, db) = db();
        let mut q = day();
        q.place = Some(EUROPE);
        assert_eq!(EUROPE.cells(), None);
        let select = Select::readings(&q).expect("a select");
        assert_eq!(
            plan(&db, &select),
            ["SEARCH readings USING PRIMARY KEY (ts>? AND ts<?)"]
        );
        q.country = Some("DE".into());
        q.index = Index::Eaqi;
        let select = Select::readings(&q).expect("a select");
        assert_eq!(
            plan(&db, &select),
            ["SEARCH readings USING INDEX readings_by_country (loc_country=? AND ts>? AND ts<?)"],
            "in (time, sensor) order already: no sort"
        );
    }

    #[test]
    fn the_live_series_are_read_like_the_daily_one() {
        let (_dir, db) = db();
        for (resolution, table) in [
            (Resolution::Hour, "hourly"),
            (Resolution::FiveMin, "recent"),
        ] {
            let mut q = day();
            q.resolution = resolution;
            let select = Select::readings(&q).expect("a select");
            assert_eq!(
                plan(&db, &select),
                [format!("SEARCH {table} USING PRIMARY KEY (ts>? AND ts<?)")]
            );
            assert!(select.sql.contains("nowcast_pm25"), "{}", select.sql);
            q.country = Some("DE".into());
            let select = Select::readings(&q).expect("a select");
            assert_eq!(
                plan(&db, &select),
                [format!(
                    "SEARCH {table} USING INDEX {table}_by_country (loc_country=? AND ts>? AND ts<?)"
                )]
            );
            q.country = None;
            q.place = Some(STUTTGART);
            let select = Select::readings(&q).expect("a select");
            assert_eq!(
                plan(&db, &select),
                [
                    format!("SEARCH {table} USING INDEX {table}_by_cell (<expr>=? AND cell=? AND ts>? AND ts<?)"),
                    "USE TEMP B-TREE FOR ORDER BY".to_owned()
                ]
            );
        }
    }

    #[test]
    fn latest_reads_a_country_or_cells_through_their_index() {
        let (_dir, db) = db();
        let country = LatestQuery {
            country: Some("DE".into()),
            sensor_types: vec!["SDS011".into()],
            ..LatestQuery::default()
        };
        assert_eq!(
            plan(&db, &Select::latest(&country)),
            ["SEARCH latest USING INDEX latest_by_country (loc_country=?)"],
            "in sensor order already: no sort"
        );
        let near = LatestQuery {
            place: Some(STUTTGART),
            country: Some("DE".into()),
            ..LatestQuery::default()
        };
        assert_eq!(
            plan(&db, &Select::latest(&near)),
            [
                "SEARCH latest USING INDEX latest_by_cell (cell=?)",
                "USE TEMP B-TREE FOR ORDER BY"
            ]
        );
        assert_eq!(
            plan(&db, &Select::latest(&LatestQuery::default())),
            ["SCAN latest"],
            "one row per sensor, in sensor order"
        );
    }

    #[test]
    fn sensor_types_match_in_any_case() {
        let (_dir, db) = db();
        let store = SqliteReadingStore::new(db);
        let mut readings = Vec::new();
        for (i, t) in ["SDS011", "sds011", "Sds011", "SPS30", "sps30x"]
            .iter()
            .enumerate()
        {
            let mut r = Reading {
                id: None,
                timestamp: Timestamp(1_700_000_000 + i as i64),
                sensor_id: i as u64,
                sensor_type: (*t).to_owned(),
                loc_id: None,
                loc_country: "DE".into(),
                loc_lat: "48.78".into(),
                loc_long: "9.18".into(),
                loc_alt: String::new(),
                p1: Some("10".into()),
                p2: None,
                indices: Indices::lowest(),
                samples: None,
                basis: None,
                flags: Default::default(),
                air: Default::default(),
            };
            r.indices = Indices::of_text(r.p1.as_deref(), None).expect("indices");
            readings.push(r);
        }
        store.put_batch_blocking(&readings).expect("put");
        let mut q = day();
        q.sensor_types = vec!["SDS011".into(), "SPS30".into()];
        let select = Select::readings(&q).expect("a select");
        let mut types = Vec::new();
        run(&store.db, &select, |row| {
            types.push(text(row, 3)?.to_owned());
            Ok(true)
        })
        .expect("run");
        assert_eq!(types, ["SDS011", "sds011", "Sds011", "SPS30"]);
    }

    /// The statements as built from the column mapping, spelled out for
    /// today's indices: a change of the mapping shows here first.
    #[test]
    fn statements_bind_every_column_in_order() {
        let columns = "id, ts, sensor_id, sensor_type, loc_id, loc_country, loc_lat, \
                       loc_long, loc_alt, p1, p2, aqi, aqi_us_epa, aqi_eaqi, cell, samples, \
                       flags, humidity, temperature";
        let params = (1..=19).map(|n| format!("?{n}")).collect::<Vec<_>>();
        assert_eq!(
            SQL.insert_new,
            format!(
                "INSERT OR IGNORE INTO readings ({columns}) VALUES ({})",
                params.join(", ")
            )
        );
        assert!(SQL
            .replace_changed
            .contains("WHERE ts = ?2 AND sensor_id = ?3 AND (id IS NOT ?1 OR "));
        assert!(SQL
            .replace_changed
            .contains("aqi_eaqi = ?14, cell = ?15, samples = ?16, flags = ?17, humidity = ?18, temperature = ?19"));
        assert!(SQL.upsert_latest.contains("version) VALUES (?1, "));
        assert!(
            SQL.upsert_latest.contains("?19, ?20)"),
            "the version after the columns"
        );
        assert!(SQL
            .update_latest_in_place
            .contains("WHERE sensor_id = ?3 AND loc_country = ?6 AND cell = ?15"));
        assert!(!SQL.update_latest_in_place.contains("loc_country = ?6,"));
        assert_eq!(
            SQL.columns.join(", "),
            columns.replace(", cell", ""),
            "a query's columns: the written ones but the cell"
        );
    }

    #[test]
    fn newest_per_sensor_keeps_the_last_written_of_the_newest() {
        let r = |sensor_id: u64, ts: i64| Reading {
            id: None,
            timestamp: Timestamp(ts),
            sensor_id,
            sensor_type: "SDS011".into(),
            loc_id: None,
            loc_country: "DE".into(),
            loc_lat: "1".into(),
            loc_long: "1".into(),
            loc_alt: String::new(),
            p1: None,
            p2: None,
            indices: Indices::lowest(),
            samples: None,
            basis: None,
            flags: Default::default(),
            air: Default::default(),
        };
        let batch = [r(2, 10), r(1, 5), r(2, 30), r(2, 20), r(1, 5), r(3, 1)];
        assert_eq!(newest_per_sensor(&batch), [4, 2, 5]);
        assert!(newest_per_sensor(&[]).is_empty());
    }
}

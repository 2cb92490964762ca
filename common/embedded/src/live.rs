//! The live tier on SQLite (see [`airq_core::hourly`]): `recent`, the
//! 5-minute readings as the feed sent them, and `hourly`, each
//! sensor-hour's means with the indices of its hour. Both have the
//! columns of `readings` (so that one query path reads all three, by
//! [`table`]) and, after them, what the indices were computed from
//! ([`BASIS_COLUMNS`]); `hourly` adds how many 5-minute values each
//! pollutant's mean averages, which decides whether the hour is valid.
//!
//! An index that is not defined is stored as [`Indices::UNDEFINED`]
//! (65535): it lies outside every index's range, so a filter's `BETWEEN`
//! never selects it, and it reads back as what the domain calls it.
//!
//! **Writes.** [`put_recent`] stores a batch of 5-minute readings in one
//! transaction and, in the same transaction, recomputes the hourly mean of
//! every sensor-hour that gained or changed a reading, then the indices of
//! those hours and of the 23 after each (whose running means and NowCast
//! read them), where stored. The 5-minute readings take their hour's
//! indices. A repeated feed changes nothing and recomputes nothing.
//!
//! **Retention.** [`prune`] deletes a series' rows older than a time in
//! batches of its own transactions, so that ingestion and queries wait for
//! one batch at most.

use crate::db::{Db, DbError};
use crate::readings::{index_column, last_of_each, DAY_OF_TS, LEADING_COLUMNS};
use airq_core::error::BackendError;
use airq_core::hourly::{self, Basis, HourMean, Window, HOUR_SECS};
use airq_core::mean::{nano_units, ExactSum, NANO};
use airq_core::place::cell_of_text;
use airq_core::store::Written;
use airq_core::{Index, Indices, Reading, Resolution};
use rusqlite::{params, Row, Statement, Transaction, TransactionBehavior};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

/// The table of each series.
pub(crate) fn table(resolution: Resolution) -> &'static str {
    match resolution {
        Resolution::Day => "readings",
        Resolution::Hour => "hourly",
        Resolution::FiveMin => "recent",
    }
}

/// The columns holding [`Basis`], in the order of [`Basis::fields`].
pub(crate) const BASIS_COLUMNS: [&str; 4] =
    ["nowcast_pm25", "nowcast_pm10", "mean24_pm25", "mean24_pm10"];

/// Migration 6: the two tables and their indices: by country and by day
/// and cell for queries (as `readings`), by sensor and time for the
/// roll-up.
pub(crate) fn create_tables(tx: &Transaction<'_>) -> Result<(), DbError> {
    for (table, extra) in [
        ("recent", ""),
        (
            "hourly",
            "p1_values INTEGER NOT NULL, p2_values INTEGER NOT NULL,",
        ),
    ] {
        let indices: String = Index::ALL
            .iter()
            .map(|&i| format!("{} INTEGER NOT NULL, ", index_column(i)))
            .collect();
        let basis: String = BASIS_COLUMNS
            .iter()
            .map(|c| format!("{c} INTEGER, "))
            .collect();
        tx.execute_batch(&format!(
            "CREATE TABLE {table} (
                 ts INTEGER NOT NULL, sensor_id INTEGER NOT NULL, id INTEGER,
                 sensor_type TEXT NOT NULL, loc_id INTEGER, loc_country TEXT NOT NULL,
                 loc_lat TEXT NOT NULL, loc_long TEXT NOT NULL, loc_alt TEXT NOT NULL,
                 p1 TEXT, p2 TEXT, {indices} cell INTEGER NOT NULL, samples INTEGER,
                 {basis} {extra}
                 PRIMARY KEY (ts, sensor_id)
             ) WITHOUT ROWID;
             CREATE INDEX {table}_by_country ON {table} (loc_country, ts, sensor_id);
             CREATE INDEX {table}_by_cell ON {table} ({DAY_OF_TS}, cell, ts, sensor_id);
             CREATE INDEX {table}_by_sensor ON {table} (sensor_id, ts);"
        ))?;
    }
    Ok(())
}

/// The basis of a row whose [`BASIS_COLUMNS`] start at `first`.
pub(crate) fn basis(row: &Row<'_>, first: usize) -> Result<Basis, DbError> {
    let value = |k: usize| -> Result<Option<u64>, DbError> {
        let v: Option<i64> = row.get(first + k)?;
        v.map(|v| {
            u64::try_from(v).map_err(|_| {
                DbError(BackendError::Corrupt(format!(
                    "column {} of a reading: {v} is negative",
                    BASIS_COLUMNS[k]
                )))
            })
        })
        .transpose()
    };
    Ok(Basis {
        nowcast_pm25: value(0)?,
        nowcast_pm10: value(1)?,
        mean24_pm25: value(2)?,
        mean24_pm10: value(3)?,
    })
}

/// The statements of the live tier, built once from the column names.
struct Statements {
    /// Adds a 5-minute reading unless its identity is stored; binds
    /// [`bind_recent`]'s parameters. Its indices wait for its hour's.
    insert_recent: String,
    /// Rewrites a stored 5-minute reading whose values differ from the
    /// ones sent; changes no row when they are the same.
    replace_recent: String,
    /// A sensor-hour's 5-minute readings, oldest first.
    hour_readings: String,
    /// Sets a sensor-hour's means (a new hour's indices wait).
    upsert_hour: String,
    /// A sensor's hourly means in a time range.
    sensor_hours: String,
    /// Sets an hour's indices and basis where they differ.
    set_hour_indices: String,
    /// Gives an hour's 5-minute readings its indices and basis.
    set_recent_indices: String,
}

/// `?1 …` the 11 leading columns, then `?12` cell and `?13` samples.
const CELL: usize = 12;
const SAMPLES: usize = 13;

static SQL: LazyLock<Statements> = LazyLock::new(|| {
    let indices: Vec<&str> = Index::ALL.iter().map(|&i| index_column(i)).collect();
    let undefined = vec![Indices::UNDEFINED.to_string(); Index::COUNT].join(", ");
    let leading = LEADING_COLUMNS.join(", ");
    let marks: Vec<String> = (1..=SAMPLES).map(|n| format!("?{n}")).collect();
    let values: Vec<(&str, String)> = LEADING_COLUMNS
        .iter()
        .copied()
        .chain(["cell", "samples"])
        .zip(marks.iter().cloned())
        .filter(|(c, _)| !matches!(*c, "ts" | "sensor_id"))
        .collect();
    let assign = values
        .iter()
        .map(|(c, m)| format!("{c} = {m}"))
        .collect::<Vec<_>>()
        .join(", ");
    let differs = values
        .iter()
        .map(|(c, m)| format!("{c} IS NOT {m}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    // The indices and basis: ?3 … in `Index::ALL` order, then the basis.
    let derived: Vec<&str> = indices.iter().copied().chain(BASIS_COLUMNS).collect();
    let set_derived = derived
        .iter()
        .enumerate()
        .map(|(k, c)| format!("{c} = ?{}", k + 3))
        .collect::<Vec<_>>()
        .join(", ");
    let derived_differs = derived
        .iter()
        .enumerate()
        .map(|(k, c)| format!("{c} IS NOT ?{}", k + 3))
        .collect::<Vec<_>>()
        .join(" OR ");
    let hour_ts = format!("?{}", derived.len() + 3);
    Statements {
        insert_recent: format!(
            "INSERT OR IGNORE INTO recent ({leading}, cell, samples, {})
             VALUES ({}, {undefined})",
            indices.join(", "),
            marks.join(", ")
        ),
        replace_recent: format!(
            "UPDATE recent SET {assign} WHERE ts = ?2 AND sensor_id = ?3 AND ({differs})"
        ),
        hour_readings: format!(
            "SELECT {leading}, cell FROM recent INDEXED BY recent_by_sensor
             WHERE sensor_id = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts"
        ),
        upsert_hour: format!(
            "INSERT INTO hourly ({leading}, cell, samples, p1_values, p2_values, {})
             VALUES ({}, ?14, ?15, {undefined})
             ON CONFLICT (ts, sensor_id) DO UPDATE SET {}, p1_values = ?14, p2_values = ?15",
            indices.join(", "),
            marks.join(", "),
            assign
        ),
        sensor_hours: "SELECT ts, p1, p2, p1_values, p2_values FROM hourly
             INDEXED BY hourly_by_sensor
             WHERE sensor_id = ?1 AND ts BETWEEN ?2 AND ?3 ORDER BY ts"
            .to_owned(),
        set_hour_indices: format!(
            "UPDATE hourly SET {set_derived}
             WHERE ts = ?1 AND sensor_id = ?2 AND ({derived_differs})"
        ),
        set_recent_indices: format!(
            "UPDATE recent SET {set_derived}
             WHERE sensor_id = ?2 AND ts >= ?1 AND ts < {hour_ts} AND ({derived_differs})"
        ),
    }
});

/// Binds a reading's [`LEADING_COLUMNS`], cell and samples (`?1 … ?13`).
fn bind_reading(stmt: &mut Statement<'_>, r: &Reading, cell: u32) -> Result<(), DbError> {
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
    stmt.raw_bind_parameter(CELL, cell)?;
    stmt.raw_bind_parameter(SAMPLES, r.samples)?;
    Ok(())
}

fn write_recent(stmt: &mut Statement<'_>, r: &Reading, cell: u32) -> Result<usize, DbError> {
    bind_reading(stmt, r, cell)?;
    Ok(stmt.raw_execute()?)
}

/// Stores 5-minute readings and keeps the hourly series (see the module's
/// documentation). Blocks: call it on a blocking thread.
pub(crate) fn put_recent(db: &Db, readings: &[Reading]) -> Result<Written, DbError> {
    let unique;
    let readings = match last_of_each(readings) {
        Some(last) => {
            unique = last;
            &unique[..]
        }
        None => readings,
    };
    let cells: Vec<u32> = readings
        .iter()
        .map(|r| cell_of_text(&r.loc_lat, &r.loc_long))
        .collect();
    let mut written = Written::default();
    // (sensor, hour start) of every reading added or changed.
    let mut touched = BTreeSet::new();
    let mut conn = db.conn()?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(&SQL.insert_recent)?;
        let mut replace = tx.prepare_cached(&SQL.replace_recent)?;
        for (r, &cell) in readings.iter().zip(&cells) {
            if write_recent(&mut insert, r, cell)? == 1 {
                written.new += 1;
            } else if write_recent(&mut replace, r, cell)? == 1 {
                written.replaced += 1;
            } else {
                written.unchanged += 1;
                continue;
            }
            touched.insert((r.sensor_id, hourly::hour_start(r.timestamp).0));
        }
        roll_up(&tx, &touched)?;
        recompute_indices(&tx, &touched)?;
    }
    tx.commit()?;
    Ok(written)
}

/// A stored decimal's value: its text as the mean sums it, and its f64.
fn decimal(text: Option<&str>) -> Option<(&str, f64)> {
    let text = text?;
    let value = text.trim().parse::<f64>().ok()?;
    (value.is_finite() && value >= 0.0).then_some((text, value))
}

/// Recomputes the means of each touched sensor-hour from its 5-minute
/// readings; the hour takes the site of its last reading.
fn roll_up(tx: &Transaction<'_>, touched: &BTreeSet<(u64, i64)>) -> Result<(), DbError> {
    let mut readings = tx.prepare_cached(&SQL.hour_readings)?;
    let mut upsert = tx.prepare_cached(&SQL.upsert_hour)?;
    for &(sensor, hour) in touched {
        let mut rows = readings.query(params![sensor as i64, hour, hour + HOUR_SECS])?;
        let (mut p1, mut p2) = (ExactSum::default(), ExactSum::default());
        let mut samples: u32 = 0;
        let mut last: Option<(Reading, u32)> = None;
        while let Some(row) = rows.next()? {
            let t1: Option<String> = row.get(9)?;
            let t2: Option<String> = row.get(10)?;
            p1.add(decimal(t1.as_deref()));
            p2.add(decimal(t2.as_deref()));
            samples += 1;
            last = Some((
                Reading {
                    id: None,
                    timestamp: airq_core::Timestamp(hour),
                    sensor_id: sensor,
                    sensor_type: row.get(3)?,
                    loc_id: row.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                    loc_country: row.get(5)?,
                    loc_lat: row.get(6)?,
                    loc_long: row.get(7)?,
                    loc_alt: row.get(8)?,
                    p1: None,
                    p2: None,
                    indices: Indices::undefined(),
                    samples: None,
                    basis: None,
                },
                row.get(11)?,
            ));
        }
        let Some((mut hour_reading, cell)) = last else {
            continue;
        };
        let (m1, m2) = (HourMean::of(p1), HourMean::of(p2));
        hour_reading.p1 = m1.map(HourMean::text);
        hour_reading.p2 = m2.map(HourMean::text);
        hour_reading.samples = Some(samples);
        bind_reading(&mut upsert, &hour_reading, cell)?;
        upsert.raw_bind_parameter(14, m1.map_or(0, |m| m.values as i64))?;
        upsert.raw_bind_parameter(15, m2.map_or(0, |m| m.values as i64))?;
        upsert.raw_execute()?;
    }
    Ok(())
}

/// A stored hourly mean's hundredths, if the hour is valid.
fn valid_hundredths(text: Option<String>, values: i64) -> Option<u64> {
    if u64::try_from(values).ok()? < hourly::MIN_VALUES {
        return None;
    }
    let (text, value) = decimal(text.as_deref())?;
    u64::try_from(nano_units(text, value) / (NANO / 100)).ok()
}

/// Recomputes the indices of every touched hour and of the 23 after it
/// (where stored), and gives each hour's 5-minute readings its indices.
fn recompute_indices(tx: &Transaction<'_>, touched: &BTreeSet<(u64, i64)>) -> Result<(), DbError> {
    let window_secs = (hourly::RUNNING_HOURS as i64 - 1) * HOUR_SECS;
    // Each sensor's first and last touched hour.
    let mut spans: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
    for &(sensor, hour) in touched {
        let span = spans.entry(sensor).or_insert((hour, hour));
        span.0 = span.0.min(hour);
        span.1 = span.1.max(hour);
    }
    let mut hours = tx.prepare_cached(&SQL.sensor_hours)?;
    let mut set_hour = tx.prepare_cached(&SQL.set_hour_indices)?;
    let mut set_recent = tx.prepare_cached(&SQL.set_recent_indices)?;
    for (sensor, (first, last)) in spans {
        // (pm10, pm25) valid hundredths by hour start.
        let mut means: BTreeMap<i64, (Option<u64>, Option<u64>)> = BTreeMap::new();
        let mut rows = hours.query(params![
            sensor as i64,
            first - window_secs,
            last + window_secs
        ])?;
        while let Some(row) = rows.next()? {
            let ts: i64 = row.get(0)?;
            let pm10 = valid_hundredths(row.get(1)?, row.get(3)?);
            let pm25 = valid_hundredths(row.get(2)?, row.get(4)?);
            means.insert(ts, (pm10, pm25));
        }
        drop(rows);
        let recompute: Vec<i64> = means
            .range(first..=last + window_secs)
            .map(|(&h, _)| h)
            .collect();
        for hour in recompute {
            let mut pm10: Window = [None; hourly::RUNNING_HOURS];
            let mut pm25: Window = [None; hourly::RUNNING_HOURS];
            for k in 0..hourly::RUNNING_HOURS {
                if let Some(&(a, b)) = means.get(&(hour - k as i64 * HOUR_SECS)) {
                    pm10[k] = a;
                    pm25[k] = b;
                }
            }
            let (indices, basis) = hourly::hour_indices(&pm10, &pm25);
            for stmt in [&mut set_hour, &mut set_recent] {
                stmt.raw_bind_parameter(1, hour)?;
                stmt.raw_bind_parameter(2, sensor as i64)?;
                let mut at = 3;
                for (_, value) in indices.iter() {
                    stmt.raw_bind_parameter(at, value)?;
                    at += 1;
                }
                for value in [
                    basis.nowcast_pm25,
                    basis.nowcast_pm10,
                    basis.mean24_pm25,
                    basis.mean24_pm10,
                ] {
                    stmt.raw_bind_parameter(at, value.map(|v| v as i64))?;
                    at += 1;
                }
                if stmt.parameter_count() >= at {
                    stmt.raw_bind_parameter(at, hour + HOUR_SECS)?;
                }
                stmt.raw_execute()?;
            }
        }
    }
    Ok(())
}

/// Deletes the rows of `resolution`'s series older than `before` (Unix
/// seconds), `batch` rows per transaction; returns how many. The daily
/// series is kept for ever and never pruned here.
pub(crate) fn prune(
    db: &Db,
    resolution: Resolution,
    before: i64,
    batch: usize,
) -> Result<u64, DbError> {
    if resolution == Resolution::Day {
        return Ok(0);
    }
    let table = table(resolution);
    let sql = format!(
        "DELETE FROM {table} WHERE (ts, sensor_id) IN
             (SELECT ts, sensor_id FROM {table} WHERE ts < ?1 ORDER BY ts, sensor_id LIMIT ?2)"
    );
    let batch = batch.max(1);
    let mut deleted = 0u64;
    loop {
        // One short transaction per batch (autocommit): a writer waiting
        // for the lock waits for one batch, not for the whole prune.
        let conn = db.conn()?;
        let n = conn.prepare_cached(&sql)?.execute(params![before, batch as i64])?;
        deleted += n as u64;
        if n < batch {
            return Ok(deleted);
        }
    }
}

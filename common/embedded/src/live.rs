//! The live tier on SQLite (see [`airq_core::hourly`]): `recent`, the
//! 5-minute readings as the feed sent them with what ingestion found of
//! them (flags, the station's air), and `hourly`, each
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
use crate::readings::{
    bind_leading, bind_quality, index_column, unique_with_cells, DAY_OF_TS, DAY_SECS,
    LEADING_COLUMNS, QUALITY_COLUMNS,
};
use airq_core::air::Air;
use airq_core::error::BackendError;
use airq_core::hourly::{self, Basis, HourMean, Window, HOUR_SECS};
use airq_core::mean::{value_of as decimal, ExactSum};
use airq_core::place::cell_of_text;
use airq_core::quality::{Flags, HourQuality};
use airq_core::store::Written;
use airq_core::{Index, Indices, Reading, Resolution};
use rusqlite::types::Value;
use rusqlite::{params, OptionalExtension, Row, Statement, Transaction, TransactionBehavior};
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

/// The column of `latest` naming the series its reading is of: `day` or
/// `5min` ([`Resolution::name`]).
pub(crate) const LATEST_SERIES: &str = "resolution";

/// The columns holding [`Basis`], in the order of [`Basis::fields`].
pub(crate) const BASIS_COLUMNS: [&str; 4] =
    ["nowcast_pm25", "nowcast_pm10", "mean24_pm25", "mean24_pm10"];

/// Migration 6: the two tables and their indices: by country and by day
/// and cell for queries (as `readings`); `hourly` also by sensor and hour
/// with the valid means, which the index windows read without touching
/// the table. `hourly` keeps each hour's exact sums (nano-units) and
/// counts, so that a new 5-minute reading updates its hour without reading
/// the hour's other readings, and the valid means in hundredths (`p1_h`,
/// `p2_h`, NULL for an invalid hour) the windows read.
pub(crate) fn create_tables(tx: &Transaction<'_>) -> Result<(), DbError> {
    for (table, extra) in [
        ("recent", ""),
        (
            "hourly",
            "p1_sum INTEGER NOT NULL, p1_values INTEGER NOT NULL, \
             p2_sum INTEGER NOT NULL, p2_values INTEGER NOT NULL, \
             p1_h INTEGER, p2_h INTEGER, last_ts INTEGER NOT NULL,",
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
             CREATE INDEX {table}_by_cell ON {table} ({DAY_OF_TS}, cell, ts, sensor_id);"
        ))?;
    }
    tx.execute_batch("CREATE INDEX hourly_by_sensor ON hourly (sensor_id, ts, p1_h, p2_h);")?;
    // A sensor's latest reading may be a 5-minute one, with its hour's
    // indices and what they were computed from.
    let basis: String = BASIS_COLUMNS
        .iter()
        .map(|c| format!("ALTER TABLE latest ADD COLUMN {c} INTEGER;"))
        .collect();
    tx.execute_batch(&format!(
        "ALTER TABLE latest ADD COLUMN {LATEST_SERIES} TEXT NOT NULL DEFAULT 'day'; {basis}"
    ))?;
    Ok(())
}

/// Migration 12: `hourly.quality_sums` ([`HOUR_COLUMNS`]), filled from
/// the 5-minute readings the store keeps, with those hours' flags and air:
/// every hour then holds the sums of all its kept readings, so that a
/// reading replaced later is taken back from sums that counted it. Reads
/// `recent` once in its key order (time, then sensor): one hour's sensors
/// are held at a time. Hours whose readings retention removed, or that hold
/// only readings stored before the 5-minute series was assessed, keep none;
/// an hour that retention cut through is assessed from the readings left.
pub(crate) fn add_quality_sums(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.execute_batch("ALTER TABLE hourly ADD COLUMN quality_sums TEXT;")?;
    let quality = QUALITY_COLUMNS.map(|(c, _)| c);
    let mut read = tx.prepare(&format!(
        "SELECT p1, p2, {}, ts, sensor_id FROM recent ORDER BY ts, sensor_id",
        quality.join(", ")
    ))?;
    let mut hours = HourWrites {
        means: tx.prepare("SELECT p1, p2 FROM hourly WHERE ts = ?1 AND sensor_id = ?2")?,
        write: tx.prepare(&format!(
            "UPDATE hourly SET quality_sums = ?3, {} WHERE ts = ?1 AND sensor_id = ?2",
            quality
                .iter()
                .enumerate()
                .map(|(k, c)| format!("{c} = ?{}", k + 4))
                .collect::<Vec<_>>()
                .join(", ")
        ))?,
    };
    let mut current = i64::MIN;
    let mut of_hour: BTreeMap<u64, HourQuality> = BTreeMap::new();
    let mut rows = read.query([])?;
    while let Some(row) = rows.next()? {
        let stored = stored_values(row)?;
        let hour = hourly::hour_start(airq_core::Timestamp(row.get(5)?)).0;
        let sensor: i64 = row.get(6)?;
        if hour != current {
            hours.assess(current, std::mem::take(&mut of_hour))?;
            current = hour;
        }
        // A reading stored before the 5-minute series was assessed: no
        // flag and no air, which an assessed one never is (without air it
        // is `no_humidity`). It says nothing of its hour, and taking it
        // back later takes back nothing.
        if stored.flags.is_empty() && stored.air.is_empty() {
            continue;
        }
        of_hour
            .entry(sensor as u64)
            .or_default()
            .add(stored.flags, &stored.air);
    }
    hours.assess(current, of_hour)
}

/// The statements [`add_quality_sums`] writes an hour's sums with.
struct HourWrites<'a> {
    means: Statement<'a>,
    write: Statement<'a>,
}

impl HourWrites<'_> {
    /// Writes the sums of each sensor's `hour` and its flags and air.
    fn assess(&mut self, hour: i64, sums: BTreeMap<u64, HourQuality>) -> Result<(), DbError> {
        for (sensor, quality) in sums {
            let means: Option<(Option<String>, Option<String>)> = self
                .means
                .query_row(params![hour, sensor as i64], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            let Some((p1, p2)) = means else {
                continue;
            };
            let (flags, air) = quality.assess(p1.as_deref(), p2.as_deref());
            // In `QUALITY_COLUMNS`' order, as `bind_quality` binds them.
            self.write.execute(params![
                hour,
                sensor as i64,
                quality.to_text(),
                flags.bits(),
                air.humidity,
                air.temperature
            ])?;
        }
        Ok(())
    }
}

/// The basis of a row whose [`BASIS_COLUMNS`] start at `first`.
pub(crate) fn basis(row: &Row<'_>, first: usize) -> Result<Basis, DbError> {
    let mut values = [None; BASIS_COLUMNS.len()];
    for (k, value) in values.iter_mut().enumerate() {
        let v: Option<i64> = row.get(first + k)?;
        *value = v
            .map(|v| {
                u64::try_from(v).map_err(|_| {
                    DbError(BackendError::Corrupt(format!(
                        "column {} of a reading: {v} is negative",
                        BASIS_COLUMNS[k]
                    )))
                })
            })
            .transpose()?;
    }
    Ok(Basis::from_values(values))
}

/// The statements of the live tier, built once from the column names.
struct Statements {
    /// Adds a 5-minute reading unless its identity is stored; binds
    /// [`bind_reading`]'s parameters. Its indices wait for its hour's.
    insert_recent: String,
    /// A stored 5-minute reading's values and [`QUALITY_COLUMNS`], before
    /// it is replaced.
    recent_values: String,
    /// Rewrites a stored 5-minute reading whose values differ from the
    /// ones sent; changes no row when they are the same.
    replace_recent: String,
    /// An hour's sums and counts, then its site ([`SITE`]).
    hour_sums: String,
    /// Writes an hour: [`bind_reading`]'s parameters (the site of its
    /// newest reading, its means as text, `samples`), then `?14 …` its
    /// sums, counts, valid means and newest reading's time.
    upsert_hour: String,
    /// Updates an hour's sums, counts, means and newest reading's time,
    /// keeping its site: the reading added is not its newest, or is at the
    /// same site. (An `UPDATE` that names an indexed column rewrites its
    /// index entries even when the value is the same: the site's are
    /// `hourly_by_country`'s and `hourly_by_cell`'s.)
    update_hour_sums: String,
    /// A sensor's valid hourly means in a time range (the index alone).
    sensor_hours: String,
    /// Sets an hour's indices and basis where they differ.
    set_hour_indices: String,
    /// Gives a 5-minute reading its hour's indices and basis.
    set_recent_indices: String,
    /// Makes a 5-minute reading (written with its indices) its sensor's
    /// latest unless a newer one is stored.
    upsert_latest: String,
    /// [`Statements::upsert_latest`] for a sensor that has not moved, with
    /// the same parameters: its country and cell are conditions rather
    /// than assignments, so SQLite leaves `latest_by_country` and
    /// `latest_by_cell` untouched (as `readings`' `update_latest_in_place`
    /// does for the daily series). Changes no row when the sensor is new,
    /// has moved, has a newer reading or is unchanged: then the upsert
    /// decides.
    update_latest_in_place: String,
}

/// `?1 …` the 11 leading columns, then `?12` cell and `?13` samples.
const CELL: usize = 12;
const SAMPLES: usize = 13;
/// A 5-minute reading's [`QUALITY_COLUMNS`] from `?14` (the writes of
/// `recent`; an hour's own columns take those places in its writes).
const QUALITY: usize = 14;
/// The hour's own columns after them, from `?14`, in this order, then
/// its [`QUALITY_COLUMNS`]. `quality_sums` ([`add_quality_sums`]) is what its
/// readings say of its quality ([`HourQuality::to_text`]), from which its
/// flags and air are assessed.
const HOUR_COLUMNS: [&str; 8] = [
    "p1_sum",
    "p1_values",
    "p2_sum",
    "p2_values",
    "p1_h",
    "p2_h",
    "last_ts",
    "quality_sums",
];
/// Where `quality_sums` is in [`HOUR_COLUMNS`] (and in a row of
/// [`Statements::hour_sums`]).
const QUALITY_SUMS: usize = 7;
/// An hour's site, what it takes of its newest reading besides the
/// values: these [`LEADING_COLUMNS`] (`sensor_type` to `loc_alt`), then
/// `cell`.
const SITE: std::ops::Range<usize> = 3..9;

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
    let assign = |values: &[(&str, String)]| {
        values
            .iter()
            .map(|(c, m)| format!("{c} = {m}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let differs = values
        .iter()
        .map(|(c, m)| format!("{c} IS NOT {m}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let hour: Vec<(&str, String)> = HOUR_COLUMNS
        .iter()
        .copied()
        .chain(QUALITY_COLUMNS.map(|(c, _)| c))
        .enumerate()
        .map(|(k, c)| (c, format!("?{}", SAMPLES + 1 + k)))
        .collect();
    let hour_marks: Vec<&str> = hour.iter().map(|(_, m)| m.as_str()).collect();
    // A 5-minute reading's flags and air, `?14 …` (after `samples`).
    let quality_values: Vec<(&str, String)> = QUALITY_COLUMNS
        .iter()
        .enumerate()
        .map(|(k, (c, _))| (*c, format!("?{}", QUALITY + k)))
        .collect();
    let quality_marks: Vec<&str> = quality_values.iter().map(|(_, m)| m.as_str()).collect();
    let quality = QUALITY_COLUMNS.map(|(c, _)| c).join(", ");
    // The means and samples change with the sums; the site does not.
    let sums: Vec<(&str, String)> = values
        .iter()
        .filter(|(c, _)| matches!(*c, "p1" | "p2" | "samples"))
        .cloned()
        .chain(hour.iter().cloned())
        .collect();
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
    // A sensor's latest: the columns of a 5-minute reading with its
    // indices, each bound at its place in this list; a row that changed
    // takes the write's data version (see `crate::changes`), the
    // parameter after the columns'.
    let latest_writes = {
        let columns: Vec<&str> = LEADING_COLUMNS
            .iter()
            .copied()
            .chain(indices.iter().copied())
            .chain(["cell", "samples"])
            .chain(BASIS_COLUMNS)
            .chain(QUALITY_COLUMNS.map(|(c, _)| c))
            .collect();
        let mark = |name: &str| {
            let at = columns.iter().position(|c| *c == name);
            format!("?{}", at.expect("a column of latest") + 1)
        };
        let marks: Vec<String> = columns.iter().map(|c| mark(c)).collect();
        let version = columns.len() + 1;
        let series = Resolution::FiveMin.name();
        let changed = |stored: &dyn Fn(&str) -> String, sent: &dyn Fn(&str) -> String| {
            columns
                .iter()
                .filter(|c| **c != "sensor_id")
                .map(|c| format!("{} IS NOT {}", stored(c), sent(c)))
                .chain(std::iter::once(format!(
                    "{} IS NOT '{series}'",
                    stored(LATEST_SERIES)
                )))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let set = |skip: &[&str], sent: &dyn Fn(&str) -> String| {
            columns
                .iter()
                .filter(|c| **c != "sensor_id" && !skip.contains(c))
                .map(|c| format!("{c} = {}", sent(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let upsert = format!(
            "INSERT INTO latest ({}, {LATEST_SERIES}, version) VALUES ({}, '{series}', ?{version})
             ON CONFLICT (sensor_id) DO UPDATE SET {}, {LATEST_SERIES} = '{series}',
                 version = ?{version}
             WHERE excluded.ts >= latest.ts AND ({})",
            columns.join(", "),
            marks.join(", "),
            set(&[], &|c| format!("excluded.{c}")),
            changed(&|c| format!("latest.{c}"), &|c| format!("excluded.{c}"))
        );
        let in_place = format!(
            "UPDATE latest SET {}, {LATEST_SERIES} = '{series}', version = ?{version}
             WHERE sensor_id = {} AND loc_country = {} AND cell = {} AND ts <= {} AND ({})",
            set(&["loc_country", "cell"], &|c| mark(c)),
            mark("sensor_id"),
            mark("loc_country"),
            mark("cell"),
            mark("ts"),
            changed(&|c| c.to_owned(), &|c| mark(c))
        );
        (upsert, in_place)
    };
    Statements {
        insert_recent: format!(
            "INSERT OR IGNORE INTO recent ({leading}, cell, samples, {quality}, {})
             VALUES ({}, {}, {undefined})",
            indices.join(", "),
            marks.join(", "),
            quality_marks.join(", ")
        ),
        recent_values: format!(
            "SELECT p1, p2, {quality} FROM recent WHERE ts = ?1 AND sensor_id = ?2"
        ),
        replace_recent: format!(
            "UPDATE recent SET {}, {} WHERE ts = ?2 AND sensor_id = ?3 AND ({differs} OR {})",
            assign(&values),
            assign(&quality_values),
            quality_values
                .iter()
                .map(|(c, m)| format!("{c} IS NOT {m}"))
                .collect::<Vec<_>>()
                .join(" OR ")
        ),
        hour_sums: format!(
            "SELECT {}, samples, {}, cell FROM hourly WHERE ts = ?1 AND sensor_id = ?2",
            HOUR_COLUMNS.join(", "),
            LEADING_COLUMNS[SITE].join(", ")
        ),
        upsert_hour: format!(
            "INSERT INTO hourly ({leading}, cell, samples, {}, {})
             VALUES ({}, {}, {undefined})
             ON CONFLICT (ts, sensor_id) DO UPDATE SET {}, {}",
            hour.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", "),
            indices.join(", "),
            marks.join(", "),
            hour_marks.join(", "),
            assign(&values),
            assign(&hour)
        ),
        update_hour_sums: format!(
            "UPDATE hourly SET {} WHERE ts = ?2 AND sensor_id = ?3",
            assign(&sums)
        ),
        sensor_hours: "SELECT ts, p1_h, p2_h FROM hourly INDEXED BY hourly_by_sensor
             WHERE sensor_id = ?1 AND ts BETWEEN ?2 AND ?3 ORDER BY ts"
            .to_owned(),
        set_hour_indices: format!(
            "UPDATE hourly SET {set_derived}
             WHERE ts = ?1 AND sensor_id = ?2 AND ({derived_differs})"
        ),
        set_recent_indices: format!(
            "UPDATE recent SET {set_derived} WHERE ts = ?1 AND sensor_id = ?2"
        ),
        upsert_latest: latest_writes.0,
        update_latest_in_place: latest_writes.1,
    }
});

/// Binds a reading's [`LEADING_COLUMNS`], cell and samples (`?1 … ?13`).
fn bind_reading(stmt: &mut Statement<'_>, r: &Reading, cell: u32) -> Result<(), DbError> {
    bind_leading(stmt, r)?;
    stmt.raw_bind_parameter(CELL, cell)?;
    stmt.raw_bind_parameter(SAMPLES, r.samples)?;
    Ok(())
}

fn write_recent(stmt: &mut Statement<'_>, r: &Reading, cell: u32) -> Result<usize, DbError> {
    bind_reading(stmt, r, cell)?;
    bind_quality(stmt, QUALITY, r)?;
    Ok(stmt.raw_execute()?)
}

/// The page cache of the connection that writes the live tier: a feed
/// touches a page of each of its sensors' hour windows, which SQLite's
/// default 2 MiB cache keeps rereading from the file.
const WRITE_CACHE_KIB: i64 = 64 * 1024;

/// What a batch changes in one sensor-hour.
struct HourChange<'a> {
    p1: ExactSum,
    p2: ExactSum,
    quality: HourQuality,
    /// Values taken back (replaced readings').
    p1_out: ExactSum,
    p2_out: ExactSum,
    quality_out: HourQuality,
    /// 5-minute readings added.
    added: u32,
    /// The newest reading written, whose site the hour may take.
    newest: (&'a Reading, u32),
}

/// Stores 5-minute readings and keeps the hourly series (see the module's
/// documentation). Blocks: call it on a blocking thread.
pub(crate) fn put_recent(db: &Db, readings: &[Reading]) -> Result<Written, DbError> {
    let (readings, cells) = unique_with_cells(readings);
    let readings = &readings[..];
    let mut written = Written::default();
    let mut changes: BTreeMap<(u64, i64), HourChange<'_>> = BTreeMap::new();
    let mut conn = db.conn()?;
    conn.pragma_update(None, "cache_size", -WRITE_CACHE_KIB)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(&SQL.insert_recent)?;
        let mut old_values = tx.prepare_cached(&SQL.recent_values)?;
        let mut replace = tx.prepare_cached(&SQL.replace_recent)?;
        for (r, &cell) in readings.iter().zip(&cells) {
            let mut old: Option<Stored> = None;
            if write_recent(&mut insert, r, cell)? == 1 {
                written.new += 1;
            } else {
                let before = old_values
                    .query_row(params![r.timestamp.0, r.sensor_id as i64], |row| {
                        Ok(stored_values(row))
                    })??;
                if write_recent(&mut replace, r, cell)? == 1 {
                    written.replaced += 1;
                    old = Some(before);
                } else {
                    written.unchanged += 1;
                    continue;
                }
            }
            let key = (r.sensor_id, hourly::hour_start(r.timestamp).0);
            let change = changes.entry(key).or_insert_with(|| HourChange {
                p1: ExactSum::default(),
                p2: ExactSum::default(),
                quality: HourQuality::default(),
                p1_out: ExactSum::default(),
                p2_out: ExactSum::default(),
                quality_out: HourQuality::default(),
                added: 0,
                newest: (r, cell),
            });
            change.p1.add(decimal(r.p1.as_deref()));
            change.p2.add(decimal(r.p2.as_deref()));
            change.quality.add(r.flags, &r.air);
            match &old {
                None => change.added += 1,
                Some(old) => {
                    change.p1_out.add(decimal(old.p1.as_deref()));
                    change.p2_out.add(decimal(old.p2.as_deref()));
                    change.quality_out.add(old.flags, &old.air);
                }
            }
            if r.timestamp >= change.newest.0.timestamp {
                change.newest = (r, cell);
            }
        }
        update_hours(&tx, &changes)?;
        let hours: BTreeSet<(u64, i64)> = changes.keys().copied().collect();
        let days = recompute_indices(&tx, &hours, readings)?;
        // The hourly series' days whose rows changed: their answer
        // segments are stale from this commit on.
        crate::segments::bump(&tx, Resolution::Hour, days)?;
    }
    tx.commit()?;
    Ok(written)
}

/// What [`Statements::recent_values`] reads of a stored 5-minute reading.
struct Stored {
    p1: Option<String>,
    p2: Option<String>,
    flags: Flags,
    air: Air,
}

fn stored_values(row: &Row<'_>) -> Result<Stored, DbError> {
    let bits: u16 = row.get(2)?;
    let flags = Flags::from_bits(bits).ok_or_else(|| {
        DbError(BackendError::Corrupt(format!(
            "the flags of a 5-minute reading: bits {bits:#x} name a flag this build does not know"
        )))
    })?;
    Ok(Stored {
        p1: row.get(0)?,
        p2: row.get(1)?,
        flags,
        air: Air {
            humidity: row.get(3)?,
            temperature: row.get(4)?,
        },
    })
}

/// An integer column that must not be negative.
fn unsigned(row: &Row<'_>, i: usize) -> Result<u64, DbError> {
    let v: i64 = row.get(i)?;
    u64::try_from(v).map_err(|_| {
        DbError(BackendError::Corrupt(format!(
            "column {} of an hour: {v} is negative",
            HOUR_COLUMNS.get(i).copied().unwrap_or("samples")
        )))
    })
}

/// Applies each sensor-hour's change to its stored sums and means; the
/// hour takes the site of its newest reading.
fn update_hours(
    tx: &Transaction<'_>,
    changes: &BTreeMap<(u64, i64), HourChange<'_>>,
) -> Result<(), DbError> {
    let mut sums = tx.prepare_cached(&SQL.hour_sums)?;
    let mut upsert = tx.prepare_cached(&SQL.upsert_hour)?;
    let mut update = tx.prepare_cached(&SQL.update_hour_sums)?;
    for (&(sensor, hour), change) in changes {
        let (newest, cell) = change.newest;
        let stored = sums
            .query_row(params![hour, sensor as i64], |row| {
                Ok(row_sums(row).and_then(|sums| Ok((sums, same_site(row, newest, cell)?))))
            })
            .optional()?
            .transpose()?;
        let same_site = stored.as_ref().is_some_and(|(_, same)| *same);
        let (mut p1, mut p2, samples, last_ts, quality) = stored.map_or(
            (
                ExactSum::default(),
                ExactSum::default(),
                0,
                i64::MIN,
                HourQuality::default(),
            ),
            |(sums, _)| sums,
        );
        let quality = quality
            .combined(change.quality, true)
            .combined(change.quality_out, false);
        let (n1, c1) = change.p1.parts();
        let (n2, c2) = change.p2.parts();
        let (o1, d1) = change.p1_out.parts();
        let (o2, d2) = change.p2_out.parts();
        let merge = |sum: ExactSum, add: (u128, u64), out: (u128, u64)| {
            let (nano, n) = sum.parts();
            ExactSum::from_parts(
                (nano + add.0).saturating_sub(out.0),
                (n + add.1).saturating_sub(out.1),
            )
        };
        p1 = merge(p1, (n1, c1), (o1, d1));
        p2 = merge(p2, (n2, c2), (o2, d2));
        let (m1, m2) = (HourMean::of(p1), HourMean::of(p2));
        let (p1_text, p2_text) = (m1.map(HourMean::text), m2.map(HourMean::text));
        let (flags, air) = quality.assess(p1_text.as_deref(), p2_text.as_deref());
        let mut hour_reading = Reading {
            id: None,
            timestamp: airq_core::Timestamp(hour),
            sensor_id: sensor,
            p1: p1_text,
            p2: p2_text,
            samples: Some(samples + change.added),
            indices: Indices::undefined(),
            basis: None,
            flags,
            air,
            ..newest.clone()
        };
        hour_reading.id = None;
        let newer = newest.timestamp.0 >= last_ts;
        // A stored hour at the same site keeps its site's index entries.
        let stmt = if newer && !same_site {
            &mut upsert
        } else {
            &mut update
        };
        bind_reading(stmt, &hour_reading, cell)?;
        let valid = |m: Option<HourMean>| {
            m.filter(|m| m.is_valid())
                .map_or(Value::Null, |m| Value::Integer(m.hundredths as i64))
        };
        let (nano1, count1) = p1.parts();
        let (nano2, count2) = p2.parts();
        let hour_values: [Value; HOUR_COLUMNS.len()] = [
            Value::Integer(i64::try_from(nano1).unwrap_or(i64::MAX)),
            Value::Integer(count1 as i64),
            Value::Integer(i64::try_from(nano2).unwrap_or(i64::MAX)),
            Value::Integer(count2 as i64),
            valid(m1),
            valid(m2),
            Value::Integer(if newer { newest.timestamp.0 } else { last_ts }),
            Value::Text(quality.to_text()),
        ];
        for (k, v) in hour_values.iter().enumerate() {
            stmt.raw_bind_parameter(SAMPLES + 1 + k, v)?;
        }
        bind_quality(stmt, SAMPLES + 1 + HOUR_COLUMNS.len(), &hour_reading)?;
        stmt.raw_execute()?;
    }
    Ok(())
}

/// Whether the stored hour of `row` ([`SQL`]'s `hour_sums`) is at the site
/// of `r`, in `cell`: writing `r`'s site would not change it.
fn same_site(row: &Row<'_>, r: &Reading, cell: u32) -> Result<bool, DbError> {
    // After the sums and samples: the site's leading columns in their
    // order (as `bind_leading` binds them), then its cell.
    let at = HOUR_COLUMNS.len() + 1;
    let text = |k: usize, value: &str| -> Result<bool, DbError> {
        // Not text: not the same (the whole row is written again).
        Ok(row.get_ref(at + k)?.as_str_or_null().ok().flatten() == Some(value))
    };
    Ok(text(0, &r.sensor_type)?
        && row.get::<_, Option<i64>>(at + 1)? == r.loc_id.map(|v| v as i64)
        && text(2, &r.loc_country)?
        && text(3, &r.loc_lat)?
        && text(4, &r.loc_long)?
        && text(5, &r.loc_alt)?
        && row.get::<_, i64>(at + SITE.len())? == i64::from(cell))
}

/// An hour's stored sums, samples, newest reading's time and quality
/// sums (none for an hour written before migration 12).
fn row_sums(row: &Row<'_>) -> Result<(ExactSum, ExactSum, u32, i64, HourQuality), DbError> {
    let quality = match row.get::<_, Option<String>>(QUALITY_SUMS)? {
        None => HourQuality::default(),
        Some(text) => {
            HourQuality::from_text(&text).map_err(|e| DbError(BackendError::Corrupt(e)))?
        }
    };
    Ok((
        ExactSum::from_parts(u128::from(unsigned(row, 0)?), unsigned(row, 1)?),
        ExactSum::from_parts(u128::from(unsigned(row, 2)?), unsigned(row, 3)?),
        u32::try_from(unsigned(row, HOUR_COLUMNS.len())?).unwrap_or(u32::MAX),
        row.get(6)?,
        quality,
    ))
}

/// Recomputes the indices of every touched hour and of the 23 after it
/// (where stored), and gives the 5-minute readings just written their
/// hour's indices (a 5-minute reading keeps the indices its hour had when
/// it arrived: the NowCast of that moment).
/// Returns the days of the hourly rows it rewrote (the touched hours
/// among them).
fn recompute_indices(
    tx: &Transaction<'_>,
    touched: &BTreeSet<(u64, i64)>,
    readings: &[Reading],
) -> Result<BTreeSet<i64>, DbError> {
    let mut days = BTreeSet::new();
    let version = crate::changes::next_version(tx)?;
    let mut changed = false;
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
    // The indices of each touched hour, for its new 5-minute readings.
    let mut of_hour: BTreeMap<(u64, i64), (Indices, Basis)> = BTreeMap::new();
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
            let h = |i: usize| -> Result<Option<u64>, DbError> {
                Ok(row
                    .get::<_, Option<i64>>(i)?
                    .and_then(|v| u64::try_from(v).ok()))
            };
            means.insert(ts, (h(1)?, h(2)?));
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
            bind_derived(&mut set_hour, hour, sensor, indices, basis)?;
            set_hour.raw_execute()?;
            if hour >= 0 {
                days.insert(hour / DAY_SECS);
            }
            if touched.contains(&(sensor, hour)) {
                of_hour.insert((sensor, hour), (indices, basis));
            }
        }
    }
    let mut set_recent = tx.prepare_cached(&SQL.set_recent_indices)?;
    // Each sensor's newest reading written, with its indices.
    let mut newest: BTreeMap<u64, (&Reading, Indices, Basis)> = BTreeMap::new();
    for r in readings {
        if let Some(&(indices, basis)) =
            of_hour.get(&(r.sensor_id, hourly::hour_start(r.timestamp).0))
        {
            bind_derived(&mut set_recent, r.timestamp.0, r.sensor_id, indices, basis)?;
            set_recent.raw_execute()?;
            match newest.get(&r.sensor_id) {
                Some((n, _, _)) if n.timestamp > r.timestamp => {}
                _ => {
                    newest.insert(r.sensor_id, (r, indices, basis));
                }
            }
        }
    }
    let mut in_place = tx.prepare_cached(&SQL.update_latest_in_place)?;
    let mut upsert = tx.prepare_cached(&SQL.upsert_latest)?;
    for (r, indices, basis) in newest.into_values() {
        // Each writes (and stamps) only a row it changes: the usual case,
        // in place; a new or moved sensor, or no change, the upsert.
        let write = |stmt: &mut Statement<'_>| -> Result<bool, DbError> {
            bind_leading(stmt, r)?;
            // The indices after the leading columns, then cell and samples.
            let at = bind_indices(stmt, LEADING_COLUMNS.len() + 1, indices)?;
            stmt.raw_bind_parameter(at, cell_of_text(&r.loc_lat, &r.loc_long))?;
            stmt.raw_bind_parameter(at + 1, r.samples)?;
            bind_basis(stmt, at + 2, basis)?;
            let at = at + 2 + BASIS_COLUMNS.len();
            bind_quality(stmt, at, r)?;
            stmt.raw_bind_parameter(at + QUALITY_COLUMNS.len(), version)?;
            Ok(stmt.raw_execute()? == 1)
        };
        changed |= write(&mut in_place)? || write(&mut upsert)?;
    }
    crate::changes::commit_version(tx, version, changed)?;
    Ok(days)
}

/// Binds `?1` a time, `?2` a sensor, then the indices and the basis.
fn bind_derived(
    stmt: &mut Statement<'_>,
    ts: i64,
    sensor: u64,
    indices: Indices,
    basis: Basis,
) -> Result<(), DbError> {
    stmt.raw_bind_parameter(1, ts)?;
    stmt.raw_bind_parameter(2, sensor as i64)?;
    let at = bind_indices(stmt, 3, indices)?;
    bind_basis(stmt, at, basis)
}

/// Binds the indices from `?at` in [`Index::ALL`]'s order; returns the
/// next parameter's number.
fn bind_indices(stmt: &mut Statement<'_>, at: usize, indices: Indices) -> Result<usize, DbError> {
    for (k, (_, value)) in indices.iter().enumerate() {
        stmt.raw_bind_parameter(at + k, value)?;
    }
    Ok(at + Index::COUNT)
}

/// Binds the basis from `?at` in [`BASIS_COLUMNS`]' order.
fn bind_basis(stmt: &mut Statement<'_>, at: usize, basis: Basis) -> Result<(), DbError> {
    for (k, value) in basis.values().into_iter().enumerate() {
        stmt.raw_bind_parameter(at + k, value.map(|v| v as i64))?;
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
             (SELECT ts, sensor_id FROM {table} WHERE ts < ?1 ORDER BY ts, sensor_id LIMIT ?2)
         RETURNING ts"
    );
    let batch = batch.max(1);
    // The answer segments of a series that has them: the days before the
    // one `before` cuts lose every row, so they are forgotten (with their
    // files) first, and queries read their rows until they are gone; the
    // days a batch deletes from are bumped in its transaction.
    let segmented = crate::segments::SERIES.contains(&resolution) && before >= 0;
    let cut = before.max(0) / DAY_SECS;
    let folder = crate::segments::folder(db.path());
    if segmented {
        crate::segments::forget_before(&mut *db.conn()?, &folder, resolution, cut)?;
    }
    let mut deleted = 0u64;
    loop {
        // One short transaction per batch: a writer waiting for the lock
        // waits for one batch, not for the whole prune.
        let mut conn = db.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut days = BTreeSet::new();
        let mut n = 0usize;
        {
            let mut stmt = tx.prepare_cached(&sql)?;
            let mut rows = stmt.query(params![before, batch as i64])?;
            while let Some(row) = rows.next()? {
                let ts: i64 = row.get(0)?;
                n += 1;
                if ts >= 0 && ts / DAY_SECS >= cut {
                    days.insert(ts / DAY_SECS);
                }
            }
        }
        if segmented {
            crate::segments::bump(&tx, resolution, days)?;
        }
        tx.commit()?;
        deleted += n as u64;
        if n < batch {
            break;
        }
    }
    if segmented && deleted > 0 {
        // A day before the cut that a write brought back meanwhile.
        crate::segments::forget_before(&mut *db.conn()?, &folder, resolution, cut)?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both writes of `latest` bind the same parameters; the in-place one
    /// keeps country and cell as conditions (no index entry rewritten).
    #[test]
    fn a_latest_update_in_place_leaves_country_and_cell() {
        // 11 leading columns, 3 indices, then cell ?15, samples ?16, the
        // basis ?17–?20, the quality ?21–?23 and the version ?24.
        assert_eq!(Index::COUNT, 3);
        let in_place = &SQL.update_latest_in_place;
        assert!(
            in_place
                .contains("WHERE sensor_id = ?3 AND loc_country = ?6 AND cell = ?15 AND ts <= ?2"),
            "{in_place}"
        );
        assert!(!in_place.contains("loc_country = ?6,"), "{in_place}");
        assert!(!in_place.contains("cell = ?15,"), "{in_place}");
        assert!(
            in_place.contains("samples = ?16, nowcast_pm25 = ?17"),
            "{in_place}"
        );
        assert!(in_place.contains("version = ?24"), "{in_place}");
        assert!(
            SQL.upsert_latest.contains("?23, '5min', ?24)"),
            "{}",
            SQL.upsert_latest
        );
        assert!(
            SQL.upsert_latest
                .contains("loc_country = excluded.loc_country"),
            "a moved sensor's country is written"
        );
    }
}

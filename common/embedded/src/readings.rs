//! The reading store on SQLite.

use crate::db::{Db, DbError};
use airq_core::error::BackendError;
use airq_core::export::{AnswerChunk, AnswerStream, Chunker, RowRef};
use airq_core::query::Query;
use airq_core::reading::{Reading, Timestamp};
use airq_core::store::{ReadingStore, ReadingStream, StoreSummary};
use async_trait::async_trait;
use futures::StreamExt;
use rusqlite::{params, Row, TransactionBehavior};
use tokio_stream::wrappers::ReceiverStream;

/// The columns a query reads, in the order the row decoders expect.
const COLUMN_NAMES: [&str; 12] = [
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
    "aqi",
];

/// Readings streamed ahead of the consumer; bounds memory on huge results.
const STREAM_BUFFER: usize = 512;
/// Readings handed over per channel message: one wake-up of the consumer
/// per batch rather than per row.
const BATCH: usize = 64;

type Batch = Vec<Result<Reading, BackendError>>;

#[derive(Clone)]
pub struct SqliteReadingStore {
    db: Db,
}

impl SqliteReadingStore {
    pub fn new(db: Db) -> Self {
        SqliteReadingStore { db }
    }

    /// Writes a batch in one transaction. Public for callers already on a
    /// blocking thread (bulk loaders).
    pub fn put_batch_blocking(&self, readings: &[Reading]) -> Result<(), BackendError> {
        Ok(self.put_batch_inner(readings)?)
    }

    fn put_batch_inner(&self, readings: &[Reading]) -> Result<(), DbError> {
        let mut conn = self.db.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO readings
                 (id, ts, sensor_id, sensor_type, loc_id, loc_country, loc_lat, loc_long, loc_alt, p1, p2, aqi)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for r in readings {
                stmt.execute(params![
                    r.id.map(|v| v as i64),
                    r.timestamp.0,
                    r.sensor_id as i64,
                    r.sensor_type,
                    r.loc_id.map(|v| v as i64),
                    r.loc_country,
                    r.loc_lat,
                    r.loc_long,
                    r.loc_alt,
                    r.p1,
                    r.p2,
                    r.aqi,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// A row's fields, borrowed from SQLite's row: the one decoder of
/// [`COLUMN_NAMES`], for readings and CSV alike.
fn row_ref<'r>(row: &'r Row<'_>) -> Result<RowRef<'r>, DbError> {
    let (p1, p2) = (text_or_null(row, 9)?, text_or_null(row, 10)?);
    let other = airq_core::Indices::of_text(p1, p2);
    Ok(RowRef {
        id: row.get::<_, Option<i64>>(0)?.map(|v| v as u64),
        timestamp: Timestamp(row.get(1)?),
        sensor_id: row.get::<_, i64>(2)? as u64,
        sensor_type: text(row, 3)?,
        loc_id: row.get::<_, Option<i64>>(4)?.map(|v| v as u64),
        loc_country: text(row, 5)?,
        loc_lat: text(row, 6)?,
        loc_long: text(row, 7)?,
        loc_alt: text(row, 8)?,
        p1: text_or_null(row, 9)?,
        p2: text_or_null(row, 10)?,
        aqi: row.get(11)?,
        us_epa: other.map_or(0, |i| i.us_epa),
        eaqi: other.map_or(1, |i| i.eaqi),
    })
}

/// The statement for `query` (two, rather than `(?3 IS NULL OR
/// loc_country = ?3)`, which would keep SQLite's planner from choosing the
/// country index), run with `each` called on every row in order until it
/// returns false.
fn scan(
    db: &Db,
    query: &Query,
    mut each: impl FnMut(&Row<'_>) -> Result<bool, DbError>,
) -> Result<(), DbError> {
    let Some((lo, hi)) = query.aqi_bounds() else {
        return Ok(());
    };
    let conn = db.conn()?;
    let columns = COLUMN_NAMES.join(", ");
    let mut stmt;
    let mut rows = match &query.country {
        Some(country) => {
            stmt = conn.prepare_cached(&format!(
                "SELECT {columns} FROM readings INDEXED BY readings_by_country
                 WHERE loc_country = ?1 AND ts BETWEEN ?2 AND ?3 AND aqi BETWEEN ?4 AND ?5
                 ORDER BY ts, sensor_id"
            ))?;
            stmt.query(params![country, query.start.0, query.end.0, lo, hi])?
        }
        None => {
            stmt = conn.prepare_cached(&format!(
                "SELECT {columns} FROM readings
                 WHERE ts BETWEEN ?1 AND ?2 AND aqi BETWEEN ?3 AND ?4
                 ORDER BY ts, sensor_id"
            ))?;
            stmt.query(params![query.start.0, query.end.0, lo, hi])?
        }
    };
    while let Some(row) = rows.next()? {
        if !each(row)? {
            break;
        }
    }
    Ok(())
}

/// Streams the readings of `query` into `tx` in batches, until done or
/// until the receiver hangs up (a client that went away stops the scan).
fn scan_readings(db: &Db, query: &Query, tx: &tokio::sync::mpsc::Sender<Batch>) {
    let mut batch: Batch = Vec::with_capacity(BATCH);
    let scanned = scan(db, query, |row| {
        batch.push(Ok(Reading::from(row_ref(row)?)));
        if batch.len() < BATCH {
            return Ok(true);
        }
        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        Ok(tx.blocking_send(full).is_ok())
    });
    // An error ends the stream after the rows read before it.
    if let Err(e) = scanned {
        batch.push(Err(e.into()));
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
}

/// A nullable text column, borrowed from the row.
fn text_or_null<'r>(row: &'r Row<'_>, i: usize) -> Result<Option<&'r str>, DbError> {
    Ok(row.get_ref(i)?.as_str_or_null().map_err(|e| {
        BackendError::Corrupt(format!("column {} of a reading: {e}", COLUMN_NAMES[i]))
    })?)
}

fn text<'r>(row: &'r Row<'_>, i: usize) -> Result<&'r str, DbError> {
    Ok(text_or_null(row, i)?.ok_or_else(|| {
        BackendError::Corrupt(format!("column {} of a reading is NULL", COLUMN_NAMES[i]))
    })?)
}

/// Renders the CSV of `query` straight from the rows SQLite hands out,
/// borrowing their text: no [`Reading`] is built, nothing is allocated per
/// row. Chunks go into `tx` until done or the receiver hangs up.
fn scan_csv(
    db: &Db,
    query: &Query,
    tx: &tokio::sync::mpsc::Sender<Result<AnswerChunk, BackendError>>,
) {
    let rendered = Chunker::new(query.rendering()).and_then(|mut chunker| {
        let mut open = true;
        scan(db, query, |row| {
            if let Some(chunk) = chunker.push(&row_ref(row)?)? {
                open = tx.blocking_send(Ok(chunk)).is_ok();
            }
            Ok(open)
        })?;
        Ok(open.then_some(chunker))
    });
    let last = match rendered {
        Ok(Some(chunker)) => chunker.finish(),
        Ok(None) => return,
        Err(e) => Err(e),
    };
    let _ = tx.blocking_send(last);
}

#[async_trait]
impl ReadingStore for SqliteReadingStore {
    async fn put_batch(&self, readings: Vec<Reading>) -> Result<(), BackendError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.put_batch_blocking(&readings))
            .await
            .map_err(DbError::from)?
    }

    fn query(&self, query: &Query) -> ReadingStream {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER / BATCH);
        let db = self.db.clone();
        let query = query.clone();
        tokio::task::spawn_blocking(move || scan_readings(&db, &query, &tx));
        ReceiverStream::new(rx)
            .flat_map(futures::stream::iter)
            .boxed()
    }

    fn query_answer(&self, query: &Query) -> AnswerStream {
        // A few chunks ahead of the consumer, at most.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let db = self.db.clone();
        let query = query.clone();
        tokio::task::spawn_blocking(move || scan_csv(&db, &query, &tx));
        ReceiverStream::new(rx).boxed()
    }

    fn latest(&self, _latest: &airq_core::LatestQuery) -> ReadingStream {
        futures::stream::once(async {
            Err(BackendError::Unsupported("latest: not built yet".into()))
        })
        .boxed()
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

    async fn ping(&self) -> Result<(), BackendError> {
        self.db
            .run(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}

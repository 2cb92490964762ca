//! The result store on SQLite. A CSV larger than [`INLINE_MAX`] is kept in
//! a file (see `bodies`) that the row names, like the AWS backend's large
//! results in S3.

use crate::bodies::{result_file, Kind, PayloadWriter, INLINE_MAX};
use crate::db::{Db, DbError};
use airq_core::client::ClientId;
use airq_core::error::BackendError;
use airq_core::query::Query;
use airq_core::reading::Timestamp;
use airq_core::results::{
    AnswerSink, ByteStream, Outcome, ResultRecord, ResultState, ResultStore, StoredAnswer,
    Submission,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use std::ops::Range;
use std::time::Duration;
use uuid::Uuid;

/// Bytes read from a result file at a time when serving it: each read is
/// a hop to the blocking pool, so small reads cost more than their
/// memory saves (a 28 MB download took 60 ms longer at 64 KiB).
const READ_CHUNK: usize = 256 * 1024;

/// Whether `key` names a result file of result `id` (one
/// [`result_file`] made): anything else in a message is refused.
fn is_file_of(id: Uuid, key: &str) -> bool {
    key.strip_prefix(&format!("{id}."))
        .and_then(|rest| rest.strip_suffix(".csv"))
        .is_some_and(|attempt| Uuid::parse_str(attempt).is_ok())
}

/// A result file being written by a worker (see [`PayloadWriter`]).
/// Chunks are gathered up to [`SINK_BATCH`] and each batch is written on
/// the blocking pool: one hop there per 32 KiB chunk made a 28 MB result
/// take about twice as long to store.
struct FileSink {
    writer: Option<PayloadWriter>,
    name: String,
    pending: Vec<u8>,
}

/// Bytes a [`FileSink`] gathers before it writes them.
const SINK_BATCH: usize = 1024 * 1024;

impl FileSink {
    /// Writes what is pending.
    async fn flush(&mut self) -> Result<(), BackendError> {
        let Some(mut writer) = self.writer.take() else {
            return Err(BackendError::Corrupt(format!(
                "{} was written after a failed write",
                self.name
            )));
        };
        let batch = std::mem::take(&mut self.pending);
        let (writer, batch, written) = blocking(move || {
            let r = writer.write(&batch);
            Ok((writer, batch, r))
        })
        .await?;
        self.writer = Some(writer);
        // The buffer is reused for the next batch.
        self.pending = batch;
        self.pending.clear();
        written
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackendError::from(DbError::from(e)))?
}

#[async_trait]
impl AnswerSink for FileSink {
    async fn write(&mut self, chunk: Bytes) -> Result<(), BackendError> {
        self.pending.extend_from_slice(&chunk);
        if self.pending.len() >= SINK_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<StoredAnswer, BackendError> {
        if !self.pending.is_empty() {
            self.flush().await?;
        }
        let writer = self.writer.take().ok_or_else(|| {
            BackendError::Corrupt(format!("{} was finished after a failed write", self.name))
        })?;
        let bytes = blocking(move || writer.finish()).await?;
        Ok(StoredAnswer {
            key: std::mem::take(&mut self.name),
            bytes,
        })
    }

    async fn abort(mut self: Box<Self>) {
        if let Some(writer) = self.writer.take() {
            // Dropping it deletes its temporary file.
            let _ = tokio::task::spawn_blocking(move || drop(writer)).await;
        }
    }
}

#[derive(Clone)]
pub struct SqliteResultStore {
    db: Db,
}

impl SqliteResultStore {
    pub fn new(db: Db) -> Self {
        SqliteResultStore { db }
    }
}

#[async_trait]
impl ResultStore for SqliteResultStore {
    async fn create(
        &self,
        id: Uuid,
        query: &Query,
        ttl: Duration,
        submission: &Submission,
    ) -> Result<(), BackendError> {
        let query = query.to_json();
        let client = submission.client.to_string();
        let request_id = submission.request_id.clone();
        self.db
            .run(move |conn| {
                let now = Timestamp::now().0;
                conn.prepare_cached(
                    "INSERT INTO results
                         (id, state, query, created_at, updated_at, expires_at, client, request_id)
                     VALUES (?1, 'queued', ?2, ?3, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    id.to_string(),
                    query,
                    now,
                    now + ttl.as_secs() as i64,
                    client,
                    request_id
                ])?;
                Ok(())
            })
            .await
    }

    async fn pending(&self, client: &ClientId, now: Timestamp) -> Result<u64, BackendError> {
        let client = client.to_string();
        self.db
            .run(move |conn| {
                // Served by the partial index results_pending_by_client
                // alone: its WHERE is repeated here word for word, which
                // is what lets SQLite use it.
                let n: i64 = conn
                    .prepare_cached(
                        "SELECT COUNT(*) FROM results
                         WHERE client = ?1 AND expires_at > ?2 AND state IN ('queued', 'running')",
                    )?
                    .query_row(params![client, now.0], |r| r.get(0))?;
                Ok(u64::try_from(n).unwrap_or(0))
            })
            .await
    }

    async fn get(&self, id: Uuid) -> Result<Option<ResultRecord>, BackendError> {
        let db = self.db.clone();
        self.db
            .run(move |conn| {
                let row = conn
                    .prepare_cached(
                        "SELECT state, query, created_at, updated_at, expires_at, rows, csv, error,
                         csv_file, client, request_id FROM results WHERE id = ?1",
                    )?
                    .query_row(params![id.to_string()], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            ResultRecord {
                                id,
                                state: ResultState::Queued,
                                query: r.get(1)?,
                                created_at: Timestamp(r.get(2)?),
                                updated_at: Timestamp(r.get(3)?),
                                expires_at: Timestamp(r.get(4)?),
                                rows: r.get::<_, Option<i64>>(5)?.map(|n| n as u64),
                                answer: r.get(6)?,
                                stored: None,
                                error: r.get(7)?,
                                client: None,
                                request_id: r.get(10)?,
                            },
                            r.get::<_, Option<String>>(8)?,
                            r.get::<_, Option<String>>(9)?,
                        ))
                    })
                    .optional()?;
                let Some((state, mut rec, file, client)) = row else {
                    return Ok(None);
                };
                rec.state = ResultState::parse(&state).ok_or_else(|| {
                    BackendError::Corrupt(format!("result {id} has unknown state {state:?}"))
                })?;
                rec.client = client
                    .map(|c| {
                        c.parse::<ClientId>().map_err(|e| {
                            BackendError::Corrupt(format!("result {id} has a bad client: {e}"))
                        })
                    })
                    .transpose()?;
                if let Some(file) = file {
                    // Not read here: the gateway streams it (open_answer).
                    rec.stored = db
                        .bodies()
                        .size(Kind::Result, &file)?
                        .map(|bytes| StoredAnswer { key: file, bytes });
                    // The purge may have deleted the file of an expired
                    // result since the row was read; a live one must have it.
                    if rec.stored.is_none() && !rec.is_expired(Timestamp::now()) {
                        return Err(BackendError::Corrupt(format!(
                            "the CSV file of result {id} is missing"
                        ))
                        .into());
                    }
                }
                Ok(Some(rec))
            })
            .await
    }

    async fn mark_running(&self, id: Uuid) -> Result<(), BackendError> {
        self.db
            .run(move |conn| {
                conn.prepare_cached(
                    "UPDATE results SET state = 'running', updated_at = ?2
                     WHERE id = ?1 AND state = 'queued'",
                )?
                .execute(params![id.to_string(), Timestamp::now().0])?;
                Ok(())
            })
            .await
    }

    async fn finish(&self, id: Uuid, outcome: &Outcome) -> Result<bool, BackendError> {
        let outcome = outcome.clone();
        let db = self.db.clone();
        self.db
            .run(move |conn| {
                let now = Timestamp::now().0;
                // The columns `csv` and `csv_file` hold an answer of any
                // format: stored names, from when every answer was CSV.
                let (state, rows, mut csv, error, mut file) = match outcome {
                    Outcome::Done { answer, rows } => {
                        ("done", Some(rows as i64), Some(answer), None, None)
                    }
                    Outcome::Stored { answer: csv, rows } => {
                        if !is_file_of(id, &csv.key) {
                            return Err(BackendError::Corrupt(format!(
                                "result {id}: {:?} is not a result file this backend made for it",
                                csv.key
                            ))
                            .into());
                        }
                        ("done", Some(rows as i64), None, None, Some(csv.key))
                    }
                    Outcome::Failed { error } => ("failed", None, None, Some(error), None),
                };
                // A large CSV sent inline (by a worker of an earlier
                // version) goes to a file of its own first (named for this
                // attempt, so a duplicate delivery never overwrites a file
                // a user may be downloading), then the row names it.
                if let Some(big) = csv.take_if(|c| c.len() > INLINE_MAX) {
                    let name = result_file(id, Uuid::new_v4());
                    db.bodies().write(Kind::Result, &name, big.as_bytes())?;
                    file = Some(name);
                }
                let updated = conn
                    .prepare_cached(
                        "UPDATE results SET state = ?2, rows = ?3, csv = ?4, error = ?5, updated_at = ?6,
                         csv_file = ?7 WHERE id = ?1 AND state IN ('queued', 'running')",
                    )
                    .and_then(|mut stmt| {
                        stmt.execute(params![id.to_string(), state, rows, csv, error, now, file])
                    });
                let recorded = matches!(updated, Ok(1));
                updated?;
                if recorded {
                    return Ok(true);
                }
                let Some(name) = &file else {
                    return Ok(false);
                };
                // Not recorded: a duplicate, or this very outcome recorded
                // before (a collector that died before deleting its
                // message). Only a file no row names is deleted.
                let ours = conn
                    .prepare_cached("SELECT csv_file FROM results WHERE id = ?1")?
                    .query_row(params![id.to_string()], |r| r.get::<_, Option<String>>(0))
                    .optional()?
                    .flatten()
                    .as_deref()
                    == Some(name.as_str());
                if !ours {
                    db.bodies().remove(Kind::Result, name);
                }
                Ok(ours)
            })
            .await
    }

    fn inline_max(&self) -> usize {
        INLINE_MAX
    }

    async fn create_answer(&self, id: Uuid) -> Result<Box<dyn AnswerSink>, BackendError> {
        let db = self.db.clone();
        let name = result_file(id, Uuid::new_v4());
        let file = name.clone();
        let writer = blocking(move || db.bodies().create(Kind::Result, &file)).await?;
        Ok(Box::new(FileSink {
            writer: Some(writer),
            name,
            pending: Vec::with_capacity(SINK_BATCH + 64 * 1024),
        }))
    }

    async fn open_answer(
        &self,
        csv: &StoredAnswer,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, BackendError> {
        let db = self.db.clone();
        let name = csv.key.clone();
        let range = range.unwrap_or(0..csv.bytes);
        let start = range.start;
        let file = blocking(move || db.bodies().open_at(Kind::Result, &name, start)).await?;
        let Some(file) = file else {
            return Err(BackendError::Corrupt(format!(
                "the result file {} is missing",
                csv.key
            )));
        };
        let len = range.end.saturating_sub(range.start);
        let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), len);
        let key = csv.key.clone();
        Ok(
            tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK)
                .map(move |chunk| {
                    chunk.map_err(|e| crate::bodies::io_error(format!("reading {key}"), e))
                })
                .boxed(),
        )
    }

    async fn check_writable(&self) -> Result<(), BackendError> {
        let db = self.db.clone();
        blocking(move || db.bodies().check_writable()).await
    }

    async fn purge_expired(
        &self,
        now: Timestamp,
        forget_after: Duration,
    ) -> Result<u64, BackendError> {
        let db = self.db.clone();
        self.db
            .run(move |conn| {
                // Immediate: the files are listed and their rows cleared
                // under one write lock (RETURNING would give the new NULLs).
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let files = tx
                    .prepare_cached(
                        "SELECT csv_file FROM results
                         WHERE expires_at <= ?1 AND csv_file IS NOT NULL",
                    )?
                    .query_map(params![now.0], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                let dropped = tx
                    .prepare_cached(
                        "UPDATE results SET csv = NULL, csv_file = NULL
                         WHERE expires_at <= ?1 AND (csv IS NOT NULL OR csv_file IS NOT NULL)",
                    )?
                    .execute(params![now.0])?;
                let forgotten = tx
                    .prepare_cached("DELETE FROM results WHERE expires_at <= ?1")?
                    .execute(params![now.0 - forget_after.as_secs() as i64])?;
                tx.commit()?;
                for name in &files {
                    db.bodies().remove(Kind::Result, name);
                }
                let orphans = db.sweep_bodies(conn)?;
                if orphans > 0 {
                    tracing::info!(orphans, "deleted payload files no row refers to");
                }
                Ok((dropped + forgotten) as u64)
            })
            .await
    }
}

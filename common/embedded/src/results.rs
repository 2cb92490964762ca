//! The result store on SQLite. A CSV larger than [`INLINE_MAX`] is kept in
//! a file (see `bodies`) that the row names, like the AWS backend's large
//! results in S3.

use crate::bodies::{result_file, Kind, INLINE_MAX};
use crate::db::Db;
use airq_core::error::BackendError;
use airq_core::query::Query;
use airq_core::reading::Timestamp;
use airq_core::results::{Outcome, ResultRecord, ResultState, ResultStore};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use std::time::Duration;
use uuid::Uuid;

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
    async fn create(&self, id: Uuid, query: &Query, ttl: Duration) -> Result<(), BackendError> {
        let query = query.to_json();
        self.db
            .run(move |conn| {
                let now = Timestamp::now().0;
                conn.prepare_cached(
                    "INSERT INTO results (id, state, query, created_at, updated_at, expires_at)
                     VALUES (?1, 'queued', ?2, ?3, ?3, ?4)",
                )?
                .execute(params![
                    id.to_string(),
                    query,
                    now,
                    now + ttl.as_secs() as i64
                ])?;
                Ok(())
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
                         csv_file FROM results WHERE id = ?1",
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
                                csv: r.get(6)?,
                                error: r.get(7)?,
                            },
                            r.get::<_, Option<String>>(8)?,
                        ))
                    })
                    .optional()?;
                let Some((state, mut rec, file)) = row else {
                    return Ok(None);
                };
                rec.state = ResultState::parse(&state).ok_or_else(|| {
                    BackendError::Corrupt(format!("result {id} has unknown state {state:?}"))
                })?;
                if let Some(file) = file {
                    rec.csv = db.bodies().read(Kind::Result, &file)?;
                    // The purge may have deleted the file of an expired
                    // result since the row was read; a live one must have it.
                    if rec.csv.is_none() && !rec.is_expired(Timestamp::now()) {
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
                let (state, rows, mut csv, error) = match outcome {
                    Outcome::Done { csv, rows } => ("done", Some(rows as i64), Some(csv), None),
                    Outcome::Failed { error } => ("failed", None, None, Some(error)),
                };
                // A large CSV goes to a file of its own first (named for
                // this attempt, so a duplicate delivery never overwrites a
                // file a user may be downloading), then the row names it.
                let file = match csv.take_if(|c| c.len() > INLINE_MAX) {
                    Some(big) => {
                        let name = result_file(id, Uuid::new_v4());
                        db.bodies().write(Kind::Result, &name, big.as_bytes())?;
                        Some(name)
                    }
                    None => None,
                };
                let updated = conn
                    .prepare_cached(
                        "UPDATE results SET state = ?2, rows = ?3, csv = ?4, error = ?5, updated_at = ?6,
                         csv_file = ?7 WHERE id = ?1 AND state IN ('queued', 'running')",
                    )
                    .and_then(|mut stmt| {
                        stmt.execute(params![id.to_string(), state, rows, csv, error, now, file])
                    });
                let recorded = matches!(updated, Ok(1));
                if !recorded {
                    if let Some(name) = &file {
                        db.bodies().remove(Kind::Result, name);
                    }
                }
                updated?;
                Ok(recorded)
            })
            .await
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

//! The result store on SQLite.

use super::db::Db;
use crate::error::BackendError;
use crate::query::Query;
use crate::reading::Timestamp;
use crate::results::{Outcome, ResultRecord, ResultState, ResultStore};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
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
        self.db
            .run(move |conn| {
                let row = conn
                    .prepare_cached(
                        "SELECT state, query, created_at, updated_at, expires_at, rows, csv, error
                         FROM results WHERE id = ?1",
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
                        ))
                    })
                    .optional()?;
                row.map(|(state, mut rec)| {
                    rec.state = ResultState::parse(&state).ok_or_else(|| {
                        BackendError::Corrupt(format!("result {id} has unknown state {state:?}"))
                    })?;
                    Ok(rec)
                })
                .transpose()
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
        self.db
            .run(move |conn| {
                let now = Timestamp::now().0;
                let (state, rows, csv, error) = match outcome {
                    Outcome::Done { csv, rows } => ("done", Some(rows as i64), Some(csv), None),
                    Outcome::Failed { error } => ("failed", None, None, Some(error)),
                };
                let n = conn
                    .prepare_cached(
                        "UPDATE results SET state = ?2, rows = ?3, csv = ?4, error = ?5, updated_at = ?6
                         WHERE id = ?1 AND state IN ('queued', 'running')",
                    )?
                    .execute(params![id.to_string(), state, rows, csv, error, now])?;
                Ok(n == 1)
            })
            .await
    }

    async fn purge_expired(
        &self,
        now: Timestamp,
        forget_after: Duration,
    ) -> Result<u64, BackendError> {
        self.db
            .run(move |conn| {
                let dropped = conn
                    .prepare_cached(
                        "UPDATE results SET csv = NULL WHERE expires_at <= ?1 AND csv IS NOT NULL",
                    )?
                    .execute(params![now.0])?;
                let forgotten = conn
                    .prepare_cached("DELETE FROM results WHERE expires_at <= ?1")?
                    .execute(params![now.0 - forget_after.as_secs() as i64])?;
                Ok((dropped + forgotten) as u64)
            })
            .await
    }
}

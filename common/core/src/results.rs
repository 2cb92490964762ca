//! The result store port: what became of each queued query, kept where any
//! gateway can serve it until it expires.

use crate::error::BackendError;
use crate::query::Query;
use crate::reading::Timestamp;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;
use uuid::Uuid;

/// How long a result is kept by default.
pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultState {
    Queued,
    Running,
    Done,
    Failed,
}

impl ResultState {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultState::Queued => "queued",
            ResultState::Running => "running",
            ResultState::Done => "done",
            ResultState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Done, Self::Failed]
            .into_iter()
            .find(|st| st.as_str() == s)
    }

    /// Done or failed: nothing will change it any more.
    pub fn is_final(self) -> bool {
        matches!(self, ResultState::Done | ResultState::Failed)
    }
}

impl fmt::Display for ResultState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a query ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Done { csv: String, rows: u64 },
    Failed { error: String },
}

/// One result as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRecord {
    pub id: Uuid,
    pub state: ResultState,
    /// The query, in its canonical JSON form.
    pub query: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: Timestamp,
    /// Data rows in the CSV, once done.
    pub rows: Option<u64>,
    /// The CSV, once done (`None` after it expired and was purged).
    pub csv: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

impl ResultRecord {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }
}

#[async_trait]
pub trait ResultStore: Send + Sync + 'static {
    /// Records a newly queued query.
    async fn create(&self, id: Uuid, query: &Query, ttl: Duration) -> Result<(), BackendError>;

    /// The record, expired or not (callers tell "expired" from "unknown").
    async fn get(&self, id: Uuid) -> Result<Option<ResultRecord>, BackendError>;

    /// Queued → running. Does nothing in any other state.
    async fn mark_running(&self, id: Uuid) -> Result<(), BackendError>;

    /// Records the outcome unless one is recorded already, so a duplicate
    /// delivery never replaces a result a user may have downloaded. Returns
    /// whether this call recorded it.
    async fn finish(&self, id: Uuid, outcome: &Outcome) -> Result<bool, BackendError>;

    /// Checks that the store keeps a result's data for at least `ttl`, so
    /// that no result loses its CSV before it expires. A
    /// [`BackendError::Schema`] means it does not; other errors mean the
    /// check could not be made. Stores that keep everything until
    /// [`ResultStore::purge_expired`] need not override it.
    async fn check_retention(&self, _ttl: Duration) -> Result<(), BackendError> {
        Ok(())
    }

    /// Drops the data of results expired before `now` (keeping a tombstone
    /// so they still answer "expired"), and forgets tombstones older than
    /// `forget_after`. Returns how many records were touched.
    async fn purge_expired(
        &self,
        now: Timestamp,
        forget_after: Duration,
    ) -> Result<u64, BackendError>;
}

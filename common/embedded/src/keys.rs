//! The key store on SQLite: one row per key in `api_keys`, keyed by the
//! key's hash (the key itself is never stored, see `airq_core::keys`).

use crate::db::{Db, DbError};
use airq_core::error::BackendError;
use airq_core::keys::{KeyHash, KeyLimits, KeyRecord, KeyStore};
use airq_core::reading::Timestamp;
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};
use uuid::Uuid;

/// The columns [`record`] decodes, in its order.
const COLUMNS: &str = "hash, id, name, tier, limits, created_at, revoked_at";

/// A row as read, before its text fields are checked.
struct RawKey {
    hash: String,
    id: String,
    name: String,
    tier: String,
    limits: Option<String>,
    created_at: i64,
    revoked_at: Option<i64>,
}

fn raw(r: &Row<'_>) -> rusqlite::Result<RawKey> {
    Ok(RawKey {
        hash: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        tier: r.get(3)?,
        limits: r.get(4)?,
        created_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

/// A row as a record; a field that does not decode is
/// [`BackendError::Corrupt`].
fn record(raw: RawKey) -> Result<KeyRecord, DbError> {
    let id = Uuid::parse_str(&raw.id).map_err(|_| {
        BackendError::Corrupt(format!("a stored key id is not a UUID: {:?}", raw.id))
    })?;
    let limits = match raw.limits {
        None => KeyLimits::default(),
        Some(json) => serde_json::from_str(&json).map_err(|e| {
            BackendError::Corrupt(format!("the limits of key {id} do not decode: {e}"))
        })?,
    };
    Ok(KeyRecord {
        id,
        hash: KeyHash::from_stored(raw.hash)?,
        name: raw.name,
        tier: raw.tier,
        limits,
        created_at: Timestamp(raw.created_at),
        revoked_at: raw.revoked_at.map(Timestamp),
    })
}

/// Keys in the database file. Cheap to clone.
#[derive(Clone)]
pub struct SqliteKeyStore {
    db: Db,
}

impl SqliteKeyStore {
    pub fn new(db: Db) -> Self {
        SqliteKeyStore { db }
    }
}

#[async_trait]
impl KeyStore for SqliteKeyStore {
    async fn insert(&self, key: &KeyRecord) -> Result<(), BackendError> {
        let limits = if key.limits.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&key.limits).map_err(|e| {
                BackendError::Corrupt(format!("encoding the limits of key {}: {e}", key.id))
            })?)
        };
        let key = key.clone();
        self.db
            .run(move |conn| {
                conn.prepare_cached(&format!(
                    "INSERT INTO api_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ))?
                .execute(params![
                    key.hash.as_str(),
                    key.id.to_string(),
                    key.name,
                    key.tier,
                    limits,
                    key.created_at.0,
                    key.revoked_at.map(|t| t.0),
                ])?;
                Ok(())
            })
            .await
    }

    async fn find(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, BackendError> {
        let hash = hash.as_str().to_owned();
        self.db
            .run(move |conn| {
                conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE hash = ?1"))?
                    .query_row(params![hash], raw)
                    .optional()?
                    .map(record)
                    .transpose()
            })
            .await
    }

    async fn list(&self) -> Result<Vec<KeyRecord>, BackendError> {
        self.db
            .run(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"
                ))?
                .query_map([], raw)?
                .map(|r| record(r?))
                .collect()
            })
            .await
    }

    async fn revoke(&self, id: Uuid, at: Timestamp) -> Result<Option<KeyRecord>, BackendError> {
        self.db
            .run(move |conn| {
                conn.prepare_cached(&format!(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1
                     RETURNING {COLUMNS}"
                ))?
                .query_row(params![id.to_string(), at.0], raw)
                .optional()?
                .map(record)
                .transpose()
            })
            .await
    }
}

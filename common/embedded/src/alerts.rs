//! The alert store on SQLite: `alerts` (one row per alert: its owner, its
//! spec as canonical JSON, its secret and its evaluation state) and
//! `alert_deliveries` (one row per webhook message, with its attempts).
//!
//! An evaluation's transition is a compare-and-set on the state's
//! `version` with the delivery inserted in the same transaction, so of two
//! gateways evaluating one data version, one sends the event. A delivery is
//! claimed by setting `lease_ms` (another gateway skips it until then) and
//! recorded when its attempt ends. Each alert keeps its
//! [`KEPT_DELIVERIES`] newest finished deliveries; older ones are deleted
//! as new ones come.

use crate::db::{Db, DbError};
use airq_core::alert::{
    Alert, AlertSpec, AlertState, AlertStore, Delivery, DeliveryState, DueDelivery, Refused,
};
use airq_core::error::BackendError;
use airq_core::reading::Timestamp;
use async_trait::async_trait;
use rusqlite::{params, Row, Transaction, TransactionBehavior};
use uuid::Uuid;

/// Finished deliveries kept per alert, for its owner to see.
pub const KEPT_DELIVERIES: usize = 50;

/// Migration 8: the two tables, alerts by owner (the per-key cap), and the
/// due pending deliveries.
pub(crate) fn create_tables(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.execute_batch(
        "CREATE TABLE alerts (
             id          TEXT    PRIMARY KEY,
             owner       TEXT    NOT NULL,
             spec        TEXT    NOT NULL,
             secret      TEXT    NOT NULL,
             created_at  INTEGER NOT NULL,
             inside      INTEGER NOT NULL DEFAULT 0,
             entered_at  INTEGER,
             version     INTEGER NOT NULL DEFAULT 0,
             value       INTEGER,
             suppressed  INTEGER NOT NULL DEFAULT 0
         ) WITHOUT ROWID;
         CREATE INDEX alerts_by_owner ON alerts (owner);
         CREATE TABLE alert_deliveries (
             id          TEXT    PRIMARY KEY,
             alert       TEXT    NOT NULL,
             event       TEXT    NOT NULL,
             body        TEXT    NOT NULL,
             created_ms  INTEGER NOT NULL,
             attempts    INTEGER NOT NULL,
             next_ms     INTEGER NOT NULL,
             lease_ms    INTEGER NOT NULL DEFAULT 0,
             state       TEXT    NOT NULL,
             last_status INTEGER,
             last_error  TEXT,
             finished_ms INTEGER
         ) WITHOUT ROWID;
         CREATE INDEX alert_deliveries_due ON alert_deliveries (next_ms) WHERE state = 'pending';
         CREATE INDEX alert_deliveries_by_alert ON alert_deliveries (alert, created_ms);",
    )?;
    Ok(())
}

const ALERT_COLUMNS: &str =
    "id, owner, spec, secret, created_at, inside, entered_at, version, value, suppressed";
const DELIVERY_COLUMNS: &str = "id, alert, event, body, created_ms, attempts, next_ms, state, \
     last_status, last_error, finished_ms";

fn corrupt(what: String) -> DbError {
    DbError(BackendError::Corrupt(what))
}

fn uuid(text: &str, what: &str) -> Result<Uuid, DbError> {
    Uuid::parse_str(text).map_err(|_| corrupt(format!("{what} is not a UUID: {text:?}")))
}

fn alert_of(r: &Row<'_>) -> Result<(Alert, AlertState), DbError> {
    let id: String = r.get(0)?;
    let id = uuid(&id, "an alert id")?;
    let owner: String = r.get(1)?;
    let spec: String = r.get(2)?;
    let spec = AlertSpec::from_stored(&spec)
        .map_err(|e| corrupt(format!("alert {id}'s spec does not read back: {e}")))?;
    let alert = Alert {
        id,
        owner: uuid(&owner, "an alert's owner")?,
        spec,
        secret: r.get(3)?,
        created_at: Timestamp(r.get(4)?),
    };
    let value: Option<i64> = r.get(8)?;
    let state = AlertState {
        inside: r.get(5)?,
        entered_at: r.get::<_, Option<i64>>(6)?.map(Timestamp),
        version: u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
        value: value.and_then(|v| u16::try_from(v).ok()),
        suppressed: u64::try_from(r.get::<_, i64>(9)?).unwrap_or(0),
    };
    Ok((alert, state))
}

fn delivery_of(r: &Row<'_>) -> Result<Delivery, DbError> {
    let id: String = r.get(0)?;
    let alert: String = r.get(1)?;
    let state: String = r.get(7)?;
    Ok(Delivery {
        id: uuid(&id, "a delivery id")?,
        alert: uuid(&alert, "a delivery's alert")?,
        event: r.get(2)?,
        body: r.get(3)?,
        created_ms: r.get(4)?,
        attempts: r.get(5)?,
        next_ms: r.get(6)?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| corrupt(format!("a delivery's state is {state:?}")))?,
        last_status: r.get::<_, Option<u16>>(8)?,
        last_error: r.get(9)?,
        finished_ms: r.get(10)?,
    })
}

fn insert_delivery(tx: &Transaction<'_>, d: &Delivery) -> Result<(), DbError> {
    tx.prepare_cached(&format!(
        "INSERT INTO alert_deliveries ({DELIVERY_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        d.id.to_string(),
        d.alert.to_string(),
        d.event,
        d.body,
        d.created_ms,
        d.attempts,
        d.next_ms,
        d.state.as_str(),
        d.last_status,
        d.last_error,
        d.finished_ms,
    ])?;
    // The alert's oldest finished deliveries past the ones kept.
    tx.prepare_cached(
        "DELETE FROM alert_deliveries WHERE alert = ?1 AND state != 'pending' AND id IN (
             SELECT id FROM alert_deliveries WHERE alert = ?1
             ORDER BY created_ms DESC LIMIT -1 OFFSET ?2)",
    )?
    .execute(params![d.alert.to_string(), KEPT_DELIVERIES as i64])?;
    Ok(())
}

/// Alerts in the database file. Cheap to clone.
#[derive(Clone)]
pub struct SqliteAlertStore {
    db: Db,
}

impl SqliteAlertStore {
    pub fn new(db: Db) -> Self {
        SqliteAlertStore { db }
    }
}

#[async_trait]
impl AlertStore for SqliteAlertStore {
    async fn create(
        &self,
        alert: &Alert,
        per_owner: u32,
        total: u32,
    ) -> Result<Result<(), Refused>, BackendError> {
        let alert = alert.clone();
        self.db
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let owned: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM alerts WHERE owner = ?1",
                    [alert.owner.to_string()],
                    |r| r.get(0),
                )?;
                if owned >= i64::from(per_owner) {
                    return Ok(Err(Refused::OwnerFull { max: per_owner }));
                }
                let all: i64 = tx.query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))?;
                if all >= i64::from(total) {
                    return Ok(Err(Refused::StoreFull { max: total }));
                }
                tx.execute(
                    &format!(
                        "INSERT INTO alerts ({ALERT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, 0, NULL, 0, NULL, 0)"
                    ),
                    params![
                        alert.id.to_string(),
                        alert.owner.to_string(),
                        alert.spec.to_json().to_string(),
                        alert.secret,
                        alert.created_at.0,
                    ],
                )?;
                tx.commit()?;
                Ok(Ok(()))
            })
            .await
    }

    async fn get(&self, id: Uuid) -> Result<Option<(Alert, AlertState)>, BackendError> {
        self.db
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"))?;
                let mut rows = stmt.query([id.to_string()])?;
                match rows.next()? {
                    Some(r) => Ok(Some(alert_of(r)?)),
                    None => Ok(None),
                }
            })
            .await
    }

    async fn delete(&self, id: Uuid, owner: Uuid) -> Result<bool, BackendError> {
        self.db
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let gone = tx.execute(
                    "DELETE FROM alerts WHERE id = ?1 AND owner = ?2",
                    [id.to_string(), owner.to_string()],
                )? == 1;
                if gone {
                    tx.execute(
                        "DELETE FROM alert_deliveries WHERE alert = ?1",
                        [id.to_string()],
                    )?;
                }
                tx.commit()?;
                Ok(gone)
            })
            .await
    }

    async fn all(&self) -> Result<Vec<(Alert, AlertState)>, BackendError> {
        self.db
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts ORDER BY id"))?;
                let mut rows = stmt.query([])?;
                let mut all = Vec::new();
                while let Some(r) = rows.next()? {
                    // One alert that does not read back (a spec an older
                    // airq accepted, say) must not stop the others.
                    match alert_of(r) {
                        Ok(alert) => all.push(alert),
                        Err(e) => tracing::warn!(error = %e.0, "skipping an alert that does not read back"),
                    }
                }
                Ok(all)
            })
            .await
    }

    async fn transition(
        &self,
        id: Uuid,
        from: u64,
        to: &AlertState,
        delivery: Option<&Delivery>,
    ) -> Result<bool, BackendError> {
        let to = *to;
        let delivery = delivery.cloned();
        self.db
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let moved = tx.execute(
                    "UPDATE alerts SET inside = ?3, entered_at = ?4, version = ?5, value = ?6,
                         suppressed = ?7
                     WHERE id = ?1 AND version = ?2",
                    params![
                        id.to_string(),
                        i64::try_from(from).unwrap_or(i64::MAX),
                        to.inside,
                        to.entered_at.map(|t| t.0),
                        i64::try_from(to.version).unwrap_or(i64::MAX),
                        to.value,
                        i64::try_from(to.suppressed).unwrap_or(i64::MAX),
                    ],
                )? == 1;
                if moved {
                    if let Some(d) = &delivery {
                        insert_delivery(&tx, d)?;
                    }
                }
                tx.commit()?;
                Ok(moved)
            })
            .await
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        max: usize,
    ) -> Result<Vec<DueDelivery>, BackendError> {
        self.db
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut due = Vec::new();
                {
                    let columns = DELIVERY_COLUMNS
                        .split(", ")
                        .map(|c| format!("d.{}", c.trim()))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let mut stmt = tx.prepare_cached(&format!(
                        "SELECT {columns}, a.spec, a.secret
                         FROM alert_deliveries d INDEXED BY alert_deliveries_due
                         JOIN alerts a ON a.id = d.alert
                         WHERE d.state = 'pending' AND d.next_ms <= ?1 AND d.lease_ms <= ?1
                         ORDER BY d.next_ms LIMIT ?2"
                    ))?;
                    let mut rows = stmt.query(params![now_ms, max as i64])?;
                    while let Some(r) = rows.next()? {
                        let delivery = delivery_of(r)?;
                        let spec: String = r.get(11)?;
                        let url = serde_json::from_str::<serde_json::Value>(&spec)
                            .ok()
                            .and_then(|v| v["webhookUrl"].as_str().map(str::to_owned))
                            .ok_or_else(|| {
                                corrupt(format!(
                                    "alert {}'s spec has no webhookUrl",
                                    delivery.alert
                                ))
                            })?;
                        due.push(DueDelivery {
                            delivery,
                            url,
                            secret: r.get(12)?,
                            lease_ms,
                        });
                    }
                }
                {
                    let mut lease = tx.prepare_cached(
                        "UPDATE alert_deliveries SET lease_ms = ?2 WHERE id = ?1",
                    )?;
                    for d in &due {
                        lease.execute(params![d.delivery.id.to_string(), lease_ms])?;
                    }
                }
                tx.commit()?;
                Ok(due)
            })
            .await
    }

    async fn record(&self, d: &Delivery, lease_ms: i64) -> Result<bool, BackendError> {
        let d = d.clone();
        self.db
            .run(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE alert_deliveries SET attempts = ?2, next_ms = ?3, state = ?4,
                             last_status = ?5, last_error = ?6, finished_ms = ?7, lease_ms = 0
                         WHERE id = ?1 AND lease_ms = ?8 AND state = 'pending'",
                    )?
                    .execute(params![
                        d.id.to_string(),
                        d.attempts,
                        d.next_ms,
                        d.state.as_str(),
                        d.last_status,
                        d.last_error,
                        d.finished_ms,
                        lease_ms,
                    ])?;
                Ok(changed == 1)
            })
            .await
    }

    async fn deliveries(&self, alert: Uuid, last: usize) -> Result<Vec<Delivery>, BackendError> {
        self.db
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries
                     WHERE alert = ?1 ORDER BY created_ms DESC, id LIMIT ?2"
                ))?;
                let mut rows = stmt.query(params![alert.to_string(), last as i64])?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(delivery_of(r)?);
                }
                Ok(out)
            })
            .await
    }
}

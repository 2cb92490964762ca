//! SQS-style queues on SQLite.
//!
//! A message row carries its queue's name, when it next becomes visible and
//! the receipt of its latest receive. Receiving is one short write
//! transaction; waiting is a cheap read-only poll (so idle consumers do not
//! contend for the write lock) plus an in-process wake-up on send.

use super::db::Db;
use crate::error::BackendError;
use crate::queue::{Message, Queue, QueueDepth, Receipt};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use uuid::Uuid;

/// How often a waiting consumer looks for messages sent by other processes.
/// Well under the 100 ms a new message may wait before someone notices it.
const POLL_INTERVAL: Duration = Duration::from_millis(40);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Redrive policy: after `max_receives` receives, the next receive moves the
/// message to `dead_letter` instead of delivering it.
#[derive(Debug, Clone)]
pub struct Redrive {
    pub dead_letter: String,
    pub max_receives: u32,
}

#[derive(Clone)]
pub struct SqliteQueue {
    db: Db,
    name: Arc<str>,
    redrive: Option<Redrive>,
    sent: Arc<Notify>,
}

impl SqliteQueue {
    pub fn new(db: Db, name: &str, redrive: Option<Redrive>) -> Self {
        SqliteQueue {
            db,
            name: name.into(),
            redrive,
            sent: Arc::new(Notify::new()),
        }
    }

    /// One receive attempt: claims up to `max` visible messages.
    fn try_receive(&self, max: usize, visibility: Duration) -> Result<Vec<Message>, BackendError> {
        let mut conn = self.db.conn()?;
        let now = now_ms();
        // Read-only look first: most polls find nothing, and need no lock.
        let any: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM queue_messages WHERE queue = ?1 AND visible_at <= ?2)",
            params![&*self.name, now],
            |r| r.get(0),
        )?;
        if !any {
            return Ok(Vec::new());
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::new();
        {
            let mut pick = tx.prepare_cached(
                "SELECT seq, id, body, receive_count FROM queue_messages
                 WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, seq LIMIT ?3",
            )?;
            let candidates = pick
                .query_map(params![&*self.name, now, (max as i64) * 2], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, u32>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut deliver = tx.prepare_cached(
                "UPDATE queue_messages SET receive_count = receive_count + 1, receipt = ?2,
                 visible_at = ?3 WHERE seq = ?1",
            )?;
            let mut dead_letter = tx.prepare_cached(
                "UPDATE queue_messages SET queue = ?2, receive_count = 0, receipt = NULL,
                 visible_at = ?3 WHERE seq = ?1",
            )?;
            for (seq, id, body, count) in candidates {
                if out.len() == max {
                    break;
                }
                if let Some(r) = self.redrive.as_ref().filter(|r| count >= r.max_receives) {
                    tracing::warn!(queue = %self.name, message = %id, receives = count,
                        dead_letter = %r.dead_letter, "moving message to the dead-letter queue");
                    dead_letter.execute(params![seq, r.dead_letter, now])?;
                    continue;
                }
                let receipt = Uuid::new_v4().to_string();
                deliver.execute(params![seq, receipt, now + ms(visibility)])?;
                out.push(Message {
                    id,
                    body,
                    receipt: Receipt(receipt),
                    receive_count: count + 1,
                });
            }
        }
        tx.commit()?;
        Ok(out)
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, body: &str) -> Result<String, BackendError> {
        let id = Uuid::new_v4().to_string();
        let (name, body, msg_id) = (self.name.clone(), body.to_owned(), id.clone());
        self.db
            .run(move |conn| {
                let now = now_ms();
                conn.prepare_cached(
                    "INSERT INTO queue_messages (queue, id, body, sent_at, visible_at)
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                )?
                .execute(params![&*name, msg_id, body, now])?;
                Ok(())
            })
            .await?;
        self.sent.notify_waiters();
        Ok(id)
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Message>, BackendError> {
        let max = max.clamp(1, 10);
        let deadline = Instant::now() + wait;
        loop {
            // Register for the wake-up before looking, so a send between the
            // look and the wait is not missed.
            let notified = self.sent.notified();
            let this = self.clone();
            let got =
                tokio::task::spawn_blocking(move || this.try_receive(max, visibility)).await??;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let nap = POLL_INTERVAL.min(deadline - now);
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn delete(&self, receipt: &Receipt) -> Result<(), BackendError> {
        let (name, receipt) = (self.name.clone(), receipt.0.clone());
        self.db
            .run(move |conn| {
                let n = conn
                    .prepare_cached("DELETE FROM queue_messages WHERE queue = ?1 AND receipt = ?2")?
                    .execute(params![&*name, receipt])?;
                if n == 0 {
                    return Err(BackendError::StaleReceipt);
                }
                Ok(())
            })
            .await
    }

    async fn change_visibility(
        &self,
        receipt: &Receipt,
        visibility: Duration,
    ) -> Result<(), BackendError> {
        let (name, receipt) = (self.name.clone(), receipt.0.clone());
        let changed = self
            .db
            .run(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE queue_messages SET visible_at = ?3 WHERE queue = ?1 AND receipt = ?2",
                    )?
                    .execute(params![&*name, receipt, now_ms() + ms(visibility)])?;
                if n == 0 {
                    return Err(BackendError::StaleReceipt);
                }
                Ok(())
            })
            .await;
        if changed.is_ok() && visibility.is_zero() {
            self.sent.notify_waiters();
        }
        changed
    }

    async fn depth(&self) -> Result<QueueDepth, BackendError> {
        let name = self.name.clone();
        self.db
            .run(move |conn| {
                let now = now_ms();
                let row = conn
                    .prepare_cached(
                        "SELECT COALESCE(SUM(visible_at <= ?2), 0), COALESCE(SUM(visible_at > ?2), 0)
                         FROM queue_messages WHERE queue = ?1",
                    )?
                    .query_row(params![&*name, now], |r| {
                        Ok(QueueDepth {
                            visible: r.get::<_, i64>(0)? as u64,
                            in_flight: r.get::<_, i64>(1)? as u64,
                        })
                    })
                    .optional()?;
                Ok(row.unwrap_or_default())
            })
            .await
    }
}

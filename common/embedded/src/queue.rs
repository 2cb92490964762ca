//! SQS-style queues on SQLite.
//!
//! A message row carries its queue's name, when it next becomes visible and
//! the receipt of its latest receive. Receiving is one short write
//! transaction; waiting is a cheap read-only look, repeated when a sender
//! rings the queue's bell (see `bells`: at once, also across processes)
//! and otherwise at a slow poll (so idle consumers neither spin nor contend
//! for the write lock). A body larger than [`INLINE_MAX`] is kept in a file
//! (see `bodies`), like the AWS backend's messages offloaded to S3.

use crate::bodies::{Kind, INLINE_MAX};
use crate::db::{Db, DbError};
use airq_core::error::BackendError;
use airq_core::queue::{Message, Queue, QueueDepth, Receipt};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// How often a waiting consumer looks for messages when the bells are
/// watched: only what rings no bell waits for it (a message whose
/// visibility timeout ran out, a retry's pause), and an idle process looks
/// ten times a second.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The same where the bells cannot be watched: every message from another
/// process waits for a look, half of this on average per queue crossed.
/// 10 ms, for about 2 % of a core per idle process (40 ms cost 31 ms more
/// per queued answer; BENCHMARKS.md).
const POLL_INTERVAL_UNWATCHED: Duration = Duration::from_millis(10);

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
}

impl SqliteQueue {
    pub fn new(db: Db, name: &str, redrive: Option<Redrive>) -> Self {
        SqliteQueue {
            db,
            name: name.into(),
            redrive,
        }
    }

    /// One receive attempt: claims up to `max` visible messages. Also says
    /// whether it moved any to the dead-letter queue instead (then more may
    /// be waiting behind them).
    fn try_receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<(Vec<Message>, bool), DbError> {
        let mut conn = self.db.conn()?;
        let now = now_ms();
        // Read-only look first: most polls find nothing, and need no lock.
        let any: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM queue_messages WHERE queue = ?1 AND visible_at <= ?2)",
            params![&*self.name, now],
            |r| r.get(0),
        )?;
        if !any {
            return Ok((Vec::new(), false));
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Messages claimed, each with whether its body is in a file.
        let mut claimed: Vec<(Message, bool)> = Vec::new();
        let mut dead_lettered = false;
        {
            let mut pick = tx.prepare_cached(
                "SELECT seq, id, body, receive_count, body_file FROM queue_messages
                 WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, seq LIMIT ?3",
            )?;
            let candidates = pick
                .query_map(params![&*self.name, now, (max as i64) * 2], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, u32>(3)?,
                        r.get::<_, bool>(4)?,
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
            for (seq, id, body, count, in_file) in candidates {
                if claimed.len() == max {
                    break;
                }
                if let Some(r) = self.redrive.as_ref().filter(|r| count >= r.max_receives) {
                    tracing::warn!(queue = %self.name, message = %id, receives = count,
                        dead_letter = %r.dead_letter, "moving message to the dead-letter queue");
                    dead_letter.execute(params![seq, r.dead_letter, now])?;
                    dead_lettered = true;
                    continue;
                }
                let receipt = Uuid::new_v4().to_string();
                deliver.execute(params![seq, receipt, now + ms(visibility)])?;
                claimed.push((
                    Message {
                        id,
                        body,
                        receipt: Receipt(receipt),
                        receive_count: count + 1,
                    },
                    in_file,
                ));
            }
        }
        tx.commit()?;
        if let Some(r) = self.redrive.as_ref().filter(|_| dead_lettered) {
            self.db.bells().ring(&r.dead_letter);
        }
        // Bodies in files are read after the commit, outside the lock.
        let mut out = Vec::with_capacity(claimed.len());
        for (mut m, in_file) in claimed {
            if in_file {
                match self.db.bodies().read(Kind::Message, &m.id) {
                    Ok(Some(body)) => m.body = body,
                    // Not delivered: it comes back after its visibility
                    // timeout and, if the file stays unreadable, ends in
                    // the dead-letter queue like any message that fails.
                    Ok(None) => {
                        tracing::error!(queue = %self.name, message = %m.id, "the body file of a message is missing; not delivering it");
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(queue = %self.name, message = %m.id, error = %e, "could not read the body file of a message; not delivering it");
                        continue;
                    }
                }
            }
            out.push(m);
        }
        Ok((out, dead_lettered))
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
        let db = self.db.clone();
        self.db
            .run(move |conn| {
                // A large body goes to a file first, so the row never names
                // a file that is not there.
                let in_file = body.len() > INLINE_MAX;
                if in_file {
                    db.bodies().write(Kind::Message, &msg_id, body.as_bytes())?;
                }
                let now = now_ms();
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO queue_messages (queue, id, body, sent_at, visible_at, body_file)
                         VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                    )
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            &*name,
                            msg_id,
                            if in_file { "" } else { &body },
                            now,
                            in_file
                        ])
                    });
                if let Err(e) = inserted {
                    if in_file {
                        db.bodies().remove(Kind::Message, &msg_id);
                    }
                    return Err(e.into());
                }
                // Committed (the insert is its own transaction): wake the
                // consumers, here and in the other processes.
                db.bells().ring(&name);
                Ok(())
            })
            .await?;
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
        // Only a receive that waits starts the bells' watch.
        let waiter = (!wait.is_zero()).then(|| self.db.bells().waiter(&self.name));
        let poll = match &waiter {
            Some(w) if w.watched => POLL_INTERVAL,
            _ => POLL_INTERVAL_UNWATCHED,
        };
        loop {
            // Register for the wake-up before looking, so a send between the
            // look and the wait is not missed (a ring wakes every
            // registered `Notified`, polled yet or not).
            let notified = waiter.as_ref().map(|w| w.notify.notified());
            let this = self.clone();
            let (got, dead_lettered) =
                tokio::task::spawn_blocking(move || this.try_receive(max, visibility))
                    .await
                    .map_err(DbError::from)??;
            if !got.is_empty() {
                return Ok(got);
            }
            // Messages moved to the dead-letter queue may have hidden good
            // ones behind them: look again at once.
            if dead_lettered {
                continue;
            }
            let now = Instant::now();
            let Some(notified) = notified.filter(|_| now < deadline) else {
                return Ok(got);
            };
            let _ = tokio::time::timeout(poll.min(deadline - now), notified).await;
        }
    }

    async fn delete(&self, receipt: &Receipt) -> Result<(), BackendError> {
        let (name, receipt) = (self.name.clone(), receipt.0.clone());
        let db = self.db.clone();
        self.db
            .run(move |conn| {
                let deleted = conn
                    .prepare_cached(
                        "DELETE FROM queue_messages WHERE queue = ?1 AND receipt = ?2
                         RETURNING id, body_file",
                    )?
                    .query_row(params![&*name, receipt], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?))
                    })
                    .optional()?;
                match deleted {
                    None => Err(BackendError::StaleReceipt.into()),
                    Some((id, in_file)) => {
                        if in_file {
                            db.bodies().remove(Kind::Message, &id);
                        }
                        Ok(())
                    }
                }
            })
            .await
    }

    async fn change_visibility(
        &self,
        receipt: &Receipt,
        visibility: Duration,
    ) -> Result<(), BackendError> {
        let (name, receipt) = (self.name.clone(), receipt.0.clone());
        let db = self.db.clone();
        self.db
            .run(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE queue_messages SET visible_at = ?3 WHERE queue = ?1 AND receipt = ?2",
                    )?
                    .execute(params![&*name, receipt, now_ms() + ms(visibility)])?;
                if n == 0 {
                    return Err(BackendError::StaleReceipt.into());
                }
                // Visible again now (a request handed back): ring. A later
                // visibility is found by the consumers' poll.
                if visibility.is_zero() {
                    db.bells().ring(&name);
                }
                Ok(())
            })
            .await
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

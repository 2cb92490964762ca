//! The gateway's background work, all of it safe to run in several gateway
//! processes at once (the queues hand each message to one consumer, and
//! recording an outcome is idempotent):
//!
//! - [`collector`]: records what workers send back on RequestReceive;
//! - [`dead_letters`]: marks queries whose job landed on RequestSend-dlq
//!   (the workers kept crashing or timing out) as failed;
//! - [`purger`]: drops expired results' data.
//!
//! The two queue consumers share one receive loop, [`consume`].

mod collector;
mod dead_letters;
mod purger;

use crate::follow::Follows;
use airq_core::queue::{Message, Queue};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Messages taken per receive.
const BATCH: usize = 10;
/// How long a receive waits for a message; bounds how long shutdown waits.
const WAIT: Duration = Duration::from_secs(1);
/// How long a received message stays hidden from other consumers.
const VISIBILITY: Duration = Duration::from_secs(30);
/// Pause after a failed receive.
const BACKOFF: Duration = Duration::from_secs(1);

/// Starts every background task; they stop when `cancel` fires.
pub fn spawn(
    backend: &airq_core::Backend,
    max_receives: u32,
    purge_every: Duration,
    follows: Arc<Follows>,
    cancel: &CancellationToken,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let results = backend.results.clone();
    let told = follows.clone();
    tasks.spawn(consume(
        backend.request_receive.clone(),
        cancel.clone(),
        move |m| {
            let (results, told) = (results.clone(), told.clone());
            async move { collector::record_result(results, &told, m).await }
        },
    ));
    let results = backend.results.clone();
    tasks.spawn(consume(
        backend.request_send_dlq.clone(),
        cancel.clone(),
        move |m| {
            let (results, told) = (results.clone(), follows.clone());
            async move { dead_letters::record_dead_letter(results, &told, max_receives, m).await }
        },
    ));
    tasks.spawn(purger::purge(
        backend.results.clone(),
        purge_every,
        cancel.clone(),
    ));
    tasks
}

/// Receives from `queue` until cancelled, deleting each message `handle`
/// returns true for (the others come back after their visibility timeout).
async fn consume<F, Fut>(queue: Arc<dyn Queue>, cancel: CancellationToken, mut handle: F)
where
    F: FnMut(Message) -> Fut,
    Fut: Future<Output = bool>,
{
    tracing::debug!(queue = queue.name(), "consumer started");
    while !cancel.is_cancelled() {
        let batch = match queue.receive(BATCH, VISIBILITY, WAIT).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(queue = queue.name(), error = %e, "receive failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(BACKOFF) => continue,
                }
            }
        };
        // The batch's messages are handled concurrently: each costs store
        // round trips (record, then delete) that would otherwise queue up
        // behind one another, and under load this one task is what every
        // queued query's user waits on.
        let work = batch.into_iter().map(|message| {
            let (id, receipt) = (message.id.clone(), message.receipt.clone());
            let handled = handle(message);
            let queue = &queue;
            async move {
                if handled.await {
                    if let Err(e) = queue.delete(&receipt).await {
                        // Stale: it was received again; the other consumer's
                        // processing is idempotent too.
                        tracing::debug!(queue = queue.name(), msg_id = %id, error = %e, "delete failed");
                    }
                }
            }
        });
        futures::future::join_all(work).await;
    }
    tracing::debug!(queue = queue.name(), "consumer stopped");
}

/// The start of a message body, for logs.
fn excerpt(body: &str) -> &str {
    let mut end = body.len().min(500);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    &body[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_stop_on_a_char_boundary() {
        let body = "é".repeat(400);
        let e = excerpt(&body);
        assert!(e.len() <= 500 && e.len() >= 498);
        assert_eq!(excerpt("short"), "short");
    }
}

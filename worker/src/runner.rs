//! The consume loop: receive requests while there is capacity, run each in
//! its own task with a visibility heartbeat, and on shutdown hand unfinished
//! requests back to the queue at once instead of making another worker wait
//! out their visibility timeout.

use crate::execute::{run_query, Handled};
use crate::metrics::{self, JobOutcome};
use airq_core::job::{Job, JobError, JobResult};
use airq_core::queue::{Message, Receipt};
use airq_core::results::Outcome;
use airq_core::Backend;
use airq_core::BackendError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

/// Most messages one receive call asks for (the SQS maximum).
const MAX_BATCH: usize = 10;

#[derive(Clone)]
pub struct Settings {
    pub concurrency: usize,
    pub visibility: Duration,
    pub receive_wait: Duration,
    pub shutdown_grace: Duration,
    pub test_query_delay: Option<Duration>,
}

/// Requests being worked on, by message id, with their latest receipt.
type InFlight = Arc<Mutex<HashMap<String, Receipt>>>;

pub struct Runner {
    backend: Backend,
    settings: Settings,
    in_flight: InFlight,
}

impl Runner {
    pub fn new(backend: Backend, settings: Settings) -> Self {
        Runner {
            backend,
            settings,
            in_flight: Arc::default(),
        }
    }

    /// Runs until `shutdown` is cancelled, then drains.
    pub async fn run(self, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        let mut tasks = JoinSet::new();
        let mut failures = 0u32;
        loop {
            // Wait for a free slot (or shutdown), then claim every free slot
            // up to a batch so one receive call fills them.
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.cancelled() => break,
            };
            let mut permits = vec![first];
            while permits.len() < MAX_BATCH {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let waiting = Instant::now();
            let received = tokio::select! {
                r = self.backend.request_send.receive(permits.len(), self.settings.visibility, self.settings.receive_wait) => r,
                _ = shutdown.cancelled() => break,
            };
            let messages = match received {
                Ok(m) => {
                    metrics::receive_waited(waiting.elapsed());
                    metrics::received(m.len());
                    failures = 0;
                    m
                }
                Err(e) => {
                    failures = (failures + 1).min(6);
                    let backoff = Duration::from_millis(250 << failures);
                    tracing::warn!(error = %e, ?backoff, "receive failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => continue,
                        _ = shutdown.cancelled() => break,
                    }
                }
            };
            for (message, permit) in messages.into_iter().zip(permits.drain(..)) {
                self.track(&message);
                let backend = self.backend.clone();
                let settings = self.settings.clone();
                let in_flight = self.in_flight.clone();
                tasks.spawn(async move {
                    handle(&backend, &settings, &in_flight, message).await;
                    drop(permit);
                });
            }
            // Reap finished tasks so the set does not grow without bound.
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a request task panicked");
                }
            }
        }
        self.drain(tasks).await;
    }

    fn track(&self, m: &Message) {
        if let Ok(mut map) = self.in_flight.lock() {
            map.insert(m.id.clone(), m.receipt.clone());
        }
    }

    /// Lets in-flight requests finish for up to the shutdown timeout, then
    /// makes the rest visible again at once.
    async fn drain(self, mut tasks: JoinSet<()>) {
        let pending = tasks.len();
        if pending > 0 {
            tracing::info!(pending, timeout = ?self.settings.shutdown_grace, "finishing in-flight requests");
        }
        let finished = tokio::time::timeout(self.settings.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_ok() {
            return;
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let left: Vec<(String, Receipt)> = self
            .in_flight
            .lock()
            .map(|mut m| m.drain().collect())
            .unwrap_or_default();
        for (id, receipt) in left {
            // Handed back now, or (if that fails) after its visibility
            // timeout: either way it goes back to the queue.
            metrics::job(JobOutcome::Returned);
            match self
                .backend
                .request_send
                .change_visibility(&receipt, Duration::ZERO)
                .await
            {
                Ok(()) => {
                    tracing::info!(message = %id, "handed an unfinished request back to the queue")
                }
                Err(e) => {
                    if matches!(e, BackendError::StaleReceipt) {
                        metrics::stale_receipt();
                    }
                    tracing::warn!(message = %id, error = %e, "could not hand a request back; it returns after its visibility timeout")
                }
            }
        }
    }
}

/// Handles one message end to end, in a `job` span naming its result and
/// request id (so every log line about it, the heartbeat's included, carries
/// them). Never panics on its content.
async fn handle(backend: &Backend, settings: &Settings, in_flight: &InFlight, message: Message) {
    let _busy = metrics::Busy::start();
    let parsed = Job::parse(&message.body);
    let span = job_span(&parsed);
    handle_job(backend, settings, &message, parsed)
        .instrument(span)
        .await;
    if let Ok(mut m) = in_flight.lock() {
        m.remove(&message.id);
    }
}

/// The span of one job: `result` (its result id) and `request_id` (the
/// submit's `X-Request-Id`), empty when the message does not say.
fn job_span(parsed: &Result<Job, JobError>) -> tracing::Span {
    let (result, request_id) = match parsed {
        Ok(job) => (Some(job.id), job.request_id.as_deref()),
        Err(JobError::Malformed { id, .. }) => (*id, None),
    };
    let result = result.map(|id| id.to_string()).unwrap_or_default();
    let request_id = request_id.filter(|r| loggable_request_id(r)).unwrap_or("");
    tracing::info_span!("job", result = %result, request_id = %request_id)
}

/// Whether a job's request id may go into a log line as it is: the
/// gateway's own rule (1 to 128 characters of `A-Za-z0-9._~:+/=-`),
/// checked again because the queue is another process's input.
fn loggable_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~:+/=-".contains(&b))
}

async fn handle_job(
    backend: &Backend,
    settings: &Settings,
    message: &Message,
    parsed: Result<Job, JobError>,
) {
    let started = Instant::now();
    let heartbeat = CancellationToken::new();
    let beat = tokio::spawn(
        keep_invisible(
            backend.clone(),
            message.clone(),
            settings.visibility,
            heartbeat.clone(),
        )
        .in_current_span(),
    );
    let handled = process(backend, settings, message, parsed).await;
    heartbeat.cancel();
    let _ = beat.await;
    let receipt = &message.receipt;

    let finished = match handled {
        Ok(Handled::Outcome(id, outcome)) => {
            let (kind, rows) = match &outcome {
                Outcome::Done { rows, .. } | Outcome::Stored { rows, .. } => {
                    (JobOutcome::Done, Some(*rows))
                }
                Outcome::Failed { .. } => (JobOutcome::Failed, None),
            };
            report(backend, id, outcome).await.map(|()| {
                metrics::ran(started.elapsed(), rows);
                kind
            })
        }
        Ok(Handled::Duplicate) => Ok(JobOutcome::Duplicate),
        Ok(Handled::Unidentifiable) => Ok(JobOutcome::Failed),
        Err(e) => Err(e),
    };
    match finished {
        Ok(kind) => {
            metrics::job(kind);
            match backend.request_send.delete(receipt).await {
                Ok(()) => {}
                Err(e) => {
                    if matches!(e, BackendError::StaleReceipt) {
                        metrics::stale_receipt();
                    }
                    tracing::warn!(message = %message.id, error = %e, "could not delete a finished request; it may be delivered again (harmless)");
                }
            }
        }
        Err(e) => {
            // Transient: leave the message to come back after a short
            // pause; after the maximum receives it is dead-lettered.
            metrics::job(JobOutcome::Retried);
            tracing::warn!(message = %message.id, receives = message.receive_count, error = %e, "request failed; it will be retried");
            let _ = backend
                .request_send
                .change_visibility(receipt, Duration::from_secs(2))
                .await;
        }
    }
}

/// Works out the outcome of a message.
async fn process(
    backend: &Backend,
    settings: &Settings,
    message: &Message,
    parsed: Result<Job, JobError>,
) -> Result<Handled, BackendError> {
    let job = match parsed {
        Ok(job) => job,
        Err(JobError::Malformed {
            id: Some(id),
            reason,
        }) => {
            tracing::warn!(message = %message.id, %reason, "malformed request");
            return Ok(Handled::Outcome(
                id,
                Outcome::Failed {
                    error: format!("the request message was malformed: {reason}"),
                },
            ));
        }
        Err(JobError::Malformed { id: None, reason }) => {
            tracing::error!(message = %message.id, %reason, body_len = message.body.len(), "malformed request without a result id; dropping it");
            return Ok(Handled::Unidentifiable);
        }
    };
    if let Some(existing) = backend.results.get(job.id).await? {
        if existing.state.is_final() {
            tracing::info!("duplicate delivery of a finished request; skipping");
            return Ok(Handled::Duplicate);
        }
    }
    backend.results.mark_running(job.id).await?;
    let started = std::time::Instant::now();
    let outcome = run_query(backend, &job, settings.test_query_delay).await?;
    match &outcome {
        Outcome::Done { rows, answer } => {
            tracing::info!(rows, bytes = answer.len(), elapsed = ?started.elapsed(), "query done")
        }
        Outcome::Stored { rows, answer } => {
            tracing::info!(rows, bytes = answer.bytes, elapsed = ?started.elapsed(), "query done")
        }
        Outcome::Failed { error } => tracing::info!(%error, "query failed"),
    }
    Ok(Handled::Outcome(job.id, outcome))
}

/// Posts the outcome for the gateway to collect.
async fn report(backend: &Backend, id: Uuid, outcome: Outcome) -> Result<(), BackendError> {
    let result = JobResult { id, outcome };
    backend.request_receive.send(&result.to_json()).await?;
    Ok(())
}

/// Renews the message's invisibility every third of the timeout until
/// cancelled. The receipt stays the same, so shutdown can still use it.
async fn keep_invisible(
    backend: Backend,
    message: Message,
    visibility: Duration,
    stop: CancellationToken,
) {
    let period = (visibility / 3).max(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.cancelled() => return,
        }
        match backend
            .request_send
            .change_visibility(&message.receipt, visibility)
            .await
        {
            Ok(()) => {
                metrics::heartbeat();
                tracing::debug!(message = %message.id, "visibility renewed")
            }
            Err(BackendError::StaleReceipt) => {
                metrics::stale_receipt();
                tracing::warn!(message = %message.id, "request was received again elsewhere; finishing anyway (results are idempotent)");
                return;
            }
            Err(e) => {
                tracing::warn!(message = %message.id, error = %e, "could not renew visibility")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sensible_request_ids_are_logged() {
        assert!(loggable_request_id("req-42_a.b~c:d+e/f=g"));
        assert!(loggable_request_id(&"a".repeat(128)));
        for bad in ["", "two words", "line\nbreak", "ünï", &"a".repeat(129)] {
            assert!(!loggable_request_id(bad), "{bad:?}");
        }
    }
}

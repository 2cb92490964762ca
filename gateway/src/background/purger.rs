//! The purger: drops expired results' data every `--purge-every`, keeping
//! each as a tombstone (it answers `410`) for a while.

use airq_core::results::ResultStore;
use airq_core::Timestamp;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long an expired result still answers 410 before it is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// Purges every `every` (at least a second) until `cancel` fires.
pub(super) async fn purge(
    results: Arc<dyn ResultStore>,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        match results.purge_expired(Timestamp::now(), FORGET_AFTER).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "purged expired results"),
            Err(e) => tracing::warn!(error = %e, "purging expired results failed"),
        }
    }
}

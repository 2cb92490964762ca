//! The long-running mode: the ingestion on a cron schedule.
//!
//! The scheduler only rings; the runs happen here, one at a time. A tick that
//! comes while a run is still going is skipped (and logged) rather than
//! queued, so slow runs never pile up. A failed run is logged and the next
//! tick tries again. SIGINT or SIGTERM stops the scheduler and abandons a run
//! in progress: every batch already written is complete and durable, and the
//! next ingestion rewrites the rest (storing is idempotent).

use crate::fetch::{FetchPolicy, Source, Validators};
use crate::{ingest, metrics};
use airq_core::quality;
use airq_core::store::ReadingStore;
use airq_core::{Resolution, Timestamp};
use anyhow::{anyhow, Context as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// How long the scheduler may take to stop before we go anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub struct Plan {
    pub cron: String,
    pub run_now: bool,
    /// `day` (the nightly feed) or `5min` (the live tier, pruned after
    /// each run).
    pub series: Resolution,
    pub retention: ingest::Retention,
    pub source: Source,
    pub policy: FetchPolicy,
    pub batch_size: usize,
}

/// A cron job that claims the run slot and signals the runner, or skips the
/// tick when the slot is taken.
fn ticking_job(cron: &str, busy: Arc<AtomicBool>, ticks: mpsc::Sender<()>) -> anyhow::Result<Job> {
    Job::new_async(cron, move |_id, _scheduler| {
        if busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            if ticks.try_send(()).is_err() {
                busy.store(false, Ordering::Release);
            }
        } else {
            warn!("the previous ingestion run is still going; skipping this tick");
        }
        Box::pin(async {})
    })
    .map_err(|_| {
        let fields = cron.split_whitespace().count();
        anyhow!(
            "invalid cron expression {cron:?}{}: expected six fields, \
             \"sec min hour day-of-month month day-of-week\" (UTC), e.g. \"0 0 0 * * *\" \
             for nightly at midnight",
            if fields == 6 {
                String::new()
            } else {
                format!(" ({fields} fields)")
            }
        )
    })
}

/// Refuses an invalid cron expression, before anything else is done.
pub fn check_cron(cron: &str) -> anyhow::Result<()> {
    let (tx, _rx) = mpsc::channel(1);
    ticking_job(cron, Arc::new(AtomicBool::new(false)), tx).map(drop)
}

/// Runs one ingestion, unless `stop` comes first; `false` if it did.
/// A download is conditional on `last`, the version the last successful
/// run read, which a successful run updates.
async fn run_once(
    store: &Arc<dyn ReadingStore>,
    plan: &Plan,
    run: u64,
    trigger: &str,
    stop: &CancellationToken,
    last: &mut Validators,
    carry: Option<&mut quality::Carry>,
) -> bool {
    info!(run, trigger, source = %plan.source, series = plan.series.name(), "ingestion run starting");
    metrics::run_started();
    let started = Instant::now();
    let ingestion = async {
        let summary = ingest::ingest(
            store.clone(),
            &plan.source,
            &plan.policy,
            plan.batch_size,
            plan.series,
            last,
            carry,
        )
        .await?;
        if plan.series == Resolution::FiveMin {
            ingest::prune(store, plan.retention, Timestamp::now()).await?;
        }
        anyhow::Ok(summary)
    };
    tokio::select! {
        outcome = ingestion => {
            metrics::run_finished(outcome.is_ok(), started.elapsed());
            match outcome {
                Ok(summary) => {
                    summary.log();
                    *last = summary.validators;
                }
                Err(e) => error!(run, error = format!("{e:#}"), "ingestion run failed; the next tick tries again"),
            }
            true
        }
        () = stop.cancelled() => {
            warn!(run, "stopping during a run: abandoning it (the batches already written are kept)");
            false
        }
    }
}

/// Runs `plan` until `stop` is cancelled (on SIGINT/SIGTERM).
pub async fn run(
    store: Arc<dyn ReadingStore>,
    plan: Plan,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let busy = Arc::new(AtomicBool::new(false));
    let (tick_tx, mut ticks) = mpsc::channel::<()>(1);
    let job = ticking_job(&plan.cron, busy.clone(), tick_tx)?;

    let mut scheduler = JobScheduler::new()
        .await
        .context("cannot create the scheduler")?;
    let job_id = scheduler
        .add(job)
        .await
        .context("cannot schedule the ingestion job")?;
    // The startup run holds the slot from the first tick on.
    busy.store(plan.run_now, Ordering::Release);
    scheduler
        .start()
        .await
        .context("cannot start the scheduler")?;
    let next = scheduler.next_tick_for_job(job_id).await.ok().flatten();
    info!(cron = %plan.cron, next_run = ?next, "scheduler started (UTC)");

    let mut runs = 0u64;
    let mut last = Validators::default();
    // The live tier has one writer, this schedule: the sensors' history
    // its flags read is kept between runs (`quality::Carry`). Not the
    // daily series, which a backfill may write beside it.
    let mut carry = (plan.series == Resolution::FiveMin).then(|| quality::Carry::new(plan.series));
    if plan.run_now {
        runs += 1;
        let finished = run_once(
            &store,
            &plan,
            runs,
            "startup",
            &stop,
            &mut last,
            carry.as_mut(),
        )
        .await;
        busy.store(false, Ordering::Release);
        if finished {
            let next = scheduler.next_tick_for_job(job_id).await.ok().flatten();
            info!(next_run = ?next, "waiting for the next tick");
        }
    }
    while !stop.is_cancelled() {
        tokio::select! {
            () = stop.cancelled() => {}
            tick = ticks.recv() => {
                if tick.is_none() {
                    break;
                }
                runs += 1;
                let finished = run_once(
                    &store,
                    &plan,
                    runs,
                    "schedule",
                    &stop,
                    &mut last,
                    carry.as_mut(),
                )
                .await;
                busy.store(false, Ordering::Release);
                if finished {
                    let next = scheduler.next_tick_for_job(job_id).await.ok().flatten();
                    info!(next_run = ?next, "waiting for the next tick");
                }
            }
        }
    }

    info!(runs, "shutting the scheduler down");
    match tokio::time::timeout(SHUTDOWN_GRACE, scheduler.shutdown()).await {
        Ok(Ok(())) => info!("scheduler stopped"),
        Ok(Err(e)) => warn!(error = %e, "the scheduler did not shut down cleanly"),
        Err(_) => warn!("the scheduler did not stop in time; exiting anyway"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions() {
        let busy = Arc::new(AtomicBool::new(false));
        let (tx, _rx) = mpsc::channel(1);
        assert!(ticking_job("0 0 0 * * *", busy.clone(), tx.clone()).is_ok());
        assert!(ticking_job("*/5 * * * * *", busy.clone(), tx.clone()).is_ok());
        let five = ticking_job("0 0 * * *", busy.clone(), tx.clone()).err();
        assert!(five.is_some_and(|e| e.to_string().contains("(5 fields)")));
        assert!(ticking_job("every night", busy.clone(), tx.clone()).is_err());
        assert!(ticking_job("0 0 25 * * *", busy, tx).is_err());
    }
}

//! Runs one load plan: spawns the virtual users, each with its own
//! [`Recorder`], and merges what they measured into a [`Summary`].
//!
//! Every loop is bounded: a closed loop by its request count (and optional
//! duration), an open loop by its precomputed schedule, staged users by
//! their profile's duration; and every journey in flight is cut at the
//! plan's end plus the drain allowance. Arrivals that were never started
//! are counted as `unsent`.

use crate::client::Client;
use crate::cpu;
use crate::journey::{self, Work};
use crate::plan::{self, Load};
use crate::stats::{micros, Answer, Cpu, ErrorKind, Latency, Record, Recorder, Summary};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How runs are carried out (the same for every step of a matrix).
#[derive(Clone)]
pub struct Settings {
    /// A request starting later than this after its intended time is late.
    pub late_after: Duration,
    /// How long journeys in flight may go on after the plan's end.
    pub drain: Duration,
    /// Open loop: most journeys in flight at once.
    pub max_in_flight: usize,
    /// The most arrivals one run may plan.
    pub max_requests: u64,
    /// Seed of Poisson arrivals.
    pub seed: u64,
    /// Keep every request's record (for the CSV and the time chart).
    pub keep_records: bool,
    pub progress: bool,
    /// Reads the CPU seconds of the server's processes, by name.
    pub server_cpu: Option<Arc<dyn Fn() -> BTreeMap<String, f64> + Send + Sync>>,
}

pub struct RunResult {
    pub summary: Summary,
    /// Every request, by arrival number (empty unless kept).
    pub records: Vec<Record>,
}

/// How long before an arrival's instant the pacer stops sleeping and
/// spins: more than a sleep overshoots once the thread's timer slack is
/// 1 ns (a few µs to a few tens of µs on Linux), little enough that the
/// spinning costs a few % of a core at thousands of arrivals a second.
const SPIN: std::time::Duration = std::time::Duration::from_micros(80);

/// Waits on this thread until `at`: sleeps until [`SPIN`] before it, then
/// spins.
fn wait_until(at: std::time::Instant) {
    loop {
        let now = std::time::Instant::now();
        if now >= at {
            return;
        }
        let left = at - now;
        if left > SPIN {
            std::thread::sleep(left - SPIN);
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Starts the open loop's pacer: a thread that adds one permit to `due`
/// at each arrival's instant (`t0` + its offset), stops at `cutoff`, and
/// then adds one permit per worker, which ends their loops.
fn pace(
    schedule: Arc<Vec<Duration>>,
    t0: std::time::Instant,
    cutoff: std::time::Instant,
    due: Arc<Semaphore>,
    workers: usize,
) -> std::thread::JoinHandle<()> {
    /// Adds the workers' closing permits when the pacer ends, however it
    /// ends (a panic too), so that no worker waits for ever.
    struct Closing(Arc<Semaphore>, usize);
    impl Drop for Closing {
        fn drop(&mut self) {
            self.0.add_permits(self.1);
        }
    }
    std::thread::spawn(move || {
        let _closing = Closing(due.clone(), workers);
        // Sleeps that end when asked rather than up to 50 µs later.
        #[cfg(target_os = "linux")]
        let _ = nix::sys::prctl::set_timerslack(1);
        for offset in schedule.iter() {
            let Some(at) = t0.checked_add(*offset) else {
                break;
            };
            if at >= cutoff {
                break;
            }
            wait_until(at);
            due.add_permits(1);
        }
    })
}

/// Live counters for the progress bar.
#[derive(Default)]
struct Live {
    done: AtomicU64,
    errors: AtomicU64,
}

/// Runs `load` and summarises it under `label`.
pub async fn run(
    client: Arc<Client>,
    work: Arc<Work>,
    load: &Load,
    label: &str,
    settings: &Settings,
) -> anyhow::Result<RunResult> {
    let crew = Crew {
        client,
        work,
        next: Arc::new(AtomicU64::new(0)),
        capped: Arc::new(AtomicBool::new(false)),
        live: Arc::new(Live::default()),
        late_after: settings.late_after,
    };
    let cpu_before = cpu::own_seconds();
    let server_before = settings.server_cpu.as_ref().map(|f| f());

    let mut capped = None;
    let (planned, recorders, elapsed) = match load {
        Load::Closed {
            requests,
            concurrency,
            duration,
        } => {
            let n = requests.unwrap_or(settings.max_requests);
            let bar = progress_bar(settings, requests.unwrap_or(0), label);
            let t0 = Instant::now();
            let deadline = duration.map(|d| t0 + d);
            let cutoff = deadline.map(|d| d + settings.drain);
            let users = (*concurrency).max(1);
            let recs = crowd(
                users,
                &crew,
                settings,
                bar,
                move |_, c, mut rec| async move {
                    loop {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        let i = c.next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            // Before the deadline: the request count ended it.
                            if deadline.is_some() {
                                c.capped.store(true, Ordering::Relaxed);
                            }
                            break;
                        }
                        let now = Instant::now();
                        rec.started(Duration::ZERO, c.late_after);
                        c.one(i, t0, now, cutoff, &mut rec).await;
                    }
                    rec
                },
            )
            .await?;
            let started: u64 = recs.iter().map(|r| r.ok + r.error_count()).sum();
            // With both -n and -d, whichever comes first ends the run: the
            // requests the time limit left unsent were never due, so they
            // are not counted as unsent errors.
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            let planned = match requests {
                Some(n) if !timed_out => *n,
                _ => started,
            };
            // A duration without a count ends at the deadline, unless the
            // safety limit on requests came first: said, not hidden.
            if requests.is_none() && crew.capped.load(Ordering::Relaxed) {
                capped = Some(n);
                tracing::warn!(
                    max_requests = n,
                    after = ?t0.elapsed(),
                    "the closed loop stopped at --max-requests before its -d duration"
                );
            }
            (planned, recs, t0.elapsed())
        }
        Load::Open { rate, arrival } => {
            let schedule = Arc::new(plan::schedule(
                rate,
                *arrival,
                settings.seed,
                settings.max_requests,
            )?);
            let n = schedule.len() as u64;
            let bar = progress_bar(settings, n, label);
            let t0 = Instant::now();
            let cutoff = t0 + rate.duration() + settings.drain;
            let workers = settings.max_in_flight.max(1).min(schedule.len().max(1));
            // Tokio's timer wakes up to a millisecond or two late, which
            // would count into every time to result: a thread of its own
            // releases each arrival at its instant instead (see `pace`).
            let due = Arc::new(Semaphore::new(0));
            let pacer = pace(
                schedule.clone(),
                t0.into_std(),
                cutoff.into_std(),
                due.clone(),
                workers,
            );
            let recs = crowd(workers, &crew, settings, bar, move |_, c, mut rec| {
                let schedule = schedule.clone();
                let due = due.clone();
                async move {
                    loop {
                        // One permit per arrival due now (and one per
                        // worker after the last: they end the loop).
                        match due.acquire().await {
                            Ok(permit) => permit.forget(),
                            Err(_) => break,
                        }
                        let i = c.next.fetch_add(1, Ordering::Relaxed);
                        let Some(offset) = schedule.get(i as usize) else {
                            break;
                        };
                        let intended = t0 + *offset;
                        let now = Instant::now();
                        if now >= cutoff {
                            // Counted as unsent below, with the rest.
                            break;
                        }
                        rec.started(now.saturating_duration_since(intended), c.late_after);
                        c.one(i, t0, intended, Some(cutoff), &mut rec).await;
                    }
                    rec
                }
            })
            .await?;
            pacer
                .join()
                .map_err(|_| anyhow::anyhow!("the arrival pacer panicked"))?;
            (n, recs, t0.elapsed())
        }
        Load::Users { users } => {
            let bar = progress_bar(settings, 0, label);
            let t0 = Instant::now();
            let end = t0 + users.duration();
            let cutoff = end + settings.drain;
            let max = settings.max_requests;
            let peak = users.peak().ceil() as usize;
            let profile = Arc::new(users.clone());
            let recs = crowd(peak, &crew, settings, bar, move |k, c, mut rec| {
                let profile = profile.clone();
                async move {
                    loop {
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        // User k is active while the profile is above k.
                        if (k + 1) as f64 > profile.at(now - t0) + 1e-9 {
                            tokio::time::sleep(Duration::from_millis(20).min(end - now)).await;
                            continue;
                        }
                        let i = c.next.fetch_add(1, Ordering::Relaxed);
                        if i >= max {
                            break;
                        }
                        rec.started(Duration::ZERO, c.late_after);
                        c.one(i, t0, now, Some(cutoff), &mut rec).await;
                    }
                    rec
                }
            })
            .await?;
            let started: u64 = recs.iter().map(|r| r.ok + r.error_count()).sum();
            (started, recs, t0.elapsed())
        }
    };

    let mut rec = Recorder::new(settings.keep_records);
    for r in recorders {
        rec.merge(r);
    }
    let started = rec.ok + rec.error_count();
    rec.unsent(planned.saturating_sub(started));
    let mut records = std::mem::take(&mut rec.records);
    records.sort_unstable_by_key(|r| r.index);

    let wall = elapsed.as_secs_f64().max(1e-9);
    let own = (cpu::own_seconds() - cpu_before).max(0.0);
    let server_cpu = match (server_before, settings.server_cpu.as_ref()) {
        (Some(before), Some(f)) => {
            let after = f();
            Some(
                after
                    .into_iter()
                    .map(|(name, secs)| {
                        let used = (secs - before.get(&name).copied().unwrap_or(0.0)).max(0.0);
                        (
                            name,
                            Cpu {
                                seconds: used,
                                cores: used / wall,
                            },
                        )
                    })
                    .collect(),
            )
        }
        _ => None,
    };
    let summary = summarize(
        label,
        load,
        &rec,
        planned,
        started,
        elapsed,
        settings.late_after,
        Cpu {
            seconds: own,
            cores: own / wall,
        },
        server_cpu,
        capped,
    );
    Ok(RunResult { summary, records })
}

/// What the virtual users of a run share.
#[derive(Clone)]
struct Crew {
    client: Arc<Client>,
    work: Arc<Work>,
    /// The number of the next arrival to take.
    next: Arc<AtomicU64>,
    /// A closed loop's users stopped at its request count while its
    /// deadline was still ahead.
    capped: Arc<AtomicBool>,
    live: Arc<Live>,
    /// A request starting later than this after its intended time is late.
    late_after: Duration,
}

impl Crew {
    /// One arrival, cut at `cutoff` (recorded as a timeout if cut).
    async fn one(
        &self,
        i: u64,
        t0: Instant,
        intended: Instant,
        cutoff: Option<Instant>,
        rec: &mut Recorder,
    ) {
        let (client, work) = (&*self.client, &*self.work);
        let errors_before = rec.error_count();
        let finished = match cutoff {
            Some(c) => tokio::time::timeout_at(c, journey::run(client, work, i, t0, intended, rec))
                .await
                .is_ok(),
            None => {
                journey::run(client, work, i, t0, intended, rec).await;
                true
            }
        };
        if !finished {
            rec.finish(Record {
                index: i,
                intended_us: micros(intended.saturating_duration_since(t0)),
                start_delay_us: 0,
                submit_us: 0,
                total_us: micros(intended.elapsed()),
                status: 0,
                answer: Answer::None,
                polls: 0,
                follow_bytes: 0,
                bytes: 0,
                error: Some(ErrorKind::Timeout),
            });
        }
        self.live.done.fetch_add(1, Ordering::Relaxed);
        if rec.error_count() > errors_before {
            self.live.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs `count` virtual users, `user(k, crew, recorder)` for k in
/// 0..count, each with a recorder of its own; shows their progress on
/// `bar` until every one has returned its recorder.
async fn crowd<F, Fut>(
    count: usize,
    crew: &Crew,
    settings: &Settings,
    bar: ProgressBar,
    user: F,
) -> anyhow::Result<Vec<Recorder>>
where
    F: Fn(usize, Crew, Recorder) -> Fut,
    Fut: Future<Output = Recorder> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..count {
        tasks.spawn(user(k, crew.clone(), Recorder::new(settings.keep_records)));
    }
    let ticker = tick(bar.clone(), crew.live.clone());
    let recs = join(tasks).await?;
    ticker.abort();
    bar.finish_and_clear();
    Ok(recs)
}

async fn join(mut tasks: tokio::task::JoinSet<Recorder>) -> anyhow::Result<Vec<Recorder>> {
    let mut out = Vec::with_capacity(tasks.len());
    while let Some(r) = tasks.join_next().await {
        out.push(r.map_err(|e| anyhow::anyhow!("a virtual user failed: {e}"))?);
    }
    Ok(out)
}

fn progress_bar(settings: &Settings, len: u64, label: &str) -> ProgressBar {
    if !settings.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(
        (len > 0).then_some(len),
        ProgressDrawTarget::stderr_with_hz(5),
    );
    let template = if len > 0 {
        "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} {msg}"
    } else {
        "{prefix:>12} [{elapsed_precise}] {spinner} {pos} {per_sec} {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_owned());
    bar
}

fn tick(bar: ProgressBar, live: Arc<Live>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            bar.set_position(live.done.load(Ordering::Relaxed));
            let e = live.errors.load(Ordering::Relaxed);
            if e > 0 {
                bar.set_message(format!("{e} errors"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    label: &str,
    load: &Load,
    rec: &Recorder,
    planned: u64,
    started: u64,
    elapsed: Duration,
    late_after: Duration,
    generator_cpu: Cpu,
    server_cpu: Option<BTreeMap<String, Cpu>>,
    stopped_at_max_requests: Option<u64>,
) -> Summary {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let errors = rec.error_count();
    let answered = rec.direct + rec.queued;
    let queries = (rec.direct + rec.queued).max(1) as f64;
    let completed = started as f64;
    Summary {
        label: label.to_owned(),
        load: load.kind().to_owned(),
        description: load.to_string(),
        rate: load.rate(),
        concurrency: load.concurrency(),
        planned,
        started,
        ok: rec.ok,
        errors,
        errors_by_kind: rec.errors.iter().map(|(k, n)| (k.name(), *n)).collect(),
        error_pct: if planned == 0 {
            0.0
        } else {
            100.0 * errors as f64 / planned as f64
        },
        late: rec.late,
        late_allowance_ms: late_after.as_secs_f64() * 1000.0,
        stopped_at_max_requests,
        elapsed_s: secs,
        throughput: completed / secs,
        ok_per_s: rec.ok as f64 / secs,
        direct: rec.direct,
        queued: rec.queued,
        queued_pct: if answered == 0 {
            0.0
        } else {
            100.0 * rec.queued as f64 / answered as f64
        },
        polls: rec.polls,
        polls_per_query: rec.polls as f64 / queries,
        follow_bytes_per_query: rec.follow_bytes as f64 / queries,
        max_polls: rec.max_polls,
        result_bytes: rec.bytes,
        mean_result_bytes: if rec.ok == 0 {
            0.0
        } else {
            rec.bytes as f64 / rec.ok as f64
        },
        max_result_bytes: rec.max_bytes,
        kb_per_s: rec.bytes as f64 / 1024.0 / secs,
        time_to_result: Latency::of(&rec.ttr),
        submit: Latency::of(&rec.submit),
        poll: Latency::of(&rec.poll),
        start_delay: Latency::of(&rec.start_delay),
        generator_cpu,
        server_cpu,
    }
}

//! Giving freed memory back to the system after a wave of connections.
//!
//! Each connection's buffers (up to `--max-header-bytes` while a head
//! arrives, hyper's write buffer, the handler's state) are freed when it
//! closes, but glibc's allocator keeps freed chunks in its arenas for
//! reuse and returns only the top of each heap to the system, which live
//! allocations between the freed ones pin. After 3,000 connections each
//! holding a 16 KiB head had closed, the gateway kept 55 MiB resident
//! (from 12 MiB) for good; with hyper's former 400 KB buffers, 306 MiB.
//! `malloc_trim(0)` releases the free pages inside the heaps too.
//!
//! It runs only after a wave: when at least [`WAVE`] connections have
//! closed since the last trim (looked at every [`EVERY`]), and at most once per
//! [`AT_MOST_EVERY`] (steady traffic without keep-alive closes that many
//! all the time). A trim walks the arenas' free lists (a few milliseconds
//! for tens of MB) holding each arena's lock, so it runs on a blocking
//! thread, never per connection; kept-alive clients close nothing and
//! cause none. (An allocator that returns memory by itself was measured as
//! the alternative: mimalloc kept 61 MiB after the same wave, from a
//! baseline of 24 MiB; BENCHMARKS.md.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the count of closed connections is looked at.
const EVERY: Duration = Duration::from_secs(5);
/// How many connections must have closed since the last trim for another.
const WAVE: usize = 256;
/// The least time between two trims.
const AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// Connections closed since the last look (the trimmer adds them up).
#[derive(Default)]
pub struct Closed(AtomicUsize);

impl Closed {
    pub fn one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Trims after each wave of closed connections until `stop`.
    pub async fn trim_after_waves(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<Instant> = None;
        let mut closed = 0usize;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            closed = closed.saturating_add(self.0.swap(0, Ordering::Relaxed));
            let rested = last.is_none_or(|at| at.elapsed() >= AT_MOST_EVERY);
            if closed >= WAVE && rested {
                last = Some(Instant::now());
                let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
                tracing::debug!(
                    closed,
                    released,
                    "returned freed memory after a wave of connections"
                );
                closed = 0;
            }
        }
    }
}

/// Returns free heap pages to the system; whether any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim only walks and releases the allocator's own free
    // chunks; it takes no pointer and is thread-safe (each arena is locked
    // while it is trimmed).
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators (musl, the BSDs, macOS) return memory by their own rules.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

//! `--idle-connections N`: hostile-client pressure beside a run. Holds N
//! half-open connections to the target, each having sent part of a request
//! header and nothing more (slowloris), and opens a new one whenever the
//! server closes one, so the pressure stays at N for the whole run. Then
//! reports how long the server kept them: a server with a header timeout
//! closes each within it; one without keeps them all.
//!
//! Bounded: at most [`MAX_IDLE`] connections, a connect timeout per attempt,
//! a pause after every close or failed attempt (no spin against a server
//! that refuses at once), and a bounded wait after the run.

use crate::client::Target;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// The most idle connections one run may hold.
pub const MAX_IDLE: u32 = 20_000;

/// Pause before a slot opens its next connection.
const REOPEN_PAUSE: Duration = Duration::from_millis(20);

/// Connections opened at once while filling the slots, so a burst of N
/// does not overflow the server's listen backlog.
const OPENING_AT_ONCE: usize = 64;

/// What one slot saw.
#[derive(Debug, Default)]
struct Slot {
    opened: u64,
    connect_errors: u64,
    /// How long the server kept each connection it closed.
    lifetimes: Vec<Duration>,
    /// The server answered a partial header (it should not).
    answered: u64,
    /// Open when the wait after the run ended.
    still_open: bool,
}

/// The idle connections while the run goes on.
pub struct Holder {
    /// `None` while the run goes on; then until when to wait for the
    /// server to close the connections still open.
    stop: watch::Sender<Option<tokio::time::Instant>>,
    slots: JoinSet<Slot>,
    /// How long it took to have every slot's first connection open.
    pub filled_in: Duration,
    n: u32,
}

/// What the idle connections saw over the run.
#[derive(Debug)]
pub struct Report {
    pub n: u32,
    pub filled_in: Duration,
    pub opened: u64,
    pub connect_errors: u64,
    pub answered: u64,
    /// Lifetimes of the connections the server closed, sorted.
    pub lifetimes: Vec<Duration>,
    pub still_open: u64,
    pub wait: Duration,
}

impl Holder {
    /// Opens `n` idle connections to `target` and returns once each slot
    /// has its first one open (or failed to open it within
    /// `connect_timeout`).
    pub async fn open(target: &Target, n: u32, connect_timeout: Duration) -> Holder {
        let started = Instant::now();
        let (stop, _) = watch::channel(None);
        let partial: Arc<[u8]> = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: airq-loadtest idle\r\n",
            target.host.to_str().unwrap_or("localhost")
        )
        .into_bytes()
        .into();
        let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
        let (first_tx, mut first_rx) = tokio::sync::mpsc::channel::<()>(n.max(1) as usize);
        let mut slots = JoinSet::new();
        for _ in 0..n {
            let stop = stop.subscribe();
            let partial = partial.clone();
            let opening = opening.clone();
            let first = first_tx.clone();
            let addr = target.addr;
            slots.spawn(hold(addr, partial, connect_timeout, stop, opening, first));
        }
        drop(first_tx);
        // Every slot reports its first attempt once, whatever its outcome.
        let mut reported = 0;
        while reported < n && first_rx.recv().await.is_some() {
            reported += 1;
        }
        Holder {
            stop,
            slots,
            filled_in: started.elapsed(),
            n,
        }
    }

    /// Stops reopening, waits up to `wait` for the server to close the
    /// connections still open, and reports.
    pub async fn finish(mut self, wait: Duration) -> Report {
        let deadline = tokio::time::Instant::now() + wait;
        let _ = self.stop.send(Some(deadline));
        let mut report = Report {
            n: self.n,
            filled_in: self.filled_in,
            opened: 0,
            connect_errors: 0,
            answered: 0,
            lifetimes: Vec::new(),
            still_open: 0,
            wait,
        };
        // Each slot ends by itself within `wait` (see `hold`); the deadline
        // here only guards against a slot that does not.
        while let Ok(Some(slot)) =
            tokio::time::timeout_at(deadline + Duration::from_secs(5), self.slots.join_next()).await
        {
            let Ok(slot) = slot else { continue };
            report.opened += slot.opened;
            report.connect_errors += slot.connect_errors;
            report.answered += slot.answered;
            report.lifetimes.extend(slot.lifetimes);
            report.still_open += u64::from(slot.still_open);
        }
        report.still_open += self.slots.len() as u64;
        self.slots.abort_all();
        report.lifetimes.sort();
        report
    }
}

/// One slot: a connection at a time, reopened when the server closes it,
/// until `stop` says until when to wait; the last one is then watched
/// until that deadline.
async fn hold(
    addr: SocketAddr,
    partial: Arc<[u8]>,
    connect_timeout: Duration,
    mut stop: watch::Receiver<Option<tokio::time::Instant>>,
    opening: Arc<Semaphore>,
    first: tokio::sync::mpsc::Sender<()>,
) -> Slot {
    let mut slot = Slot::default();
    let mut first = Some(first);
    let mut buf = [0u8; 1024];
    while stop.borrow().is_none() {
        let conn = {
            let _turn = opening.acquire().await;
            match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(mut conn)) => match conn.write_all(&partial).await {
                    Ok(()) => Some(conn),
                    Err(_) => None,
                },
                _ => None,
            }
        };
        if let Some(first) = first.take() {
            let _ = first.send(()).await;
        }
        let Some(mut conn) = conn else {
            slot.connect_errors += 1;
            tokio::select! {
                _ = stop.changed() => {}
                () = tokio::time::sleep(REOPEN_PAUSE * 5) => {}
            }
            continue;
        };
        slot.opened += 1;
        let since = Instant::now();
        // Wait for the server to close it; after `stop`, no new one is
        // opened and this one is waited for as long as the caller waits.
        let closed = loop {
            let until = *stop.borrow();
            tokio::select! {
                read = conn.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break true,
                    // An answer (e.g. 408 or 400) before the close.
                    Ok(_) => slot.answered += 1,
                },
                changed = stop.changed(), if until.is_none() => {
                    if changed.is_err() {
                        break false;
                    }
                }
                () = sleep_until_or_never(until), if until.is_some() => break false,
            }
        };
        if closed {
            slot.lifetimes.push(since.elapsed());
        } else {
            slot.still_open = true;
            break;
        }
        if stop.borrow().is_none() {
            tokio::time::sleep(REOPEN_PAUSE).await;
        }
    }
    slot
}

async fn sleep_until_or_never(until: Option<tokio::time::Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Report {
    fn percentile(&self, q: f64) -> Option<Duration> {
        let n = self.lifetimes.len();
        if n == 0 {
            return None;
        }
        let i = ((n as f64 - 1.0) * q).round() as usize;
        self.lifetimes.get(i.min(n - 1)).copied()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "idle connections: {} held (all open after {:.2} s), {} opened in all, {} connect errors",
            self.n,
            self.filled_in.as_secs_f64(),
            self.opened,
            self.connect_errors
        )?;
        match (
            self.percentile(0.0),
            self.percentile(0.5),
            self.percentile(0.99),
            self.percentile(1.0),
        ) {
            (Some(min), Some(p50), Some(p99), Some(max)) => write!(
                f,
                "; {} closed by the server after min {:.2} s, median {:.2} s, p99 {:.2} s, max {:.2} s",
                self.lifetimes.len(),
                min.as_secs_f64(),
                p50.as_secs_f64(),
                p99.as_secs_f64(),
                max.as_secs_f64()
            )?,
            _ => write!(f, "; none closed by the server")?,
        }
        if self.answered > 0 {
            write!(f, "; {} answered a partial header", self.answered)?;
        }
        write!(
            f,
            "; {} still open {:.0} s after the run",
            self.still_open,
            self.wait.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_that_closes_is_measured_and_one_that_does_not_is_counted_open() {
        // A server that closes every connection after 100 ms.
        let closing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closing.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((conn, _)) = closing.accept().await {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    drop(conn);
                });
            }
        });
        let target = Target::resolve(&format!("http://{addr}"), false)
            .await
            .unwrap();
        let holder = Holder::open(&target, 5, Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let report = holder.finish(Duration::from_secs(5)).await;
        assert_eq!(report.still_open, 0, "{report}");
        assert!(report.opened >= 10, "{report}");
        assert!(report.lifetimes.len() as u64 == report.opened, "{report}");
        assert!(report.to_string().contains("closed by the server"));

        // A server that never closes.
        let keeping = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = keeping.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = keeping.accept().await {
                held.push(conn);
            }
        });
        let target = Target::resolve(&format!("http://{addr}"), false)
            .await
            .unwrap();
        let holder = Holder::open(&target, 3, Duration::from_secs(5)).await;
        let report = holder.finish(Duration::from_millis(200)).await;
        assert_eq!(report.still_open, 3, "{report}");
        assert_eq!(report.opened, 3, "{report}");
        assert!(report.to_string().contains("none closed by the server"));
    }
}

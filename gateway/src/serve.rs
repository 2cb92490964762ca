//! Serving connections: the accept loop, the per-connection limits, and
//! graceful shutdown, around hyper's HTTP/1.1 server.
//!
//! Six bounds keep a large, slow or hostile client from holding what
//! others need:
//!
//! - **Connection cap** (`--max-connections`): a semaphore permit is taken
//!   *before* `accept`, so at the cap the loop stops accepting and new
//!   connections wait in the kernel's listen backlog (once that is full,
//!   the kernel drops their SYNs and clients retry) while the ones being
//!   served carry on. The
//!   default stays under the open-files limit, so `accept` does not run
//!   out of descriptors (EMFILE) while the store still needs files.
//! - **A client's share of it** (`--max-connections-per-client`): see
//!   [`crate::client_connections`].
//! - **Header size** (`--max-header-bytes`): hyper's read buffer, which
//!   holds a request's head until it is complete, grows to at most this
//!   (`max_buf_size`); a longer head is answered `431` and the connection
//!   closed. hyper's default, about 400 KB, let 3,000 connections each
//!   sending an unfinished 400 KB header hold 1.15 GB; at 16 KiB the same
//!   connections hold at most 48 MiB of buffers (BENCHMARKS.md).
//! - **Header timeout** (`--header-timeout`): a request's header must be
//!   complete within this time, counted from the accept for a connection's
//!   first request and from the first byte for a later one. A slowloris
//!   client, dripping a header or sending nothing at all, is closed.
//! - **Idle timeout** (`--idle-timeout`): a kept-alive connection with no
//!   request in progress is closed after this long.
//! - **Send timeout** (`--send-timeout`): a connection whose client takes
//!   none of the response for this long is cut (and its socket reset, so
//!   the kernel drops the unsent bytes instead of keeping them). The
//!   direct path applies the same bound to its slots (see
//!   [`crate::direct`]).
//!
//! hyper offers a header-read timeout, but its clock starts whenever the
//! connection waits for a request, idle time included, so it cannot tell
//! "idle between requests" (60 s is polite) from "half a header" (10 s is
//! plenty), and it has no send timeout at all. Both clocks therefore live
//! here: [`Guarded`] wraps the socket and times its reads and writes, and
//! the service wrapper tells it when a request starts and when its response
//! body is done (a [`Busy`] guard). The clocks move their timers lazily
//! (see [`expired`]): a first version that moved them on every request,
//! and woke the connection after each one, answered 10–15 % fewer
//! `/healthz` requests a second than `axum::serve`; this one is level with
//! it within the noise. hyper's own header timer stays on as a backstop at
//! header + idle timeout, a bound the clocks here never exceed.
//!
//! HTTP/1.1 only, as hyper serves it (what axum's `serve` spoke before,
//! except for HTTP/2 with prior knowledge, which no browser uses without
//! TLS and which would need its own idle and flow-control limits).

use crate::client_connections::{Admitted, ClientConnections};
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service as _};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// How many connections the kernel holds completed but not yet accepted:
/// where connections beyond the cap wait. The standard library's and
/// tokio's `bind` ask for 128, which a burst beyond a full cap overflows
/// (the kernel then drops SYNs and clients retry after a second or more);
/// the kernel clamps this to `net.core.somaxconn` (4096 by default).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Listens on `listen` (`HOST:PORT`; the first resolved address that
/// binds), with [`LISTEN_BACKLOG`].
pub async fn bind(listen: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(listen).await? {
        match bind_one(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

fn bind_one(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted gateway can bind its port
    // while the old one's connections linger in TIME_WAIT.
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The per-connection bounds; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub max_connections: usize,
    /// Bytes hyper may buffer for one request's head (`max_buf_size`).
    pub max_header_bytes: usize,
}

impl Limits {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Limits {
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
            send_timeout: config.send_timeout,
            max_connections: config.max_connections(),
            max_header_bytes: config.max_header_bytes,
        }
    }
}

/// After an accept error that is not about one connection (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM, …), the first pause before accepting again; doubled
/// while errors go on, up to [`ACCEPT_BACKOFF_MAX`]. Retrying at once
/// would spin on a limit that only a closing connection can lift.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// At most one warning per this interval for the same condition (the cap
/// reached, accept failing), so a flood of connections cannot flood the log.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Accepts and serves connections on `listener` until `stop` is cancelled;
/// then stops accepting, lets every connection finish its request in
/// flight (hyper's graceful shutdown: idle connections close at once), and
/// returns once all have closed. The caller bounds that wait
/// (`--shutdown-grace`). Accept errors never end it.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    clients: Arc<ClientConnections>,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let closed = Arc::new(crate::heap::Closed::default());
    tokio::spawn(closed.clone().trim_after_waves(stop.clone()));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper panics below 8 KiB; the flag's parser refuses that.
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES))
        // The backstop described in the module documentation.
        .header_read_timeout(limits.header_timeout.saturating_add(limits.idle_timeout))
        .keep_alive(true);
    let mut at_cap = Throttled::new();
    let mut failing = Throttled::new();
    let mut over_share = Throttled::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;

    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if at_cap.due() {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection cap reached: new connections wait in the listen backlog"
                    );
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        // The semaphore is never closed.
                        Err(_) => break,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) if is_about_one_connection(&e) => {
                // That connection is gone; the listener is fine.
                tracing::debug!(error = %e, "accept: connection gone before it was accepted");
                continue;
            }
            Err(e) => {
                if failing.due() {
                    tracing::warn!(error = %e, pause = ?backoff,
                        "accept failed; pausing before accepting again (new connections wait in the backlog)");
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        if backoff != ACCEPT_BACKOFF_MIN {
            tracing::info!("accepting connections again");
            backoff = ACCEPT_BACKOFF_MIN;
            failing.reset();
        }
        let counted = match clients.admit(peer.ip()) {
            Admitted::Yes(counted) => counted,
            Admitted::OverShare { max } => {
                metrics::counter!("airq_connections_refused_total", "reason" => "client_share")
                    .increment(1);
                if over_share.due() {
                    tracing::warn!(%peer, max,
                        "a client is over its share of connections; refusing its new ones");
                }
                tokio::spawn(refuse(tcp, max, permit));
                continue;
            }
        };
        // Small answers go out at once instead of waiting for an ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }

        let activity = Arc::new(Activity::new(Instant::now()));
        let io = TokioIo::new(Guarded::new(tcp, activity.clone(), limits));
        let service = {
            let inner = TowerToHyperService::new(router.clone());
            service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                // Who is asking, for rate limits (see `admission`).
                request.extensions_mut().insert(ConnectInfo(peer));
                let busy = Busy::begin(activity.clone());
                let response = inner.call(request);
                async move {
                    let response = response.await?;
                    Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
                }
            })
        };
        let connection = graceful.watch(builder.serve_connection(io, service));
        let closed = closed.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Timeouts, resets and clients that hang up mid-request:
                // routine for a public server, and about one client.
                tracing::debug!(%peer, error = ?e, "connection ended with an error");
            }
            // The connection's place under the cap (and in its client's
            // share) is free again.
            drop(counted);
            drop(permit);
            closed.one();
        });
    }

    drop(listener);
    tracing::debug!(
        connections = graceful.count(),
        "stopped accepting; waiting for open connections"
    );
    graceful.shutdown().await;
}

/// The smallest `--max-header-bytes`: hyper's smallest read buffer.
pub const MIN_HEADER_BYTES: usize = 8192;

/// How long a refused connection may take to receive its `503`.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// The most of a refused connection's request read (and dropped) so that
/// closing it does not reset it.
const REFUSAL_DRAIN: usize = 64 * 1024;

/// Answers a connection over its client's share with `503` and closes it.
/// Its request is read and dropped (at most [`REFUSAL_DRAIN`] bytes): a
/// socket closed with unread bytes is reset, and many clients drop an
/// answer that arrives with a reset unread. Holds its place under the cap
/// until then, at most [`REFUSAL_TIMEOUT`].
async fn refuse(mut tcp: TcpStream, max: usize, _permit: tokio::sync::OwnedSemaphorePermit) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let answer = crate::client_connections::over_share_response(max);
    let sent = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        tcp.write_all(&answer).await?;
        tcp.shutdown().await?;
        let mut drained = 0;
        let mut buf = [0u8; 4096];
        while drained < REFUSAL_DRAIN {
            match tcp.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
    if let Ok(Err(e)) = sent {
        tracing::debug!(error = %e, "could not send a refusal");
    }
}

/// Whether an accept error concerns only the connection being accepted
/// (it was reset or aborted before `accept` returned it), so the next one
/// can be accepted at once.
fn is_about_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// "At most once per [`WARN_EVERY`]".
struct Throttled {
    last: Option<Instant>,
}

impl Throttled {
    fn new() -> Self {
        Throttled { last: None }
    }

    fn due(&mut self) -> bool {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < WARN_EVERY => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }

    fn reset(&mut self) {
        self.last = None;
    }
}

/// What a connection is doing, as far as its read deadline is concerned:
/// shared by its socket wrapper ([`Guarded`]) and its requests ([`Busy`]).
/// Everything touching it runs on the connection's task, so the lock is
/// never contended; it is a lock only because the service must be `Send`.
struct Activity {
    state: Mutex<ActivityState>,
}

struct ActivityState {
    /// Requests whose response body is not done yet.
    in_flight: usize,
    /// When the last response body was done (or the connection accepted).
    idle_since: Instant,
    /// When the header now being waited for started: the accept for the
    /// first request, the first byte read while idle for a later one.
    header_since: Option<Instant>,
    /// The task that last found nothing to read, woken when the last
    /// request ends so that it sets the idle deadline.
    reader: Option<Waker>,
    /// When the read timer will next wake that task, if it is set and
    /// still to come.
    alarm: Option<Instant>,
}

/// Why a read deadline expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Header,
    Idle,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Activity {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: accepted,
                header_since: Some(accepted),
                reader: None,
                alarm: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ActivityState> {
        // The state stays consistent whatever panicked while holding it
        // (every update is a single assignment or counter step).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived at `now`. While no request is in progress they are
    /// the start of the next request's header, which starts its clock.
    /// Bytes read during a request (its body, or a pipelined next request)
    /// do not: a pipelined request's header is then timed by the idle
    /// clock instead, a bound all the same.
    fn read_some(&self, now: Instant) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.header_since.is_none() {
            s.header_since = Some(now);
        }
    }

    /// The deadline of the read that just found nothing, if any, and what
    /// it waits for; `waker` is remembered for [`Activity::end_request`].
    fn read_deadline(&self, waker: &Waker, limits: &Limits) -> Option<(Instant, Wait)> {
        let mut s = self.lock();
        if !s.reader.as_ref().is_some_and(|w| w.will_wake(waker)) {
            s.reader = Some(waker.clone());
        }
        if s.in_flight > 0 {
            // A request in progress: its body's pace is the handler's
            // business (`--request-timeout`), its response's the send
            // timeout's.
            return None;
        }
        Some(match s.header_since {
            Some(since) => (later(since, limits.header_timeout), Wait::Header),
            None => (later(s.idle_since, limits.idle_timeout), Wait::Idle),
        })
    }

    /// The read timer is set to wake the reader at `at`.
    fn alarm_at(&self, at: Instant) {
        self.lock().alarm = Some(at);
    }

    fn begin_request(&self) {
        let mut s = self.lock();
        s.in_flight += 1;
        s.header_since = None;
    }

    fn end_request(&self, now: Instant) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = now;
            s.header_since = None;
            // The idle clock starts with the next read that finds nothing,
            // but hyper does not read again by itself before the client
            // sends something. A read timer still to come will make it (it
            // wakes the task, whose read then sets the idle deadline), so
            // only without one is the task woken here: not once per
            // request on a busy kept-alive connection.
            if s.alarm.is_none_or(|at| at <= now) {
                if let Some(w) = s.reader.take() {
                    w.wake();
                }
            }
        }
    }
}

/// `since + after`, or a deadline far enough never to matter if that
/// overflows (the flags are capped at a day, so it does not).
fn later(since: Instant, after: Duration) -> Instant {
    since
        .checked_add(after)
        .unwrap_or_else(|| since + Duration::from_secs(365 * 24 * 3600))
}

/// A request in progress, from the call of the service until its response
/// body is done or dropped (hyper drops it once sent, or when the
/// connection fails).
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.begin_request();
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end_request(Instant::now());
    }
}

/// A response body carrying its request's [`Busy`] guard; otherwise the
/// body itself, frames, end and size hint unchanged (so `Content-Length`
/// and the bytes are exactly as the handler made them).
struct Tracked {
    body: axum::body::Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                metrics::counter!("airq_http_response_bytes_total").increment(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A client socket with a read deadline (header or idle timeout, while no
/// request is in progress) and a write-stall deadline (send timeout).
/// Expiry is an `io::ErrorKind::TimedOut` error, on which hyper closes the
/// connection: silently when idle or mid-header (no response is due), by
/// dropping the response when mid-body.
struct Guarded {
    tcp: TcpStream,
    activity: Arc<Activity>,
    limits: Limits,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    /// When the current write stall ends the connection; `None` while
    /// writes go through.
    write_deadline: Option<Instant>,
}

impl Guarded {
    fn new(tcp: TcpStream, activity: Arc<Activity>, limits: Limits) -> Self {
        Guarded {
            tcp,
            activity,
            limits,
            read_timer: None,
            write_timer: None,
            write_deadline: None,
        }
    }

    /// A write that could not proceed: starts the stall clock if it is not
    /// running, and fails once it has run out.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let deadline = *self
            .write_deadline
            .get_or_insert_with(|| later(Instant::now(), self.limits.send_timeout));
        if expired(&mut self.write_timer, deadline, cx) {
            // Reset rather than close: the client is not reading, so a
            // graceful close would leave the unsent bytes in kernel memory
            // until TCP gave up on them.
            if let Err(e) = self.tcp.set_zero_linger() {
                tracing::debug!(error = %e, "could not set SO_LINGER");
            }
            tracing::debug!(timeout = ?self.limits.send_timeout, "client stopped reading; closing");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took nothing for --send-timeout",
            )));
        }
        Poll::Pending
    }

    /// A write's outcome: one that went through (or failed) ends a stall.
    fn wrote<T>(&mut self, r: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.write_deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.stalled(cx),
        }
    }
}

/// Whether `deadline` has passed; if not, makes sure `timer` wakes the task
/// by then. A timer already set for earlier is left as it is: it wakes the
/// task, whose next read or write checks again and moves it. So a deadline
/// that moves later with every request (the idle clock of a busy kept-alive
/// connection) costs no update of the runtime's timer wheel, only a check.
fn expired(timer: &mut Option<Pin<Box<Sleep>>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        let t = match timer {
            Some(t) => {
                if t.deadline() > deadline || t.deadline() <= now {
                    t.as_mut().reset(deadline);
                }
                t
            }
            None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        // Ready only once its (past) deadline is reached: check again.
        if t.as_mut().poll(cx).is_pending() {
            return false;
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.activity.read_some(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some((deadline, wait)) = this.activity.read_deadline(cx.waker(), &this.limits)
                else {
                    return Poll::Pending;
                };
                if !expired(&mut this.read_timer, deadline, cx) {
                    if let Some(t) = &this.read_timer {
                        this.activity.alarm_at(t.deadline());
                    }
                    return Poll::Pending;
                }
                let why = match wait {
                    Wait::Header => "request header not complete within --header-timeout",
                    Wait::Idle => "no request within --idle-timeout",
                };
                tracing::debug!(?wait, "closing a connection: {why}");
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.wrote(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.wrote(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    // A TCP socket has nothing to flush and shuts down at once: neither
    // says whether the client takes data, so neither touches the clock.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            max_connections: 1,
            max_header_bytes: MIN_HEADER_BYTES,
        }
    }

    #[test]
    fn header_clock_then_idle_clock_then_header_clock() {
        let waker = futures::task::noop_waker();
        let (l, t0) = (limits(), Instant::now());
        let a = Activity::new(t0);
        let secs = Duration::from_secs;
        // A new connection waits for its first header from the accept.
        assert_eq!(
            a.read_deadline(&waker, &l),
            Some((t0 + secs(10), Wait::Header))
        );
        a.read_some(t0 + secs(3));
        assert_eq!(
            a.read_deadline(&waker, &l),
            Some((t0 + secs(10), Wait::Header))
        );
        // During a request: no read deadline.
        a.begin_request();
        a.read_some(t0 + secs(4));
        assert_eq!(a.read_deadline(&waker, &l), None);
        // After it: the idle clock, until the next request's first byte.
        a.end_request(t0 + secs(5));
        assert_eq!(
            a.read_deadline(&waker, &l),
            Some((t0 + secs(65), Wait::Idle))
        );
        a.read_some(t0 + secs(50));
        assert_eq!(
            a.read_deadline(&waker, &l),
            Some((t0 + secs(60), Wait::Header))
        );
        // Two requests in flight (pipelined): idle only after both.
        a.begin_request();
        a.begin_request();
        a.end_request(t0 + secs(51));
        assert_eq!(a.read_deadline(&waker, &l), None);
        a.end_request(t0 + secs(52));
        assert_eq!(
            a.read_deadline(&waker, &l),
            Some((t0 + secs(112), Wait::Idle))
        );
    }

    #[cfg(unix)]
    #[test]
    fn only_connection_errors_are_retried_at_once() {
        for kind in [
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::ConnectionReset,
        ] {
            assert!(is_about_one_connection(&io::Error::from(kind)));
        }
        // EMFILE, ENFILE: the process or the system is out of descriptors.
        for errno in [24, 23] {
            assert!(!is_about_one_connection(&io::Error::from_raw_os_error(
                errno
            )));
        }
    }
}

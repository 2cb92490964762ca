//! The signals that ask a process to stop (SIGINT, SIGTERM), as a future
//! or as a cancelled token.
//!
//! Handlers are installed when [`Signals::install`] (or [`cancel_on_signal`])
//! is called, not when the wait starts: a binary installs them before it
//! says it is ready, so a SIGTERM sent right after that is a graceful
//! shutdown rather than the default instant death.

use std::io;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Installed SIGINT and SIGTERM handlers.
pub struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (needs a Tokio runtime).
    pub fn install() -> io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for SIGTERM or SIGINT; returns the signal's name.
    pub async fn wait(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Resolves on SIGINT or SIGTERM, with the signal's name. If the handlers
/// cannot be installed it says so and never resolves: the process can then
/// only be killed, which is what it would be without them.
pub async fn signal() -> &'static str {
    match Signals::install() {
        Ok(mut s) => s.wait().await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGINT/SIGTERM; this process can only be killed");
            std::future::pending().await
        }
    }
}

/// Installs the handlers now and cancels `token` on the first signal,
/// logging `what` happens next (e.g. "no new requests will be taken").
pub fn cancel_on_signal(
    token: CancellationToken,
    what: &'static str,
) -> io::Result<JoinHandle<()>> {
    let mut signals = Signals::install()?;
    Ok(tokio::spawn(async move {
        let signal = signals.wait().await;
        tracing::info!(signal, "shutdown requested: {what}");
        token.cancel();
    }))
}

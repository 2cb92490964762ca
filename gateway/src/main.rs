//! airq-gateway: the HTTP front of airq.
//!
//! Validates queries, answers small ones directly as CSV from the reading
//! store, queues the rest for workers, and serves their results; see
//! [`api`] for the endpoints. Prints `listening on http://ADDR` on stdout
//! once it accepts connections, and shuts down gracefully on SIGINT/SIGTERM.

mod answer_headers;
mod api;
mod background;
mod cached;
mod config;
mod direct;
mod enqueue;
mod error;
mod handlers;
mod state;
mod web;

use airq_cli::shutdown::Signals;
use airq_core::BackendError;
use anyhow::Context;
use axum::serve::ListenerExt;
use clap::Parser;
use config::Config;
use std::future::IntoFuture;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long background tasks get to stop after the server has.
const TASKS_GRACE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.log.init();
    run(config).await
}

async fn run(config: Config) -> anyhow::Result<()> {
    let mut signals = Signals::install().context("installing signal handlers")?;
    let backend = config
        .backend
        .connect()
        .await
        .with_context(|| format!("opening the backend at {}", config.backend.db.display()))?;
    // A store that would drop result data before --result-ttl is a
    // configuration error: refuse to start rather than lose results.
    match backend.results.check_retention(config.result_ttl).await {
        Ok(()) => {}
        Err(e @ BackendError::Schema(_)) => return Err(e).context("checking --result-ttl"),
        Err(e) => {
            tracing::warn!(error = %e, "could not check how long the store keeps results")
        }
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;

    let cancel = CancellationToken::new();
    let mut tasks = background::spawn(
        &backend,
        config.backend.max_receives,
        config.purge_every,
        &cancel,
    );
    let app = Arc::new(state::App::new(&config, backend.clone()));
    let direct_limit = config.direct_limit();
    let router = api::router(app, config.request_timeout);
    let listener = listener.tap_io(|tcp| {
        // Small answers go out at once instead of waiting for an ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let stop = cancel.clone();
    let mut server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .into_future(),
    );

    // The line tests and the deploy tool wait for; stdout may be closed.
    let _ = writeln!(std::io::stdout(), "listening on http://{addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, backend = %backend.location, direct_limit,
        direct_max_span = ?config.direct_max_span, max_backlog = config.max_backlog,
        "gateway listening");

    tokio::select! {
        signal = signals.wait() => {
            tracing::info!(signal, "shutting down: finishing in-flight requests");
        }
        ended = &mut server => {
            cancel.cancel();
            return match ended {
                Ok(Ok(())) => Err(anyhow::anyhow!("the server stopped unexpectedly")),
                Ok(Err(e)) => Err(e).context("serving HTTP"),
                Err(e) => Err(e).context("the server task failed"),
            };
        }
    }
    cancel.cancel();
    match tokio::time::timeout(config.shutdown_grace, &mut server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "server error while shutting down"),
        Ok(Err(e)) => tracing::error!(error = %e, "server task failed while shutting down"),
        Err(_) => {
            tracing::warn!(grace = ?config.shutdown_grace, "requests still in flight after the grace period; dropping them");
            server.abort();
        }
    }
    if tokio::time::timeout(TASKS_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("background tasks did not stop in time; aborting them");
        tasks.abort_all();
    }
    tracing::info!("gateway stopped");
    Ok(())
}

//! `airq-worker`: consumes RequestSend, runs each query against the reading
//! store, and posts the CSV (or the reason it failed) to RequestReceive.

mod cli;
mod execute;
mod runner;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    cli.log.init();
    let backend = cli
        .backend
        .connect()
        .await
        .with_context(|| format!("connecting to the {:?} backend", cli.backend.backend))?;
    let settings = runner::Settings {
        concurrency: cli.concurrency(),
        visibility: cli.visibility_timeout,
        receive_wait: cli.receive_wait,
        shutdown_timeout: cli.shutdown_timeout,
        test_query_delay: cli.test_query_delay,
    };
    tracing::info!(
        store = %backend.location,
        concurrency = settings.concurrency,
        visibility = ?settings.visibility,
        "worker started"
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));
    runner::Runner::new(backend, settings).run(shutdown).await;
    tracing::info!("worker stopped");
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn signal_shutdown(token: CancellationToken) {
    airq_cli::shutdown::signal().await;
    tracing::info!("shutdown requested: no new requests will be taken");
    token.cancel();
}

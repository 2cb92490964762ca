//! `airq-worker`: consumes RequestSend, runs each query against the reading
//! store, and posts the CSV (or the reason it failed) to RequestReceive.

mod cli;
mod execute;
mod metrics;
mod runner;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    // First, before any thread: it may set environment variables.
    let (cli, renamed) = airq_cli::renamed::parse::<cli::Cli>(cli::RENAMED);
    cli.log.init();
    renamed.warn();
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(run(cli))
}

async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let backend = cli
        .backend
        .connect()
        .await
        .with_context(|| format!("connecting to the {:?} backend", cli.backend.backend))?;
    let settings = runner::Settings {
        concurrency: cli.concurrency(),
        visibility: cli.visibility_timeout,
        receive_wait: cli.receive_wait,
        shutdown_grace: cli.shutdown_grace,
        test_query_delay: cli.test_query_delay,
    };
    // Before "worker started", so a SIGTERM sent after it is graceful.
    let shutdown = CancellationToken::new();
    airq_cli::shutdown::cancel_on_signal(shutdown.clone(), "no new requests will be taken")
        .context("installing signal handlers")?;
    // Served until the drain is over: a scrape during it still sees the
    // jobs in progress.
    let metrics_stop = CancellationToken::new();
    let concurrency = settings.concurrency;
    cli.metrics
        .start(metrics_stop.clone(), || metrics::register(concurrency))
        .await
        .context("starting metrics")?;
    tracing::info!(
        store = %backend.location,
        concurrency = settings.concurrency,
        visibility = ?settings.visibility,
        "worker started"
    );

    runner::Runner::new(backend, settings).run(shutdown).await;
    metrics_stop.cancel();
    tracing::info!("worker stopped");
    Ok(())
}

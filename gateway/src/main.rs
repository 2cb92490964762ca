//! airq-gateway: the HTTP front of airq.
//!
//! Validates queries, answers small ones directly as CSV from the reading
//! store, queues the rest for workers, and serves their results; see
//! [`api`] for the endpoints. Prints `listening on http://ADDR` on stdout
//! once it accepts connections, and shuts down gracefully on SIGINT/SIGTERM.

mod admission;
mod alerts;
mod answer_headers;
mod api;
mod background;
mod cached;
mod client_connections;
mod config;
mod direct;
mod enqueue;
mod error;
mod follow;
mod gzip;
mod handlers;
mod heap;
mod live_feed;
mod observe;
mod openapi;
mod rate_limit;
mod request_id;
mod serve;
mod slots;
mod state;
mod tiers;
mod web;

use airq_cli::shutdown::Signals;
use airq_core::BackendError;
use anyhow::Context;
use clap::Parser;
use config::Config;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Connections the metrics address (`--metrics-listen`) serves at once.
const METRICS_MAX_CONNECTIONS: usize = 16;

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
    // The web page's files as served (versions, gzip), computed while the
    // backend connects and awaited before serving, so that no request
    // waits for them.
    let web = tokio::task::spawn_blocking(web::prepare);
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
    let listener = serve::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;

    let cancel = CancellationToken::new();
    let follows = follow::Follows::new(
        config.max_followers as usize,
        config.max_followers_per_client as usize,
    );
    let mut tasks = background::spawn(
        &backend,
        config.backend.max_receives,
        config.purge_every,
        follows.clone(),
        &cancel,
    );
    let metrics = if config.metrics {
        let handle = airq_cli::metrics::install().context("starting metrics")?;
        observe::register();
        Some(handle)
    } else {
        None
    };
    let alerts = backend.alerts.clone().map(|store| {
        alerts::Alerts::new(
            store,
            config.max_alerts_per_key,
            config.max_alerts,
            alerts::DeliveryConfig {
                policy: alerts::target::Policy {
                    allow_loopback: config.webhook_allow_loopback,
                },
                concurrency: config.webhook_concurrency as usize,
                timeout: config.webhook_timeout,
                retry_first: config.webhook_retry_first,
                give_up_after: config.webhook_give_up_after,
            },
        )
    });
    let live = live_feed::LiveFeed::new(
        backend.readings.clone(),
        slots::Slots::new(
            config.max_streams as usize,
            config.max_streams_per_client as usize,
        ),
        config.max_stream_sensors as usize,
        cancel.clone(),
        alerts.clone(),
    );
    if let Some(alerts) = &alerts {
        live.load_in_background();
        tasks.spawn(alerts.clone().deliver(cancel.clone()));
        tasks.spawn(alerts.clone().evaluator(cancel.clone()));
    }
    let app = Arc::new(state::App::new(
        &config,
        backend.clone(),
        metrics,
        follows,
        live,
        alerts,
    ));
    tracing::info!(auth = ?config.auth, tiers = %app.admission.tiers().describe(),
        trusted_proxies = ?config.trusted_proxies, "admission");
    let direct_limit = config.direct_limit();
    let limits = serve::Limits::from_config(&config);
    // `/metrics` on an address of its own, with the same connection
    // limits (no per-client share: its one client is the scraper).
    if let Some(listen) = &app.metrics_listen {
        let listener = serve::bind(listen)
            .await
            .with_context(|| format!("listening for metrics on {listen}"))?;
        let metrics_addr = listener
            .local_addr()
            .context("reading the metrics address")?;
        // A few scrapers at most: a small cap of its own, so that it adds
        // little to the open files the API's cap was sized for.
        let metrics_limits = serve::Limits {
            max_connections: METRICS_MAX_CONNECTIONS,
            ..limits
        };
        tasks.spawn(serve::serve(
            listener,
            api::metrics_router(app.clone()),
            metrics_limits,
            client_connections::ClientConnections::new(0, Vec::new()),
            cancel.clone(),
        ));
        let _ = writeln!(
            std::io::stdout(),
            "metrics on http://{metrics_addr}/metrics"
        );
        tracing::info!(addr = %metrics_addr, "serving metrics");
    } else if config.metrics && config.auth == config::AuthMode::Required {
        tracing::warn!(
            "--auth required, but /metrics is served without a key on the API's address; \
             set --metrics-listen (e.g. 127.0.0.1:9100) to serve it on another"
        );
    }
    web.await.context("preparing the web page's files")?;
    let router = api::router(app, config.request_timeout, config.gzip_level);
    let clients = client_connections::ClientConnections::new(
        config.max_connections_per_client as usize,
        config.trusted_proxies.clone(),
    );
    let mut server = tokio::spawn(serve::serve(
        listener,
        router,
        limits,
        clients,
        cancel.clone(),
    ));

    // The line tests and the deploy tool wait for; stdout may be closed.
    let _ = writeln!(std::io::stdout(), "listening on http://{addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, backend = %backend.location, direct_limit,
        direct_max_span = ?config.direct_max_span(),
        direct_max_span_cheap = ?config.direct_max_span_cheap(), max_backlog = config.max_backlog,
        max_connections = limits.max_connections,
        max_connections_per_client = config.max_connections_per_client,
        max_header_bytes = limits.max_header_bytes, header_timeout = ?limits.header_timeout,
        idle_timeout = ?limits.idle_timeout, send_timeout = ?limits.send_timeout,
        "gateway listening");

    tokio::select! {
        signal = signals.wait() => {
            tracing::info!(signal, "shutting down: finishing in-flight requests");
        }
        ended = &mut server => {
            cancel.cancel();
            // The accept loop survives accept errors; it ends only when
            // told to, or by a panic.
            return match ended {
                Ok(()) => Err(anyhow::anyhow!("the server stopped unexpectedly")),
                Err(e) => Err(e).context("the server task failed"),
            };
        }
    }
    cancel.cancel();
    match tokio::time::timeout(config.shutdown_grace, &mut server).await {
        Ok(Ok(())) => {}
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

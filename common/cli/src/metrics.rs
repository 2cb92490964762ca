//! Prometheus metrics for every binary: the `metrics` facade's recorder
//! (metrics-exporter-prometheus, which writes the exposition format), and,
//! for binaries without an HTTP server of their own (worker, master), a
//! small one serving `GET /metrics` on `--metrics-listen`.
//!
//! Names follow Prometheus conventions (`airq_…_total` counters,
//! `…_seconds` and `…_bytes` units) and labels are low-cardinality only: a
//! route, a status, an outcome, a reason; never a query, a key or an id.
//! Durations (`…_seconds`) are histograms with [`SECONDS_BUCKETS`], so that
//! a dashboard can aggregate them across instances.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE as CONTENT_TYPE_HEADER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Histogram buckets of every `…_seconds` metric: 1 ms to 2 min.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Buckets of the ingestion's `…_seconds` histograms (`airq_ingest_…`): a
/// run takes from a few ms (a 304, a small feed) to minutes (a large feed
/// or backfill), so 1 ms to 1 h. The more specific matcher wins over the
/// `_seconds` suffix.
pub const INGEST_SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1_200.0, 1_800.0, 3_600.0,
];

/// Buckets of row-count histograms (`…_rows`): 1 to 10 million.
pub const ROWS_BUCKETS: &[f64] = &[
    1.0,
    10.0,
    100.0,
    1_000.0,
    10_000.0,
    100_000.0,
    1_000_000.0,
    10_000_000.0,
];

/// How often the recorder drains its histograms (it keeps samples until
/// then; the exporter's own listener would do this, ours must).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("installing the metrics recorder: {0}")]
    Install(String),
    #[error("listening for metrics on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Installs the process-wide recorder and returns the handle that renders
/// it. Call once, early; must run inside a Tokio runtime (it spawns the
/// upkeep task).
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_rows".into()), ROWS_BUCKETS))
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Prefix("airq_ingest_".into()),
                INGEST_SECONDS_BUCKETS,
            )
        })
        .map_err(|e| MetricsError::Install(e.to_string()))?
        .install_recorder()
        .map_err(|e| MetricsError::Install(e.to_string()))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// `--metrics-listen`, for binaries without an HTTP server of their own.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at `http://ADDR/metrics` (off by default;
    /// port 0 picks a free port). Prints `metrics on http://ADDR/metrics`
    /// on stdout once it listens.
    #[arg(long, env = "AIRQ_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

impl MetricsArgs {
    /// The address to listen on, if metrics are on (an empty value is off).
    pub fn listen(&self) -> Option<&str> {
        self.metrics_listen
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// When metrics are on: installs the recorder, runs `register` (which
    /// describes the binary's metrics and registers their series, so that
    /// the first scrape already shows them all), serves it until `stop`,
    /// prints `metrics on http://ADDR/metrics` on stdout and returns the
    /// bound address. When off: nothing (the `metrics` macros then record
    /// nowhere, at the cost of a function call).
    pub async fn start(
        &self,
        stop: CancellationToken,
        register: impl FnOnce(),
    ) -> Result<Option<SocketAddr>, MetricsError> {
        let Some(listen) = self.listen() else {
            return Ok(None);
        };
        let handle = install()?;
        register();
        let addr = serve(listen, handle, stop).await?;
        println!("metrics on http://{addr}/metrics");
        tracing::info!(%addr, "serving metrics");
        Ok(Some(addr))
    }
}

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a scraper may take to send its request's head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` (anything else: 404) on `listen` until `stop`;
/// returns the bound address (port 0 picks a free one). Each connection is
/// bounded: its request head must arrive within [`READ_TIMEOUT`], so a slow
/// or hostile client cannot hold it open.
pub async fn serve(
    listen: &str,
    handle: PrometheusHandle,
    stop: CancellationToken,
) -> Result<SocketAddr, MetricsError> {
    let err = |source| MetricsError::Listen {
        addr: listen.to_owned(),
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                () = stop.cancelled() => break,
                conn = listener.accept() => conn,
            };
            let stream = match conn {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let handle = handle.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let response = scrape(&request, &handle);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "metrics connection ended with an error");
                }
            });
        }
    });
    Ok(addr)
}

fn scrape(request: &Request<Incoming>, handle: &PrometheusHandle) -> Response<Full<Bytes>> {
    let (status, content_type, body) =
        if request.method() == Method::GET && request.uri().path() == "/metrics" {
            (StatusCode::OK, CONTENT_TYPE, handle.render())
        } else {
            (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "only GET /metrics is served here\n".to_owned(),
            )
        };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        metrics: MetricsArgs,
    }

    #[test]
    fn metrics_are_off_unless_an_address_is_given() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).expect("parses").metrics;
        assert_eq!(parse(&["bin"]).listen(), None);
        assert_eq!(parse(&["bin", "--metrics-listen", " "]).listen(), None);
        assert_eq!(
            parse(&["bin", "--metrics-listen", "127.0.0.1:0"]).listen(),
            Some("127.0.0.1:0")
        );
    }

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut response))
            .await
            .expect("the server answers and closes")
            .expect("read");
        response
    }

    #[tokio::test]
    async fn serves_get_metrics_only_and_stops_when_told() {
        // A recorder of its own: the global one is the binaries' business.
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let stop = CancellationToken::new();
        let addr = serve("127.0.0.1:0", handle, stop.clone())
            .await
            .expect("listens");
        assert_ne!(addr.port(), 0, "the bound port is reported");

        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(
            ok.contains(&format!("content-type: {CONTENT_TYPE}")),
            "{ok}"
        );
        for (request, status) in [
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
            (
                "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                "404",
            ),
            ("nonsense\r\n\r\n", "400"),
        ] {
            let r = get(addr, request).await;
            assert!(
                r.starts_with(&format!("HTTP/1.1 {status}")),
                "{request:?}: {r}"
            );
        }

        stop.cancel();
        // The listener is dropped once the accept loop sees the stop.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "still listening");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let err = serve(&addr, handle, CancellationToken::new())
            .await
            .expect_err("in use");
        assert!(
            err.to_string()
                .starts_with(&format!("listening for metrics on {addr}")),
            "{err}"
        );
    }
}

//! Command line. Every flag has an environment fallback and a working
//! default, so `airq-gateway` alone serves `data/airq.db` on 127.0.0.1:8080.
//!
//! Durations accept humantime forms (`250ms`, `90s`, `24h`, `31days`,
//! `1h 30m`) or a bare number of seconds ([`airq_cli::duration`]), and the
//! defaults shared with other binaries come from [`airq_cli::defaults`].

use crate::tiers::Tier;
use airq_cli::connect::BackendArgs;
use airq_cli::defaults;
use airq_cli::duration;
use airq_cli::logging::LogArgs;
use airq_core::results::DEFAULT_MAX_RESULT_ROWS;
use airq_core::QueryLimits;
use clap::Parser;
use ipnet::IpNet;
use std::net::IpAddr;
use std::time::Duration;

/// What API keys do (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    Off,
    Optional,
    Required,
}

fn on_off(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("{s:?} is neither on nor off")),
    }
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    s.parse()
}

/// `--max-header-bytes`: hyper's buffer is at least 8 KiB; 1 MiB is far
/// more than any browser sends.
fn header_bytes(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    let min = crate::serve::MIN_HEADER_BYTES;
    if !(min..=1024 * 1024).contains(&n) {
        return Err(format!("must be between {min} and 1048576 bytes"));
    }
    Ok(n)
}

/// A duration flag within `[min, max]`.
fn duration_within(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = airq_cli::duration::parse(s)?;
    if d < min || d > max {
        return Err(format!("must be from {min:?} to {max:?}, got {d:?}"));
    }
    Ok(d)
}

/// `--webhook-timeout`: 100 ms to 5 min.
fn webhook_timeout(s: &str) -> Result<Duration, String> {
    duration_within(s, Duration::from_millis(100), Duration::from_secs(300))
}

/// `--webhook-retry-first`: 100 ms (tests) to 1 h.
fn webhook_retry_first(s: &str) -> Result<Duration, String> {
    duration_within(s, Duration::from_millis(100), Duration::from_secs(3600))
}

/// `--webhook-give-up-after`: 1 s to 7 days.
fn webhook_give_up_after(s: &str) -> Result<Duration, String> {
    duration_within(s, Duration::from_secs(1), Duration::from_secs(7 * 86_400))
}

/// A CIDR block, or one address.
fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an address or a CIDR block (e.g. 10.0.0.0/8)"))
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "airq-gateway",
    version,
    about = "Answers air-quality queries over HTTP: small ones directly as CSV, the rest through the worker queue"
)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port. The bound address is
    /// printed on stdout as `listening on http://ADDR`.
    #[arg(long, env = "AIRQ_LISTEN", default_value = defaults::LISTEN)]
    pub listen: String,

    /// Longest time range a query may span (endDate - startDate); the
    /// hourly and 5-minute series are capped lower still (7 days, 48
    /// hours: /api/meta lists each series' span).
    #[arg(long, env = "AIRQ_MAX_SPAN", default_value = "31days", value_parser = duration::parse)]
    pub max_span: Duration,

    /// Longest time range an aggregate (the query's `aggregate` field) may
    /// span: its answer has a row per period and group, not per reading.
    #[arg(long, env = "AIRQ_MAX_AGGREGATE_SPAN", default_value = "366days", value_parser = duration::parse)]
    pub max_aggregate_span: Duration,

    /// Longest span answered directly; longer queries are queued. Default:
    /// 24 h, and beyond it, up to `--max-span`, a query the store answers
    /// cheaply at any span (from answer segments, the embedded backend's
    /// default) whose answer fits in `--answer-cache-max-entry-kib`: it is
    /// rendered into memory with a direct slot, which is free again before
    /// the first byte is sent. Set, it is the one limit.
    #[arg(long, env = "AIRQ_DIRECT_MAX_SPAN", value_parser = duration::parse)]
    pub direct_max_span: Option<Duration>,

    /// Direct answers allowed in flight at once; further queries are queued
    /// instead. 0 queues everything. Default: 4 per CPU, between 4 and 12
    /// (the SQLite pool has 16 connections).
    #[arg(long, env = "AIRQ_DIRECT_LIMIT")]
    pub direct_limit: Option<usize>,

    /// Visible messages on the request queue beyond which new queued
    /// queries are refused with 503.
    #[arg(long, env = "AIRQ_MAX_BACKLOG", default_value_t = 10_000)]
    pub max_backlog: u64,

    /// The most rows a queued query's answer may have; a larger one fails,
    /// telling its user how many rows it has and to narrow the query.
    /// Direct answers are small by design (see --direct-max-span).
    #[arg(long, env = "AIRQ_MAX_RESULT_ROWS", default_value_t = DEFAULT_MAX_RESULT_ROWS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_result_rows: u64,

    /// How long a queued query's result is kept.
    #[arg(long, env = "AIRQ_RESULT_TTL", default_value = "24h", value_parser = duration::parse)]
    pub result_ttl: Duration,

    /// Largest accepted query body, in bytes.
    #[arg(long, env = "AIRQ_BODY_LIMIT", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(u64).range(2..=16 * 1024 * 1024))]
    pub body_limit: u64,

    /// Time limit to start a response (a streamed CSV body may take longer).
    #[arg(long, env = "AIRQ_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration::parse)]
    pub request_timeout: Duration,

    /// After SIGINT/SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, env = "AIRQ_SHUTDOWN_GRACE", default_value = defaults::SHUTDOWN_GRACE, value_parser = duration::parse)]
    pub shutdown_grace: Duration,

    /// How long a direct answer is kept in memory and served again to the
    /// same query (readings change once a night); 0 turns the cache off.
    #[arg(long, env = "AIRQ_ANSWER_CACHE_TTL", default_value = "60s", value_parser = duration::parse)]
    pub answer_cache_ttl: Duration,

    /// Memory the answer cache may hold, in MiB.
    #[arg(long, env = "AIRQ_ANSWER_CACHE_MIB", default_value_t = 64)]
    pub answer_cache_mib: u64,

    /// gzip level (1, fastest, to 9, smallest) of answers sent to clients
    /// that accept gzip: compressed as they stream, or once per cache
    /// entry. Compression is most of a gzipped answer's CPU.
    #[arg(long, env = "AIRQ_GZIP_LEVEL", default_value_t = 6,
          value_parser = clap::value_parser!(u32).range(1..=9))]
    pub gzip_level: u32,

    /// Largest answer kept in the cache, in KiB; larger ones are streamed
    /// (or queued, beyond --direct-max-span).
    #[arg(long, env = "AIRQ_ANSWER_CACHE_MAX_ENTRY_KIB", default_value_t = 1024)]
    pub answer_cache_max_entry_kib: usize,

    /// How often expired results are purged.
    #[arg(long, env = "AIRQ_PURGE_EVERY", default_value = "5m", value_parser = duration::parse)]
    pub purge_every: Duration,

    /// How long a client may take to send a request's header: from the
    /// accept for a new connection, from the request's first byte on a
    /// kept-alive one. A slower connection is closed (slowloris).
    #[arg(long, env = "AIRQ_HEADER_TIMEOUT", default_value = "10s", value_parser = timeout)]
    pub header_timeout: Duration,

    /// How long a kept-alive connection may wait for its next request
    /// (from the end of the last response to the next request's first
    /// byte) before it is closed.
    #[arg(long, env = "AIRQ_IDLE_TIMEOUT", default_value = "60s", value_parser = timeout)]
    pub idle_timeout: Duration,

    /// How long a response may wait for the client to take more of it. A
    /// connection whose client takes nothing for this long is cut, and a
    /// streamed direct answer whose client does not take its next 32 KiB
    /// chunk in this time gives its direct slot and store read back.
    #[arg(long, env = "AIRQ_SEND_TIMEOUT", default_value = "30s", value_parser = timeout)]
    pub send_timeout: Duration,

    /// Connections served at once; further ones wait in the listen backlog
    /// until one closes. Default: the open-files limit minus 128 for the
    /// store, payload files and outgoing connections, at most 10000.
    #[arg(long, env = "AIRQ_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: Option<u32>,

    /// Connections one client address (an IPv6 /64) may hold open at once,
    /// idle kept-alive ones included (room for a NAT's few dozen browsers);
    /// a further one is answered 503 and closed. Connections from a
    /// `--trusted-proxy` are not counted (many clients share its address).
    /// 0 turns the share off.
    #[arg(long, env = "AIRQ_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    pub max_connections_per_client: u32,

    /// Results this gateway follows at once for its clients: event streams
    /// (`GET /api/results/{id}/events`) and waiting polls (`?wait=`); a
    /// further one is answered 503. Each holds a connection and a small
    /// task, and reads its result once a second.
    #[arg(long, env = "AIRQ_MAX_FOLLOWERS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_followers: u32,

    /// Results one client (a key, or an anonymous address) may follow at
    /// once; a further one is answered 429.
    #[arg(long, env = "AIRQ_MAX_FOLLOWERS_PER_CLIENT", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_followers_per_client: u32,

    /// Live streams (`GET /api/stream/latest`) open at once on this
    /// gateway; a further one is answered 503. Each holds a connection and
    /// a small task; the readings they send are shared.
    #[arg(long, env = "AIRQ_MAX_STREAMS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_streams: u32,

    /// Live streams one client (a key, or an anonymous address) may hold
    /// open at once; a further one is answered 429.
    #[arg(long, env = "AIRQ_MAX_STREAMS_PER_CLIENT", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_streams_per_client: u32,

    /// The most sensors a live stream's place may hold (its first answer
    /// is one event per sensor); a wider place is answered 400, asking the
    /// client to narrow it.
    #[arg(long, env = "AIRQ_MAX_STREAM_SENSORS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_stream_sensors: u32,

    /// Alerts one API key may hold (`POST /api/alerts`); a further one is
    /// answered 429.
    #[arg(long, env = "AIRQ_MAX_ALERTS_PER_KEY", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_alerts_per_key: u32,

    /// Alerts the store holds in all; a further one is answered 503. Each
    /// is evaluated after every ingestion.
    #[arg(long, env = "AIRQ_MAX_ALERTS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_alerts: u32,

    /// Lets webhooks go to `http` URLs and loopback addresses (tests, a
    /// receiver on this machine); private, link-local and metadata
    /// addresses stay refused.
    #[arg(long, env = "AIRQ_WEBHOOK_ALLOW_LOOPBACK")]
    pub webhook_allow_loopback: bool,

    /// Webhook deliveries this gateway makes at once.
    #[arg(long, env = "AIRQ_WEBHOOK_CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub webhook_concurrency: u32,

    /// How long one webhook attempt may take (connect, send, the answer's head).
    #[arg(long, env = "AIRQ_WEBHOOK_TIMEOUT", default_value = "10s",
          value_parser = webhook_timeout)]
    pub webhook_timeout: Duration,

    /// The wait before a failed webhook is tried again; it doubles with
    /// each attempt.
    #[arg(long, env = "AIRQ_WEBHOOK_RETRY_FIRST", default_value = "5s",
          value_parser = webhook_retry_first)]
    pub webhook_retry_first: Duration,

    /// How long after its event a webhook is retried before it is
    /// dead-lettered.
    #[arg(long, env = "AIRQ_WEBHOOK_GIVE_UP_AFTER", default_value = "24h",
          value_parser = webhook_give_up_after)]
    pub webhook_give_up_after: Duration,

    /// Largest request head (request line and headers) a connection may
    /// send, in bytes; a longer one is answered 431 and the connection
    /// closed. It bounds what each connection buffers before its request
    /// is complete.
    #[arg(long, env = "AIRQ_MAX_HEADER_BYTES", default_value_t = 16 * 1024,
          value_parser = header_bytes)]
    pub max_header_bytes: usize,

    /// API keys: `off` ignores them (every client is known by its
    /// address), `optional` lets clients without a key in under the
    /// `anonymous` tier and gives a key its own tier, `required` refuses
    /// queries and results without a key (`/api/meta` and the page's files
    /// stay open; the page sends no key, so `required` suits API-only
    /// deployments). An unknown or revoked key is always refused.
    #[arg(long, env = "AIRQ_AUTH", value_enum, default_value = "optional")]
    pub auth: AuthMode,

    /// A tier's limits, `NAME:submits=60/min,polls=1200/min,queued=20`
    /// (`off` for no limit; a field left out keeps the built-in value);
    /// repeat for several tiers. Built in: `anonymous` (30/min, 600/min,
    /// 5), `standard` (60/min, 1200/min, 20), `unlimited` (off, off, off).
    #[arg(long = "tier", env = "AIRQ_TIERS", value_delimiter = ';', value_parser = parse_tier)]
    pub tiers: Vec<Tier>,

    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is
    /// believed; repeat or separate with commas. From anyone else the
    /// header is ignored, so a client cannot pick the address it is
    /// limited as.
    #[arg(long = "trusted-proxy", env = "AIRQ_TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = parse_net)]
    pub trusted_proxies: Vec<IpNet>,

    /// How long a key looked up in the store is remembered: a revoked key
    /// keeps working on a gateway for at most this long.
    #[arg(long, env = "AIRQ_KEY_CACHE_TTL", default_value = "30s", value_parser = duration::parse)]
    pub key_cache_ttl: Duration,

    /// Prometheus metrics at `GET /metrics` (`on`), or none at all (`off`:
    /// no recorder is installed and no request is counted).
    #[arg(long, env = "AIRQ_METRICS", default_value = "on", value_parser = on_off,
          action = clap::ArgAction::Set)]
    pub metrics: bool,

    /// Serve `/metrics` on this address instead of the API's (e.g.
    /// `127.0.0.1:9100`, reachable only from the host; port 0 picks a free
    /// port, printed as `metrics on http://ADDR/metrics`). Unset or empty:
    /// on the API's address, public like `/healthz` and `/readyz`. (Not
    /// `AIRQ_METRICS_LISTEN`: that is the worker's and the master's, and
    /// `airq-deploy up` starts all three from one environment.)
    #[arg(long, env = "AIRQ_GATEWAY_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Clients whose rate limits are tracked at once (each takes about
    /// 500 bytes); beyond it the least recently seen is forgotten.
    #[arg(long, env = "AIRQ_MAX_TRACKED_CLIENTS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tracked_clients: u64,

    #[command(flatten)]
    pub backend: BackendArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl Config {
    pub fn query_limits(&self) -> QueryLimits {
        QueryLimits {
            max_span: self.max_span,
            max_aggregate_span: self.max_aggregate_span,
        }
    }

    /// `--max-connections`, or the default for this process's open-files
    /// limit (see [`connections_for_open_files`]).
    pub fn max_connections(&self) -> usize {
        match self.max_connections {
            Some(n) => n as usize,
            None => connections_for_open_files(open_files_limit()),
        }
    }

    /// `--metrics-listen`, if metrics are on and it is set and not empty.
    pub fn metrics_listen(&self) -> Option<String> {
        self.metrics_listen
            .as_deref()
            .map(str::trim)
            .filter(|s| self.metrics && !s.is_empty())
            .map(str::to_owned)
    }

    /// The longest span answered directly whatever the answer: `--direct-max-span`
    /// or its default, 24 h.
    pub fn direct_max_span(&self) -> Duration {
        self.direct_max_span.unwrap_or(DEFAULT_DIRECT_MAX_SPAN)
    }

    /// The longest span answered directly when the store answers the
    /// query cheaply at any span and the answer fits in memory: `--max-span`, unless
    /// `--direct-max-span` was set.
    pub fn direct_max_span_cheap(&self) -> Duration {
        match self.direct_max_span {
            Some(set) => set,
            None => self.max_span.max(DEFAULT_DIRECT_MAX_SPAN),
        }
    }

    /// `--direct-limit`, or the default for this machine.
    pub fn direct_limit(&self) -> usize {
        self.direct_limit.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            (4 * cpus).clamp(4, 12)
        })
    }
}

/// The default `--direct-max-span`: read row by row, a day of every
/// sensor takes a direct slot for tens of milliseconds (BENCHMARKS.md,
/// "Large answers from answer segments"), and a streamed answer holds its
/// slot while its client reads it.
const DEFAULT_DIRECT_MAX_SPAN: Duration = Duration::from_secs(24 * 3600);

/// The longest `--header-timeout`, `--idle-timeout` or `--send-timeout`:
/// a day is far beyond any use, and keeps deadline arithmetic far from
/// overflowing.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A connection timeout: a duration from 1 ms to a day. Zero is refused
/// rather than read as "off": an unbounded wait is what these flags exist
/// to prevent.
fn timeout(s: &str) -> Result<Duration, String> {
    let d = duration::parse(s)?;
    if d < Duration::from_millis(1) || d > MAX_TIMEOUT {
        return Err(format!("{s:?} must be between 1ms and 24h"));
    }
    Ok(d)
}

/// File descriptors kept back from connections: the SQLite pool (16
/// connections, each with its database, WAL and shared-memory files),
/// payload files being read or written, outgoing connections (AWS),
/// stdio, the listener and the runtime's own.
const FD_RESERVE: u64 = 128;

/// Beyond this many connections the default stops growing with the
/// open-files limit: each idle connection still costs buffers and a task,
/// and a machine with a million file descriptors need not accept a
/// million sockets by default.
const MAX_DEFAULT_CONNECTIONS: u64 = 10_000;

/// The default connection cap for an open-files limit: the limit minus
/// [`FD_RESERVE`] (half the limit when it is that small), at least 1 and at
/// most [`MAX_DEFAULT_CONNECTIONS`]. Staying under the limit is what keeps
/// `accept` from failing with EMFILE while the process still needs files.
pub fn connections_for_open_files(limit: u64) -> usize {
    let reserve = FD_RESERVE.min(limit / 2);
    let n = limit
        .saturating_sub(reserve)
        .clamp(1, MAX_DEFAULT_CONNECTIONS);
    usize::try_from(n).unwrap_or(1)
}

/// This process's soft limit on open files (`ulimit -n`).
#[cfg(unix)]
fn open_files_limit() -> u64 {
    use nix::sys::resource::{getrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _hard)) => soft,
        Err(e) => {
            // 1024 is the usual soft limit; guessing it keeps the gateway
            // serving with a cap that is safe on most systems.
            tracing::warn!(error = %e, "could not read the open-files limit; assuming 1024");
            1024
        }
    }
}

#[cfg(not(unix))]
fn open_files_limit() -> u64 {
    MAX_DEFAULT_CONNECTIONS + FD_RESERVE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work() {
        let c = Config::try_parse_from(["airq-gateway"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.max_span, QueryLimits::DEFAULT_MAX_SPAN);
        assert_eq!(c.direct_max_span(), Duration::from_secs(24 * 3600));
        assert_eq!(c.direct_max_span_cheap(), c.max_span);
        let set = Config::try_parse_from(["airq-gateway", "--direct-max-span", "2h"]).unwrap();
        assert_eq!(set.direct_max_span(), Duration::from_secs(2 * 3600));
        assert_eq!(set.direct_max_span_cheap(), Duration::from_secs(2 * 3600));
        assert_eq!(c.result_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(c.body_limit, 16 * 1024);
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert!((4..=12).contains(&c.direct_limit()));
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.send_timeout, Duration::from_secs(30));
        assert!(c.max_connections() >= 1);
        assert_eq!(c.auth, AuthMode::Optional);
        assert!(c.metrics);
        assert!(
            !Config::try_parse_from(["airq-gateway", "--metrics", "off"])
                .unwrap()
                .metrics
        );
        assert!(Config::try_parse_from(["airq-gateway", "--metrics", "maybe"]).is_err());
        assert!(c.tiers.is_empty() && c.trusted_proxies.is_empty());
        assert_eq!(c.gzip_level, 6);
        for (level, ok) in [("1", true), ("9", true), ("0", false), ("10", false)] {
            let parsed = Config::try_parse_from(["airq-gateway", "--gzip-level", level]);
            assert_eq!(parsed.is_ok(), ok, "--gzip-level {level}");
        }
    }

    #[test]
    fn admission_flags() {
        let c = Config::try_parse_from([
            "airq-gateway",
            "--auth",
            "required",
            "--tier",
            "gold:submits=10/s",
            "--tier",
            "anonymous:queued=1;silver",
            "--trusted-proxy",
            "10.0.0.0/8,192.0.2.7",
        ])
        .unwrap();
        assert_eq!(c.auth, AuthMode::Required);
        let names: Vec<&str> = c.tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["gold", "anonymous", "silver"]);
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(c.trusted_proxies[1].contains(&"192.0.2.7".parse::<IpAddr>().unwrap()));
        for bad in [
            ["--auth", "maybe"],
            ["--tier", "gold:submits=lots"],
            ["--trusted-proxy", "10.0.0.0/33"],
            ["--max-tracked-clients", "0"],
        ] {
            assert!(
                Config::try_parse_from([&["airq-gateway"][..], &bad[..]].concat()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn connection_flags() {
        let c = Config::try_parse_from([
            "airq-gateway",
            "--header-timeout",
            "1s",
            "--idle-timeout",
            "250ms",
            "--send-timeout",
            "2",
            "--max-connections",
            "20",
        ])
        .unwrap();
        assert_eq!(c.header_timeout, Duration::from_secs(1));
        assert_eq!(c.idle_timeout, Duration::from_millis(250));
        assert_eq!(c.send_timeout, Duration::from_secs(2));
        assert_eq!(c.max_connections(), 20);
        for bad in [
            ["--header-timeout", "0"],
            ["--idle-timeout", "2days"],
            ["--send-timeout", "soon"],
            ["--max-connections", "0"],
        ] {
            assert!(
                Config::try_parse_from([&["airq-gateway"][..], &bad[..]].concat()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_default_connection_cap_leaves_files_for_the_rest() {
        assert_eq!(connections_for_open_files(1024), 896);
        assert_eq!(connections_for_open_files(256), 128);
        assert_eq!(connections_for_open_files(100), 50);
        assert_eq!(connections_for_open_files(1), 1);
        assert_eq!(connections_for_open_files(0), 1);
        assert_eq!(connections_for_open_files(1 << 20), 10_000);
        assert_eq!(connections_for_open_files(u64::MAX), 10_000);
    }
}

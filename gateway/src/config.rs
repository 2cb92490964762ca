//! Command line. Every flag has an environment fallback and a working
//! default, so `airq-gateway` alone serves `data/airq.db` on 127.0.0.1:8080.
//!
//! Durations accept humantime forms (`250ms`, `90s`, `24h`, `31days`,
//! `1h 30m`) or a bare number of seconds ([`airq_cli::duration`]), and the
//! defaults shared with other binaries come from [`airq_cli::defaults`].

use airq_cli::connect::BackendArgs;
use airq_cli::defaults;
use airq_cli::duration;
use airq_cli::logging::LogArgs;
use airq_core::QueryLimits;
use clap::Parser;
use std::time::Duration;

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

    /// Longest time range a query may span (endDate - startDate).
    #[arg(long, env = "AIRQ_MAX_SPAN", default_value = "31days", value_parser = duration::parse)]
    pub max_span: Duration,

    /// Longest span answered directly; longer queries are always queued.
    #[arg(long, env = "AIRQ_DIRECT_MAX_SPAN", default_value = "24h", value_parser = duration::parse)]
    pub direct_max_span: Duration,

    /// Direct answers allowed in flight at once; further queries are queued
    /// instead. 0 queues everything. Default: 4 per CPU, between 4 and 12
    /// (the SQLite pool has 16 connections).
    #[arg(long, env = "AIRQ_DIRECT_LIMIT")]
    pub direct_limit: Option<usize>,

    /// Visible messages on the request queue beyond which new queued
    /// queries are refused with 503.
    #[arg(long, env = "AIRQ_MAX_BACKLOG", default_value_t = 10_000)]
    pub max_backlog: u64,

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

    /// Largest answer kept in the cache, in KiB; larger ones are streamed.
    #[arg(long, env = "AIRQ_ANSWER_CACHE_MAX_ENTRY_KIB", default_value_t = 1024)]
    pub answer_cache_max_entry_kib: usize,

    /// How often expired results are purged.
    #[arg(long, env = "AIRQ_PURGE_EVERY", default_value = "5m", value_parser = duration::parse)]
    pub purge_every: Duration,

    #[command(flatten)]
    pub backend: BackendArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl Config {
    pub fn query_limits(&self) -> QueryLimits {
        QueryLimits {
            max_span: self.max_span,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work() {
        let c = Config::try_parse_from(["airq-gateway"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.max_span, QueryLimits::DEFAULT_MAX_SPAN);
        assert_eq!(c.direct_max_span, Duration::from_secs(24 * 3600));
        assert_eq!(c.result_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(c.body_limit, 16 * 1024);
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert!((4..=12).contains(&c.direct_limit()));
    }
}

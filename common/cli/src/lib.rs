//! What every airq binary shares on its command line, so that one idea has
//! one flag, one environment variable, one syntax and one default across
//! the master, gateway, worker and deploy tool:
//!
//! - `connect`: `--backend` and its settings, turned into connected ports
//!   (feature `connect`, on by default; `aws` adds the AWS backend);
//! - [`duration`]: the one duration syntax (`250ms`, `90s`, `24h`, `31days`,
//!   `1h 30m`, or bare seconds);
//! - [`defaults`]: default values as named constants, which `airq-deploy`
//!   reuses when it starts the other binaries;
//! - [`renamed`]: old flag and variable names kept working, with a warning;
//! - [`logging`]: human-readable or JSON logs;
//! - [`shutdown`]: SIGINT/SIGTERM as a future or a cancellation token;
//! - `metrics`: the Prometheus recorder and a `GET /metrics` server
//!   (feature `metrics`).

#[cfg(feature = "connect")]
pub mod connect;
pub mod defaults;
pub mod duration;
pub mod logging;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod renamed;
pub mod shutdown;

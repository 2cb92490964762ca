//! airq-loadtest: a load generator that measures what users feel.
//!
//! The parts, in the order a run uses them:
//!
//! - [`cli`]: flags (every one with an `AIRQ_LT_*` fallback and a default);
//! - [`plan`]: load models and intended start times (closed loop, open loop
//!   with constant or Poisson arrivals, staged ramps, matrices, sweeps);
//! - [`client`]: a lean keep-alive HTTP/1.1 client for one loopback target;
//! - [`mix`] and [`journey`]: what each arrival sends, and the user journey
//!   (submit → direct CSV, or 202 → poll → CSV);
//! - [`runner`]: runs a plan with one recorder per virtual user;
//! - [`idle`]: idle half-open connections held beside a run
//!   (`--idle-connections`), and how long the server kept them;
//! - [`stats`]: HdrHistograms, counts, errors by kind, the summary;
//! - [`report`], [`chart`], [`threshold`]: tables, JSON, CSV, SVG charts and
//!   pass/fail gates;
//! - [`app`] and [`bench`]: the `run` command and the benchmark suite.

pub mod app;
pub mod bench;
pub mod chart;
pub mod cli;
pub mod client;
pub mod cpu;
pub mod idle;
pub mod journey;
pub mod mix;
pub mod plan;
pub mod report;
pub mod runner;
pub mod stats;
pub mod threshold;

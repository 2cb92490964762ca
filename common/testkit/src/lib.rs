//! What the end-to-end tests of every crate need alike, written once: a
//! dev-dependency only, never linked into a binary.
//!
//! - [`metrics`]: scrape a binary's Prometheus endpoint and read a series.
//! - [`process`]: start a binary, wait for its ready line, stop it.

pub mod metrics;
pub mod process;

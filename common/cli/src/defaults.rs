//! Default values shared by more than one binary, written once. Durations
//! are in [`crate::duration`]'s syntax, as clap takes defaults as text.

/// Where the gateway listens.
pub const LISTEN: &str = "127.0.0.1:8080";
/// The embedded backend's SQLite file.
pub const DB: &str = "data/airq.db";
/// The shipped real feed snapshot: what `airq-deploy up` ingests at start
/// and what `airq-master synth` derives synthetic feeds from.
pub const SAMPLE_FEED: &str = "data/sample/201806032249_data.dust.min.json";
/// The master's schedule: nightly at midnight UTC (cron with seconds).
pub const CRON: &str = "0 0 0 * * *";
/// The live tier's schedule: every 5 minutes, as the 5-minute feed is
/// refreshed (cron with seconds).
pub const LIVE_CRON: &str = "0 */5 * * * *";
/// After SIGINT/SIGTERM, how long in-flight work (requests, queries) may
/// take to finish.
pub const SHUTDOWN_GRACE: &str = "30s";
/// Receives after which a request that keeps failing is dead-lettered.
pub const MAX_RECEIVES: u32 = 3;

//! Default values shared by more than one binary, written once. Durations
//! are in [`crate::duration`]'s syntax, as clap takes defaults as text.

/// Where the gateway listens.
pub const LISTEN: &str = "127.0.0.1:8080";
/// The embedded backend's SQLite file.
pub const DB: &str = "data/airq.db";
/// The shipped real feed snapshot: what `airq-deploy up` ingests at start
/// and what `airq-master synth` derives synthetic feeds from.
pub const SAMPLE_FEED: &str = "data/sample/201806032249_data.dust.min.json";
/// The Sensor.Community feed of 24-hour averages (one entry per sensor):
/// the master's source.
pub const FEED_24H: &str = "https://data.sensor.community/static/v2/data.24h.json";
/// The Sensor.Community 5-minute feed: each sensor's mean of its
/// measurements of the last 5 minutes, one entry per sensor, every sensor
/// type (Sensor.Community's API documentation, "EN-APIs", v2 `data.json`;
/// `data.dust.min.json` is the particulate sensors' alone): the live
/// master's source. All types, so that the stations' temperature and
/// humidity come with their PM readings (`airq_core::air`).
pub const FEED_5MIN: &str = "https://data.sensor.community/static/v2/data.json";
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

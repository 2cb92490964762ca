//! airq's domain and ports, with no backend: feed parsing, the DAQI,
//! queries, CSV rendering, the queue messages, clients and API keys; and the
//! ports every binary talks through (reading store, message queue, result
//! store, key store), gathered in [`Backend`].
//!
//! Nothing here does I/O or names a vendor: the adapters live in
//! `airq-embedded` (SQLite) and `airq-aws` (DynamoDB, SQS, S3), and binaries
//! reach them through `airq-cli`'s `--backend`, so a backend can replace
//! another without changing a caller.

pub mod aggregate;
pub mod air;
pub mod alert;
pub mod aqi;
pub mod backend;
pub mod client;
pub mod correction;
pub mod duration;
pub mod error;
pub mod export;
pub mod feed;
pub mod gzip;
pub mod hourly;
pub mod job;
pub mod keys;
pub mod mean;
pub mod name;
pub mod place;
pub mod quality;
pub mod query;
pub mod queue;
pub mod reading;
pub mod resolution;
pub mod results;
pub mod segment;
pub mod store;

pub use aqi::{Index, Indices};
pub use backend::Backend;
pub use client::ClientId;
pub use error::BackendError;
pub use export::{Format, Rendering};
pub use place::Place;
pub use query::{LatestQuery, Query, QueryError, QueryLimits};
pub use reading::{Reading, Timestamp};
pub use resolution::Resolution;

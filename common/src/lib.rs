//! airq's shared core: the domain (feed parsing, the DAQI, queries, CSV) and
//! the ports every binary talks through (reading store, message queue,
//! result store), with the embedded SQLite backend and the AWS backend
//! (DynamoDB, SQS, S3).
//!
//! Binaries depend on the ports, never on a backend's types, so the AWS
//! backend can replace the embedded one without changing a caller.

pub mod aqi;
pub mod aws;
pub mod backend;
#[cfg(feature = "contract")]
pub mod contract;
pub mod embedded;
pub mod error;
pub mod export;
pub mod feed;
pub mod job;
pub mod logging;
pub mod query;
pub mod queue;
pub mod reading;
pub mod results;
pub mod shutdown;
pub mod store;

pub use aqi::Band;
pub use error::BackendError;
pub use query::{Query, QueryError, QueryLimits};
pub use reading::{Reading, Timestamp};

//! The reading store port.

use crate::error::BackendError;
use crate::export::CsvStream;
use crate::query::Query;
use crate::reading::{Reading, Timestamp};
use async_trait::async_trait;
use futures::stream::BoxStream;

/// The readings matching a query, in store order: by timestamp, then sensor id.
pub type ReadingStream = BoxStream<'static, Result<Reading, BackendError>>;

/// What the store holds, for summaries, the web page and the load tester.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreSummary {
    /// Number of readings (approximate on backends that only estimate it).
    pub readings: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    /// Country codes present, sorted.
    pub countries: Vec<String>,
}

/// Where readings live. A reading's identity is `(sensor_id, timestamp)`:
/// writing the same reading twice stores it once.
#[async_trait]
pub trait ReadingStore: Send + Sync + 'static {
    /// Stores a batch; idempotent. Returns once the batch is durable.
    async fn put_batch(&self, readings: Vec<Reading>) -> Result<(), BackendError>;

    /// Streams the readings `query` matches (see [`Query::matches`]), to the
    /// end, in store order.
    fn query(&self, query: &Query) -> ReadingStream;

    /// The CSV answer to `query` (see [`crate::export`]), in chunks. By
    /// default rendered from [`ReadingStore::query`]; a store that can
    /// render rows without building each [`Reading`] does so.
    fn query_csv(&self, query: &Query) -> CsvStream {
        crate::export::chunks(self.query(query))
    }

    async fn summary(&self) -> Result<StoreSummary, BackendError>;

    /// Cheap reachability check for readiness probes.
    async fn ping(&self) -> Result<(), BackendError>;
}

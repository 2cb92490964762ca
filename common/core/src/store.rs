//! The reading store port.

use crate::error::BackendError;
use crate::export::AnswerStream;
use crate::gzip::PieceKey;
use crate::query::{LatestQuery, Query};
use crate::reading::{Reading, Timestamp};
use crate::resolution::Resolution;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// The readings matching a query, in store order: by timestamp, then sensor id.
pub type ReadingStream = BoxStream<'static, Result<Reading, BackendError>>;

/// The answer to `query` rendered from `store`'s [`ReadingStore::query`]
/// (what [`ReadingStore::query_answer`] does by default): its readings, or
/// with `aggregate` their statistics.
pub fn answer_from_readings<S: ReadingStore + ?Sized>(store: &S, query: &Query) -> AnswerStream {
    match query.aggregator() {
        // The aggregator leaves out (and counts) what a quality filter
        // names: it reads every reading the other filters select (and
        // with a correction, corrects their values itself).
        Some(aggregator) => crate::aggregate::answer(
            store.query(&query.without_quality()),
            aggregator,
            query.format,
        ),
        None => crate::export::chunks(store.query(query), query.rendering()),
    }
}

/// How a store answers [`ReadingStore::query`] for a query with a
/// correction: `read` streams [`Query::before_correction`]'s readings (no
/// index filter, as the stored indices are not the corrected ones), and
/// this keeps those `query` matches, its index filters read on the
/// corrected values.
pub fn corrected_readings(read: ReadingStream, query: &Query) -> ReadingStream {
    use futures::{StreamExt, TryStreamExt};
    let query = query.clone();
    read.try_filter(move |r| std::future::ready(query.matches(r)))
        .boxed()
}

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

/// What [`ReadingStore::put_batch`] did with a batch's readings, counted
/// once per identity (a reading sent twice in one batch counts once, as
/// the later one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Written {
    /// Readings the store did not hold: added.
    pub new: u64,
    /// Readings the store held with other values: replaced by the ones
    /// sent (a corrected value, or a recomputed index).
    pub replaced: u64,
    /// Readings the store held exactly as sent: nothing written.
    pub unchanged: u64,
}

impl Written {
    /// The readings the batch held, counted once per identity.
    pub fn total(&self) -> u64 {
        self.new + self.replaced + self.unchanged
    }
}

impl std::ops::AddAssign for Written {
    fn add_assign(&mut self, other: Written) {
        self.new += other.new;
        self.replaced += other.replaced;
        self.unchanged += other.unchanged;
    }
}

/// The latest readings that changed after a data version, and the version
/// they bring the reader to: what a live stream sends ([`ReadingStore::latest_changes`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatestChanges {
    /// The store's data version when read: it grows by one with each write
    /// (a batch, a feed) that changes any sensor's latest reading.
    pub version: u64,
    /// Each changed sensor's latest reading as it is now, with the version
    /// of the write that made it so, in sensor id order.
    pub readings: Vec<(u64, Reading)>,
}

/// The readings of a batch that `may_be_latest` hints away, keyed
/// `(timestamp, sensor id)`: what a store's
/// [`ReadingStore::put_batch_hinted`] may skip the latest work of. An error
/// for a hint of another length than the batch (nothing is written then).
pub fn hinted_away(
    readings: &[Reading],
    may_be_latest: &[bool],
) -> Result<std::collections::HashSet<(i64, u64)>, BackendError> {
    if may_be_latest.len() != readings.len() {
        return Err(BackendError::Refused {
            what: "storing a batch".into(),
            reason: format!(
                "{} readings came with {} latest hints",
                readings.len(),
                may_be_latest.len()
            ),
        });
    }
    Ok(readings
        .iter()
        .zip(may_be_latest)
        .filter(|(_, may)| !**may)
        .map(|(r, _)| (r.timestamp.0, r.sensor_id))
        .collect())
}

/// Where readings live. A reading's identity is `(sensor_id, timestamp)`:
/// writing the same reading twice stores it once.
#[async_trait]
pub trait ReadingStore: Send + Sync + 'static {
    /// Stores a batch; idempotent. Returns once the batch is durable, with
    /// what it changed.
    async fn put_batch(&self, readings: Vec<Reading>) -> Result<Written, BackendError>;

    /// [`ReadingStore::put_batch`] with a hint from the writer:
    /// `may_be_latest[i]` is false when a newer reading of `readings[i]`'s
    /// sensor is in this batch or in a later one of the same ingestion, so
    /// that `readings[i]` cannot end as its sensor's latest. A store may
    /// skip its latest work for those (the embedded one does: a month's
    /// feed wrote each sensor's latest row thirty times, a fifth of the
    /// ingestion's time); every reading is stored all the same. The hint
    /// is as long as `readings`; the default ignores it.
    async fn put_batch_hinted(
        &self,
        readings: Vec<Reading>,
        may_be_latest: Vec<bool>,
    ) -> Result<Written, BackendError> {
        let _ = may_be_latest;
        self.put_batch(readings).await
    }

    /// The series this store keeps ([`Resolution`]); a query on another
    /// is refused before it reaches the store. The daily one by default.
    fn series(&self) -> &'static [Resolution] {
        &[Resolution::Day]
    }

    /// Stores 5-minute readings of the live feed (the recent tier) and
    /// keeps the hourly series made from them: each touched sensor-hour's
    /// means and the indices that read them ([`crate::hourly`]). Same
    /// identity and idempotence as [`ReadingStore::put_batch`]; counts the
    /// 5-minute readings, each with its flags and air as given (a reading
    /// sent again with other flags is replaced); each hour takes its flags
    /// and air from its readings' ([`crate::quality::HourQuality`]).
    async fn put_recent(&self, readings: Vec<Reading>) -> Result<Written, BackendError> {
        let _ = readings;
        Err(BackendError::Unsupported(
            "this backend has no live tier (5-minute and hourly series) yet; use the embedded backend"
                .into(),
        ))
    }

    /// Deletes the readings of `resolution`'s series older than `before`,
    /// in batches that each hold the store for a moment only; returns how
    /// many. The daily series is never pruned.
    async fn prune(&self, resolution: Resolution, before: Timestamp) -> Result<u64, BackendError> {
        let _ = (resolution, before);
        Err(BackendError::Unsupported(
            "this backend has no live tier (5-minute and hourly series) yet".into(),
        ))
    }

    /// Brings up to date what this store keeps beside its readings to
    /// answer faster (the embedded store's answer segments: see
    /// `airq_embedded::segments`) after an ingestion changed them; returns
    /// how many pieces it rebuilt. Answers are the same whether it ran or
    /// not. A store without such pieces does nothing.
    async fn refresh_segments(&self) -> Result<u64, BackendError> {
        Ok(0)
    }

    /// Whether `query`'s answer costs this store little to compute
    /// whatever its span: assembled from the pieces
    /// [`Self::refresh_segments`] keeps, every day of it built, or read
    /// through a few index ranges a day. The gateway answers such a query
    /// directly beyond `--direct-max-span`'s default when the answer fits
    /// in memory.
    async fn cheap_at_any_span(&self, _query: &Query) -> Result<bool, BackendError> {
        Ok(false)
    }

    /// Streams the readings `query` matches (see [`Query::matches`]), to the
    /// end, in store order.
    fn query(&self, query: &Query) -> ReadingStream;

    /// Streams the readings of `series` stored from `start` to `end`
    /// (inclusive), each with at least what a quality survey reads of it
    /// ([`crate::quality::Survey::history`]): its sensor, time, P1, P2 and
    /// position; a store may leave the other fields empty. Ingestion reads
    /// the hour (5-minute series) or the days before each feed with it,
    /// every sensor's, so a store may make it cheaper than a query. By
    /// default the query of the range.
    fn history(&self, series: Resolution, start: Timestamp, end: Timestamp) -> ReadingStream {
        let mut query = Query::between(start, end);
        query.resolution = series;
        self.query(&query)
    }

    /// The answer to `query` in its format (see [`crate::export`]), in
    /// chunks: its readings, or with `aggregate` their statistics
    /// ([`crate::aggregate::answer`], over [`ReadingStore::query`]). By
    /// default rendered from [`ReadingStore::query`]; a store that can
    /// render rows without building each [`Reading`] does so (and must
    /// hand an aggregate to [`crate::aggregate::answer`] likewise).
    fn query_answer(&self, query: &Query) -> AnswerStream {
        answer_from_readings(self, query)
    }

    /// [`Self::query_answer`]'s bytes, with each whole section of an
    /// answer segment of at most `max_piece` bytes (and
    /// [`crate::gzip::PIECE_MAX`]) in a chunk of its own that names its
    /// gzip piece ([`crate::export::AnswerChunk::piece`]): for a reader
    /// that sends the answer gzipped, from pieces compressed once. By
    /// default the same chunks, naming none.
    fn query_answer_in_pieces(&self, query: &Query, max_piece: usize) -> AnswerStream {
        let _ = max_piece;
        self.query_answer(query)
    }

    /// The gzip piece `key` names ([`crate::gzip::Piece::to_bytes`]), if
    /// this store keeps it.
    async fn gzip_piece(&self, key: &PieceKey) -> Result<Option<Bytes>, BackendError> {
        let _ = key;
        Ok(None)
    }

    /// Keeps a gzip piece beside the segment it was made from, for later
    /// answers (until the segment goes). A store that keeps none drops it.
    async fn keep_gzip_piece(&self, key: &PieceKey, piece: Bytes) -> Result<(), BackendError> {
        let _ = (key, piece);
        Ok(())
    }

    /// The most recent reading of each sensor that `latest` matches (see
    /// [`LatestQuery::matches`]: the filters apply to that reading), in
    /// sensor id order. Kept up to date by [`ReadingStore::put_batch`], so
    /// this never reads the history.
    fn latest(&self, latest: &LatestQuery) -> ReadingStream;

    /// The answer to `latest` in its format, in chunks.
    fn latest_answer(&self, latest: &LatestQuery) -> AnswerStream {
        crate::export::chunks(self.latest(latest), latest.rendering())
    }

    /// The latest reading of each sensor whose latest reading changed
    /// after data version `since` (every sensor's for `None`), read with
    /// the version at one instant: a reader that asks again from the
    /// version it got misses no change and sees none twice. A store
    /// without a data version says so.
    async fn latest_changes(&self, since: Option<u64>) -> Result<LatestChanges, BackendError> {
        let _ = since;
        Err(BackendError::Unsupported(
            "this backend keeps no data version yet, so it cannot stream changes; use the embedded backend".into(),
        ))
    }

    async fn summary(&self) -> Result<StoreSummary, BackendError>;

    /// Cheap reachability check for readiness probes.
    async fn ping(&self) -> Result<(), BackendError>;
}

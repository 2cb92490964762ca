//! The result store port: what became of each queued query, kept where any
//! gateway can serve it until it expires.

use crate::client::ClientId;
use crate::error::BackendError;
use crate::export::AnswerStream;
use crate::query::Query;
use crate::reading::Timestamp;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Range;
use std::time::Duration;
use uuid::Uuid;

/// How long a result is kept by default.
pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultState {
    Queued,
    Running,
    Done,
    Failed,
}

impl ResultState {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultState::Queued => "queued",
            ResultState::Running => "running",
            ResultState::Done => "done",
            ResultState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Done, Self::Failed]
            .into_iter()
            .find(|st| st.as_str() == s)
    }

    /// Done or failed: nothing will change it any more.
    pub fn is_final(self) -> bool {
        matches!(self, ResultState::Done | ResultState::Failed)
    }
}

impl fmt::Display for ResultState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most rows a result may have unless the operator says otherwise
/// (`airq-gateway --max-result-rows`): about 200 MB of CSV.
pub const DEFAULT_MAX_RESULT_ROWS: u64 = 2_000_000;

/// How a query ended. An answer is in the query's format (CSV, NDJSON or
/// GeoJSON). On the wire (RequestReceive messages) its field is still
/// `csv`, from when every answer was CSV: renaming it would strand the
/// messages in flight during an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done, with an answer small enough to travel in the message.
    Done {
        #[serde(rename = "csv")]
        answer: String,
        rows: u64,
    },
    /// Done, with the answer already written by the worker into the
    /// store's payload space (see [`ResultStore::create_answer`]); the
    /// message carries only where it is.
    Stored {
        #[serde(rename = "csv")]
        answer: StoredAnswer,
        rows: u64,
    },
    Failed {
        error: String,
    },
}

/// A result's CSV in the store's payload space (a file beside the SQLite
/// database, an S3 object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    /// The store's name for it. A store only ever accepts back a name of
    /// the form it makes for the result it belongs to, so a forged message
    /// cannot point a result at anything else.
    pub key: String,
    /// Its size.
    pub bytes: u64,
}

/// A stored CSV's bytes, in order.
pub type ByteStream = BoxStream<'static, Result<Bytes, BackendError>>;

/// Where a worker writes a large CSV, chunk by chunk, so that no process
/// holds a whole result in memory.
#[async_trait]
pub trait AnswerSink: Send {
    /// Appends a chunk.
    async fn write(&mut self, chunk: Bytes) -> Result<(), BackendError>;
    /// Makes the CSV whole and readable; returns where it is.
    async fn finish(self: Box<Self>) -> Result<StoredAnswer, BackendError>;
    /// Drops what was written (a failed or oversized answer).
    async fn abort(self: Box<Self>);
}

/// Who submitted a result, and with which request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub client: ClientId,
    /// The submit's `X-Request-Id`, so that one id follows the query from
    /// submit to download.
    pub request_id: Option<String>,
}

/// One result as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRecord {
    pub id: Uuid,
    pub state: ResultState,
    /// The query, in its canonical JSON form.
    pub query: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: Timestamp,
    /// Data rows of the answer, once done.
    pub rows: Option<u64>,
    /// The answer (in the query's format), once done, when small (`None`
    /// after it expired and was purged).
    pub answer: Option<String>,
    /// Where the answer is, once done, when large (read it with
    /// [`ResultStore::open_answer`]; `None` after it expired).
    pub stored: Option<StoredAnswer>,
    /// Why it failed.
    pub error: Option<String>,
    /// Who submitted it (`None` for results created before clients were
    /// recorded). A result submitted with a key is that key's alone.
    pub client: Option<ClientId>,
    /// The request id of its submit (`None` for results created before
    /// request ids were recorded).
    pub request_id: Option<String>,
}

impl ResultRecord {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// Whether `client` may read it: anyone may read a result submitted
    /// without a key (its id is its only secret, as before keys existed);
    /// one submitted with a key is that key's alone.
    pub fn readable_by(&self, client: &ClientId) -> bool {
        match self.client.as_ref().and_then(ClientId::key) {
            None => true,
            Some(owner) => client.key() == Some(owner),
        }
    }
}

#[async_trait]
pub trait ResultStore: Send + Sync + 'static {
    /// Records a newly queued query and who submitted it.
    async fn create(
        &self,
        id: Uuid,
        query: &Query,
        ttl: Duration,
        submission: &Submission,
    ) -> Result<(), BackendError>;

    /// How many of `client`'s results are queued or running and not
    /// expired at `now` (for the cap on each client's queued work).
    async fn pending(&self, client: &ClientId, now: Timestamp) -> Result<u64, BackendError>;

    /// The record, expired or not (callers tell "expired" from "unknown").
    async fn get(&self, id: Uuid) -> Result<Option<ResultRecord>, BackendError>;

    /// Queued → running. Does nothing in any other state.
    async fn mark_running(&self, id: Uuid) -> Result<(), BackendError>;

    /// Records the outcome unless one is recorded already, so a duplicate
    /// delivery never replaces a result a user may have downloaded. Returns
    /// whether this call recorded it. A [`Outcome::Stored`] whose key is not
    /// one this store made for `id` is refused ([`BackendError::Corrupt`]);
    /// one that is not recorded (a duplicate) has its payload deleted.
    async fn finish(&self, id: Uuid, outcome: &Outcome) -> Result<bool, BackendError>;

    /// CSVs up to this size are better kept inline (in the message and the
    /// record) than written with [`ResultStore::create_answer`].
    fn inline_max(&self) -> usize;

    /// A new, empty payload for a CSV of result `id`, named for this
    /// attempt (a second delivery of the same request never writes into the
    /// first one's payload).
    async fn create_answer(&self, id: Uuid) -> Result<Box<dyn AnswerSink>, BackendError>;

    /// The bytes of a stored CSV: all of it, or the byte `range` (which
    /// the caller has checked against [`StoredAnswer::bytes`]).
    async fn open_answer(
        &self,
        csv: &StoredAnswer,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, BackendError>;

    /// Whether the store can take writes now (for readiness probes): a
    /// full disk fails it. Stores that cannot fill up need not override it.
    async fn check_writable(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Checks that the store keeps a result's data for at least `ttl`, so
    /// that no result loses its CSV before it expires. A
    /// [`BackendError::Schema`] means it does not; other errors mean the
    /// check could not be made. Stores that keep everything until
    /// [`ResultStore::purge_expired`] need not override it.
    async fn check_retention(&self, _ttl: Duration) -> Result<(), BackendError> {
        Ok(())
    }

    /// Drops the data of results expired before `now` (keeping a tombstone
    /// so they still answer "expired"), and forgets tombstones older than
    /// `forget_after`. Returns how many records were touched.
    async fn purge_expired(
        &self,
        now: Timestamp,
        forget_after: Duration,
    ) -> Result<u64, BackendError>;
}

/// A done record's whole answer as text, from the record or the payload
/// space (for small answers and tests; users are served a stream).
pub async fn read_answer(
    store: &dyn ResultStore,
    record: &ResultRecord,
) -> Result<Option<String>, BackendError> {
    if let Some(answer) = &record.answer {
        return Ok(Some(answer.clone()));
    }
    let Some(stored) = &record.stored else {
        return Ok(None);
    };
    let bytes: Vec<u8> = store
        .open_answer(stored, None)
        .await?
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await?;
    String::from_utf8(bytes).map(Some).map_err(|_| {
        BackendError::Corrupt(format!("the answer of result {} is not UTF-8", record.id))
    })
}

/// The worker's side of a result: renders `chunks` into `store`, stopping
/// at `max_rows`. A small answer comes back inline ([`Outcome::Done`]), a
/// large one is written chunk by chunk into a [`AnswerSink`]
/// ([`Outcome::Stored`]), so memory stays at one chunk plus the inline
/// size whatever the result's size. An answer over `max_rows` is a failure
/// that says how many rows it would have had (the rest of the stream is
/// counted, not written) and how to narrow the query.
///
/// Store errors are returned (the caller decides whether to retry); a
/// [`BackendError::Refused`] write (no space, no permission) is a failure
/// the user is told about.
pub async fn store_answer(
    store: &dyn ResultStore,
    id: Uuid,
    mut chunks: AnswerStream,
    max_rows: u64,
) -> Result<Outcome, BackendError> {
    let inline_max = store.inline_max();
    let mut head: Vec<u8> = Vec::new();
    let mut rows = 0u64;
    let mut sink: Option<Box<dyn AnswerSink>> = None;
    let over = |rows: u64| rows > max_rows;
    let result: Result<(), BackendError> = async {
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            rows += chunk.rows;
            if over(rows) {
                return Ok(());
            }
            match sink.as_mut() {
                Some(sink) => sink.write(chunk.bytes).await?,
                None if head.len() + chunk.bytes.len() <= inline_max => {
                    head.extend_from_slice(&chunk.bytes)
                }
                None => {
                    let mut new = store.create_answer(id).await?;
                    let first = std::mem::take(&mut head);
                    if !first.is_empty() {
                        new.write(Bytes::from(first)).await?;
                    }
                    new.write(chunk.bytes).await?;
                    sink = Some(new);
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if let Some(sink) = sink {
            sink.abort().await;
        }
        return match e {
            e @ BackendError::Refused { .. } => Ok(Outcome::Failed {
                error: format!("the result could not be stored: {e}"),
            }),
            e => Err(e),
        };
    }
    if over(rows) {
        if let Some(sink) = sink {
            sink.abort().await;
        }
        // Counted to the end so the user knows how far to narrow it.
        while let Some(chunk) = chunks.next().await {
            rows += chunk?.rows;
        }
        return Ok(Outcome::Failed {
            error: format!(
                "the answer has {rows} rows, more than this service's limit of {max_rows}; \
                 narrow the query (a shorter time range, a country, an AQI range or band)"
            ),
        });
    }
    match sink {
        None => Ok(Outcome::Done {
            // The renderer only ever writes UTF-8.
            answer: String::from_utf8(head)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            rows,
        }),
        Some(sink) => match sink.finish().await {
            Ok(answer) => Ok(Outcome::Stored { answer, rows }),
            Err(e @ BackendError::Refused { .. }) => Ok(Outcome::Failed {
                error: format!("the result could not be stored: {e}"),
            }),
            Err(e) => Err(e),
        },
    }
}

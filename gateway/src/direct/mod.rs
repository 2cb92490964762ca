//! The direct path: a query answered at once (`200`, in its format), from
//! the reading store, instead of through the worker queue; and the latest
//! readings, which are only ever answered so.
//!
//! [`Direct`] owns everything that path needs: the reading store, the
//! direct slots (a semaphore of `--direct-limit` permits, one per direct
//! answer in flight, held until its body has been handed over, or until
//! the client has taken no chunk of it for `--send-timeout`) and the answer
//! cache (see [`answer_cache`]). The submit handler asks [`Direct::answer`] first and
//! queues the query when it says no.
//!
//! A query is answered directly when its span is at most
//! `--direct-max-span` (or, by default, up to `--max-span` when the store
//! computes it cheaply at any span: then only from memory, below) and a
//! direct slot is free now or within
//! [`DIRECT_WAIT`] (the client's `Prefer: respond-async` is the handler's
//! to honour). A latest-readings request ([`Direct::latest`]) has no queue
//! to fall back on, so it waits for a slot for as long as it takes (the
//! router's `--request-timeout` bounds that with a `503`). Either is then
//! served
//!
//! - from the answer cache when it holds it (no slot taken; gzipped
//!   once per entry, see [`answer_cache`], for requests that accept it);
//! - else computed into the cache once for all concurrent identical
//!   requests, by the first of them, with a slot;
//! - else, when it is too large to keep (or the cache is off), streamed
//!   from the store with a slot (see [`response::streamed`]), or, for a
//!   query longer than `--direct-max-span`, queued. A slow
//!   reader holds that slot, and the store read behind it, for at most
//!   `--send-timeout` after it stops taking chunks (32 KiB each, of the
//!   answer or of its gzip form, so a reader must take about 32 KiB per
//!   send timeout to keep it); an answer that fits in the socket and
//!   server buffers frees it at once. A streamed answer to a client that
//!   accepts gzip is gzipped here, its whole days from gzip pieces
//!   (`crate::gzip`).

mod answer_cache;
mod response;

use crate::answer_headers::Label;
use crate::config::Config;
use crate::error::ApiError;
use airq_core::export::{render, render_pieced, AnswerStream};
use airq_core::gzip::PIECE_MAX;
use airq_core::store::ReadingStore;
use airq_core::{LatestQuery, Query};
use answer_cache::{Answer, AnswerCache, Miss};
use axum::response::Response;
use bytes::Bytes;
use response::Cache;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a query may wait for a direct slot before it is queued.
const DIRECT_WAIT: Duration = Duration::from_millis(50);

/// What a client is told when the store fails a direct answer.
const STORE_DOWN: &str = "reading store unavailable";

pub struct Direct {
    readings: Arc<dyn ReadingStore>,
    /// Longest span answered directly whatever the answer.
    max_span: Duration,
    /// Longest span answered directly when the store answers cheaply at
    /// any span and the answer fits in the answer cache (sent from memory).
    max_span_cheap: Duration,
    /// One permit per direct answer in flight, held until its body ends.
    slots: Arc<Semaphore>,
    /// How many permits `slots` started with.
    limit: usize,
    /// How long a streamed answer waits for the client to take a chunk
    /// before it gives its slot back (`--send-timeout`).
    send_timeout: Duration,
    /// How long a query may wait for a slot before it is queued.
    wait: Duration,
    /// Recent direct answers; `None` when turned off.
    cache: Option<AnswerCache>,
    /// The most rows an answer may have (`--max-result-rows`).
    max_rows: u64,
    /// `--gzip-level`, for the cache's gzip forms.
    gzip_level: u32,
}

impl Direct {
    pub fn new(readings: Arc<dyn ReadingStore>, config: &Config) -> Self {
        let limit = config.direct_limit();
        Direct {
            readings,
            max_span: config.direct_max_span(),
            max_span_cheap: config.direct_max_span_cheap(),
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            send_timeout: config.send_timeout,
            // With no direct slots at all (--direct-limit 0) nothing waits.
            wait: if limit == 0 {
                Duration::ZERO
            } else {
                DIRECT_WAIT
            },
            cache: AnswerCache::new(
                config.answer_cache_ttl,
                config.answer_cache_mib.saturating_mul(1024 * 1024),
                config.answer_cache_max_entry_kib.saturating_mul(1024),
            ),
            max_rows: config.max_result_rows,
            gzip_level: config.gzip_level,
        }
    }

    /// The direct answer to `query`, or `None` when it is to be queued
    /// instead (its span is too long, no direct slot came free in time, or
    /// a long one's answer does not fit in memory).
    /// A store failure is the store's error, kind intact, as a `503`.
    ///
    /// Beyond `max_span`, up to `max_span_cheap`, a query is answered
    /// only when the store computes it cheaply at any span (from answer
    /// segments: milliseconds for a month of a country) and its answer
    /// fits in the answer cache: it is
    /// rendered into memory with a slot and sent from there, so a slow
    /// reader of a long answer never holds a slot, and a large one goes to
    /// the workers (whose results are downloaded at any pace, resumably).
    ///
    /// `gzip`: the request accepts gzip (`crate::gzip::accepts`).
    pub async fn answer(&self, query: &Query, gzip: bool) -> Result<Option<Response>, ApiError> {
        let span = query.span();
        let send = if span <= self.max_span {
            Delivery::MayStream
        } else if span <= self.max_span_cheap {
            Delivery::FromMemoryIfCheap
        } else {
            return Ok(None);
        };
        self.serve(
            &Ask::Query(query.clone()),
            Wait::Brief,
            self.max_rows,
            send,
            gzip,
        )
        .await
    }

    /// Whether the store computes `query` cheaply at any span; a store
    /// that cannot say (an error) queues it, where the error is reported.
    async fn cheap(&self, query: &Query) -> bool {
        self.readings
            .cheap_at_any_span(query)
            .await
            .unwrap_or(false)
    }

    /// The latest readings `latest` asks for. Never queued: it waits for a
    /// direct slot (a gateway with none answers `503`). No row limit: the
    /// answer has one row per sensor, which no query span bounds but the
    /// network's size does.
    pub async fn latest(&self, latest: &LatestQuery, gzip: bool) -> Result<Response, ApiError> {
        self.serve(
            &Ask::Latest(latest.clone()),
            Wait::UntilFree,
            u64::MAX,
            Delivery::MayStream,
            gzip,
        )
        .await?
        .ok_or(ApiError::NoDirectSlots)
    }

    /// The answer to `ask`: cached, computed into the cache, or streamed
    /// (as `send` allows); `None` when no direct slot came (see `wait`),
    /// the answer has more than `max_rows` rows, or it is too large for
    /// memory and may not be streamed: then it is to be queued.
    async fn serve(
        &self,
        ask: &Ask,
        wait: Wait,
        max_rows: u64,
        send: Delivery,
        gzip: bool,
    ) -> Result<Option<Response>, ApiError> {
        let stream = || async {
            match send {
                Delivery::MayStream => self.streamed(ask, wait, max_rows, gzip).await,
                Delivery::FromMemoryIfCheap => Ok(None),
            }
        };
        let Some(cache) = &self.cache else {
            return stream().await;
        };
        if let Some(hit) = self.hit(ask, gzip).await {
            return Ok(Some(hit));
        }
        if cache.is_too_large(ask) {
            return stream().await;
        }
        // After the cache: asking the store costs a read of its own (on
        // AWS, two requests), and a cached answer is as fresh as any.
        if let (Delivery::FromMemoryIfCheap, Ask::Query(query)) = (send, ask) {
            if !self.cheap(query).await {
                return Ok(None);
            }
        }
        // Whether this request computed the answer (a miss) or waited for
        // another's computation (coalesced).
        let computed = AtomicBool::new(false);
        let compute = async {
            computed.store(true, Ordering::Relaxed);
            let _slot = self.slot(wait).await.ok_or(Miss::Busy)?;
            let readings = self.readings.as_ref();
            if !gzip {
                let (answer, rows) = render(ask.chunks(readings, 0), cache.max_entry()).await?;
                if rows > max_rows {
                    return Err(Miss::OverLimit);
                }
                // Held for the entry's life: no spare capacity (its
                // weight is its length).
                let plain = Bytes::from(answer.into_boxed_slice());
                return Ok::<_, Miss>(Answer::new(plain, None));
            }
            // Compressed once here, for this request and every later hit
            // that accepts gzip, instead of by the router's layer per
            // response; the whole days of a segment from gzip pieces
            // compressed once for every answer that holds them
            // (`crate::gzip::assembled`).
            let max = cache.max_entry();
            let rendered = render_pieced(ask.chunks(readings, max), max).await?;
            if rendered.rows > max_rows {
                return Err(Miss::OverLimit);
            }
            let plain = Bytes::from(rendered.bytes.into_boxed_slice());
            let gzip = crate::gzip::assembled(
                &self.readings,
                plain.clone(),
                rendered.pieces,
                self.gzip_level,
            )
            .await;
            Ok::<_, Miss>(Answer::new(plain, Some(gzip)))
        };
        match cache.get_or_compute(ask, compute).await {
            Ok(answer) => {
                cache_outcome(if computed.load(Ordering::Relaxed) {
                    "miss"
                } else {
                    "coalesced"
                });
                Ok(Some(response::in_memory(
                    answer,
                    &ask.label(),
                    Cache::Miss,
                    gzip,
                )))
            }
            Err(Miss::Busy | Miss::OverLimit) => Ok(None),
            Err(Miss::TooLarge) => stream().await,
            Err(Miss::Store(source)) => Err(ApiError::Unavailable {
                what: STORE_DOWN,
                source,
            }),
        }
    }

    /// `ask`'s answer from the cache, if it holds it.
    async fn hit(&self, ask: &Ask, gzip: bool) -> Option<Response> {
        let cache = self.cache.as_ref()?;
        let mut answer = cache.get(ask).await?;
        if gzip && !answer.gzip_made {
            // Computed for a client without gzip: its gzip form is made
            // once now, for every later gzip hit, rather than by the
            // router's layer for each (whole: where its segment pieces
            // lie is not kept).
            let make =
                |plain| crate::gzip::assembled(&self.readings, plain, Vec::new(), self.gzip_level);
            if let Some(made) = cache.with_gzip(ask, make).await {
                answer = made;
            }
        }
        cache_outcome("hit");
        Some(response::in_memory(answer, &ask.label(), Cache::Hit, gzip))
    }

    /// The answer streamed from the store, if a direct slot comes.
    ///
    /// Its status is sent before its rows, so an answer that passes
    /// `--max-result-rows` while streaming can only be cut off (a truncated
    /// transfer, logged); one whose rows are known to be over the limit
    /// before anything is sent (it fit in the answer cache's buffer) is
    /// queued instead, where it fails saying how many rows it has.
    ///
    /// For a request that accepts gzip it is gzipped here, its whole days
    /// of a segment from gzip pieces ([`response::Encoding::Gzip`]).
    async fn streamed(
        &self,
        ask: &Ask,
        wait: Wait,
        max_rows: u64,
        gzip: bool,
    ) -> Result<Option<Response>, ApiError> {
        let encoding = match gzip {
            true => response::Encoding::Gzip {
                store: self.readings.clone(),
                level: self.gzip_level,
            },
            false => response::Encoding::AsRendered,
        };
        match self.slot(wait).await {
            Some(slot) => response::streamed(
                ask.chunks(self.readings.as_ref(), if gzip { PIECE_MAX } else { 0 }),
                &ask.label(),
                slot,
                self.send_timeout,
                max_rows,
                encoding,
            )
            .await
            .map(Some),
            None => Ok(None),
        }
    }

    /// Sets the gauges of the direct path (for `/metrics`).
    pub async fn report(&self) {
        let in_use = self.limit.saturating_sub(self.slots.available_permits());
        metrics::gauge!("airq_direct_slots").set(self.limit as f64);
        metrics::gauge!("airq_direct_slots_in_use").set(in_use as f64);
        let bytes = match &self.cache {
            Some(cache) => cache.bytes().await,
            None => 0,
        };
        metrics::gauge!("airq_answer_cache_bytes").set(bytes as f64);
    }

    /// A direct slot: free now, or freed within `self.wait` ([`Wait::Brief`]),
    /// or whenever one frees up ([`Wait::UntilFree`]; never, with no slots
    /// at all).
    ///
    /// A direct answer costs a fraction of a queued one (no result row, no
    /// queue messages, no worker hand-off, no polls), and slots free up
    /// every few milliseconds under load, so a short wait for one beats
    /// queueing at once; a query that still finds none is queued as before.
    async fn slot(&self, wait: Wait) -> Option<OwnedSemaphorePermit> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) if self.limit == 0 => None,
            Err(_) => match wait {
                Wait::Brief if self.wait.is_zero() => None,
                Wait::Brief => tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok(),
                // The semaphore is fair (first come, first served), and the
                // router's time limit drops this wait with a 503.
                Wait::UntilFree => self.slots.clone().acquire_owned().await.ok(),
            },
        }
    }
}

/// What a direct answer answers. The answer cache is keyed by it: a query
/// and a latest-readings request are different variants, so their keys
/// never collide, whatever their fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ask {
    Query(Query),
    Latest(LatestQuery),
}

impl Ask {
    /// The store's answer, rendered in the request's format and index;
    /// with whole segment sections of at most `max_piece` bytes in chunks
    /// of their own (0: none; [`ReadingStore::query_answer_in_pieces`]).
    fn chunks(&self, readings: &dyn ReadingStore, max_piece: usize) -> AnswerStream {
        match self {
            Ask::Query(q) if max_piece > 0 => readings.query_answer_in_pieces(q, max_piece),
            Ask::Query(q) => readings.query_answer(q),
            Ask::Latest(l) => readings.latest_answer(l),
        }
    }

    fn label(&self) -> Label {
        match self {
            Ask::Query(q) => Label::of_query(q),
            Ask::Latest(l) => Label::of_latest(l),
        }
    }
}

/// Whether a direct answer may be streamed from the store (holding its
/// slot while the client reads), or only sent from memory: from the
/// cache, or computed into it when the store computes it cheaply at any
/// span (asked once the cache has not got it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    MayStream,
    FromMemoryIfCheap,
}

/// How long a request waits for a direct slot.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// [`DIRECT_WAIT`] at most: a query finding none is queued.
    Brief,
    /// Until one frees up: for what cannot be queued.
    UntilFree,
}

fn cache_outcome(outcome: &'static str) {
    metrics::counter!("airq_answer_cache_total", "outcome" => outcome).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use airq_core::store::{ReadingStream, StoreSummary};
    use airq_core::{BackendError, Reading, Timestamp};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use clap::Parser;
    use futures::StreamExt;

    /// A reading store whose every query fails with a schema error (a kind
    /// a remote call's failure would not have).
    struct Misshapen;

    #[async_trait::async_trait]
    impl ReadingStore for Misshapen {
        async fn put_batch(
            &self,
            _readings: Vec<Reading>,
        ) -> Result<airq_core::store::Written, BackendError> {
            Ok(Default::default())
        }

        fn query(&self, _query: &Query) -> ReadingStream {
            futures::stream::iter([Err(BackendError::Schema("no readings table".into()))]).boxed()
        }

        fn latest(&self, _latest: &LatestQuery) -> ReadingStream {
            futures::stream::iter([Err(BackendError::Schema("no readings table".into()))]).boxed()
        }

        async fn summary(&self) -> Result<StoreSummary, BackendError> {
            Ok(StoreSummary::default())
        }

        async fn ping(&self) -> Result<(), BackendError> {
            Ok(())
        }
    }

    fn direct(args: &[&str]) -> Direct {
        let config = Config::try_parse_from([&["airq-gateway"], args].concat())
            .unwrap_or_else(|e| panic!("{e}"));
        Direct::new(Arc::new(Misshapen), &config)
    }

    fn hours(n: i64) -> Query {
        let start = Timestamp(1_528_056_000);
        Query::between(start, Timestamp(start.0 + n * 3600))
    }

    #[tokio::test]
    async fn store_errors_keep_their_kind_cached_or_streamed() {
        for args in [&["--answer-cache-ttl", "60s"], &["--answer-cache-ttl", "0"]] {
            let Err(e) = direct(args).answer(&hours(1), false).await else {
                panic!("{args:?}: a failing store answered");
            };
            match &e {
                ApiError::Unavailable { what, source } => {
                    assert_eq!(*what, STORE_DOWN);
                    assert!(
                        matches!(**source, BackendError::Schema(_)),
                        "{args:?}: {source:?}"
                    );
                }
                other => panic!("{args:?}: {other:?}"),
            }
            let response = e.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap_or_default();
            assert_eq!(
                body.as_ref(),
                br#"{"error":"reading store unavailable; retry later"}"#
            );
        }
    }

    #[tokio::test]
    async fn latest_is_never_queued() {
        // No slots at all: a 503 at once, not a wait for ever.
        let d = direct(&["--direct-limit", "0"]);
        let latest = LatestQuery::default();
        assert!(matches!(
            d.latest(&latest, false).await,
            Err(ApiError::NoDirectSlots)
        ));
        // A failing store is the store's error, as for a query.
        for cache in ["60s", "0"] {
            let d = direct(&["--answer-cache-ttl", cache]);
            match d.latest(&latest, false).await {
                Err(ApiError::Unavailable { source, .. }) => {
                    assert!(matches!(*source, BackendError::Schema(_)), "{source:?}")
                }
                other => panic!("{cache}: {other:?}"),
            }
        }
    }

    #[test]
    fn queries_and_latest_requests_are_different_keys() {
        let q = Ask::Query(hours(1));
        let l = Ask::Latest(LatestQuery::default());
        assert_ne!(q, l);
        assert_eq!(q, Ask::Query(hours(1)));
    }

    #[tokio::test]
    async fn long_spans_and_no_slots_are_left_to_the_queue() {
        // A store that reads rows: longer than a day is queued by default.
        let d = direct(&[]);
        assert!(matches!(d.answer(&hours(25), false).await, Ok(None)));
        for cache in ["60s", "0"] {
            let d = direct(&["--direct-limit", "0", "--answer-cache-ttl", cache]);
            assert!(
                matches!(d.answer(&hours(1), false).await, Ok(None)),
                "{cache}"
            );
        }
    }
}

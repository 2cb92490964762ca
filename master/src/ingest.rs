//! One ingestion: parse the document on a blocking thread while a writer
//! task stores the readings in batches, so parsing and writing overlap. The
//! two meet through a bounded channel. A feed file is read as it is parsed
//! (`airq_core::feed::parse_feed_from`), so memory stays flat whatever its
//! size: the parser's 2 MiB buffer plus a few batches in flight. A download
//! is spooled to an unnamed temporary file first, then read the same way.

use crate::fetch::{self, FeedFile, FetchPolicy, Source, Spooled, Validators};
use crate::{metrics, progress};
use airq_core::feed::{self, FeedError, FeedStats, Rejection};
use airq_core::quality;
use airq_core::store::{ReadingStore, Written};
use airq_core::{Reading, Resolution, Timestamp};
use anyhow::Context as _;
use futures::StreamExt as _;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Batches parsed ahead of the writer. Two keep the writer busy while the
/// parser fills the next; more would only hold memory.
const BATCHES_IN_FLIGHT: usize = 2;

/// Entries between two progress-bar updates.
const PROGRESS_EVERY: u64 = 4096;

/// The producer's side of the pipeline: collects readings into batches and
/// hands each full batch to the writer, blocking while the writer is behind.
pub struct BatchSink {
    /// Each reading with whether it may end as its sensor's latest.
    batch: Vec<(Reading, bool)>,
    batch_size: usize,
    tx: mpsc::Sender<Vec<(Reading, bool)>>,
    /// The writer stopped (it failed); further readings are dropped and the
    /// writer's error is what the pipeline reports.
    closed: bool,
    /// Time spent waiting for the writer to take a batch.
    waited: Duration,
}

impl BatchSink {
    pub fn push(&mut self, reading: Reading) {
        self.push_hinted(reading, true);
    }

    /// A reading of a surveyed feed: completed with `assessment` (its
    /// flags and air) and pushed saying whether it may end as its sensor's
    /// latest (not when the feed has a newer one of the sensor:
    /// [`ReadingStore::put_batch_hinted`]); pushed as it is without one.
    pub fn push_assessed(
        &mut self,
        mut reading: Reading,
        assessment: Option<&quality::Assessment>,
    ) {
        match assessment {
            Some(a) => {
                a.complete(&mut reading);
                let may_be_latest = a.may_be_latest(&reading);
                self.push_hinted(reading, may_be_latest);
            }
            None => self.push(reading),
        }
    }

    fn push_hinted(&mut self, reading: Reading, may_be_latest: bool) {
        if self.closed {
            return;
        }
        self.batch.push((reading, may_be_latest));
        if self.batch.len() >= self.batch_size {
            self.send();
        }
    }

    fn send(&mut self) {
        let full = std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(self.batch_size.min(PREALLOCATED)),
        );
        if full.is_empty() {
            return;
        }
        let started = Instant::now();
        if self
            .tx
            .blocking_send(in_key_order(full, |(r, _)| r))
            .is_err()
        {
            self.closed = true;
        }
        self.waited += started.elapsed();
    }

    /// Sends the last, partial batch; returns the time spent waiting for the
    /// writer.
    fn finish(mut self) -> Duration {
        if !self.closed {
            self.send();
        }
        self.waited
    }
}

/// The batch in the store's key order, `(timestamp, sensor)`: so ordered, a
/// batch walks the store's B-trees once instead of jumping about. The
/// producer has time to spare, the writer has not. Sorts small keys and moves
/// each reading twice, rather than moving readings about in a sort.
pub(crate) fn in_key_order<T>(batch: Vec<T>, reading: impl Fn(&T) -> &Reading) -> Vec<T> {
    let mut keys: Vec<_> = batch
        .iter()
        .enumerate()
        .map(|(i, t)| (reading(t).timestamp, reading(t).sensor_id, i))
        .collect();
    keys.sort_unstable();
    let mut slots: Vec<Option<T>> = batch.into_iter().map(Some).collect();
    keys.iter().filter_map(|k| slots[k.2].take()).collect()
}

/// What a run that stopped part way says when its batches carried latest
/// hints ([`BatchSink::push_assessed`]).
const LATEST_MAY_LAG: &str = "ingestion stopped part way: a sensor's latest reading may lag \
     behind its stored ones until this feed is ingested again";

/// Readings of a 5-minute feed stored in one call at least, whatever
/// `--batch-size` says: Sensor.Community's feed holds about 15,000 PM
/// sensors, so a whole feed fits (about 300 B a reading in memory: 30 MB
/// at most).
pub const LIVE_FEED_READINGS: usize = 100_000;

/// Readings a batch has room for before it grows: a large `--batch-size`
/// (or [`LIVE_FEED_READINGS`]) costs memory only as readings arrive.
const PREALLOCATED: usize = 8_192;

/// Runs `produce` on a blocking thread with a sink whose batches a writer
/// task stores concurrently, into `series`: the daily series
/// ([`ReadingStore::put_batch`]) or the live tier's 5-minute readings
/// ([`ReadingStore::put_recent`], which keeps the hourly series). Returns
/// what `produce` returned and what the store did with the readings, once
/// every batch is durable.
pub async fn pipeline<T, P>(
    store: Arc<dyn ReadingStore>,
    batch_size: usize,
    series: Resolution,
    produce: P,
) -> anyhow::Result<(T, Written)>
where
    T: Send + 'static,
    P: FnOnce(&mut BatchSink) -> T + Send + 'static,
{
    let batch_size = match series {
        // A 5-minute feed goes to the store in one call: each call
        // rewrites the items of the hours it touches on DynamoDB (the
        // live tier's write cost is per call, not per reading), and
        // recomputes the touched hours' indices on both backends.
        Resolution::FiveMin => batch_size.max(LIVE_FEED_READINGS),
        _ => batch_size,
    }
    .max(1);
    let (tx, mut rx) = mpsc::channel::<Vec<(Reading, bool)>>(BATCHES_IN_FLIGHT);
    let producer = tokio::task::spawn_blocking(move || {
        let mut sink = BatchSink {
            batch: Vec::with_capacity(batch_size.min(PREALLOCATED)),
            batch_size,
            tx,
            closed: false,
            waited: Duration::ZERO,
        };
        let started = Instant::now();
        let out = produce(&mut sink);
        let waited = sink.finish();
        (out, started.elapsed(), waited)
    });
    // Not spawned: dropping the pipeline (a cancelled scheduled run) drops
    // the writer with it.
    let writer = async move {
        let mut stored = Written::default();
        let mut busy = Duration::ZERO;
        while let Some(batch) = rx.recv().await {
            let started = Instant::now();
            let (batch, may_be_latest): (Vec<Reading>, Vec<bool>) = batch.into_iter().unzip();
            let written = match series {
                Resolution::FiveMin => store.put_recent(batch).await,
                Resolution::Day | Resolution::Hour if may_be_latest.iter().all(|m| *m) => {
                    store.put_batch(batch).await
                }
                Resolution::Day | Resolution::Hour => {
                    store.put_batch_hinted(batch, may_be_latest).await
                }
            };
            let written = written
                .with_context(|| format!("storing a batch after {} readings", stored.total()))?;
            busy += started.elapsed();
            stored += written;
            metrics::stored(written.total());
        }
        anyhow::Ok((stored, busy))
    };
    let (produced, written) = tokio::join!(producer, writer);
    // A writer failure explains a producer that found the channel closed.
    let (stored, writing) = written?;
    let (out, producing, waiting) = produced.context("the producer thread failed")?;
    // Which side bounds the throughput: the one that never waits.
    tracing::debug!(
        producer_s = producing.as_secs_f64(),
        producer_waiting_for_writer_s = waiting.as_secs_f64(),
        writer_busy_s = writing.as_secs_f64(),
        stored = stored.total(),
        new = stored.new,
        "pipeline finished"
    );
    Ok((out, stored))
}

/// What one parse-and-store pass did.
#[derive(Debug, Clone)]
pub struct Processed {
    /// Bytes of the document parsed.
    pub bytes: u64,
    pub stats: FeedStats,
    /// Valid readings stored, counted once per identity.
    pub stored: u64,
    /// Of those, how many were new, replaced or already stored as sent.
    pub written: Written,
    pub elapsed: Duration,
}

impl Processed {
    /// Nothing read: an unchanged feed (304).
    fn nothing() -> Processed {
        Processed {
            bytes: 0,
            stats: FeedStats::default(),
            stored: 0,
            written: Written::default(),
            elapsed: Duration::ZERO,
        }
    }

    pub fn rate(&self) -> f64 {
        per_second(self.stored, self.elapsed)
    }
}

/// `4928 (0 new, 4928 already stored, 0 replaced)`: a summary's stored
/// line, so that a repeated run says it added nothing.
pub fn stored_line(w: &Written) -> String {
    format!(
        "{} ({} new, {} already stored, {} replaced)",
        w.total(),
        w.new,
        w.unchanged,
        w.replaced
    )
}

pub fn per_second(n: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Parses, validates (the indices are computed by the parser) and stores a
/// document held in memory, as ingested now.
///
/// A document that breaks off (truncated download) still has its complete
/// entries stored, storing being idempotent; the error then says how many
/// entries were read before the break.
pub async fn process(
    store: Arc<dyn ReadingStore>,
    doc: Arc<Vec<u8>>,
    batch_size: usize,
) -> anyhow::Result<Processed> {
    process_at(store, doc, batch_size, Timestamp::now()).await
}

/// [`process`] as ingested at `now`: the instant every entry's timestamp is
/// checked against (at most a day later is stored; see
/// `airq_core::feed::TimeWindow`). One instant per run, given by the caller,
/// so that a run is consistent and tests can choose it.
pub async fn process_at(
    store: Arc<dyn ReadingStore>,
    doc: Arc<Vec<u8>>,
    batch_size: usize,
    now: Timestamp,
) -> anyhow::Result<Processed> {
    process_document_at(
        store,
        Document::Bytes(doc),
        batch_size,
        Resolution::Day,
        now,
        None,
    )
    .await
}

/// A document to parse and store.
pub enum Document {
    /// Held in memory: the benchmark's document.
    Bytes(Arc<Vec<u8>>),
    /// Read as it is parsed, in chunks: a feed file, or a spooled download.
    File(FeedFile),
}

/// [`process_at`] on a document in memory or read as it is parsed. With
/// a `carry` of the series (the live schedule's), the sensors' history
/// the flags read comes from it rather than from the store, and it keeps
/// this feed's readings; a run that fails empties it.
pub async fn process_document_at(
    store: Arc<dyn ReadingStore>,
    document: Document,
    batch_size: usize,
    series: Resolution,
    now: Timestamp,
    carry: Option<&mut quality::Carry>,
) -> anyhow::Result<Processed> {
    let mut carry = carry.filter(|c| c.series() == series);
    let outcome = process_with(
        store,
        document,
        batch_size,
        series,
        now,
        carry.as_deref_mut(),
    )
    .await;
    if let (Some(c), Err(_)) = (carry, &outcome) {
        c.clear();
    }
    outcome
}

async fn process_with(
    store: Arc<dyn ReadingStore>,
    document: Document,
    batch_size: usize,
    series: Resolution,
    now: Timestamp,
    mut carry: Option<&mut quality::Carry>,
) -> anyhow::Result<Processed> {
    let started = Instant::now();
    // The daily and 5-minute series are assessed for quality flags
    // (`quality::ASSESSED`): the feed is read twice, first for what they
    // need of the whole feed and of the sensors' stored readings just
    // before it, then to store each reading with them.
    let (document, assessment) = match series {
        s if quality::ASSESSED.contains(&s) => {
            let (document, surveyed) = tokio::task::spawn_blocking(move || {
                let mut document = document;
                let surveyed = survey(&mut document, series, now);
                (document, surveyed)
            })
            .await
            .context("the survey thread failed")?;
            let mut surveyed = surveyed.context("cannot read the feed twice")?;
            match carry.as_deref_mut() {
                Some(c) => {
                    if !c.is_filled() {
                        fill(store.as_ref(), &surveyed, c).await?;
                    }
                    surveyed.history_from(c);
                }
                None => learn_history(store.as_ref(), &mut surveyed).await?,
            }
            (document, Some(surveyed.finish()))
        }
        _ => (document, None),
    };
    // With an assessment the daily series' batches say which readings may
    // be their sensor's latest: a run that stops part way may have stored
    // a sensor's older readings (told to leave `latest` alone) but not its
    // newest, so its errors say so.
    let hinted = assessment.is_some() && series != Resolution::FiveMin;
    let lag = |e: anyhow::Error| match hinted {
        true => e.context(LATEST_MAY_LAG),
        false => e,
    };
    let ((parsed, counted, bytes, assessment), written) =
        pipeline(store, batch_size, series, move |sink| {
            let pb = progress::counter("entries");
            let mut counted = FeedStats::default();
            let mut on_entry = |entry| {
                counted.entries += 1;
                match entry {
                    Ok(reading) => {
                        counted.accepted += 1;
                        sink.push_assessed(reading, assessment.as_ref());
                    }
                    Err(why) => *counted.rejected.entry(why).or_default() += 1,
                }
                if counted.entries % PROGRESS_EVERY == 0 {
                    pb.set_position(counted.entries);
                }
            };
            let (parsed, bytes) = match document {
                Document::Bytes(doc) => (
                    feed::parse_feed_at(&doc, now, &mut on_entry),
                    doc.len() as u64,
                ),
                Document::File(mut file) => (
                    feed::parse_feed_from(&mut file, now, &mut on_entry),
                    file.bytes_read(),
                ),
            };
            pb.finish_and_clear();
            (parsed, counted, bytes, assessment)
        })
        .await
        .map_err(lag)?;
    if let (Some(c), Some(a), Ok(_)) = (carry, &assessment, &parsed) {
        c.keep(a);
    }
    let elapsed = started.elapsed();
    let stored = written.total();
    // Also when the feed breaks off: these entries were read and refused.
    metrics::rejected(&counted);
    match parsed {
        Ok(stats) => Ok(Processed {
            bytes,
            stats,
            stored,
            written,
            elapsed,
        }),
        Err(FeedError::Syntax { entries: 0, source }) => Err(anyhow::anyhow!(
            "the feed is not valid JSON ({source}); nothing was stored"
        )),
        Err(FeedError::Syntax { entries, source }) => Err(anyhow::anyhow!(
            "the feed breaks off: invalid JSON after {entries} complete entries ({source}); \
             the {stored} valid readings among them were stored, {} entries were rejected",
            counted.rejected_total()
        )),
        Err(e @ FeedError::NotAnArray(_)) => Err(e.into()),
        Err(e @ FeedError::EntryTooLarge { .. }) => Err(anyhow::anyhow!(
            "{e}; the {stored} valid readings before it were stored, {} entries were rejected",
            counted.rejected_total()
        )),
        Err(FeedError::Read { entries, source }) => Err(lag(anyhow::anyhow!(
            "cannot read the feed after {entries} complete entries ({source}); \
             the {stored} valid readings among them were stored, {} entries were rejected",
            counted.rejected_total()
        ))),
    }
}

/// The first pass over a feed ([`quality::Survey`]): its stations' air,
/// its cells' values and its sensors' tracks, whatever the order of its
/// entries. A document that breaks off is surveyed as far as it goes (the
/// second pass stores as far, and reports the break); a file is read again
/// from its start (a pipe is first copied to a temporary file).
fn survey(
    document: &mut Document,
    series: Resolution,
    now: Timestamp,
) -> std::io::Result<quality::Survey> {
    if let Document::File(file) = document {
        file.spool()?;
    }
    let mut survey = quality::Survey::new(series);
    // Station measurements are a few per station: kept aside while the
    // readings go to the survey.
    let mut air = Vec::new();
    let sighting = |r: Reading| quality::Sighting::of(series, &r);
    let on_entry = |e: Result<quality::Sighting, Rejection>| {
        if let Ok(s) = e {
            survey.sighting(s);
        }
    };
    // Parsed on every core (the writer has nothing to do yet), handed to
    // the survey in the feed's order.
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let on_air = |m| air.push(m);
    match document {
        Document::Bytes(doc) => {
            let _ = feed::parse_feed_from_with_air_parallel(
                &doc[..],
                now,
                threads,
                sighting,
                on_entry,
                on_air,
            );
        }
        Document::File(file) => {
            let _ = feed::parse_feed_from_with_air_parallel(
                &mut *file, now, threads, sighting, on_entry, on_air,
            );
            file.rewind()?;
        }
    }
    for m in air {
        survey.air(m);
    }
    Ok(survey)
}

/// Fills `carry` from the store: every sensor's readings of the series in
/// the window `survey` (its first feed's) looks back at.
async fn fill(
    store: &dyn ReadingStore,
    survey: &quality::Survey,
    carry: &mut quality::Carry,
) -> anyhow::Result<()> {
    if let Some((start, end)) = survey.history_window() {
        let mut history = store.history(carry.series(), start, end);
        while let Some(r) = history.next().await {
            carry.stored(&r.context("reading the sensors' readings before the feed")?);
        }
    }
    carry.filled();
    Ok(())
}

/// Gives `survey` the sensors' stored readings of its series just before
/// its feed ([`quality::Survey::history_window`]): the start of their
/// runs (`stuck`) and their previous positions (`moved`). A few days of
/// readings, one a sensor a day, or an hour of 5-minute ones
/// ([`ReadingStore::history`]).
pub async fn learn_history(
    store: &dyn ReadingStore,
    survey: &mut quality::Survey,
) -> anyhow::Result<()> {
    let Some((start, end)) = survey.history_window() else {
        return Ok(());
    };
    let mut history = store.history(survey.series(), start, end);
    while let Some(r) = history.next().await {
        survey.history(&r.context("reading the sensors' readings before the feed")?);
    }
    Ok(())
}

/// How long the live tier keeps its series.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub recent: Duration,
    pub hourly: Duration,
}

impl From<&crate::cli::RetentionArgs> for Retention {
    fn from(a: &crate::cli::RetentionArgs) -> Self {
        Retention {
            recent: a.recent_retention,
            hourly: a.hourly_retention,
        }
    }
}

/// Deletes the live tier's readings older than `retention` keeps, as of
/// `now` (the store deletes in small batches, so ingestion and queries
/// wait for one batch at most). Returns `(5-minute, hourly)` deleted.
pub async fn prune(
    store: &Arc<dyn ReadingStore>,
    retention: Retention,
    now: Timestamp,
) -> anyhow::Result<(u64, u64)> {
    let before = |keep: Duration| Timestamp(now.0.saturating_sub(keep.as_secs() as i64));
    let started = Instant::now();
    let recent = store
        .prune(Resolution::FiveMin, before(retention.recent))
        .await
        .context("deleting 5-minute readings past their retention")?;
    let hourly = store
        .prune(Resolution::Hour, before(retention.hourly))
        .await
        .context("deleting hourly means past their retention")?;
    metrics::pruned(Resolution::FiveMin, recent);
    metrics::pruned(Resolution::Hour, hourly);
    tracing::info!(
        recent,
        hourly,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "retention: deleted the live tier's old readings"
    );
    Ok((recent, hourly))
}

/// Rebuilds the store's answer segments of the days an ingestion changed
/// (see [`ReadingStore::refresh_segments`]); returns how many. A failure
/// is logged, not returned: the readings are stored, and answers read the
/// rows of a day whose segment is stale.
pub async fn refresh_segments(store: &dyn ReadingStore) -> u64 {
    let started = Instant::now();
    match store.refresh_segments().await {
        Ok(built) => {
            if built > 0 {
                tracing::info!(
                    days = built,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "rebuilt the answer segments of the days that changed"
                );
            }
            built
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                "could not rebuild the answer segments; answers read the rows meanwhile"
            );
            0
        }
    }
}

/// A finished ingestion.
#[derive(Debug, Clone)]
pub struct Summary {
    pub source: String,
    /// The series stored into: `day` or `5min`.
    pub series: Resolution,
    pub bytes: u64,
    pub fetch: Duration,
    pub processed: Processed,
    /// The server said the feed has not changed since the last run (304):
    /// nothing was downloaded or stored.
    pub not_modified: bool,
    /// What identifies the version read, for the next run's conditional
    /// GET (the last run's again after a 304; none for a file).
    pub validators: Validators,
}

impl Summary {
    pub fn elapsed(&self) -> Duration {
        self.fetch + self.processed.elapsed
    }

    /// `reason=count` for every rejection reason, for log lines.
    pub fn rejections_compact(&self) -> String {
        Rejection::ALL
            .iter()
            .map(|r| format!("{}={}", r.label(), self.processed.stats.rejected(*r)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn log(&self) {
        let s = &self.processed.stats;
        tracing::info!(
            source = %self.source,
            series = self.series.name(),
            not_modified = self.not_modified,
            bytes = self.bytes,
            entries = s.entries,
            stored = self.processed.stored,
            new = self.processed.written.new,
            replaced = self.processed.written.replaced,
            already_stored = self.processed.written.unchanged,
            rejected = s.rejected_total(),
            rejections = %self.rejections_compact(),
            elapsed_s = self.elapsed().as_secs_f64(),
            readings_per_s = self.processed.rate().round(),
            "ingestion finished"
        );
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.processed.stats;
        writeln!(f, "source:        {}", self.source)?;
        if self.series != Resolution::Day {
            writeln!(f, "series:        {}", self.series.name())?;
        }
        if self.not_modified {
            return writeln!(
                f,
                "not modified:  the feed is the one the last run read (304); nothing to store"
            );
        }
        writeln!(f, "bytes:         {}", self.bytes)?;
        writeln!(f, "entries read:  {}", s.entries)?;
        writeln!(f, "stored:        {}", stored_line(&self.processed.written))?;
        writeln!(f, "rejected:      {}", s.rejected_total())?;
        // Wide enough for the longest label ("timestamp out of range:"), so
        // the counts line up.
        for why in Rejection::ALL {
            writeln!(
                f,
                "  {:<24} {}",
                format!("{}:", why.label()),
                s.rejected(why)
            )?;
        }
        writeln!(
            f,
            "elapsed:       {:.3} s (fetch {:.3} s, parse+store {:.3} s)",
            self.elapsed().as_secs_f64(),
            self.fetch.as_secs_f64(),
            self.processed.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "rate:          {:.0} readings/s (parse+store)",
            self.processed.rate()
        )
    }
}

/// Fetches `source` and stores its readings: a file is read as it is
/// parsed (its reading time is in `parse+store`); a download is spooled to
/// a temporary file first (its time is `fetch`), then read the same way.
///
/// Into `series` (see [`pipeline`]). A download is conditional on
/// `last`, the validators of the version the previous run read: a 304 is
/// a successful run that stores nothing.
pub async fn ingest(
    store: Arc<dyn ReadingStore>,
    source: &Source,
    policy: &FetchPolicy,
    batch_size: usize,
    series: Resolution,
    last: &Validators,
    carry: Option<&mut quality::Carry>,
) -> anyhow::Result<Summary> {
    tracing::info!(%source, series = series.name(), "fetching the feed");
    let started = Instant::now();
    let mut validators = Validators::default();
    let (document, size) = match source {
        Source::File(path) => {
            let path = path.clone();
            // Opening a FIFO waits for its writer: not on the runtime.
            let file =
                tokio::task::spawn_blocking(move || FeedFile::open(&path, fetch::MAX_FEED_BYTES))
                    .await
                    .context("the reading thread failed")??;
            let size = file.size;
            (Document::File(file), size)
        }
        Source::Http(url) => match fetch::spool_if_changed(url, policy, last).await? {
            Spooled::Changed(file, fresh) => {
                validators = fresh;
                let size = file.size;
                (Document::File(file), size)
            }
            Spooled::NotModified => {
                tracing::info!(%source, "the feed has not changed since the last run (304)");
                metrics::not_modified();
                return Ok(Summary {
                    source: source.to_string(),
                    series,
                    bytes: 0,
                    fetch: started.elapsed(),
                    processed: Processed::nothing(),
                    not_modified: true,
                    validators: last.clone(),
                });
            }
        },
    };
    let fetch = started.elapsed();
    // The ingestion time is when the document is in hand (or open): a slow
    // download does not narrow the window of timestamps accepted.
    let now = Timestamp::now();
    tracing::info!(bytes = size, ingestion_time = %now, "parsing and storing");
    let processed = process_document_at(store.clone(), document, batch_size, series, now, carry)
        .await
        .with_context(|| format!("cannot ingest {source}"))?;
    let bytes = processed.bytes;
    metrics::fetched(bytes);
    // The days this run changed (the daily series', or the hourly
    // series' that a 5-minute feed recomputes) have stale segments.
    let w = &processed.written;
    if w.new + w.replaced > 0 {
        refresh_segments(&*store).await;
    }
    let stats = &processed.stats;
    if stats.entries == 0 {
        tracing::warn!(%source, "the feed has no entries");
    } else if stats.rejected(Rejection::Malformed) == stats.entries {
        // An array, but of something else: not a feed at all.
        anyhow::bail!(
            "cannot ingest {source}: none of its {} entries is a sensor reading \
             (is it a Sensor.Community feed?)",
            stats.entries
        );
    }
    Ok(Summary {
        source: source.to_string(),
        series,
        bytes,
        fetch,
        processed,
        not_modified: false,
        validators,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use airq_core::query::Query;
    use airq_core::store::{ReadingStream, StoreSummary};
    use airq_core::BackendError;
    use futures::StreamExt;
    use std::sync::Mutex;

    /// Records the batches it is given; fails from the `fail_at`-th on.
    #[derive(Default)]
    struct Recorder {
        batches: Mutex<Vec<Vec<Reading>>>,
        fail_at: Option<usize>,
    }

    #[async_trait::async_trait]
    impl ReadingStore for Recorder {
        async fn put_batch(&self, readings: Vec<Reading>) -> Result<Written, BackendError> {
            let mut batches = self
                .batches
                .lock()
                .map_err(|e| BackendError::Corrupt(e.to_string()))?;
            if self.fail_at.is_some_and(|n| batches.len() + 1 >= n) {
                return Err(BackendError::Corrupt("disk on fire".into()));
            }
            let new = readings.len() as u64;
            batches.push(readings);
            Ok(Written {
                new,
                ..Written::default()
            })
        }

        async fn put_recent(&self, readings: Vec<Reading>) -> Result<Written, BackendError> {
            self.put_batch(readings).await
        }

        fn query(&self, _query: &Query) -> ReadingStream {
            futures::stream::empty().boxed()
        }

        fn latest(&self, _latest: &airq_core::LatestQuery) -> ReadingStream {
            futures::stream::empty().boxed()
        }

        async fn summary(&self) -> Result<StoreSummary, BackendError> {
            Ok(StoreSummary::default())
        }

        async fn ping(&self) -> Result<(), BackendError> {
            Ok(())
        }
    }

    fn sample() -> Arc<Vec<u8>> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/sample/201806032249_data.dust.min.json"
        );
        Arc::new(std::fs::read(path).expect("the shipped sample"))
    }

    #[tokio::test]
    async fn batches_are_bounded_sorted_and_complete() {
        let store = Arc::new(Recorder::default());
        let done = process(store.clone(), sample(), 1000)
            .await
            .expect("ingests");
        assert_eq!(done.stats.entries, 4945);
        assert_eq!(done.stats.rejected(Rejection::Saturated), 17);
        assert_eq!(done.stored, 4928);
        let batches = store.batches.lock().expect("lock");
        assert_eq!(batches.len(), 5);
        assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 1000));
        for b in batches.iter() {
            assert!(b
                .windows(2)
                .all(|w| (w[0].timestamp, w[0].sensor_id) <= (w[1].timestamp, w[1].sensor_id)));
        }
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 4928);
    }

    /// A 5-minute feed is one store call whatever the batch size (each
    /// call rewrites the items of its hours on DynamoDB).
    #[tokio::test]
    async fn a_five_minute_feed_is_one_store_call() {
        let store = Arc::new(Recorder::default());
        let readings: Vec<Reading> = airq_contract::sample::sample()
            .into_iter()
            .take(2_500)
            .collect();
        assert_eq!(readings.len(), 2_500);
        let (_, written) = pipeline(store.clone(), 1_000, Resolution::FiveMin, move |sink| {
            for r in readings {
                sink.push(r);
            }
        })
        .await
        .expect("stored");
        assert_eq!(written.new, 2_500);
        let batches = store.batches.lock().expect("lock");
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [2_500]);
    }

    #[tokio::test]
    async fn a_store_failure_is_the_error_and_nothing_hangs() {
        let store = Arc::new(Recorder {
            fail_at: Some(2),
            ..Recorder::default()
        });
        let err = process(store.clone(), sample(), 500)
            .await
            .expect_err("fails");
        let msg = format!("{err:#}");
        assert!(msg.contains("storing a batch after 500 readings"), "{msg}");
        assert!(msg.contains("disk on fire"), "{msg}");
        assert_eq!(store.batches.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn a_truncated_feed_keeps_what_came_before_the_break() {
        let doc = sample();
        let cut = Arc::new(doc[..doc.len() / 3].to_vec());
        let store = Arc::new(Recorder::default());
        let err = process(store.clone(), cut, 5000).await.expect_err("fails");
        let msg = err.to_string();
        let stored: usize = store
            .batches
            .lock()
            .expect("lock")
            .iter()
            .map(Vec::len)
            .sum();
        assert!(stored > 1000, "{stored}");
        assert!(
            msg.contains(&format!(
                "the {stored} valid readings among them were stored"
            )),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn entries_are_checked_against_the_ingestion_time_given() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../common/core/tests/fixtures/hostile_text.json"
        );
        let doc = Arc::new(std::fs::read(path).expect("the fixture"));
        let at = |s: &str| Timestamp::parse_feed(s).expect("a valid time");
        let store = Arc::new(Recorder::default());
        let done = process_at(store.clone(), doc.clone(), 4, at("2024-03-02 00:00:00"))
            .await
            .expect("ingests");
        assert_eq!((done.stats.entries, done.stored), (35, 7));
        assert_eq!(done.stats.rejected(Rejection::TimestampOutOfRange), 4);
        // A day earlier, the good readings of 2024-03-01 are in the future
        // by more than a day; only the one of 2015 is stored.
        let early = process_at(store, doc, 4, at("2024-02-29 00:00:00"))
            .await
            .expect("ingests");
        assert_eq!(early.stored, 1);
    }

    /// The live schedule's carried history flags what the store's would:
    /// sensor 77 sends the same values in 13 feeds 5 minutes apart, so
    /// the 12th and 13th are `stuck`; the carry is filled from the store
    /// at the 4th (three feeds were stored without it), and a failed run
    /// (a store that is gone) empties it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_carried_history_flags_stuck_readings_as_the_store_does() {
        use airq_core::quality::{Carry, Flag};
        let dir = tempfile::tempdir().expect("temp dir");
        let db = airq_embedded::Db::open(dir.path().join("airq.db")).expect("a store");
        let store: Arc<dyn ReadingStore> = Arc::new(airq_embedded::SqliteReadingStore::new(db));
        let feed = |k: i64| {
            let at = Timestamp(
                Timestamp::parse_feed("2024-03-01 12:00:00")
                    .expect("a time")
                    .0
                    + 300 * k,
            );
            Arc::new(format!(
                r#"[{{"id":{k},"timestamp":"{at}","location":{{"id":5077,"latitude":"48.7800","longitude":"9.1800","altitude":"250","country":"DE"}},"sensor":{{"id":77,"sensor_type":{{"id":14,"name":"SDS011","manufacturer":"Nova Fitness"}}}},"sensordatavalues":[{{"value":"12.30","value_type":"P1"}},{{"value":"7.10","value_type":"P2"}}]}}]"#
            ).into_bytes())
        };
        let mut carry = Carry::new(Resolution::FiveMin);
        let now = Timestamp::parse_feed("2024-03-01 13:10:00").expect("a time");
        for k in 0..13 {
            let carried = (k >= 3).then_some(&mut carry);
            let doc = Document::Bytes(feed(k));
            process_document_at(store.clone(), doc, 100, Resolution::FiveMin, now, carried)
                .await
                .expect("ingests");
        }
        assert!(carry.is_filled() && carry.len() == 1);
        let mut all = Query::between(
            Timestamp::parse_feed("2024-03-01 00:00:00").expect("a time"),
            Timestamp::parse_feed("2024-03-01 23:59:59").expect("a time"),
        );
        all.resolution = Resolution::FiveMin;
        let stuck: Vec<bool> = store
            .query(&all)
            .map(|r| r.expect("a reading").flags.contains(Flag::Stuck))
            .collect()
            .await;
        let mut want = vec![false; 11];
        want.extend([true, true]);
        assert_eq!(stuck, want);

        // A run that fails empties the carry: the next one reads the store.
        let gone: Arc<dyn ReadingStore> = Arc::new(Recorder {
            fail_at: Some(1),
            ..Recorder::default()
        });
        let failed = process_document_at(
            gone,
            Document::Bytes(feed(13)),
            100,
            Resolution::FiveMin,
            now,
            Some(&mut carry),
        )
        .await;
        assert!(failed.is_err());
        assert!(!carry.is_filled() && carry.is_empty());
    }
}

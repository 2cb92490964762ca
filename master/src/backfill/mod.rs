//! `airq-master backfill`: history from the Sensor.Community archive
//! (`archive.sensor.community/YYYY-MM-DD/YYYY-MM-DD_<type>_sensor_<id>.csv`),
//! over HTTP or from a directory laid out the same way.
//!
//! Three stages meet through bounded channels, so memory stays flat
//! whatever the span:
//!
//! 1. the **lister** (this task) walks the days in order, lists each day's
//!    directory (retrying like the live fetch), and starts one task per
//!    file of a requested type, at most `--concurrency` at once;
//! 2. each **file task** downloads its file whole (a retry must not count
//!    half a file twice) or streams it from disk (a regular file inside the
//!    source directory only, see [`local`]), both at most
//!    [`archive::MAX_FILE_BYTES`], and parses it on a blocking thread, a
//!    line of at most [`lines::MAX_LINE_BYTES`] at a time, into at most one
//!    daily mean (or, raw, one reading per second of the day);
//! 3. the **collector** gathers the readings into batches and counts, and
//!    when a day's last file is in, and every earlier day's (days end in
//!    order), sends the day's last partial batch and then an end-of-day
//!    marker to
//! 4. the **writer**, which stores batch after batch and, on reaching a
//!    day's marker, knows every reading of that day is durable (the queue is
//!    first in, first out): it records the day as done in the state file
//!    (see [`state`]). A day with a file that failed gets no record and is
//!    tried again by the next run.
//!
//! At daily resolution a day's means are **assessed** as the nightly
//! feed's are (issue 28, [`airq_core::quality`]): the collector holds the
//! day's readings, one per sensor, and its stations' air (the day's mean
//! humidity and temperature of each T/RH sensor, `--air-types`, read
//! beside the particulate files) until the day ends, and the writer gives
//! each reading its station's air and its flags (`outlier` among the day's
//! readings of its cell, `stuck` and `moved` with the readings stored in
//! the days before: days end in order, so the days before are stored)
//! before storing them. At most [`DAYS_AHEAD`] days are listed and not yet
//! ended, and [`BATCHES_IN_FLIGHT`] writes wait for the writer, which
//! bounds what is held. Raw readings are not assessed (they end in order
//! too, holding nothing).

pub mod archive;
pub mod country;
mod lines;
mod local;
mod parse;
mod state;
pub mod synth;

use crate::fetch::{self, Download, FetchPolicy};
use crate::ingest::{in_key_order, per_second};
use crate::progress;
use airq_core::air::Measured;
use airq_core::feed::{FeedStats, Rejection, TimeWindow};
use airq_core::quality;
use airq_core::store::ReadingStore;
use airq_core::{Reading, Timestamp};
use anyhow::Context as _;
use archive::{ArchiveFile, ArchiveSource, Listing};
use chrono::NaiveDate;
use country::Countries;
use indicatif::ProgressBar;
use local::{Opened, Skip};
use parse::{FileKind, Parsed};
use state::State;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Batches collected ahead of the writer: one being written, one ready.
const BATCHES_IN_FLIGHT: usize = 2;

/// Days listed and not yet ended, at most: a day's readings (daily
/// resolution, one per sensor) and its stations' air are held until it
/// ends, and a day ends after the days before it.
pub const DAYS_AHEAD: usize = 4;

/// The T/RH sensor types whose files a daily backfill reads for the
/// stations' humidity and temperature, by default: those of the
/// network's sensors that measure a relative humidity.
pub const DEFAULT_AIR_TYPES: &str = "dht22,bme280,htu21d,sht11,sht15,sht30,sht31,sht35,sht85";

/// Read buffer of a file on disk.
const READ_BUFFER: usize = 64 << 10;

/// How a day's readings are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Resolution {
    /// One reading per sensor per UTC day: the day's mean of P1 and P2,
    /// stamped 23:59:59 UTC.
    Daily,
    /// Every measurement as its own reading, at its own time.
    Raw,
}

impl Resolution {
    pub fn name(self) -> &'static str {
        match self {
            Resolution::Daily => "daily",
            Resolution::Raw => "raw",
        }
    }
}

/// The sensor types to read, by the archive's file names (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeFilter {
    /// Every per-sensor file; those without P1/P2 columns are skipped once
    /// read (so over HTTP they are downloaded first).
    All,
    Only(BTreeSet<String>),
}

impl TypeFilter {
    /// `all`, or a comma-separated list of type names (any case).
    pub fn parse(s: &str) -> Result<TypeFilter, String> {
        let mut only = BTreeSet::new();
        for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let t = t.to_ascii_lowercase();
            if t == "all" {
                return Ok(TypeFilter::All);
            }
            if t.len() > 32
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                return Err(format!(
                    "{t:?} is not a sensor type as the archive names them (sds011, sps30, …)"
                ));
            }
            only.insert(t);
        }
        if only.is_empty() {
            return Err("no sensor type: give a list such as sds011,sps30, or all".into());
        }
        Ok(TypeFilter::Only(only))
    }

    /// The types of both filters.
    #[must_use]
    pub fn and(&self, other: &TypeFilter) -> TypeFilter {
        match (self, other) {
            (TypeFilter::Only(a), TypeFilter::Only(b)) => {
                TypeFilter::Only(a.union(b).cloned().collect())
            }
            _ => TypeFilter::All,
        }
    }

    pub fn wants(&self, sensor_type: &str) -> bool {
        match self {
            TypeFilter::All => true,
            TypeFilter::Only(types) => types.contains(sensor_type),
        }
    }
}

/// `--air-types`: the T/RH sensor types read for the stations' air, or
/// none (`none`: every daily mean is then `no_humidity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AirTypes(pub Option<TypeFilter>);

impl AirTypes {
    pub fn parse(s: &str) -> Result<AirTypes, String> {
        if s.trim().eq_ignore_ascii_case("none") {
            return Ok(AirTypes(None));
        }
        TypeFilter::parse(s).map(|t| AirTypes(Some(t)))
    }
}

impl fmt::Display for TypeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeFilter::All => f.write_str("all"),
            TypeFilter::Only(types) => {
                let list: Vec<&str> = types.iter().map(String::as_str).collect();
                f.write_str(&list.join(","))
            }
        }
    }
}

/// A reading on its way to the store, with the number of measurements it
/// averages (1 for a raw row).
#[derive(Debug, Clone, PartialEq)]
pub struct Backfilled {
    pub reading: Reading,
    /// Measurements averaged into `reading`. The store has no column for it
    /// yet: the writer counts it and drops it at the store port (see
    /// `write`, "SAMPLES").
    pub samples: u64,
}

/// One backfill run, as configured.
#[derive(Debug, Clone)]
pub struct Plan {
    pub source: ArchiveSource,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub types: TypeFilter,
    /// Read beside `types` at daily resolution, for the stations' air.
    pub air_types: AirTypes,
    pub resolution: Resolution,
    pub concurrency: usize,
    pub policy: FetchPolicy,
    pub batch_size: usize,
    /// The record of finished days.
    pub state: PathBuf,
    /// Redo finished days.
    pub force: bool,
    /// The store was created by this run (an embedded database that did not
    /// exist): a record of finished days cannot be about it.
    pub fresh_store: bool,
    /// The instant timestamps are checked against (the live feed's window).
    pub now: Timestamp,
}

impl Plan {
    fn days(&self) -> Vec<NaiveDate> {
        self.from
            .iter_days()
            .take_while(|d| *d <= self.to)
            .collect()
    }
}

/// Files by what became of them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileCounts {
    /// Per-sensor CSV files of a requested type, listed.
    pub listed: u64,
    /// Read to the end (including broken ones and those without P1/P2).
    pub read: u64,
    /// Per-sensor CSV files of a type not asked for: not downloaded.
    pub not_requested: u64,
    /// Not per-sensor CSV files (`.zip`, `.gz`, `_indoor`, other names).
    pub other: u64,
    /// Read for its station's air: a T/RH sensor's (daily resolution).
    pub air: u64,
    /// Read, but with no P1/P2 column (BME280, DHT22, … at raw
    /// resolution; other sensors), and so not used.
    pub no_particulates: u64,
    /// Read, but whose header lacks the columns a row needs.
    pub broken: u64,
    /// Could not be read (after the retries, over HTTP), or larger than
    /// [`archive::MAX_FILE_BYTES`].
    pub failed: u64,
    /// Not read from a directory: not a regular file inside it (see
    /// [`local`]), by reason. They do not hold their day back.
    pub skipped: BTreeMap<Skip, u64>,
    pub bytes: u64,
}

impl FileCounts {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// A day this run could not finish, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    pub day: NaiveDate,
    pub why: String,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub source: String,
    pub resolution: Resolution,
    pub types: TypeFilter,
    pub state: PathBuf,
    pub days_requested: u64,
    /// Finished by an earlier run, not done again.
    pub days_skipped: Vec<NaiveDate>,
    /// Finished now and recorded.
    pub days_done: Vec<NaiveDate>,
    pub days_incomplete: Vec<Incomplete>,
    pub files: FileCounts,
    /// Rows read (`entries`), accepted, rejected by reason.
    pub rows: FeedStats,
    pub stored: u64,
    /// Of those, how many were new, replaced or already stored as sent.
    pub written: airq_core::store::Written,
    /// Measurements the stored readings average (daily), or rows (raw).
    pub samples: u64,
    pub elapsed: Duration,
}

impl Summary {
    /// Fails when a day could not be finished, after the summary is shown.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.days_incomplete.is_empty() {
            return Ok(());
        }
        let days: Vec<String> = self
            .days_incomplete
            .iter()
            .map(|i| i.day.to_string())
            .collect();
        anyhow::bail!(
            "{} of {} days could not be finished ({}); they are not recorded as done, \
             and the next run tries them again",
            days.len(),
            self.days_requested,
            days.join(", ")
        )
    }

    /// Rows rejected, for every reason.
    pub fn rejected_total(&self) -> u64 {
        self.rows.rejected_total()
    }

    pub fn rejections_compact(&self) -> String {
        Rejection::ALL
            .iter()
            .map(|r| format!("{}={}", r.label(), self.rows.rejected(*r)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn log(&self) {
        tracing::info!(
            source = %self.source,
            resolution = self.resolution.name(),
            days_done = self.days_done.len(),
            days_skipped = self.days_skipped.len(),
            days_incomplete = self.days_incomplete.len(),
            files_read = self.files.read,
            files_failed = self.files.failed,
            files_skipped = self.files.skipped_total(),
            rows = self.rows.entries,
            stored = self.stored,
            new = self.written.new,
            replaced = self.written.replaced,
            already_stored = self.written.unchanged,
            samples = self.samples,
            rejected = self.rejected_total(),
            rejections = %self.rejections_compact(),
            elapsed_s = self.elapsed.as_secs_f64(),
            "backfill finished"
        );
    }
}

/// Up to a handful of days, then how many more.
fn day_list(days: &[NaiveDate]) -> String {
    const SHOWN: usize = 6;
    let mut out: Vec<String> = days.iter().take(SHOWN).map(|d| d.to_string()).collect();
    if days.len() > SHOWN {
        out.push(format!("… {} more", days.len() - SHOWN));
    }
    out.join(", ")
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = &self.files;
        let secs = self.elapsed.as_secs_f64();
        writeln!(f, "source:          {}", self.source)?;
        writeln!(
            f,
            "resolution:      {} (types: {})",
            self.resolution.name(),
            self.types
        )?;
        writeln!(f, "days requested:  {}", self.days_requested)?;
        writeln!(f, "days done:       {}", self.days_done.len())?;
        if self.days_skipped.is_empty() {
            writeln!(f, "days skipped:    0")?;
        } else {
            writeln!(
                f,
                "days skipped:    {} (already done, see {}; --force redoes them: {})",
                self.days_skipped.len(),
                self.state.display(),
                day_list(&self.days_skipped)
            )?;
        }
        writeln!(f, "days incomplete: {}", self.days_incomplete.len())?;
        for i in &self.days_incomplete {
            writeln!(f, "  {}: {}", i.day, i.why)?;
        }
        writeln!(
            f,
            "files listed:    {} of the types asked for",
            files.listed
        )?;
        writeln!(f, "files read:      {} ({} bytes)", files.read, files.bytes)?;
        writeln!(
            f,
            "  station air:       {} (T/RH sensors: the day's humidity and temperature)",
            files.air
        )?;
        writeln!(
            f,
            "  without P1/P2:     {} (not a particulate sensor: skipped)",
            files.no_particulates
        )?;
        writeln!(
            f,
            "  broken header:     {} (its rows count as malformed)",
            files.broken
        )?;
        writeln!(f, "files failed:    {}", files.failed)?;
        writeln!(
            f,
            "files skipped:   {} (not a regular file inside the source directory)",
            files.skipped_total()
        )?;
        if !files.skipped.is_empty() {
            for why in Skip::ALL {
                writeln!(
                    f,
                    "  {:<18} {}",
                    format!("{}:", why.label()),
                    files.skipped.get(&why).copied().unwrap_or(0)
                )?;
            }
        }
        writeln!(f, "files not read:  {}", files.not_requested + files.other)?;
        writeln!(f, "  other types:       {}", files.not_requested)?;
        writeln!(
            f,
            "  not sensor CSV:    {} (archives, indoor, other names)",
            files.other
        )?;
        writeln!(f, "rows read:       {}", self.rows.entries)?;
        writeln!(f, "rows accepted:   {}", self.rows.accepted)?;
        writeln!(
            f,
            "stored:          {}",
            crate::ingest::stored_line(&self.written)
        )?;
        if self.resolution == Resolution::Daily {
            let per = if self.stored > 0 {
                self.samples as f64 / self.stored as f64
            } else {
                0.0
            };
            writeln!(
                f,
                "measurements averaged: {} ({per:.1} per daily reading)",
                self.samples
            )?;
        }
        writeln!(f, "rejected:        {}", self.rejected_total())?;
        for why in Rejection::ALL {
            writeln!(
                f,
                "  {:<24} {}",
                format!("{}:", why.label()),
                self.rows.rejected(why)
            )?;
        }
        writeln!(f, "elapsed:         {secs:.3} s")?;
        writeln!(
            f,
            "rate:            {:.0} readings/s, {:.0} files/s, {:.0} rows/s",
            per_second(self.stored, self.elapsed),
            per_second(files.read, self.elapsed),
            per_second(self.rows.entries, self.elapsed)
        )
    }
}

// ---- the stages ----

/// From the lister and the file tasks to the collector.
enum Event {
    /// A day's listing, or why it could not be listed. Sent before any of
    /// the day's files.
    Listed {
        day: NaiveDate,
        listing: Result<Listing, String>,
        /// The day's place among the [`DAYS_AHEAD`], given back when it
        /// ends.
        ahead: OwnedSemaphorePermit,
    },
    File {
        day: NaiveDate,
        bytes: u64,
        outcome: Outcome,
    },
}

/// What became of one file.
enum Outcome {
    Read(Parsed),
    /// Not a regular file inside the source directory: not read, and its
    /// day is not held back.
    Skipped(Skip),
    /// Could not be read: its day is not done.
    Failed(String),
}

/// From the collector to the writer.
enum Write {
    Batch(Vec<Backfilled>),
    /// A whole day of daily means and its stations' air, to assess and
    /// store.
    Day {
        readings: Vec<Backfilled>,
        air: Vec<Measured>,
    },
    /// Every reading of `day` is in the batches before this.
    DayEnd {
        day: NaiveDate,
        complete: bool,
    },
}

/// The progress bar and the counts it shows. Its position is in
/// thousandths of a day, so that the ETA moves file by file.
#[derive(Clone)]
struct Meter {
    bar: ProgressBar,
    days: u64,
    days_ended: Arc<AtomicU64>,
    files: Arc<AtomicU64>,
    stored: Arc<AtomicU64>,
}

impl Meter {
    fn new(days: u64) -> Meter {
        Meter {
            bar: progress::per_mille("backfill", days * 1000),
            days,
            days_ended: Arc::default(),
            files: Arc::default(),
            stored: Arc::default(),
        }
    }

    fn refresh(&self) {
        self.bar.set_message(format!(
            "days {}/{} · files {} · readings {}",
            self.days_ended.load(Ordering::Relaxed),
            self.days,
            self.files.load(Ordering::Relaxed),
            self.stored.load(Ordering::Relaxed)
        ));
    }
}

/// A day being collected.
struct DayTally {
    files: u64,
    files_left: u64,
    failures: Vec<String>,
    /// The bar's position for this day, in thousandths.
    shown: u64,
    /// Daily resolution: the day's readings and its stations' air, held
    /// until the day ends (see the module).
    readings: Vec<Backfilled>,
    air: Vec<Measured>,
    /// Dropped when the day ends, letting the lister list another.
    _ahead: OwnedSemaphorePermit,
}

struct Collected {
    files: FileCounts,
    rows: FeedStats,
    incomplete: Vec<Incomplete>,
}

/// The collector's state between events.
struct Collector {
    writes: mpsc::Sender<Write>,
    batch_size: usize,
    /// Hold each day's readings for the writer to assess (daily
    /// resolution), rather than batching them as they come.
    assess: bool,
    meter: Meter,
    out: Collected,
    batch: Vec<Backfilled>,
}

/// The writer stopped (it failed, and says why).
struct WriterGone;

impl Collector {
    async fn send(&self, write: Write) -> Result<(), WriterGone> {
        self.writes.send(write).await.map_err(|_| WriterGone)
    }

    /// Takes in one file's readings.
    async fn readings(&mut self, tally: &mut DayTally, parsed: Parsed) -> Result<(), WriterGone> {
        tally.air.extend(parsed.air);
        if self.assess {
            tally.readings.extend(parsed.readings);
            return Ok(());
        }
        for r in parsed.readings {
            self.batch.push(r);
            if self.batch.len() >= self.batch_size {
                let full = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size));
                self.send(Write::Batch(full)).await?;
            }
        }
        Ok(())
    }

    /// Sends an ended day on: its readings (the day's, or the last partial
    /// batch), then its marker.
    async fn end(&mut self, day: NaiveDate, tally: DayTally) -> Result<(), WriterGone> {
        if self.assess {
            if !tally.readings.is_empty() {
                let (readings, air) = (tally.readings, tally.air);
                self.send(Write::Day { readings, air }).await?;
            }
        } else if !self.batch.is_empty() {
            let rest = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size));
            self.send(Write::Batch(rest)).await?;
        }
        let failures = tally.failures;
        let complete = failures.is_empty();
        if !complete {
            let first = failures.first().cloned().unwrap_or_default();
            let why = if failures.len() == 1 {
                first
            } else {
                format!("{} files failed; the first: {first}", failures.len())
            };
            tracing::warn!(%day, %why, "the day is not complete");
            self.out.incomplete.push(Incomplete { day, why });
        }
        self.send(Write::DayEnd { day, complete }).await?;
        self.meter.bar.inc(1000 - tally.shown);
        self.meter.days_ended.fetch_add(1, Ordering::Relaxed);
        self.meter.refresh();
        Ok(())
    }
}

/// Gathers file outcomes into batches (or days) and counts; ends each day
/// once its files and every earlier day's are in.
async fn collect(
    mut events: mpsc::Receiver<Event>,
    writes: mpsc::Sender<Write>,
    batch_size: usize,
    assess: bool,
    meter: Meter,
) -> Collected {
    let mut c = Collector {
        writes,
        batch_size,
        assess,
        meter,
        out: Collected {
            files: FileCounts::default(),
            rows: FeedStats::default(),
            incomplete: Vec::new(),
        },
        batch: Vec::with_capacity(batch_size),
    };
    let mut days: BTreeMap<NaiveDate, DayTally> = BTreeMap::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Listed {
                day,
                listing,
                ahead,
            } => {
                let mut tally = DayTally {
                    files: 0,
                    files_left: 0,
                    failures: Vec::new(),
                    shown: 0,
                    readings: Vec::new(),
                    air: Vec::new(),
                    _ahead: ahead,
                };
                match listing {
                    Err(why) => tally.failures.push(why),
                    Ok(listing) => {
                        let n = listing.files.len() as u64;
                        c.out.files.listed += n;
                        c.out.files.not_requested += listing.not_requested;
                        c.out.files.other += listing.other;
                        tally.files = n;
                        tally.files_left = n;
                    }
                }
                days.insert(day, tally);
            }
            Event::File {
                day,
                bytes,
                outcome,
            } => {
                let Some(tally) = days.get_mut(&day) else {
                    continue;
                };
                match outcome {
                    Outcome::Read(parsed) => {
                        let files = &mut c.out.files;
                        files.read += 1;
                        files.bytes += bytes;
                        match parsed.kind {
                            FileKind::Read => {}
                            FileKind::Air => files.air += 1,
                            FileKind::NoParticulates => files.no_particulates += 1,
                            FileKind::BrokenHeader => files.broken += 1,
                        }
                        c.out.rows.merge(&parsed.stats);
                        if c.readings(tally, parsed).await.is_err() {
                            return c.out;
                        }
                    }
                    Outcome::Skipped(why) => *c.out.files.skipped.entry(why).or_default() += 1,
                    Outcome::Failed(why) => {
                        c.out.files.failed += 1;
                        tally.failures.push(why);
                    }
                }
                c.meter.files.fetch_add(1, Ordering::Relaxed);
                tally.files_left -= 1;
                let position = (tally.files - tally.files_left) * 1000 / tally.files;
                c.meter.bar.inc(position - tally.shown);
                tally.shown = position;
                c.meter.refresh();
            }
        }
        // Days end in order: the first one still reading holds back the
        // days after it (the lister lists in order, so no earlier day
        // can come later).
        while let Some(first) = days.first_entry() {
            if first.get().files_left > 0 {
                break;
            }
            let (day, tally) = first.remove_entry();
            if c.end(day, tally).await.is_err() {
                return c.out;
            }
        }
    }
    if !c.batch.is_empty() {
        let _ = c.writes.send(Write::Batch(c.batch)).await;
    }
    c.out
}

struct Stored {
    stored: u64,
    written: airq_core::store::Written,
    samples: u64,
    days_done: Vec<NaiveDate>,
}

impl Stored {
    /// Stores one batch.
    async fn put(
        &mut self,
        store: &dyn ReadingStore,
        batch: Vec<Backfilled>,
        meter: &Meter,
    ) -> anyhow::Result<()> {
        let n = batch.len() as u64;
        // A daily mean carries its count in `Reading::samples`
        // (stored with it); the sum is for the summary.
        let samples: u64 = batch.iter().map(|b| b.samples).sum();
        let readings: Vec<Reading> = batch.into_iter().map(|b| b.reading).collect();
        self.written += store
            .put_batch(in_key_order(readings, |r| r))
            .await
            .with_context(|| format!("storing a batch after {} readings", self.stored))?;
        self.stored += n;
        self.samples += samples;
        meter.stored.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

/// Gives a day's means their stations' air and their flags, as the nightly
/// ingestion gives a feed's ([`crate::ingest`]): surveyed together, with
/// the sensors' readings stored in the days before.
async fn assess(
    store: &dyn ReadingStore,
    readings: &mut [Backfilled],
    air: Vec<Measured>,
) -> anyhow::Result<()> {
    let mut survey = quality::Survey::new(airq_core::Resolution::Day);
    for b in readings.iter() {
        survey.reading(&b.reading);
    }
    for m in air {
        survey.air(m);
    }
    crate::ingest::learn_history(store, &mut survey).await?;
    let assessment = survey.finish();
    for b in readings.iter_mut() {
        assessment.complete(&mut b.reading);
    }
    Ok(())
}

/// Stores the batches; records each day whose marker it reaches complete.
async fn write(
    store: Arc<dyn ReadingStore>,
    mut writes: mpsc::Receiver<Write>,
    mut state: State,
    resolution: Resolution,
    types: TypeFilter,
    batch_size: usize,
    meter: Meter,
) -> anyhow::Result<Stored> {
    let mut out = Stored {
        stored: 0,
        written: Default::default(),
        samples: 0,
        days_done: Vec::new(),
    };
    while let Some(write) = writes.recv().await {
        match write {
            Write::Batch(batch) => out.put(&*store, batch, &meter).await?,
            Write::Day { mut readings, air } => {
                assess(&*store, &mut readings, air).await?;
                while !readings.is_empty() {
                    let rest = readings.split_off(readings.len().min(batch_size));
                    out.put(&*store, readings, &meter).await?;
                    readings = rest;
                }
            }
            Write::DayEnd { day, complete } => {
                if complete {
                    let types = types.clone();
                    state = tokio::task::spawn_blocking(move || {
                        state.mark_done(day, resolution, &types).map(|()| state)
                    })
                    .await
                    .context("the state thread failed")??;
                    out.days_done.push(day);
                }
            }
        }
    }
    Ok(out)
}

/// What every file task shares.
#[derive(Clone)]
struct Shared {
    source: ArchiveSource,
    client: Option<reqwest::Client>,
    policy: FetchPolicy,
    countries: Arc<Countries>,
    resolution: Resolution,
    /// `--air-types` (daily resolution).
    air: Option<TypeFilter>,
    window: TimeWindow,
}

/// What reading one file gave, before it is told to the collector.
enum Got {
    Parsed(u64, Parsed),
    Skipped(Skip),
}

/// The file a directory source names, opened and read within the bounds:
/// only a regular file inside the source ([`local::open`]), at most
/// [`archive::MAX_FILE_BYTES`], as over HTTP.
fn read_local(root: &std::path::Path, file: &ArchiveFile, shared: &Shared) -> anyhow::Result<Got> {
    let path = root
        .join(file.day.format("%Y-%m-%d").to_string())
        .join(&file.name);
    let (f, len) = match local::open(root, &path)? {
        Opened::File { file, len } => (file, len),
        Opened::Skipped(why) => return Ok(Got::Skipped(why)),
    };
    let limit = archive::MAX_FILE_BYTES as u64;
    let too_large = || {
        anyhow::anyhow!(
            "cannot read {}: larger than {} MiB, the limit on an archive file; \
             refusing to read further",
            path.display(),
            limit >> 20
        )
    };
    if len > limit {
        return Err(too_large());
    }
    // Capped as it is read too: the file may have grown since.
    let mut capped = f.take(limit + 1);
    let parsed = parse::parse(
        std::io::BufReader::with_capacity(READ_BUFFER, &mut capped),
        file,
        context(shared),
    )
    .with_context(|| format!("cannot read {}", path.display()))?;
    let read = limit + 1 - capped.limit();
    if read > limit {
        return Err(too_large());
    }
    Ok(Got::Parsed(read, parsed))
}

/// Reads one file: `(bytes, outcome)`, the error as text for the summary.
async fn read_file(shared: &Shared, file: ArchiveFile) -> (u64, Outcome) {
    let name = file.name.clone();
    let result: anyhow::Result<Got> = async {
        match &shared.source {
            ArchiveSource::Dir(root) => {
                let (root, shared) = (root.clone(), shared.clone());
                tokio::task::spawn_blocking(move || read_local(&root, &file, &shared))
                    .await
                    .context("the parser thread failed")?
            }
            ArchiveSource::Http(base) => {
                let client = shared.client.as_ref().context("no HTTP client")?;
                let url = base
                    .join(&format!("{}/", file.day.format("%Y-%m-%d")))
                    .and_then(|day| day.join(&file.name))
                    .with_context(|| format!("cannot make the URL of {}", file.name))?;
                let download = Download {
                    limit: archive::MAX_FILE_BYTES,
                    progress: false,
                };
                let body = fetch::get(client, &url, &shared.policy, download).await?;
                let shared = shared.clone();
                tokio::task::spawn_blocking(move || {
                    let parsed = parse::parse(&body[..], &file, context(&shared))
                        .with_context(|| format!("cannot read {url}"))?;
                    Ok(Got::Parsed(body.len() as u64, parsed))
                })
                .await
                .context("the parser thread failed")?
            }
        }
    }
    .await;
    match result {
        Ok(Got::Parsed(bytes, parsed)) => {
            if parsed.kind == FileKind::BrokenHeader {
                // Read and counted (its rows as malformed), so its day can
                // finish; said here so that a page of HTML served in place
                // of a file does not pass unseen.
                tracing::warn!(
                    file = %name,
                    "no sensor_id, sensor_type, lat, lon and timestamp columns: \
                     its rows count as malformed"
                );
            }
            if parsed.long_lines > 0 {
                tracing::warn!(
                    file = %name,
                    lines = parsed.long_lines,
                    max_bytes = lines::MAX_LINE_BYTES,
                    "lines longer than the limit: each counts as a malformed row"
                );
            }
            let duplicates = parsed.stats.rejected(Rejection::Duplicate);
            if duplicates > 0 {
                tracing::debug!(
                    file = %name,
                    rows = duplicates,
                    "rows at a second an earlier row had: the first is kept"
                );
            }
            (bytes, Outcome::Read(parsed))
        }
        Ok(Got::Skipped(why)) => {
            tracing::warn!(
                file = %name,
                reason = why.label(),
                "not a regular file inside the source directory: skipped"
            );
            (0, Outcome::Skipped(why))
        }
        Err(e) => {
            tracing::warn!(file = %name, error = format!("{e:#}"), "file failed");
            (0, Outcome::Failed(format!("{e:#}")))
        }
    }
}

fn context(shared: &Shared) -> parse::Context<'_> {
    parse::Context {
        countries: &shared.countries,
        resolution: shared.resolution,
        air: shared.air.as_ref(),
        window: shared.window,
    }
}

/// Runs the backfill `plan` describes into `store`.
pub async fn run(store: Arc<dyn ReadingStore>, plan: Plan) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let all_days = plan.days();
    let state = match State::load(&plan.state) {
        Ok(s) if plan.fresh_store && s.days_recorded() > 0 => {
            tracing::warn!(
                state = %plan.state.display(),
                days = s.days_recorded(),
                "the store is new but the state file records finished days: \
                 they cannot be in this store, so every day is done again"
            );
            State::empty(&plan.state)
        }
        Ok(s) => s,
        // Redoing everything needs no record of what was done.
        Err(e) if plan.force => {
            tracing::warn!(error = format!("{e:#}"), "starting a new state file");
            State::empty(&plan.state)
        }
        Err(e) => return Err(e),
    };
    let (todo, skipped): (Vec<NaiveDate>, Vec<NaiveDate>) = all_days
        .iter()
        .partition(|d| plan.force || !state.is_done(**d, plan.resolution, &plan.types));
    if !skipped.is_empty() {
        tracing::info!(
            days = skipped.len(),
            first = %skipped[0],
            last = %skipped[skipped.len() - 1],
            state = %state.path().display(),
            "skipping days already backfilled (--force redoes them)"
        );
    }
    tracing::info!(
        source = %plan.source,
        from = %plan.from,
        to = %plan.to,
        days = todo.len(),
        types = %plan.types,
        resolution = plan.resolution.name(),
        "backfilling"
    );

    // A directory is read by its canonical path: a file is read only if it
    // resolves inside it (see `local`).
    let source = match &plan.source {
        ArchiveSource::Dir(root) => {
            let root = root.clone();
            let canonical = tokio::task::spawn_blocking(move || {
                std::fs::canonicalize(&root)
                    .with_context(|| format!("cannot open the source directory {}", root.display()))
            })
            .await
            .context("the listing thread failed")??;
            ArchiveSource::Dir(canonical)
        }
        http => http.clone(),
    };
    let shared = Arc::new(Shared {
        source,
        client: match plan.source {
            ArchiveSource::Http(_) => Some(fetch::http_client(&plan.policy)?),
            ArchiveSource::Dir(_) => None,
        },
        policy: plan.policy.clone(),
        countries: Arc::new(Countries::load()?),
        resolution: plan.resolution,
        air: plan.air_types.0.clone(),
        window: TimeWindow::at(plan.now),
    });
    let meter = Meter::new(todo.len() as u64);
    meter.refresh();
    let concurrency = plan.concurrency.max(1);
    let (events_tx, events_rx) = mpsc::channel::<Event>(concurrency * 2);
    let (writes_tx, writes_rx) = mpsc::channel::<Write>(BATCHES_IN_FLIGHT);
    let writer = tokio::spawn(write(
        store.clone(),
        writes_rx,
        state,
        plan.resolution,
        plan.types.clone(),
        plan.batch_size.max(1),
        meter.clone(),
    ));
    let daily = plan.resolution == Resolution::Daily;
    let collector = tokio::spawn(collect(
        events_rx,
        writes_tx,
        plan.batch_size.max(1),
        daily,
        meter.clone(),
    ));
    // A daily backfill reads the stations' air beside the particulates.
    let listed_types = match (&plan.air_types.0, daily) {
        (Some(air), true) => plan.types.and(air),
        _ => plan.types.clone(),
    };
    let days_ahead = Arc::new(Semaphore::new(DAYS_AHEAD));

    let slots = Arc::new(Semaphore::new(concurrency));
    'days: for day in todo {
        let Ok(ahead) = days_ahead.clone().acquire_owned().await else {
            break;
        };
        let listed = archive::list_day(
            &shared.source,
            shared.client.as_ref(),
            &shared.policy,
            day,
            &listed_types,
        )
        .await;
        let files = match &listed {
            Ok(l) => l.files.clone(),
            // Logged by the collector, with the other days not finished.
            Err(_) => Vec::new(),
        };
        let listing = listed.map_err(|e| format!("cannot list the day: {e:#}"));
        if events_tx
            .send(Event::Listed {
                day,
                listing,
                ahead,
            })
            .await
            .is_err()
        {
            // The collector stopped: the writer failed, and says why.
            break;
        }
        for file in files {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break 'days;
            };
            let (shared, events) = (shared.clone(), events_tx.clone());
            if events.is_closed() {
                break 'days;
            }
            tokio::spawn(async move {
                // A file task that panicked must still report its file:
                // days end in order, so a lost event would hold every
                // later day, and the run, for ever.
                let name = file.name.clone();
                let read = std::panic::AssertUnwindSafe(read_file(&shared, file));
                let (bytes, outcome) =
                    futures::FutureExt::catch_unwind(read)
                        .await
                        .unwrap_or_else(|_| {
                            tracing::error!(file = %name, "reading the file panicked");
                            (0, Outcome::Failed(format!("{name}: reading it panicked")))
                        });
                let _ = events
                    .send(Event::File {
                        day,
                        bytes,
                        outcome,
                    })
                    .await;
                drop(slot);
            });
        }
    }
    drop(events_tx);
    let collected = collector.await.context("the collector failed")?;
    let written = writer.await.context("the writer failed")??;
    meter.bar.finish_and_clear();
    // Both resolutions store into the `readings` table, the daily series.
    crate::ingest::refresh_segments(&*store).await;

    Ok(Summary {
        source: plan.source.to_string(),
        resolution: plan.resolution,
        types: plan.types.clone(),
        state: plan.state.clone(),
        days_requested: all_days.len() as u64,
        days_skipped: skipped,
        days_done: written.days_done,
        days_incomplete: collected.incomplete,
        files: collected.files,
        rows: collected.rows,
        stored: written.stored,
        written: written.written,
        samples: written.samples,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_lists() {
        assert_eq!(TypeFilter::parse("all"), Ok(TypeFilter::All));
        assert_eq!(TypeFilter::parse("sds011,ALL"), Ok(TypeFilter::All));
        let t = TypeFilter::parse(" SDS011 , sps30,,").expect("a list");
        assert!(t.wants("sds011") && t.wants("sps30") && !t.wants("bme280"));
        assert_eq!(t.to_string(), "sds011,sps30");
        assert!(TypeFilter::parse("").is_err());
        assert!(TypeFilter::parse("sds 011").is_err());
        assert!(TypeFilter::parse("../x").is_err());
    }

    #[test]
    fn daily_means_are_stamped_at_the_days_last_second() {
        let day = NaiveDate::from_ymd_opt(2025, 10, 15).expect("a date");
        assert_eq!(
            parse::daily_timestamp(day).to_string(),
            "2025-10-15 23:59:59"
        );
    }
}

//! The ingestion benchmarks: parse + validate + indices + store of one
//! document held in memory, timed on fresh databases (the document is
//! fetched or generated once, before any timing); and the live tier's day
//! of 5-minute feeds, generated beside the ingestion or read from a
//! directory of feed files.

use crate::cli::BenchArgs;
use crate::fetch::{self, FeedFile, FetchPolicy, Source};
use crate::ingest;
use crate::synth::{self, Generator, Template};
use airq_core::store::ReadingStore;
use airq_core::{Resolution, Timestamp};
use airq_embedded::{Db, SqliteReadingStore, PRUNE_BATCH};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes a synthetic entry takes, a little over the real average, to reserve
/// the document's buffer once.
const SYNTH_ENTRY_BYTES: u64 = 360;

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.shape.resolution == Resolution::FiveMin {
        return run_live(&args).await;
    }
    let (doc, what) = match &args.source {
        Some(source) => {
            let source = Source::parse(source)?;
            let policy = FetchPolicy {
                retries: 2,
                retry_base: Duration::from_secs(1),
                timeout: Duration::from_secs(600),
            };
            (fetch::fetch(&source, &policy).await?, source.to_string())
        }
        None => {
            let shape = args.shape.clone();
            let what = format!(
                "synthetic: {} days x {} sensors x {} per day, seed {}",
                shape.days, shape.sensors, shape.per_day, shape.seed
            );
            tracing::info!("generating the document in memory ({what})");
            let doc = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
                let template = Template::load(&shape.template)?;
                let generator = Generator::new(template, &shape)?;
                let reserve = shape.readings().saturating_mul(SYNTH_ENTRY_BYTES);
                let mut doc = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
                synth::write_feed(generator, &mut doc, |_| {})?;
                doc.shrink_to_fit();
                Ok(doc)
            })
            .await
            .context("the generator thread failed")??;
            (doc, what)
        }
    };
    let doc = Arc::new(doc);
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let batch_size = args.store.batch_size as usize;
    println!("document:   {what}");
    println!("bytes:      {}", doc.len());
    println!("batch size: {batch_size}");

    let mut rates = Vec::new();
    let mut secs = Vec::new();
    for run in 1..=args.runs {
        let path = dir.join(format!("airq-bench-{}-{run}.db", std::process::id()));
        remove_db(&path);
        let store = open_embedded(&path).await?;
        let processed = ingest::process(store, doc.clone(), batch_size).await;
        let db_bytes = db_size(&path);
        remove_db(&path);
        let processed = processed?;
        let s = &processed.stats;
        println!(
            "run {run}: {} entries, {} stored, {} rejected in {:.3} s = {:.0} readings/s (database {} MiB)",
            s.entries,
            processed.stored,
            s.rejected_total(),
            processed.elapsed.as_secs_f64(),
            processed.rate(),
            db_bytes >> 20,
        );
        rates.push(processed.rate());
        secs.push(processed.elapsed.as_secs_f64());
    }
    let median_secs = median(&mut secs);
    println!(
        "median:     {:.3} s, {:.0} readings/s over {} runs",
        median_secs,
        median(&mut rates),
        args.runs
    );
    if let Some(kib) = peak_rss_kib() {
        println!("peak RSS:   {} MiB", kib >> 10);
    }
    Ok(())
}

/// A 5-minute feed to ingest: generated, or a file to open when its turn
/// comes (its opening is timed with it, as the live schedule's is).
enum Feed {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// The 5-minute feed files of `dir` ([`synth::feed_file_name`]) by the end
/// of their window, oldest first; other files are left alone.
fn feed_files(dir: &Path) -> anyhow::Result<Vec<(i64, PathBuf)>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "with --resolution 5min, --source is a directory of 5-minute feed files \
             (`airq-master synth --resolution 5min --out DIR`): cannot read {}",
            dir.display()
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        if let Some(end) = entry.file_name().to_str().and_then(synth::feed_file_end) {
            files.push((end, entry.path()));
        }
    }
    if files.is_empty() {
        anyhow::bail!(
            "{} holds no 5-minute feed files (named like 2024-01-01T00-05.json)",
            dir.display()
        );
    }
    files.sort();
    Ok(files)
}

/// The live tier's benchmark: a day (or `--days`) of 5-minute feeds for
/// `--sensors` sensors, generated one feed at a time (beside the
/// ingestion, on the other core), or with `--source DIR` read from the
/// feed files of a directory (`airq-master synth --resolution 5min --out
/// DIR`) as the live schedule reads a spooled download, nothing running
/// beside it; each ingested as the live schedule does (parse, validate,
/// store the 5-minute readings, roll up their hours, recompute the
/// indices), on one fresh database. Reports each feed's ingestion time
/// (median, p90, p99, max), the store's growth, and what deleting half of
/// it by retention costs.
async fn run_live(args: &BenchArgs) -> anyhow::Result<()> {
    let shape = args.shape.clone();
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let batch_size = args.store.batch_size as usize;
    // Before the database exists: a bad directory leaves nothing behind.
    let files = match &args.source {
        Some(source) => Some((source, feed_files(Path::new(source))?)),
        None => None,
    };
    let path = dir.join(format!("airq-bench-live-{}.db", std::process::id()));
    remove_db(&path);
    // Declared before the store, so dropped after it.
    let _scratch = Scratch(path.clone());
    let store = open_embedded(&path).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(i64, Feed)>(2);
    let producer = match files {
        None => {
            println!(
                "feeds:      {} days x 288 five-minute feeds x {} sensors (gaps {}), seed {}, generated beside the ingestion",
                shape.days, shape.sensors, shape.gaps, shape.seed
            );
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let generator = Generator::new(Template::load(&shape.template)?, &shape)?;
                synth::five_minute_feeds(generator, |end, doc| {
                    tx.blocking_send((end, Feed::Bytes(doc.to_vec())))
                        .map_err(|_| anyhow::anyhow!("the benchmark stopped"))
                })?;
                Ok(())
            })
        }
        Some((source, files)) => {
            println!(
                "feeds:      {} five-minute feed files from {source}",
                files.len()
            );
            tokio::spawn(async move {
                for (end, file) in files {
                    tx.send((end, Feed::File(file)))
                        .await
                        .map_err(|_| anyhow::anyhow!("the benchmark stopped"))?;
                }
                Ok(())
            })
        }
    };
    println!("batch size: {batch_size}");
    let mut secs = Vec::new();
    let mut stored = 0u64;
    let (mut first, mut last) = (None, 0i64);
    let started = Instant::now();
    // As the live schedule keeps it between feeds.
    let mut carry = airq_core::quality::Carry::new(Resolution::FiveMin);
    let ingested = async {
        while let Some((end, feed_of)) = rx.recv().await {
            let feed = Instant::now();
            let document = match feed_of {
                Feed::Bytes(doc) => ingest::Document::Bytes(Arc::new(doc)),
                Feed::File(path) => {
                    let file = tokio::task::spawn_blocking(move || {
                        FeedFile::open(&path, fetch::MAX_FEED_BYTES)
                    })
                    .await
                    .context("the reading thread failed")??;
                    ingest::Document::File(file)
                }
            };
            let processed = ingest::process_document_at(
                store.clone(),
                document,
                batch_size,
                Resolution::FiveMin,
                Timestamp(end),
                Some(&mut carry),
            )
            .await?;
            secs.push(feed.elapsed().as_secs_f64());
            stored += processed.stored;
            first.get_or_insert(end);
            last = end;
            if secs.len() % 48 == 0 {
                tracing::info!(
                    feeds = secs.len(),
                    readings = stored,
                    "ingesting 5-minute feeds"
                );
            }
        }
        anyhow::Ok(())
    }
    .await;
    // A feed that failed stops the producer too: its next send finds no
    // receiver (instead of waiting on a full channel for ever).
    drop(rx);
    let produced = producer
        .await
        .context("the feed producer failed")
        .and_then(|p| p);
    ingested.and(produced)?;
    let total = started.elapsed();
    let db_bytes = db_size(&path);
    let feeds = secs.len();
    let quantile = |q: f64| -> f64 {
        let mut v = secs.clone();
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "ingested:   {feeds} feeds, {stored} readings in {:.1} s",
        total.as_secs_f64()
    );
    println!(
        "per feed:   median {:.3} s, p90 {:.3} s, p99 {:.3} s, max {:.3} s",
        median(&mut secs.clone()),
        quantile(0.90),
        quantile(0.99),
        quantile(1.0)
    );
    println!(
        "store:      {} MiB, {:.0} bytes per 5-minute reading (with the hourly series)",
        db_bytes >> 20,
        db_bytes as f64 / stored.max(1) as f64
    );
    // Retention: the first half of what was ingested.
    if let Some(first) = first {
        let before = Timestamp(first + (last - first) / 2);
        let prune = Instant::now();
        let deleted = store.prune(Resolution::FiveMin, before).await?;
        let took = prune.elapsed();
        let batches = deleted.div_ceil(PRUNE_BATCH as u64).max(1);
        println!(
            "retention:  {deleted} five-minute readings deleted in {:.3} s, {batches} batches of at most {PRUNE_BATCH}, {:.1} ms per batch",
            took.as_secs_f64(),
            took.as_secs_f64() * 1000.0 / batches as f64
        );
    }
    if let Some(kib) = peak_rss_kib() {
        println!("peak RSS:   {} MiB", kib >> 10);
    }
    Ok(())
}

/// A benchmark's database, removed with its sidecar files when this is
/// dropped: at the end of the run and on any error on the way.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_db(&self.0);
    }
}

async fn open_embedded(path: &Path) -> anyhow::Result<Arc<dyn ReadingStore>> {
    let owned = path.to_path_buf();
    let db = tokio::task::spawn_blocking(move || Db::open(owned))
        .await
        .context("the store-opening thread failed")?
        .with_context(|| format!("cannot create the store {}", path.display()))?;
    Ok(Arc::new(SqliteReadingStore::new(db)))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn sidecars(path: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    [path.to_path_buf(), with("-wal"), with("-shm")]
}

fn remove_db(path: &Path) {
    let _ = Db::remove_files(path);
}

fn db_size(path: &Path) -> u64 {
    sidecars(path)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// The process's peak resident set (Linux `VmHWM`).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}

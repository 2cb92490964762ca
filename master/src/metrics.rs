//! The ingestion's Prometheus metrics, served by `schedule
//! --metrics-listen` (see `airq_cli::metrics`). Elsewhere (`ingest`,
//! `synth`, `bench-ingest`) no recorder is installed and every call here
//! records nowhere.
//!
//! Counters are registered at zero when metrics start, so a scrape shows
//! them before the first run. The timestamp gauges appear with the first
//! run of the process: `airq_ingest_last_success_timestamp_seconds` is
//! absent until one succeeds (alert on `absent()` as well as on age).

use airq_core::feed::{FeedStats, Rejection};
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

pub const LAST_RUN_START: &str = "airq_ingest_last_run_start_timestamp_seconds";
pub const LAST_RUN_END: &str = "airq_ingest_last_run_end_timestamp_seconds";
pub const LAST_SUCCESS: &str = "airq_ingest_last_success_timestamp_seconds";
/// How long the last run that ended took: what a dashboard shows (end
/// minus start goes negative while a run is under way).
pub const LAST_RUN_DURATION: &str = "airq_ingest_last_run_duration_seconds";
/// Seconds since [`LAST_SUCCESS`], kept current between runs (every
/// [`AGE_EVERY`]): what an alarm compares with a threshold where its
/// metrics have no clock (CloudWatch alarms on metrics scraped by the
/// agent). Absent, like [`LAST_SUCCESS`], until a run succeeds.
pub const LAST_SUCCESS_AGE: &str = "airq_ingest_last_success_age_seconds";
pub const AGE_EVERY: Duration = Duration::from_secs(15);
pub const RUNS: &str = "airq_ingest_runs_total";
pub const READINGS_STORED: &str = "airq_ingest_readings_stored_total";
pub const REJECTIONS: &str = "airq_ingest_rejections_total";
pub const FETCHED_BYTES: &str = "airq_ingest_fetched_bytes_total";
pub const RUN_DURATION: &str = "airq_ingest_run_duration_seconds";
/// Readings of the live tier deleted by retention, by series (`5min`,
/// `hour`).
pub const PRUNED: &str = "airq_ingest_readings_pruned_total";
/// Live runs whose feed had not changed (a 304 to the conditional GET).
pub const NOT_MODIFIED: &str = "airq_ingest_not_modified_total";

/// The `reason` label of [`REJECTIONS`]: the summary's label in snake case
/// (`sensor saturated` is `sensor_saturated`, `no P1/P2 value` is
/// `no_p1_p2_value`). A fixed set: one per [`Rejection`].
pub fn reason_label(why: Rejection) -> String {
    let mut out = String::new();
    for c in why.label().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// Describes the metrics and registers the counters and the histogram.
pub fn register() {
    describe_gauge!(
        LAST_RUN_START,
        Unit::Seconds,
        "When the last ingestion run started (Unix time)"
    );
    describe_gauge!(
        LAST_RUN_END,
        Unit::Seconds,
        "When the last ingestion run ended, successfully or not (Unix time)"
    );
    describe_gauge!(
        LAST_RUN_DURATION,
        Unit::Seconds,
        "How long the last ingestion run that ended took"
    );
    describe_gauge!(
        LAST_SUCCESS,
        Unit::Seconds,
        "When the last successful ingestion run ended (Unix time); absent until one has"
    );
    describe_gauge!(
        LAST_SUCCESS_AGE,
        Unit::Seconds,
        "Seconds since the last successful ingestion run ended; absent until one has"
    );
    describe_counter!(RUNS, Unit::Count, "Ingestion runs by outcome");
    describe_counter!(READINGS_STORED, Unit::Count, "Readings stored");
    describe_counter!(REJECTIONS, Unit::Count, "Feed entries rejected, by reason");
    describe_counter!(FETCHED_BYTES, Unit::Bytes, "Feed bytes fetched");
    describe_counter!(
        PRUNED,
        Unit::Count,
        "Live-tier readings deleted by retention, by series"
    );
    describe_counter!(
        NOT_MODIFIED,
        Unit::Count,
        "Runs whose feed was unchanged since the last (304 Not Modified)"
    );
    describe_histogram!(
        RUN_DURATION,
        Unit::Seconds,
        "Ingestion run durations, fetch included"
    );
    for outcome in ["success", "failure"] {
        counter!(RUNS, "outcome" => outcome).absolute(0);
    }
    counter!(READINGS_STORED).absolute(0);
    for why in Rejection::ALL {
        counter!(REJECTIONS, "reason" => reason_label(why)).absolute(0);
    }
    counter!(FETCHED_BYTES).absolute(0);
    // Registered without a sample: rendered with zero counts.
    let _ = histogram!(RUN_DURATION);
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// When the last successful run ended (Unix seconds as f64 bits; 0: none).
static LAST_SUCCESS_AT: AtomicU64 = AtomicU64::new(0);

/// Keeps [`LAST_SUCCESS_AGE`] current until `stop`.
pub async fn keep_age(stop: CancellationToken) {
    let mut every = tokio::time::interval(AGE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Some(age) = age_at(unix_now()) {
            gauge!(LAST_SUCCESS_AGE).set(age);
        }
    }
}

/// Seconds from the last success to `now`, if one has happened.
fn age_at(now: f64) -> Option<f64> {
    let at = f64::from_bits(LAST_SUCCESS_AT.load(Ordering::Relaxed));
    (at > 0.0).then(|| (now - at).max(0.0))
}

pub fn run_started() {
    gauge!(LAST_RUN_START).set(unix_now());
}

/// A run ended (not one abandoned at shutdown), after `took`.
pub fn run_finished(success: bool, took: Duration) {
    let now = unix_now();
    gauge!(LAST_RUN_END).set(now);
    gauge!(LAST_RUN_DURATION).set(took.as_secs_f64());
    if success {
        gauge!(LAST_SUCCESS).set(now);
        LAST_SUCCESS_AT.store(now.to_bits(), Ordering::Relaxed);
        gauge!(LAST_SUCCESS_AGE).set(0.0);
    }
    histogram!(RUN_DURATION).record(took.as_secs_f64());
    // Last: a scraper that sees the run counted sees all of the run above
    // (the tests wait on this counter, then read the rest).
    let outcome = if success { "success" } else { "failure" };
    counter!(RUNS, "outcome" => outcome).increment(1);
}

pub fn fetched(bytes: u64) {
    counter!(FETCHED_BYTES).increment(bytes);
}

pub fn pruned(series: airq_core::Resolution, readings: u64) {
    counter!(PRUNED, "series" => series.name()).increment(readings);
}

pub fn not_modified() {
    counter!(NOT_MODIFIED).increment(1);
}

pub fn stored(readings: u64) {
    counter!(READINGS_STORED).increment(readings);
}

pub fn rejected(stats: &FeedStats) {
    for (why, n) in &stats.rejected {
        counter!(REJECTIONS, "reason" => reason_label(*why)).increment(*n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_age_counts_from_the_last_success_only() {
        assert_eq!(age_at(1_000.0), None, "no success yet: absent");
        run_finished(false, Duration::from_secs(1));
        assert_eq!(age_at(1_000.0), None, "a failure is no success");
        LAST_SUCCESS_AT.store(1_000.5_f64.to_bits(), Ordering::Relaxed);
        assert_eq!(age_at(1_090.5), Some(90.0));
        assert_eq!(
            age_at(999.0),
            Some(0.0),
            "a clock stepped back: not negative"
        );
    }

    #[test]
    fn reasons_are_snake_case_and_distinct() {
        let labels: Vec<String> = Rejection::ALL.iter().map(|r| reason_label(*r)).collect();
        assert_eq!(reason_label(Rejection::Saturated), "sensor_saturated");
        assert_eq!(reason_label(Rejection::NoParticulates), "no_p1_p2_value");
        assert_eq!(reason_label(Rejection::NonNumeric), "non_numeric_value");
        assert_eq!(
            reason_label(Rejection::TimestampOutOfRange),
            "timestamp_out_of_range"
        );
        for l in &labels {
            assert!(
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    && !l.starts_with('_')
                    && !l.ends_with('_')
                    && !l.contains("__"),
                "{l:?}"
            );
        }
        let mut distinct = labels.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), labels.len(), "{labels:?}");
    }
}

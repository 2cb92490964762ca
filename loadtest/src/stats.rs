//! Measurements: one [`Recorder`] per task (no sharing while a run goes),
//! merged into one at the end and summarised.
//!
//! Latencies are kept in HdrHistograms in microseconds (3 significant
//! digits, up to an hour), so percentiles are exact to 0.1 % whatever the
//! number of samples.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Why a request did not end in a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// An HTTP status that is not the expected answer (e.g. 503, 422).
    Status(u16),
    /// No (complete) answer within the request timeout.
    Timeout,
    /// The connection could not be opened.
    Connect,
    /// The connection failed during an exchange (reset, closed early).
    Connection,
    /// A queued result was still pending after the poll cap.
    PollCap,
    /// The answer did not follow the API (e.g. 202 without `Location`).
    Protocol,
    /// An arrival the generator never started before the run's deadline.
    Unsent,
}

impl ErrorKind {
    pub fn name(&self) -> String {
        match self {
            ErrorKind::Status(s) => format!("http_{s}"),
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::Connect => "connect".into(),
            ErrorKind::Connection => "connection".into(),
            ErrorKind::PollCap => "poll_cap".into(),
            ErrorKind::Protocol => "protocol".into(),
            ErrorKind::Unsent => "unsent".into(),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// How a query was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    /// 200 to the submit (the CSV in the same response).
    Direct,
    /// 202 to the submit, then polled.
    Queued,
    /// A plain GET (not a query journey).
    Plain,
    /// No answer was received.
    None,
}

impl Answer {
    pub fn as_str(&self) -> &'static str {
        match self {
            Answer::Direct => "direct",
            Answer::Queued => "queued",
            Answer::Plain => "plain",
            Answer::None => "none",
        }
    }
}

/// One journey (or one plain request), as the per-request CSV shows it.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// The arrival's number in the run.
    pub index: u64,
    /// Intended start, µs since the run started.
    pub intended_us: u64,
    /// How late the request started relative to its intended start, µs.
    pub start_delay_us: u64,
    /// Latency of the submit exchange (request to last body byte), µs; 0
    /// if nothing was received.
    pub submit_us: u64,
    /// Intended start → result received (or failure known), µs.
    pub total_us: u64,
    /// The status of the last response (0 if none).
    pub status: u16,
    pub answer: Answer,
    pub polls: u32,
    /// Body bytes of every response after the submit but the answer's
    /// (`202`s, event streams): what following the result cost.
    pub follow_bytes: u64,
    /// Bytes of the result body.
    pub bytes: u64,
    pub error: Option<ErrorKind>,
}

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    // 1 µs to one hour at 3 significant digits; the bounds are constants.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

/// What one task measured; merged with the others' at the end.
pub struct Recorder {
    /// Time to result of successful journeys.
    pub ttr: Histogram<u64>,
    /// Submit exchanges that got a response.
    pub submit: Histogram<u64>,
    /// Poll exchanges that got a response.
    pub poll: Histogram<u64>,
    /// Lateness of every started request.
    pub start_delay: Histogram<u64>,
    pub records: Vec<Record>,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub ok: u64,
    pub direct: u64,
    pub queued: u64,
    pub polls: u64,
    pub max_polls: u32,
    pub follow_bytes: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Requests that started later than the lateness allowance.
    pub late: u64,
    /// Whether to keep every [`Record`] (for the CSV and the time chart).
    keep_records: bool,
}

impl Recorder {
    pub fn new(keep_records: bool) -> Recorder {
        Recorder {
            ttr: histogram(),
            submit: histogram(),
            poll: histogram(),
            start_delay: histogram(),
            records: Vec::new(),
            errors: BTreeMap::new(),
            ok: 0,
            direct: 0,
            queued: 0,
            polls: 0,
            follow_bytes: 0,
            max_polls: 0,
            bytes: 0,
            max_bytes: 0,
            late: 0,
            keep_records,
        }
    }

    pub fn submit_latency(&mut self, d: Duration) {
        self.submit.saturating_record(micros(d));
    }

    pub fn poll_latency(&mut self, d: Duration) {
        self.poll.saturating_record(micros(d));
    }

    /// Records a started request's lateness; `late` if over the allowance.
    pub fn started(&mut self, delay: Duration, allowance: Duration) {
        self.start_delay.saturating_record(micros(delay));
        if delay > allowance {
            self.late += 1;
        }
    }

    /// Records a finished journey.
    pub fn finish(&mut self, r: Record) {
        match r.error {
            None => {
                self.ok += 1;
                self.ttr.saturating_record(r.total_us.max(1));
                self.bytes += r.bytes;
                self.max_bytes = self.max_bytes.max(r.bytes);
                match r.answer {
                    Answer::Direct => self.direct += 1,
                    Answer::Queued => self.queued += 1,
                    Answer::Plain | Answer::None => {}
                }
            }
            Some(kind) => *self.errors.entry(kind).or_default() += 1,
        }
        self.polls += u64::from(r.polls);
        self.follow_bytes += r.follow_bytes;
        self.max_polls = self.max_polls.max(r.polls);
        if self.keep_records {
            self.records.push(r);
        }
    }

    /// Counts `n` arrivals that were never started.
    pub fn unsent(&mut self, n: u64) {
        if n > 0 {
            *self.errors.entry(ErrorKind::Unsent).or_default() += n;
        }
    }

    /// Adds `other`'s measurements to these.
    pub fn merge(&mut self, other: Recorder) {
        // The histograms share bounds, so adding cannot fail.
        let _ = self.ttr.add(&other.ttr);
        let _ = self.submit.add(&other.submit);
        let _ = self.poll.add(&other.poll);
        let _ = self.start_delay.add(&other.start_delay);
        self.records.extend(other.records);
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        self.ok += other.ok;
        self.direct += other.direct;
        self.queued += other.queued;
        self.polls += other.polls;
        self.follow_bytes += other.follow_bytes;
        self.max_polls = self.max_polls.max(other.max_polls);
        self.bytes += other.bytes;
        self.max_bytes = self.max_bytes.max(other.max_bytes);
        self.late += other.late;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The usual figures of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }

    /// A percentile by name (`p50`, `p99.9`, `mean`, …), in ms.
    pub fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "min" => self.min,
            "mean" | "avg" | "average" => self.mean,
            "p50" | "median" => self.p50,
            "p90" => self.p90,
            "p95" => self.p95,
            "p99" => self.p99,
            "p99.9" | "p999" => self.p999,
            "max" => self.max,
            _ => return None,
        })
    }
}

/// CPU time a process used.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Cpu {
    /// User plus system CPU seconds.
    pub seconds: f64,
    /// `seconds` over the wall time: 1.0 is one core fully busy.
    pub cores: f64,
}

/// Everything a run measured, as reports and thresholds see it.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub label: String,
    /// `closed`, `open` or `users`.
    pub load: String,
    pub description: String,
    /// Offered rate of a constant open-loop run (arrivals/s).
    pub rate: Option<f64>,
    pub concurrency: Option<usize>,
    /// Arrivals planned (closed loop: the request count).
    pub planned: u64,
    /// Requests started.
    pub started: u64,
    /// Journeys that ended in a result.
    pub ok: u64,
    /// Journeys that did not, plus arrivals never started (`unsent`).
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub error_pct: f64,
    /// Requests started later than the lateness allowance.
    pub late: u64,
    pub late_allowance_ms: f64,
    /// A closed loop with a duration and no request count that ran into
    /// `--max-requests` before its deadline: the limit it stopped at.
    pub stopped_at_max_requests: Option<u64>,
    /// Wall time from the first intended start to the last completion, s.
    pub elapsed_s: f64,
    /// Completed journeys (ok or failed) per second.
    pub throughput: f64,
    /// Results per second.
    pub ok_per_s: f64,
    /// Answers given directly / after queueing.
    pub direct: u64,
    pub queued: u64,
    pub queued_pct: f64,
    pub polls: u64,
    pub polls_per_query: f64,
    /// Bytes of responses after the submit but the answer, per queued
    /// query.
    pub follow_bytes_per_query: f64,
    pub max_polls: u32,
    pub result_bytes: u64,
    pub mean_result_bytes: f64,
    pub max_result_bytes: u64,
    /// Received result kilobytes per second.
    pub kb_per_s: f64,
    /// Intended start → result, successful journeys.
    pub time_to_result: Latency,
    pub submit: Latency,
    pub poll: Latency,
    pub start_delay: Latency,
    /// The generator's own CPU use during the run.
    pub generator_cpu: Cpu,
    /// The server's CPU use during the run, when known (bench).
    pub server_cpu: Option<BTreeMap<String, Cpu>>,
}

impl Summary {
    /// Every arrival is accounted for exactly once.
    pub fn accounted(&self) -> bool {
        self.ok + self.errors == self.planned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        // 1..=100,000 µs uniformly: the q-quantile is q × 100 ms.
        let mut h = histogram();
        for v in 1..=100_000u64 {
            h.record(v).unwrap();
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 100_000);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(l.min, 0.001), "{}", l.min);
        assert!(close(l.mean, 50.0), "{}", l.mean);
        assert!(close(l.p50, 50.0), "{}", l.p50);
        assert!(close(l.p90, 90.0), "{}", l.p90);
        assert!(close(l.p95, 95.0), "{}", l.p95);
        assert!(close(l.p99, 99.0), "{}", l.p99);
        assert!(close(l.p999, 99.9), "{}", l.p999);
        assert!(close(l.max, 100.0), "{}", l.max);
        assert_eq!(l.get("p99.9"), Some(l.p999));
        assert_eq!(l.get("median"), Some(l.p50));
        assert_eq!(l.get("p42"), None);
    }

    #[test]
    fn percentiles_of_a_skewed_distribution_survive_merging() {
        // 990 fast (1 ms) and 10 slow (1 s) samples, split over two tasks.
        let mut a = Recorder::new(false);
        let mut b = Recorder::new(false);
        for i in 0..1000u64 {
            let r = Record {
                index: i,
                intended_us: 0,
                start_delay_us: 0,
                submit_us: 0,
                total_us: if i % 100 == 0 { 1_000_000 } else { 1_000 },
                status: 200,
                answer: Answer::Direct,
                polls: 0,
                follow_bytes: 0,
                bytes: 10,
                error: None,
            };
            if i % 2 == 0 {
                a.finish(r)
            } else {
                b.finish(r)
            }
        }
        a.merge(b);
        let l = Latency::of(&a.ttr);
        assert_eq!(l.count, 1000);
        assert!((l.p50 - 1.0).abs() < 0.01);
        assert!((l.p90 - 1.0).abs() < 0.01);
        // The 990th of 1,000 is fast, the 991st slow.
        assert!((l.p99 - 1.0).abs() < 0.01, "{}", l.p99);
        assert!((l.p999 - 1000.0).abs() < 1.0, "{}", l.p999);
        assert!((l.max - 1000.0).abs() < 1.0);
        assert!((l.mean - (990.0 * 1.0 + 10.0 * 1000.0) / 1000.0).abs() < 0.1);
        assert_eq!(a.ok, 1000);
        assert_eq!(a.direct, 1000);
        assert_eq!(a.bytes, 10_000);
    }

    #[test]
    fn errors_are_counted_by_kind() {
        let mut r = Recorder::new(true);
        let base = Record {
            index: 0,
            intended_us: 0,
            start_delay_us: 0,
            submit_us: 0,
            total_us: 5,
            status: 503,
            answer: Answer::None,
            polls: 0,
            follow_bytes: 0,
            bytes: 0,
            error: Some(ErrorKind::Status(503)),
        };
        r.finish(base);
        r.finish(Record {
            error: Some(ErrorKind::Timeout),
            ..base
        });
        r.finish(Record {
            error: Some(ErrorKind::Status(503)),
            ..base
        });
        r.unsent(4);
        assert_eq!(r.error_count(), 7);
        assert_eq!(r.errors[&ErrorKind::Status(503)], 2);
        assert_eq!(r.errors[&ErrorKind::Unsent], 4);
        assert_eq!(r.records.len(), 3);
        assert_eq!(ErrorKind::Status(503).name(), "http_503");
        assert!(r.ttr.is_empty());
    }
}

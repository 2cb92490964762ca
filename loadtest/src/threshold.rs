//! Pass/fail gates: `--threshold 'p99<200ms' --threshold 'errors==0'`.
//!
//! A threshold is `[SCOPE.]METRIC OP VALUE[UNIT]`:
//!
//! - latency metrics `min mean p50 median p90 p95 p99 p99.9 max`, of the
//!   time to result unless a scope says otherwise: `submit.p99`,
//!   `poll.p95`, `delay.max` (start lateness); the value takes `us`, `ms`
//!   (the default) or `s`;
//! - counts and rates: `errors`, `error_rate` (in %, `%` optional), `ok`,
//!   `late`, `unsent`, `throughput` (completed per second, `/s` optional),
//!   `ok_rate` (results per second), `queued` (% of answers that were
//!   queued), `cpu` (the generator's cores busy);
//! - operators `< <= > >= == !=` (`=` is `==`).
//!
//! Over a matrix every step must pass.

use crate::stats::{Latency, Summary};
use anyhow::{bail, Context};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Op::Lt => actual < limit,
            Op::Le => actual <= limit,
            Op::Gt => actual > limit,
            Op::Ge => actual >= limit,
            Op::Eq => (actual - limit).abs() < 1e-9,
            Op::Ne => (actual - limit).abs() >= 1e-9,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    TimeToResult,
    Submit,
    Poll,
    Delay,
}

#[derive(Debug, Clone, PartialEq)]
enum Metric {
    Latency(Scope, String),
    Errors,
    ErrorRate,
    Ok,
    Late,
    Unsent,
    Throughput,
    OkRate,
    Queued,
    Cpu,
}

/// One parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub text: String,
    metric: Metric,
    op: Op,
    /// In the metric's base unit (ms for latencies).
    limit: f64,
}

/// A threshold evaluated against one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub threshold: String,
    pub step: String,
    pub actual: f64,
    pub pass: bool,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const LATENCIES: [&str; 11] = [
    "min", "mean", "avg", "p50", "median", "p90", "p95", "p99", "p99.9", "p999", "max",
];

impl Threshold {
    pub fn parse(text: &str) -> anyhow::Result<Threshold> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let ops: [(&str, Op); 7] = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
            ("=", Op::Eq),
        ];
        let (pos, sym, op) = ops
            .iter()
            .filter_map(|(sym, op)| compact.find(sym).map(|p| (p, *sym, *op)))
            .min_by_key(|(p, sym, _)| (*p, std::cmp::Reverse(sym.len())))
            .with_context(|| {
                format!("threshold {text:?} has no comparison; expected e.g. p99<200ms")
            })?;
        let name = compact[..pos].to_ascii_lowercase();
        let value = &compact[pos + sym.len()..];
        let (scope, metric_name) = match name.split_once('.') {
            // `p99.9` is a metric; `poll.p99` a scope and a metric.
            Some((s, m))
                if !s.starts_with('p') || s.chars().skip(1).any(|c| !c.is_ascii_digit()) =>
            {
                (Some(s.to_owned()), m.to_owned())
            }
            _ => (None, name.clone()),
        };
        let metric = if LATENCIES.contains(&metric_name.as_str()) {
            let scope = match scope.as_deref() {
                None | Some("ttr") | Some("time_to_result") => Scope::TimeToResult,
                Some("submit") => Scope::Submit,
                Some("poll") => Scope::Poll,
                Some("delay") | Some("start_delay") => Scope::Delay,
                Some(other) => {
                    bail!("threshold {text:?}: unknown scope {other:?} (ttr, submit, poll, delay)")
                }
            };
            Metric::Latency(scope, metric_name)
        } else {
            if scope.is_some() {
                bail!("threshold {text:?}: only latency metrics take a scope");
            }
            match metric_name.as_str() {
                "errors" => Metric::Errors,
                "error_rate" | "errors%" => Metric::ErrorRate,
                "ok" => Metric::Ok,
                "late" => Metric::Late,
                "unsent" => Metric::Unsent,
                "throughput" | "rps" => Metric::Throughput,
                "ok_rate" => Metric::OkRate,
                "queued" | "queued%" => Metric::Queued,
                "cpu" => Metric::Cpu,
                other => bail!(
                    "threshold {text:?}: unknown metric {other:?}; use a latency ({}) or errors, \
                     error_rate, ok, late, unsent, throughput, ok_rate, queued, cpu",
                    LATENCIES.join(" ")
                ),
            }
        };
        let limit = parse_value(&metric, value)
            .with_context(|| format!("threshold {text:?}: bad value {value:?}"))?;
        Ok(Threshold {
            text: text.trim().to_owned(),
            metric,
            op,
            limit,
        })
    }

    /// The metric's value in `s`.
    pub fn actual(&self, s: &Summary) -> f64 {
        let lat = |l: &Latency, name: &str| l.get(name).unwrap_or(f64::NAN);
        match &self.metric {
            Metric::Latency(scope, name) => match scope {
                Scope::TimeToResult => lat(&s.time_to_result, name),
                Scope::Submit => lat(&s.submit, name),
                Scope::Poll => lat(&s.poll, name),
                Scope::Delay => lat(&s.start_delay, name),
            },
            Metric::Errors => s.errors as f64,
            Metric::ErrorRate => s.error_pct,
            Metric::Ok => s.ok as f64,
            Metric::Late => s.late as f64,
            Metric::Unsent => s.errors_by_kind.get("unsent").copied().unwrap_or(0) as f64,
            Metric::Throughput => s.throughput,
            Metric::OkRate => s.ok_per_s,
            Metric::Queued => s.queued_pct,
            Metric::Cpu => s.generator_cpu.cores,
        }
    }

    pub fn check(&self, s: &Summary) -> Check {
        let actual = self.actual(s);
        // A latency of a run with no result at all cannot pass an upper
        // bound: no sample is not a fast sample.
        let no_samples = matches!(self.metric, Metric::Latency(..))
            && match &self.metric {
                Metric::Latency(Scope::TimeToResult, _) => s.time_to_result.count == 0,
                Metric::Latency(Scope::Submit, _) => s.submit.count == 0,
                Metric::Latency(Scope::Poll, _) => s.poll.count == 0,
                Metric::Latency(Scope::Delay, _) => s.start_delay.count == 0,
                _ => false,
            };
        let pass = !actual.is_nan()
            && self.op.holds(actual, self.limit)
            && !(no_samples && matches!(self.op, Op::Lt | Op::Le));
        Check {
            threshold: self.text.clone(),
            step: s.label.clone(),
            actual,
            pass,
        }
    }
}

fn parse_value(metric: &Metric, value: &str) -> anyhow::Result<f64> {
    let lower = value.to_ascii_lowercase();
    let (number, scale) = match metric {
        Metric::Latency(..) => {
            if let Some(n) = lower
                .strip_suffix("us")
                .or_else(|| lower.strip_suffix("µs"))
            {
                (n, 0.001)
            } else if let Some(n) = lower.strip_suffix("ms") {
                (n, 1.0)
            } else if let Some(n) = lower.strip_suffix('s') {
                (n, 1000.0)
            } else {
                (lower.as_str(), 1.0)
            }
        }
        Metric::ErrorRate | Metric::Queued => (lower.trim_end_matches('%'), 1.0),
        Metric::Throughput | Metric::OkRate => (lower.trim_end_matches("/s"), 1.0),
        _ => (lower.as_str(), 1.0),
    };
    let x: f64 = number.parse()?;
    if !x.is_finite() {
        bail!("not a finite number");
    }
    Ok(x * scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Cpu;
    use std::collections::BTreeMap;

    fn summary() -> Summary {
        Summary {
            label: "s".into(),
            load: "closed".into(),
            description: String::new(),
            rate: None,
            concurrency: Some(10),
            planned: 100,
            started: 98,
            ok: 95,
            errors: 5,
            errors_by_kind: BTreeMap::from([("http_503".into(), 3), ("unsent".into(), 2)]),
            error_pct: 5.0,
            late: 1,
            late_allowance_ms: 10.0,
            stopped_at_max_requests: None,
            elapsed_s: 1.0,
            throughput: 98.0,
            ok_per_s: 95.0,
            direct: 90,
            queued: 5,
            queued_pct: 5.26,
            polls: 7,
            polls_per_query: 0.07,
            follow_bytes_per_query: 20.0,
            max_polls: 3,
            result_bytes: 0,
            mean_result_bytes: 0.0,
            max_result_bytes: 0,
            kb_per_s: 0.0,
            time_to_result: Latency {
                count: 95,
                min: 1.0,
                mean: 20.0,
                p50: 10.0,
                p90: 50.0,
                p95: 80.0,
                p99: 150.0,
                p999: 300.0,
                max: 310.0,
            },
            submit: Latency {
                count: 98,
                p99: 12.0,
                ..Latency::default()
            },
            poll: Latency::default(),
            start_delay: Latency::default(),
            generator_cpu: Cpu {
                seconds: 0.5,
                cores: 0.5,
            },
            server_cpu: None,
        }
    }

    fn check(t: &str) -> (f64, bool) {
        let c = Threshold::parse(t).unwrap().check(&summary());
        (c.actual, c.pass)
    }

    #[test]
    fn latency_thresholds_with_units() {
        assert_eq!(check("p99<200ms"), (150.0, true));
        assert_eq!(check("p99 < 0.1s"), (150.0, false));
        assert_eq!(check("p99<=150"), (150.0, true));
        assert_eq!(check("p99.9>299999us"), (300.0, true));
        assert_eq!(check("median==10ms"), (10.0, true));
        assert_eq!(check("max!=310ms"), (310.0, false));
        assert_eq!(check("submit.p99<20ms"), (12.0, true));
        assert_eq!(check("ttr.mean>=20"), (20.0, true));
        // No poll happened: an upper bound on its latency does not pass.
        assert!(!check("poll.p99<1s").1);
    }

    #[test]
    fn count_and_rate_thresholds() {
        assert_eq!(check("errors==0"), (5.0, false));
        assert_eq!(check("errors=5"), (5.0, true));
        assert_eq!(check("error_rate<10%"), (5.0, true));
        assert_eq!(check("unsent==2"), (2.0, true));
        assert_eq!(check("late<=1"), (1.0, true));
        assert_eq!(check("throughput>=100/s"), (98.0, false));
        assert_eq!(check("ok_rate>90"), (95.0, true));
        assert_eq!(check("queued<10%"), (5.26, true));
        assert_eq!(check("cpu<1"), (0.5, true));
    }

    #[test]
    fn bad_thresholds_are_refused() {
        for bad in [
            "p99",
            "p42<1ms",
            "p99<fast",
            "latency<1ms",
            "foo.p99<1ms",
            "errors.p99<1",
            "submit.errors<1",
            "p99<",
        ] {
            assert!(Threshold::parse(bad).is_err(), "{bad}");
        }
    }
}

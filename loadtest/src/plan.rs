//! Load plans: what to send when.
//!
//! - **Closed loop**: `concurrency` virtual users, each sending its next
//!   request as soon as the previous one finished, until `requests` have
//!   been sent (the original benchmark script's model, and JMeter's).
//! - **Open loop**: arrivals at a target rate, constant or Poisson
//!   (exponential gaps), possibly ramped through stages. Every arrival has an
//!   *intended* start time computed in advance; latency is measured from it,
//!   so a slow server cannot slow the arrivals down and hide its own queueing
//!   (coordinated omission, as wrk2 corrects it).
//! - **Staged users**: a closed loop whose number of active users follows
//!   the stages (JMeter's ramp-up / hold / ramp-down thread groups).
//!
//! Intended start times are offsets from the start of a run.

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use std::fmt;
use std::time::Duration;

/// How open-loop arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Evenly spaced at the current rate.
    Constant,
    /// A Poisson process: exponentially distributed gaps (a seeded stream).
    Poisson,
}

/// What the numbers of `--stages` mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageTarget {
    /// Arrivals per second (open loop).
    Rate,
    /// Concurrent virtual users (closed loop).
    Users,
}

/// One stage: over `duration`, move linearly from the previous stage's
/// target (0 before the first stage) to `target`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: f64,
}

/// A piecewise-linear profile over time (a rate or a number of users).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The value at time 0.
    pub start: f64,
    pub stages: Vec<Stage>,
}

impl Profile {
    /// A constant `value` for `duration`.
    pub fn constant(value: f64, duration: Duration) -> Profile {
        Profile {
            start: value,
            stages: vec![Stage {
                duration,
                target: value,
            }],
        }
    }

    /// Stages starting from 0, as `--stages` gives them.
    pub fn staged(stages: Vec<Stage>) -> Profile {
        Profile { start: 0.0, stages }
    }

    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// The highest value the profile reaches.
    pub fn peak(&self) -> f64 {
        self.stages
            .iter()
            .map(|s| s.target)
            .fold(self.start, f64::max)
    }

    /// The value at `t` (the last target after the end).
    pub fn at(&self, t: Duration) -> f64 {
        let mut from = self.start;
        let mut elapsed = Duration::ZERO;
        for s in &self.stages {
            if t < elapsed + s.duration {
                let frac = (t - elapsed).as_secs_f64() / s.duration.as_secs_f64().max(1e-12);
                return from + (s.target - from) * frac;
            }
            elapsed += s.duration;
            from = s.target;
        }
        from
    }

    /// The area under the profile: for a rate, the expected arrivals.
    pub fn integral(&self) -> f64 {
        let mut from = self.start;
        let mut area = 0.0;
        for s in &self.stages {
            area += (from + s.target) / 2.0 * s.duration.as_secs_f64();
            from = s.target;
        }
        area
    }

    /// The time at which the integral reaches `x`, or `None` past the end.
    fn inverse_integral(&self, x: f64) -> Option<f64> {
        let mut from = self.start;
        let mut area = 0.0;
        let mut t0 = 0.0;
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            let a = (from + s.target) / 2.0 * d;
            if x < area + a {
                let rem = x - area;
                // Solve from·τ + k·τ² = rem with k = (to − from) / (2d), in
                // the form that stays exact when k → 0 and when from = 0.
                let k = (s.target - from) / (2.0 * d);
                let disc = (from * from + 4.0 * k * rem).max(0.0);
                let denom = from + disc.sqrt();
                let tau = if denom > 0.0 { 2.0 * rem / denom } else { 0.0 };
                return Some(t0 + tau.clamp(0.0, d));
            }
            area += a;
            t0 += d;
            from = s.target;
        }
        None
    }
}

/// Parses `30s:50,60s:50,10s:0`.
pub fn parse_stages(spec: &str) -> anyhow::Result<Vec<Stage>> {
    let mut stages = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (d, t) = part
            .split_once(':')
            .with_context(|| format!("stage {part:?} is not DURATION:TARGET (e.g. 30s:50)"))?;
        let duration = parse_duration(d).with_context(|| format!("stage {part:?}"))?;
        let target: f64 = t
            .trim()
            .parse()
            .with_context(|| format!("stage {part:?}: {t:?} is not a number"))?;
        if duration.is_zero() || !target.is_finite() || target < 0.0 {
            bail!("stage {part:?}: the duration must be positive and the target a number ≥ 0");
        }
        stages.push(Stage { duration, target });
    }
    if stages.is_empty() {
        bail!("no stages in {spec:?}; expected e.g. 30s:50,60s:50,10s:0");
    }
    Ok(stages)
}

/// A duration in airq's one syntax (`250ms`, `30s`, `2m`, or whole
/// seconds).
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    airq_cli::duration::parse(s).map_err(anyhow::Error::msg)
}

/// The intended start times of an open-loop plan, in order. Deterministic
/// for a given seed.
pub struct Arrivals {
    profile: Profile,
    arrival: Arrival,
    rng: rand::rngs::StdRng,
    /// The integral value of the next arrival.
    next: f64,
}

impl Arrivals {
    pub fn new(profile: Profile, arrival: Arrival, seed: u64) -> Arrivals {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let next = match arrival {
            Arrival::Constant => 0.0,
            Arrival::Poisson => exp1(&mut rng),
        };
        Arrivals {
            profile,
            arrival,
            rng,
            next,
        }
    }
}

/// A sample of the exponential distribution with mean 1.
fn exp1(rng: &mut impl Rng) -> f64 {
    // 1 − U is in (0, 1], so the logarithm is finite.
    let u: f64 = rng.random();
    -(1.0 - u).ln()
}

impl Iterator for Arrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let t = self.profile.inverse_integral(self.next)?;
        self.next += match self.arrival {
            Arrival::Constant => 1.0,
            Arrival::Poisson => exp1(&mut self.rng),
        };
        Some(Duration::from_secs_f64(t))
    }
}

/// Every intended start time of an open-loop plan, refusing plans larger
/// than `max` arrivals.
pub fn schedule(
    profile: &Profile,
    arrival: Arrival,
    seed: u64,
    max: u64,
) -> anyhow::Result<Vec<Duration>> {
    let expected = profile.integral();
    // A Poisson count exceeds its mean by a few standard deviations at most.
    let bound = expected + 6.0 * expected.sqrt() + 16.0;
    if expected > max as f64 {
        bail!(
            "the plan has about {expected:.0} arrivals, more than --max-requests {max}; \
             lower the rate or duration, or raise --max-requests"
        );
    }
    let mut out = Vec::with_capacity(bound.min(max as f64) as usize);
    for t in Arrivals::new(profile.clone(), arrival, seed) {
        // Refused rather than cut: arrivals left out of the plan would be
        // dropped without a trace.
        if out.len() as u64 >= max {
            bail!(
                "this draw of the plan has more than --max-requests {max} arrivals \
                 (about {expected:.0} expected); raise --max-requests or change --seed"
            );
        }
        out.push(t);
    }
    Ok(out)
}

/// How requests are generated in one run.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// `concurrency` users until `requests` were sent (or `duration` ran out).
    Closed {
        requests: Option<u64>,
        concurrency: usize,
        duration: Option<Duration>,
    },
    /// Arrivals following a rate profile.
    Open { rate: Profile, arrival: Arrival },
    /// Closed-loop users whose number follows a profile.
    Users { users: Profile },
}

impl Load {
    /// A short description for tables: `2500/500`, `500/s`, `stages 1m40s`.
    pub fn label(&self) -> String {
        match self {
            Load::Closed {
                requests: Some(n),
                concurrency,
                ..
            } => format!("{n}/{concurrency}"),
            Load::Closed {
                requests: None,
                concurrency,
                duration,
            } => format!(
                "c{concurrency} {}",
                humantime::format_duration(duration.unwrap_or_default())
            ),
            Load::Open { rate, .. } if rate.stages.len() == 1 && rate.start == rate.peak() => {
                format!("{}/s", trim_float(rate.start))
            }
            Load::Open { rate, .. } => format!(
                "≤{}/s {}",
                trim_float(rate.peak()),
                humantime::format_duration(rate.duration())
            ),
            Load::Users { users } => format!(
                "≤{} users {}",
                trim_float(users.peak()),
                humantime::format_duration(users.duration())
            ),
        }
    }

    /// The kind, for reports: `closed`, `open`, `users`.
    pub fn kind(&self) -> &'static str {
        match self {
            Load::Closed { .. } => "closed",
            Load::Open { .. } => "open",
            Load::Users { .. } => "users",
        }
    }

    /// The offered rate of a constant open-loop plan.
    pub fn rate(&self) -> Option<f64> {
        match self {
            Load::Open { rate, .. } if rate.start == rate.peak() => Some(rate.start),
            _ => None,
        }
    }

    /// The concurrency of a closed-loop plan.
    pub fn concurrency(&self) -> Option<usize> {
        match self {
            Load::Closed { concurrency, .. } => Some(*concurrency),
            _ => None,
        }
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::Closed {
                requests,
                concurrency,
                duration,
            } => {
                write!(f, "closed loop, {concurrency} users")?;
                if let Some(n) = requests {
                    write!(f, ", {n} requests")?;
                }
                if let Some(d) = duration {
                    write!(f, ", at most {}", humantime::format_duration(*d))?;
                }
                Ok(())
            }
            Load::Open { rate, arrival } => write!(
                f,
                "open loop, {arrival:?} arrivals, {} ({} arrivals expected over {})",
                self.label(),
                rate.integral().round(),
                humantime::format_duration(rate.duration())
            ),
            Load::Users { users } => write!(
                f,
                "staged users, up to {} over {}",
                trim_float(users.peak()),
                humantime::format_duration(users.duration())
            ),
        }
    }
}

/// `50` rather than `50.0`; `12.5` stays.
pub fn trim_float(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.2}")
    }
}

/// The original benchmark grid: requests/concurrency.
pub const SEED_MATRIX: [(u64, usize); 5] =
    [(10, 10), (100, 50), (500, 100), (1000, 500), (2500, 500)];

/// Parses `seed` or `N/C,N/C,…` into closed-loop steps.
pub fn parse_matrix(spec: &str) -> anyhow::Result<Vec<(u64, usize)>> {
    if spec.trim().eq_ignore_ascii_case("seed") {
        return Ok(SEED_MATRIX.to_vec());
    }
    let mut steps = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (n, c) = part
            .split_once('/')
            .with_context(|| format!("matrix step {part:?} is not REQUESTS/CONCURRENCY"))?;
        let n: u64 = n
            .trim()
            .parse()
            .with_context(|| format!("matrix step {part:?}: bad request count"))?;
        let c: usize = c
            .trim()
            .parse()
            .with_context(|| format!("matrix step {part:?}: bad concurrency"))?;
        if n == 0 || c == 0 {
            bail!("matrix step {part:?}: requests and concurrency must be positive");
        }
        steps.push((n, c));
    }
    if steps.is_empty() {
        bail!("empty matrix {spec:?}; expected `seed` or e.g. 10/10,100/50");
    }
    Ok(steps)
}

/// Parses `100,200,400` (arrivals per second).
pub fn parse_rates(spec: &str) -> anyhow::Result<Vec<f64>> {
    let mut rates = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let r: f64 = part
            .trim_end_matches("/s")
            .parse()
            .with_context(|| format!("rate {part:?} is not a number"))?;
        if !r.is_finite() || r <= 0.0 {
            bail!("rate {part:?} must be positive");
        }
        rates.push(r);
    }
    if rates.is_empty() {
        bail!("no rates in {spec:?}");
    }
    Ok(rates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    #[test]
    fn constant_arrivals_are_evenly_spaced() {
        let p = Profile::constant(10.0, Duration::from_secs(2));
        let s = schedule(&p, Arrival::Constant, 1, 1_000).unwrap();
        assert_eq!(s.len(), 20);
        for (i, t) in s.iter().enumerate() {
            assert!(
                (t.as_secs_f64() - i as f64 * 0.1).abs() < 1e-9,
                "{i}: {t:?}"
            );
        }
    }

    #[test]
    fn staged_ramp_intended_times() {
        // 0 → 10/s over 2 s, then 10/s for 1 s: 10 arrivals in the ramp,
        // 10 in the hold. In the ramp Λ(t) = 2.5 t², so arrival n is at
        // sqrt(n / 2.5).
        let p = Profile::staged(parse_stages("2s:10,1s:10").unwrap());
        assert!((p.integral() - 20.0).abs() < 1e-9);
        let s = schedule(&p, Arrival::Constant, 1, 1_000).unwrap();
        assert_eq!(s.len(), 20);
        for (n, t) in s.iter().take(10).enumerate() {
            let want = (n as f64 / 2.5).sqrt();
            assert!(
                (t.as_secs_f64() - want).abs() < 1e-6,
                "{n}: {t:?} vs {want}"
            );
        }
        for (i, t) in s.iter().skip(10).enumerate() {
            let want = 2.0 + i as f64 * 0.1;
            assert!(
                (t.as_secs_f64() - want).abs() < 1e-6,
                "{i}: {t:?} vs {want}"
            );
        }
        // Ramp-down: 10/s → 0 over 2 s is the mirror image.
        let down = Profile {
            start: 10.0,
            stages: vec![Stage {
                duration: secs(2.0),
                target: 0.0,
            }],
        };
        let s = schedule(&down, Arrival::Constant, 1, 1_000).unwrap();
        assert_eq!(s.len(), 10);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert!(s.iter().all(|t| *t < secs(2.0)));
        // Gaps widen as the rate falls.
        assert!(s[9] - s[8] > s[1] - s[0]);
    }

    #[test]
    fn profile_values() {
        let p = Profile::staged(parse_stages("30s:50,60s:50,10s:0").unwrap());
        assert_eq!(p.duration(), Duration::from_secs(100));
        assert_eq!(p.peak(), 50.0);
        assert!((p.at(secs(15.0)) - 25.0).abs() < 1e-9);
        assert!((p.at(secs(60.0)) - 50.0).abs() < 1e-9);
        assert!((p.at(secs(95.0)) - 25.0).abs() < 1e-9);
        assert_eq!(p.at(secs(200.0)), 0.0);
        assert!((p.integral() - (750.0 + 3000.0 + 250.0)).abs() < 1e-9);
    }

    #[test]
    fn poisson_mean_rate_within_tolerance() {
        // 200/s for 500 s: 100,000 arrivals expected; the count's standard
        // deviation is sqrt(100,000) ≈ 316, so 1 % is over 3 sigma.
        let p = Profile::constant(200.0, Duration::from_secs(500));
        let s = schedule(&p, Arrival::Poisson, 42, 1_000_000).unwrap();
        let n = s.len() as f64;
        assert!((n - 100_000.0).abs() < 1_000.0, "{n} arrivals");
        // Gaps: mean 1/200 s, and exponential (standard deviation = mean).
        let gaps: Vec<f64> = s.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.005).abs() < 0.005 * 0.02, "mean gap {mean}");
        assert!(
            (var.sqrt() - 0.005).abs() < 0.005 * 0.05,
            "sd {}",
            var.sqrt()
        );
        // Same seed, same stream; another seed, another.
        let again = schedule(&p, Arrival::Poisson, 42, 1_000_000).unwrap();
        assert_eq!(s[..100], again[..100]);
        let other = schedule(&p, Arrival::Poisson, 43, 1_000_000).unwrap();
        assert_ne!(s[..100], other[..100]);
    }

    #[test]
    fn poisson_follows_a_ramp() {
        let p = Profile::staged(parse_stages("100s:400").unwrap());
        let s = schedule(&p, Arrival::Poisson, 7, 1_000_000).unwrap();
        // Expected 20,000 in all, 5,000 in the first half and 15,000 after.
        let first = s.iter().filter(|t| **t < secs(50.0)).count() as f64;
        let second = s.len() as f64 - first;
        assert!((first - 5_000.0).abs() < 300.0, "{first}");
        assert!((second - 15_000.0).abs() < 500.0, "{second}");
    }

    #[test]
    fn plans_are_bounded() {
        let p = Profile::constant(1_000.0, Duration::from_secs(10));
        assert!(schedule(&p, Arrival::Constant, 1, 5_000).is_err());
        assert_eq!(
            schedule(&p, Arrival::Constant, 1, 10_000).unwrap().len(),
            10_000
        );
        // A Poisson draw above the limit is refused, never cut short (about
        // half the draws of a plan expecting exactly the limit).
        let p = Profile::constant(100.0, Duration::from_secs(10));
        let draws: Vec<_> = (0..20)
            .map(|seed| schedule(&p, Arrival::Poisson, seed, 1_000))
            .collect();
        assert!(draws.iter().any(|d| d.is_err()));
        assert!(draws.iter().flatten().all(|d| d.len() <= 1_000));
    }

    #[test]
    fn parsing() {
        assert_eq!(parse_matrix("seed").unwrap(), SEED_MATRIX.to_vec());
        assert_eq!(parse_matrix("10/1, 20/2").unwrap(), vec![(10, 1), (20, 2)]);
        assert!(parse_matrix("10").is_err());
        assert!(parse_matrix("0/1").is_err());
        assert!(parse_stages("30s").is_err());
        assert!(parse_stages("0s:5").is_err());
        assert!(parse_stages("").is_err());
        assert_eq!(parse_rates("100,250/s").unwrap(), vec![100.0, 250.0]);
        assert!(parse_rates("-1").is_err());
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn labels() {
        let c = Load::Closed {
            requests: Some(2500),
            concurrency: 500,
            duration: None,
        };
        assert_eq!(c.label(), "2500/500");
        let o = Load::Open {
            rate: Profile::constant(500.0, Duration::from_secs(10)),
            arrival: Arrival::Poisson,
        };
        assert_eq!(o.label(), "500/s");
        assert_eq!(o.rate(), Some(500.0));
    }
}

//! The live tier's hourly series: each sensor-hour's mean of its 5-minute
//! readings, and each index computed on its own standard's averaging
//! window of those means ([`Index::hourly_averaging`]).
//!
//! **Hourly means.** An hour `[HH:00:00, HH+1:00:00)` UTC averages the
//! 5-minute values whose timestamp falls in it, per pollutant, summed
//! exactly and rounded half up to hundredths ([`crate::mean`], as the
//! backfill's daily means). A pollutant's hour is **valid with at least 9
//! of its 12 values** ([`MIN_VALUES`]); only valid hours feed an index.
//!
//! **NowCast** (US EPA): from the 12 most recent hourly means, c₁ being the
//! hour described, over the valid ones: w* = c_min / c_max, w = max(w*, ½),
//! NowCast = Σ wⁱ⁻¹cᵢ / Σ wⁱ⁻¹. Defined only when at least 2 of the 3 most
//! recent hours are valid. Computed exactly (integer arithmetic on the
//! hundredths, see [`nowcast`]) and truncated: PM2.5 to 0.1 µg/m³, PM10 to
//! 1 µg/m³, before the breakpoints of [`crate::aqi`]. Source: US EPA,
//! "Technical Assistance Document for the Reporting of Daily Air Quality –
//! the Air Quality Index (AQI)", EPA-454/B-24-002 (May 2024), NowCast.
//!
//! **24-hour running mean** (UK DAQI, EAQI): the mean of the valid hourly
//! means of the 24 hours ending with the hour described, **valid with at
//! least 18 of the 24** ([`RUNNING_MIN_VALID`], the 75 % data capture the
//! standards' other averages use), rounded half up to hundredths.
//!
//! An index whose window has too little data is undefined
//! ([`Indices::UNDEFINED`]): answers show it empty, never a value made
//! from too little data.

use crate::aqi::{Averaging, Index, Indices};
use crate::mean::ExactSum;
use crate::reading::Timestamp;
use num_bigint::BigUint;

/// 5-minute values an hour holds when none is missing.
pub const VALUES_PER_HOUR: u64 = 12;
/// 5-minute values a pollutant's hour needs to be valid.
pub const MIN_VALUES: u64 = 9;
/// Hours the NowCast weighs.
pub const NOWCAST_HOURS: usize = 12;
/// Of the 3 most recent hours, how many the NowCast needs valid.
pub const NOWCAST_MIN_RECENT: usize = 2;
/// Hours a running mean averages.
pub const RUNNING_HOURS: usize = 24;
/// Valid hours a running mean needs.
pub const RUNNING_MIN_VALID: usize = 18;
/// Seconds in an hour.
pub const HOUR_SECS: i64 = 3600;

/// The start of the UTC hour `t` falls in: the timestamp an hourly
/// reading carries.
pub fn hour_start(t: Timestamp) -> Timestamp {
    Timestamp(t.0.div_euclid(HOUR_SECS) * HOUR_SECS)
}

/// One pollutant's mean over one sensor-hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourMean {
    /// The mean in hundredths of µg/m³, rounded half up.
    pub hundredths: u64,
    /// How many 5-minute values it averages.
    pub values: u64,
}

impl HourMean {
    /// The mean of the values summed in `sum`; `None` without any.
    pub fn of(sum: ExactSum) -> Option<HourMean> {
        let hundredths = u64::try_from(sum.hundredths()?).unwrap_or(u64::MAX);
        Some(HourMean {
            hundredths,
            values: sum.count(),
        })
    }

    /// Whether the hour has enough values to feed an index.
    pub fn is_valid(self) -> bool {
        self.values >= MIN_VALUES
    }

    /// The mean as stored: two decimals.
    pub fn text(self) -> String {
        decimal_text(self.hundredths, 2)
    }
}

/// `units` of 10⁻`decimals` as decimal text: `(1234, 2)` is `"12.34"`.
pub fn decimal_text(units: u64, decimals: u32) -> String {
    if decimals == 0 {
        return units.to_string();
    }
    let scale = 10u64.pow(decimals);
    format!(
        "{}.{:0width$}",
        units / scale,
        units % scale,
        width = decimals as usize
    )
}

/// The valid hourly means (hundredths) of one pollutant of one sensor,
/// most recent first: `[0]` is the hour described, `[k]` the hour `k`
/// hours before it; `None` where the hour has no valid mean.
pub type Window = [Option<u64>; RUNNING_HOURS];

/// The NowCast of `hours` (most recent first, hundredths; only the first
/// [`NOWCAST_HOURS`] are read), truncated to whole `unit`s of hundredths
/// (10: 0.1 µg/m³; 100: 1 µg/m³). `None` when fewer than 2 of the 3 most
/// recent hours are valid.
///
/// Exact: with w = p/q (p = c_min, q = c_max, or ½), multiplying every
/// weight by q¹¹ leaves integers, Σ cᵢpⁱ⁻¹q¹²⁻ⁱ / Σ pⁱ⁻¹q¹²⁻ⁱ, whose
/// quotient is truncated without rounding. (A float sum could land just
/// below a tenth the exact value reaches, and truncation would keep the
/// error.)
pub fn nowcast(hours: &[Option<u64>], unit: u64) -> Option<u64> {
    let hours = &hours[..hours.len().min(NOWCAST_HOURS)];
    let recent = hours.iter().take(3).filter(|h| h.is_some()).count();
    if recent < NOWCAST_MIN_RECENT {
        return None;
    }
    let valid = || {
        hours
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.map(|c| (i, c)))
    };
    let c_max = valid().map(|(_, c)| c).max()?;
    let c_min = valid().map(|(_, c)| c).min()?;
    if c_max == 0 {
        return Some(0);
    }
    // w = max(c_min / c_max, 1/2) as p / q.
    let (p, q) = if 2 * c_min >= c_max {
        (c_min, c_max)
    } else {
        (1, 2)
    };
    let (p, q) = (BigUint::from(p), BigUint::from(q));
    let last = (NOWCAST_HOURS - 1) as u32;
    let mut num = BigUint::default();
    let mut den = BigUint::default();
    for (i, c) in valid() {
        let i = i as u32;
        let weight = p.pow(i) * q.pow(last - i);
        num += &weight * c;
        den += weight;
    }
    let units = num / (den * unit.max(1));
    Some(u64::try_from(&units).unwrap_or(u64::MAX))
}

/// The 24-hour running mean of `hours` (hundredths), rounded half up;
/// `None` with fewer than [`RUNNING_MIN_VALID`] valid hours.
pub fn running_mean(hours: &Window) -> Option<u64> {
    let valid: Vec<u64> = hours.iter().flatten().copied().collect();
    if valid.len() < RUNNING_MIN_VALID {
        return None;
    }
    let n = valid.len() as u128;
    let sum: u128 = valid.iter().map(|&v| u128::from(v)).sum();
    u64::try_from((2 * sum + n) / (2 * n)).ok()
}

/// The concentrations an hour's indices were computed from, for answers
/// that carry them (NDJSON, GeoJSON).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Basis {
    /// PM2.5 NowCast in tenths of µg/m³ (truncated, as the EPA's
    /// breakpoints take it).
    pub nowcast_pm25: Option<u64>,
    /// PM10 NowCast in whole µg/m³ (truncated).
    pub nowcast_pm10: Option<u64>,
    /// PM2.5 24-hour running mean in hundredths of µg/m³.
    pub mean24_pm25: Option<u64>,
    /// PM10 24-hour running mean in hundredths of µg/m³.
    pub mean24_pm10: Option<u64>,
}

impl Basis {
    /// The four values, in [`Basis::fields`]' order (how a store keeps them).
    pub fn values(&self) -> [Option<u64>; 4] {
        [
            self.nowcast_pm25,
            self.nowcast_pm10,
            self.mean24_pm25,
            self.mean24_pm10,
        ]
    }

    /// A basis from [`Basis::values`].
    pub fn from_values(
        [nowcast_pm25, nowcast_pm10, mean24_pm25, mean24_pm10]: [Option<u64>; 4],
    ) -> Basis {
        Basis {
            nowcast_pm25,
            nowcast_pm10,
            mean24_pm25,
            mean24_pm10,
        }
    }

    /// Each concentration with the name answers give it and its text
    /// (`None` where it is not defined), in answer order.
    pub fn fields(&self) -> [(&'static str, Option<String>); 4] {
        [
            ("nowcastPm25", self.nowcast_pm25.map(|v| decimal_text(v, 1))),
            ("nowcastPm10", self.nowcast_pm10.map(|v| decimal_text(v, 0))),
            ("meanPm25_24h", self.mean24_pm25.map(|v| decimal_text(v, 2))),
            ("meanPm10_24h", self.mean24_pm10.map(|v| decimal_text(v, 2))),
        ]
    }
}

/// The indices of the hour `pm10[0]`/`pm25[0]` describe, from the valid
/// hourly means of it and the 23 hours before ([`Window`]), each on its
/// standard's window; an index is undefined where neither pollutant's
/// window has enough data. Also what they were computed from.
pub fn hour_indices(pm10: &Window, pm25: &Window) -> (Indices, Basis) {
    let basis = Basis {
        nowcast_pm25: nowcast(pm25, 10),
        nowcast_pm10: nowcast(pm10, 100),
        mean24_pm25: running_mean(pm25),
        mean24_pm10: running_mean(pm10),
    };
    // The decimal values below are exact in their shortest text (`12.3`),
    // which is what the breakpoints' truncation and rounding read.
    let tenths = |v: Option<u64>| v.map(|v| v as f64 / 10.0);
    let whole = |v: Option<u64>| v.map(|v| v as f64);
    let hundredths = |v: Option<u64>| v.map(|v| v as f64 / 100.0);
    let indices = Indices::from_fn(|index: Index| {
        let (pm10, pm25) = match index.hourly_averaging() {
            Averaging::NowCast => (whole(basis.nowcast_pm10), tenths(basis.nowcast_pm25)),
            Averaging::RunningMean24h => {
                (hundredths(basis.mean24_pm10), hundredths(basis.mean24_pm25))
            }
        };
        index.of(pm10, pm25).unwrap_or(Indices::UNDEFINED)
    });
    (indices, basis)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window from hundredths, most recent first; missing hours `None`.
    fn window(hours: &[Option<u64>]) -> Window {
        let mut w = [None; RUNNING_HOURS];
        w[..hours.len()].copy_from_slice(hours);
        w
    }

    fn steady(hundredths: u64, n: usize) -> Window {
        window(&vec![Some(hundredths); n])
    }

    #[test]
    fn hour_start_floors_to_the_utc_hour() {
        let t = Timestamp::parse_feed("2026-12-05 13:59:59").unwrap();
        assert_eq!(
            hour_start(t),
            Timestamp::parse_feed("2026-12-05 13:00:00").unwrap()
        );
        assert_eq!(hour_start(Timestamp(-1)), Timestamp(-3600));
    }

    #[test]
    fn an_hour_is_valid_with_nine_of_twelve_values() {
        let mean = |values: &[&str]| {
            let mut s = ExactSum::default();
            for v in values {
                s.add(Some((v, v.parse().unwrap())));
            }
            HourMean::of(s)
        };
        // 8 values of 10.00 and one of 10.05: 90.05 / 9 = 10.00555… → 10.01.
        let mut nine = vec!["10.00"; 8];
        nine.push("10.05");
        let m = mean(&nine).unwrap();
        assert_eq!(
            (m.text(), m.values, m.is_valid()),
            ("10.01".into(), 9, true)
        );
        let m = mean(&nine[..8]).unwrap();
        assert_eq!((m.text(), m.is_valid()), ("10.00".into(), false));
        assert_eq!(mean(&[]), None);
    }

    #[test]
    fn nowcast_is_the_weighted_mean_of_the_definition() {
        let pm25 = |hours: &[Option<u64>]| nowcast(&window(hours), 10);
        let pm10 = |hours: &[Option<u64>]| nowcast(&window(hours), 100);
        // Steady 10.00: w = 1, NowCast 10.0.
        assert_eq!(nowcast(&steady(1000, 12), 10), Some(100));
        assert_eq!(nowcast(&steady(1000, 12), 100), Some(10));
        // Zeros.
        assert_eq!(nowcast(&steady(0, 12), 10), Some(0));
        // Two hours, 20 then 10: w* = 0.5, (20 + 0.5·10) / 1.5 = 16.67.
        assert_eq!(pm25(&[Some(2000), Some(1000)]), Some(166));
        assert_eq!(pm10(&[Some(2000), Some(1000)]), Some(16));
        // Rising to now, 12.00 down to 1.00 twelve hours back: w* = 1/12,
        // w = ½; Σ ½ᵏ(12 − k) / Σ ½ᵏ (k = 0..11) = (12·4095 − 4083) / 4095
        // = 45057 / 4095 = 11.0029…
        let rising: Vec<_> = (1..=12).rev().map(|c| Some(c * 100)).collect();
        assert_eq!(pm25(&rising), Some(110));
        // Falling to now, 1.00 now up to 12.00: (4083 + 4095) / 4095 = 1.997…
        let falling: Vec<_> = (1..=12).map(|c| Some(c * 100)).collect();
        assert_eq!(pm25(&falling), Some(19));
        assert_eq!(pm10(&falling), Some(1));
        // A spike of 100 now over 10: w = ½,
        // (100 + 10·2047/2048) / (4095/2048) = 225270 / 4095 = 55.01…
        let mut spike = vec![Some(1000); 12];
        spike[0] = Some(10_000);
        assert_eq!(pm25(&spike), Some(550));
        assert_eq!(pm10(&spike), Some(55));
        // w between ½ and 1: 10, 8, 10: w = 0.8,
        // (10 + 6.4 + 6.4) / (1 + 0.8 + 0.64) = 22.8 / 2.44 = 9.344…
        assert_eq!(pm25(&[Some(1000), Some(800), Some(1000)]), Some(93));
        // Gaps among the older hours: 10, 10, 10, –, 40: w = ½,
        // (10 + 5 + 2.5 + 40/16) / (1.75 + 1/16) = 20 / 1.8125 = 11.03…
        assert_eq!(
            pm25(&[Some(1000), Some(1000), Some(1000), None, Some(4000)]),
            Some(110)
        );
        // Hours past the twelfth are not weighed.
        let mut old = steady(1000, 24);
        old[12] = Some(90_000);
        assert_eq!(nowcast(&old, 10), Some(100));
    }

    #[test]
    fn nowcast_needs_two_of_the_three_recent_hours() {
        let older = [Some(1000); 9];
        let with = |recent: [Option<u64>; 3]| {
            let mut hours = recent.to_vec();
            hours.extend(older);
            nowcast(&window(&hours), 10)
        };
        assert_eq!(with([Some(1000), Some(1000), Some(1000)]), Some(100));
        assert_eq!(with([Some(1000), None, Some(1000)]), Some(100));
        assert_eq!(with([None, Some(1000), Some(1000)]), Some(100));
        assert_eq!(with([Some(1000), None, None]), None);
        assert_eq!(with([None, None, Some(1000)]), None);
        assert_eq!(nowcast(&[None; 24], 10), None);
    }

    #[test]
    fn nowcast_truncates_exactly() {
        // 35.45 steady: the NowCast is 35.45 exactly, truncated to 35.4
        // (not rounded to 35.5, which is the next US EPA category).
        assert_eq!(nowcast(&steady(3545, 12), 10), Some(354));
        // 9.19 and 9.01: w = 9.01/9.19, exact mean just above 9.1 …
        // (9.19·9.19 + 9.01·9.01) / (9.19 + 9.01) = 165.6362 / 18.2 = 9.1009…
        assert_eq!(nowcast(&window(&[Some(919), Some(901)]), 10), Some(91));
    }

    #[test]
    fn running_means_need_eighteen_of_twenty_four_hours() {
        assert_eq!(running_mean(&steady(1000, 24)), Some(1000));
        assert_eq!(running_mean(&steady(1000, 18)), Some(1000));
        assert_eq!(running_mean(&steady(1000, 17)), None);
        // 17 × 10.00 and one 10.09: 180.09 / 18 = 10.005 → 10.01 (half up).
        let mut w = steady(1000, 18);
        w[5] = Some(1009);
        assert_eq!(running_mean(&w), Some(1001));
        // Gaps anywhere count alike: 18 valid hours spread over 24.
        let mut spread = steady(2000, 24);
        for i in [1, 4, 9, 13, 20, 23] {
            spread[i] = None;
        }
        assert_eq!(running_mean(&spread), Some(2000));
    }

    #[test]
    fn each_index_reads_its_own_window() {
        // PM2.5 steady at 35.45 for 24 hours, no PM10.
        let (indices, basis) = hour_indices(&[None; 24], &steady(3545, 24));
        // NowCast 35.4 → US EPA 100 (35.4 is the top of 9.1–35.4 → 51–100).
        assert_eq!(indices.get(Index::UsEpa), 100);
        // 24-hour mean 35.45 → DAQI rounds to 35 → index 3 (12–35).
        assert_eq!(indices.get(Index::Daqi), 3);
        // EAQI: 15 < 35.45 ≤ 50 → level 3, Moderate.
        assert_eq!(indices.get(Index::Eaqi), 3);
        assert_eq!(
            basis.fields().map(|(_, v)| v),
            [Some("35.4".into()), None, Some("35.45".into()), None]
        );

        // Only 12 hours of data: the NowCast is defined, the 24-hour
        // running means are not.
        let (indices, basis) = hour_indices(&[None; 24], &steady(3545, 12));
        assert_eq!(indices.defined(Index::UsEpa), Some(100));
        assert_eq!(indices.defined(Index::Daqi), None);
        assert_eq!(indices.defined(Index::Eaqi), None);
        assert_eq!(basis.mean24_pm25, None);

        // The higher pollutant decides: PM10 steady 155 (NowCast 155 →
        // US EPA 101) over PM2.5 at 10.0 (US EPA 53 = 51 + 49·9/263 … ).
        let (indices, _) = hour_indices(&steady(15_500, 24), &steady(1000, 24));
        assert_eq!(indices.get(Index::UsEpa), 101);
        // Neither pollutant's recent hours: every index undefined.
        let (indices, _) = hour_indices(&[None; 24], &[None; 24]);
        assert_eq!(indices, Indices::undefined());
    }
}

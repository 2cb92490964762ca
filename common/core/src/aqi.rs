//! The air-quality indices airq computes for every reading, once, at
//! ingestion: the UK DAQI, the US EPA AQI and the European EAQI, for
//! particulate matter (PM10 is the feed's `P1`, PM2.5 its `P2`).
//!
//! Every table below is data with its source beside it, so that a revision
//! of a standard is a change of one line; [`Index`] names the three and
//! gives each one's values and named bands for queries and answers.
//!
//! **DAQI** (DEFRA, "Daily Air Quality Index", 2013 bands, which DEFRA still
//! publishes): bands of whole µg/m³. A measured concentration
//! is first rounded to the nearest whole number (halves up), then looked up in
//! the band table of its pollutant. A reading's index is the higher of its
//! sub-indices, and the index maps to one of four named ranges.

use serde::{Deserialize, Serialize};
use std::fmt;

/// DAQI: upper bound (inclusive, µg/m³) of indices 1..=9 for PM2.5; 10 is
/// anything above. Source: DEFRA, uk-air.defra.gov.uk/air-pollution/daqi.
const PM25_UPPER: [u32; 9] = [11, 23, 35, 41, 47, 53, 58, 64, 70];
/// Upper bound (inclusive, µg/m³) of indices 1..=9 for PM10; 10 is anything above.
const PM10_UPPER: [u32; 9] = [16, 33, 50, 58, 66, 75, 83, 91, 100];

/// Lowest and highest index a reading can have.
pub const MIN_INDEX: u8 = 1;
pub const MAX_INDEX: u8 = 10;

/// Rounds a concentration to the nearest whole µg/m³, halves up.
/// Callers validate that `ugm3` is finite and non-negative first.
fn round_half_up(ugm3: f64) -> u32 {
    // `floor(x + 0.5)` is "halves up" for non-negative x; the cast saturates.
    (ugm3 + 0.5).floor() as u32
}

fn band_index(ugm3: f64, upper: &[u32; 9]) -> u8 {
    let c = round_half_up(ugm3);
    1 + upper.iter().take_while(|&&u| c > u).count() as u8
}

/// DAQI sub-index (1..=10) of a PM2.5 concentration (the feed's `P2`).
pub fn pm25_index(ugm3: f64) -> u8 {
    band_index(ugm3, &PM25_UPPER)
}

/// DAQI sub-index (1..=10) of a PM10 concentration (the feed's `P1`).
pub fn pm10_index(ugm3: f64) -> u8 {
    band_index(ugm3, &PM10_UPPER)
}

/// The reading's index: the higher of the sub-indices present, `None` when
/// neither pollutant was measured.
pub fn daqi(pm10: Option<f64>, pm25: Option<f64>) -> Option<u8> {
    match (pm10.map(pm10_index), pm25.map(pm25_index)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

// ---- US EPA AQI ----

/// US EPA AQI breakpoints for PM2.5, 24-hour mean, in tenths of µg/m³
/// (after truncation to 0.1 µg/m³), with the index range each maps to.
/// Source: US EPA, "Final Reconsideration of the National Ambient Air
/// Quality Standards for Particulate Matter", 40 CFR Part 58 Appendix G,
/// Table 2 as revised 2024-02-07, effective 2024-05-06.
const US_EPA_PM25_TENTHS: [(u64, u64, u16, u16); 6] = [
    (0, 90, 0, 50),
    (91, 354, 51, 100),
    (355, 554, 101, 150),
    (555, 1254, 151, 200),
    (1255, 2254, 201, 300),
    (2255, 3254, 301, 500),
];
/// US EPA AQI breakpoints for PM10, 24-hour mean, in whole µg/m³ (after
/// truncation to 1 µg/m³). Same source and revision.
const US_EPA_PM10: [(u64, u64, u16, u16); 6] = [
    (0, 54, 0, 50),
    (55, 154, 51, 100),
    (155, 254, 101, 150),
    (255, 354, 151, 200),
    (355, 424, 201, 300),
    (425, 604, 301, 500),
];

/// `ugm3` truncated to `1/scale` µg/m³, as a whole number of those units.
///
/// Truncation is done on the number's shortest decimal text (what `{}`
/// prints: `9.1`, never `9.0999…`), so that a sensor's `9.1` is 9.1 and
/// not the binary float just below it. Callers validate that `ugm3` is
/// finite and non-negative first; negative zero (which passes `>= 0.0`
/// and which `{}` prints as `-0`) is zero.
fn truncated(ugm3: f64, decimals: usize) -> u64 {
    // `-0.0 + 0.0` is `+0.0` (IEEE 754 round-to-nearest); every other
    // value is unchanged.
    let text = format!("{}", ugm3 + 0.0);
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let mut units: u64 = whole.parse().unwrap_or(u64::MAX / 1000);
    for i in 0..decimals {
        let digit = fraction
            .as_bytes()
            .get(i)
            .map_or(0, |d| u64::from(d - b'0'));
        units = units.saturating_mul(10).saturating_add(digit);
    }
    units
}

/// The linear interpolation of the EPA's formula on whole units, rounded
/// half up: `I = (Ihi − Ilo) / (BPhi − BPlo) × (C − BPlo) + Ilo`. Above the
/// top breakpoint the index is 500.
fn us_epa_sub_index(c: u64, table: &[(u64, u64, u16, u16); 6]) -> u16 {
    for &(bp_lo, bp_hi, i_lo, i_hi) in table {
        if c <= bp_hi {
            let c = c.max(bp_lo);
            let num = u64::from(i_hi - i_lo) * (c - bp_lo);
            let den = bp_hi - bp_lo;
            // Exact rational rounding: floor(num/den + 1/2).
            return i_lo + ((2 * num + den) / (2 * den)) as u16;
        }
    }
    500
}

/// US EPA sub-index (0..=500) of a 24-hour PM2.5 concentration.
pub fn us_epa_pm25(ugm3: f64) -> u16 {
    us_epa_sub_index(truncated(ugm3, 1), &US_EPA_PM25_TENTHS)
}

/// US EPA sub-index (0..=500) of a 24-hour PM10 concentration.
pub fn us_epa_pm10(ugm3: f64) -> u16 {
    us_epa_sub_index(truncated(ugm3, 0), &US_EPA_PM10)
}

/// The reading's US EPA AQI: the higher of the sub-indices present.
pub fn us_epa(pm10: Option<f64>, pm25: Option<f64>) -> Option<u16> {
    match (pm10.map(us_epa_pm10), pm25.map(us_epa_pm25)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

// ---- European Air Quality Index ----

/// EAQI upper bounds (inclusive, µg/m³, on the value as sent) of levels
/// 1..=5 for PM2.5; level 6 (Extremely poor) is anything above. Source:
/// European Environment Agency, European Air Quality Index, thresholds as
/// revised in 2023 after the WHO 2021 guidelines (24-hour running means).
const EAQI_PM25_UPPER: [f64; 5] = [5.0, 15.0, 50.0, 90.0, 140.0];
/// EAQI upper bounds for PM10. Same source.
const EAQI_PM10_UPPER: [f64; 5] = [15.0, 45.0, 120.0, 195.0, 270.0];

fn eaqi_level(ugm3: f64, upper: &[f64; 5]) -> u8 {
    1 + upper.iter().take_while(|&&u| ugm3 > u).count() as u8
}

/// EAQI level (1..=6) of a PM2.5 concentration.
pub fn eaqi_pm25(ugm3: f64) -> u8 {
    eaqi_level(ugm3, &EAQI_PM25_UPPER)
}

/// EAQI level (1..=6) of a PM10 concentration.
pub fn eaqi_pm10(ugm3: f64) -> u8 {
    eaqi_level(ugm3, &EAQI_PM10_UPPER)
}

/// The reading's EAQI level: the worse of the pollutants present.
pub fn eaqi(pm10: Option<f64>, pm25: Option<f64>) -> Option<u8> {
    match (pm10.map(eaqi_pm10), pm25.map(eaqi_pm25)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

// ---- the three, for queries and answers ----

/// A reading's value in each index, computed together at ingestion, held
/// by [`Index`] so that code handling every index (storage, answers,
/// migrations) loops over [`Index::ALL`] instead of naming each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Indices([u16; Index::COUNT]);

impl Indices {
    /// Every index at its lowest value: what a placeholder reading (one
    /// whose indices are computed later) starts with.
    pub fn lowest() -> Indices {
        Indices::from_fn(Index::min)
    }

    /// The indices of a reading, `None` when neither pollutant was
    /// measured.
    pub fn of(pm10: Option<f64>, pm25: Option<f64>) -> Option<Indices> {
        Indices::try_from_fn(|index| index.of(pm10, pm25).ok_or(())).ok()
    }

    /// The indices of the values as stored (text as sent). Text that
    /// is not a finite, non-negative number counts as not measured.
    pub fn of_text(p1: Option<&str>, p2: Option<&str>) -> Option<Indices> {
        let value = |t: Option<&str>| {
            t.and_then(|t| t.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        Indices::of(value(p1), value(p2))
    }

    /// Indices from each index's value (e.g. as a backend reads them back).
    pub fn from_fn(mut value: impl FnMut(Index) -> u16) -> Indices {
        Indices(Index::ALL.map(&mut value))
    }

    /// Indices from each index's value, or the first error.
    pub fn try_from_fn<E>(mut value: impl FnMut(Index) -> Result<u16, E>) -> Result<Indices, E> {
        let mut values = [0; Index::COUNT];
        for index in Index::ALL {
            values[index.position()] = value(index)?;
        }
        Ok(Indices(values))
    }

    /// The value in `index` ([`Indices::UNDEFINED`] where an hour of the
    /// live tier has too little data for it).
    pub fn get(self, index: Index) -> u16 {
        self.0[index.position()]
    }

    /// What an index holds where it is not defined: an hour of the live
    /// tier without enough valid hours in its standard's averaging window
    /// (see [`crate::hourly`]). Answers show it as an empty cell (CSV) or
    /// `null` (JSON), filters on the index never select it, and no daily
    /// reading ever holds it.
    pub const UNDEFINED: u16 = u16::MAX;

    /// Every index undefined.
    pub fn undefined() -> Indices {
        Indices([Indices::UNDEFINED; Index::COUNT])
    }

    /// The value in `index`, `None` where it is not defined.
    pub fn defined(self, index: Index) -> Option<u16> {
        Some(self.get(index)).filter(|&v| v != Indices::UNDEFINED)
    }

    /// Sets the value in `index`.
    pub fn set(&mut self, index: Index, value: u16) {
        self.0[index.position()] = value;
    }

    /// The values in [`Index::ALL`]'s order.
    pub fn values(self) -> [u16; Index::COUNT] {
        self.0
    }

    /// Each index with its value, in [`Index::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = (Index, u16)> {
        Index::ALL.into_iter().map(move |i| (i, self.get(i)))
    }
}

/// Values in [`Index::ALL`]'s order.
impl From<[u16; Index::COUNT]> for Indices {
    fn from(values: [u16; Index::COUNT]) -> Indices {
        Indices(values)
    }
}

/// One named band of an index: its label, the values (inclusive) it
/// covers, and how its publisher shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandDef {
    pub label: &'static str,
    pub lo: u16,
    pub hi: u16,
    /// The publisher's colour of the band (`#RRGGBB`); `None` where the
    /// publisher colours each value instead ([`Index::value_colours`]).
    pub colour: Option<&'static str>,
    /// A shorter label, where a chart has no room for the whole one.
    pub abbr: Option<&'static str>,
}

const fn band(label: &'static str, lo: u16, hi: u16) -> BandDef {
    BandDef {
        label,
        lo,
        hi,
        colour: None,
        abbr: None,
    }
}

const fn shown(label: &'static str, lo: u16, hi: u16, colour: &'static str) -> BandDef {
    BandDef {
        label,
        lo,
        hi,
        colour: Some(colour),
        abbr: None,
    }
}

const fn abbreviated(b: BandDef, abbr: &'static str) -> BandDef {
    BandDef {
        abbr: Some(abbr),
        ..b
    }
}

/// DAQI bands (DEFRA's labels; DEFRA colours each value: see
/// [`DAQI_VALUE_COLOURS`]).
const DAQI_BANDS: [BandDef; 4] = [
    band("Low", 1, 3),
    band("Moderate", 4, 6),
    band("High", 7, 9),
    band("Very High", 10, 10),
];
/// The colours DEFRA gives the DAQI's values 1 to 10 (the "Daily Air
/// Quality Index" banding table of uk-air.defra.gov.uk).
const DAQI_VALUE_COLOURS: [&str; 10] = [
    "#9CFF9C", "#31FF00", "#31CF00", "#FFFF00", "#FFCF00", "#FF9A00", "#FF6464", "#FF0000",
    "#990000", "#CE30FF",
];
/// US EPA AQI categories (same source as the breakpoints) and AirNow's
/// colours for them.
const US_EPA_BANDS: [BandDef; 6] = [
    shown("Good", 0, 50, "#00E400"),
    shown("Moderate", 51, 100, "#FFFF00"),
    abbreviated(
        shown("Unhealthy for Sensitive Groups", 101, 150, "#FF7E00"),
        "USG",
    ),
    shown("Unhealthy", 151, 200, "#FF0000"),
    abbreviated(shown("Very Unhealthy", 201, 300, "#8F3F97"), "V. Unhealthy"),
    shown("Hazardous", 301, 500, "#7E0023"),
];
/// EAQI levels (the EEA's labels and colours).
const EAQI_BANDS: [BandDef; 6] = [
    shown("Good", 1, 1, "#50F0E6"),
    shown("Fair", 2, 2, "#50CCAA"),
    shown("Moderate", 3, 3, "#F0E641"),
    shown("Poor", 4, 4, "#FF5050"),
    shown("Very poor", 5, 5, "#960032"),
    abbreviated(shown("Extremely poor", 6, 6, "#7D2181"), "Ext. poor"),
];

/// How a standard averages the hourly means before its breakpoints apply
/// (see [`Index::hourly_averaging`] and [`crate::hourly`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Averaging {
    /// The US EPA NowCast of the 12 most recent hourly means.
    NowCast,
    /// The mean of the 24 most recent hourly means, valid with 18 of them.
    RunningMean24h,
}

impl Averaging {
    /// Its name for people: `NowCast`, `24-hour running mean`.
    pub fn label(self) -> &'static str {
        match self {
            Averaging::NowCast => "NowCast",
            Averaging::RunningMean24h => "24-hour running mean",
        }
    }
}

/// Which index a query filters on and an answer shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Index {
    /// UK DAQI, 1–10 (the default, and the only index of the first system).
    #[default]
    #[serde(rename = "daqi")]
    Daqi,
    /// US EPA AQI, 0–500, 2024 revision.
    #[serde(rename = "us-epa")]
    UsEpa,
    /// European Air Quality Index, levels 1–6.
    #[serde(rename = "eaqi")]
    Eaqi,
}

impl Index {
    pub const ALL: [Index; 3] = [Index::Daqi, Index::UsEpa, Index::Eaqi];
    /// How many indices there are.
    pub const COUNT: usize = Index::ALL.len();

    /// This index's place in [`Index::ALL`] (its discriminant: the
    /// assertion below keeps the two orders one).
    pub const fn position(self) -> usize {
        self as usize
    }

    /// A reading's value in this index from its concentrations (µg/m³),
    /// `None` when neither was measured.
    pub fn of(self, pm10: Option<f64>, pm25: Option<f64>) -> Option<u16> {
        match self {
            Index::Daqi => daqi(pm10, pm25).map(u16::from),
            Index::UsEpa => us_epa(pm10, pm25),
            Index::Eaqi => eaqi(pm10, pm25).map(u16::from),
        }
    }

    /// The averaging window this index's standard puts PM on when it is
    /// computed hourly (the live tier, [`crate::hourly`]); the daily series
    /// is a 24-hour mean for every index.
    ///
    /// - US EPA: the NowCast of the hourly means. Source: US EPA, "Technical
    ///   Assistance Document for the Reporting of Daily Air Quality – the Air
    ///   Quality Index (AQI)", EPA-454/B-24-002, May 2024, section on the
    ///   NowCast (the AQI of "current" conditions, AirNow's hourly AQI).
    /// - UK DAQI: the 24-hour running mean of hourly means. Source: DEFRA,
    ///   uk-air.defra.gov.uk/air-pollution/daqi ("PM2.5 and PM10: 24 hour
    ///   running mean").
    /// - EAQI: the 24-hour running mean of the past 24 hours. Source: the
    ///   EEA's European Air Quality Index, airindex.eea.europa.eu ("For PM10
    ///   and PM2.5 the 24-hour running means for the past 24 hours are fed
    ///   into the calculation of the index"; NO2, O3 and SO2 use hourly
    ///   values).
    pub fn hourly_averaging(self) -> Averaging {
        match self {
            Index::UsEpa => Averaging::NowCast,
            Index::Daqi | Index::Eaqi => Averaging::RunningMean24h,
        }
    }

    /// The name queries use: `daqi`, `us-epa`, `eaqi`.
    pub fn name(self) -> &'static str {
        match self {
            Index::Daqi => "daqi",
            Index::UsEpa => "us-epa",
            Index::Eaqi => "eaqi",
        }
    }

    /// Parses a name case-insensitively (`US-EPA`, `us_epa` too).
    pub fn parse(name: &str) -> Option<Index> {
        Index::ALL
            .into_iter()
            .find(|i| crate::name::matches(name, i.name()))
    }

    /// Its name for people: `UK DAQI`, `US EPA AQI`, `European EAQI`.
    pub fn title(self) -> &'static str {
        match self {
            Index::Daqi => "UK DAQI",
            Index::UsEpa => "US EPA AQI",
            Index::Eaqi => "European EAQI",
        }
    }

    /// Its short name for people: `DAQI`, `US EPA`, `EAQI`.
    pub fn short(self) -> &'static str {
        match self {
            Index::Daqi => "DAQI",
            Index::UsEpa => "US EPA",
            Index::Eaqi => "EAQI",
        }
    }

    /// The lowest `minAqi`/`maxAqi` a query takes on this index: its lowest
    /// value, but for the DAQI, whose `minAqi` has always taken 0 ("no
    /// lower bound", as the first system's clients send it).
    pub fn floor(self) -> u16 {
        match self {
            Index::Daqi => 0,
            other => other.min(),
        }
    }

    /// The publisher's colour of each value from [`Index::min`] up, where
    /// it colours values rather than bands (DAQI); empty otherwise.
    pub fn value_colours(self) -> &'static [&'static str] {
        match self {
            Index::Daqi => &DAQI_VALUE_COLOURS,
            Index::UsEpa | Index::Eaqi => &[],
        }
    }

    /// The named bands, lowest first; they cover every value without gaps.
    pub fn bands(self) -> &'static [BandDef] {
        match self {
            Index::Daqi => &DAQI_BANDS,
            Index::UsEpa => &US_EPA_BANDS,
            Index::Eaqi => &EAQI_BANDS,
        }
    }

    /// Lowest value a reading can have.
    pub fn min(self) -> u16 {
        self.bands()[0].lo
    }

    /// Highest value a reading can have.
    pub fn max(self) -> u16 {
        self.bands()[self.bands().len() - 1].hi
    }

    /// The position (in [`Index::bands`]) of the band `value` is in;
    /// out-of-range values clamp to the first or last band.
    pub fn band_of(self, value: u16) -> usize {
        let bands = self.bands();
        bands
            .iter()
            .position(|b| value <= b.hi)
            .unwrap_or(bands.len() - 1)
    }

    /// For each band, lowest first, the lowest PM2.5 concentration
    /// (µg/m³, to the hundredth) whose index alone is in that band or
    /// above: where the band begins on a PM2.5 axis (a chart's band
    /// colours). Found from [`Index::of`] itself, by bisection over
    /// hundredths up to 1,000 µg/m³, so it cannot disagree with it.
    pub fn pm25_band_starts(self) -> Vec<f64> {
        const TOP: u32 = 100_000;
        let value = |hundredths: u32| {
            self.of(None, Some(f64::from(hundredths) / 100.0))
                .unwrap_or(0)
        };
        self.bands()
            .iter()
            .map(|b| {
                let (mut lo, mut hi) = (0u32, TOP);
                if value(lo) >= b.lo {
                    return 0.0;
                }
                // value(lo) < b.lo <= value(hi), or the band is out of reach.
                if value(hi) < b.lo {
                    return f64::from(TOP) / 100.0;
                }
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if value(mid) >= b.lo {
                        hi = mid;
                    } else {
                        lo = mid;
                    }
                }
                f64::from(hi) / 100.0
            })
            .collect()
    }

    /// The label of the band `value` is in.
    pub fn label(self, value: u16) -> &'static str {
        self.bands()[self.band_of(value)].label
    }

    /// Other names a band of this index is taken by, as `(alias, label)`:
    /// the DAQI's `Medium` for `Moderate` (the first client of this system
    /// sent it).
    pub fn band_aliases(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Index::Daqi => &[("Medium", "Moderate")],
            Index::UsEpa | Index::Eaqi => &[],
        }
    }

    /// `UK DAQI, 1–10`: the title and the scale, for descriptions.
    pub fn summary(self) -> String {
        format!("{}, {}–{}", self.title(), self.min(), self.max())
    }

    /// Parses a band name of this index, case-insensitively and ignoring
    /// spaces, `_` and `-`, or one of its [`Index::band_aliases`]. Returns
    /// its position.
    pub fn parse_band(self, name: &str) -> Option<usize> {
        let label = self
            .band_aliases()
            .iter()
            .find(|(alias, _)| crate::name::matches(name, alias))
            .map_or(name, |(_, label)| label);
        self.bands()
            .iter()
            .position(|b| crate::name::matches(label, b.label))
    }

    /// The band labels, for error messages: `"Good", "Fair", …`.
    pub fn band_list(self) -> String {
        self.bands()
            .iter()
            .map(|b| format!("{:?}", b.label))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

// `Index::position` is the discriminant; `Index::ALL` must list the
// variants in declaration order for it to be the place in `ALL`.
const _: () = {
    let mut i = 0;
    while i < Index::COUNT {
        assert!(
            Index::ALL[i] as usize == i,
            "Index::ALL is out of declaration order"
        );
        i += 1;
    }
};

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pm25_band_starts_are_the_breakpoints() {
        use super::Index;
        // EAQI: upper bounds 5, 15, 50, 90, 140 inclusive, on the value.
        assert_eq!(
            Index::Eaqi.pm25_band_starts(),
            [0.0, 5.01, 15.01, 50.01, 90.01, 140.01]
        );
        // US EPA 2024: Moderate from 9.1, then 35.5, 55.5, 125.5, 225.5
        // (truncated to 0.1 µg/m³).
        assert_eq!(
            Index::UsEpa.pm25_band_starts(),
            [0.0, 9.1, 35.5, 55.5, 125.5, 225.5]
        );
        // DAQI: Moderate (4) above 35, High (7) above 53, Very High (10)
        // above 70, on the concentration rounded half up: 35.5, 53.5, 70.5.
        assert_eq!(Index::Daqi.pm25_band_starts(), [0.0, 35.5, 53.5, 70.5]);
    }

    use super::*;

    #[test]
    fn pm25_band_boundaries() {
        // (concentration, expected index): last value of each band, then the
        // first of the next, including the rounding edges.
        let cases = [
            (0.0, 1),
            (11.0, 1),
            (11.4, 1),
            (11.49, 1),
            (11.5, 2),
            (12.0, 2),
            (23.4, 2),
            (23.5, 3),
            (35.4, 3),
            (35.5, 4),
            (41.4, 4),
            (41.5, 5),
            (47.4, 5),
            (47.5, 6),
            (53.4, 6),
            (53.5, 7),
            (58.4, 7),
            (58.5, 8),
            (64.4, 8),
            (64.5, 9),
            (70.4, 9),
            (70.5, 10),
            (71.0, 10),
            (998.0, 10),
        ];
        for (c, want) in cases {
            assert_eq!(pm25_index(c), want, "PM2.5 {c}");
        }
    }

    #[test]
    fn pm10_band_boundaries() {
        let cases = [
            (0.0, 1),
            (16.4, 1),
            (16.5, 2),
            (33.4, 2),
            (33.5, 3),
            (50.4, 3),
            (50.5, 4),
            (58.4, 4),
            (58.5, 5),
            (66.4, 5),
            (66.5, 6),
            (75.4, 6),
            (75.5, 7),
            (83.4, 7),
            (83.5, 8),
            (91.4, 8),
            (91.5, 9),
            (100.4, 9),
            (100.5, 10),
            (101.0, 10),
            (1999.0, 10),
        ];
        for (c, want) in cases {
            assert_eq!(pm10_index(c), want, "PM10 {c}");
        }
    }

    #[test]
    fn same_concentration_differs_by_pollutant() {
        // 20 µg/m³ is index 2 for PM2.5 but index 2 for PM10 too; 30 splits them.
        assert_eq!(pm25_index(30.0), 3);
        assert_eq!(pm10_index(30.0), 2);
        // 45: PM2.5 index 5, PM10 index 3.
        assert_eq!(pm25_index(45.0), 5);
        assert_eq!(pm10_index(45.0), 3);
    }

    #[test]
    fn reading_index_is_the_higher_sub_index() {
        assert_eq!(daqi(Some(45.0), Some(45.0)), Some(5)); // PM10 3, PM2.5 5
        assert_eq!(daqi(Some(120.0), Some(5.0)), Some(10)); // PM10 10, PM2.5 1
        assert_eq!(daqi(Some(20.0), None), Some(2));
        assert_eq!(daqi(None, Some(20.0)), Some(2));
        assert_eq!(daqi(None, None), None);
    }

    #[test]
    fn band_labels_cover_every_index() {
        let got: Vec<_> = (1..=10).map(|i| Index::Daqi.label(i)).collect();
        assert_eq!(
            got,
            [
                "Low",
                "Low",
                "Low",
                "Moderate",
                "Moderate",
                "Moderate",
                "High",
                "High",
                "High",
                "Very High"
            ]
        );
        for (k, band) in Index::Daqi.bands().iter().enumerate() {
            assert!((band.lo..=band.hi).all(|i| Index::Daqi.band_of(i) == k));
        }
    }

    #[test]
    fn band_names_parse_leniently() {
        let daqi = |name| Index::Daqi.parse_band(name);
        assert_eq!(daqi("Medium"), Some(1), "Moderate");
        assert_eq!(daqi("moderate"), Some(1));
        assert_eq!(daqi("Very High"), Some(3));
        assert_eq!(daqi("VERY_HIGH"), Some(3));
        assert_eq!(daqi("Severe"), None);
        assert_eq!(daqi(""), None);
    }

    #[test]
    fn us_epa_pm25_every_breakpoint_both_sides() {
        // (µg/m³, index): each breakpoint's last value and the next one's
        // first, values that truncate onto a breakpoint, interior points
        // that round both ways, and beyond the top of the table.
        let cases = [
            (0.0, 0),
            (0.1, 1),  // 50/9.0 × 0.1 = 0.56 → 1
            (4.5, 25), // exactly 25
            (9.0, 50),
            (9.09, 50), // truncated to 9.0
            (9.1, 51),  // 9.1 is 9.1, not the float below it
            (12.0, 56), // 56.40 → 56
            (35.4, 100),
            (35.49, 100),
            (35.5, 101),
            (55.4, 150),
            (55.5, 151),
            (125.4, 200),
            (125.5, 201),
            (225.4, 300),
            (225.5, 301),
            (325.4, 500),
            (325.49, 500),
            (325.5, 500), // above the top breakpoint: Hazardous, 500
            (999.0, 500),
        ];
        for (c, want) in cases {
            assert_eq!(us_epa_pm25(c), want, "PM2.5 {c}");
        }
    }

    #[test]
    fn us_epa_pm10_every_breakpoint_both_sides() {
        let cases = [
            (0.0, 0),
            (1.0, 1),   // 50/54 = 0.93 → 1
            (10.0, 9),  // 9.26 → 9
            (11.0, 10), // 10.19 → 10
            (54.0, 50),
            (54.9, 50), // truncated to 54
            (55.0, 51),
            (154.0, 100),
            (154.99, 100),
            (155.0, 101),
            (254.0, 150),
            (255.0, 151),
            (354.0, 200),
            (355.0, 201),
            (424.0, 300),
            (425.0, 301),
            (604.0, 500),
            (604.9, 500),
            (605.0, 500),
            (1999.0, 500),
        ];
        for (c, want) in cases {
            assert_eq!(us_epa_pm10(c), want, "PM10 {c}");
        }
    }

    #[test]
    fn us_epa_reading_is_the_higher_sub_index_or_the_one_present() {
        // PM10 60: (49/99)·5 + 51 = 53.47 → 53; PM2.5 12: 56.
        assert_eq!(us_epa_pm10(60.0), 53);
        assert_eq!(us_epa(Some(60.0), Some(12.0)), Some(56));
        assert_eq!(us_epa(Some(160.0), Some(12.0)), Some(us_epa_pm10(160.0)));
        assert_eq!(us_epa(None, Some(12.0)), Some(56));
        assert_eq!(us_epa(Some(60.0), None), Some(53));
        assert_eq!(us_epa(None, None), None);
    }

    #[test]
    fn eaqi_every_threshold_both_sides() {
        let pm25 = [
            (0.0, 1),
            (5.0, 1),
            (5.01, 2),
            (15.0, 2),
            (15.1, 3),
            (50.0, 3),
            (50.1, 4),
            (90.0, 4),
            (90.1, 5),
            (140.0, 5),
            (140.1, 6),
            (999.0, 6),
        ];
        for (c, want) in pm25 {
            assert_eq!(eaqi_pm25(c), want, "PM2.5 {c}");
        }
        let pm10 = [
            (0.0, 1),
            (15.0, 1),
            (15.1, 2),
            (45.0, 2),
            (45.1, 3),
            (120.0, 3),
            (120.1, 4),
            (195.0, 4),
            (195.1, 5),
            (270.0, 5),
            (270.1, 6),
            (1999.0, 6),
        ];
        for (c, want) in pm10 {
            assert_eq!(eaqi_pm10(c), want, "PM10 {c}");
        }
        // The worse of the two, or the one present.
        assert_eq!(eaqi(Some(50.0), Some(4.0)), Some(3));
        assert_eq!(eaqi(Some(10.0), Some(100.0)), Some(5));
        assert_eq!(eaqi(None, Some(16.0)), Some(3));
        assert_eq!(eaqi(Some(16.0), None), Some(2));
        assert_eq!(eaqi(None, None), None);
    }

    #[test]
    fn negative_zero_is_zero_in_every_index() {
        // A zero concentration is the bottom of every scale: DAQI 1 ("Low",
        // 0–11 µg/m³), US EPA 0 (the table's first breakpoint, C = 0 gives
        // I = 0), EAQI 1 ("Good", up to 5 / 15 µg/m³).
        for text in ["-0", "-0.0", "-0.00", "-0e0", "+0", "0", "0.0", "-0E0"] {
            let i = Indices::of_text(Some(text), Some(text))
                .unwrap_or_else(|| panic!("{text} is a measured zero"));
            assert_eq!(i.values(), [1, 0, 1], "P1 = P2 = {text}");
            let only_p2 = Indices::of_text(None, Some(text)).unwrap();
            assert_eq!(only_p2.values(), [1, 0, 1]);
        }
        assert_eq!(us_epa_pm25(-0.0), 0);
        assert_eq!(us_epa_pm10(-0.0), 0);
        // Other spellings of numbers parse to the number they name:
        // 9.1 µg/m³ PM2.5 is the second row's first breakpoint (9.1–35.4
        // µg/m³ → 51–100), so US EPA 51.
        for text in ["9.1", "+9.1", "09.1", "009.10", "91e-1"] {
            assert_eq!(
                Indices::of_text(None, Some(text))
                    .unwrap()
                    .get(Index::UsEpa),
                51,
                "{text}"
            );
        }
        // .5 µg/m³ PM2.5: 50/9.0 × 0.5 = 2.78 → 3.
        assert_eq!(
            Indices::of_text(None, Some(".5"))
                .unwrap()
                .get(Index::UsEpa),
            3
        );
    }

    #[test]
    fn indices_of_stored_text() {
        let i = Indices::of_text(Some("60"), Some("12.0")).unwrap();
        assert_eq!(
            i.values(),
            [u16::from(daqi(Some(60.0), Some(12.0)).unwrap()), 56, 3]
        );
        assert_eq!(Indices::of_text(None, None), None);
        assert_eq!(Indices::of_text(Some("x"), None), None, "not a number");
        assert_eq!(i.get(Index::UsEpa), 56);
        assert_eq!(i.get(Index::Eaqi), 3);
    }

    #[test]
    fn every_index_has_contiguous_named_bands() {
        for index in Index::ALL {
            let bands = index.bands();
            for pair in bands.windows(2) {
                assert_eq!(pair[0].hi + 1, pair[1].lo, "{index}: a gap or overlap");
            }
            for v in index.min()..=index.max() {
                let b = &bands[index.band_of(v)];
                assert!((b.lo..=b.hi).contains(&v));
                assert_eq!(index.label(v), b.label);
            }
            for (i, b) in bands.iter().enumerate() {
                assert_eq!(index.parse_band(b.label), Some(i));
                assert_eq!(index.parse_band(&b.label.to_uppercase()), Some(i));
            }
            assert_eq!(Index::parse(index.name()), Some(index));
        }
        assert_eq!((Index::UsEpa.min(), Index::UsEpa.max()), (0, 500));
        assert_eq!((Index::Eaqi.min(), Index::Eaqi.max()), (1, 6));
        assert_eq!(Index::UsEpa.label(125), "Unhealthy for Sensitive Groups");
        assert_eq!(Index::Eaqi.label(6), "Extremely poor");
        assert_eq!(Index::Daqi.parse_band("Medium"), Some(1));
        assert_eq!(Index::Eaqi.parse_band("very_poor"), Some(4));
        assert_eq!(
            Index::Eaqi.parse_band("Low"),
            None,
            "a DAQI band is not an EAQI one"
        );
        assert_eq!(Index::parse("US_EPA"), Some(Index::UsEpa));
        assert_eq!(Index::parse("aqi"), None);
    }
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    /// What the page and the API description read: every index named for
    /// people, a floor, and a colour for every value or every band.
    #[test]
    fn every_index_says_how_it_is_shown() {
        let mut titles: Vec<&str> = Index::ALL.iter().map(|i| i.title()).collect();
        titles.dedup();
        assert_eq!(titles.len(), Index::ALL.len());
        assert_eq!(Index::Daqi.floor(), 0, "the first system's minAqi 0");
        assert_eq!(Index::UsEpa.floor(), 0);
        assert_eq!(Index::Eaqi.floor(), 1);
        let hex = |c: &str| {
            c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|d| d.is_ascii_hexdigit())
        };
        for ix in Index::ALL {
            let values = usize::from(ix.max() - ix.min()) + 1;
            let by_value = ix.value_colours();
            if by_value.is_empty() {
                assert!(
                    ix.bands().iter().all(|b| b.colour.is_some_and(hex)),
                    "{ix:?}: a colour per band"
                );
            } else {
                assert_eq!(by_value.len(), values, "{ix:?}: a colour per value");
                assert!(by_value.iter().all(|c| hex(c)));
            }
        }
        // DEFRA's table: 1 is #9CFF9C, 10 is #CE30FF.
        assert_eq!(Index::Daqi.value_colours()[0], "#9CFF9C");
        assert_eq!(Index::Daqi.value_colours()[9], "#CE30FF");
    }
}

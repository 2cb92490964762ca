//! The UK Daily Air Quality Index (DEFRA DAQI) for particulate matter.
//!
//! DEFRA publishes the index as bands of whole µg/m³. A measured concentration
//! is first rounded to the nearest whole number (halves up), then looked up in
//! the band table of its pollutant. A reading's index is the higher of its
//! sub-indices, and the index maps to one of four named ranges.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Upper bound (inclusive, µg/m³) of indices 1..=9 for PM2.5; 10 is anything above.
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

/// The named range ("band") of an index, as DEFRA labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Band {
    Low,
    Moderate,
    High,
    #[serde(rename = "Very High")]
    VeryHigh,
}

impl Band {
    pub const ALL: [Band; 4] = [Band::Low, Band::Moderate, Band::High, Band::VeryHigh];

    /// The band an index (1..=10) belongs to. Out-of-range inputs clamp.
    pub fn of_index(index: u8) -> Band {
        match index {
            0..=3 => Band::Low,
            4..=6 => Band::Moderate,
            7..=9 => Band::High,
            _ => Band::VeryHigh,
        }
    }

    /// The indices (inclusive) this band covers.
    pub fn indices(self) -> (u8, u8) {
        match self {
            Band::Low => (1, 3),
            Band::Moderate => (4, 6),
            Band::High => (7, 9),
            Band::VeryHigh => (10, 10),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Band::Low => "Low",
            Band::Moderate => "Moderate",
            Band::High => "High",
            Band::VeryHigh => "Very High",
        }
    }

    /// Parses a band name as users type it: case-insensitive, with `Medium`
    /// accepted for `Moderate` (the first client of this system sent it) and
    /// `VeryHigh`/`Very_High` for `Very High`.
    pub fn parse(name: &str) -> Option<Band> {
        let norm: String = name
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect();
        match norm.as_str() {
            "low" => Some(Band::Low),
            "moderate" | "medium" => Some(Band::Moderate),
            "high" => Some(Band::High),
            "veryhigh" => Some(Band::VeryHigh),
            _ => None,
        }
    }
}

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
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
        let got: Vec<_> = (1..=10).map(|i| Band::of_index(i).label()).collect();
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
        for band in Band::ALL {
            let (lo, hi) = band.indices();
            assert!((lo..=hi).all(|i| Band::of_index(i) == band));
        }
    }

    #[test]
    fn band_names_parse_leniently() {
        assert_eq!(Band::parse("Medium"), Some(Band::Moderate));
        assert_eq!(Band::parse("moderate"), Some(Band::Moderate));
        assert_eq!(Band::parse("Very High"), Some(Band::VeryHigh));
        assert_eq!(Band::parse("VERY_HIGH"), Some(Band::VeryHigh));
        assert_eq!(Band::parse("Severe"), None);
        assert_eq!(Band::parse(""), None);
    }
}

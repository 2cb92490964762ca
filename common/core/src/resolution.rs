//! The series airq keeps, one per time resolution: what a query's
//! `resolution` names, how far apart its readings are, how long a query on
//! it may span and how long a deployment keeps it by default. Everything
//! that names a resolution (the query, the OpenAPI, the page, the master's
//! flags) reads it from here.

use serde::{Deserialize, Serialize};
use std::time::Duration;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// One series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Resolution {
    /// 24-hour means, one per sensor and UTC day: the nightly ingestion and
    /// the archive backfill (the only series of the first system).
    #[default]
    #[serde(rename = "day")]
    Day,
    /// Hourly means of the 5-minute readings, with each index on its own
    /// standard's averaging window ([`crate::hourly`]).
    #[serde(rename = "hour")]
    Hour,
    /// The 5-minute feed as sent (each sensor's mean of its last five
    /// minutes), kept for the recent tier's retention.
    #[serde(rename = "5min")]
    FiveMin,
}

impl Resolution {
    pub const ALL: [Resolution; 3] = [Resolution::Day, Resolution::Hour, Resolution::FiveMin];

    /// The name queries use: `day`, `hour`, `5min`.
    pub fn name(self) -> &'static str {
        match self {
            Resolution::Day => "day",
            Resolution::Hour => "hour",
            Resolution::FiveMin => "5min",
        }
    }

    /// Parses a name case-insensitively (see [`crate::name::matches`]).
    pub fn parse(name: &str) -> Option<Resolution> {
        Resolution::ALL
            .into_iter()
            .find(|r| crate::name::matches(name, r.name()))
    }

    /// Its short name for people: `Daily means`, `Hourly`, `5-minute`.
    pub fn label(self) -> &'static str {
        match self {
            Resolution::Day => "Daily means",
            Resolution::Hour => "Hourly",
            Resolution::FiveMin => "5-minute",
        }
    }

    /// What it is, for people.
    pub fn description(self) -> &'static str {
        match self {
            Resolution::Day => "24-hour means, one per sensor and UTC day",
            Resolution::Hour => {
                "hourly means of the 5-minute feed, indices on each standard's window (NowCast for US EPA)"
            }
            Resolution::FiveMin => "the 5-minute feed as sent, for the recent tier's retention",
        }
    }

    /// Time between a sensor's consecutive readings.
    pub fn step(self) -> Duration {
        Duration::from_secs(match self {
            Resolution::Day => DAY,
            Resolution::Hour => HOUR,
            Resolution::FiveMin => 300,
        })
    }

    /// The longest `endDate - startDate` a query on this series may span.
    /// For `day` it is the deployment's `--max-span` (this is its default);
    /// the finer series are capped here, whatever that flag says, so that
    /// an answer stays about as large as a day answer at its default (31
    /// days × 1 reading vs 7 days × 24 vs 48 hours × 12).
    pub fn max_span(self) -> Duration {
        Duration::from_secs(match self {
            Resolution::Day => 31 * DAY,
            Resolution::Hour => 7 * DAY,
            Resolution::FiveMin => 2 * DAY,
        })
    }

    /// How long the master keeps this series by default (`None`: for ever).
    pub fn default_retention(self) -> Option<Duration> {
        match self {
            Resolution::Day => None,
            Resolution::Hour => Some(Duration::from_secs(400 * DAY)),
            Resolution::FiveMin => Some(Duration::from_secs(48 * HOUR)),
        }
    }

    /// The names, for error messages: `"day", "hour" or "5min"`.
    pub fn list() -> String {
        let names: Vec<String> = Resolution::ALL
            .iter()
            .map(|r| format!("\"{}\"", r.name()))
            .collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_parse_leniently() {
        for r in Resolution::ALL {
            assert_eq!(Resolution::parse(r.name()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.name())
            );
        }
        assert_eq!(Resolution::parse(" HOUR "), Some(Resolution::Hour));
        assert_eq!(Resolution::parse("5MIN"), Some(Resolution::FiveMin));
        assert_eq!(Resolution::parse("minute"), None);
        assert_eq!(Resolution::list(), "\"day\", \"hour\" or \"5min\"");
    }

    #[test]
    fn finer_series_span_less() {
        assert_eq!(Resolution::Day.max_span().as_secs(), 31 * 86_400);
        assert_eq!(Resolution::Hour.max_span().as_secs(), 7 * 86_400);
        assert_eq!(Resolution::FiveMin.max_span().as_secs(), 48 * 3600);
        assert_eq!(
            Resolution::FiveMin.default_retention(),
            Some(Duration::from_secs(48 * 3600))
        );
    }
}

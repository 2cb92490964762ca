//! Aggregates: statistics of the readings a query selects, one row per UTC
//! calendar period and group (sensor, 0.25° grid cell, country, or all).
//!
//! The columns, in order (the one table; CSV, NDJSON and GeoJSON use these
//! names; [`COLUMNS`], then one column per band of the query's index):
//!
//! | column | meaning |
//! |---|---|
//! | `period_start`, `period_end` | the UTC period, first and last second |
//! | `sensor_id`, `sensor_type` | `by: sensor`: the sensor (else empty) |
//! | `loc_country` | `by: sensor`: its country in its last reading of the period; `by: country`: the country |
//! | `lat`, `lon` | a sensor's position (last reading of the period), a cell's centre |
//! | `cell_min_lon` … `cell_max_lat` | `by: cell`: the cell's bounds |
//! | `sensors` | sensors with a reading in the group and period |
//! | `readings` | readings aggregated |
//! | `samples` | underlying measurements, summed over the readings that say (the archive's daily means); empty when none does |
//! | `coverage` | percent, one decimal: a sensor's distinct slots of the input resolution (days, hours, 5 minutes) with a reading over the slots of the period inside the query's range; for a group of sensors the mean over its sensors |
//! | `P1_mean` … `P1_sd`, `P2_mean` … `P2_sd` | PM10 and PM2.5 in µg/m³: mean, min, p50, p98, max, sample standard deviation ([`Stats`]) |
//! | `P1_days_over_who_24h`, `P2_days_over_who_24h` | daily readings above the WHO 24-hour guideline level ([`WHO_PM10_24H`], [`WHO_PM25_24H`]); empty unless the input is daily |
//! | `P1_over_who_annual`, `P2_over_who_annual` | `period: year`: whether the year's mean is above the WHO annual level ([`WHO_PM10_ANNUAL`], [`WHO_PM25_ANNUAL`]) |
//! | `readings_<band>` | readings in each band of the query's index |
//! | `removed`, `removed_<flag>` | with a `quality` filter only: readings of the group and period it left out, and of those the ones with each flag it names ([`crate::quality`]; a reading with two counts in both) |
//!
//! With a `quality` filter, a group whose readings were all left out has
//! a row too (no readings, its removals), and a sensor's type, country
//! and position are those of its last reading of the period, left out or
//! not.
//!
//! Readings come from a store in timestamp order, so a period is complete
//! once a reading of a later one arrives: [`Aggregator`] hands it on then,
//! and holds only the current period's groups. Statistics are exact: each
//! group keeps its values, 4 bytes a reading and pollutant, so memory is
//! bounded by the readings of one period (which the query's span bounds).

use crate::aqi::{Index, Indices};
use crate::correction::{Correction, Hundredths};
use crate::export::{defused, is_json_number, AnswerChunk, AnswerStream, Format, RowRef, CHUNK};
use crate::mean::{hundredths_text, mean_hundredths, nano_units_of, NANO};
use crate::place::{cell_bounds, cell_of_text};
use crate::quality::{Flags, Quality};
use crate::query::FieldError;
use crate::reading::{Reading, Timestamp};
use crate::resolution::Resolution;
use crate::store::ReadingStream;
use bytes::Bytes;
use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use futures::StreamExt;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The maps an aggregation looks up once or twice a reading: foldhash
/// (seeded per process) rather than SipHash, which took a tenth of a
/// month's aggregation by cell (BENCHMARKS.md).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// WHO global air quality guidelines (2021), Table 0.1 ("Recommended AQG
/// levels"), in nano-units of µg/m³: PM2.5 24-hour 15, annual 5; PM10
/// 24-hour 45, annual 15. The 24-hour levels are stated as the 99th
/// percentile of a year's daily means (3–4 exceedance days a year), so a
/// day above the level is counted; the annual levels are compared with
/// the year's mean.
pub const WHO_PM25_24H: u128 = 15 * NANO;
pub const WHO_PM25_ANNUAL: u128 = 5 * NANO;
pub const WHO_PM10_24H: u128 = 45 * NANO;
pub const WHO_PM10_ANNUAL: u128 = 15 * NANO;

/// The columns before the band counts.
pub const COLUMNS: [&str; 31] = [
    "period_start",
    "period_end",
    "sensor_id",
    "sensor_type",
    "loc_country",
    "lat",
    "lon",
    "cell_min_lon",
    "cell_min_lat",
    "cell_max_lon",
    "cell_max_lat",
    "sensors",
    "readings",
    "samples",
    "coverage",
    "P1_mean",
    "P1_min",
    "P1_p50",
    "P1_p98",
    "P1_max",
    "P1_sd",
    "P2_mean",
    "P2_min",
    "P2_p50",
    "P2_p98",
    "P2_max",
    "P2_sd",
    "P1_days_over_who_24h",
    "P2_days_over_who_24h",
    "P1_over_who_annual",
    "P2_over_who_annual",
];

/// The columns of an aggregate answer on `index`: [`COLUMNS`] and one
/// `readings_<band>` per band; with a `quality` filter, `removed` and one
/// `removed_<flag>` per flag it leaves out.
pub fn header(index: Index, quality: Option<Quality>) -> Vec<String> {
    COLUMNS
        .iter()
        .map(|c| (*c).to_owned())
        .chain(
            index
                .bands()
                .iter()
                .map(|b| format!("readings_{}", b.label)),
        )
        .chain(quality.map(|_| REMOVED.to_owned()))
        .chain(
            quality
                .into_iter()
                .flat_map(|q| q.exclude.iter())
                .map(|f| format!("{REMOVED}_{}", f.name())),
        )
        .collect()
}

/// The column of the readings a `quality` filter left out, and the
/// prefix of its per-flag columns.
pub const REMOVED: &str = "removed";

/// A UTC calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Hour,
    Day,
    Month,
    Year,
}

impl Period {
    pub const ALL: [Period; 4] = [Period::Hour, Period::Day, Period::Month, Period::Year];

    pub fn name(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
            Period::Year => "year",
        }
    }

    /// The start of the period holding `t`.
    pub fn start_of(self, t: Timestamp) -> Timestamp {
        let s = t.0;
        match self {
            Period::Hour => Timestamp(s.div_euclid(3600) * 3600),
            Period::Day => Timestamp(s.div_euclid(86_400) * 86_400),
            Period::Month | Period::Year => {
                let Some(dt) = t.to_datetime() else { return t };
                let month = if self == Period::Month { dt.month() } else { 1 };
                civil(dt.year(), month).unwrap_or(t)
            }
        }
    }

    /// The start of the period after the one starting at `start`.
    pub fn next(self, start: Timestamp) -> Timestamp {
        match self {
            Period::Hour => Timestamp(start.0 + 3600),
            Period::Day => Timestamp(start.0 + 86_400),
            Period::Month | Period::Year => {
                let Some(dt) = start.to_datetime() else {
                    return Timestamp(i64::MAX);
                };
                let (y, m) = match (self, dt.month()) {
                    (Period::Year, _) | (_, 12) => (dt.year() + 1, 1),
                    (_, m) => (dt.year(), m + 1),
                };
                civil(y, m).unwrap_or(Timestamp(i64::MAX))
            }
        }
    }
}

fn civil(year: i32, month: u32) -> Option<Timestamp> {
    let date = NaiveDate::from_ymd_opt(year, month, 1)?;
    let dt = Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?);
    Some(Timestamp(dt.timestamp()))
}

/// What rows group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    Sensor,
    Cell,
    Country,
    All,
}

impl GroupBy {
    pub const ALL: [GroupBy; 4] = [
        GroupBy::Sensor,
        GroupBy::Cell,
        GroupBy::Country,
        GroupBy::All,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Sensor => "sensor",
            GroupBy::Cell => "cell",
            GroupBy::Country => "country",
            GroupBy::All => "all",
        }
    }
}

/// The query field `aggregate`: `{"period": …, "by": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregate {
    pub period: Period,
    pub by: GroupBy,
}

impl Aggregate {
    /// Validates the field's value; every problem, each naming the field
    /// `aggregate` (as every query error names a field of the query) and
    /// starting with the part it is about (`period: …`, `by: …`).
    pub fn from_value(value: &Value) -> Result<Aggregate, Vec<FieldError>> {
        let err = |part: &str, message: String| FieldError {
            field: "aggregate".into(),
            message: format!("{part}{message}"),
        };
        let Value::Object(map) = value else {
            return Err(vec![err(
                "",
                "must be an object such as {\"period\":\"month\",\"by\":\"country\"}".into(),
            )]);
        };
        let mut errors = Vec::new();
        for k in map
            .keys()
            .filter(|k| !["period", "by"].contains(&k.as_str()))
        {
            errors.push(err(
                &format!("{k}: "),
                "is not a field of aggregate (period, by)".into(),
            ));
        }
        let pick = |name: &str, names: Vec<&'static str>| -> Result<usize, FieldError> {
            let list = names.join(", ");
            match map.get(name) {
                None => Err(err(
                    &format!("{name}: "),
                    format!("is required: one of {list}"),
                )),
                Some(Value::String(s)) => names
                    .iter()
                    .position(|n| crate::name::matches(s, n))
                    .ok_or_else(|| {
                        err(&format!("{name}: "), format!("{s:?} is not one of {list}"))
                    }),
                Some(other) => Err(err(
                    &format!("{name}: "),
                    format!("must be a string, one of {list}; got {other}"),
                )),
            }
        };
        let period = pick("period", Period::ALL.iter().map(|p| p.name()).collect());
        let by = pick("by", GroupBy::ALL.iter().map(|b| b.name()).collect());
        match (period, by) {
            (Ok(p), Ok(b)) if errors.is_empty() => Ok(Aggregate {
                period: Period::ALL[p],
                by: GroupBy::ALL[b],
            }),
            (p, b) => {
                errors.extend(p.err());
                errors.extend(b.err());
                Err(errors)
            }
        }
    }

    /// The canonical JSON form.
    pub fn to_json(self) -> Value {
        let mut m = Map::new();
        m.insert("period".into(), self.period.name().into());
        m.insert("by".into(), self.by.name().into());
        Value::Object(m)
    }
}

/// One pollutant's values in a group: exact sum for the mean, and each
/// value in hundredths (rounded half up: rounding keeps order, so min, max
/// and p98 are the exact statistic rounded).
#[derive(Debug, Default, Clone)]
struct Values {
    /// The exact sum, in nano-units.
    nano: u128,
    hundredths: Vec<u32>,
    over_24h: u64,
}

/// The statistics of one pollutant: text with two decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub mean: String,
    pub min: String,
    /// The median: the middle value, or the mean of the two middle ones.
    pub p50: String,
    /// The 98th percentile by the rank method of 40 CFR Part 50 Appendix N
    /// (US EPA, PM2.5 24-hour design value): values sorted ascending, the
    /// one at position ⌊0.98·n⌋ + 1 (1-based), which for n ≤ 366 is
    /// Table 1's rank ⌈n/50⌉ from the top.
    pub p98: String,
    pub max: String,
    /// Sample standard deviation (n − 1); `None` for one value.
    pub sd: Option<String>,
}

impl Values {
    /// Adds a value in nano-units ([`crate::mean::nano_units_of`] of its
    /// text); `None` (no value, or no number) adds nothing.
    fn add(&mut self, nano: Option<u128>, threshold_24h: u128) {
        let Some(nano) = nano else {
            return;
        };
        self.nano += nano;
        let h = mean_hundredths(nano, 1);
        self.hundredths.push(u32::try_from(h).unwrap_or(u32::MAX));
        if nano > threshold_24h {
            self.over_24h += 1;
        }
    }

    fn stats(&mut self) -> Option<Stats> {
        let n = self.hundredths.len();
        if n == 0 {
            return None;
        }
        self.hundredths.sort_unstable();
        let v = &self.hundredths;
        let text = |h: u32| hundredths_text(u128::from(h));
        let p50 = if n % 2 == 1 {
            text(v[n / 2])
        } else {
            let pair = u128::from(v[n / 2 - 1]) + u128::from(v[n / 2]);
            hundredths_text(pair.div_ceil(2))
        };
        let p98 = v[(n * 98 / 100).min(n - 1)];
        let sd = (n > 1).then(|| {
            let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
            let ss: f64 = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum();
            let sd = (ss / (n - 1) as f64).sqrt();
            hundredths_text(sd.round() as u128)
        });
        Some(Stats {
            mean: hundredths_text(mean_hundredths(self.nano, n as u64)),
            min: text(v[0]),
            p50,
            p98: text(p98),
            max: text(v[n - 1]),
            sd,
        })
    }
}

/// The group of a reading.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Sensor(u64),
    Cell(u32),
    Country(String),
    All,
}

/// One group's running state within a period.
#[derive(Debug, Default)]
struct Group {
    readings: u64,
    samples: Option<u64>,
    /// Per sensor: distinct slots with a reading, and the last slot seen
    /// (readings come in time order, so a repeat is the last one).
    slots: FastMap<u64, (u64, i64)>,
    p1: Values,
    p2: Values,
    /// Readings per band of the index, one count per band.
    bands: Vec<u64>,
    /// With a `quality` filter: readings left out, then those with each
    /// flag it names.
    removed: Vec<u64>,
    /// `by: sensor`: the last reading's sensor type, country and position
    /// (copied only when they change).
    last: Option<(String, String, String, String)>,
}

impl Group {
    /// `by: sensor`: keeps `r`'s sensor type, country and position as the
    /// group's last (copied only when they change).
    fn seen_last(&mut self, r: &Parsed<'_>) {
        let same = self.last.as_ref().is_some_and(|(ty, c, lat, lon)| {
            (ty.as_str(), c.as_str(), lat.as_str(), lon.as_str())
                == (r.sensor_type, r.loc_country, r.loc_lat, r.loc_long)
        });
        if !same {
            self.last = Some((
                r.sensor_type.to_owned(),
                r.loc_country.to_owned(),
                r.loc_lat.to_owned(),
                r.loc_long.to_owned(),
            ));
        }
    }
}

/// One row of an aggregate answer: a value per column of [`header`],
/// `None` for an empty cell; numbers as their text.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub cells: Vec<Option<Cell>>,
}

/// A cell's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A number, as text (`12.34`, `7`).
    Number(String),
    Text(String),
    Bool(bool),
}

/// A reading as an aggregation reads it: its values in nano-units
/// ([`crate::mean::nano_units_of`] of their text; `None` when absent or
/// no number) and its grid cell ([`cell_of_text`]; read only by `by:
/// cell`). The text fields are read only by `by: sensor` (and the country
/// by `by: country`).
#[derive(Debug, Clone, Copy)]
pub struct Parsed<'a> {
    pub timestamp: Timestamp,
    pub sensor_id: u64,
    pub samples: Option<u32>,
    pub p1: Option<u128>,
    pub p2: Option<u128>,
    pub indices: Indices,
    /// Read only with a `quality` filter (which answer segments never
    /// serve: they keep no flags).
    pub flags: Flags,
    pub cell: u32,
    pub sensor_type: &'a str,
    pub loc_country: &'a str,
    pub loc_lat: &'a str,
    pub loc_long: &'a str,
}

/// Aggregates readings as they stream by (see the module documentation).
#[derive(Debug)]
pub struct Aggregator {
    aggregate: Aggregate,
    index: Index,
    resolution: Resolution,
    start: Timestamp,
    end: Timestamp,
    period: Option<Timestamp>,
    /// The start of the period after `period`.
    next_period: i64,
    /// The period's groups, in the order they were met; sorted by key when
    /// the period is written.
    groups: Vec<(Key, Group)>,
    /// Where each sensor's, cell's and country's group is in `groups`
    /// (`all` has one, the first).
    sensors: FastMap<u64, usize>,
    cells: FastMap<u32, usize>,
    countries: FastMap<String, usize>,
    /// The query's quality filter: what is left out, and counted.
    quality: Option<Quality>,
    /// The query's humidity correction: what the statistics and band
    /// counts are of.
    correction: Option<Correction>,
}

impl Aggregator {
    /// An aggregation of `resolution` readings in `[start, end]`.
    pub fn new(
        aggregate: Aggregate,
        index: Index,
        resolution: Resolution,
        start: Timestamp,
        end: Timestamp,
    ) -> Aggregator {
        Aggregator {
            aggregate,
            index,
            resolution,
            start,
            end,
            period: None,
            next_period: i64::MIN,
            groups: Vec::new(),
            sensors: FastMap::default(),
            cells: FastMap::default(),
            countries: FastMap::default(),
            quality: None,
            correction: None,
        }
    }

    /// The aggregation with a `quality` filter: the readings it leaves out
    /// are not aggregated but counted (`removed` columns).
    #[must_use]
    pub fn with_quality(mut self, quality: Option<Quality>) -> Aggregator {
        self.quality = quality;
        self
    }

    /// The aggregation of the readings' values corrected for humidity
    /// ([`crate::correction`]): a reading without its station's humidity
    /// counts in `readings` and adds no value to the statistics.
    #[must_use]
    pub fn with_correction(mut self, correction: Option<Correction>) -> Aggregator {
        self.correction = correction;
        self
    }

    /// The columns of its answer.
    pub fn header(&self) -> Vec<String> {
        header(self.index, self.quality)
    }

    /// Adds a reading (in timestamp order); returns the rows of the period
    /// it ended, if it began a new one.
    pub fn push(&mut self, r: &RowRef<'_>) -> Vec<Row> {
        let nano = |t: Option<&str>| t.and_then(|t| nano_units_of(t.trim()));
        let (p1, p2, indices) = match self.correction {
            None => (nano(r.p1), nano(r.p2), r.indices),
            Some(c) => {
                let c = c.apply(r.p1, r.p2, r.humidity);
                let nano = |h: Option<Hundredths>| h.map(|h| u128::from(h.0) * (NANO / 100));
                (nano(c.p1), nano(c.p2), c.indices)
            }
        };
        self.push_parsed(&Parsed {
            timestamp: r.timestamp,
            sensor_id: r.sensor_id,
            samples: r.samples,
            p1,
            p2,
            indices,
            flags: r.flags,
            cell: match self.aggregate.by {
                GroupBy::Cell => cell_of_text(r.loc_lat, r.loc_long),
                _ => 0,
            },
            sensor_type: r.sensor_type,
            loc_country: r.loc_country,
            loc_lat: r.loc_lat,
            loc_long: r.loc_long,
        })
    }

    /// What an aggregation reads of its rows: whether this aggregation
    /// groups by sensor (which reads the sensor's type, country and
    /// position) and by cell (which reads [`Parsed::cell`]).
    pub fn reads(&self) -> GroupBy {
        self.aggregate.by
    }

    /// Whether the readings of one UTC day must come in time order, or
    /// may come in any order (each sensor's own in time order): they may
    /// when a day lies in one period and one slot of the input, and no
    /// group keeps its last reading's text (`by: sensor`). A store that
    /// keeps a day's readings in several runs (by country) then need not
    /// merge them.
    pub fn orders_within_a_day(&self) -> bool {
        self.resolution != Resolution::Day
            || self.aggregate.period == Period::Hour
            || self.aggregate.by == GroupBy::Sensor
    }

    /// [`Aggregator::push`] of a reading whose values are parsed already
    /// (a store that keeps them so).
    pub fn push_parsed(&mut self, r: &Parsed<'_>) -> Vec<Row> {
        let in_period = self
            .period
            .is_some_and(|p| (p.0..self.next_period).contains(&r.timestamp.0));
        let mut done = Vec::new();
        if !in_period {
            done = self.flush();
            let period = self.aggregate.period.start_of(r.timestamp);
            self.period = Some(period);
            self.next_period = self.aggregate.period.next(period).0;
        }
        let step = self.resolution.step().as_secs() as i64;
        let daily = self.resolution == Resolution::Day;
        let at = self.group_of(r);
        let by_sensor = self.aggregate.by == GroupBy::Sensor;
        let g = &mut self.groups[at].1;
        if by_sensor {
            g.seen_last(r);
        }
        if let Some(q) = self.quality.filter(|q| !q.keeps(r.flags)) {
            g.removed[0] += 1;
            for (k, flag) in q.exclude.iter().enumerate() {
                g.removed[k + 1] += u64::from(r.flags.contains(flag));
            }
            return done;
        }
        g.readings += 1;
        if let Some(s) = r.samples {
            *g.samples.get_or_insert(0) += u64::from(s);
        }
        let slot = r.timestamp.0.div_euclid(step);
        let seen = g.slots.entry(r.sensor_id).or_insert((0, i64::MIN));
        if seen.1 != slot {
            *seen = (seen.0 + 1, slot);
        }
        g.p1.add(r.p1, if daily { WHO_PM10_24H } else { u128::MAX });
        g.p2.add(r.p2, if daily { WHO_PM25_24H } else { u128::MAX });
        if let Some(v) = r.indices.defined(self.index) {
            g.bands[self.index.band_of(v)] += 1;
        }
        done
    }

    /// The position in `groups` of `r`'s group, made if new.
    fn group_of(&mut self, r: &Parsed<'_>) -> usize {
        let next = self.groups.len();
        let (found, key) = match self.aggregate.by {
            GroupBy::Sensor => (
                *self.sensors.entry(r.sensor_id).or_insert(next),
                Key::Sensor(r.sensor_id),
            ),
            GroupBy::Cell => (*self.cells.entry(r.cell).or_insert(next), Key::Cell(r.cell)),
            GroupBy::Country => match self.countries.get(r.loc_country) {
                Some(&at) => return at,
                None => {
                    self.countries.insert(r.loc_country.to_owned(), next);
                    (next, Key::Country(r.loc_country.to_owned()))
                }
            },
            GroupBy::All => (0, Key::All),
        };
        if found == next {
            let bands = vec![0; self.index.bands().len()];
            let removed = match self.quality {
                Some(q) => vec![0; 1 + q.exclude.iter().count()],
                None => Vec::new(),
            };
            self.groups.push((
                key,
                Group {
                    bands,
                    removed,
                    ..Group::default()
                },
            ));
        }
        found
    }

    /// The rows of the last period (and nothing after).
    pub fn finish(&mut self) -> Vec<Row> {
        self.flush()
    }

    /// Slots of the input resolution in the current period (which starts
    /// at `start` and ends before `next_period`) that lie in the query's
    /// range.
    fn expected(&self, start: Timestamp) -> u64 {
        let step = self.resolution.step().as_secs() as i64;
        let lo = start.0.max(self.start.0);
        let hi = (self.next_period - 1).min(self.end.0);
        if hi < lo {
            return 0;
        }
        (hi.div_euclid(step) - lo.div_euclid(step) + 1) as u64
    }

    fn flush(&mut self) -> Vec<Row> {
        let Some(start) = self.period else {
            return Vec::new();
        };
        let period = self.aggregate.period;
        let end = Timestamp(self.next_period - 1);
        let expected = self.expected(start).max(1);
        let daily = self.resolution == Resolution::Day;
        let bands = self.index.bands().len();
        let width =
            COLUMNS.len() + bands + self.quality.map_or(0, |q| 1 + q.exclude.iter().count());
        let mut groups = std::mem::take(&mut self.groups);
        self.sensors.clear();
        self.cells.clear();
        self.countries.clear();
        groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        groups
            .into_iter()
            .map(|(key, mut g)| {
                let num = |s: String| Some(Cell::Number(s));
                let text = |s: String| Some(Cell::Text(s));
                let mut cells: Vec<Option<Cell>> = vec![None; width];
                cells[0] = text(start.to_string());
                cells[1] = text(end.to_string());
                match &key {
                    Key::Sensor(id) => {
                        cells[2] = num(id.to_string());
                        if let Some((ty, country, lat, lon)) = &g.last {
                            cells[3] = text(ty.clone());
                            cells[4] = text(country.clone());
                            cells[5] = num(lat.trim().to_owned());
                            cells[6] = num(lon.trim().to_owned());
                        }
                    }
                    Key::Cell(c) => {
                        let b = cell_bounds(*c);
                        cells[5] = num(degrees((b.min_lat + b.max_lat) / 2.0));
                        cells[6] = num(degrees((b.min_lon + b.max_lon) / 2.0));
                        cells[7] = num(degrees(b.min_lon));
                        cells[8] = num(degrees(b.min_lat));
                        cells[9] = num(degrees(b.max_lon));
                        cells[10] = num(degrees(b.max_lat));
                    }
                    Key::Country(c) => cells[4] = text(c.clone()),
                    Key::All => {}
                }
                let sensors = g.slots.len() as u64;
                let covered: u64 = g.slots.values().map(|(n, _)| *n).sum();
                cells[11] = num(sensors.to_string());
                cells[12] = num(g.readings.to_string());
                cells[13] = g.samples.map(|s| Cell::Number(s.to_string()));
                // Percent with one decimal, rounded half up:
                // covered / (sensors × expected) × 1000 tenths.
                let d = u128::from(sensors.max(1)) * u128::from(expected);
                let tenths = (2 * 1000 * u128::from(covered) + d) / (2 * d);
                cells[14] = num(format!("{}.{}", tenths / 10, tenths % 10));
                for (at, values) in [(15, &mut g.p1), (21, &mut g.p2)] {
                    if let Some(s) = values.stats() {
                        cells[at] = num(s.mean);
                        cells[at + 1] = num(s.min);
                        cells[at + 2] = num(s.p50);
                        cells[at + 3] = num(s.p98);
                        cells[at + 4] = num(s.max);
                        cells[at + 5] = s.sd.map(Cell::Number);
                    }
                }
                if daily {
                    cells[27] = num(g.p1.over_24h.to_string());
                    cells[28] = num(g.p2.over_24h.to_string());
                }
                if period == Period::Year {
                    for (at, values, level) in
                        [(29, &g.p1, WHO_PM10_ANNUAL), (30, &g.p2, WHO_PM25_ANNUAL)]
                    {
                        let (sum, n) = (values.nano, values.hundredths.len() as u64);
                        // mean > level ⇔ sum > level × n, exactly.
                        cells[at] = (n > 0).then(|| Cell::Bool(sum > level * u128::from(n)));
                    }
                }
                for (i, count) in g.bands.iter().chain(&g.removed).enumerate() {
                    cells[COLUMNS.len() + i] = num(count.to_string());
                }
                Row { cells }
            })
            .collect()
    }
}

/// Degrees on the 0.25° grid as text: at most three decimals, no trailing
/// zeros past the first (`52.125`, `13.25`, `-180.0`).
fn degrees(v: f64) -> String {
    let s = format!("{v:.3}");
    let trimmed = s.trim_end_matches('0');
    if trimmed.ends_with('.') {
        format!("{trimmed}0")
    } else {
        trimmed.to_owned()
    }
}

/// Aggregates `readings` (in timestamp order) at once: for tests and small
/// inputs.
pub fn aggregate_all<'a>(
    aggregator: Aggregator,
    readings: impl IntoIterator<Item = &'a Reading>,
) -> Vec<Row> {
    let mut a = aggregator;
    let mut rows = Vec::new();
    for r in readings {
        rows.extend(a.push(&RowRef::from(r)));
    }
    rows.extend(a.finish());
    rows
}

/// Writes aggregate rows in a format: [`begin`](Renderer::begin), a
/// [`row`](Renderer::row) each, [`end`](Renderer::end). The same columns
/// in every format (see the module documentation): CSV cells (text
/// formula-guarded like every answer's, [`crate::export`]), NDJSON objects,
/// GeoJSON features at the row's `lat`/`lon` (`null` geometry without).
#[derive(Debug)]
pub struct Renderer {
    format: Format,
    header: Vec<String>,
    rows: u64,
}

impl Renderer {
    pub fn new(format: Format, index: Index) -> Renderer {
        Self::with_header(format, header(index, None))
    }

    /// A renderer of the columns `header` names.
    pub fn with_header(format: Format, header: Vec<String>) -> Renderer {
        Renderer {
            format,
            header,
            rows: 0,
        }
    }

    pub fn begin(&self, out: &mut Vec<u8>) {
        match self.format {
            Format::Csv => {
                let cells: Vec<Option<Cell>> = self
                    .header
                    .iter()
                    .map(|h| Some(Cell::Text(h.clone())))
                    .collect();
                csv_line(out, &cells);
            }
            Format::Ndjson => {}
            Format::Geojson => {
                out.extend_from_slice(br#"{"type":"FeatureCollection","features":["#)
            }
        }
    }

    pub fn row(&mut self, row: &Row, out: &mut Vec<u8>) {
        match self.format {
            Format::Csv => csv_line(out, &row.cells),
            Format::Ndjson => {
                self.object(row, out);
                out.push(b'\n');
            }
            Format::Geojson => {
                if self.rows > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"type":"Feature","geometry":"#);
                let at = |name: &str| {
                    let i = COLUMNS.iter().position(|c| *c == name)?;
                    match row.cells.get(i)? {
                        Some(Cell::Number(v)) => Some(v.as_str()),
                        _ => None,
                    }
                };
                match (at("lat"), at("lon")) {
                    (Some(lat), Some(lon)) => {
                        out.extend_from_slice(br#"{"type":"Point","coordinates":["#);
                        json_number(out, lon);
                        out.push(b',');
                        json_number(out, lat);
                        out.extend_from_slice(b"]}");
                    }
                    _ => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(br#","properties":"#);
                self.object(row, out);
                out.push(b'}');
            }
        }
        self.rows += 1;
    }

    pub fn end(&self, out: &mut Vec<u8>) {
        if self.format == Format::Geojson {
            out.extend_from_slice(b"]}\n");
        }
    }

    fn object(&self, row: &Row, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (name, cell)) in self.header.iter().zip(&row.cells).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_string(out, name);
            out.push(b':');
            match cell {
                None => out.extend_from_slice(b"null"),
                Some(Cell::Number(v)) => json_number(out, v),
                Some(Cell::Text(s)) => json_string(out, s),
                Some(Cell::Bool(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            }
        }
        out.push(b'}');
    }
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly what JSON requires.
    out.extend_from_slice(Value::String(s.to_owned()).to_string().as_bytes());
}

/// A number as its text when that is JSON's syntax, else as the number it
/// parses to (`.5` → `0.5`), else `null`.
fn json_number(out: &mut Vec<u8>, v: &str) {
    if is_json_number(v.as_bytes()) {
        out.extend_from_slice(v.as_bytes());
    } else {
        match v.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
    }
}

/// One CSV line: cells separated by commas, quoted where they need it,
/// text guarded against formulas.
fn csv_line(out: &mut Vec<u8>, cells: &[Option<Cell>]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let text: std::borrow::Cow<'_, [u8]> = match cell {
            None => continue,
            // Numbers pass the guard unchanged; a stored coordinate is
            // checked like any cell.
            Some(Cell::Number(v)) => defused(v.as_bytes()),
            Some(Cell::Text(s)) => defused(s.as_bytes()),
            Some(Cell::Bool(b)) => (if *b { &b"true"[..] } else { &b"false"[..] }).into(),
        };
        if text
            .iter()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
        {
            out.push(b'"');
            for &b in text.iter() {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(&text);
        }
    }
    out.push(b'\n');
}

/// Aggregates rows and cuts the rendered answer into chunks of about
/// [`CHUNK`] bytes: the one renderer of aggregate answers, over a stream of
/// readings ([`answer`]) or a store's own rows.
#[derive(Debug)]
pub struct AggregateChunker {
    aggregator: Aggregator,
    renderer: Renderer,
    out: Vec<u8>,
    rows: u64,
}

impl AggregateChunker {
    pub fn new(aggregator: Aggregator, format: Format) -> AggregateChunker {
        let renderer = Renderer::with_header(format, aggregator.header());
        let mut out = Vec::new();
        renderer.begin(&mut out);
        AggregateChunker {
            aggregator,
            renderer,
            out,
            rows: 0,
        }
    }

    /// Adds a row (in timestamp order); a chunk when one is full.
    pub fn push(&mut self, r: &RowRef<'_>) -> Option<AnswerChunk> {
        let done = self.aggregator.push(r);
        self.write(&done);
        (self.out.len() >= CHUNK).then(|| self.take())
    }

    /// [`AggregateChunker::push`] of a parsed reading.
    pub fn push_parsed(&mut self, r: &Parsed<'_>) -> Option<AnswerChunk> {
        let done = self.aggregator.push_parsed(r);
        self.write(&done);
        (self.out.len() >= CHUNK).then(|| self.take())
    }

    /// The aggregation's grouping (see [`Aggregator::reads`]).
    pub fn reads(&self) -> GroupBy {
        self.aggregator.reads()
    }

    /// See [`Aggregator::orders_within_a_day`].
    pub fn orders_within_a_day(&self) -> bool {
        self.aggregator.orders_within_a_day()
    }

    /// The last chunk: the last period's rows and the format's end.
    pub fn finish(self) -> AnswerChunk {
        self.finish_with(&[])
    }

    /// The last chunk, with `later` (the rows of later periods, aggregated
    /// apart) after the last period's rows.
    pub fn finish_with(mut self, later: &[Row]) -> AnswerChunk {
        let rows = self.aggregator.finish();
        self.write(&rows);
        self.write(later);
        self.renderer.end(&mut self.out);
        self.take()
    }

    fn write(&mut self, rows: &[Row]) {
        for row in rows {
            self.renderer.row(row, &mut self.out);
            self.rows += 1;
        }
    }

    fn take(&mut self) -> AnswerChunk {
        AnswerChunk {
            bytes: Bytes::from(std::mem::take(&mut self.out)),
            rows: std::mem::take(&mut self.rows),
            piece: None,
        }
    }
}

/// The aggregate answer of a stream of readings (in timestamp order), in
/// chunks: a period's rows are written once the next period's first
/// reading arrives.
pub fn answer(readings: ReadingStream, aggregator: Aggregator, format: Format) -> AnswerStream {
    let chunker = AggregateChunker::new(aggregator, format);
    futures::stream::unfold(Some((readings, chunker)), |state| async move {
        let (mut readings, mut chunker) = state?;
        loop {
            match readings.next().await {
                Some(Ok(r)) => {
                    if let Some(chunk) = chunker.push(&RowRef::from(&r)) {
                        return Some((Ok(chunk), Some((readings, chunker))));
                    }
                }
                Some(Err(e)) => return Some((Err(e), None)),
                None => return Some((Ok(chunker.finish()), None)),
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aqi::Indices;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_feed(s).expect("a time")
    }

    fn reading(sensor: u64, time: &str, country: &str, p1: &str, p2: &str) -> Reading {
        Reading {
            id: None,
            timestamp: t(time),
            sensor_id: sensor,
            sensor_type: "SDS011".into(),
            loc_id: None,
            loc_country: country.into(),
            loc_lat: "52.520".into(),
            loc_long: "13.405".into(),
            loc_alt: String::new(),
            p1: (!p1.is_empty()).then(|| p1.into()),
            p2: (!p2.is_empty()).then(|| p2.into()),
            indices: Indices::of_text(
                (!p1.is_empty()).then_some(p1),
                (!p2.is_empty()).then_some(p2),
            )
            .expect("indices"),
            samples: None,
            basis: None,
            flags: Default::default(),
            air: Default::default(),
        }
    }

    fn cell<'a>(row: &'a Row, column: &str) -> Option<&'a Cell> {
        let i = header(Index::Daqi, None)
            .iter()
            .position(|c| c == column)
            .expect("a column");
        row.cells[i].as_ref()
    }

    fn n(s: &str) -> Option<Cell> {
        Some(Cell::Number(s.into()))
    }

    #[test]
    fn periods_are_utc_calendar_periods() {
        let p = |period: Period, s: &str| period.start_of(t(s)).to_string();
        assert_eq!(
            p(Period::Hour, "2024-02-29 13:59:59"),
            "2024-02-29 13:00:00"
        );
        assert_eq!(p(Period::Day, "2024-02-29 13:59:59"), "2024-02-29 00:00:00");
        assert_eq!(
            p(Period::Month, "2024-02-29 13:59:59"),
            "2024-02-01 00:00:00"
        );
        assert_eq!(
            p(Period::Year, "2024-02-29 13:59:59"),
            "2024-01-01 00:00:00"
        );
        // February 2024 has 29 days; December rolls into the next year.
        assert_eq!(
            Period::Month.next(t("2024-02-01 00:00:00")).to_string(),
            "2024-03-01 00:00:00"
        );
        assert_eq!(
            Period::Month.next(t("2024-12-01 00:00:00")).to_string(),
            "2025-01-01 00:00:00"
        );
        assert_eq!(
            Period::Year.next(t("2024-01-01 00:00:00")).to_string(),
            "2025-01-01 00:00:00"
        );
    }

    #[test]
    fn the_field_is_validated_and_named() {
        let ok = Aggregate::from_value(&serde_json::json!({"period": "month", "by": "country"}));
        assert_eq!(
            ok,
            Ok(Aggregate {
                period: Period::Month,
                by: GroupBy::Country
            })
        );
        let bad = Aggregate::from_value(&serde_json::json!({"period": "week", "by": 3, "x": 1}))
            .expect_err("invalid");
        assert!(bad.iter().all(|e| e.field == "aggregate"), "{bad:?}");
        let parts: Vec<&str> = bad
            .iter()
            .map(|e| e.message.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(parts, ["x", "period", "by"]);
        assert!(bad[1].message.contains("hour, day, month, year"), "{bad:?}");
        assert_eq!(
            Aggregate::from_value(&serde_json::json!("month")).expect_err("not an object")[0].field,
            "aggregate"
        );
    }

    /// One sensor, January 2024, 28 of 31 days (the issue's example), by
    /// hand: P2 values 1, 2, …, 28 µg/m³ on days 1–28.
    #[test]
    fn a_month_of_one_sensor_worked_by_hand() {
        let readings: Vec<Reading> = (1..=28)
            .map(|d| {
                let p1 = format!("{}.00", 2 * d);
                let p2 = format!("{d}.00");
                reading(7, &format!("2024-01-{d:02} 12:00:00"), "DE", &p1, &p2)
            })
            .collect();
        let a = Aggregator::new(
            Aggregate {
                period: Period::Month,
                by: GroupBy::Sensor,
            },
            Index::Daqi,
            Resolution::Day,
            t("2024-01-01 00:00:00"),
            t("2024-01-31 23:59:59"),
        );
        let rows = aggregate_all(a, &readings);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(
            cell(row, "period_start"),
            Some(&Cell::Text("2024-01-01 00:00:00".into()))
        );
        assert_eq!(
            cell(row, "period_end"),
            Some(&Cell::Text("2024-01-31 23:59:59".into()))
        );
        assert_eq!(cell(row, "sensor_id"), n("7").as_ref());
        assert_eq!(cell(row, "readings"), n("28").as_ref());
        assert_eq!(cell(row, "samples"), None);
        // 28 / 31 = 90.32 %.
        assert_eq!(cell(row, "coverage"), n("90.3").as_ref());
        // P2: mean (1 + … + 28) / 28 = 406 / 28 = 14.5; median of 28
        // values: (14 + 15) / 2 = 14.5; p98: ⌊0.98 × 28⌋ + 1 = 28th value
        // = 28; sd: the sample sd of 1..28 is √(28 × 29 / 12) = 8.2260 →
        // 8.23.
        assert_eq!(cell(row, "P2_mean"), n("14.50").as_ref());
        assert_eq!(cell(row, "P2_min"), n("1.00").as_ref());
        assert_eq!(cell(row, "P2_p50"), n("14.50").as_ref());
        assert_eq!(cell(row, "P2_p98"), n("28.00").as_ref());
        assert_eq!(cell(row, "P2_max"), n("28.00").as_ref());
        assert_eq!(cell(row, "P2_sd"), n("8.23").as_ref());
        // Days above 15 µg/m³ PM2.5: days 16–28, 13; PM10 (2d) above
        // 45: d ≥ 23, 6 days.
        assert_eq!(cell(row, "P2_days_over_who_24h"), n("13").as_ref());
        assert_eq!(cell(row, "P1_days_over_who_24h"), n("6").as_ref());
        assert_eq!(
            cell(row, "P2_over_who_annual"),
            None,
            "months have no annual level"
        );
        // DAQI PM2.5 bands (0–11 1, 12–23 2, 24–35 3 Low; 36–41 …): with
        // PM10 2d, DAQI takes the worse of the two: PM10 0–16 1, 17–33 2,
        // 34–50 3, 51–58 4 (Moderate). Days 1–25 are Low (PM10 ≤ 50 and
        // PM2.5 ≤ 35), days 26–28 (PM10 52, 54, 56) Moderate.
        assert_eq!(cell(row, "readings_Low"), n("25").as_ref());
        assert_eq!(cell(row, "readings_Moderate"), n("3").as_ref());
        assert_eq!(cell(row, "readings_High"), n("0").as_ref());
    }

    #[test]
    fn groups_of_sensors_average_their_coverage_and_years_meet_the_annual_level() {
        // Two sensors in the query's 10 days of 2023 (a partial year):
        // one with 10 readings, one with 5 (one day twice: counted once
        // for coverage, twice as readings).
        let mut readings = Vec::new();
        for d in 1..=10 {
            readings.push(reading(
                1,
                &format!("2023-03-{d:02} 01:00:00"),
                "DE",
                "10.00",
                "5.00",
            ));
        }
        for d in 1..=4 {
            readings.push(reading(
                2,
                &format!("2023-03-{d:02} 02:00:00"),
                "FR",
                "20.00",
                "6.00",
            ));
        }
        readings.push(reading(2, "2023-03-04 05:00:00", "FR", "20.00", "6.00"));
        readings.sort_by_key(|r| (r.timestamp, r.sensor_id));
        let a = Aggregator::new(
            Aggregate {
                period: Period::Year,
                by: GroupBy::All,
            },
            Index::Daqi,
            Resolution::Day,
            t("2023-03-01 00:00:00"),
            t("2023-03-10 23:59:59"),
        );
        let rows = aggregate_all(a, &readings);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(cell(row, "sensors"), n("2").as_ref());
        assert_eq!(cell(row, "readings"), n("15").as_ref());
        // (10 + 4) distinct days of 2 × 10 expected = 70.0 %.
        assert_eq!(cell(row, "coverage"), n("70.0").as_ref());
        // PM2.5: (10 × 5 + 5 × 6) / 15 = 80 / 15 = 5.333 → above 5;
        // PM10: (100 + 100) / 15 = 13.33 → not above 15.
        assert_eq!(cell(row, "P2_mean"), n("5.33").as_ref());
        assert_eq!(cell(row, "P2_over_who_annual"), Some(&Cell::Bool(true)));
        assert_eq!(cell(row, "P1_over_who_annual"), Some(&Cell::Bool(false)));
        // A value exactly at a level is not above it.
        let at = vec![reading(3, "2023-05-01 00:00:00", "DE", "15.00", "5.00")];
        let a = Aggregator::new(
            Aggregate {
                period: Period::Year,
                by: GroupBy::Country,
            },
            Index::Daqi,
            Resolution::Day,
            t("2023-01-01 00:00:00"),
            t("2023-12-31 23:59:59"),
        );
        let rows = aggregate_all(a, &at);
        assert_eq!(
            cell(&rows[0], "loc_country"),
            Some(&Cell::Text("DE".into()))
        );
        assert_eq!(
            cell(&rows[0], "P2_over_who_annual"),
            Some(&Cell::Bool(false))
        );
        assert_eq!(
            cell(&rows[0], "P1_over_who_annual"),
            Some(&Cell::Bool(false))
        );
        assert_eq!(cell(&rows[0], "P2_sd"), None, "one value has no sample sd");
        // 1 day of 365.
        assert_eq!(cell(&rows[0], "coverage"), n("0.3").as_ref());
    }

    #[test]
    fn periods_are_handed_on_as_they_end_and_cells_carry_their_bounds() {
        let mut a = Aggregator::new(
            Aggregate {
                period: Period::Day,
                by: GroupBy::Cell,
            },
            Index::Daqi,
            Resolution::Day,
            t("2024-01-01 00:00:00"),
            t("2024-01-02 23:59:59"),
        );
        assert!(a
            .push(&RowRef::from(&reading(
                1,
                "2024-01-01 10:00:00",
                "DE",
                "1.00",
                "1.00"
            )))
            .is_empty());
        let first = a.push(&RowRef::from(&reading(
            1,
            "2024-01-02 10:00:00",
            "DE",
            "1.00",
            "1.00",
        )));
        assert_eq!(first.len(), 1, "the first day is complete");
        // 52.520, 13.405 lies in the cell 52.50–52.75 N, 13.25–13.50 E.
        let row = &first[0];
        assert_eq!(cell(row, "lat"), n("52.625").as_ref());
        assert_eq!(cell(row, "lon"), n("13.375").as_ref());
        assert_eq!(cell(row, "cell_min_lon"), n("13.25").as_ref());
        assert_eq!(cell(row, "cell_max_lat"), n("52.75").as_ref());
        assert_eq!(cell(row, "coverage"), n("100.0").as_ref());
        assert_eq!(a.finish().len(), 1);
    }

    #[test]
    fn every_format_has_the_same_columns() {
        let rows = aggregate_all(
            Aggregator::new(
                Aggregate {
                    period: Period::Day,
                    by: GroupBy::Country,
                },
                Index::Daqi,
                Resolution::Day,
                t("2024-01-01 00:00:00"),
                t("2024-01-01 23:59:59"),
            ),
            &[reading(
                1,
                "2024-01-01 10:00:00",
                "=HYPERLINK(1)",
                "3.00",
                "",
            )],
        );
        let render = |format: Format| {
            let mut r = Renderer::new(format, Index::Daqi);
            let mut out = Vec::new();
            r.begin(&mut out);
            for row in &rows {
                r.row(row, &mut out);
            }
            r.end(&mut out);
            String::from_utf8(out).expect("UTF-8")
        };
        let csv = render(Format::Csv);
        let mut lines = csv.lines();
        let head = lines.next().expect("a header");
        assert!(
            head.starts_with("period_start,period_end,sensor_id,"),
            "{head}"
        );
        assert!(head.ends_with(",readings_Low,readings_Moderate,readings_High,readings_Very High"));
        let line = lines.next().expect("a row");
        // The country is text from the feed: guarded; P2 absent: empty.
        assert!(
            line.starts_with("2024-01-01 00:00:00,2024-01-01 23:59:59,,,'=HYPERLINK(1),,,"),
            "{line}"
        );
        assert!(
            line.contains(",3.00,3.00,3.00,3.00,3.00,,,,,,,,0,0,,,1,0,0,0"),
            "{line}"
        );
        let ndjson = render(Format::Ndjson);
        let object: Value = serde_json::from_str(ndjson.trim()).expect("JSON");
        let keys: Vec<&String> = object.as_object().expect("an object").keys().collect();
        assert_eq!(keys.len(), header(Index::Daqi, None).len());
        assert_eq!(object["P1_mean"], serde_json::json!(3.0));
        assert_eq!(object["P2_mean"], Value::Null);
        assert_eq!(object["loc_country"], "=HYPERLINK(1)");
        let geo: Value = serde_json::from_str(&render(Format::Geojson)).expect("GeoJSON");
        let feature = &geo["features"][0];
        assert_eq!(feature["geometry"], Value::Null, "a country has no point");
        assert_eq!(feature["properties"], object);
    }

    #[test]
    fn the_streamed_answer_is_the_rendering_of_every_period() {
        let readings: Vec<Reading> = (0..3 * 24)
            .map(|h| {
                let day = 1 + h / 24;
                let time = format!("2024-01-{day:02} {:02}:00:00", h % 24);
                reading(
                    1 + h as u64 % 5,
                    &time,
                    "DE",
                    "10.00",
                    &format!("{}.00", h % 30),
                )
            })
            .collect();
        let make = || {
            Aggregator::new(
                Aggregate {
                    period: Period::Day,
                    by: GroupBy::Sensor,
                },
                Index::UsEpa,
                Resolution::Hour,
                t("2024-01-01 00:00:00"),
                t("2024-01-03 23:59:59"),
            )
        };
        let rows = aggregate_all(make(), &readings);
        assert_eq!(rows.len(), 15, "five sensors a day, three days");
        let mut want = Vec::new();
        let mut r = Renderer::new(Format::Ndjson, Index::UsEpa);
        for row in &rows {
            r.row(row, &mut want);
        }
        let stream = futures::stream::iter(readings.into_iter().map(Ok)).boxed();
        let chunks: Vec<AnswerChunk> = futures::executor::block_on(
            answer(stream, make(), Format::Ndjson)
                .map(|c| c.expect("a chunk"))
                .collect(),
        );
        let got: Vec<u8> = chunks.iter().flat_map(|c| c.bytes.to_vec()).collect();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(chunks.iter().map(|c| c.rows).sum::<u64>(), 15);
        // Hourly input: no 24-hour guideline counts.
        let line: Value =
            serde_json::from_slice(want.split(|&b| b == b'\n').next().expect("a line"))
                .expect("JSON");
        assert_eq!(line["P2_days_over_who_24h"], Value::Null);
        // Sensor 1 has hours 0, 5, 10, 15, 20 of day 1: 5 of 24 = 20.8 %.
        assert_eq!(line["coverage"], serde_json::json!(20.8));
    }
}

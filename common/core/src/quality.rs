//! Quality flags (issue 28): what a reading's own values, its station and
//! its neighbours say about how far to trust it. Each flag has one rule,
//! written here and nowhere else; whatever names a flag (the query's
//! `quality` filter, the answers, the OpenAPI, the page) reads
//! [`Flag::ALL`].
//!
//! Flags mark, they never remove or change: every accepted reading keeps
//! its raw values whatever its flags, and only a query that asks for it
//! leaves flagged readings out.
//!
//! The rules:
//! - `indoor`: the feed says the sensor is indoors (`location.indoor`).
//! - `pm25_above_pm10`: PM2.5 is above PM10 (both sent), which cannot be:
//!   PM10 includes every particle PM2.5 counts.
//! - `humid`: the relative humidity at the station is at least
//!   [`HUMID_RH`] %: optical sensors count water-swollen particles and
//!   read high, the more so towards saturation.
//! - `no_humidity`: no humidity was measured at the station in the
//!   reading's period, so neither `humid` nor a correction can be told.
//! - `stuck`: the sensor sent the same P1 and the same P2 for at least
//!   [`stuck_run`] consecutive readings of the series; the reading that
//!   makes the run that long and every later one of the run are flagged.
//! - `moved`: the reading is more than [`MOVED_METRES`] from the sensor's
//!   previous reading of the series.
//! - `outlier`: among the feed's readings of the same grid cell
//!   ([`crate::place::CELL_DEGREES`]) and the same period (the hour for the
//!   5-minute and hourly series, the UTC day for the daily one; readings
//!   of another feed are not compared), when there are at least
//!   [`OUTLIER_MIN_READINGS`],
//!   a P1 or P2 whose modified z-score exceeds [`OUTLIER_Z`] (Iglewicz and
//!   Hoaglin: see [`outliers`]).
//!
//! The hourly means are not assessed themselves: an hour takes its flags
//! from the 5-minute readings it averages ([`HourQuality`]): `indoor`,
//! `stuck`, `moved` and `outlier` when any of them carries it
//! ([`INHERITED`]); `pm25_above_pm10` on the hour's means; `humid` and
//! `no_humidity` on the mean of its readings' humidities, which with the
//! mean of their temperatures is the hour's air.
//!
//! `stuck` and `moved` read the sensor's readings in the feed and those
//! stored in the [`stuck_run`] steps before its first reading of the feed
//! ([`Survey::history`]): consecutive readings are consecutive in that
//! sequence, whatever the time between them; a reading stored later than
//! the feed (a late day ingested after the next) does not change them.

use crate::air::{Air, AirMean, Measured, Stations};
use crate::reading::Reading;
use crate::resolution::Resolution;
use std::collections::HashMap;
use std::fmt;

/// The series whose readings ingestion assesses: the daily one (nightly
/// feed, backfilled daily means) and the 5-minute one (the live feed).
pub const ASSESSED: [Resolution; 2] = [Resolution::Day, Resolution::FiveMin];

/// The series whose readings keep flags and air, which a query's
/// `quality` filter reads: the assessed ones and the hourly means, which
/// take theirs from their 5-minute readings ([`HourQuality`]).
pub const SERIES: [Resolution; 3] = [Resolution::Day, Resolution::Hour, Resolution::FiveMin];

/// The flags an hourly mean takes from the 5-minute readings it averages:
/// it carries one when any of them does, as its mean holds that
/// reading's value. The others are judged on the hour ([`HourQuality`]).
pub const INHERITED: [Flag; 4] = [Flag::Indoor, Flag::Stuck, Flag::Moved, Flag::Outlier];

/// One quality flag. The discriminant is the flag's bit in [`Flags`]:
/// stored, so a flag keeps its number for ever (new flags take new ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    Indoor = 0,
    Pm25AbovePm10 = 1,
    Humid = 2,
    NoHumidity = 3,
    Stuck = 4,
    Moved = 5,
    Outlier = 6,
}

impl Flag {
    /// Every flag, in the order answers list them.
    pub const ALL: [Flag; 7] = [
        Flag::Indoor,
        Flag::Pm25AbovePm10,
        Flag::Humid,
        Flag::NoHumidity,
        Flag::Stuck,
        Flag::Moved,
        Flag::Outlier,
    ];

    /// The name queries and answers use.
    pub fn name(self) -> &'static str {
        match self {
            Flag::Indoor => "indoor",
            Flag::Pm25AbovePm10 => "pm25_above_pm10",
            Flag::Humid => "humid",
            Flag::NoHumidity => "no_humidity",
            Flag::Stuck => "stuck",
            Flag::Moved => "moved",
            Flag::Outlier => "outlier",
        }
    }

    /// Its rule in one line, for people (the OpenAPI and the page), with
    /// the numbers of the constants below.
    pub fn rule(self) -> String {
        match self {
            Flag::Indoor => format!("the feed says the sensor is indoors{INHERITS}"),
            Flag::Pm25AbovePm10 => {
                "PM2.5 is above PM10, which cannot be (an hour: its means)".into()
            }
            Flag::Humid => format!(
                "relative humidity at the station is at least {HUMID_RH} % (an hour: the \
                 mean of its readings')"
            ),
            Flag::NoHumidity => {
                "no humidity was measured at the station in the period (an hour: for none of \
                 its readings)"
                    .into()
            }
            Flag::Stuck => format!(
                "the same P1 and P2 for {} five-minute or {} daily readings in a row{INHERITS}",
                stuck_run(Resolution::FiveMin),
                stuck_run(Resolution::Day)
            ),
            Flag::Moved => format!(
                "more than {MOVED_METRES} m from the sensor's previous reading, when that is \
                 at most {} five-minute or {} daily steps older{INHERITS}",
                stuck_run(Resolution::FiveMin),
                stuck_run(Resolution::Day)
            ),
            Flag::Outlier => format!(
                "modified z-score above {OUTLIER_Z} among the readings of its {}° cell and \
                 period ({OUTLIER_MIN_READINGS} or more){INHERITS}",
                crate::place::CELL_DEGREES
            ),
        }
    }

    /// Parses a name case-insensitively (see [`crate::name::matches`]).
    pub fn parse(name: &str) -> Option<Flag> {
        Flag::ALL
            .into_iter()
            .find(|f| crate::name::matches(name, f.name()))
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A reading's flags: a set of [`Flag`]s, stored as its bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// No flag.
    pub const NONE: Flags = Flags(0);

    /// The set of `flags`.
    pub fn of(flags: &[Flag]) -> Flags {
        flags.iter().fold(Flags::NONE, |set, &f| set.with(f))
    }

    /// This set and `flag`.
    #[must_use]
    pub fn with(self, flag: Flag) -> Flags {
        Flags(self.0 | flag.bit())
    }

    /// This set with `flag` when `on`.
    #[must_use]
    pub fn with_if(self, flag: Flag, on: bool) -> Flags {
        if on {
            self.with(flag)
        } else {
            self
        }
    }

    pub fn contains(self, flag: Flag) -> bool {
        self.0 & flag.bit() != 0
    }

    /// Whether the two sets share a flag.
    pub fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    /// Both sets' flags.
    #[must_use]
    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The bits a store keeps.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// The set of stored bits; `None` when a bit names no flag this build
    /// knows (a store written by a newer one), which readers report as
    /// corrupt rather than drop.
    pub fn from_bits(bits: u16) -> Option<Flags> {
        let known = Flag::ALL.iter().fold(0, |all, f| all | f.bit());
        (bits & !known == 0).then_some(Flags(bits))
    }

    /// Its flags, in [`Flag::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Flag> {
        Flag::ALL.into_iter().filter(move |&f| self.contains(f))
    }
}

/// Names separated by a space (`humid stuck`), empty for none: the CSV
/// column's text.
impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, flag) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(flag.name())?;
        }
        Ok(())
    }
}

/// A query's `quality` field: keep every reading (`"all"`), only those
/// without a flag (`"no-flags"`), or leave out those with any of a list
/// of flags (`["humid", "outlier"]`). An answer to a query that has the
/// field carries each reading's flags, humidity and temperature; one
/// without it is the answer of before the flags, byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quality {
    /// The flags whose readings are left out.
    pub exclude: Flags,
}

impl Quality {
    /// Every reading.
    pub const ALL: &'static str = "all";
    /// Only readings without a flag.
    pub const NO_FLAGS: &'static str = "no-flags";

    /// Whether a reading with `flags` is kept.
    pub fn keeps(self, flags: Flags) -> bool {
        !flags.intersects(self.exclude)
    }

    /// Parses the field's value; the error says what is wrong with it.
    pub fn from_value(value: &serde_json::Value) -> Result<Quality, String> {
        use serde_json::Value;
        let every = Flags::of(&Flag::ALL);
        let names = Flag::ALL.map(Flag::name).join(", ");
        let shape = format!(
            "must be \"{}\", \"{}\" or a list of flags to leave out ({names})",
            Self::ALL,
            Self::NO_FLAGS
        );
        match value {
            Value::String(s) if s == Self::ALL => Ok(Quality {
                exclude: Flags::NONE,
            }),
            Value::String(s) if s == Self::NO_FLAGS => Ok(Quality { exclude: every }),
            Value::String(s) => Err(format!("unknown value {s:?}; {shape}")),
            Value::Array(items) => {
                let mut exclude = Flags::NONE;
                for item in items {
                    match item.as_str().map(|s| (s, Flag::parse(s))) {
                        Some((_, Some(flag))) => exclude = exclude.with(flag),
                        Some((s, None)) => {
                            return Err(format!("unknown flag {s:?}; the flags are {names}"))
                        }
                        None => return Err(format!("{shape}; a list holds flag names only")),
                    }
                }
                Ok(Quality { exclude })
            }
            _ => Err(shape),
        }
    }

    /// The canonical JSON value, read back by [`Quality::from_value`].
    pub fn to_value(self) -> serde_json::Value {
        if self.exclude.is_empty() {
            Self::ALL.into()
        } else if self.exclude == Flags::of(&Flag::ALL) {
            Self::NO_FLAGS.into()
        } else {
            self.exclude
                .iter()
                .map(Flag::name)
                .collect::<Vec<_>>()
                .into()
        }
    }
}

/// `pm25_above_pm10`: both pollutants sent and PM2.5 the larger.
pub fn pm25_above_pm10(p1: Option<f64>, p2: Option<f64>) -> bool {
    matches!((p1, p2), (Some(p1), Some(p2)) if p2 > p1)
}

/// Relative humidity (%) from which a reading is `humid`. Optical
/// sensors read high in humid air: the SDS011's data sheet specifies at
/// most 70 %, and Crilley et al. (2018, Atmos. Meas. Tech. 11, 709–720)
/// found a large positive artefact above 85 %. At 95 % the κ-Köhler mass
/// growth factor 1 + (κ / 1.65) / (100 / RH − 1) is already 1 + 11.5 κ:
/// double the dry mass for κ = 0.09, a weakly hygroscopic aerosol.
pub const HUMID_RH: f64 = 95.0;

/// `humid`, of a relative humidity in %.
pub fn humid(rh: f64) -> bool {
    rh >= HUMID_RH
}

/// How [`Flag::rule`] says that an hourly mean takes an [`INHERITED`]
/// flag.
const INHERITS: &str = "; an hour when any of its 5-minute readings is";

/// The run of equal readings from which a reading of `series` is `stuck`:
/// an hour of identical 5-minute means (12), three identical daily means.
/// The feed sends two decimals, so a working sensor repeats both values
/// that often only in a fault. The hourly means are not assessed (they
/// take their readings' flags, [`INHERITED`]); their run is their
/// readings'.
pub fn stuck_run(series: Resolution) -> u32 {
    match series {
        Resolution::FiveMin | Resolution::Hour => 12,
        Resolution::Day => 3,
    }
}

/// A sensor's current run of equal readings: its last P1 and P2 and how
/// many readings in a row sent them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub p1: Option<f64>,
    pub p2: Option<f64>,
    pub length: u32,
}

impl Run {
    /// The run after a reading of `p1`, `p2` that follows `previous` (the
    /// sensor's run before it, if any).
    pub fn after(previous: Option<Run>, p1: Option<f64>, p2: Option<f64>) -> Run {
        let length = match previous {
            Some(run) if run.p1 == p1 && run.p2 == p2 => run.length.saturating_add(1),
            _ => 1,
        };
        Run { p1, p2, length }
    }

    /// Whether the reading that ends this run is `stuck` in `series`.
    pub fn stuck(self, series: Resolution) -> bool {
        self.length >= stuck_run(series)
    }
}

/// Metres between a sensor's consecutive positions from which a reading
/// is `moved`. The feed rounds a station's coordinates (three decimals,
/// about 110 m of latitude, for most), so a smaller change can be a
/// rounding rather than a move.
pub const MOVED_METRES: f64 = 200.0;

/// `moved`: `now` is more than [`MOVED_METRES`] from `before` (latitude,
/// longitude in degrees; great-circle distance, [`crate::place::distance_km`]).
pub fn moved(before: (f64, f64), now: (f64, f64)) -> bool {
    crate::place::distance_km(before.0, before.1, now.0, now.1) * 1000.0 > MOVED_METRES
}

/// Readings a cell's period needs before its outliers are told: a median
/// of fewer is not robust.
pub const OUTLIER_MIN_READINGS: usize = 5;

/// The modified z-score above which a value is an outlier: Iglewicz, B.
/// and Hoaglin, D. C. (1993), *How to Detect and Handle Outliers*, ASQC
/// Quality Press, vol. 16 of the ASQC Basic References in Quality
/// Control, §3: Mᵢ = 0.6745 (xᵢ − x̃) / MAD, outliers where |Mᵢ| > 3.5.
pub const OUTLIER_Z: f64 = 3.5;

/// The smallest median absolute deviation (µg/m³) the score divides by.
/// When more than half of a cell's sensors send one value the MAD is
/// zero and any other value would score infinitely: with this floor a
/// value must be more than 3.5 × 2 / 0.6745 ≈ 10.4 µg/m³ from the median.
pub const OUTLIER_MIN_MAD: f64 = 2.0;

/// The constant of the modified z-score: the standard normal's third
/// quartile, so that the MAD estimates the standard deviation of normal
/// data (Iglewicz and Hoaglin, as above).
const Z_QUARTILE: f64 = 0.6745;

/// Which of one pollutant's values of a cell's period are outliers, in
/// the order given: none when there are fewer than
/// [`OUTLIER_MIN_READINGS`].
pub fn outliers(values: &[f64]) -> Vec<bool> {
    let spread = Spread::of(values);
    values
        .iter()
        .map(|&v| spread.is_some_and(|s| s.outlying(v)))
        .collect()
}

/// A cell's period's values of one pollutant, as the outlier rule sees
/// them: their median and median absolute deviation (floored).
#[derive(Debug, Clone, Copy)]
struct Spread {
    median: f64,
    mad: f64,
}

impl Spread {
    /// `None` below [`OUTLIER_MIN_READINGS`] values.
    fn of(values: &[f64]) -> Option<Spread> {
        if values.len() < OUTLIER_MIN_READINGS {
            return None;
        }
        let centre = median(values.to_vec());
        let deviations: Vec<f64> = values.iter().map(|v| (v - centre).abs()).collect();
        Some(Spread {
            median: centre,
            mad: median(deviations).max(OUTLIER_MIN_MAD),
        })
    }

    /// Whether `v`'s modified z-score exceeds [`OUTLIER_Z`].
    fn outlying(self, v: f64) -> bool {
        Z_QUARTILE * (v - self.median).abs() / self.mad > OUTLIER_Z
    }
}

/// A cell and period ([`outlier_period`]) of a series.
type CellPeriod = (u32, i64);

/// What the survey and the assessment read of a reading, parsed once:
/// its values, its position, and the cell and period it is compared in
/// (`None` without a position).
struct Seen {
    values: [Option<f64>; 2],
    position: Option<(f64, f64)>,
    cell_period: Option<CellPeriod>,
}

impl Seen {
    fn of(series: Resolution, r: &Reading) -> Seen {
        let position = r.position();
        Seen {
            values: values(r),
            position,
            cell_period: position.map(|(lat, lon)| {
                (
                    crate::place::cell(lat, lon),
                    outlier_period(series, r.timestamp),
                )
            }),
        }
    }

    fn step(&self, ts: i64) -> Step {
        let [p1, p2] = self.values;
        let (lat, lon) = self
            .position
            .map_or((f32::NAN, f32::NAN), |(lat, lon)| (lat as f32, lon as f32));
        Step {
            ts,
            p1: p1.unwrap_or(f64::NAN),
            p2: p2.unwrap_or(f64::NAN),
            lat,
            lon,
        }
    }
}

/// The maps of a survey, looked up once or twice a reading: foldhash
/// rather than SipHash (as the aggregations').
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A reading's P1 and P2 as numbers.
fn values(r: &Reading) -> [Option<f64>; 2] {
    let value = |text: &Option<String>| text.as_deref().and_then(|t| t.parse::<f64>().ok());
    [value(&r.p1), value(&r.p2)]
}

/// One reading of a sensor's track: what `stuck` and `moved` compare, in
/// 32 bytes (a feed of a million readings holds a million of them): the
/// values, NaN for none; the position in single precision, NaN for none
/// (its step at 90° is 4 µ°, under a metre, against a 200 m rule).
#[derive(Debug, Clone, Copy)]
struct Step {
    ts: i64,
    p1: f64,
    p2: f64,
    lat: f32,
    lon: f32,
}

impl Step {
    fn values(&self) -> (Option<f64>, Option<f64>) {
        let some = |v: f64| (!v.is_nan()).then_some(v);
        (some(self.p1), some(self.p2))
    }

    fn position(&self) -> Option<(f64, f64)> {
        (!self.lat.is_nan() && !self.lon.is_nan()).then_some((self.lat.into(), self.lon.into()))
    }
}

/// What [`Survey::sighting`] learns of a reading, made apart from the
/// survey so that the threads parsing a feed make it
/// (`feed::parse_feed_from_with_air_parallel`): its values and position
/// parsed, its cell and period.
pub struct Sighting {
    sensor: u64,
    t: i64,
    seen: Seen,
}

impl Sighting {
    pub fn of(series: Resolution, r: &Reading) -> Sighting {
        Sighting {
            sensor: r.sensor_id,
            t: r.timestamp.0,
            seen: Seen::of(series, r),
        }
    }
}

/// The first of a feed's two passes, for the flags that need the whole
/// feed before any of its readings is stored: it learns the stations' air
/// ([`Survey::air`]), every cell's values per period and every sensor's
/// track ([`Survey::reading`]: 48 bytes a reading and 16 a sensor),
/// whatever the order of
/// the feed's entries, and the sensors' stored readings just before the
/// feed ([`Survey::history`], [`Survey::history_window`]).
/// [`Survey::finish`] makes the [`Assessment`] the second pass completes
/// each reading with.
#[derive(Debug)]
pub struct Survey {
    series: Resolution,
    stations: Stations,
    values: FastMap<CellPeriod, [Vec<f64>; 2]>,
    /// Each sensor's first reading time in the feed, and its track.
    tracks: FastMap<u64, (i64, Vec<Step>)>,
    /// The feed's first and last reading time.
    span: Option<(i64, i64)>,
}

impl Survey {
    pub fn new(series: Resolution) -> Survey {
        Survey {
            series,
            stations: Stations::default(),
            values: FastMap::default(),
            tracks: FastMap::default(),
            span: None,
        }
    }

    /// The series surveyed.
    pub fn series(&self) -> Resolution {
        self.series
    }

    /// Learns an accepted reading of the feed.
    pub fn reading(&mut self, r: &Reading) {
        self.sighting(Sighting::of(self.series, r));
    }

    /// Learns an accepted reading of the feed from what another thread
    /// made of it ([`Sighting::of`] with this survey's series).
    pub fn sighting(&mut self, Sighting { sensor, t, seen }: Sighting) {
        if let Some(key) = seen.cell_period {
            let group = self.values.entry(key).or_default();
            for (list, v) in group.iter_mut().zip(seen.values) {
                list.extend(v);
            }
        }
        let (first, track) = self.tracks.entry(sensor).or_insert((t, Vec::new()));
        *first = (*first).min(t);
        track.push(seen.step(t));
        self.span = Some(self.span.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
    }

    /// The [`stuck_run`] steps of the series: how far back `stuck` and
    /// `moved` look before a sensor's first reading of the feed, seconds.
    fn lookback(&self) -> i64 {
        let step = self.series.step().as_secs() as i64;
        step.saturating_mul(i64::from(stuck_run(self.series)))
    }

    /// The stored readings `stuck` and `moved` compare the feed's readings
    /// with, as one range of time (inclusive bounds) to read: the
    /// [`Survey::lookback`] before each sensor's first reading of the feed
    /// ([`Survey::history`] keeps only those), for the sensors whose first
    /// reading lies within twice that of the feed's last (one stale entry
    /// must not stretch the read over years); `None` for an empty feed.
    pub fn history_window(&self) -> Option<(crate::reading::Timestamp, crate::reading::Timestamp)> {
        let (first, last) = self.span?;
        let back = self.lookback();
        let from = first.max(last.saturating_sub(back.saturating_mul(2)));
        Some((
            crate::reading::Timestamp(from.saturating_sub(back)),
            crate::reading::Timestamp(last.saturating_sub(1)),
        ))
    }

    /// Learns a stored reading of [`Survey::history_window`]: one of a
    /// sensor's readings in the [`Survey::lookback`] before its first of
    /// the feed, for its run and its previous position. Others (of a
    /// sensor the feed does not have, or not before its first) are not
    /// kept.
    pub fn history(&mut self, r: &Reading) {
        let back = self.lookback();
        let Some((first, track)) = self.tracks.get_mut(&r.sensor_id) else {
            return;
        };
        let t = r.timestamp.0;
        if t < *first && t >= first.saturating_sub(back) {
            track.push(Seen::of(self.series, r).step(t));
        }
    }

    /// Learns a station's measurement.
    pub fn air(&mut self, m: Measured) {
        self.stations.add(m);
    }

    pub fn finish(self) -> Assessment {
        let spreads = self
            .values
            .into_iter()
            .filter_map(|(key, [p1, p2])| {
                let spreads = [Spread::of(&p1), Spread::of(&p2)];
                spreads
                    .iter()
                    .any(Option::is_some)
                    .then_some((key, spreads))
            })
            .collect();
        let tracks = self
            .tracks
            .into_iter()
            .map(|(sensor, (_, mut track))| {
                track.sort_by_key(|s| s.ts);
                (sensor, track)
            })
            .collect();
        Assessment {
            series: self.series,
            stations: self.stations,
            spreads,
            tracks,
            newest: self.span.map(|(_, last)| last),
        }
    }
}

impl Survey {
    /// Learns the history a [`Carry`] holds, as [`Survey::history`] learns
    /// it from the store: the carried steps of the feed's sensors in the
    /// [`Survey::lookback`] before each one's first reading of the feed.
    pub fn history_from(&mut self, carry: &Carry) {
        let back = self.lookback();
        for (sensor, (first, track)) in &mut self.tracks {
            if let Some(carried) = carry.tracks.get(sensor) {
                let since = first.saturating_sub(back);
                track.extend(
                    carried
                        .iter()
                        .filter(|s| s.ts < *first && s.ts >= since)
                        .copied(),
                );
            }
        }
    }
}

/// What a long-running ingestion of a series (the live master's schedule)
/// keeps of its sensors between feeds: each one's last [`stuck_run`]
/// readings, the history `stuck` and `moved` read, so that a feed's
/// survey takes it from memory ([`Survey::history_from`]) rather than
/// reading the hour before it from the store again, every sensor's, at
/// every feed (an hour of 5-minute readings of 15,000 sensors is 180,000
/// rows). Filled once from the store ([`Carry::stored`]: every sensor's
/// readings of the first feed's window), then from each feed's
/// [`Assessment`] ([`Carry::keep`]). It equals the store's history only
/// while the process storing it writes every reading of the series, the
/// live tier's one writer; the caller empties it ([`Carry::clear`]) when
/// a run fails, and the next run fills it again. Memory: 32 bytes a step,
/// [`stuck_run`] steps a sensor (6.2 MB for 15,000 sensors' 12).
#[derive(Debug)]
pub struct Carry {
    series: Resolution,
    filled: bool,
    tracks: FastMap<u64, Vec<Step>>,
}

impl Carry {
    pub fn new(series: Resolution) -> Carry {
        Carry {
            series,
            filled: false,
            tracks: FastMap::default(),
        }
    }

    pub fn series(&self) -> Resolution {
        self.series
    }

    /// Whether it holds the history (filled from the store, kept since).
    pub fn is_filled(&self) -> bool {
        self.filled
    }

    /// Learns a stored reading of the series: the fill, from the store's
    /// history of a feed's window, every sensor's
    /// ([`Survey::history_window`]); [`Carry::filled`] ends it.
    pub fn stored(&mut self, r: &Reading) {
        let step = Seen::of(self.series, r).step(r.timestamp.0);
        self.tracks.entry(r.sensor_id).or_default().push(step);
    }

    /// The fill is complete.
    pub fn filled(&mut self) {
        for track in self.tracks.values_mut() {
            track.sort_by_key(|s| s.ts);
            let n = stuck_run(self.series) as usize;
            track.drain(..track.len().saturating_sub(n));
        }
        self.filled = true;
    }

    /// Keeps what a feed's assessment knows of its sensors (their
    /// history and the feed's readings, now stored): each sensor's last
    /// [`stuck_run`] readings. Sensors whose newest carried reading is
    /// more than twice the look-back older than the feed's newest reading
    /// are let go: a survey of a later feed would not read them.
    pub fn keep(&mut self, assessment: &Assessment) {
        let Some(newest) = assessment.newest else {
            return;
        };
        let n = stuck_run(self.series) as usize;
        for (sensor, track) in &assessment.tracks {
            let kept = &track[track.len().saturating_sub(n)..];
            let carried = self.tracks.entry(*sensor).or_default();
            carried.clear();
            carried.extend_from_slice(kept);
        }
        let step = self.series.step().as_secs() as i64;
        let horizon =
            newest.saturating_sub(step.saturating_mul(2 * i64::from(stuck_run(self.series))));
        self.tracks
            .retain(|_, track| track.last().is_some_and(|s| s.ts >= horizon));
    }

    /// Forgets everything: the next feed fills it from the store again.
    pub fn clear(&mut self) {
        self.filled = false;
        self.tracks.clear();
    }

    /// Sensors held.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }
}

/// What a feed's [`Survey`] found, to complete its readings with.
#[derive(Debug)]
pub struct Assessment {
    series: Resolution,
    stations: Stations,
    spreads: FastMap<CellPeriod, [Option<Spread>; 2]>,
    /// Each sensor's readings, the feed's and the stored ones before it,
    /// in time order.
    tracks: FastMap<u64, Vec<Step>>,
    /// The feed's newest reading time; `None` for an empty feed.
    newest: Option<i64>,
}

impl Assessment {
    /// Whether `r` (a reading of the surveyed feed) can end as its sensor's
    /// latest: false when the feed has a newer reading of the sensor, which
    /// the same ingestion stores too (the store may then skip `r`'s latest
    /// work: [`crate::store::ReadingStore::put_batch_hinted`]).
    pub fn may_be_latest(&self, r: &Reading) -> bool {
        // A track is in time order and ends with the feed's newest reading
        // (the stored ones it holds are all before the feed's first).
        self.tracks
            .get(&r.sensor_id)
            .and_then(|track| track.last())
            .is_none_or(|newest| newest.ts <= r.timestamp.0)
    }

    /// Gives `r` (a reading of the surveyed feed) its station's air and
    /// the flags the feed and the sensor's earlier readings decide beyond
    /// the entry's own (`humid`, `no_humidity`, `outlier`, `stuck`,
    /// `moved`), keeping the flags it has.
    pub fn complete(&self, r: &mut Reading) {
        if let Some(air) = r
            .loc_id
            .and_then(|at| self.stations.air_at(at, r.timestamp, self.series.step()))
        {
            r.air = air;
        }
        let rh = r.air.humidity_percent();
        let seen = Seen::of(self.series, r);
        let outlying = seen
            .cell_period
            .and_then(|key| self.spreads.get(&key))
            .is_some_and(|spreads| {
                spreads
                    .iter()
                    .zip(seen.values)
                    .any(|(s, v)| matches!((s, v), (Some(s), Some(v)) if s.outlying(v)))
            });
        let (stuck, moved) = self.track_flags(r.sensor_id, seen.step(r.timestamp.0));
        r.flags = r
            .flags
            .with_if(Flag::Humid, rh.is_some_and(humid))
            .with_if(Flag::NoHumidity, rh.is_none())
            .with_if(Flag::Outlier, outlying)
            .with_if(Flag::Stuck, stuck)
            .with_if(Flag::Moved, moved);
    }

    /// `stuck` and `moved` of `r` in its sensor's track: the run of equal
    /// values that ends with it (only the last [`stuck_run`] readings
    /// before it matter), and the position of the reading before it.
    fn track_flags(&self, sensor: u64, me: Step) -> (bool, bool) {
        let Some(track) = self.tracks.get(&sensor) else {
            return (false, false);
        };
        // The readings before it; of two at its time, the first is it.
        let before = &track[..track.partition_point(|s| s.ts < me.ts)];
        let n = stuck_run(self.series) as usize;
        let run = before[before.len().saturating_sub(n)..]
            .iter()
            .chain(std::iter::once(&me))
            .fold(None, |run, s| {
                let (p1, p2) = s.values();
                Some(Run::after(run, p1, p2))
            });
        let moved = match (before.last().and_then(Step::position), me.position()) {
            (Some(a), Some(b)) => moved(a, b),
            _ => false,
        };
        (run.is_some_and(|run| run.stuck(self.series)), moved)
    }
}

/// The median (the mean of the middle two of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// What a feed says of one reading beyond the reading itself.
#[derive(Debug, Clone, Default)]
pub struct Beside {
    /// The feed's `location.indoor`.
    pub indoor: bool,
    /// The air at its station in its period ([`crate::air::Stations`]).
    pub air: Option<crate::air::Air>,
}

/// The period a reading of `series` is compared with its cell's in for
/// `outlier`: its UTC hour (5-minute and hourly series) or UTC day.
pub fn outlier_period(series: Resolution, t: crate::reading::Timestamp) -> i64 {
    let span = match series {
        Resolution::FiveMin | Resolution::Hour => Resolution::Hour.step(),
        Resolution::Day => Resolution::Day.step(),
    };
    t.0.div_euclid(span.as_secs() as i64)
}

/// The flags of a feed's readings that the feed alone decides, in the
/// order given (`beside[i]` belongs to `readings[i]`): `indoor`,
/// `pm25_above_pm10`, `humid`, `no_humidity`, `outlier` among the feed's
/// readings of each cell and period, and `stuck` and `moved` within each
/// sensor's readings of the feed (ingestion adds the stored ones before
/// it: [`Survey::history`]). A reading without its `beside` (a shorter
/// slice) is taken as outdoors with no air.
pub fn of_feed(series: Resolution, readings: &[Reading], beside: &[Beside]) -> Vec<Flags> {
    let mut survey = Survey::new(series);
    for r in readings {
        survey.reading(r);
    }
    let assessment = survey.finish();
    readings
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let b = beside.get(i);
            let [p1, p2] = values(r);
            let mut r = Reading {
                air: b.and_then(|b| b.air.clone()).unwrap_or_default(),
                flags: Flags::NONE
                    .with_if(Flag::Indoor, b.is_some_and(|b| b.indoor))
                    .with_if(Flag::Pm25AbovePm10, pm25_above_pm10(p1, p2)),
                ..r.clone()
            };
            assessment.complete(&mut r);
            r.flags
        })
        .collect()
}

/// The largest value of each of [`AirMean::parts`]' sums: a humidity in
/// %, a temperature's magnitude in °C ([`crate::air`]'s ranges).
const LARGEST_AIR: [u128; 3] = [
    100,
    crate::air::MAX_TEMPERATURE as u128,
    crate::air::MAX_TEMPERATURE as u128,
];

/// What an hour's 5-minute readings say of its quality: how many carry
/// each [`INHERITED`] flag, and the exact sums of their humidities and
/// temperatures ([`AirMean`], rounded like the hour's means). Counts and
/// sums rather than the flags themselves, so that a replaced reading is
/// taken back exactly, as the hour's sums of P1 and P2 are; a store keeps
/// it as [`HourQuality::to_text`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HourQuality {
    flagged: [u64; INHERITED.len()],
    air: AirMean,
}

impl HourQuality {
    /// Adds a 5-minute reading's flags and air.
    pub fn add(&mut self, flags: Flags, air: &Air) {
        for (n, flag) in self.flagged.iter_mut().zip(INHERITED) {
            *n = n.saturating_add(u64::from(flags.contains(flag)));
        }
        self.air
            .add(air.humidity.as_deref(), air.temperature.as_deref());
    }

    /// Takes back what [`HourQuality::add`] added of the same flags and
    /// air (a replaced reading's).
    pub fn remove(&mut self, flags: Flags, air: &Air) {
        for (n, flag) in self.flagged.iter_mut().zip(INHERITED) {
            *n = n.saturating_sub(u64::from(flags.contains(flag)));
        }
        self.air
            .remove(air.humidity.as_deref(), air.temperature.as_deref());
    }

    /// This and `other` together (two parts of one hour's readings), or
    /// this without `other` (with `add` false: readings taken back).
    pub fn combined(self, other: HourQuality, add: bool) -> HourQuality {
        let op = |a: u128, b: u128| {
            if add {
                a.saturating_add(b)
            } else {
                a.saturating_sub(b)
            }
        };
        let op64 = |a: u64, b: u64| {
            if add {
                a.saturating_add(b)
            } else {
                a.saturating_sub(b)
            }
        };
        let mut flagged = self.flagged;
        for (n, m) in flagged.iter_mut().zip(other.flagged) {
            *n = op64(*n, m);
        }
        let (mine, theirs) = (self.air.parts(), other.air.parts());
        // A sum no larger than its count of values can make: what
        // `from_text` reads back (taking back a value never added, which
        // a consistent store never does, cannot leave a sum over no
        // values).
        let sums = std::array::from_fn(|k| {
            let ((a, n), (b, m)) = (mine[k].parts(), theirs[k].parts());
            let count = op64(n, m);
            let most = u128::from(count) * LARGEST_AIR[k] * crate::mean::NANO;
            crate::mean::ExactSum::from_parts(op(a, b).min(most), count)
        });
        HourQuality {
            flagged,
            air: AirMean::from_parts(sums),
        }
    }

    /// The hour's flags and air, for an hour whose means are `p1`, `p2`
    /// (as stored): see the module's documentation.
    pub fn assess(&self, p1: Option<&str>, p2: Option<&str>) -> (Flags, Air) {
        let air = self.air.mean();
        let number = |t: Option<&str>| crate::mean::value_of(t).map(|(_, v)| v);
        let mut flags =
            Flags::NONE.with_if(Flag::Pm25AbovePm10, pm25_above_pm10(number(p1), number(p2)));
        for (flag, n) in INHERITED.into_iter().zip(self.flagged) {
            flags = flags.with_if(flag, n > 0);
        }
        flags = match air.humidity_percent() {
            Some(rh) => flags.with_if(Flag::Humid, humid(rh)),
            None => flags.with(Flag::NoHumidity),
        };
        (flags, air)
    }

    /// As a store keeps it: the counts in [`INHERITED`]'s order, then `|`
    /// and the humidities' sum (nano-units) and count, the positive
    /// temperatures' and the negative ones', separated by spaces. A flag
    /// added to the end of [`INHERITED`] later reads older text as a count
    /// of 0.
    pub fn to_text(&self) -> String {
        let counts: Vec<String> = self.flagged.iter().map(u64::to_string).collect();
        let sums: Vec<String> = self
            .air
            .parts()
            .iter()
            .flat_map(|sum| {
                let (nano, n) = sum.parts();
                [nano.to_string(), n.to_string()]
            })
            .collect();
        format!("{}|{}", counts.join(" "), sums.join(" "))
    }

    /// Reads [`HourQuality::to_text`]; an error says what is wrong. Sums
    /// larger than their counts of the largest measurement allow
    /// ([`crate::air`]'s ranges) are refused, so no arithmetic on them
    /// can overflow.
    pub fn from_text(text: &str) -> Result<HourQuality, String> {
        let bad = |what: &str| format!("an hour's quality sums {text:?}: {what}");
        let (counts, sums) = text
            .split_once('|')
            .ok_or_else(|| bad("no `|` between the counts and the sums"))?;
        let numbers = |part: &str| -> Result<Vec<u128>, String> {
            part.split(' ')
                .filter(|f| !f.is_empty())
                .map(|f| f.parse().map_err(|_| bad(&format!("{f:?} is no count"))))
                .collect()
        };
        let counts = numbers(counts)?;
        let sums = numbers(sums)?;
        if counts.len() > INHERITED.len() || sums.len() != 6 {
            return Err(bad(&format!(
                "{} counts and {} sums, not at most {} and 6",
                counts.len(),
                sums.len(),
                INHERITED.len()
            )));
        }
        let count = |v: u128| u64::try_from(v).map_err(|_| bad("a count is too large"));
        let mut flagged = [0; INHERITED.len()];
        for (n, v) in flagged.iter_mut().zip(&counts) {
            *n = count(*v)?;
        }
        let mut parts = [crate::mean::ExactSum::default(); 3];
        for (k, part) in parts.iter_mut().enumerate() {
            let (nano, n) = (sums[2 * k], count(sums[2 * k + 1])?);
            if nano > u128::from(n) * LARGEST_AIR[k] * crate::mean::NANO {
                return Err(bad("a sum is larger than its count of values can make"));
            }
            *part = crate::mean::ExactSum::from_parts(nano, n);
        }
        Ok(HourQuality {
            flagged,
            air: AirMean::from_parts(parts),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An hour's flags and air from its readings', by hand from the rules
    /// in the module's documentation.
    #[test]
    fn an_hour_takes_its_readings_flags_and_their_mean_air() {
        let air = |rh: Option<&str>, t: Option<&str>| Air {
            humidity: rh.map(Into::into),
            temperature: t.map(Into::into),
        };
        let first = (
            Flags::of(&[Flag::Indoor, Flag::Humid]),
            air(Some("96.00"), Some("10.00")),
        );
        let second = (
            Flags::of(&[Flag::Indoor]),
            air(Some("94.00"), Some("-2.00")),
        );
        let third = (Flags::of(&[Flag::Stuck, Flag::NoHumidity]), air(None, None));
        let mut hour = HourQuality::default();
        for (flags, air) in [&first, &second, &third] {
            hour.add(*flags, air);
        }
        // indoor twice, stuck once; humidity (96 + 94) / 2 = 95.00, at
        // least 95: humid (not inherited: the first's own humid is not
        // what decides); temperature (10 − 2) / 2 = 4.00. P2 10 < P1 20.
        let (flags, mean) = hour.assess(Some("20.00"), Some("10.00"));
        assert_eq!(flags, Flags::of(&[Flag::Indoor, Flag::Humid, Flag::Stuck]));
        assert_eq!(mean, air(Some("95.00"), Some("4.00")));
        assert_eq!(
            hour.to_text(),
            "2 1 0 0|190000000000 2 10000000000 1 2000000000 1"
        );
        // Text of fewer inherited flags (before one was added): 0 for it.
        let mut older = HourQuality::default();
        older.add(Flags::of(&[Flag::Indoor]), &air(None, None));
        assert_eq!(HourQuality::from_text("1 0 0|0 0 0 0 0 0"), Ok(older));
        assert_eq!(HourQuality::from_text(&hour.to_text()), Ok(hour));
        // The first taken back: humidity 94.00 (< 95), temperature −2.00.
        let mut without = hour;
        without.remove(first.0, &first.1);
        let (flags, mean) = without.assess(Some("20.00"), Some("10.00"));
        assert_eq!(flags, Flags::of(&[Flag::Indoor, Flag::Stuck]));
        assert_eq!(mean, air(Some("94.00"), Some("-2.00")));
        // Taking back what was never added leaves no sum over no values.
        let mut wet = HourQuality::default();
        wet.add(Flags::NONE, &air(Some("90.00"), None));
        let emptied = HourQuality::default().combined(wet, false);
        assert_eq!(emptied, HourQuality::default());
        assert_eq!(HourQuality::from_text(&emptied.to_text()), Ok(emptied));
        // Parts combine to the whole and back.
        let mut part = HourQuality::default();
        part.add(first.0, &first.1);
        assert_eq!(without.combined(part, true), hour);
        assert_eq!(hour.combined(part, false), without);
        // No humidity at all: no_humidity; P2 7.00 above P1 6.00 on the
        // means; nothing inherited from the third's no_humidity either.
        let mut dry = HourQuality::default();
        dry.add(third.0, &third.1);
        let (flags, mean) = dry.assess(Some("6.00"), Some("7.00"));
        assert_eq!(
            flags,
            Flags::of(&[Flag::Pm25AbovePm10, Flag::NoHumidity, Flag::Stuck])
        );
        assert!(mean.is_empty());
        // One pollutant only: no comparison.
        assert!(!dry
            .assess(None, Some("7.00"))
            .0
            .contains(Flag::Pm25AbovePm10));
        for bad in [
            "",
            "1 2 3",
            "0 0 0 0 0 0 0 0 0 0",
            "a 0 0 0|0 0 0 0 0 0",
            "0 0 0 0 0|0 0 0 0 0 0",
            "0 0 0 0|0 0 0 0 0",
            // 100.000000001 % over one value; 2¹²⁷ over none.
            "0 0 0 0|100000000001 1 0 0 0 0",
            "0 0 0 0|0 0 170141183460469231731687303715884105728 0 0 0",
            "0 0 0 0|0 18446744073709551616 0 0 0 0",
        ] {
            assert!(HourQuality::from_text(bad).is_err(), "{bad:?}");
        }
    }

    fn reading(sensor: u64, time: &str, lat: &str, p1: &str, p2: &str) -> crate::reading::Reading {
        crate::reading::Reading {
            id: None,
            timestamp: crate::reading::Timestamp::parse_feed(time).expect("a time"),
            sensor_id: sensor,
            sensor_type: "SDS011".into(),
            loc_id: Some(sensor),
            loc_country: "DE".into(),
            loc_lat: lat.into(),
            loc_long: "9.100".into(),
            loc_alt: String::new(),
            p1: Some(p1.into()),
            p2: Some(p2.into()),
            indices: crate::aqi::Indices::of_text(Some(p1), Some(p2)).expect("indices"),
            samples: None,
            basis: None,
            flags: Default::default(),
            air: Default::default(),
        }
    }

    fn with_rh(rh: &str) -> Beside {
        Beside {
            indoor: false,
            air: Some(crate::air::Air {
                humidity: Some(rh.into()),
                temperature: None,
            }),
        }
    }

    #[test]
    fn a_feed_flags_its_readings_by_themselves_their_air_and_their_cell() {
        // Five sensors in the cell of 48.5°–48.75° N, 9°–9.25° E, one hour
        // (sensor 6, added below, is itself an outlier of it by its P1:
        // |9 − 21| = 12 > 10.378; nothing below depends on it);
        // P2 of sensor 5 is far above the others' (median 11, MAD 1 → 2:
        // the limit is 10.378 from 11), its P1 too.
        let hour = "2024-03-01 10:05:00";
        let mut readings = vec![
            reading(1, hour, "48.60", "20.00", "10.00"),
            reading(2, hour, "48.61", "21.00", "11.00"),
            reading(3, hour, "48.62", "21.00", "11.00"),
            reading(4, hour, "48.63", "22.00", "12.00"),
            reading(5, hour, "48.64", "150.00", "100.00"),
        ];
        let mut beside = vec![
            with_rh("94.99"),
            with_rh("95.00"),
            Beside {
                indoor: true,
                air: None,
            },
            with_rh("50"),
            with_rh("50"),
        ];
        let flags = of_feed(Resolution::FiveMin, &readings, &beside);
        let names: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        assert_eq!(names, ["", "humid", "indoor no_humidity", "", "outlier"]);

        // PM2.5 above PM10; and the same far value in the next hour, or
        // in another cell, has too few neighbours to be told.
        readings.push(reading(6, hour, "48.65", "9.00", "9.01"));
        beside.push(with_rh("40"));
        readings[4].timestamp =
            crate::reading::Timestamp::parse_feed("2024-03-01 11:00:00").expect("a time");
        let flags = of_feed(Resolution::FiveMin, &readings, &beside);
        assert!(flags[5].contains(Flag::Pm25AbovePm10));
        assert!(!flags[4].contains(Flag::Outlier), "alone in its hour");
        // Daily: the same UTC day, so one group again.
        let flags = of_feed(Resolution::Day, &readings, &beside);
        assert!(flags[4].contains(Flag::Outlier));
        readings[4].loc_lat = "48.80".into();
        let flags = of_feed(Resolution::Day, &readings, &beside);
        assert!(!flags[4].contains(Flag::Outlier), "in another cell");
    }

    #[test]
    fn stuck_and_moved_read_the_feed_and_the_stored_readings_before_it() {
        let day = |d: u32| format!("2024-03-{d:02} 00:00:00");
        let feed = [
            // Sensor 7: stored 10/5 on the 1st and 2nd, the feed's 3rd
            // is the third equal reading (stuck), its 4th starts anew.
            reading(7, &day(3), "48.6000", "10.00", "5.00"),
            reading(7, &day(4), "48.6000", "11.00", "5.00"),
            // Sensor 8: one stored equal reading: a run of two; and
            // 0.0017° of latitude from it, 6,371,008.8 m × 0.0017 × π/180
            // = 189.03 m: not moved.
            reading(8, &day(3), "48.6017", "10.00", "5.00"),
            // Sensor 9: 0.0019° = 211.27 m from its stored reading: moved.
            reading(9, &day(3), "48.6019", "12.00", "6.00"),
        ];
        let stored = [
            reading(7, &day(1), "48.6000", "10.00", "5.00"),
            reading(7, &day(2), "48.6000", "10.00", "5.00"),
            reading(8, &day(2), "48.6000", "10.00", "5.00"),
            reading(9, &day(2), "48.6000", "13.00", "6.00"),
            // Not in the feed: not kept, nothing to flag.
            reading(10, &day(2), "48.7000", "10.00", "5.00"),
        ];
        let mut survey = Survey::new(Resolution::Day);
        for r in &feed {
            survey.reading(r);
        }
        let at = |t: &str| crate::reading::Timestamp::parse_feed(t).expect("a time");
        // Three days back from the feed's first reading, up to just before
        // its last (each sensor keeps only what is before its own first).
        assert_eq!(
            survey.history_window(),
            Some((at("2024-02-29 00:00:00"), at("2024-03-03 23:59:59")))
        );
        for r in &stored {
            survey.history(r);
        }
        // Not before sensor 7's first reading of the feed, or too long
        // before it: not kept (it would break the run, or start one).
        survey.history(&reading(
            7,
            "2024-03-03 06:00:00",
            "48.6000",
            "1.00",
            "1.00",
        ));
        survey.history(&reading(
            7,
            "2024-02-27 00:00:00",
            "48.6000",
            "1.00",
            "1.00",
        ));
        let assessment = survey.finish();
        let flags: Vec<(bool, bool)> = feed
            .iter()
            .map(|r| {
                let mut r = r.clone();
                assessment.complete(&mut r);
                (r.flags.contains(Flag::Stuck), r.flags.contains(Flag::Moved))
            })
            .collect();
        assert_eq!(
            flags,
            [(true, false), (false, false), (false, false), (false, true)]
        );
        // The feed's newest reading of each sensor can end as its latest:
        // sensor 7's of the 3rd cannot (the feed has its 4th); sensor 10
        // is not in the feed, so nothing in it is newer.
        let may: Vec<bool> = feed.iter().map(|r| assessment.may_be_latest(r)).collect();
        assert_eq!(may, [false, true, true, true]);
        assert!(assessment.may_be_latest(&reading(10, &day(1), "48.7", "1.00", "1.00")));

        // Without the stored readings, the feed alone: no run is three
        // long, no sensor has an earlier position.
        let flags = of_feed(Resolution::Day, &feed, &[]);
        assert!(flags
            .iter()
            .all(|f| !f.contains(Flag::Stuck) && !f.contains(Flag::Moved)));
        assert_eq!(Survey::new(Resolution::Day).history_window(), None);

        // One stale entry years back does not stretch the read: it starts
        // 3 days before the last 6 days of the feed.
        let mut survey = Survey::new(Resolution::Day);
        survey.reading(&reading(
            11,
            "2020-01-01 00:00:00",
            "48.6000",
            "1.00",
            "1.00",
        ));
        for r in &feed {
            survey.reading(r);
        }
        assert_eq!(
            survey.history_window(),
            Some((at("2024-02-24 00:00:00"), at("2024-03-03 23:59:59")))
        );
    }

    #[test]
    fn names_parse_back_and_bits_are_stable() {
        for flag in Flag::ALL {
            assert_eq!(Flag::parse(flag.name()), Some(flag));
            assert_eq!(Flag::parse(&flag.name().to_uppercase()), Some(flag));
        }
        assert_eq!(Flag::parse("dusty"), None);
        // Stored bits: changing one would misread every stored reading.
        let bits: Vec<u16> = Flag::ALL.iter().map(|f| Flags::of(&[*f]).bits()).collect();
        assert_eq!(bits, [1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(
            Flags::from_bits(0b111_1111).map(|f| f.iter().count()),
            Some(7)
        );
        assert_eq!(
            Flags::from_bits(0b1000_0000),
            None,
            "a bit of a newer build"
        );
    }

    #[test]
    fn rules_read_the_constants() {
        assert_eq!(
            Flag::Humid.rule(),
            "relative humidity at the station is at least 95 % (an hour: the mean of its \
             readings')"
        );
        assert_eq!(
            Flag::Stuck.rule(),
            "the same P1 and P2 for 12 five-minute or 3 daily readings in a row; an hour when \
             any of its 5-minute readings is"
        );
        assert_eq!(
            Flag::Moved.rule(),
            "more than 200 m from the sensor's previous reading, when that is at most 12 \
             five-minute or 3 daily steps older; an hour when any of its 5-minute readings is"
        );
        assert!(
            Flag::Outlier.rule().contains("above 3.5")
                && Flag::Outlier.rule().contains("(5 or more)")
        );
    }

    #[test]
    fn sets_print_their_names_in_order() {
        let set = Flags::of(&[Flag::Stuck, Flag::Humid]);
        assert_eq!(set.to_string(), "humid stuck");
        assert_eq!(Flags::NONE.to_string(), "");
        assert!(set.contains(Flag::Humid) && !set.contains(Flag::Moved));
        assert!(set.intersects(Flags::of(&[Flag::Stuck, Flag::Moved])));
        assert!(!set.intersects(Flags::of(&[Flag::Moved])));
        assert_eq!(Flags::NONE.with_if(Flag::Moved, false), Flags::NONE);
    }

    #[test]
    fn pm25_above_pm10_needs_both_and_a_strictly_larger_pm25() {
        assert!(pm25_above_pm10(Some(10.0), Some(10.01)));
        assert!(!pm25_above_pm10(Some(10.0), Some(10.0)));
        assert!(!pm25_above_pm10(Some(10.0), Some(9.99)));
        assert!(!pm25_above_pm10(None, Some(10.0)));
        assert!(!pm25_above_pm10(Some(10.0), None));
    }

    #[test]
    fn humid_from_95_percent() {
        assert!(!humid(94.99));
        assert!(humid(95.0));
        assert!(humid(99.9));
    }

    #[test]
    fn a_run_is_stuck_from_its_nth_equal_reading() {
        let mut run = None;
        let mut stuck = Vec::new();
        for _ in 0..4 {
            let r = Run::after(run, Some(12.3), Some(4.5));
            stuck.push(r.stuck(Resolution::Day));
            run = Some(r);
        }
        // Daily: three in a row; the third and the fourth are flagged.
        assert_eq!(stuck, [false, false, true, true]);
        // Another P2 starts a new run.
        let r = Run::after(run, Some(12.3), Some(4.6));
        assert_eq!(r.length, 1);
        // Eleven equal 5-minute readings are not stuck, twelve are.
        let mut run = None;
        for n in 1..=12 {
            let r = Run::after(run, None, Some(0.0));
            assert_eq!(r.stuck(Resolution::FiveMin), n == 12, "reading {n}");
            run = Some(r);
        }
        assert_eq!(stuck_run(Resolution::Hour), 12);
    }

    #[test]
    fn moved_beyond_200_metres() {
        // One degree of latitude is 2π × 6,371,008.8 m / 360 = 111,195.08 m,
        // so 0.0018° is 200.15 m and 0.0017° is 189.03 m.
        assert!(moved((48.0, 9.0), (48.0018, 9.0)));
        assert!(!moved((48.0, 9.0), (48.0017, 9.0)));
        assert!(!moved((48.0, 9.0), (48.0, 9.0)));
    }

    #[test]
    fn outliers_by_modified_z_score() {
        // Median 11, deviations 1, 0, 0, 1, 89: MAD 1, floored to 2, so the
        // limit is 3.5 × 2 / 0.6745 = 10.378 µg/m³ from 11.
        assert_eq!(
            outliers(&[10.0, 11.0, 11.0, 12.0, 100.0]),
            [false, false, false, false, true]
        );
        assert_eq!(
            outliers(&[10.0, 11.0, 11.0, 12.0, 21.37]),
            [false; 5],
            "10.37 from the median"
        );
        assert_eq!(
            outliers(&[10.0, 11.0, 11.0, 12.0, 21.38]),
            [false, false, false, false, true],
            "10.38 from the median"
        );
        // Spread data: sorted 10, 10, 20, 30, 30, x: median (20 + 30) / 2 =
        // 25; deviations 15, 5, 5, 15, 5, x − 25: MAD (5 + 15) / 2 = 10;
        // the limit is 3.5 × 10 / 0.6745 = 51.89 from 25, i.e. 76.89.
        assert_eq!(outliers(&[10.0, 30.0, 20.0, 10.0, 30.0, 76.0]), [false; 6]);
        assert_eq!(
            outliers(&[10.0, 30.0, 20.0, 10.0, 30.0, 77.0]),
            [false, false, false, false, false, true]
        );
        // Fewer than five readings: nothing is told.
        assert_eq!(outliers(&[1.0, 1.0, 1.0, 900.0]), [false; 4]);
    }

    /// The live schedule's carried history gives the flags the store's
    /// history gives, feed after feed, whether it was filled at the first
    /// feed or half way: 30 five-minute feeds of 8 sensors, each sensor in
    /// four feeds of five at a time jittered within its slot, its P1 one
    /// in ten times another (so runs of equal ones form and break) and its position
    /// from two 1.1 km apart (so it moves now and then).
    #[test]
    fn a_carried_history_flags_as_the_stored_one() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let base = crate::reading::Timestamp::parse_feed("2026-12-01 00:00:00")
            .expect("a time")
            .0;
        let feeds: Vec<Vec<Reading>> = (0..30)
            .map(|k| {
                let mut feed = Vec::new();
                for sensor in 1..=8u64 {
                    if next(5) == 0 {
                        continue;
                    }
                    let ts = base + 300 * k + next(120) as i64;
                    let time = crate::reading::Timestamp(ts).to_string();
                    let lat = if next(6) == 0 { "48.710" } else { "48.700" };
                    let p1 = if next(10) == 0 { "2.00" } else { "1.00" };
                    feed.push(reading(sensor, &time, lat, p1, "1.00"));
                }
                feed
            })
            .collect();
        let assess = |survey: Survey, feed: &[Reading]| -> (Assessment, Vec<Flags>) {
            let a = survey.finish();
            let flags = feed
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    a.complete(&mut r);
                    r.flags
                })
                .collect();
            (a, flags)
        };
        // From the store: every reading stored before the feed.
        let mut stored: Vec<Reading> = Vec::new();
        let mut from_store = Vec::new();
        for feed in &feeds {
            let mut survey = Survey::new(Resolution::FiveMin);
            for r in feed {
                survey.reading(r);
            }
            if let Some((start, end)) = survey.history_window() {
                for r in stored
                    .iter()
                    .filter(|r| r.timestamp >= start && r.timestamp <= end)
                {
                    survey.history(r);
                }
            }
            from_store.push(assess(survey, feed).1);
            stored.extend(feed.iter().cloned());
        }
        let count = |flag: Flag| {
            from_store
                .iter()
                .flatten()
                .filter(|f| f.contains(flag))
                .count()
        };
        assert!(
            count(Flag::Stuck) > 5 && count(Flag::Moved) > 5,
            "the sequence has stuck ({}) and moved ({}) readings",
            count(Flag::Stuck),
            count(Flag::Moved)
        );
        for start in [0, 12] {
            let mut carry = Carry::new(Resolution::FiveMin);
            for (k, feed) in feeds.iter().enumerate().skip(start) {
                let mut survey = Survey::new(Resolution::FiveMin);
                for r in feed {
                    survey.reading(r);
                }
                if !carry.is_filled() {
                    if let Some((start, end)) = survey.history_window() {
                        let before = feeds[..k].iter().flatten();
                        for r in before.filter(|r| r.timestamp >= start && r.timestamp <= end) {
                            carry.stored(r);
                        }
                    }
                    carry.filled();
                }
                survey.history_from(&carry);
                let (a, flags) = assess(survey, feed);
                assert_eq!(flags, from_store[k], "feed {k}, carried from feed {start}");
                carry.keep(&a);
            }
            assert!(carry.len() <= 8);
        }
    }
}

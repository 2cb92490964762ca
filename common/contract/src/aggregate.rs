//! The aggregate contract: a store's answer to a query with `aggregate`,
//! in every format, against a reference aggregation written here, apart
//! from `airq_core::aggregate`: plain loops over the matching readings,
//! values in integer hundredths, the 98th percentile by the rank of 40 CFR
//! Part 50 Appendix N's Table 1 (⌈n/50⌉-th from the top), periods from
//! chrono's calendar, coverage from sets of days.
//!
//! The generated readings have what breaks aggregations: gaps, a single
//! reading, identical values, values on DAQI band edges, two readings of a
//! sensor on one day, cells on both sides of the antimeridian and of the
//! equator, a sensor that moves from one country to another, and a range
//! that crosses a month and a year, queried over partial first and last
//! periods.

use airq_core::aggregate::{header, Aggregate, GroupBy, Period};
use airq_core::aqi::Indices;
use airq_core::export::{render, Format};
use airq_core::quality::{Flag, Flags};
use airq_core::query::{Query, QueryLimits};
use airq_core::reading::{Reading, Timestamp};
use airq_core::store::ReadingStore;
use chrono::{DateTime, Datelike, NaiveDate};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A cell of an answer, compared across formats: numbers by value.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Null,
    Num(f64),
    Text(String),
    Bool(bool),
}

const TEXT: [&str; 4] = ["period_start", "period_end", "sensor_type", "loc_country"];
const BOOL: [&str; 2] = ["P1_over_who_annual", "P2_over_who_annual"];

fn of_text(column: &str, text: &str) -> V {
    if text.is_empty() {
        V::Null
    } else if TEXT.contains(&column) {
        V::Text(text.to_owned())
    } else if BOOL.contains(&column) {
        V::Bool(text == "true")
    } else {
        V::Num(text.parse().unwrap_or(f64::NAN))
    }
}

fn of_json(column: &str, v: &Value) -> V {
    match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Bool(*b),
        Value::Number(n) => V::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) if TEXT.contains(&column) => V::Text(s.clone()),
        other => V::Text(format!("unexpected {other}")),
    }
}

type Row = BTreeMap<String, V>;

fn reading(sensor: u64, time: &str, country: &str, at: (&str, &str), p: (&str, &str)) -> Reading {
    let (p1, p2) = p;
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Reading {
        id: None,
        timestamp: Timestamp::parse_feed(time).expect("a time"),
        sensor_id: sensor,
        sensor_type: if sensor == 9 { "PMS5003" } else { "SDS011" }.into(),
        loc_id: Some(sensor + 1000),
        loc_country: country.into(),
        loc_lat: at.0.into(),
        loc_long: at.1.into(),
        loc_alt: String::new(),
        p1: opt(p1),
        p2: opt(p2),
        indices: Indices::of_text(opt(p1).as_deref(), opt(p2).as_deref()).expect("indices"),
        samples: (sensor == 2).then_some(24),
        basis: None,
        flags: Default::default(),
        air: Default::default(),
    }
}

/// The generated readings: 2023-12-20 to 2024-01-12, daily, some with
/// flags: sensor 4 (the same values every day) is `stuck` from its third,
/// sensor 9 `moved` the day it crosses the border, sensor 1 `humid` every
/// fifth day and `outlier` too every tenth, sensor 5's second reading of
/// a day `indoor`.
pub fn readings() -> Vec<Reading> {
    let mut out = unflagged();
    let day_of = |r: &Reading| (r.timestamp.0 - 1_703_030_400).div_euclid(86_400);
    for r in &mut out {
        let day = day_of(r);
        r.flags = match r.sensor_id {
            4 if day >= 2 => Flags::of(&[Flag::Stuck]),
            9 if r.timestamp == Timestamp::parse_feed("2024-01-01 04:00:00").expect("a time") => {
                Flags::of(&[Flag::Moved])
            }
            1 if day % 10 == 0 => Flags::of(&[Flag::Humid, Flag::Outlier]),
            1 if day % 5 == 0 => Flags::of(&[Flag::Humid]),
            5 if r.p2.as_deref() == Some("35.50") => Flags::of(&[Flag::Indoor]),
            _ => Flags::NONE,
        };
    }
    out
}

fn unflagged() -> Vec<Reading> {
    const BERLIN: (&str, &str) = ("52.520", "13.405");
    let mut out = Vec::new();
    let days: Vec<NaiveDate> = (0..24)
        .filter_map(|i| {
            NaiveDate::from_ymd_opt(2023, 12, 20)?.checked_add_days(chrono::Days::new(i))
        })
        .collect();
    for (i, d) in days.iter().enumerate() {
        let time = |h: u32| format!("{} {h:02}:00:00", d.format("%Y-%m-%d"));
        let i = i as u64;
        // 1: every day, varied values.
        let p2 = format!("{}.{:02}", 3 + i * 7 % 40, i * 13 % 100);
        let p1 = format!("{}.{:02}", 10 + i * 11 % 60, i * 29 % 100);
        out.push(reading(1, &time(10), "DE", BERLIN, (&p1, &p2)));
        // 2: every third day (gaps), with samples.
        if i.is_multiple_of(3) {
            out.push(reading(
                2,
                &time(11),
                "DE",
                ("48.137", "11.575"),
                ("20.00", ""),
            ));
        }
        // 4: the same values every day.
        out.push(reading(
            4,
            &time(9),
            "FR",
            ("48.857", "2.352"),
            ("12.50", "8.25"),
        ));
        // 5: DAQI PM2.5 band edges, 11/12, 35/36, 70/71, two a day on
        // even days (coverage counts the day once).
        let edge = ["11.00", "12.00", "35.00", "36.00", "70.00", "71.00"][i as usize % 6];
        out.push(reading(5, &time(1), "DE", ("50.000", "8.000"), ("", edge)));
        if i.is_multiple_of(2) {
            out.push(reading(
                5,
                &time(13),
                "DE",
                ("50.000", "8.000"),
                ("", "35.50"),
            ));
        }
        // 6 and 7: either side of the antimeridian; 8: either side of the
        // equator.
        out.push(reading(
            6,
            &time(2),
            "FJ",
            ("-17.800", "179.900"),
            ("5.00", "3.00"),
        ));
        out.push(reading(
            7,
            &time(2),
            "FJ",
            ("-16.900", "-179.950"),
            ("6.00", "4.00"),
        ));
        let lat = if i.is_multiple_of(2) {
            "0.100"
        } else {
            "-0.100"
        };
        out.push(reading(
            8,
            &time(3),
            "EC",
            (lat, "-78.500"),
            ("30.00", "16.00"),
        ));
        // 9: moves from the Netherlands to Germany on 2024-01-01.
        let (country, at) = if d.year() == 2023 {
            ("NL", ("52.370", "4.890"))
        } else {
            ("DE", ("52.370", "6.900"))
        };
        out.push(reading(9, &time(4), country, at, ("46.00", "15.01")));
    }
    // 3: a single reading.
    out.push(reading(
        3,
        "2024-01-05 12:00:00",
        "DE",
        ("51.000", "7.000"),
        ("1.00", "1.00"),
    ));
    out
}

/// Period start of a time, from chrono's calendar.
fn period_start(period: Period, t: Timestamp) -> i64 {
    let dt = DateTime::from_timestamp(t.0, 0)
        .expect("a time")
        .naive_utc();
    let date = dt.date();
    let start = match period {
        Period::Hour => return t.0 - t.0.rem_euclid(3600),
        Period::Day => date,
        Period::Month => date.with_day(1).expect("day 1"),
        Period::Year => NaiveDate::from_ymd_opt(date.year(), 1, 1).expect("1 January"),
    };
    start
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp()
}

fn period_end(period: Period, start: i64) -> i64 {
    let date = DateTime::from_timestamp(start, 0)
        .expect("a time")
        .date_naive();
    let next = match period {
        Period::Hour => return start + 3599,
        Period::Day => date.succ_opt().expect("a next day"),
        Period::Month => date
            .checked_add_months(chrono::Months::new(1))
            .expect("a next month"),
        Period::Year => date
            .checked_add_months(chrono::Months::new(12))
            .expect("a next year"),
    };
    next.and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp()
        - 1
}

fn hundredths(text: &str) -> i64 {
    let (whole, frac) = text.split_once('.').unwrap_or((text, "0"));
    let frac = format!("{frac:0<2}");
    whole.parse::<i64>().expect("whole") * 100 + frac[..2].parse::<i64>().expect("fraction")
}

fn text(h: i64) -> String {
    format!("{}.{:02}", h / 100, h % 100)
}

/// Mean, min, p50, p98, max, sd of values in hundredths.
fn stats(values: &[i64]) -> [Option<String>; 6] {
    if values.is_empty() {
        return Default::default();
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len() as i64;
    let sum: i64 = v.iter().sum();
    let mean = (2 * sum + n) / (2 * n);
    let p50 = if n % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2] + 1) / 2
    };
    // Appendix N, Table 1: the ⌈n/50⌉-th highest value.
    let rank = v.len().div_ceil(50);
    let p98 = v[v.len() - rank];
    // Welford's running variance.
    let (mut m, mut s2) = (0.0f64, 0.0f64);
    for (k, &x) in v.iter().enumerate() {
        let x = x as f64;
        let d = x - m;
        m += d / (k + 1) as f64;
        s2 += d * (x - m);
    }
    let sd = (n > 1).then(|| text((s2 / (n - 1) as f64).sqrt().round() as i64));
    [
        Some(text(mean)),
        Some(text(v[0])),
        Some(text(p50)),
        Some(text(p98)),
        Some(text(v[v.len() - 1])),
        sd,
    ]
}

/// The reference answer of `q` (daily readings) over `written`.
pub fn reference(written: &[Reading], q: &Query) -> Vec<Row> {
    let a = q.aggregate.expect("an aggregate");
    let mut by_key: BTreeMap<(i64, u64), &Reading> = BTreeMap::new();
    for r in written {
        by_key.insert((r.timestamp.0, r.sensor_id), r);
    }
    // (period, group) → readings, in time order.
    let mut groups: BTreeMap<(i64, (u64, String)), Vec<&Reading>> = BTreeMap::new();
    // A quality filter is applied within each group: its left-out
    // readings are counted, and a group of only those has a row too.
    let selection = q.without_quality();
    let kept = |r: &Reading| q.quality.is_none_or(|quality| quality.keeps(r.flags));
    // A correction is applied to the readings the query selects (its
    // index filters read the corrected values): the statistics are of
    // the corrected values, a reading without a humidity has none.
    let chosen: Vec<Reading> = by_key
        .values()
        .filter(|r| selection.matches(r))
        .map(|r| match q.correction {
            None => (*r).clone(),
            Some(c) => {
                let fixed = c.apply(r.p1.as_deref(), r.p2.as_deref(), r.air.humidity.as_deref());
                Reading {
                    p1: fixed.p1.map(|h| h.to_string()),
                    p2: fixed.p2.map(|h| h.to_string()),
                    indices: fixed.indices,
                    ..(*r).clone()
                }
            }
        })
        .collect();
    for r in &chosen {
        let group = match a.by {
            GroupBy::Sensor => (r.sensor_id, String::new()),
            GroupBy::Cell => {
                let lat: f64 = r.loc_lat.parse().expect("lat");
                let lon: f64 = r.loc_long.parse().expect("lon");
                let row = ((lat + 90.0) / 0.25).floor() as u64;
                let col = ((lon + 180.0) / 0.25).floor() as u64;
                (row * 1440 + col, String::new())
            }
            GroupBy::Country => (0, r.loc_country.clone()),
            GroupBy::All => (0, String::new()),
        };
        groups
            .entry((period_start(a.period, r.timestamp), group))
            .or_default()
            .push(r);
    }
    let columns = header(q.index, q.quality);
    groups
        .into_iter()
        .map(|((start, (number, _)), all)| {
            let rs: Vec<&Reading> = all.iter().copied().filter(|r| kept(r)).collect();
            let end = period_end(a.period, start);
            let mut row: BTreeMap<String, Option<String>> =
                columns.iter().map(|c| (c.clone(), None)).collect();
            let mut set = |c: &str, v: Option<String>| {
                row.insert(c.to_owned(), v);
            };
            set("period_start", Some(Timestamp(start).to_string()));
            set("period_end", Some(Timestamp(end).to_string()));
            // Left out or not.
            let last = all.last().expect("a reading");
            match a.by {
                GroupBy::Sensor => {
                    set("sensor_id", Some(last.sensor_id.to_string()));
                    set("sensor_type", Some(last.sensor_type.clone()));
                    set("loc_country", Some(last.loc_country.clone()));
                    set("lat", Some(last.loc_lat.clone()));
                    set("lon", Some(last.loc_long.clone()));
                }
                GroupBy::Cell => {
                    let (row_n, col_n) = ((number / 1440) as f64, (number % 1440) as f64);
                    let (lat0, lon0) = (row_n / 4.0 - 90.0, col_n / 4.0 - 180.0);
                    set("lat", Some((lat0 + 0.125).to_string()));
                    set("lon", Some((lon0 + 0.125).to_string()));
                    set("cell_min_lon", Some(lon0.to_string()));
                    set("cell_min_lat", Some(lat0.to_string()));
                    set("cell_max_lon", Some((lon0 + 0.25).to_string()));
                    set("cell_max_lat", Some((lat0 + 0.25).to_string()));
                }
                GroupBy::Country => set("loc_country", Some(last.loc_country.clone())),
                GroupBy::All => {}
            }
            let mut days: BTreeMap<u64, BTreeSet<i64>> = BTreeMap::new();
            for r in &rs {
                days.entry(r.sensor_id)
                    .or_default()
                    .insert(r.timestamp.0.div_euclid(86_400));
            }
            let lo = start.max(q.start.0).div_euclid(86_400);
            let hi = end.min(q.end.0).div_euclid(86_400);
            let expected = (hi - lo + 1) as u64;
            let covered: u64 = days.values().map(|d| d.len() as u64).sum();
            let sensors = days.len() as u64;
            // No sensor (every reading left out): 0 of what was expected.
            let of = sensors.max(1) * expected;
            let tenths = (2000 * covered + of) / (2 * of);
            set("sensors", Some(sensors.to_string()));
            set("readings", Some(rs.len().to_string()));
            let samples: Vec<u64> = rs.iter().filter_map(|r| r.samples).map(u64::from).collect();
            set(
                "samples",
                (!samples.is_empty()).then(|| samples.iter().sum::<u64>().to_string()),
            );
            set("coverage", Some(format!("{}.{}", tenths / 10, tenths % 10)));
            for (name, level_24h, level_year, pick) in
                [("P1", 4500, 1500, 0usize), ("P2", 1500, 500, 1usize)]
            {
                let values: Vec<i64> = rs
                    .iter()
                    .filter_map(|r| {
                        if pick == 0 {
                            r.p1.as_deref()
                        } else {
                            r.p2.as_deref()
                        }
                    })
                    .map(hundredths)
                    .collect();
                for (stat, v) in ["mean", "min", "p50", "p98", "max", "sd"]
                    .iter()
                    .zip(stats(&values))
                {
                    set(&format!("{name}_{stat}"), v);
                }
                let over = values.iter().filter(|&&v| v > level_24h).count();
                set(&format!("{name}_days_over_who_24h"), Some(over.to_string()));
                if a.period == Period::Year && !values.is_empty() {
                    let sum: i64 = values.iter().sum();
                    let above = sum > level_year * values.len() as i64;
                    set(&format!("{name}_over_who_annual"), Some(above.to_string()));
                }
            }
            for band in q.index.bands() {
                let n = rs
                    .iter()
                    .filter_map(|r| r.indices.defined(q.index))
                    .filter(|v| (band.lo..=band.hi).contains(v))
                    .count();
                set(&format!("readings_{}", band.label), Some(n.to_string()));
            }
            if let Some(quality) = q.quality {
                let out: Vec<&Reading> = all.iter().copied().filter(|r| !kept(r)).collect();
                set("removed", Some(out.len().to_string()));
                for flag in quality.exclude.iter() {
                    let n = out.iter().filter(|r| r.flags.contains(flag)).count();
                    set(&format!("removed_{}", flag.name()), Some(n.to_string()));
                }
            }
            row.into_iter()
                .map(|(c, v)| {
                    let v = v.map_or(V::Null, |t| of_text(&c, &t));
                    (c, v)
                })
                .collect()
        })
        .collect()
}

/// An answer's rows, parsed from its format.
pub fn parse(bytes: &[u8], format: Format) -> Vec<Row> {
    match format {
        Format::Csv => {
            let mut reader = csv::Reader::from_reader(bytes);
            let head: Vec<String> = reader
                .headers()
                .expect("a header")
                .iter()
                .map(str::to_owned)
                .collect();
            reader
                .records()
                .map(|rec| {
                    let rec = rec.expect("a CSV record");
                    head.iter()
                        .zip(rec.iter())
                        .map(|(c, t)| (c.clone(), of_text(c, t)))
                        .collect()
                })
                .collect()
        }
        Format::Ndjson => String::from_utf8_lossy(bytes)
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("an NDJSON line");
                object(&v)
            })
            .collect(),
        Format::Geojson => {
            let v: Value = serde_json::from_slice(bytes).expect("GeoJSON");
            v["features"]
                .as_array()
                .expect("features")
                .iter()
                .map(|f| {
                    let row = object(&f["properties"]);
                    // The point is the row's lat/lon, or none.
                    match (&row["lat"], &row["lon"]) {
                        (V::Num(lat), V::Num(lon)) => {
                            assert_eq!(
                                f["geometry"]["coordinates"],
                                serde_json::json!([lon, lat]),
                                "{f}"
                            );
                        }
                        _ => assert_eq!(f["geometry"], Value::Null, "{f}"),
                    }
                    row
                })
                .collect()
        }
    }
}

fn object(v: &Value) -> Row {
    v.as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| (k.clone(), of_json(k, v)))
        .collect()
}

fn query(json: &str) -> Query {
    Query::from_json(json.as_bytes(), &QueryLimits::default()).expect("a valid query")
}

/// Every check, on an empty store.
pub async fn run_all(store: &dyn ReadingStore) {
    let written = readings();
    store.put_batch(written.clone()).await.expect("put_batch");
    check_all(store, &written).await;
}

/// Every check, on an empty store, after its answer segments are built
/// (see [`ReadingStore::refresh_segments`]), and again once a write has
/// made one day's segment stale (a value replaced), so that answers
/// read fresh days from segments and the stale one from its rows.
pub async fn run_all_from_segments(store: &dyn ReadingStore) {
    let mut written = readings();
    store.put_batch(written.clone()).await.expect("put_batch");
    store.refresh_segments().await.expect("refresh_segments");
    check_all(store, &written).await;
    let at = written.len() / 2;
    let mut changed = written[at].clone();
    changed.p2 = Some("77.7".into());
    changed.indices = airq_core::Indices::of_text(changed.p1.as_deref(), changed.p2.as_deref())
        .expect("indices of the changed reading");
    store
        .put_batch(vec![changed.clone()])
        .await
        .expect("put_batch of the change");
    written[at] = changed;
    check_all(store, &written).await;
}

async fn check_all(store: &dyn ReadingStore, written: &[Reading]) {
    let filters = [
        // Partial first and last months and years.
        r#""startDate":"2023-12-22","endDate":"2024-01-10""#,
        r#""startDate":"2023-12-01","endDate":"2024-01-31","country":"DE""#,
        r#""startDate":"2023-12-20","endDate":"2024-01-12","index":"daqi","range":"Low""#,
        r#""startDate":"2023-12-20","endDate":"2024-01-12","sensorType":"PMS5003","index":"eaqi""#,
        r#""startDate":"2023-12-20","endDate":"2024-01-12","bbox":[-180,-20,180,1],"index":"us-epa""#,
        // Bounds and a band that exclude every value: no rows.
        r#""startDate":"2023-12-20","endDate":"2024-01-12","minAqi":7,"range":"Low""#,
        // Quality filters: every flag, two of them, none (the columns
        // and no removal), with a country.
        r#""startDate":"2023-12-20","endDate":"2024-01-12","quality":"no-flags""#,
        r#""startDate":"2023-12-22","endDate":"2024-01-10","quality":["stuck","moved"],"country":"DE""#,
        r#""startDate":"2023-12-20","endDate":"2024-01-12","quality":"all""#,
        // A humidity correction: the statistics and bands of the corrected
        // values; with an index filter on them, and with a quality filter.
        r#""startDate":"2023-12-20","endDate":"2024-01-12","correction":{"method":"kappa-kohler","kappa":0.3}"#,
        r#""startDate":"2023-12-22","endDate":"2024-01-10","correction":{"method":"kappa-kohler","kappa":0.7,"rhMax":80},"minAqi":2,"quality":["stuck"]"#,
    ];
    let mut checked = 0;
    for filter in filters {
        for period in [Period::Day, Period::Month, Period::Year] {
            for by in GroupBy::ALL {
                let a = Aggregate { period, by }.to_json();
                for format in Format::ALL {
                    let q = query(&format!(
                        r#"{{{filter},"aggregate":{a},"format":"{}"}}"#,
                        format.name()
                    ));
                    let want = reference(written, &q);
                    let (bytes, rows) = render(store.query_answer(&q), 1 << 24)
                        .await
                        .expect("an aggregate answer");
                    let got = parse(&bytes, format);
                    assert_eq!(rows as usize, want.len(), "{}", q.to_json());
                    if let Some(i) = (0..want.len()).find(|&i| got.get(i) != want.get(i)) {
                        panic!(
                            "{}: row {i}\n got {:?}\nwant {:?}",
                            q.to_json(),
                            got.get(i),
                            want.get(i)
                        );
                    }
                    assert_eq!(got.len(), want.len(), "{}", q.to_json());
                    checked += want.len();
                }
            }
        }
    }
    assert!(checked > 500, "{checked} rows checked");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_statistics_by_hand() {
        // 1..=51: mean 26, median 26, p98 the 2nd highest (⌈51/50⌉ = 2).
        let v: Vec<i64> = (1..=51).map(|x| x * 100).collect();
        let [mean, min, p50, p98, max, _] = stats(&v);
        assert_eq!(
            (mean, min, p50, p98, max),
            (
                Some("26.00".into()),
                Some("1.00".into()),
                Some("26.00".into()),
                Some("50.00".into()),
                Some("51.00".into())
            )
        );
        assert_eq!(
            stats(&[150, 250])[2],
            Some("2.00".into()),
            "1.5 and 2.5: 2.00"
        );
        assert_eq!(hundredths("7.5"), 750);
        assert_eq!(
            period_end(
                Period::Month,
                period_start(Period::Month, Timestamp(1_709_164_800))
            ),
            1_709_251_199,
            "February 2024 ends on the 29th"
        );
    }
}

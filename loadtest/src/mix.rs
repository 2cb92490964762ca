//! Query mixes: the bodies sent to `POST /api/query`.
//!
//! - `fixed`: the original benchmark's query, its hour moved to data that
//!   exists (`GET /api/meta`) when the store does not cover it.
//! - `random`: a seeded mix of realistic filters, different for every
//!   arrival, so that no cache can flatter the figures (see [`random_query`]).
//! - a JSON-lines file: one query object a line, sent in order, cycled.

use airq_core::Index;
use anyhow::{bail, Context};
use bytes::Bytes;
use chrono::{Duration as Span, NaiveDateTime};
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// `GET /api/meta`.
#[derive(Debug, Clone, Deserialize)]
pub struct Meta {
    pub readings: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    pub countries: Vec<String>,
}

const TIME: &str = "%Y-%m-%d %H:%M:%S";

/// The original benchmark query.
pub const FIXED: &str = r#"{"startDate":"2024-01-01 00:00:00","endDate":"2024-01-01 01:00:00","country":"DE","minAqi":0,"maxAqi":10,"range":"Low"}"#;

fn parse_time(s: &str) -> anyhow::Result<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s.trim(), TIME)
        .with_context(|| format!("{s:?} is not a time like 2024-01-01 00:00:00"))
}

fn fmt_time(t: NaiveDateTime) -> String {
    t.format(TIME).to_string()
}

/// The data's time range, if the store has any.
fn range(meta: &Meta) -> anyhow::Result<Option<(NaiveDateTime, NaiveDateTime)>> {
    match (&meta.first, &meta.last) {
        (Some(f), Some(l)) if meta.readings > 0 => Ok(Some((parse_time(f)?, parse_time(l)?))),
        _ => Ok(None),
    }
}

/// The fixed query with its hour moved inside the data: unchanged if the
/// data covers 2024-01-01 00:00–01:00; else the same hour of the day on the
/// last (then the first) day of data; else the data's last hour.
pub fn fixed_query(meta: Option<&Meta>) -> anyhow::Result<(String, String)> {
    let start = parse_time("2024-01-01 00:00:00")?;
    let end = parse_time("2024-01-01 01:00:00")?;
    let Some((first, last)) = meta.map(range).transpose()?.flatten() else {
        return Ok((fmt_time(start), fmt_time(end)));
    };
    // A minute of slack: a store whose first reading is at 00:00:02 still
    // covers the hour from 00:00.
    let covers = |s: NaiveDateTime, e: NaiveDateTime| first <= s + Span::minutes(1) && e <= last;
    if covers(start, end) {
        return Ok((fmt_time(start), fmt_time(end)));
    }
    for day in [last.date(), first.date()] {
        let s = day.and_time(start.time());
        if covers(s, s + Span::hours(1)) {
            return Ok((fmt_time(s), fmt_time(s + Span::hours(1))));
        }
    }
    Ok((fmt_time(last - Span::hours(1)), fmt_time(last)))
}

/// Where query bodies come from.
pub enum Mix {
    /// The same body every time.
    Fixed(Bytes),
    /// A different seeded random query for every arrival.
    Random(RandomMix),
    /// Bodies from a file, in order, cycled.
    File(Vec<Bytes>),
}

impl Mix {
    /// The body for arrival `index` (of the current step). A random mix
    /// ignores the index and continues its sequence across steps.
    pub fn body(&self, index: u64) -> Bytes {
        match self {
            Mix::Fixed(b) => b.clone(),
            Mix::Random(r) => r.next_body(),
            Mix::File(lines) => lines[(index % lines.len() as u64) as usize].clone(),
        }
    }

    /// A one-line description for reports.
    pub fn describe(&self) -> String {
        match self {
            Mix::Fixed(b) => format!("fixed {}", String::from_utf8_lossy(b)),
            Mix::Random(r) => format!(
                "random (seed {}, {} countries, data {} – {})",
                r.seed,
                r.countries.len(),
                fmt_time(r.first),
                fmt_time(r.last)
            ),
            Mix::File(lines) => format!("{} queries from a file", lines.len()),
        }
    }

    pub fn fixed(meta: Option<&Meta>) -> anyhow::Result<Mix> {
        let (start, end) = fixed_query(meta)?;
        let body = json!({
            "startDate": start, "endDate": end, "country": "DE",
            "minAqi": 0, "maxAqi": 10, "range": "Low",
        });
        Ok(Mix::Fixed(Bytes::from(body.to_string())))
    }

    pub fn random(meta: &Meta, seed: u64) -> anyhow::Result<Mix> {
        let Some((first, last)) = range(meta)? else {
            bail!("the store is empty (GET /api/meta): a random mix needs data to aim at");
        };
        Ok(Mix::Random(RandomMix {
            seed,
            first,
            last,
            countries: meta.countries.clone(),
            drawn: AtomicU64::new(0),
        }))
    }

    /// Reads a JSON-lines file of query objects (blank lines and lines
    /// starting with `#` are skipped).
    pub fn file(path: &Path) -> anyhow::Result<Mix> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading queries from {}", path.display()))?;
        let mut lines = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
            if !v.is_object() {
                bail!("{}:{}: not a JSON object", path.display(), n + 1);
            }
            lines.push(Bytes::from(v.to_string()));
        }
        if lines.is_empty() {
            bail!("{} holds no queries", path.display());
        }
        Ok(Mix::File(lines))
    }
}

/// The random mix's parameters.
pub struct RandomMix {
    pub seed: u64,
    pub first: NaiveDateTime,
    pub last: NaiveDateTime,
    pub countries: Vec<String>,
    /// Queries drawn so far in this process: the warm-up and every step of a
    /// matrix continue the sequence instead of replaying its start, which a
    /// cache in the system under test would answer from memory.
    drawn: AtomicU64,
}

/// SplitMix64: spreads (seed, index) into an independent seed per arrival.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl RandomMix {
    /// Query number `index` of the seeded sequence.
    pub fn body(&self, index: u64) -> Bytes {
        let mut rng = rand::rngs::StdRng::seed_from_u64(mix64(self.seed ^ mix64(index)));
        Bytes::from(random_query(&mut rng, self.first, self.last, &self.countries).to_string())
    }

    /// The next query of the sequence, never one drawn before by this mix.
    pub fn next_body(&self) -> Bytes {
        self.body(self.drawn.fetch_add(1, Ordering::Relaxed))
    }
}

/// One random query over data in `[first, last]`:
///
/// - 85 % name a country (uniformly among those present); the rest ask for
///   the whole network.
/// - Spans are log-uniform: from 1 hour to 14 days with a country, 1 to 24
///   hours without (a multi-day export of the whole network is a bulk job,
///   not an interactive query). Start times are random minutes.
/// - Index: 60 % the default, the other 40 % split evenly among the others
///   (with today's three: 20 % each); then AQI: 40 %
///   no filter, 30 % a band of that index (lower bands more often: weights
///   n:…:1), 30 % a random `minAqi..maxAqi` range on its scale.
/// - Place: 25 % a `near` circle (1–100 km) or a `bbox` (0.1°–3°) around one
///   of ten dense cities ([`CITIES`]); sensor types: 15 % one or two;
///   format: 80 % CSV, 10 % NDJSON, 10 % GeoJSON.
pub fn random_query(
    rng: &mut impl Rng,
    first: NaiveDateTime,
    last: NaiveDateTime,
    countries: &[String],
) -> serde_json::Value {
    let country = (!countries.is_empty() && rng.random_bool(0.85))
        .then(|| countries[rng.random_range(0..countries.len())].clone());
    let max_hours: f64 = if country.is_some() { 14.0 * 24.0 } else { 24.0 };
    let hours = (rng.random::<f64>() * max_hours.ln()).exp();
    let data_minutes = (last - first).num_minutes().max(1);
    let span_minutes = ((hours * 60.0).round() as i64).clamp(1, data_minutes);
    let start_minute = rng.random_range(0..=(data_minutes - span_minutes).max(0));
    let start = first + Span::minutes(start_minute);
    let end = start + Span::minutes(span_minutes);

    let mut q = serde_json::Map::new();
    q.insert("startDate".into(), fmt_time(start).into());
    q.insert("endDate".into(), fmt_time(end).into());
    if let Some(c) = country {
        q.insert("country".into(), c.into());
    }
    // The index: most users (60 %) read the default, the rest split
    // evenly among the others (the registry's order).
    let others: Vec<Index> = Index::ALL
        .into_iter()
        .filter(|i| *i != Index::default())
        .collect();
    let roll = rng.random_range(0..10usize);
    let index = match roll {
        0..=5 => Index::default(),
        _ => others
            .get((roll - 6) * others.len() / 4)
            .copied()
            .unwrap_or_default(),
    };
    if index != Index::default() {
        q.insert("index".into(), index.name().into());
    }
    let bands: Vec<&str> = index.bands().iter().map(|b| b.label).collect();
    let (floor, scale) = (index.floor(), index.max());
    let roll: f64 = rng.random();
    if roll < 0.40 {
        // No AQI filter.
    } else if roll < 0.70 {
        // Lower bands are asked for more often (weights n, n-1, …, 1).
        let n = bands.len();
        let total = n * (n + 1) / 2;
        let mut pick = rng.random_range(0..total);
        let mut band = 0;
        while pick >= n - band {
            pick -= n - band;
            band += 1;
        }
        q.insert("range".into(), bands[band].into());
    } else {
        let a = rng.random_range(floor..=scale);
        let b = rng.random_range(floor..=scale);
        q.insert("minAqi".into(), a.min(b).into());
        q.insert("maxAqi".into(), a.max(b).into());
    }
    // A quarter ask about a place: a circle of 1 to 100 km (log-uniform)
    // or a box of 0.1° to 3° around one of the network's dense cities.
    if rng.random_bool(0.25) {
        let (lat, lon) = CITIES[rng.random_range(0..CITIES.len())];
        if rng.random_bool(0.6) {
            let radius = (rng.random::<f64>() * 100f64.ln()).exp();
            q.insert(
                "near".into(),
                json!({"lat": lat, "lon": lon, "radiusKm": (radius * 10.0).round() / 10.0}),
            );
        } else {
            let half = 0.05 + rng.random::<f64>() * 1.45;
            let r = |v: f64| (v * 100.0).round() / 100.0;
            q.insert(
                "bbox".into(),
                json!([r(lon - half), r(lat - half), r(lon + half), r(lat + half)]),
            );
        }
    }
    if rng.random_bool(0.15) {
        let types = match rng.random_range(0..4) {
            0 => json!("SDS011"),
            1 => json!("SPS30"),
            2 => json!("pms5003"),
            _ => json!(["SDS011", "SPS30"]),
        };
        q.insert("sensorType".into(), types);
    }
    match rng.random_range(0..10) {
        0 => {
            q.insert("format".into(), "ndjson".into());
        }
        1 => {
            q.insert("format".into(), "geojson".into());
        }
        _ => {}
    }
    serde_json::Value::Object(q)
}

/// City centres (lat, lon) where Sensor.Community's sensors are dense,
/// which the random mix's place filters aim at: Stuttgart, Berlin, Munich,
/// Hamburg, Sofia, Amsterdam, Warsaw, Vienna, Brussels, Milan.
const CITIES: [(f64, f64); 10] = [
    (48.78, 9.18),
    (52.52, 13.40),
    (48.14, 11.58),
    (53.55, 9.99),
    (42.70, 23.32),
    (52.37, 4.90),
    (52.23, 21.01),
    (48.21, 16.37),
    (50.85, 4.35),
    (45.46, 9.19),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first: &str, last: &str) -> Meta {
        Meta {
            readings: 10,
            first: Some(first.into()),
            last: Some(last.into()),
            countries: vec!["DE".into(), "FR".into()],
        }
    }

    #[test]
    fn fixed_query_moves_to_the_data() {
        let within = meta("2024-01-01 00:00:00", "2024-01-31 00:00:00");
        assert_eq!(
            fixed_query(Some(&within)).unwrap(),
            ("2024-01-01 00:00:00".into(), "2024-01-01 01:00:00".into())
        );
        let later = meta("2024-03-01 00:00:00", "2024-03-31 23:59:00");
        assert_eq!(
            fixed_query(Some(&later)).unwrap(),
            ("2024-03-31 00:00:00".into(), "2024-03-31 01:00:00".into())
        );
        let snapshot = meta("2018-06-03 20:10:00", "2018-06-03 22:49:00");
        assert_eq!(
            fixed_query(Some(&snapshot)).unwrap(),
            ("2018-06-03 21:49:00".into(), "2018-06-03 22:49:00".into())
        );
        assert_eq!(fixed_query(None).unwrap().0, "2024-01-01 00:00:00");
        let body = Mix::fixed(Some(&within)).unwrap().body(0);
        let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let orig: serde_json::Value = serde_json::from_str(FIXED).unwrap();
        assert_eq!(sent, orig);
    }

    #[test]
    fn random_mix_is_seeded_varied_and_in_range() {
        let m = Mix::random(&meta("2024-01-01 00:00:00", "2024-01-31 00:00:00"), 7).unwrap();
        let again = Mix::random(&meta("2024-01-01 00:00:00", "2024-01-31 00:00:00"), 7).unwrap();
        let other = Mix::random(&meta("2024-01-01 00:00:00", "2024-01-31 00:00:00"), 8).unwrap();
        assert_eq!(m.body(5), again.body(5), "the same seed, the same sequence");
        assert_ne!(m.body(5), other.body(5));
        // A new step's arrival 0 is not a replay of the last step's.
        assert_ne!(m.body(0), m.body(0));
        let mut distinct = std::collections::HashSet::new();
        let (mut with_country, mut long) = (0, 0);
        for i in 0..2000 {
            let b = m.body(i);
            distinct.insert(b.clone());
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            let s = parse_time(v["startDate"].as_str().unwrap()).unwrap();
            let e = parse_time(v["endDate"].as_str().unwrap()).unwrap();
            assert!(s < e);
            assert!(s >= parse_time("2024-01-01 00:00:00").unwrap());
            assert!(e <= parse_time("2024-01-31 00:00:00").unwrap());
            assert!(e - s <= Span::days(14));
            if v.get("country").is_some() {
                with_country += 1;
            } else {
                assert!(e - s <= Span::hours(24));
            }
            if e - s > Span::hours(24) {
                long += 1;
            }
        }
        assert!(distinct.len() > 1990, "{}", distinct.len());
        assert!((1600..1800).contains(&with_country), "{with_country}");
        assert!(long > 300, "{long}");
    }

    #[test]
    fn every_random_query_is_valid_and_the_new_fields_appear() {
        let m = Mix::random(&meta("2024-01-01 00:00:00", "2024-01-31 00:00:00"), 11).unwrap();
        let limits = airq_core::QueryLimits {
            max_span: std::time::Duration::from_secs(15 * 86_400),
            ..airq_core::QueryLimits::default()
        };
        let mut seen = std::collections::BTreeMap::<&str, u32>::new();
        for i in 0..2000 {
            let body = m.body(i);
            airq_core::Query::from_json(&body, &limits)
                .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&body)));
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for field in ["index", "near", "bbox", "sensorType", "format", "range"] {
                if v.get(field).is_some() {
                    *seen.entry(field).or_default() += 1;
                }
            }
        }
        for field in ["index", "near", "bbox", "sensorType", "format", "range"] {
            assert!(
                seen.get(field).copied().unwrap_or(0) > 100,
                "{field}: {seen:?}"
            );
        }
    }

    #[test]
    fn query_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.jsonl");
        std::fs::write(
            &p,
            format!("# comment\n{FIXED}\n\n{{\"startDate\":\"x\"}}\n"),
        )
        .unwrap();
        let m = Mix::file(&p).unwrap();
        assert_eq!(m.body(0), m.body(2));
        assert_ne!(m.body(0), m.body(1));
        std::fs::write(&p, "[1]\n").unwrap();
        assert!(Mix::file(&p).is_err());
        std::fs::write(&p, "\n").unwrap();
        assert!(Mix::file(&p).is_err());
    }
}

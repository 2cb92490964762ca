//! Readings and queries drawn from a seeded generator, for the filters the
//! shipped sample cannot exercise: values on every breakpoint of the three
//! indices, places whose edges fall exactly on readings, mixed-case sensor
//! types. The seed is fixed so that a failure reproduces; set
//! `AIRQ_CONTRACT_SEED` to draw other data.

use airq_core::air::Air;
use airq_core::aqi::{Index, Indices};
use airq_core::correction::Correction;
use airq_core::export::Format;
use airq_core::place::{Bbox, Near, Place, EARTH_RADIUS_KM};
use airq_core::quality::{Flag, Flags, Quality};
use airq_core::query::Query;
use airq_core::reading::{Reading, Timestamp};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// The seed used unless `AIRQ_CONTRACT_SEED` says otherwise.
pub const DEFAULT_SEED: u64 = 0x00a1_0014;

/// The seed of this run: `AIRQ_CONTRACT_SEED` (decimal) or [`DEFAULT_SEED`].
pub fn seed() -> u64 {
    std::env::var("AIRQ_CONTRACT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// A generator seeded with `seed`: the same readings and queries each run.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// First second of the generated readings (2021-03-14 00:00:00 UTC): far
/// from the shipped sample's day, so that a store holding the sample too
/// answers the generated queries with generated readings only.
pub const WINDOW_START: i64 = 1_615_680_000;
/// Length of the generated readings' span, seconds (two days).
pub const WINDOW_SECS: i64 = 2 * 86_400;

/// Where generated sensors stand: small clusters (a city; a grid corner,
/// where one circle covers four cells; the southern hemisphere) and their
/// country.
pub const CLUSTERS: [(f64, f64, f64, &str); 4] = [
    (48.78, 9.18, 0.08, "DE"),
    (50.0, 8.0, 0.03, "DE"),
    (42.70, 23.32, 0.05, "BG"),
    (-33.9, 151.2, 0.1, "AU"),
];
/// Countries of the sensors spread over Europe.
const SPREAD_COUNTRIES: [&str; 4] = ["DE", "FR", "NL", "PL"];

/// Sensor type names as sensors send them: the same type in several cases.
pub const SENSOR_TYPES: [&str; 8] = [
    "SDS011", "sds011", "Sds011", "SPS30", "sps30", "PMS5003", "pms7003", "HPM",
];
/// Sensor types as queries ask for them (upper-cased, as a validated
/// query holds them); `BME280` is never stored.
pub const QUERY_TYPES: [&str; 6] = ["SDS011", "SPS30", "PMS5003", "PMS7003", "HPM", "BME280"];
/// Countries queries ask for; `ZZ` is never stored.
pub const QUERY_COUNTRIES: [&str; 7] = ["DE", "BG", "AU", "FR", "NL", "PL", "ZZ"];

/// Circles with readings placed exactly on their edge (see [`on_circle`]).
pub const CIRCLES: [Near; 5] = [
    Near {
        lat: 48.78,
        lon: 9.18,
        radius_km: 5.0,
    },
    Near {
        lat: 50.0,
        lon: 8.0,
        radius_km: 20.0,
    },
    Near {
        lat: 42.7,
        lon: 23.32,
        radius_km: 0.75,
    },
    Near {
        lat: -33.9,
        lon: 151.2,
        radius_km: 37.5,
    },
    // Across the antimeridian (Fiji): its edge due east is at 179.8° W.
    Near {
        lat: -17.0,
        lon: 179.95,
        radius_km: 25.0,
    },
];

/// Boxes with readings placed exactly on their edges and corners; the
/// second's edges are grid lines.
pub const BOXES: [Bbox; 2] = [
    Bbox {
        min_lon: 9.0,
        min_lat: 48.7,
        max_lon: 9.3,
        max_lat: 48.9,
    },
    Bbox {
        min_lon: 7.75,
        min_lat: 49.75,
        max_lon: 8.25,
        max_lat: 50.25,
    },
];

/// Concentrations (µg/m³, as text) on both sides of every breakpoint of the
/// three indices, for PM2.5 and PM10: DAQI's rounding edges, the US EPA's
/// truncation edges, the EAQI's inclusive bounds, and the top of each.
pub const BREAKPOINTS: &[&str] = &[
    // DAQI PM2.5 (rounded half up to whole µg/m³)
    "0", "11", "11.49", "11.5", "23.4", "23.5", "35.49", "41.4", "41.5", "47.4", "47.5", "53.4",
    "53.5", "58.4", "58.5", "64.4", "64.5", "70.4", "70.5", // DAQI PM10
    "16.4", "16.5", "33.4", "33.5", "50.4", "50.5", "58.49", "66.4", "66.5", "75.4", "75.5",
    "83.4", "83.5", "91.4", "91.5", "100.4", "100.5",
    // US EPA PM2.5 (truncated to 0.1 µg/m³)
    "0.0", "9.0", "9.09", "9.1", "35.4", "35.5", "55.4", "55.49", "55.5", "125.4", "125.5", "225.4",
    "225.49", "225.5", "325.4", "325.5", "500.4",
    // US EPA PM10 (truncated to 1 µg/m³)
    "54", "54.9", "55", "154", "154.99", "155", "254", "255", "354", "354.9", "355", "424", "425",
    "604", "604.9", "605", "999.9", // EAQI PM2.5 (upper bounds inclusive, as sent)
    "5", "5.0", "5.01", "15", "15.01", "50", "50.01", "90", "90.01", "140", "140.01",
    // EAQI PM10
    "15.00", "45", "45.01", "120", "120.01", "195", "195.01", "270", "270.01", "1e1",
];

/// A concentration as a sensor might send it: a breakpoint half the time,
/// else any value up to 700 with up to two decimals.
pub fn concentration(rng: &mut StdRng) -> String {
    if rng.random_bool(0.5) {
        if let Some(b) = BREAKPOINTS.choose(rng) {
            return (*b).to_owned();
        }
    }
    let decimals = rng.random_range(0..=2usize);
    format!("{:.*}", decimals, rng.random_range(0.0..700.0))
}

/// A reading with its indices computed from its values, as ingestion does.
#[allow(clippy::too_many_arguments)]
pub fn reading(
    sensor_id: u64,
    ts: i64,
    sensor_type: &str,
    country: &str,
    lat: String,
    lon: String,
    p1: Option<String>,
    p2: Option<String>,
) -> Reading {
    let indices = Indices::of_text(p1.as_deref(), p2.as_deref())
        .expect("a generated reading has at least one value");
    let mut r = Reading {
        id: Some((ts as u64).wrapping_mul(31) ^ sensor_id),
        timestamp: Timestamp(ts),
        sensor_id,
        sensor_type: sensor_type.to_owned(),
        loc_id: Some(sensor_id + 100_000),
        loc_country: country.to_owned(),
        loc_lat: lat,
        loc_long: lon,
        loc_alt: String::new(),
        p1,
        p2,
        indices: Indices::lowest(),
        // A daily mean of the backfill now and then: stored and answered
        // like every other field.
        samples: (ts % 5 == 0).then_some((ts % 577) as u32 + 1),
        basis: None,
        // Flags and air now and then, from the identity: every set of
        // flags in time, a humidity, a temperature (below zero too).
        flags: quality_of(sensor_id, ts),
        air: air_of(sensor_id, ts),
    };
    r.indices = indices;
    r
}

/// A reading's flags, from its identity: none half the time, else any set.
pub fn quality_of(sensor_id: u64, ts: i64) -> Flags {
    let h = (ts as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ sensor_id.wrapping_mul(31);
    let every = Flags::of(&Flag::ALL).bits();
    match h % 2 {
        0 => Flags::NONE,
        _ => Flags::from_bits((h >> 8) as u16 & every).unwrap_or_default(),
    }
}

/// A reading's air, from its identity: a humidity one time in three, a
/// temperature four times in five (below zero a quarter of those).
pub fn air_of(sensor_id: u64, ts: i64) -> Air {
    let h = (ts as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ sensor_id;
    let humidity = h
        .is_multiple_of(3)
        .then(|| format!("{}.{}", (h >> 4) % 100, (h >> 12) % 10));
    let temperature = (!h.is_multiple_of(5)).then(|| {
        let sign = if (h >> 32).is_multiple_of(4) { "-" } else { "" };
        format!("{sign}{}.{}", (h >> 16) % 40, (h >> 24) % 10)
    });
    Air {
        humidity,
        temperature,
    }
}

/// P1 and P2, each present nine times in ten, at least one of them.
pub fn values(rng: &mut StdRng) -> (Option<String>, Option<String>) {
    let p1 = rng.random_bool(0.9).then(|| concentration(rng));
    let p2 = if p1.is_none() || rng.random_bool(0.9) {
        Some(concentration(rng))
    } else {
        None
    };
    (p1, p2)
}

/// The point at `distance_km` from the circle's centre along `bearing`
/// (degrees from north), on the sphere the reference measures on.
pub fn on_circle(n: &Near, distance_km: f64, bearing: f64) -> (f64, f64) {
    if bearing == 0.0 {
        // Due north the point is exact: only the latitude moves.
        return (n.lat + (distance_km / EARTH_RADIUS_KM).to_degrees(), n.lon);
    }
    let (p1, l1) = (n.lat.to_radians(), n.lon.to_radians());
    let (d, b) = (distance_km / EARTH_RADIUS_KM, bearing.to_radians());
    let p2 = (p1.sin() * d.cos() + p1.cos() * d.sin() * b.cos()).asin();
    let l2 = l1 + (b.sin() * d.sin() * p1.cos()).atan2(d.cos() - p1.sin() * p2.sin());
    // Past the antimeridian, the longitude a sensor there sends.
    let lon = match l2.to_degrees() {
        lon if lon > 180.0 => lon - 360.0,
        lon if lon < -180.0 => lon + 360.0,
        lon => lon,
    };
    (p2.to_degrees(), lon)
}

/// Sensor ids of the readings on [`CIRCLES`]' edges: circle `c`'s sensor
/// exactly on the edge due north is `EDGE_SENSORS + 10 * c`, 1 m outside
/// it `+ 1`, 1 m inside due south `+ 2`, on the edge due east `+ 3`.
pub const EDGE_SENSORS: u64 = 9_100_000;

/// The readings [`filters_match_reference`](crate::store::filters_match_reference)
/// writes: `sensors` sensors with 2 to 5 readings each over the window,
/// most in [`CLUSTERS`], a quarter spread over Europe, and a few sensors
/// on the edges of [`CIRCLES`] and [`BOXES`].
pub fn readings(rng: &mut StdRng, sensors: u64) -> Vec<Reading> {
    let mut out = Vec::new();
    let mut at = |rng: &mut StdRng, id: u64, lat: String, lon: String, country: &str| {
        let sensor_type = *SENSOR_TYPES.choose(rng).unwrap_or(&"SDS011");
        let mut times: Vec<i64> = (0..rng.random_range(2..=5))
            .map(|_| WINDOW_START + rng.random_range(0..WINDOW_SECS))
            .collect();
        times.sort_unstable();
        times.dedup();
        for ts in times {
            let (p1, p2) = values(rng);
            out.push(reading(
                id,
                ts,
                sensor_type,
                country,
                lat.clone(),
                lon.clone(),
                p1,
                p2,
            ));
        }
    };
    for k in 0..sensors {
        let id = 9_000_000 + k;
        if rng.random_bool(0.25) {
            let lat = rng.random_range(35.0..60.0);
            let lon = rng.random_range(-10.0..30.0);
            let country = *SPREAD_COUNTRIES.choose(rng).unwrap_or(&"DE");
            let decimals = rng.random_range(2..=5usize);
            at(
                rng,
                id,
                format!("{lat:.decimals$}"),
                format!("{lon:.decimals$}"),
                country,
            );
        } else {
            let (clat, clon, spread, country) = CLUSTERS[(k % CLUSTERS.len() as u64) as usize];
            let lat = clat + rng.random_range(-spread..spread);
            let lon = clon + rng.random_range(-spread..spread);
            let decimals = rng.random_range(3..=5usize);
            at(
                rng,
                id,
                format!("{lat:.decimals$}"),
                format!("{lon:.decimals$}"),
                country,
            );
        }
    }
    // On the circles' edges: the text is the shortest that parses back to
    // the computed point, so the reference sees exactly that point.
    for (c, n) in CIRCLES.iter().enumerate() {
        let country = CLUSTERS.get(c).map_or("FJ", |k| k.3);
        let base = EDGE_SENSORS + 10 * c as u64;
        let points = [
            on_circle(n, n.radius_km, 0.0),
            on_circle(n, n.radius_km + 0.001, 0.0),
            on_circle(n, -(n.radius_km - 0.001), 0.0),
            on_circle(n, n.radius_km, 90.0),
        ];
        for (i, (lat, lon)) in points.into_iter().enumerate() {
            at(
                rng,
                base + i as u64,
                format!("{lat}"),
                format!("{lon}"),
                country,
            );
        }
    }
    // On the boxes' edges and corners, and just outside one edge, with the
    // bounds' own text.
    for (b, bbox) in BOXES.iter().enumerate() {
        let mid_lat = (bbox.min_lat + bbox.max_lat) / 2.0;
        let mid_lon = (bbox.min_lon + bbox.max_lon) / 2.0;
        let points = [
            (bbox.min_lat, mid_lon),
            (bbox.max_lat, mid_lon),
            (mid_lat, bbox.min_lon),
            (mid_lat, bbox.max_lon),
            (bbox.min_lat, bbox.min_lon),
            (bbox.max_lat, bbox.max_lon),
            (bbox.max_lat + 1e-4, mid_lon),
        ];
        for (i, (lat, lon)) in points.into_iter().enumerate() {
            at(
                rng,
                EDGE_SENSORS + 1000 + 100 * b as u64 + i as u64,
                format!("{lat}"),
                format!("{lon}"),
                "DE",
            );
        }
    }
    out
}

/// A place for a generated query: a box or a circle, small (a few cells)
/// or large (more cells than a store reads one by one), near the
/// generated sensors or on [`CIRCLES`] and [`BOXES`].
pub fn place(rng: &mut StdRng) -> Place {
    let (clat, clon, spread, _) = *CLUSTERS.choose(rng).unwrap_or(&CLUSTERS[0]);
    if rng.random_bool(0.4) {
        if rng.random_bool(0.3) {
            return Place::Bbox(*BOXES.choose(rng).unwrap_or(&BOXES[0]));
        }
        let (w, h) = match rng.random_range(0..3) {
            0 => (rng.random_range(0.01..0.3), rng.random_range(0.01..0.3)),
            1 => (rng.random_range(0.3..2.0), rng.random_range(0.3..2.0)),
            _ => (rng.random_range(2.0..40.0), rng.random_range(2.0..25.0)),
        };
        let lat = clat + rng.random_range(-spread..spread);
        let lon = clon + rng.random_range(-spread..spread);
        let min_lat = (lat - h / 2.0).max(-90.0);
        let min_lon = (lon - w / 2.0).max(-180.0);
        return Place::Bbox(Bbox {
            min_lon,
            min_lat,
            max_lon: (lon + w / 2.0).min(180.0),
            max_lat: (lat + h / 2.0).min(90.0),
        });
    }
    if rng.random_bool(0.5) {
        return Place::Near(*CIRCLES.choose(rng).unwrap_or(&CIRCLES[0]));
    }
    let radius_km = match rng.random_range(0..3) {
        0 => rng.random_range(0.1..2.0),
        1 => rng.random_range(2.0..20.0),
        _ => rng.random_range(20.0..=100.0),
    };
    Place::Near(Near {
        lat: clat + rng.random_range(-2.0 * spread..2.0 * spread),
        lon: clon + rng.random_range(-2.0 * spread..2.0 * spread),
        radius_km,
    })
}

/// Query number `case`: its index and format cycle through every one
/// (index first), the rest is drawn: a time range in the window (often all
/// of it), bounds and a band on the index's own scale, a place, sensor
/// types, a country.
pub fn query(rng: &mut StdRng, case: u32) -> Query {
    let index = Index::ALL[case as usize % Index::ALL.len()];
    let format = Format::ALL[(case as usize / Index::ALL.len()) % Format::ALL.len()];
    let end_of_window = WINDOW_START + WINDOW_SECS - 1;
    let mut q = Query::between(Timestamp(WINDOW_START), Timestamp(end_of_window));
    if rng.random_bool(0.6) {
        let a = rng.random_range(WINDOW_START - 3600..=end_of_window + 3600);
        let b = rng.random_range(WINDOW_START - 3600..=end_of_window + 3600);
        q.start = Timestamp(a.min(b));
        q.end = Timestamp(a.max(b));
    }
    q.index = index;
    q.format = format;
    let floor = index.floor();
    q.min_aqi = floor;
    q.max_aqi = index.max();
    if rng.random_bool(0.5) {
        let a = rng.random_range(floor..=index.max());
        let b = rng.random_range(floor..=index.max());
        q.min_aqi = a.min(b);
        q.max_aqi = a.max(b);
    }
    if rng.random_bool(0.4) {
        q.band = Some(rng.random_range(0..index.bands().len()));
    }
    if rng.random_bool(0.7) {
        q.place = Some(place(rng));
    }
    if rng.random_bool(0.4) {
        let n = rng.random_range(1..=3);
        let mut types: Vec<String> = QUERY_TYPES
            .choose_multiple(rng, n)
            .map(|t| (*t).to_owned())
            .collect();
        types.sort();
        q.sensor_types = types;
    }
    if rng.random_bool(0.3) {
        q.country = QUERY_COUNTRIES.choose(rng).map(|c| (*c).to_owned());
    }
    if rng.random_bool(0.3) {
        // "all", "no-flags", or one or two flags left out.
        let exclude = match rng.random_range(0..3) {
            0 => Flags::NONE,
            1 => Flags::of(&Flag::ALL),
            _ => Flags::of(
                &Flag::ALL
                    .choose_multiple(rng, 2)
                    .copied()
                    .collect::<Vec<_>>(),
            ),
        };
        q.quality = Some(Quality { exclude });
    }
    if rng.random_bool(0.25) {
        // Any κ (thousandths) and cap: the index filters then read the
        // corrected values, and readings without a humidity have none.
        let kappa = rng.random_range(1..=Correction::MAX_KAPPA_MILLI);
        let cap = rng.random_range(Correction::RH_MAX_RANGE);
        q.correction = Correction::new(kappa, cap);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_data_exercises_the_filters() {
        let mut rng = rng(DEFAULT_SEED);
        let written = readings(&mut rng, 250);
        assert!((800..1400).contains(&written.len()), "{}", written.len());
        assert!(written.iter().all(|r| r.position().is_some()));
        let mut answered = 0;
        for case in 0..30 {
            let q = query(&mut rng, case);
            let n = crate::store::reference(&written, &q).len();
            answered += usize::from(n > 0);
        }
        // What `filters_match_reference` asserts, checked here without a
        // store so that a backend's suite does not find it out first.
        assert!(answered * 4 >= 30, "{answered} of 30 queries match");
    }
}

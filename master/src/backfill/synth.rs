//! A synthetic archive for the backfill benchmark: `days` directories of
//! `sensors` per-sensor CSV files, laid out and written like the real
//! archive's (`YYYY-MM-DD/YYYY-MM-DD_sds011_sensor_<id>.csv`, `;`-separated,
//! the same headers, `T` timestamps, two decimals).
//!
//! Sensors sit (with a jitter of up to ±0.05°, a few km) at inland European
//! cities and London, so every row has a country; nine in ten are SDS011s,
//! one in ten SPS30s with their wider header. With `--air-share P`, the
//! first P % of the stations also have a DHT22 (location id shared with
//! the PM sensor, as in the network) whose files hold a temperature and a
//! humidity per row; the PM files are the same bytes whatever P (the
//! DHT22s draw from a generator of their own). The output is a function
//! of the arguments only (seeded generators, integer arithmetic, no
//! clock), and its size is bounded by the arguments' ranges.

use crate::cli::SynthArchiveArgs;
use anyhow::Context as _;
use chrono::{Duration, NaiveDate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write as _;
use std::path::Path;

/// Inland sites, as (latitude, longitude) in 1e-4 degrees.
const SITES: &[(i32, i32)] = &[
    (525_200, 134_050), // Berlin
    (487_758, 91_829),  // Stuttgart
    (481_351, 115_820), // Munich
    (501_109, 86_821),  // Frankfurt
    (513_397, 123_731), // Leipzig
    (500_755, 144_378), // Prague
    (482_082, 163_738), // Vienna
    (474_979, 190_402), // Budapest
    (522_297, 210_122), // Warsaw
    (500_647, 199_450), // Kraków
    (426_977, 233_219), // Sofia
    (488_566, 23_522),  // Paris
    (404_168, -37_038), // Madrid
    (508_503, 43_517),  // Brussels
    (515_074, -1_278),  // London
];

/// Largest jitter of a site, in 1e-4 degrees.
const JITTER_E4: i32 = 500;

const SDS011_HEADER: &str =
    "sensor_id;sensor_type;location;lat;lon;timestamp;P1;durP1;ratioP1;P2;durP2;ratioP2\n";
const SPS30_HEADER: &str =
    "sensor_id;sensor_type;location;lat;lon;timestamp;P1;P4;P2;P0;N05;N1;N25;N4;N10;TS\n";
const DHT22_HEADER: &str =
    "sensor_id;sensor_type;location;lat;lon;timestamp;temperature;humidity\n";

/// The DHT22s' generator's seed, from the run's: its own stream.
const AIR_SEED: u64 = 0xD422;

/// What was written.
#[derive(Debug, Default)]
pub struct Written {
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
}

struct Sensor {
    id: u64,
    location: u64,
    sps30: bool,
    lat_e4: i32,
    lon_e4: i32,
    /// Typical PM2.5, in hundredths of µg/m³.
    level: u32,
}

/// `1e-4` degrees as the archive writes coordinates (eight decimals).
fn degrees(e4: i32) -> String {
    let sign = if e4 < 0 { "-" } else { "" };
    let a = e4.unsigned_abs();
    format!("{sign}{}.{:04}0000", a / 10_000, a % 10_000)
}

/// Hundredths with two decimals.
fn two(h: u32) -> String {
    format!("{}.{:02}", h / 100, h % 100)
}

pub fn write(args: &SynthArchiveArgs) -> anyhow::Result<Written> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let sensors: Vec<Sensor> = (0..u64::from(args.sensors))
        .map(|i| {
            let (lat, lon) = SITES[(i as usize) % SITES.len()];
            Sensor {
                id: 100_000 + i,
                location: 200_000 + i,
                sps30: i % 10 == 9,
                lat_e4: lat + rng.random_range(-JITTER_E4..=JITTER_E4),
                lon_e4: lon + rng.random_range(-JITTER_E4..=JITTER_E4),
                level: rng.random_range(300..3_000),
            }
        })
        .collect();
    let slot = 86_400 / args.rows;
    let mut air_rng = StdRng::seed_from_u64(args.seed ^ AIR_SEED);
    let stations = sensors.len() * usize::from(args.air_share) / 100;
    let mut out = Written::default();
    for d in 0..args.days {
        let day = args.start + Duration::days(i64::from(d));
        let dir = args.out.join(day.format("%Y-%m-%d").to_string());
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for s in &sensors {
            out.bytes += write_file(&dir, day, s, args.rows, slot, &mut rng)?;
            out.files += 1;
            out.rows += u64::from(args.rows);
        }
        for s in &sensors[..stations] {
            out.bytes += write_air_file(&dir, day, s, args.rows, slot, &mut air_rng)?;
            out.files += 1;
            out.rows += u64::from(args.rows);
        }
    }
    Ok(out)
}

fn write_file(
    dir: &Path,
    day: NaiveDate,
    s: &Sensor,
    rows: u32,
    slot: u32,
    rng: &mut StdRng,
) -> anyhow::Result<u64> {
    let kind = if s.sps30 { "sps30" } else { "sds011" };
    let path = dir.join(format!(
        "{}_{kind}_sensor_{}.csv",
        day.format("%Y-%m-%d"),
        s.id
    ));
    let mut text = String::with_capacity(rows as usize * 90);
    text.push_str(if s.sps30 { SPS30_HEADER } else { SDS011_HEADER });
    let (lat, lon) = (degrees(s.lat_e4), degrees(s.lon_e4));
    let date = day.format("%Y-%m-%d").to_string();
    for k in 0..rows {
        let second = k * slot + rng.random_range(0..slot.max(1));
        let (h, m, sec) = (second / 3600, second / 60 % 60, second % 60);
        // PM2.5 around the sensor's level, PM10 above it.
        let p2 = s.level * rng.random_range(50..200) / 100;
        let p1 = p2 * rng.random_range(110..250) / 100;
        let head = format!(
            "{};{};{};{lat};{lon};{date}T{h:02}:{m:02}:{sec:02}",
            s.id,
            if s.sps30 { "SPS30" } else { "SDS011" },
            s.location
        );
        if s.sps30 {
            let p4 = (p1 + p2) / 2;
            let p0 = p2 * 7 / 10;
            text.push_str(&format!(
                "{head};{};{};{};{};{};{};{};{};{};0.55\n",
                two(p1),
                two(p4),
                two(p2),
                two(p0),
                two(p0 * 6),
                two(p0 * 7),
                two(p2 * 7),
                two(p4 * 7),
                two(p1 * 7)
            ));
        } else {
            text.push_str(&format!("{head};{};;;{};;\n", two(p1), two(p2)));
        }
    }
    write_text(&path, &text)
}

/// A DHT22 beside PM sensor `s` (its location id, its coordinates): a
/// day's temperature (−5 to 25 °C) and humidity (40 to 100 %) with a
/// small spread per row.
fn write_air_file(
    dir: &Path,
    day: NaiveDate,
    s: &Sensor,
    rows: u32,
    slot: u32,
    rng: &mut StdRng,
) -> anyhow::Result<u64> {
    let id = s.id + 200_000;
    let date = day.format("%Y-%m-%d").to_string();
    let path = dir.join(format!("{date}_dht22_sensor_{id}.csv"));
    let mut text = String::with_capacity(rows as usize * 80);
    text.push_str(DHT22_HEADER);
    let (lat, lon) = (degrees(s.lat_e4), degrees(s.lon_e4));
    // Tenths of a degree above −5 °C, tenths of a percent above 40 %.
    let (warmth, wetness) = (rng.random_range(0..300u32), rng.random_range(0..550u32));
    for k in 0..rows {
        let second = k * slot + rng.random_range(0..slot.max(1));
        let (h, m, sec) = (second / 3600, second / 60 % 60, second % 60);
        let tenths = warmth + rng.random_range(0..=20);
        let t = i64::from(tenths) * 10 - 500;
        let sign = if t < 0 { "-" } else { "" };
        let t = t.unsigned_abs();
        let rh = (400 + wetness + rng.random_range(0..=50)).min(1_000) * 10;
        text.push_str(&format!(
            "{id};DHT22;{};{lat};{lon};{date}T{h:02}:{m:02}:{sec:02};{sign}{}.{:02};{}\n",
            s.location,
            t / 100,
            t % 100,
            two(rh)
        ));
    }
    write_text(&path, &text)
}

fn write_text(path: &Path, text: &str) -> anyhow::Result<u64> {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    f.write_all(text.as_bytes())
        .and_then(|()| f.flush())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(text.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_arguments_give_the_same_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = |out: &Path| SynthArchiveArgs {
            out: out.to_owned(),
            sensors: 12,
            days: 2,
            start: "2025-09-01".parse().expect("a date"),
            rows: 10,
            seed: 7,
            air_share: 0,
        };
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let wa = write(&args(&a)).expect("written");
        write(&args(&b)).expect("written");
        assert_eq!((wa.files, wa.rows), (24, 240));
        // Half the stations with a DHT22: the PM files are the same.
        let c = dir.path().join("c");
        let wc = write(&SynthArchiveArgs {
            air_share: 50,
            ..args(&c)
        })
        .expect("written");
        assert_eq!((wc.files, wc.rows), (24 + 12, 240 + 120));
        let dht = "2025-09-01/2025-09-01_dht22_sensor_300005.csv";
        let air = std::fs::read_to_string(c.join(dht)).expect("a DHT22 file");
        assert!(air.starts_with(DHT22_HEADER));
        assert_eq!(air.lines().count(), 11);
        for line in air.lines().skip(1) {
            let cells: Vec<&str> = line.split(';').collect();
            assert_eq!(cells[2], "200005", "the station's location id");
            let rh: f64 = cells[7].parse().expect("a humidity");
            assert!((40.0..=100.0).contains(&rh), "{line}");
        }
        assert!(!c
            .join("2025-09-01/2025-09-01_dht22_sensor_300006.csv")
            .exists());
        let name = "2025-09-02/2025-09-02_sps30_sensor_100009.csv";
        let text = std::fs::read_to_string(a.join(name)).expect("an SPS30 file");
        assert_eq!(
            text,
            std::fs::read_to_string(b.join(name)).expect("its twin")
        );
        assert_eq!(
            text,
            std::fs::read_to_string(c.join(name)).expect("its twin")
        );
        assert!(text.starts_with(SPS30_HEADER));
        assert_eq!(text.lines().count(), 11);
        assert_eq!(degrees(-1_278), "-0.12780000");
        assert_eq!(degrees(525_200), "52.52000000");
    }
}

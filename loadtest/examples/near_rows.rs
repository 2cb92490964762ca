//! Rows read against rows returned for place queries on the embedded
//! store, and their time beside the same answer computed without the grid
//! (raw SQLite on the same file, reading the day and testing each row).
//! Run by `loadtest/near_rows.sh`, which makes the store; see BENCHMARKS.md.
//!
//! Usage: near_rows DB DAY(YYYY-MM-DD) [RUNS]

use airq_core::place::{distance_km, Bbox, Near, Place};
use airq_core::{Query, Timestamp};
use airq_embedded::{Db, SqliteReadingStore};
use anyhow::{bail, Context};
use std::time::Instant;

/// Dense places of the synthetic network (its sensors are clones of the
/// 2018 sample's, which is densest around Stuttgart), and elsewhere.
const PLACES: [(&str, f64, f64, f64); 4] = [
    ("Stuttgart, 10 km", 48.7758, 9.1829, 10.0),
    ("Stuttgart, 1 km", 48.7758, 9.1829, 1.0),
    ("Berlin, 10 km", 52.52, 13.405, 10.0),
    ("Stuttgart, 100 km", 48.7758, 9.1829, 100.0),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: near_rows DB DAY [RUNS]");
    }
    let runs: usize = args.get(3).map_or(Ok(15), |r| r.parse()).context("RUNS")?;
    let day = chrono::NaiveDate::parse_from_str(&args[2], "%Y-%m-%d").context("DAY")?;
    let start = Timestamp::from_naive(day.and_hms_opt(0, 0, 0).context("day")?);
    let end = Timestamp(start.0 + 86_399);
    let db = Db::open(&args[1])?;
    let store = SqliteReadingStore::new(db);
    let raw = rusqlite::Connection::open(&args[1])?;

    let whole = Query::between(start, end);
    let (day_rows, _) = store.rows_read(&whole)?;
    println!("day {day}: {day_rows} readings stored");
    println!("| place | cells | rows read | rows returned | read / day | airq median | raw SQLite median (day scan + distance) | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, lat, lon, radius_km) in PLACES {
        let place = Place::Near(Near {
            lat,
            lon,
            radius_km,
        });
        let q = Query {
            place: Some(place),
            ..whole.clone()
        };
        let cells = place
            .cells()
            .map_or("none (too many)".into(), |c| c.len().to_string());
        let (read, returned) = store.rows_read(&q)?;
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let (_, n) = store.rows_read(&q)?;
            ours.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(n, returned);
            // The same answer without the grid: every row of the day, the
            // distance tested on each.
            let t = Instant::now();
            let mut stmt = raw.prepare_cached(
                "SELECT loc_lat, loc_long FROM readings WHERE ts BETWEEN ?1 AND ?2",
            )?;
            let mut rows = stmt.query([start.0, end.0])?;
            let mut m = 0u64;
            while let Some(row) = rows.next()? {
                let (a, b): (String, String) = (row.get(0)?, row.get(1)?);
                if let (Ok(a), Ok(b)) = (a.parse::<f64>(), b.parse::<f64>()) {
                    if distance_km(lat, lon, a, b) <= radius_km + 1e-9 {
                        m += 1;
                    }
                }
            }
            theirs.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(m, returned, "the raw scan finds the same readings");
        }
        let (a, b) = (median(ours), median(theirs));
        println!(
            "| {name} | {cells} | {read} | {returned} | {:.2} % | {a:.1} ms | {b:.1} ms | {:.0}x |",
            100.0 * read as f64 / day_rows.max(1) as f64,
            b / a.max(1e-9)
        );
    }
    // A box, for completeness: about 0.2° × 0.2° around Stuttgart.
    let q = Query {
        place: Some(Place::Bbox(Bbox {
            min_lon: 9.08,
            min_lat: 48.68,
            max_lon: 9.28,
            max_lat: 48.88,
        })),
        ..whole
    };
    let (read, returned) = store.rows_read(&q)?;
    println!("bbox 9.08,48.68,9.28,48.88: {read} rows read, {returned} returned");
    Ok(())
}

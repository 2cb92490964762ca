//! The share of a feed's readings each quality flag a feed decides by
//! itself marks (`airq_core::quality::of_feed`), on a saved 5-minute feed:
//!
//! ```sh
//! cargo run --release -p airq-core --example flag_shares -- data/sample/201806032249_data.dust.min.json
//! cargo run --release -p airq-core --example flag_shares -- --fragment common/core/tests/fixtures/20190416_v1_data.json.fragment
//! ```
//!
//! `--fragment` reads a file of entries without the surrounding brackets
//! (the shipped 2019 fragment). `stuck` and `moved` need a sensor's earlier readings, which one
//! snapshot does not have: they are not counted.

use airq_core::air::Stations;
use airq_core::feed::{parse_feed_with_air_at, Rejection};
use airq_core::quality::{self, Beside, Flag};
use airq_core::{Reading, Resolution, Timestamp};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (fragment, path) = match args.as_slice() {
        [flag, path] if flag == "--fragment" => (true, path),
        [path] => (false, path),
        _ => {
            eprintln!("usage: flag_shares [--fragment] FEED.json");
            return ExitCode::from(2);
        }
    };
    let doc = match std::fs::read(path) {
        Ok(doc) if fragment => {
            let text = String::from_utf8_lossy(&doc);
            format!("[{}]", text.trim()).into_bytes()
        }
        Ok(doc) => doc,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = Timestamp::now();
    let (mut readings, mut stations): (Vec<Reading>, Stations) = (Vec::new(), Stations::default());
    let stats =
        match parse_feed_with_air_at(&doc, now, |r| readings.extend(r.ok()), |m| stations.add(m)) {
            Ok(stats) => stats,
            Err(e) => {
                eprintln!("cannot parse {path}: {e}");
                return ExitCode::FAILURE;
            }
        };
    let step = Resolution::FiveMin.step();
    let beside: Vec<Beside> = readings
        .iter()
        .map(|r| Beside {
            indoor: false,
            air: r
                .loc_id
                .and_then(|loc| stations.air_at(loc, r.timestamp, step)),
        })
        .collect();
    let flags = quality::of_feed(Resolution::FiveMin, &readings, &beside);
    let n = readings.len();
    println!(
        "{path}: {} entries, {n} readings, {} station measurements ({} entries without P1/P2)",
        stats.entries,
        stations.len(),
        stats.rejected(Rejection::NoParticulates)
    );
    let share = |k: usize| 100.0 * k as f64 / n.max(1) as f64;
    for flag in Flag::ALL {
        if matches!(flag, Flag::Stuck | Flag::Moved) {
            continue;
        }
        let k = flags.iter().filter(|f| f.contains(flag)).count();
        println!("{:>16}: {k:>5} ({:.1} %)", flag.name(), share(k));
    }
    let k = flags.iter().filter(|f| f.is_empty()).count();
    println!("{:>16}: {k:>5} ({:.1} %)", "no flag", share(k));
    ExitCode::SUCCESS
}

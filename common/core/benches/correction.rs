//! What the humidity correction costs an answer's rendering: 100,000
//! daily readings, each with its station's humidity, written as CSV and
//! NDJSON without and with `correction` (κ-Köhler: two divisions, the
//! corrected values formatted, the indices computed from them, per row).
//!
//!     cargo bench -p airq-core --bench correction
//!
//! Figures in BENCHMARKS.md ("What the humidity correction costs").

use airq_core::air::Air;
use airq_core::correction::Correction;
use airq_core::export::{to_answer, Format, Rendering};
use airq_core::{Index, Indices, Reading, Timestamp};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

const ROWS: u64 = 100_000;

/// Readings with values and humidities spread as a day of the network's:
/// PM10 1–120, PM2.5 0.5–80 µg/m³, RH 20–100 %, from a fixed sequence.
fn readings() -> Vec<Reading> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    (0..ROWS)
        .map(|i| {
            let p1 = format!("{}.{:02}", 1 + next(120), next(100));
            let p2 = format!("{}.{:02}", next(80), 50 + next(50));
            let rh = format!("{}.{}", 20 + next(80), next(10));
            Reading {
                id: Some(i),
                timestamp: Timestamp(1_704_067_200 + (i as i64 % 86_400)),
                sensor_id: 10_000 + i,
                sensor_type: "SDS011".into(),
                loc_id: Some(20_000 + i),
                loc_country: "DE".into(),
                loc_lat: format!("{}.{:04}", 47 + next(8), next(10_000)),
                loc_long: format!("{}.{:04}", 6 + next(9), next(10_000)),
                loc_alt: String::new(),
                indices: Indices::of_text(Some(&p1), Some(&p2)).unwrap_or_else(Indices::lowest),
                p1: Some(p1),
                p2: Some(p2),
                samples: None,
                basis: None,
                flags: Default::default(),
                air: Air {
                    humidity: Some(rh),
                    temperature: Some("12.5".into()),
                },
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rows = readings();
    let correction = Correction::new(300, Correction::DEFAULT_RH_MAX);
    let mut group = c.benchmark_group("render 100k readings");
    group.throughput(Throughput::Elements(ROWS));
    group.sample_size(20);
    for format in [Format::Csv, Format::Ndjson] {
        for (name, correction) in [("raw", None), ("kappa-kohler", correction)] {
            let rendering = Rendering {
                format,
                index: Index::Daqi,
                age_at: None,
                quality: false,
                correction,
            };
            group.bench_function(format!("{} {name}", format.name()), |b| {
                b.iter_batched(
                    || (),
                    |()| black_box(to_answer(rows.iter(), rendering).map(|v| v.len())),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

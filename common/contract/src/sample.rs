//! The data every backend's suite runs on: the shipped feed sample and
//! queries drawn around it.

use airq_core::feed::parse_feed;
use airq_core::Reading;
use proptest::prelude::*;

/// The shipped sample's valid readings.
pub fn sample() -> Vec<Reading> {
    let doc = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/sample/201806032249_data.dust.min.json"
    ))
    .expect("sample");
    let mut out = Vec::new();
    parse_feed(&doc, |r| out.extend(r.ok())).expect("parse");
    out
}

/// A query filter as a user would send it, drawn around the shipped
/// sample's time span (every field optional but the dates, `min > max` and
/// odd spellings included), so that each backend's suite checks the same
/// filters against the in-memory reference.
pub fn arb_query() -> impl Strategy<Value = serde_json::Value> {
    // The sample spans 20:42:52..20:48:01 on 2018-06-03; draw bounds around it.
    let base = 1_528_058_400i64; // 2018-06-03 20:40:00
    (
        0i64..600,
        0i64..600,
        prop::option::of(prop::sample::select(vec![
            "DE", "BG", "UK", "de", "NL", "FR", "ZZ",
        ])),
        prop::option::of(0u8..=10),
        prop::option::of(0u8..=10),
        prop::option::of(prop::sample::select(vec![
            "Low",
            "Moderate",
            "Medium",
            "High",
            "Very High",
        ])),
    )
        .prop_map(move |(a, b, country, min, max, band)| {
            let (s, e) = (base + a.min(b), base + a.max(b));
            let fmt = |t: i64| {
                chrono::DateTime::from_timestamp(t, 0)
                    .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default()
            };
            let mut m = serde_json::Map::new();
            m.insert("startDate".into(), fmt(s).into());
            m.insert("endDate".into(), fmt(e).into());
            if let Some(c) = country {
                m.insert("country".into(), c.into());
            }
            if let Some(v) = min {
                m.insert("minAqi".into(), v.into());
            }
            if let Some(v) = max {
                m.insert("maxAqi".into(), v.into());
            }
            if let Some(b) = band {
                m.insert("range".into(), b.into());
            }
            serde_json::Value::Object(m)
        })
}

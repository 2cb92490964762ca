//! The data every backend's suite runs on: the shipped feed sample and
//! queries drawn around it.

use airq_core::feed::parse_feed;
use airq_core::{Index, Reading};
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
/// sample's time span and places (every field optional but the dates,
/// `min > max` and odd spellings included), so that each backend's suite
/// checks the same filters against the in-memory reference. Apart from
/// `min > max`, every drawn query is valid: bounds and bands are on the
/// drawn index's scale, places within the limits.
pub fn arb_query() -> impl Strategy<Value = serde_json::Value> {
    // The sample spans 20:42:52..20:48:01 on 2018-06-03; draw bounds around it.
    let base = 1_528_058_400i64; // 2018-06-03 20:40:00
    (
        0i64..600,
        0i64..600,
        prop::option::of(prop::sample::select(vec![
            "DE", "BG", "UK", "de", "NL", "FR", "ZZ",
        ])),
        arb_index_filter(),
        prop::option::of(arb_place()),
        prop::option::of(arb_sensor_types()),
        prop::option::of(prop::sample::select(vec![
            "csv", "ndjson", "geojson", "NDJSON",
        ])),
    )
        .prop_map(
            move |(a, b, country, (index, min, max, band), place, types, format)| {
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
                if let Some(i) = index {
                    m.insert("index".into(), i.into());
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
                if let Some((name, value)) = place {
                    m.insert(name.into(), value);
                }
                if let Some(t) = types {
                    m.insert("sensorType".into(), t);
                }
                if let Some(f) = format {
                    m.insert("format".into(), f.into());
                }
                serde_json::Value::Object(m)
            },
        )
}

/// `index` as sent (absent: DAQI) with `minAqi`, `maxAqi` and `range` on
/// its scale.
#[allow(clippy::type_complexity)]
fn arb_index_filter() -> impl Strategy<
    Value = (
        Option<&'static str>,
        Option<u16>,
        Option<u16>,
        Option<&'static str>,
    ),
> {
    prop::option::of(prop::sample::select(vec![
        "daqi", "us-epa", "eaqi", "US_EPA", "EAQI",
    ]))
    .prop_flat_map(|name| {
        let index = name.and_then(Index::parse).unwrap_or_default();
        let floor = index.floor();
        let mut bands: Vec<&'static str> = index.bands().iter().map(|b| b.label).collect();
        bands.extend(index.band_aliases().iter().map(|(alias, _)| *alias));
        (
            Just(name),
            prop::option::of(floor..=index.max()),
            prop::option::of(floor..=index.max()),
            prop::option::of(prop::sample::select(bands)),
        )
    })
}

/// `bbox` or `near` around the sample's sensors (most in Germany, some in
/// Bulgaria), from a few hundred metres to the largest radius.
fn arb_place() -> impl Strategy<Value = (&'static str, serde_json::Value)> {
    let cities = vec![
        (48.78, 9.18),
        (52.52, 13.40),
        (48.14, 11.58),
        (53.55, 9.99),
        (42.70, 23.32),
    ];
    prop_oneof![
        (5.0f64..25.0, 42.0f64..55.0, 0.02f64..4.0, 0.02f64..4.0).prop_map(|(lon, lat, w, h)| {
            ("bbox", serde_json::json!([lon, lat, lon + w, lat + h]))
        }),
        (
            prop::sample::select(cities),
            -0.1f64..0.1,
            -0.1f64..0.1,
            0.3f64..=100.0
        )
            .prop_map(|((lat, lon), dlat, dlon, r)| {
                (
                    "near",
                    serde_json::json!({"lat": lat + dlat, "lon": lon + dlon, "radiusKm": r}),
                )
            }),
    ]
}

/// `sensorType`: one name or a list, in any case.
fn arb_sensor_types() -> impl Strategy<Value = serde_json::Value> {
    let names = vec![
        "SDS011", "sds011", "SPS30", "PMS5003", "HPM", "PMS7003", "DHT22",
    ];
    prop_oneof![
        prop::sample::select(names.clone()).prop_map(serde_json::Value::from),
        prop::sample::subsequence(names, 1..=3).prop_map(serde_json::Value::from),
    ]
}

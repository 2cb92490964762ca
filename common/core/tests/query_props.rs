//! Property tests of the query validator.

use airq_core::query::FIELDS;
use airq_core::{Index, Query, QueryLimits};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,24}".prop_map(Value::from),
        Just(json!("2024-01-01 00:00:00")),
        Just(json!("2024-02-30")),
        Just(json!("Medium")),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_object() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop_oneof![
        prop::sample::select(FIELDS.to_vec()).prop_map(str::to_owned),
        "[a-zA-Z]{1,8}",
    ];
    prop::collection::btree_map(key, arb_json(), 0..8).prop_map(|m| m.into_iter().collect())
}

fn ts(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any object gets an answer, never a panic; every error names a field
    /// the user sent or must send, and every unknown field is named.
    #[test]
    fn any_object_is_answered_precisely(obj in arb_object()) {
        let body = Value::Object(obj.clone()).to_string();
        match Query::from_json(body.as_bytes(), &QueryLimits::default()) {
            Ok(q) => {
                prop_assert!(q.start <= q.end);
                prop_assert!(q.min_aqi <= q.max_aqi && q.max_aqi <= 10);
                prop_assert!(obj.keys().all(|k| FIELDS.contains(&k.as_str())));
            }
            Err(e) => {
                prop_assert!(!e.errors.is_empty());
                for fe in &e.errors {
                    prop_assert!(
                        FIELDS.contains(&fe.field.as_str()) || obj.contains_key(&fe.field),
                        "error names {:?}", fe.field
                    );
                    prop_assert!(!fe.message.is_empty());
                }
                for k in obj.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
                    prop_assert!(e.names(k), "unknown field {k} not reported");
                }
            }
        }
    }

    /// Arbitrary bytes are a `body` error or a query, never a panic.
    #[test]
    fn any_bytes_are_answered(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Err(e) = Query::from_json(&bytes, &QueryLimits::default()) {
            prop_assert!(!e.errors.is_empty());
        }
    }

    /// Well-formed queries are accepted exactly when their rules hold, and
    /// their canonical form reads back as the same query.
    #[test]
    fn well_formed_queries(
        start in 1_500_000_000i64..1_800_000_000,
        span in -86_400i64..(40 * 86_400),
        min in 0u8..=10, max in 0u8..=10,
        band in prop::option::of(prop::sample::select(vec!["Low", "Moderate", "Medium", "High", "Very High"])),
        country in prop::option::of("[A-Za-z]{2}"),
    ) {
        let mut m = json!({"startDate": ts(start), "endDate": ts(start + span), "minAqi": min, "maxAqi": max});
        if let Some(b) = band { m["range"] = b.into(); }
        if let Some(c) = &country { m["country"] = c.clone().into(); }
        let limits = QueryLimits::default();
        let got = Query::from_json(m.to_string().as_bytes(), &limits);
        let ok_span = span >= 0 && span as u64 <= limits.max_span.as_secs();
        if ok_span && min <= max {
            let q = got.expect("valid query");
            prop_assert_eq!(q.band, band.and_then(|b| Index::Daqi.parse_band(b)));
            prop_assert_eq!(q.country.clone(), country.map(|c| c.to_ascii_uppercase()));
            let back = Query::from_json(q.to_json().as_bytes(), &limits).expect("canonical form");
            prop_assert_eq!(back, q);
        } else {
            let e = got.expect_err("invalid query");
            prop_assert_eq!(e.names("endDate"), !ok_span);
            prop_assert_eq!(e.names("minAqi"), min > max);
        }
    }
}

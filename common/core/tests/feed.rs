//! The feed parser on the real sample files and on broken input.

use airq_core::feed::{parse_entry, parse_feed, FeedError, FeedStats, Rejection};
use airq_core::{Band, Reading};

fn sample() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/sample/201806032249_data.dust.min.json"
    ))
    .expect("the shipped sample is in data/sample/")
}

fn fragment() -> Vec<u8> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/20190416_v1_data.json.fragment"
    ))
    .expect("fixture");
    format!("[{}]", text.trim()).into_bytes()
}

fn parse_all(doc: &[u8]) -> (Result<FeedStats, FeedError>, Vec<Reading>) {
    let mut out = Vec::new();
    let stats = parse_feed(doc, |r| {
        if let Ok(r) = r {
            out.push(r)
        }
    });
    (stats, out)
}

#[test]
fn dust_sample_counts() {
    let (stats, readings) = parse_all(&sample());
    let stats = stats.unwrap();
    assert_eq!(stats.entries, 4945);
    assert_eq!(stats.accepted, 4928);
    assert_eq!(readings.len(), 4928);
    // 17 entries sit at the SDS011 rail (P2 = 999.90; 15 of them also P1 >= 1999.9).
    assert_eq!(stats.rejected(Rejection::Saturated), 17);
    assert_eq!(stats.rejected_total(), 17);

    // The index distribution, computed independently from the DEFRA tables.
    let mut per_index = [0u32; 11];
    for r in &readings {
        per_index[r.aqi as usize] += 1;
    }
    assert_eq!(per_index, [0, 3212, 1241, 379, 31, 15, 8, 4, 2, 4, 32]);
    assert_eq!(
        readings.iter().filter(|r| r.loc_country == "DE").count(),
        3370
    );
    assert!(
        readings.iter().any(|r| r.loc_country == "UK"),
        "codes are kept as sent"
    );
    assert_eq!(readings.iter().filter(|r| r.loc_alt.is_empty()).count(), 3);
}

#[test]
fn p1_is_pm10_and_p2_is_pm25() {
    let (_, readings) = parse_all(&sample());
    // The first entry: a PPD42NS with P1 = "314.90", P2 = "25.35".
    let r = readings.iter().find(|r| r.id == Some(1332524617)).unwrap();
    assert_eq!(r.p1.as_deref(), Some("314.90"));
    assert_eq!(r.p2.as_deref(), Some("25.35"));
    // PM10 314.9 is index 10; were P1 read as PM2.5 it would be 10 as well,
    // so check a reading where the mapping decides the index:
    let doc = br#"[{"id":1,"timestamp":"2024-01-01 00:00:00","location":{"id":1,"latitude":"1","longitude":"2","altitude":"3","country":"DE"},"sensor":{"id":5,"sensor_type":{"id":14,"name":"SDS011","manufacturer":"Nova Fitness"}},"sensordatavalues":[{"value":"45","value_type":"P1"},{"value":"20","value_type":"P2"}]}]"#;
    let (_, rs) = parse_all(doc);
    // PM10 45 -> 3, PM2.5 20 -> 2: AQI 3. Swapped it would be PM2.5 45 -> 5.
    assert_eq!(rs[0].aqi, 3);
    assert_eq!(rs[0].band(), Band::Low);
}

#[test]
fn values_keep_the_text_sent() {
    let (_, readings) = parse_all(&sample());
    let r = readings.iter().find(|r| r.id == Some(1332523934)).unwrap();
    assert_eq!(r.p1.as_deref(), Some("9.40"), "trailing zero kept");
    assert_eq!(r.loc_lat, "48.8000");
    assert_eq!(r.timestamp.to_string(), "2018-06-03 20:47:47");
    assert_eq!(r.sensor_type, "SDS011");
    assert_eq!(r.sensor_id, 92);
    assert_eq!(r.loc_id, Some(42));
}

#[test]
fn v1_fragment_counts() {
    let (stats, readings) = parse_all(&fragment());
    let stats = stats.unwrap();
    assert_eq!(stats.entries, 243);
    // 140 SDS011 readings; the 101 DHT22 and 2 pressure sensors carry no P1/P2.
    assert_eq!(stats.accepted, 140);
    assert_eq!(stats.rejected(Rejection::NoParticulates), 103);
    assert_eq!(stats.rejected_total(), 103);
    assert!(readings.iter().all(|r| r.sensor_type == "SDS011"));
}

fn entry(values: &str) -> String {
    format!(
        r#"{{"timestamp":"2024-01-01T10:00:00","location":{{"latitude":48.1,"longitude":"9.2","altitude":"","country":"DE"}},"sensor":{{"id":7,"sensor_type":{{"name":"SDS011"}}}},"sensordatavalues":[{values}]}}"#
    )
}

#[test]
fn optional_fields_numbers_and_t_separator() {
    // No id, no location id, numeric value and latitude, `T` timestamps.
    let r = parse_entry(&entry(r#"{"value":12.5,"value_type":"P2"}"#)).unwrap();
    assert_eq!(r.id, None);
    assert_eq!(r.loc_id, None);
    assert_eq!(r.p2.as_deref(), Some("12.5"));
    assert_eq!(r.p1, None);
    assert_eq!(r.aqi, 2, "12.5 rounds to 13: PM2.5 index 2");
    assert_eq!(r.loc_lat, "48.1");
    assert_eq!(r.timestamp.to_string(), "2024-01-01 10:00:00");
}

#[test]
fn each_rejection_reason() {
    let cases = [
        (
            r#"{"value":"unavailable","value_type":"P1"}"#,
            Rejection::NonNumeric,
        ),
        (r#"{"value":null,"value_type":"P1"}"#, Rejection::NonNumeric),
        (r#"{"value_type":"P2"}"#, Rejection::NonNumeric),
        (r#"{"value":"-0.5","value_type":"P2"}"#, Rejection::Negative),
        (r#"{"value":"NaN","value_type":"P2"}"#, Rejection::NonFinite),
        (r#"{"value":"inf","value_type":"P1"}"#, Rejection::NonFinite),
        (
            r#"{"value":"999.90","value_type":"P2"}"#,
            Rejection::Saturated,
        ),
        (
            r#"{"value":"1999.9","value_type":"P1"}"#,
            Rejection::Saturated,
        ),
        (
            r#"{"value":"21.7","value_type":"temperature"}"#,
            Rejection::NoParticulates,
        ),
        ("", Rejection::NoParticulates),
    ];
    for (values, want) in cases {
        assert_eq!(parse_entry(&entry(values)).unwrap_err(), want, "{values}");
    }
    // Just under the rails is stored.
    assert!(parse_entry(&entry(r#"{"value":"999.8","value_type":"P2"}"#)).is_ok());
    assert!(parse_entry(&entry(r#"{"value":"1999.8","value_type":"P1"}"#)).is_ok());
    // A bad P value rejects the entry even when the other one is good.
    assert_eq!(
        parse_entry(&entry(
            r#"{"value":"5","value_type":"P1"},{"value":"x","value_type":"P2"}"#
        ))
        .unwrap_err(),
        Rejection::NonNumeric
    );
}

#[test]
fn malformed_entries_are_counted_not_fatal() {
    let good = entry(r#"{"value":"5","value_type":"P1"}"#);
    let no_location = r#"{"timestamp":"2024-01-01 00:00:00","sensor":{"id":1,"sensor_type":{"name":"X"}},"sensordatavalues":[{"value":"5","value_type":"P1"}]}"#;
    let bad_time = good.replace("2024-01-01T10:00:00", "yesterday");
    let doc = format!(r#"[{good},{no_location},42,"x",null,{bad_time},{good}]"#);
    let (stats, readings) = parse_all(doc.as_bytes());
    let stats = stats.unwrap();
    assert_eq!(stats.entries, 7);
    assert_eq!(readings.len(), 2);
    assert_eq!(stats.rejected(Rejection::Malformed), 4);
    assert_eq!(stats.rejected(Rejection::BadTimestamp), 1);
}

#[test]
fn empty_feed() {
    let (stats, readings) = parse_all(b" [ ] ");
    assert_eq!(stats.unwrap(), FeedStats::default());
    assert!(readings.is_empty());
}

#[test]
fn not_an_array() {
    for doc in [&br#"{"entries":[]}"#[..], b"42", b"\"feed\""] {
        let (stats, _) = parse_all(doc);
        let err = stats.unwrap_err();
        assert!(matches!(err, FeedError::NotAnArray(_)), "{err}");
        assert!(err.to_string().contains("not a JSON array"));
    }
}

#[test]
fn truncated_feed_reports_where_and_keeps_complete_entries() {
    let doc = sample();
    let cut = &doc[..doc.len() / 2];
    let (stats, readings) = parse_all(cut);
    match stats.unwrap_err() {
        FeedError::Syntax { entries, .. } => {
            assert!(entries > 2000, "{entries} entries before the cut");
            assert!(readings.len() as u64 <= entries);
        }
        other => panic!("expected a syntax error, got {other}"),
    }
    for doc in [&b""[..], b"[", b"[{\"id\":1", b"not json"] {
        let (stats, _) = parse_all(doc);
        assert!(stats.is_err(), "{:?}", String::from_utf8_lossy(doc));
    }
}

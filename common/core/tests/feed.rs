//! The feed parser on the real sample files and on broken input.

use airq_core::export::{is_formula, to_csv};
use airq_core::feed::{
    parse_entry, parse_entry_at, parse_feed, parse_feed_at, FeedError, FeedStats, Rejection,
};
use airq_core::{Index, Reading, Timestamp};

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
        per_index[r.index(Index::Daqi) as usize] += 1;
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
    assert_eq!(rs[0].index(Index::Daqi), 3);
    assert_eq!(Index::Daqi.label(rs[0].index(Index::Daqi)), "Low");
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
    assert_eq!(r.index(Index::Daqi), 2, "12.5 rounds to 13: PM2.5 index 2");
    assert_eq!(r.loc_lat, "48.1");
    assert_eq!(r.timestamp.to_string(), "2024-01-01 10:00:00");
}

#[test]
fn negative_zero_is_a_measured_zero_in_every_index() {
    // The red-team pass stored `-0` with US EPA 500 ("Hazardous"). Zero is
    // the bottom of each scale: DAQI 1, US EPA 0, EAQI 1.
    for value in [
        r#""-0""#,
        r#""-0.0""#,
        r#""-0.00""#,
        r#""-0e0""#,
        "-0",
        "-0.0",
        "0",
        r#""+0""#,
    ] {
        let values = format!(
            r#"{{"value":{value},"value_type":"P1"}},{{"value":{value},"value_type":"P2"}}"#
        );
        let r = parse_entry(&entry(&values)).unwrap_or_else(|e| panic!("{value}: {e:?}"));
        assert_eq!(r.indices.values(), [1, 0, 1], "P1 = P2 = {value}");
    }
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

fn hostile_text() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hostile_text.json"
    ))
    .expect("fixture")
}

/// What `hostile_text.json` holds (its `.md` lists every entry): each bad
/// entry counted under its own reason.
const HOSTILE_TEXT_REJECTIONS: [(Rejection, u64); 6] = [
    (Rejection::TimestampOutOfRange, 4),
    (Rejection::BadCountry, 6),
    (Rejection::BadLatitude, 6),
    (Rejection::BadLongitude, 3),
    (Rejection::BadAltitude, 3),
    (Rejection::BadSensorType, 6),
];

#[test]
fn hostile_text_is_rejected_by_reason_and_good_rows_are_kept() {
    let now = Timestamp::parse_feed("2024-03-02 00:00:00").unwrap();
    let mut readings = Vec::new();
    let stats = parse_feed_at(&hostile_text(), now, |r| readings.extend(r.ok())).unwrap();
    assert_eq!(stats.entries, 35);
    assert_eq!(stats.accepted, 7);
    for (why, n) in HOSTILE_TEXT_REJECTIONS {
        assert_eq!(stats.rejected(why), n, "{why}");
    }
    assert_eq!(stats.rejected_total(), 28);

    let ids: Vec<u64> = readings.iter().filter_map(|r| r.id).collect();
    assert_eq!(ids, (1001..=1007).collect::<Vec<_>>());
    let countries: Vec<&str> = readings.iter().map(|r| r.loc_country.as_str()).collect();
    assert_eq!(countries, ["DE", "UK", "XK", "BIH", "AU", "NL", "SE"]);
    // Text as sent, numbers included; an absent or null altitude is empty.
    let coords: Vec<(&str, &str, &str)> = readings
        .iter()
        .map(|r| (r.loc_lat.as_str(), r.loc_long.as_str(), r.loc_alt.as_str()))
        .collect();
    assert_eq!(
        coords,
        [
            ("52.5200", "13.4050", "34.0"),
            ("51.5074", "-0.1278", ""),
            ("42.6629", "21.1655", "652"),
            ("90.0000", "180", "-12.5"),
            ("-33.8688", "151.2093", ""),
            ("-90", "-180", ""),
            ("59.3293", "18.0686", "28"),
        ]
    );
    let first = readings.iter().map(|r| r.timestamp).min().unwrap();
    let last = readings.iter().map(|r| r.timestamp).max().unwrap();
    assert_eq!(first.to_string(), "2015-01-01 00:00:00");
    assert_eq!(last.to_string(), "2024-03-01 10:00:06");

    // What is stored renders as before: no cell needs a guard.
    let csv = to_csv(&readings).unwrap();
    let mut rdr = csv::Reader::from_reader(csv.as_slice());
    for rec in rdr.records() {
        assert!(rec.unwrap().iter().all(|cell| !is_formula(cell.as_bytes())));
    }
}

#[test]
fn the_clock_is_the_callers() {
    // The same feed read at two ingestion times: the fixture's good rows are
    // from 2024-03-01, so an ingestion in 2023 finds them in the future.
    let doc = hostile_text();
    let early = Timestamp::parse_feed("2023-01-01 00:00:00").unwrap();
    let stats = parse_feed_at(&doc, early, |_| {}).unwrap();
    assert_eq!(stats.accepted, 1, "only the 2015 row");
    // The 4 out of range anyway, the 6 good ones and the 24 bad-text ones
    // (all of 2024-03-01): the timestamp is checked first.
    assert_eq!(stats.rejected(Rejection::TimestampOutOfRange), 4 + 6 + 24);
    // Without a time given, the clock is read once, now.
    assert_eq!(parse_feed(&doc, |_| {}).unwrap().accepted, 7);

    let at =
        |ts: &str| entry(r#"{"value":"5","value_type":"P1"}"#).replace("2024-01-01T10:00:00", ts);
    let now = Timestamp::parse_feed("2024-01-01 12:00:00").unwrap();
    assert!(parse_entry_at(&at("2024-01-02 12:00:00"), now).is_ok());
    assert_eq!(
        parse_entry_at(&at("2024-01-02 12:00:01"), now).unwrap_err(),
        Rejection::TimestampOutOfRange
    );
    assert_eq!(
        parse_entry_at(&at("2024-13-01 00:00:00"), now).unwrap_err(),
        Rejection::BadTimestamp,
        "a date that does not exist is still a bad timestamp"
    );
}

#[test]
fn the_real_samples_lose_nothing_to_the_text_rules() {
    // Every sensor type, country code, coordinate and altitude of both
    // shipped feeds passes: the counts above are the rails and the
    // non-particulate sensors only.
    let (stats, readings) = parse_all(&sample());
    assert_eq!(stats.unwrap().rejected_total(), 17);
    let mut types: Vec<&str> = readings.iter().map(|r| r.sensor_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(
        types,
        ["HPM", "PMS3003", "PMS5003", "PMS7003", "PPD42NS", "SDS011", "SDS021"]
    );
    let (stats, _) = parse_all(&fragment());
    let stats = stats.unwrap();
    assert_eq!(
        stats.rejected_total(),
        stats.rejected(Rejection::NoParticulates)
    );
}

/// Station air on the shipped 2019 fragment, counted by hand from its
/// entries: 101 DHT22 (humidity and temperature), one BMP180 and one
/// BMP280 (temperature and pressure, no humidity) at 102 locations; 63 of
/// the 140 SDS011 readings share their location with one of them, and
/// each of those 63 stations has a DHT22, so all 63 get a humidity. Only
/// location 6932 has two (DHT22 13721: 29.20 %, 24.30 °C; BMP180 15079:
/// 23.50 °C), both at 14:22:53: the humidity's sensor gives both values.
#[test]
fn station_air_on_the_v1_fragment() {
    use airq_core::air::Stations;
    use airq_core::feed::parse_feed_with_air_at;
    use airq_core::Resolution;
    let now = Timestamp::parse_feed("2019-04-16 14:30:00").expect("a time");
    let (mut readings, mut stations) = (Vec::new(), Stations::default());
    let stats = parse_feed_with_air_at(
        &fragment(),
        now,
        |r| readings.extend(r.ok()),
        |m| stations.add(m),
    )
    .expect("parses");
    assert_eq!(
        stats.rejected(Rejection::NoParticulates),
        103,
        "counted as before"
    );
    assert_eq!(stations.len(), 103);
    let step = Resolution::FiveMin.step();
    let matched: Vec<_> = readings
        .iter()
        .filter_map(|r| Some((r, stations.air_at(r.loc_id?, r.timestamp, step)?)))
        .collect();
    assert_eq!(readings.len(), 140);
    assert_eq!(matched.len(), 63);
    assert!(matched.iter().all(|(_, a)| a.humidity.is_some()));
    let (_, two) = matched
        .iter()
        .find(|(r, _)| r.loc_id == Some(6932))
        .expect("location 6932");
    assert_eq!(two.humidity.as_deref(), Some("29.20"));
    assert_eq!(two.temperature.as_deref(), Some("24.30"));
    // The first entry of the file: DHT22 468 at location 220, 64.20 % and
    // 21.70 °C.
    let at_220 = stations
        .air_at(
            220,
            Timestamp::parse_feed("2019-04-16 14:22:52").expect("a time"),
            step,
        )
        .expect("location 220");
    assert_eq!(at_220.humidity.as_deref(), Some("64.20"));
    assert_eq!(at_220.temperature.as_deref(), Some("21.70"));
}

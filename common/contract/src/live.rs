//! The live tier's contract: 5-minute readings in, the hourly series out,
//! with each index on its standard's window. Every expected value below is
//! worked out by hand from the definitions in `airq_core::hourly` (written
//! beside each), never by calling the code under test.

use airq_core::export::render;
use airq_core::query::{LatestQuery, Query, QueryLimits};
use airq_core::reading::{Reading, Timestamp};
use airq_core::store::{ReadingStore, Written};
use airq_core::{Index, Indices, Resolution};

const DAY: &str = "2026-12-01";

fn at(hour: u32, minute: u32) -> Timestamp {
    Timestamp::parse_feed(&format!("{DAY} {hour:02}:{minute:02}:00")).expect("a time")
}

/// A 5-minute reading of `sensor` in Berlin.
fn five_min(sensor: u64, t: Timestamp, p1: Option<&str>, p2: Option<&str>) -> Reading {
    Reading {
        id: Some(sensor * 1_000_000 + t.0 as u64 % 1_000_000),
        timestamp: t,
        sensor_id: sensor,
        sensor_type: "SDS011".into(),
        loc_id: Some(sensor + 100),
        loc_country: "DE".into(),
        loc_lat: "52.520".into(),
        loc_long: "13.405".into(),
        loc_alt: "34".into(),
        p1: p1.map(str::to_owned),
        p2: p2.map(str::to_owned),
        // What the feed parser computes for a single value; the live tier
        // replaces it with the hour's.
        indices: Indices::lowest(),
        samples: None,
        basis: None,
        flags: Default::default(),
        air: Default::default(),
    }
}

/// `n` readings of `sensor` in `hour`, 5 minutes apart from :00.
fn hour_of(sensor: u64, hour: u32, n: u32, p1: Option<&str>, p2: Option<&str>) -> Vec<Reading> {
    (0..n)
        .map(|k| five_min(sensor, at(hour, 5 * k), p1, p2))
        .collect()
}

/// `r` at a site (country, latitude, longitude) with the flags and the
/// air (humidity, temperature; empty text for none) ingestion found.
fn assessed(
    mut r: Reading,
    (country, lat, long): (&str, &str, &str),
    flags: &[airq_core::quality::Flag],
    air: (&str, &str),
) -> Reading {
    r.loc_country = country.into();
    r.loc_lat = lat.into();
    r.loc_long = long.into();
    r.flags = airq_core::quality::Flags::of(flags);
    let text = |t: &str| (!t.is_empty()).then(|| t.to_owned());
    r.air = airq_core::air::Air {
        humidity: text(air.0),
        temperature: text(air.1),
    };
    r
}

fn query(json: &str) -> Query {
    Query::from_json(json.as_bytes(), &QueryLimits::default()).expect("a valid query")
}

async fn answer(store: &dyn ReadingStore, json: &str) -> String {
    let q = query(json);
    let (bytes, _) = render(store.query_answer(&q), 1 << 24)
        .await
        .expect("an answer");
    String::from_utf8(bytes).expect("UTF-8")
}

/// CSV lines after the header.
async fn rows(store: &dyn ReadingStore, json: &str) -> Vec<String> {
    answer(store, json)
        .await
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

const SITE: &str = "SDS011,,DE,52.520,13.405,34";

fn site(sensor: u64) -> String {
    SITE.replacen(",,", &format!(",{},", sensor + 100), 1)
}

/// Every check, on an empty store.
pub async fn run_all(store: &dyn ReadingStore) {
    hourly_means_and_validity(store).await;
    indices_on_their_windows(store).await;
    invalid_and_late_hours(store).await;
    five_minute_readings_carry_their_hours_indices(store).await;
    retention_deletes_old_readings_only(store).await;
    five_minute_readings_keep_their_flags_and_air(store).await;
    hours_take_their_readings_flags_and_air(store).await;
    an_hour_is_at_its_newest_readings_site(store).await;
    latest_moves_within_a_country(store).await;
}

/// Sensor 1: one hour of 12 values and one value of the next hour.
async fn hourly_means_and_validity(store: &dyn ReadingStore) {
    let mut batch = hour_of(1, 10, 11, Some("20.00"), Some("10.00"));
    batch.push(five_min(1, at(10, 55), Some("20.00"), Some("10.06")));
    // 11:00:00 opens the next hour.
    batch.push(five_min(1, at(11, 0), None, Some("7.5")));
    let written = store.put_recent(batch.clone()).await.expect("put_recent");
    assert_eq!(
        written,
        Written {
            new: 13,
            replaced: 0,
            unchanged: 0
        }
    );
    let q = r#"{"startDate":"2026-12-01 10:00:00","endDate":"2026-12-01 11:59:59","resolution":"hour","sensorType":"SDS011","bbox":[13,52,14,53]}"#;
    // P2: (11 × 10.00 + 10.06) / 12 = 120.06 / 12 = 10.005 → 10.01 (half
    // up); P1 20.00. One hour of data: no NowCast (it needs 2 of the 3
    // recent hours) and no running mean (18 of 24): AQI and Range empty.
    // 11:00 holds one value: 7.50, samples 1.
    let s1 = site(1);
    assert_eq!(
        rows(store, q).await,
        vec![
            format!(",2026-12-01 10:00:00,1,{s1},20.00,10.01,,"),
            format!(",2026-12-01 11:00:00,1,{s1},,7.50,,"),
        ],
        "hourly means, CSV"
    );
    let ndjson = answer(store, &q.replace("}", r#","format":"ndjson"}"#)).await;
    let first = ndjson.lines().next().expect("a line");
    assert!(
        first.ends_with(
            r#""P1":20.00,"P2":10.01,"AQI":null,"Range":null,"samples":12,"nowcastPm25":null,"nowcastPm10":null,"meanPm25_24h":null,"meanPm10_24h":null}"#
        ),
        "NDJSON of an hour without indices: {first}"
    );

    // The same feed again: nothing new, nothing recomputed, same answer.
    let before = answer(store, q).await;
    let again = store.put_recent(batch).await.expect("put_recent again");
    assert_eq!(
        again,
        Written {
            new: 0,
            replaced: 0,
            unchanged: 13
        }
    );
    assert_eq!(
        answer(store, q).await,
        before,
        "a repeated feed changes nothing"
    );

    // A corrected value replaces the stored one and its hour follows:
    // 10:55 from 10.06 to 10.00 gives 12 × 10.00 → 10.00, still 12 values.
    let corrected = five_min(1, at(10, 55), Some("20.00"), Some("10.00"));
    let replaced = store.put_recent(vec![corrected]).await.expect("put_recent");
    assert_eq!(
        replaced,
        Written {
            new: 0,
            replaced: 1,
            unchanged: 0
        }
    );
    assert_eq!(
        rows(store, q).await[0],
        format!(",2026-12-01 10:00:00,1,{s1},20.00,10.00,,"),
        "the hour's mean follows a replaced value"
    );
    let samples = answer(store, &q.replace("}", r#","format":"ndjson"}"#)).await;
    assert!(samples.contains(r#""samples":12,"#), "{samples}");
}

/// Sensor 2: PM2.5 steady at 35.45 for 24 hours, no PM10.
async fn indices_on_their_windows(store: &dyn ReadingStore) {
    let mut batch = Vec::new();
    for hour in 0..24 {
        batch.extend(hour_of(2, hour, 12, None, Some("35.45")));
    }
    store.put_recent(batch).await.expect("put_recent");
    let day = |index: &str| {
        format!(
            r#"{{"startDate":"{DAY} 00:00:00","endDate":"{DAY} 23:59:59","resolution":"hour","country":"DE","index":"{index}","sensorType":"sds011"}}"#
        )
    };
    let only = |rows: Vec<String>| -> Vec<String> {
        rows.into_iter()
            .filter(|r| r.split(',').nth(2) == Some("2"))
            .collect()
    };
    let s2 = site(2);
    // US EPA: the NowCast of a steady 35.45 is 35.45, truncated to 35.4,
    // the top of 9.1–35.4 → 100, "Moderate". Hour 0 has one recent hour
    // of three: undefined. From hour 1 (hours 1 and 0 valid): 100.
    let epa = only(rows(store, &day("us-epa")).await);
    assert_eq!(epa.len(), 24);
    assert_eq!(epa[0], format!(",{DAY} 00:00:00,2,{s2},,35.45,,"));
    assert_eq!(
        epa[1],
        format!(",{DAY} 01:00:00,2,{s2},,35.45,100,Moderate")
    );
    assert_eq!(
        epa[23],
        format!(",{DAY} 23:00:00,2,{s2},,35.45,100,Moderate")
    );
    // DAQI: the 24-hour running mean needs 18 valid hours: from hour 17.
    // 35.45 rounds to 35 → 3, "Low".
    let daqi = only(rows(store, &day("daqi")).await);
    assert_eq!(daqi[16], format!(",{DAY} 16:00:00,2,{s2},,35.45,,"));
    assert_eq!(daqi[17], format!(",{DAY} 17:00:00,2,{s2},,35.45,3,Low"));
    // EAQI: 15 < 35.45 ≤ 50 → level 3, "Moderate"; same window.
    let eaqi = only(rows(store, &day("eaqi")).await);
    assert_eq!(eaqi[16], format!(",{DAY} 16:00:00,2,{s2},,35.45,,"));
    assert_eq!(
        eaqi[23],
        format!(",{DAY} 23:00:00,2,{s2},,35.45,3,Moderate")
    );

    // The concentrations the indices read, in NDJSON.
    let last = answer(
        store,
        &day("us-epa").replace(
            "}",
            r#","format":"ndjson","startDate":"2026-12-01 23:00:00"}"#,
        ),
    )
    .await;
    let line = last
        .lines()
        .find(|l| l.contains(r#""sensor_id":2,"#))
        .expect("sensor 2's last hour");
    assert!(
        line.ends_with(
            r#""AQI":100,"Range":"Moderate","samples":12,"nowcastPm25":35.4,"nowcastPm10":null,"meanPm25_24h":35.45,"meanPm10_24h":null}"#
        ),
        "{line}"
    );

    // A filter on the index keeps defined values only: US EPA 100 on
    // hours 1–23 of sensor 2 (sensor 1's hours are undefined).
    let filtered = rows(
        store,
        &day("us-epa").replace("}", r#","minAqi":100,"maxAqi":100}"#),
    )
    .await;
    assert_eq!(filtered.len(), 23, "{filtered:#?}");
    assert!(filtered.iter().all(|r| r.ends_with(",100,Moderate")));
}

/// Sensor 3: hours 0–2 valid at 12.00, hour 3 invalid (8 values), hour 4
/// missing, hour 5 valid; then hour 4 arrives late.
async fn invalid_and_late_hours(store: &dyn ReadingStore) {
    let mut batch = Vec::new();
    for hour in 0..3 {
        batch.extend(hour_of(3, hour, 12, None, Some("12.00")));
    }
    batch.extend(hour_of(3, 3, 8, None, Some("12.00")));
    batch.extend(hour_of(3, 5, 12, None, Some("12.00")));
    store.put_recent(batch).await.expect("put_recent");
    let q = format!(
        r#"{{"startDate":"{DAY} 00:00:00","endDate":"{DAY} 05:59:59","resolution":"hour","index":"us-epa","bbox":[13.4,52.5,13.5,52.6]}}"#
    );
    let sensor3 = |rows: Vec<String>| -> Vec<String> {
        rows.into_iter()
            .filter(|r| r.split(',').nth(2) == Some("3"))
            .map(|r| r.rsplit(',').take(2).collect::<Vec<_>>().join("|"))
            .collect()
    };
    // US EPA of a NowCast of 12.0: 51 + (100 − 51)(120 − 91)/(354 − 91)
    // = 51 + 1421/263 = 56.40… → 56, "Moderate".
    // Hour 3 (8 values) is invalid: its NowCast reads hours 2 and 1 (2 of
    // 3 recent valid) → 56. Hour 5: of 5, 4, 3 only 5 is valid → none.
    assert_eq!(
        sensor3(rows(store, &q).await),
        vec!["|", "Moderate|56", "Moderate|56", "Moderate|56", "|",],
        "hours 0, 1, 2, 3, 5"
    );
    // Hour 4 comes late: hour 5 now has 5 and 4 valid → 56.
    store
        .put_recent(hour_of(3, 4, 12, None, Some("12.00")))
        .await
        .expect("late hour");
    let got = sensor3(rows(store, &q).await);
    assert_eq!(got.len(), 6);
    assert_eq!(
        got[4], "Moderate|56",
        "the late hour itself: 4, 3?, 2 → 4 and 2"
    );
    assert_eq!(got[5], "Moderate|56", "the hour after it is recomputed");
}

/// The 5-minute series answers as sent, with the indices of its hour.
async fn five_minute_readings_carry_their_hours_indices(store: &dyn ReadingStore) {
    let q = format!(
        r#"{{"startDate":"{DAY} 23:50:00","endDate":"{DAY} 23:59:59","resolution":"5min","index":"us-epa","country":"DE"}}"#
    );
    let got = rows(store, &q).await;
    let s2 = site(2);
    // Sensor 2's readings at 23:50 and 23:55 (ids: sensor·10⁶ + ts mod 10⁶).
    let id = |m: u32| 2_000_000 + at(23, m).0 as u64 % 1_000_000;
    assert_eq!(
        got,
        vec![
            format!("{},{DAY} 23:50:00,2,{s2},,35.45,100,Moderate", id(50)),
            format!("{},{DAY} 23:55:00,2,{s2},,35.45,100,Moderate", id(55)),
        ]
    );
    // The latest reading of sensor 2 is its 23:55 one, with its hour's
    // indices, its series and its age at the request's time.
    let mut latest =
        LatestQuery::from_pairs([("country", "DE"), ("index", "us-epa"), ("format", "ndjson")])
            .expect("a latest query");
    latest.at = Some(Timestamp(at(23, 55).0 + 90));
    let (bytes, _) = render(store.latest_answer(&latest), 1 << 20)
        .await
        .expect("latest");
    let text = String::from_utf8(bytes).expect("UTF-8");
    let line = text
        .lines()
        .find(|l| l.contains(r#""sensor_id":2,"#))
        .expect("sensor 2");
    assert!(
        line.contains(r#""timestamp":"2026-12-01 23:55:00""#)
            && line.ends_with(
                r#""AQI":100,"Range":"Moderate","nowcastPm25":35.4,"nowcastPm10":null,"meanPm25_24h":35.45,"meanPm10_24h":null,"resolution":"5min","ageSeconds":90}"#
            ),
        "{line}"
    );
    assert_eq!(
        Resolution::FiveMin.max_span().as_secs(),
        2 * 86_400,
        "a 5min query spans 48 hours at most"
    );
    let long = Query::from_json(
        br#"{"startDate":"2026-12-01","endDate":"2026-12-03 00:00:01","resolution":"5min"}"#,
        &QueryLimits::default(),
    );
    assert!(long.is_err_and(|e| e.names("endDate")), "over 48 hours");
    let _ = Index::UsEpa;
}

async fn retention_deletes_old_readings_only(store: &dyn ReadingStore) {
    let five = |from: &str| {
        format!(
            r#"{{"startDate":"{from}","endDate":"{DAY} 23:59:59","resolution":"5min","country":"DE"}}"#
        )
    };
    let hours = format!(
        r#"{{"startDate":"{DAY} 00:00:00","endDate":"{DAY} 23:59:59","resolution":"hour","country":"DE"}}"#
    );
    let all_five = rows(store, &five(&format!("{DAY} 00:00:00"))).await.len();
    let kept = rows(store, &five(&format!("{DAY} 12:00:00"))).await.len();
    let hourly = rows(store, &hours).await;
    let deleted = store
        .prune(Resolution::FiveMin, at(12, 0))
        .await
        .expect("prune");
    assert_eq!(deleted as usize, all_five - kept, "everything before 12:00");
    assert_eq!(
        rows(store, &five(&format!("{DAY} 00:00:00"))).await.len(),
        kept
    );
    assert_eq!(rows(store, &hours).await, hourly, "the hourly series stays");
    let deleted = store
        .prune(Resolution::Hour, at(1, 0))
        .await
        .expect("prune");
    // Sensor 2's and 3's hour 0.
    assert_eq!(deleted, 2);
    assert_eq!(
        store
            .prune(Resolution::Day, at(23, 0))
            .await
            .expect("prune"),
        0,
        "the daily series is never pruned"
    );
}

/// Sensors 7 and 8 in Vienna (country AT, apart from the others), at
/// 13:00 and 13:05: 5-minute readings keep the flags and air they were
/// stored with (issue 28), a `quality` query of the series filters on
/// them, and a reading sent again with other flags replaces the stored
/// one. Their hour holds 2 of its 12 values: invalid, so no NowCast, and
/// `AQI` and `Range` are empty.
async fn five_minute_readings_keep_their_flags_and_air(store: &dyn ReadingStore) {
    use airq_core::quality::{Flag, Flags};
    let vienna = |sensor: u64, minute: u32, p1: &str, flags: &[Flag], air: (&str, &str)| {
        let r = five_min(sensor, at(13, minute), Some(p1), Some("5.00"));
        assessed(r, ("AT", "48.208", "16.373"), flags, air)
    };
    let humid = vienna(7, 0, "10.00", &[Flag::Humid], ("96.50", "-1.20"));
    let clean = vienna(7, 5, "11.00", &[], ("80.00", "2.00"));
    let stuck = vienna(8, 0, "12.00", &[Flag::NoHumidity, Flag::Stuck], ("", ""));
    let written = store
        .put_recent(vec![humid.clone(), clean, stuck])
        .await
        .expect("put_recent");
    assert_eq!(written.new, 3);
    let q = |quality: &str, format: &str| {
        format!(
            r#"{{"startDate":"{DAY} 13:00:00","endDate":"{DAY} 13:59:59","resolution":"5min","country":"AT","quality":{quality},"format":"{format}"}}"#
        )
    };
    let id = |sensor: u64, m: u32| sensor * 1_000_000 + at(13, m).0 as u64 % 1_000_000;
    let site = |sensor: u64| format!("SDS011,{},AT,48.208,16.373,34", sensor + 100);
    // Ordered by time, then sensor; the flags column last, names in
    // `Flag::ALL`'s order.
    assert_eq!(
        rows(store, &q(r#""all""#, "csv")).await,
        vec![
            format!(
                "{},{DAY} 13:00:00,7,{},10.00,5.00,,,humid",
                id(7, 0),
                site(7)
            ),
            format!(
                "{},{DAY} 13:00:00,8,{},12.00,5.00,,,no_humidity stuck",
                id(8, 0),
                site(8)
            ),
            format!("{},{DAY} 13:05:00,7,{},11.00,5.00,,,", id(7, 5), site(7)),
        ]
    );
    assert_eq!(
        rows(store, &q(r#"["humid"]"#, "csv")).await.len(),
        2,
        "sensor 8's and the clean one"
    );
    let ndjson = answer(store, &q(r#""all""#, "ndjson")).await;
    let first = ndjson.lines().next().expect("a line");
    assert!(
        first.contains(r#""flags":["humid"],"humidity":96.50,"temperature":-1.20"#),
        "{first}"
    );
    // Sent again without its flag: replaced, and now without a flag.
    let mut unflagged = humid;
    unflagged.flags = Flags::NONE;
    let again = store.put_recent(vec![unflagged]).await.expect("put_recent");
    assert_eq!(
        again,
        Written {
            new: 0,
            replaced: 1,
            unchanged: 0
        }
    );
    let kept = rows(store, &q(r#""no-flags""#, "csv")).await;
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept[0].starts_with(&format!("{},", id(7, 0))), "{kept:?}");

    // What a quality survey reads of the series before a feed: what a
    // query of the range gives, as far as a survey reads it.
    use futures::TryStreamExt as _;
    let surveyed = |r: Reading| (r.sensor_id, r.timestamp, r.p1, r.p2, r.loc_lat, r.loc_long);
    let (from, to) = (at(13, 0), at(13, 59));
    let mut history: Vec<_> = store
        .history(Resolution::FiveMin, from, to)
        .map_ok(surveyed)
        .try_collect()
        .await
        .expect("the history");
    let mut all = Query::between(from, to);
    all.resolution = Resolution::FiveMin;
    let mut queried: Vec<_> = store
        .query(&all)
        .map_ok(surveyed)
        .try_collect()
        .await
        .expect("the query");
    history.sort();
    queried.sort();
    let vienna_readings = history.iter().filter(|h| h.0 == 7 || h.0 == 8).count();
    assert_eq!(
        vienna_readings, 3,
        "sensors 7 and 8 (beside the others' hour)"
    );
    assert_eq!(history, queried);
}

/// Sensors 30–32 in Warsaw, hour 17: each hour's flags and air from its
/// 5-minute readings (`airq_core::quality`'s rules for an hour): `indoor`,
/// `stuck`, `moved` and `outlier` when any reading carries it;
/// `pm25_above_pm10` on the means; `humid` and `no_humidity` on the mean
/// of the readings' humidities, which with their temperatures' is the
/// hour's air. A replaced reading's flags and air are taken back.
async fn hours_take_their_readings_flags_and_air(store: &dyn ReadingStore) {
    use airq_core::air::Air;
    use airq_core::quality::{Flag, Flags};
    let warsaw = |sensor: u64, minute: u32, p: (&str, &str), flags: &[Flag], air: (&str, &str)| {
        let r = five_min(sensor, at(17, minute), Some(p.0), Some(p.1));
        assessed(r, ("PL", "52.230", "21.011"), flags, air)
    };
    let p = ("20.00", "10.00");
    let first = warsaw(30, 0, p, &[Flag::Indoor, Flag::Humid], ("96.00", "10.00"));
    let second = warsaw(30, 5, p, &[Flag::Indoor], ("94.00", "-2.00"));
    let third = warsaw(30, 10, p, &[Flag::Stuck, Flag::NoHumidity], ("", ""));
    // Each P2 of sensor 31 above its P1 once; the means are not.
    let dry = [
        warsaw(
            31,
            0,
            ("5.00", "8.00"),
            &[Flag::Pm25AbovePm10, Flag::NoHumidity],
            ("", ""),
        ),
        warsaw(
            31,
            5,
            ("9.00", "6.00"),
            &[Flag::NoHumidity, Flag::Outlier],
            ("", ""),
        ),
    ];
    let clean = warsaw(
        32,
        0,
        ("3.00", "4.00"),
        &[Flag::Pm25AbovePm10],
        ("50.00", ""),
    );
    let mut batch = vec![first.clone(), second.clone(), third];
    batch.extend(dry);
    batch.push(clean);
    store.put_recent(batch).await.expect("put_recent");
    let q = |quality: &str, format: &str| {
        format!(
            r#"{{"startDate":"{DAY} 17:00:00","endDate":"{DAY} 17:59:59","resolution":"hour","country":"PL","quality":{quality},"format":"{format}"}}"#
        )
    };
    let site = |sensor: u64| format!("SDS011,{},PL,52.230,21.011,34", sensor + 100);
    let row = |sensor: u64, means: &str, flags: &str| {
        format!(
            ",{DAY} 17:00:00,{sensor},{},{means},,,{flags}",
            site(sensor)
        )
    };
    // 30: indoor (twice) and stuck (once) inherited; humidity (96.00 +
    // 94.00) / 2 = 95.00, at least 95: humid; temperature (10.00 − 2.00)
    // / 2 = 4.00. 31: P1 (5 + 9) / 2 = 7.00 ≥ P2 (8 + 6) / 2 = 7.00, so
    // not pm25_above_pm10; outlier inherited; no humidity. 32: P2 4.00
    // above P1 3.00 on its one-value means; humidity 50.00.
    assert_eq!(
        rows(store, &q(r#""all""#, "csv")).await,
        vec![
            row(30, "20.00,10.00", "indoor humid stuck"),
            row(31, "7.00,7.00", "no_humidity outlier"),
            row(32, "3.00,4.00", "pm25_above_pm10"),
        ],
        "the hours' flags"
    );
    let ndjson = answer(store, &q(r#""all""#, "ndjson")).await;
    let lines: Vec<&str> = ndjson.lines().collect();
    assert_eq!(lines.len(), 3, "{ndjson}");
    for (line, air) in lines.iter().zip([
        r#""humidity":95.00,"temperature":4.00"#,
        r#""humidity":null,"temperature":null"#,
        r#""humidity":50.00,"temperature":null"#,
    ]) {
        assert!(line.contains(air), "{air} in {line}");
    }
    assert!(
        lines[0].contains(r#""flags":["indoor","humid","stuck"]"#),
        "{}",
        lines[0]
    );
    // The filter reads the hours' flags: without `stuck`, 31 and 32;
    // `no-flags`, none.
    let kept = rows(store, &q(r#"["stuck"]"#, "csv")).await;
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(
        kept[0].contains(",31,") && kept[1].contains(",32,"),
        "{kept:?}"
    );
    assert!(rows(store, &q(r#""no-flags""#, "csv")).await.is_empty());

    // 30's first reading sent again, outdoors and drier: humidity
    // (90.00 + 94.00) / 2 = 92.00, not humid; still indoor (the second);
    // temperature (10.00 − 2.00) / 2 = 4.00. Then the second, outdoors
    // with no air: humidity 90.00, temperature 10.00, stuck only.
    let mut outdoors = first;
    outdoors.flags = Flags::NONE;
    outdoors.air.humidity = Some("90.00".into());
    let mut second = second;
    second.flags = Flags::NONE;
    second.air = Air::default();
    for (again, flags, air) in [
        (
            outdoors,
            "indoor stuck",
            r#""humidity":92.00,"temperature":4.00"#,
        ),
        (second, "stuck", r#""humidity":90.00,"temperature":10.00"#),
    ] {
        store.put_recent(vec![again]).await.expect("put_recent");
        let hours = rows(store, &q(r#""all""#, "csv")).await;
        let hour_30 = hours.into_iter().find(|r| r.contains(",30,"));
        assert_eq!(hour_30, Some(row(30, "20.00,10.00", flags)));
        let ndjson = answer(store, &q(r#""all""#, "ndjson")).await;
        assert!(ndjson.contains(air), "{air} in {ndjson}");
    }
    // An aggregate of the hours counts what the filter left out: 30's
    // hour, stuck.
    let by_country = q(r#"["stuck"]"#, "ndjson").replace(
        r#","format""#,
        r#","aggregate":{"period":"hour","by":"country"},"format""#,
    );
    let aggregate = answer(store, &by_country).await;
    assert_eq!(aggregate.lines().count(), 1, "{aggregate}");
    assert!(
        aggregate.contains(r#""removed":1,"removed_stuck":1"#),
        "{aggregate}"
    );
}

/// Sensor 9 moves from Vienna to Prague within hour 15, one feed at a
/// time: its hour is at the site of its newest reading, whatever order
/// they come in, and a query by country or by box finds it there only.
/// Means by hand, each hour holding fewer than 9 values (so no index):
/// P1 (10 + 20) / 2 = 15.00, P2 (4 + 6) / 2 = 5.00; with the late 15:00,
/// (10 + 20 + 30) / 3 = 20.00 and (4 + 6 + 8) / 3 = 6.00; with 15:15,
/// 100 / 4 = 25.00 and 20 / 4 = 5.00; with the late 15:12, 150 / 5 =
/// 30.00 and 25 / 5 = 5.00. Its `latest` reading moves with it (a moved
/// sensor's is rewritten whole) and a late one never replaces it.
async fn an_hour_is_at_its_newest_readings_site(store: &dyn ReadingStore) {
    let vienna = |minute: u32, p1: &str, p2: &str| {
        let mut r = five_min(9, at(15, minute), Some(p1), Some(p2));
        r.loc_country = "AT".into();
        r.loc_lat = "48.208".into();
        r.loc_long = "16.373".into();
        r
    };
    let prague = |minute: u32, p1: &str, p2: &str| {
        let mut r = five_min(9, at(15, minute), Some(p1), Some(p2));
        r.loc_country = "CZ".into();
        r.loc_lat = "50.075".into();
        r.loc_long = "14.437".into();
        r
    };
    let hour = |place: &str| {
        format!(
            r#"{{"startDate":"{DAY} 15:00:00","endDate":"{DAY} 15:59:59","resolution":"hour",{place}}}"#
        )
    };
    let in_prague = |p1: &str, p2: &str| {
        vec![format!(
            ",{DAY} 15:00:00,9,SDS011,109,CZ,50.075,14.437,34,{p1},{p2},,"
        )]
    };
    let check = |p1: &'static str, p2: &'static str, newest: u32| async move {
        for (places, expected) in [
            (
                [r#""country":"CZ""#, r#""bbox":[14,50,15,51]"#],
                in_prague(p1, p2),
            ),
            ([r#""country":"AT""#, r#""bbox":[16,48,17,49]"#], Vec::new()),
        ] {
            for place in places {
                assert_eq!(rows(store, &hour(place)).await, expected, "{place}");
            }
        }
        // Its latest reading is its newest, in Prague, found there only.
        let stamp = format!(r#""timestamp":"{DAY} 15:{newest:02}:00""#);
        let in_prague = [stamp.as_str(), r#""loc_country":"CZ""#];
        for place in [("country", "CZ"), ("bbox", "14,50,15,51")] {
            assert_latest(store, place, 9, Some(&in_prague)).await;
        }
        for place in [("country", "AT"), ("bbox", "16,48,17,49")] {
            assert_latest(store, place, 9, None).await;
        }
    };
    for batch in [vienna(5, "10.00", "4.00"), prague(10, "20.00", "6.00")] {
        store.put_recent(vec![batch]).await.expect("put_recent");
    }
    check("15.00", "5.00", 10).await;
    // Late and older than the newest: the hour stays in Prague.
    store
        .put_recent(vec![vienna(0, "30.00", "8.00")])
        .await
        .expect("put_recent");
    check("20.00", "6.00", 10).await;
    // Newer, at the site the hour is already at.
    store
        .put_recent(vec![prague(15, "40.00", "2.00")])
        .await
        .expect("put_recent");
    check("25.00", "5.00", 15).await;
    // Late again, after 15:15 (which the hour now knows as its newest):
    // the hour stays in Prague.
    store
        .put_recent(vec![vienna(12, "50.00", "5.00")])
        .await
        .expect("put_recent");
    check("30.00", "5.00", 15).await;
}

/// Checks a sensor's line in the NDJSON `latest` answer for a place: it
/// holds every one of `parts`, or (`None`) the sensor is not in the answer.
async fn assert_latest(
    store: &dyn ReadingStore,
    place: (&str, &str),
    sensor: u64,
    parts: Option<&[&str]>,
) {
    let query = LatestQuery::from_pairs([place, ("format", "ndjson")]).expect("a latest query");
    let (bytes, _) = render(store.latest_answer(&query), 1 << 20)
        .await
        .expect("latest");
    let text = String::from_utf8(bytes).expect("UTF-8");
    let key = format!(r#""sensor_id":{sensor},"#);
    let line = text.lines().find(|l| l.contains(&key));
    match parts {
        Some(parts) => assert!(
            line.is_some_and(|l| parts.iter().all(|p| l.contains(p))),
            "latest of sensor {sensor} by {place:?}: {line:?}, expected {parts:?}"
        ),
        None => assert_eq!(line, None, "latest of sensor {sensor} by {place:?}"),
    }
}

/// Sensor 12's `latest` at the same site and after a move within its
/// country (same country, another cell): a late reading at the site of
/// the latest does not replace it, and a newer one from another cell
/// moves it there.
async fn latest_moves_within_a_country(store: &dyn ReadingStore) {
    let reading = |minute: u32, p1: &str, (lat, long): (&str, &str)| {
        let mut r = five_min(12, at(16, minute), Some(p1), Some("5.00"));
        r.loc_country = "CZ".into();
        r.loc_lat = lat.into();
        r.loc_long = long.into();
        r
    };
    let (prague, brno) = (("50.075", "14.437"), ("49.195", "16.608"));
    let (in_prague, in_brno) = (("bbox", "14,50,15,51"), ("bbox", "16,49,17,50"));
    // The reading at `minute` with its P1, as NDJSON writes them.
    let check = |place: (&'static str, &'static str), expected: Option<(u32, &'static str)>| async move {
        match expected {
            Some((minute, p1)) => {
                let stamp = format!(r#""timestamp":"{DAY} 16:{minute:02}:00","sensor_id":12,"#);
                let value = format!(r#""P1":{p1},"#);
                assert_latest(store, place, 12, Some(&[&stamp, &value])).await;
            }
            None => assert_latest(store, place, 12, None).await,
        }
    };
    store
        .put_recent(vec![reading(20, "30.00", prague)])
        .await
        .expect("put_recent");
    check(in_prague, Some((20, "30.00"))).await;
    // Late, at the same site: the latest stays.
    store
        .put_recent(vec![reading(5, "10.00", prague)])
        .await
        .expect("put_recent");
    check(in_prague, Some((20, "30.00"))).await;
    // Newer, from another cell of the same country: the latest moves.
    store
        .put_recent(vec![reading(25, "40.00", brno)])
        .await
        .expect("put_recent");
    check(in_brno, Some((25, "40.00"))).await;
    check(("country", "CZ"), Some((25, "40.00"))).await;
    check(in_prague, None).await;
}

/// Answers from a store's answer segments (see
/// [`ReadingStore::refresh_segments`]) are the bytes `rows` (the same
/// data, read from its rows) gives, for the hourly series and the daily
/// one, lists and aggregates, every format and index, with and without a
/// country, sensor types and index bounds: after a refresh, after writes
/// that make days stale (an hour added, a value corrected, which moves
/// the next hours' indices too), and after the next refresh. `store` and
/// `rows` share their data (for a store without segments, pass it twice).
pub async fn segments_answer_as_rows(store: &dyn ReadingStore, rows: &dyn ReadingStore) {
    // Six sensors in two countries, 5-minute readings from 2026-11-20
    // 20:00 to 2026-11-21 03:55 UTC: the hours cross midnight.
    let start = Timestamp::parse_feed("2026-11-20 20:00:00").expect("a time");
    let reading = |sensor: u64, k: i64, p1: String, p2: String| {
        let mut r = five_min(sensor, Timestamp(start.0 + 300 * k), Some(&p1), Some(&p2));
        if sensor.is_multiple_of(2) {
            r.loc_country = "NL".into();
            r.sensor_type = "PMS7003".into();
            r.loc_lat = "52.370".into();
            r.loc_long = "4.900".into();
        }
        // One of the DE sensors 8 km from the others (a place's edge).
        if sensor == 8_300_005 {
            r.loc_lat = "52.592".into();
        }
        r
    };
    let mut batch = Vec::new();
    for sensor in 8_300_001..=8_300_006u64 {
        for k in 0..96i64 {
            // A gap of an hour for one sensor (its NowCast needs 2 of 3).
            if sensor == 8_300_003 && (36..48).contains(&k) {
                continue;
            }
            let v = (sensor as i64 * 7 + k * 13) % 90 + 3;
            batch.push(reading(
                sensor,
                k,
                format!("{}.{}", v + 10, k % 10),
                format!("{v}.5"),
            ));
        }
    }
    store.put_recent(batch).await.expect("put_recent");
    store
        .put_batch(crate::aggregate::readings())
        .await
        .expect("put_batch of daily readings");
    let lists = [
        r#""startDate":"2026-11-20 00:00:00","endDate":"2026-11-21 23:59:59","resolution":"hour""#,
        r#""startDate":"2026-11-20 21:30:00","endDate":"2026-11-21 02:10:00","resolution":"hour","country":"DE""#,
        r#""startDate":"2026-11-20 00:00:00","endDate":"2026-11-21 23:59:59","resolution":"hour","sensorType":"PMS7003","minAqi":2,"maxAqi":6"#,
        r#""startDate":"2023-12-20","endDate":"2024-01-12""#,
        r#""startDate":"2023-12-20","endDate":"2024-01-12","country":"DE","index":"eaqi""#,
        // Places: a circle holding two of the three DE sensors, a box
        // holding the NL ones (few cells: the stores may read those by
        // cell), a circle of 35 cells holding two and a box of too many
        // cells to list (read from segments where a store has them), and
        // one on the daily series.
        r#""startDate":"2026-11-20 00:00:00","endDate":"2026-11-21 23:59:59","resolution":"hour","near":{"lat":52.52,"lon":13.405,"radiusKm":5}"#,
        r#""startDate":"2026-11-20 22:00:00","endDate":"2026-11-21 03:59:59","resolution":"hour","bbox":[4.8,52.3,5.0,52.4],"minAqi":2"#,
        r#""startDate":"2026-11-20 00:00:00","endDate":"2026-11-21 23:59:59","resolution":"hour","bbox":[-20,30,40,70],"country":"DE""#,
        r#""startDate":"2026-11-20 18:00:00","endDate":"2026-11-21 23:59:59","resolution":"hour","near":{"lat":52.115,"lon":13.405,"radiusKm":50}"#,
        r#""startDate":"2023-12-20","endDate":"2024-01-12","near":{"lat":48.137,"lon":11.575,"radiusKm":10}"#,
    ];
    let aggregates = [
        r#""startDate":"2026-11-20 00:00:00","endDate":"2026-11-21 23:59:59","resolution":"hour","aggregate":{"period":"hour","by":"country"}"#,
        r#""startDate":"2026-11-20 00:00:00","endDate":"2026-11-21 23:59:59","resolution":"hour","aggregate":{"period":"day","by":"sensor"}"#,
        r#""startDate":"2023-12-01","endDate":"2024-01-31","aggregate":{"period":"month","by":"cell"}"#,
        r#""startDate":"2023-12-01","endDate":"2024-01-31","aggregate":{"period":"day","by":"all"},"index":"us-epa""#,
        r#""startDate":"2026-11-20 00:00:00","endDate":"2026-11-21 23:59:59","resolution":"hour","aggregate":{"period":"hour","by":"all"},"near":{"lat":52.52,"lon":13.405,"radiusKm":5}"#,
    ];
    let check = |when: &'static str| async move {
        let mut answered = 0;
        for fields in lists.iter().chain(&aggregates) {
            for format in airq_core::Format::ALL {
                for index in Index::ALL {
                    let json = format!(
                        r#"{{{fields},"format":"{}","index":"{}"}}"#,
                        format.name(),
                        index.name()
                    );
                    let q = query(&json);
                    let got = render(store.query_answer(&q), 1 << 24)
                        .await
                        .expect("answer");
                    let want = render(rows.query_answer(&q), 1 << 24).await.expect("rows");
                    assert!(
                        got == want,
                        "{when}: the answer from segments differs from the rows' for {json}:\n{}\n---\n{}",
                        String::from_utf8_lossy(&got.0),
                        String::from_utf8_lossy(&want.0)
                    );
                    answered += usize::from(want.1 > 0);
                }
            }
        }
        assert!(answered > 60, "{when}: most queries have rows ({answered})");
    };
    store.refresh_segments().await.expect("refresh");
    check("after a refresh").await;
    // An hour added on the second day, a value corrected on the first.
    let mut later = Vec::new();
    for sensor in 8_300_001..=8_300_006u64 {
        for k in 96..108i64 {
            later.push(reading(sensor, k, "55.5".into(), "44.4".into()));
        }
    }
    later.push(reading(8_300_002, 40, "150.0".into(), "140.0".into()));
    store
        .put_recent(later)
        .await
        .expect("put_recent of the changes");
    check("after writes").await;
    store.refresh_segments().await.expect("refresh again");
    check("after the next refresh").await;
    // Retention cuts the second day at 01:00: the first day goes whole.
    let cut = Timestamp::parse_feed("2026-11-21 01:00:00").expect("a time");
    let pruned = store.prune(Resolution::Hour, cut).await.expect("prune");
    assert!(pruned > 0, "the prune deleted hours");
    check("after a prune").await;
    store
        .refresh_segments()
        .await
        .expect("refresh after the prune");
    check("after a prune and a refresh").await;
}

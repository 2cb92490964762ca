//! The reading store contract: what a store returns equals the reference
//! evaluation ([`Query::matches`], [`LatestQuery::matches`]) over what was
//! written, in store order, and every answer, in every format, is the
//! reference rows' answer byte for byte ([`to_answer`]).

use crate::generate;
use airq_core::aqi::{Index, Indices};
use airq_core::export::{gather, render, to_answer, Format};
use airq_core::gzip::PieceKey;
use airq_core::place::{Bbox, Near, Place};
use airq_core::query::{LatestQuery, Query};
use airq_core::reading::{Reading, Timestamp};
use airq_core::resolution::Resolution;
use airq_core::store::{ReadingStore, Written};
use futures::TryStreamExt;
use std::collections::BTreeMap;

/// What was written, one reading per identity `(timestamp, sensor id)`
/// (the last written wins), in store order.
fn stored(readings: &[Reading]) -> BTreeMap<(Timestamp, u64), &Reading> {
    let mut by_key = BTreeMap::new();
    for r in readings {
        by_key.insert((r.timestamp, r.sensor_id), r);
    }
    by_key
}

/// The reference answer: matching readings by (timestamp, sensor id), one
/// per identity (the last written wins).
pub fn reference(readings: &[Reading], query: &Query) -> Vec<Reading> {
    stored(readings)
        .into_values()
        .filter(|r| query.matches(r))
        .cloned()
        .collect()
}

/// The reference of `latest`: of what was written, each sensor's reading
/// with the greatest timestamp, those `latest` matches, by sensor id.
pub fn latest_reference(readings: &[Reading], latest: &LatestQuery) -> Vec<Reading> {
    let mut newest: BTreeMap<u64, &Reading> = BTreeMap::new();
    // In (timestamp, sensor) order, so a later entry of a sensor is newer.
    for r in stored(readings).into_values() {
        newest.insert(r.sensor_id, r);
    }
    newest
        .into_values()
        .filter(|r| latest.matches(r))
        .cloned()
        .collect()
}

pub async fn collect(store: &dyn ReadingStore, query: &Query) -> Vec<Reading> {
    store
        .query(query)
        .try_collect()
        .await
        .expect("query stream")
}

/// Where two answers first differ, with a little of each, for messages.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let around = |b: &[u8]| {
        let from = at.saturating_sub(60);
        String::from_utf8_lossy(&b[from..(at + 60).min(b.len())]).into_owned()
    };
    format!(
        "{} bytes against {}, first difference at byte {at}:\n got: {:?}\nwant: {:?}",
        got.len(),
        want.len(),
        around(got),
        around(want)
    )
}

/// The store answers `query` exactly as the reference does: the same
/// readings in the same order, and the answer in the query's format (and
/// index) byte for byte.
pub async fn matches_reference(store: &dyn ReadingStore, written: &[Reading], query: &Query) {
    let got = collect(store, query).await;
    let want = reference(written, query);
    assert_eq!(
        got.len(),
        want.len(),
        "row count differs from the reference for {}",
        query.to_json()
    );
    assert!(
        got == want,
        "rows differ from the reference for {}",
        query.to_json()
    );
    // The answer, on whichever path the store renders it, is the
    // reference rows' answer byte for byte.
    let (answer, rows) = render(store.query_answer(query), usize::MAX)
        .await
        .expect("answer");
    let want_answer = to_answer(&want, query.rendering()).expect("reference answer");
    assert_eq!(
        rows,
        want.len() as u64,
        "answer row count for {}",
        query.to_json()
    );
    assert!(
        answer == want_answer,
        "answer differs from the reference for {}: {}",
        query.to_json(),
        first_difference(&answer, &want_answer)
    );
}

/// What [`ReadingStore::put_batch`] of `batch` must report, worked out
/// from the port's rules on a model of what is stored (`stored`, updated):
/// per identity, the last one sent counts; new if absent, unchanged if
/// stored exactly so, replaced otherwise.
pub fn expected_written(
    stored: &mut std::collections::HashMap<(i64, u64), Reading>,
    batch: &[Reading],
) -> Written {
    let mut last = BTreeMap::new();
    for r in batch {
        last.insert((r.timestamp.0, r.sensor_id), r);
    }
    let mut want = Written::default();
    for (key, r) in last {
        match stored.insert(key, r.clone()) {
            None => want.new += 1,
            Some(had) if had == *r => want.unchanged += 1,
            Some(_) => want.replaced += 1,
        }
    }
    want
}

/// Writes `readings` twice and checks idempotency, what each write
/// reports, exact values and order.
pub async fn write_is_idempotent_and_exact(store: &dyn ReadingStore, readings: &[Reading]) {
    let mut model = std::collections::HashMap::new();
    for chunk in readings.chunks(1000) {
        let written = store.put_batch(chunk.to_vec()).await.expect("put_batch");
        assert_eq!(written, expected_written(&mut model, chunk), "first write");
    }
    for chunk in readings.chunks(700) {
        let written = store
            .put_batch(chunk.to_vec())
            .await
            .expect("put_batch again");
        assert_eq!(
            (written.new, written.replaced),
            (0, 0),
            "a repeated write is already stored"
        );
        assert_eq!(written, expected_written(&mut model, chunk), "second write");
    }
    // What the store holds now, in its order: the reference below.
    let readings: Vec<Reading> = model
        .into_iter()
        .collect::<BTreeMap<_, _>>()
        .into_values()
        .collect();
    let readings = &readings[..];
    let (first, last) = readings.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| {
        (lo.min(r.timestamp.0), hi.max(r.timestamp.0))
    });
    let all = Query::between(airq_core::Timestamp(first), airq_core::Timestamp(last));
    let got = collect(store, &all).await;
    assert_eq!(
        got,
        reference(readings, &all),
        "every reading once, exactly as written, in (time, sensor) order"
    );
    let summary = store.summary().await.expect("summary");
    assert_eq!(summary.first.map(|t| t.0), Some(first));
    assert_eq!(summary.last.map(|t| t.0), Some(last));
    let mut countries: Vec<_> = readings.iter().map(|r| r.loc_country.clone()).collect();
    countries.sort();
    countries.dedup();
    assert_eq!(summary.countries, countries);
}

/// On an empty store, writes three of `readings` (distinct identities),
/// then one batch that sends identities twice; checks what `put_batch`
/// reports against [`expected_written`] and what is stored after.
pub async fn repeated_identities_count_once(store: &dyn ReadingStore, readings: &[Reading]) {
    // One batch sending identities twice: a stored reading corrected and
    // then corrected again, a stored one sent as it is and then changed,
    // a changed one and then the stored values again, a new one twice.
    // Each counts once, as its last copy against what was stored before.
    let mut model = std::collections::HashMap::new();
    let stored: Vec<Reading> = readings
        .iter()
        .map(|r| ((r.timestamp.0, r.sensor_id), r.clone()))
        .collect::<BTreeMap<_, _>>()
        .into_values()
        .take(3)
        .collect();
    let first = store.put_batch(stored.clone()).await.expect("put_batch");
    assert_eq!(
        first,
        expected_written(&mut model, &stored),
        "the first write"
    );
    if let [a, b, c] = &stored[..] {
        let changed = |r: &Reading, p1: &str| {
            let mut r = r.clone();
            r.p1 = Some(p1.to_owned());
            r
        };
        let mut fresh = a.clone();
        fresh.sensor_id = u64::MAX / 2;
        let batch = vec![
            changed(a, "1.5"),
            changed(a, "2.5"),
            b.clone(),
            changed(b, "3.5"),
            changed(c, "4.5"),
            c.clone(),
            fresh.clone(),
            changed(&fresh, "5.5"),
        ];
        let want = expected_written(&mut model, &batch);
        assert_eq!(
            (want.new, want.replaced, want.unchanged),
            (1, 2, 1),
            "the model's own reading of the batch"
        );
        let written = store.put_batch(batch).await.expect("put_batch of repeats");
        assert_eq!(written, want, "a batch repeating identities");
        // What is stored is each identity's last copy.
        let all = Query::between(a.timestamp, c.timestamp.max(fresh.timestamp));
        assert_eq!(
            collect(store, &all).await,
            reference(&model.into_values().collect::<Vec<_>>(), &all)
        );
    } else {
        panic!("three distinct readings are needed");
    }
}

/// Writes generated readings (see [`generate::readings`]: values on every
/// breakpoint of the three indices, sensors in small clusters and spread
/// out, some exactly on the edges of circles and boxes, mixed-case sensor
/// types, several countries) and checks that the store answers like the
/// reference: first a query per edge circle and box, then `cases` drawn
/// queries (see [`generate::query`]: every index and format in turn,
/// bounds, bands, places small and large, sensor types, countries).
///
/// The readings are in 2021, so the store may hold other readings (the
/// shipped sample) as long as none is in [`generate::WINDOW_START`]'s two
/// days. About a thousand readings and `cases` + 6 queries: cheap enough
/// for an emulator. The seed is [`generate::seed`]; a failure names the
/// query.
pub async fn filters_match_reference(store: &dyn ReadingStore, cases: u32) {
    filters(store, cases, false).await;
}

/// [`filters_match_reference`] after [`ReadingStore::refresh_segments`]:
/// answers assembled from a store's answer segments, where it has them.
pub async fn filters_match_reference_from_segments(store: &dyn ReadingStore, cases: u32) {
    filters(store, cases, true).await;
}

async fn filters(store: &dyn ReadingStore, cases: u32, refresh: bool) {
    let seed = generate::seed();
    let mut rng = generate::rng(seed);
    let written = generate::readings(&mut rng, 250);
    for chunk in written.chunks(400) {
        store
            .put_batch(chunk.to_vec())
            .await
            .expect("put_batch of the generated readings");
    }
    if refresh {
        store.refresh_segments().await.expect("refresh_segments");
    }
    let window = Query::between(
        Timestamp(generate::WINDOW_START),
        Timestamp(generate::WINDOW_START + generate::WINDOW_SECS - 1),
    );

    // The edges: the reference itself keeps a point exactly on a circle
    // and drops one a metre outside; the store must do the same.
    for (c, near) in generate::CIRCLES.iter().enumerate() {
        let mut q = window.clone();
        q.place = Some(Place::Near(*near));
        q.format = Format::ALL[c % Format::ALL.len()];
        let want = reference(&written, &q);
        let base = generate::EDGE_SENSORS + 10 * c as u64;
        let has = |id: u64| want.iter().any(|r| r.sensor_id == id);
        assert!(
            has(base) && !has(base + 1) && has(base + 2) && has(base + 3),
            "seed {seed}: the reference keeps the points on the circle {near:?}, \
             drops the one outside and keeps the one inside"
        );
        matches_reference(store, &written, &q).await;
    }
    for (b, bbox) in generate::BOXES.iter().enumerate() {
        let mut q = window.clone();
        q.place = Some(Place::Bbox(*bbox));
        q.index = Index::ALL[b % Index::ALL.len()];
        q.max_aqi = q.index.max();
        let want = reference(&written, &q);
        let base = generate::EDGE_SENSORS + 1000 + 100 * b as u64;
        assert!(
            (0..6).all(|i| want.iter().any(|r| r.sensor_id == base + i))
                && !want.iter().any(|r| r.sensor_id == base + 6),
            "seed {seed}: the reference keeps the edges and corners of {bbox:?}"
        );
        matches_reference(store, &written, &q).await;
    }

    let mut answered = 0;
    for case in 0..cases {
        let q = generate::query(&mut rng, case);
        if !reference(&written, &q).is_empty() {
            answered += 1;
        }
        matches_reference(store, &written, &q).await;
    }
    assert!(
        cases < 6 || answered * 4 >= cases,
        "seed {seed}: only {answered} of {cases} generated queries match any reading; \
         the generator no longer tests much"
    );
}

/// A sensor of [`latest_follows_ingestion`]: its id, type and first place.
struct LatestSensor {
    id: u64,
    sensor_type: &'static str,
    country: &'static str,
    lat: f64,
    lon: f64,
}

/// First sensor id of [`latest_follows_ingestion`].
const LATEST_SENSORS: u64 = 7_100_000;
/// 2022-01-01 00:00:00 UTC: the first ingestion's day starts here.
const DAY1: i64 = 1_640_995_200;

fn latest_reading(s: &LatestSensor, ts: i64, p1: &str, p2: Option<&str>) -> Reading {
    generate::reading(
        s.id,
        ts,
        s.sensor_type,
        s.country,
        format!("{:.4}", s.lat),
        format!("{:.4}", s.lon),
        Some(p1.to_owned()),
        p2.map(str::to_owned),
    )
}

/// Sensors of [`latest_hints_are_kept`], apart from every other suite's.
const HINTED_SENSORS: u64 = 7_200_000;

/// `put_batch_hinted`: every reading is stored, a reading hinted not to be
/// its sensor's latest leaves `latest` alone (a newer one of the same
/// ingestion is to come), an older reading never replaces a newer latest,
/// and a hint of the wrong length is refused before anything is written.
/// Reads only its own sensors' latest rows, so it may share a store.
pub async fn latest_hints_are_kept(store: &dyn ReadingStore) {
    let reading = |k: u64, ts: i64, p1: &str| Reading {
        id: None,
        timestamp: Timestamp(ts),
        sensor_id: HINTED_SENSORS + k,
        sensor_type: "SDS011".into(),
        loc_id: None,
        loc_country: "DE".into(),
        loc_lat: "48.780".into(),
        loc_long: "9.180".into(),
        loc_alt: String::new(),
        p1: Some(p1.into()),
        p2: None,
        indices: Indices::of_text(Some(p1), None).expect("indices"),
        samples: None,
        basis: None,
        flags: Default::default(),
        air: Default::default(),
    };
    let latest = || async {
        let all: Vec<Reading> = store
            .latest(&LatestQuery::default())
            .try_collect()
            .await
            .expect("latest stream");
        all.into_iter()
            .filter(|r| (HINTED_SENSORS..HINTED_SENSORS + 10).contains(&r.sensor_id))
            .map(|r| (r.sensor_id - HINTED_SENSORS, r.timestamp.0))
            .collect::<Vec<_>>()
    };
    // 2024-01-01 00:00:00 UTC and the two days after.
    let (d1, d2, d3) = (1_704_067_200, 1_704_153_600, 1_704_240_000);
    let written = store
        .put_batch_hinted(
            vec![reading(1, d2, "10"), reading(2, d2, "20")],
            vec![false, true],
        )
        .await
        .expect("put");
    assert_eq!(written.new, 2, "a hinted reading is stored all the same");
    assert_eq!(latest().await, [(2, d2)], "sensor 1's reading hinted away");
    store
        .put_batch_hinted(
            vec![reading(1, d3, "11"), reading(2, d1, "21")],
            vec![true, true],
        )
        .await
        .expect("put");
    assert_eq!(
        latest().await,
        [(1, d3), (2, d2)],
        "the newest arrives; an older one never wins"
    );
    assert!(
        store
            .put_batch_hinted(vec![reading(3, d3, "30")], Vec::new())
            .await
            .is_err(),
        "a hint of the wrong length is refused"
    );
    assert_eq!(latest().await, [(1, d3), (2, d2)], "and writes nothing");
}

/// Two ingestions, then `latest` after each: for every sensor the newest
/// reading written (by timestamp; of one timestamp written twice, the
/// later write), filtered by country, box, circle and sensor types, in
/// sensor id order; and `latest_answer` in every format is the reference
/// rows' answer byte for byte.
///
/// The second ingestion brings newer readings for some sensors, older ones
/// for others (which must not replace the latest), a sensor that moved to
/// another country and one that moved within its own, a timestamp written again with another value, several
/// readings of one sensor in one batch in either order, and a new sensor.
///
/// Needs a store of its own: `latest` answers for every sensor ever
/// written, so another suite's readings would be in its answers.
pub async fn latest_follows_ingestion(store: &dyn ReadingStore) {
    let everything = LatestQuery::default();
    let before: Vec<Reading> = store
        .latest(&everything)
        .try_collect()
        .await
        .expect("latest stream");
    assert!(
        before.is_empty(),
        "latest_follows_ingestion needs an empty store; this one has {} sensors",
        before.len()
    );

    // Three clusters (Stuttgart, Sofia, Paris), ten sensors each, plus one
    // exactly on the edge of the Stuttgart circle below.
    const CITIES: [(f64, f64, &str); 3] = [
        (48.78, 9.18, "DE"),
        (42.70, 23.32, "BG"),
        (48.86, 2.35, "FR"),
    ];
    let stuttgart = Near {
        lat: 48.78,
        lon: 9.18,
        radius_km: 3.0,
    };
    let mut sensors: Vec<LatestSensor> = (0..30u64)
        .map(|k| {
            let (lat, lon, country) = CITIES[(k % 3) as usize];
            // Within about 2 km of the centre, spread around it.
            let angle = k as f64 * 0.7;
            let step = 0.002 * (k / 3) as f64;
            LatestSensor {
                id: LATEST_SENSORS + k,
                sensor_type: generate::SENSOR_TYPES[k as usize % generate::SENSOR_TYPES.len()],
                country,
                lat: lat + step * angle.sin(),
                lon: lon + step * angle.cos(),
            }
        })
        .collect();
    let (edge_lat, edge_lon) = generate::on_circle(&stuttgart, stuttgart.radius_km, 0.0);
    let edge = LatestSensor {
        id: LATEST_SENSORS + 31,
        sensor_type: "SPS30",
        country: "DE",
        lat: edge_lat,
        lon: edge_lon,
    };

    // First ingestion: two readings per sensor, the older of some written
    // in a batch after the newer.
    let mut first_a = Vec::new();
    let mut first_b = Vec::new();
    for (k, s) in sensors.iter().enumerate() {
        let older = latest_reading(s, DAY1 + 3600 * (1 + k as i64 % 5), "12.5", Some("8.1"));
        let newer = latest_reading(s, DAY1 + 3600 * (8 + k as i64 % 7), "41.7", Some("23.5"));
        if k % 2 == 0 {
            first_a.push(newer);
            first_b.push(older);
        } else {
            first_a.push(older);
            first_b.push(newer);
        }
    }
    // The edge sensor's text must parse to exactly the computed point.
    let mut on_edge = latest_reading(&edge, DAY1 + 7200, "30", None);
    on_edge.loc_lat = format!("{edge_lat}");
    on_edge.loc_long = format!("{edge_lon}");
    first_b.push(on_edge);
    let mut written = Vec::new();
    let mut model = std::collections::HashMap::new();
    for batch in [first_a, first_b] {
        written.extend(batch.iter().cloned());
        let want = expected_written(&mut model, &batch);
        let got = store.put_batch(batch).await.expect("first ingestion");
        assert_eq!(got, want, "first ingestion");
    }
    let filters = latest_filters(&stuttgart);
    check_latest(store, &written, &filters[..3]).await;

    // Second ingestion.
    let mut second = Vec::new();
    let day2 = DAY1 + 86_400;
    for s in &sensors[0..8] {
        second.push(latest_reading(
            s,
            day2 + 60 * (s.id % 100) as i64,
            "130",
            Some("60.2"),
        ));
    }
    for s in &sensors[8..16] {
        second.push(latest_reading(
            s,
            DAY1 - 3600 * (s.id % 100) as i64,
            "5",
            Some("5"),
        ));
    }
    // Sensor 18 (Stuttgart) moves to Sofia, across the border.
    sensors[18].lat = 42.6977;
    sensors[18].lon = 23.3219;
    sensors[18].country = "BG";
    second.push(latest_reading(
        &sensors[18],
        day2 + 7,
        "270.01",
        Some("140"),
    ));
    // Sensor 24 (Stuttgart) moves within its country, to Munich.
    sensors[24].lat = 48.1372;
    sensors[24].lon = 11.5756;
    second.push(latest_reading(&sensors[24], day2 + 9, "45", Some("15")));
    // Sensor 19's latest timestamp is written again, with other values.
    let again = DAY1 + 3600 * (8 + 19 % 7);
    second.push(latest_reading(&sensors[19], again, "604.9", Some("325.5")));
    // Sensor 20: newer then older in one batch; sensor 21: two newer
    // readings, the newest first.
    second.push(latest_reading(&sensors[20], day2 + 100, "55", Some("9.1")));
    second.push(latest_reading(&sensors[20], DAY1 - 100, "54", Some("9.0")));
    second.push(latest_reading(
        &sensors[21],
        day2 + 200,
        "155",
        Some("35.5"),
    ));
    second.push(latest_reading(
        &sensors[21],
        day2 + 100,
        "154",
        Some("35.4"),
    ));
    // A sensor seen for the first time.
    let new = LatestSensor {
        id: LATEST_SENSORS + 30,
        sensor_type: "hpm",
        country: "FR",
        lat: 48.8566,
        lon: 2.3522,
    };
    second.push(latest_reading(&new, day2, "15.01", Some("5.01")));
    written.extend(second.iter().cloned());
    let (second_a, second_b) = second.split_at(second.len() / 2);
    let mut replaced = 0;
    for batch in [second_a, second_b] {
        let want = expected_written(&mut model, batch);
        let got = store
            .put_batch(batch.to_vec())
            .await
            .expect("second ingestion");
        assert_eq!(got, want, "second ingestion");
        replaced += got.replaced;
    }
    assert_eq!(
        replaced, 1,
        "sensor 19's reading, written again with other values"
    );

    // The test means what it says: the reference follows each rule.
    let all = latest_reference(&written, &everything);
    assert_eq!(all.len(), 32, "every sensor once");
    let of = |id: u64| all.iter().find(|r| r.sensor_id == id);
    assert!(of(LATEST_SENSORS).is_some_and(|r| r.timestamp.0 > day2 - 1));
    assert!(of(LATEST_SENSORS + 8).is_some_and(|r| r.p1.as_deref() == Some("41.7")));
    assert!(of(LATEST_SENSORS + 18).is_some_and(|r| r.loc_country == "BG"));
    assert!(latest_reference(&written, &filters[12])
        .iter()
        .any(|r| r.sensor_id == LATEST_SENSORS + 24));
    assert!(of(LATEST_SENSORS + 19).is_some_and(|r| r.p1.as_deref() == Some("604.9")));
    assert!(of(LATEST_SENSORS + 20).is_some_and(|r| r.timestamp.0 == day2 + 100));
    assert!(of(LATEST_SENSORS + 21).is_some_and(|r| r.timestamp.0 == day2 + 200));
    assert!(latest_reference(&written, &filters[6])
        .iter()
        .any(|r| r.sensor_id == edge.id));

    check_latest(store, &written, &filters).await;
}

/// The filters [`latest_follows_ingestion`] checks: none, countries, small
/// and large boxes and circles (the first of them on the edge sensor's
/// circle), sensor types in any case, and combinations.
fn latest_filters(stuttgart: &Near) -> Vec<LatestQuery> {
    let types = |t: &[&str]| t.iter().map(|t| t.to_ascii_uppercase()).collect::<Vec<_>>();
    let with = |f: &dyn Fn(&mut LatestQuery)| {
        let mut q = LatestQuery::default();
        f(&mut q);
        q
    };
    let stuttgart_box = Place::Bbox(Bbox {
        min_lon: 9.1,
        min_lat: 48.7,
        max_lon: 9.3,
        max_lat: 48.85,
    });
    vec![
        LatestQuery::default(),
        with(&|q| q.country = Some("DE".into())),
        with(&|q| q.sensor_types = types(&["SDS011"])),
        with(&|q| q.country = Some("BG".into())),
        with(&|q| q.country = Some("ZZ".into())),
        with(&|q| q.place = Some(stuttgart_box)),
        with(&|q| q.place = Some(Place::Near(*stuttgart))),
        with(&|q| {
            q.place = Some(Place::Near(Near {
                lat: 42.7,
                lon: 23.32,
                radius_km: 15.0,
            }))
        }),
        with(&|q| {
            q.sensor_types = types(&["HPM", "SPS30"]);
            q.country = Some("DE".into());
        }),
        with(&|q| {
            // More cells than a store reads one by one.
            q.place = Some(Place::Bbox(Bbox {
                min_lon: -10.0,
                min_lat: 35.0,
                max_lon: 30.0,
                max_lat: 60.0,
            }));
            q.sensor_types = types(&["sds011", "pms7003"]);
        }),
        with(&|q| {
            q.place = Some(Place::Near(Near {
                lat: 48.78,
                lon: 9.18,
                radius_km: 100.0,
            }));
            q.country = Some("DE".into());
        }),
        with(&|q| {
            q.place = Some(stuttgart_box);
            q.sensor_types = types(&["SDS011", "SPS30", "PMS5003"]);
            q.country = Some("DE".into());
        }),
        with(&|q| {
            q.place = Some(Place::Near(Near {
                lat: 48.14,
                lon: 11.58,
                radius_km: 10.0,
            }))
        }),
    ]
}

/// `latest` and `latest_answer` equal the reference for each filter, the
/// answer in every format (the index changing with the filter).
async fn check_latest(store: &dyn ReadingStore, written: &[Reading], filters: &[LatestQuery]) {
    for (k, filter) in filters.iter().enumerate() {
        let want = latest_reference(written, filter);
        let got: Vec<Reading> = store
            .latest(filter)
            .try_collect()
            .await
            .expect("latest stream");
        let ids = |rows: &[Reading]| rows.iter().map(|r| r.sensor_id).collect::<Vec<_>>();
        assert_eq!(
            ids(&got),
            ids(&want),
            "latest: the sensors differ from the reference for {}",
            filter.to_json()
        );
        assert!(
            got == want,
            "latest: the readings differ from the reference for {}",
            filter.to_json()
        );
        for (f, format) in Format::ALL.into_iter().enumerate() {
            let mut filter = filter.clone();
            filter.format = format;
            filter.index = Index::ALL[(k + f) % Index::ALL.len()];
            // JSON answers give each reading's age from the request's time.
            filter.at = Some(Timestamp(1_800_000_000));
            let (answer, rows) = render(store.latest_answer(&filter), usize::MAX)
                .await
                .expect("latest answer");
            let rendering = filter.rendering();
            let want_answer = to_answer(&want, rendering).expect("reference answer");
            assert_eq!(
                rows,
                want.len() as u64,
                "latest answer rows for {}",
                filter.to_json()
            );
            assert!(
                answer == want_answer,
                "latest answer differs from the reference for {}: {}",
                filter.to_json(),
                first_difference(&answer, &want_answer)
            );
        }
    }
}

/// Answers stay exact while a store's answer segments (see
/// [`ReadingStore::refresh_segments`]) are built, go stale and are built
/// again: after a refresh, after writes that change two days (a value
/// replaced, a reading added), and after the next refresh, every format
/// and index answers as the reference does, for a country, for every
/// country, for sensor types, index bounds and a range that cuts days.
/// Cells a spreadsheet would run, quotes and commas are in the rows. A
/// store without segments passes as well (its refresh builds nothing).
pub async fn segments_follow_changes(store: &dyn ReadingStore) {
    let mut written = three_days();
    store.put_batch(written.clone()).await.expect("put_batch");
    let queries = || {
        let mut out = Vec::new();
        for (k, (start, end)) in [
            (DAY, DAY + 3 * 86_400 - 1),
            (DAY + 40_000, DAY + 2 * 86_400 + 20_000),
        ]
        .into_iter()
        .enumerate()
        {
            for country in [None, Some("DE"), Some("XX")] {
                for (f, format) in Format::ALL.into_iter().enumerate() {
                    let mut q = Query::between(Timestamp(start), Timestamp(end));
                    q.country = country.map(str::to_owned);
                    q.format = format;
                    q.index = Index::ALL[(k + f) % Index::ALL.len()];
                    out.push(q.clone());
                    q.sensor_types = vec!["SDS011".into()];
                    q.max_aqi = q.index.max() / 2;
                    out.push(q);
                }
            }
        }
        out
    };
    let check = |written: Vec<Reading>| async move {
        for q in queries() {
            matches_reference(store, &written, &q).await;
        }
    };
    store.refresh_segments().await.expect("refresh");
    check(written.clone()).await;
    // A value replaced on the first day, a reading added on the third.
    let mut changed = written[3].clone();
    changed.p1 = Some("123.4".into());
    changed.indices = Indices::of_text(changed.p1.as_deref(), changed.p2.as_deref())
        .expect("indices of the changed reading");
    let mut added = written[100].clone();
    added.sensor_id = 8_299_999;
    store
        .put_batch(vec![changed.clone(), added.clone()])
        .await
        .expect("put_batch of the changes");
    written[3] = changed;
    written.push(added);
    check(written.clone()).await;
    store.refresh_segments().await.expect("refresh again");
    check(written.clone()).await;
    assert_eq!(
        store.refresh_segments().await.expect("a third refresh"),
        0,
        "nothing is stale after a refresh"
    );
}

/// 2023-03-01 00:00:00 UTC, the first of [`three_days`].
const DAY: i64 = 1_677_628_800;

/// [`segments_follow_changes`]' three days from [`DAY`]: 40 sensors in
/// three countries at times spread over each day, two sensor types, a
/// formula and a quoted type among their cells.
fn three_days() -> Vec<Reading> {
    let mut written: Vec<Reading> = Vec::new();
    for d in 0..3i64 {
        for s in 0..40u64 {
            let (country, kind) = match s % 4 {
                0 => ("DE", "SDS011"),
                1 => ("DE", "PMS7003"),
                2 => ("NL", "SDS011"),
                _ => ("FR", "sds011"),
            };
            let mut r = generate::reading(
                8_200_000 + s,
                DAY + d * 86_400 + (s as i64 * 1_931) % 86_400,
                kind,
                country,
                format!("{:.4}", 50.0 + s as f64 / 100.0),
                format!("{:.4}", 8.0 + s as f64 / 50.0),
                Some(format!("{}.{}", 5 + s * 3 % 90, s % 10)),
                (s % 7 != 0).then(|| format!("{}.25", 2 + s * 2 % 70)),
            );
            if s == 5 {
                r.loc_alt = "=1+1".into();
            }
            if s == 9 {
                r.sensor_type = "SDS\"0,11".into();
            }
            written.push(r);
        }
    }
    written
}

/// An answer asked for in pieces ([`ReadingStore::query_answer_in_pieces`])
/// is the reference answer byte for byte; a store that names gzip pieces
/// names one per whole day a query keeps of a country's fresh segment
/// (not a day the time window cuts, not with a sensor type filtered), in
/// the query's index and format, and keeps a piece until the day's
/// segment is rebuilt. A store without segments names none and keeps
/// none. Returns how many answers named pieces.
pub async fn gzip_pieces_follow_segments(store: &dyn ReadingStore) -> usize {
    let written = three_days();
    store.put_batch(written.clone()).await.expect("put_batch");
    store.refresh_segments().await.expect("refresh");
    let first_day = DAY / 86_400;
    // (window, sensor types, the days whose section is whole)
    let cases: [(i64, i64, bool, &[i64]); 3] = [
        (DAY, DAY + 3 * 86_400 - 1, false, &[0, 1, 2]),
        (DAY + 40_000, DAY + 2 * 86_400 + 20_000, false, &[1]),
        (DAY, DAY + 3 * 86_400 - 1, true, &[]),
    ];
    let mut named = Vec::new();
    for (start, end, typed, whole) in cases {
        for (f, format) in Format::ALL.into_iter().enumerate() {
            let mut q = Query::between(Timestamp(start), Timestamp(end));
            q.country = Some("DE".into());
            q.format = format;
            q.index = Index::ALL[f % Index::ALL.len()];
            // Every value of the index: no bounds.
            (q.min_aqi, q.max_aqi) = (q.index.min(), q.index.max());
            if typed {
                q.sensor_types = vec!["SDS011".into()];
            }
            let (chunks, rows) = gather(store.query_answer_in_pieces(&q, usize::MAX), usize::MAX)
                .await
                .expect("an answer in pieces");
            let answer: Vec<u8> = chunks.iter().flat_map(|c| c.bytes.to_vec()).collect();
            let want = reference(&written, &q);
            let want_answer = to_answer(&want, q.rendering()).expect("reference answer");
            assert_eq!(rows, want.len() as u64, "rows of {}", q.to_json());
            assert!(
                answer == want_answer,
                "the answer in pieces differs from the reference for {}: {}",
                q.to_json(),
                first_difference(&answer, &want_answer)
            );
            let keys: Vec<&PieceKey> = chunks.iter().filter_map(|c| c.piece.as_deref()).collect();
            if keys.is_empty() {
                continue;
            }
            let days: Vec<i64> = keys.iter().map(|k| k.day - first_day).collect();
            assert_eq!(days, whole, "whole days of {}", q.to_json());
            for (n, key) in keys.iter().enumerate() {
                assert_eq!(
                    (key.series, key.country.as_str(), key.index, key.format),
                    (Resolution::Day, "DE", q.index, format)
                );
                // Only a GeoJSON feature that opens the answer differs.
                let opens = format == Format::Geojson && n == 0 && start == DAY;
                assert_eq!(key.opens, opens, "{key:?}");
                // The piece's chunk is the day's rows, whole.
                let day_rows = want
                    .iter()
                    .filter(|r| r.timestamp.0.div_euclid(86_400) == key.day)
                    .count() as u64;
                let chunk = chunks
                    .iter()
                    .find(|c| c.piece.as_deref() == Some(*key))
                    .expect("the piece's chunk");
                assert_eq!(chunk.rows, day_rows, "{key:?}");
            }
            named.push(keys[0].clone());
        }
    }
    let Some(key) = named.first().cloned() else {
        return 0;
    };
    // Kept, and read back as kept; a piece of a version never built is not.
    assert_eq!(store.gzip_piece(&key).await.expect("read"), None);
    let piece = bytes::Bytes::from_static(b"AIRQGZP1 a piece's bytes");
    store
        .keep_gzip_piece(&key, piece.clone())
        .await
        .expect("keep");
    assert_eq!(
        store.gzip_piece(&key).await.expect("read"),
        Some(piece.clone())
    );
    let mut other = key.clone();
    other.version += 1_000;
    store
        .keep_gzip_piece(&other, piece.clone())
        .await
        .expect("keep beside no segment");
    assert_eq!(store.gzip_piece(&other).await.expect("read"), None);
    // The day changes: its pieces go with its segment.
    let at = written
        .iter()
        .position(|r| r.loc_country == "DE" && r.timestamp.0.div_euclid(86_400) == key.day)
        .expect("a German reading of the day");
    let mut changed = written[at].clone();
    changed.p1 = Some("321.5".into());
    changed.indices = Indices::of_text(changed.p1.as_deref(), changed.p2.as_deref())
        .expect("indices of the changed reading");
    store.put_batch(vec![changed]).await.expect("change");
    store.refresh_segments().await.expect("refresh again");
    assert_eq!(store.gzip_piece(&key).await.expect("read"), None);
    named.len()
}

//! `airq-master backfill` from an archive laid out like
//! archive.sensor.community: the shipped fixtures (`tests/data/archive/`,
//! one SDS011 and one BME280 day) plus days generated here, with a sensor in
//! London, one in Kosovo, one at sea, a day with a broken file and a day
//! with a file that cannot be read. Run from a directory, then over HTTP
//! from a local server that lists the same directory and fails one file
//! once.
//!
//! The store is read back through the store port (`airq_embedded`).

mod support;

use airq_core::quality::{Flag, Flags};
use airq_core::query::Query;
use airq_core::store::ReadingStore as _;
use airq_core::{Indices, Reading, Timestamp};
use airq_embedded::{Db, SqliteReadingStore};
use futures::StreamExt as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use support::*;

const FIXTURE_DAY: &str = "2025-10-15";
const SDS011_FIXTURE: &str = "2025-10-15_sds011_sensor_82312.csv";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/archive")
}

const SDS011_HEADER: &str =
    "sensor_id;sensor_type;location;lat;lon;timestamp;P1;durP1;ratioP1;P2;durP2;ratioP2";

/// London, Pristina and a point of the North Atlantic.
const LONDON: (&str, &str) = ("51.50740000", "-0.12780000");
const PRISTINA: (&str, &str) = ("42.66290000", "21.16550000");
const AT_SEA: (&str, &str) = ("45.00000000", "-30.00000000");

fn sds011(id: u64, at: (&str, &str), rows: &[(&str, &str, &str)]) -> String {
    let mut text = format!("{SDS011_HEADER}\n");
    for (ts, p1, p2) in rows {
        text.push_str(&format!(
            "{id};SDS011;{};{};{};{ts};{p1};;;{p2};;\n",
            id + 5000,
            at.0,
            at.1
        ));
    }
    text
}

fn put(root: &Path, day: &str, name: &str, text: &str) {
    let dir = root.join(day);
    std::fs::create_dir_all(&dir).expect("day directory");
    std::fs::write(dir.join(name), text).expect("file written");
}

/// The test archive. With `unreadable`, day 2025-10-18 has a "file" that
/// cannot be read (a directory with a file's name).
fn archive(root: &Path, unreadable: bool) {
    // 2025-10-15: the shipped fixtures.
    std::fs::create_dir_all(root.join(FIXTURE_DAY)).expect("day directory");
    for entry in std::fs::read_dir(fixtures().join(FIXTURE_DAY)).expect("fixtures") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), root.join(FIXTURE_DAY).join(entry.file_name()))
            .expect("copied");
    }

    // 2025-10-16: London, Kosovo (an SPS30, other columns in another
    // order), a sensor at sea, a DHT22 at London's station (location
    // 6001), and names that are not per-sensor CSV files.
    let d = "2025-10-16";
    put(
        root,
        d,
        "2025-10-16_sds011_sensor_1001.csv",
        &sds011(
            1001,
            LONDON,
            &[
                ("2025-10-16T00:01:00", "10.00", "5.00"),
                ("2025-10-16T08:00:00", "20.00", "7.01"),
                ("2025-10-16T16:00:00", "30.01", "9.00"),
            ],
        ),
    );
    put(
        root,
        d,
        "2025-10-16_sps30_sensor_1002.csv",
        &format!(
            "sensor_id;sensor_type;location;lat;lon;timestamp;P1;P4;P2;P0;N05;N1;N25;N4;N10;TS\n\
             1002;SPS30;6002;{lat};{lon};2025-10-16T06:00:00;40.00;38.00;35.50;30.00;1;2;3;4;5;0.5\n\
             1002;SPS30;6002;{lat};{lon};2025-10-16T18:00:00;60.00;58.00;55.50;50.00;1;2;3;4;5;0.5\n",
            lat = PRISTINA.0,
            lon = PRISTINA.1
        ),
    );
    put(
        root,
        d,
        "2025-10-16_sds011_sensor_1003.csv",
        &sds011(
            1003,
            AT_SEA,
            &[
                ("2025-10-16T01:00:00", "3.00", "2.00"),
                ("2025-10-16T02:00:00", "4.00", "3.00"),
            ],
        ),
    );
    put(
        root,
        d,
        "2025-10-16_dht22_sensor_1004.csv",
        "sensor_id;sensor_type;location;lat;lon;timestamp;temperature;humidity\n\
         1004;DHT22;6001;51.5;-0.12;2025-10-16T01:00:00;11.20;80.00\n",
    );
    put(
        root,
        d,
        "2025-10-16_sds011_sensor_1005_indoor.csv",
        SDS011_HEADER,
    );
    put(root, d, "2025-10-16_sds011_sensor_1006.zip", "PK");

    // 2025-10-17: London again with broken rows, and a file that is no CSV.
    let d = "2025-10-17";
    let mut broken = sds011(
        1001,
        LONDON,
        &[
            ("2025-10-17T00:00:00", "12.00", "6.00"),
            ("2025-10-17T01:00:00", "unavailable", "6.00"),
            ("2025-10-17T02:00:00", "2100.00", "999.90"),
            ("2025-10-17 03:00:00", "14.00", "8.00"),
            ("17/10/2025 04:00", "1.00", "1.00"),
            ("2025-10-18T00:00:00", "1.00", "1.00"),
            ("2025-10-17T05:00:00", "-3.00", "1.00"),
        ],
    );
    broken.push_str("1001;SDS011;6001;51.5074\n");
    broken.push_str("1001;SDS011;6001;51.5074;-0.1278;2025-10-17T06:00:00\n");
    broken.push_str("garbage without separators\n");
    put(root, d, "2025-10-17_sds011_sensor_1001.csv", &broken);
    put(
        root,
        d,
        "2025-10-17_sds011_sensor_1007.csv",
        "<html><body>502 Bad Gateway</body></html>\n<p>nginx</p>\n",
    );

    // 2025-10-18: a good file, and one that cannot be read.
    let d = "2025-10-18";
    put(
        root,
        d,
        "2025-10-18_sds011_sensor_1001.csv",
        &sds011(1001, LONDON, &[("2025-10-18T12:00:00", "8.00", "4.00")]),
    );
    let bad = root.join(d).join("2025-10-18_sds011_sensor_1008.csv");
    if unreadable {
        std::fs::create_dir_all(&bad).expect("a directory named like a file");
    } else {
        let _ = std::fs::remove_dir(&bad);
    }
}

fn backfill(db: &Path, source: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "backfill",
        "--db",
        db.to_str().expect("utf-8 path"),
        "--source",
        source,
        "--from",
        "2025-10-15",
        "--to",
        "2025-10-18",
        "--retry-base",
        "10ms",
    ];
    args.extend_from_slice(extra);
    run(airq(&args))
}

/// Every stored reading, through the store port.
async fn stored(db: &Path) -> Vec<Reading> {
    let store = SqliteReadingStore::new(Db::open(db).expect("the store opens"));
    let all = Query::between(
        Timestamp::parse_feed("2015-01-01 00:00:00").expect("a time"),
        Timestamp::parse_feed("2030-01-01 00:00:00").expect("a time"),
    );
    store
        .query(&all)
        .map(|r| r.expect("a stored reading"))
        .collect()
        .await
}

fn by_sensor_day(readings: &[Reading]) -> BTreeMap<(u64, String), &Reading> {
    readings
        .iter()
        .map(|r| ((r.sensor_id, r.timestamp.to_string()), r))
        .collect()
}

/// Hundredths of a value the fixture writes with two decimals.
fn hundredths(text: &str) -> u64 {
    let (whole, frac) = text.split_once('.').expect("two decimals");
    assert_eq!(frac.len(), 2, "{text}");
    whole.parse::<u64>().expect("digits") * 100 + frac.parse::<u64>().expect("digits")
}

/// The mean of two-decimal texts, rounded half up to two decimals, by hand.
fn mean_text(values: &[String]) -> String {
    let sum: u64 = values.iter().map(|v| hundredths(v)).sum();
    let n = values.len() as u64;
    let h = (2 * sum + n) / (2 * n);
    format!("{}.{:02}", h / 100, h % 100)
}

/// Two columns of a fixture file of the fixture day, by name.
fn fixture_columns(file: &str, a: &str, b: &str) -> (Vec<String>, Vec<String>) {
    let text =
        std::fs::read_to_string(fixtures().join(FIXTURE_DAY).join(file)).expect("the fixture");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(';').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
    let (i, j) = (col(a), col(b));
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for line in lines {
        let cells: Vec<&str> = line.trim_end().split(';').collect();
        first.push(cells[i].to_owned());
        second.push(cells[j].to_owned());
    }
    (first, second)
}

fn indices(p1: &str, p2: &str) -> Indices {
    Indices::of(p1.parse().ok(), p2.parse().ok()).expect("indices")
}

fn assert_indices(r: &Reading, want: Indices) {
    assert_eq!(r.indices, want, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_a_directory_daily_means_countries_rejections_and_resume() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("archive");
    archive(&root, true);
    let db = dir.path().join("airq.db");
    let source = root.to_str().expect("utf-8 path");

    // First run: day 18 cannot be finished; the others are.
    let first = backfill(&db, source, &["--types", "all"]);
    assert_eq!(
        first.status.code(),
        Some(1),
        "{}\n{}",
        first.stdout,
        first.stderr
    );
    assert!(!first.stderr.contains("panicked"), "{}", first.stderr);
    assert!(
        first
            .stderr
            .contains("1 of 4 days could not be finished (2025-10-18)"),
        "{}",
        first.stderr
    );
    let v = |label: &str| first.summary_value(label);
    assert_eq!(v("days done:"), Some(3), "{}", first.stdout);
    assert_eq!(v("days skipped:"), Some(0));
    assert_eq!(v("days incomplete:"), Some(1));
    assert!(
        first.stdout.contains("  2025-10-18: cannot read"),
        "{}",
        first.stdout
    );
    assert_eq!(v("files listed:"), Some(10), "{}", first.stdout);
    assert_eq!(v("files read:"), Some(9));
    assert_eq!(v("files failed:"), Some(1));
    assert_eq!(v("station air:"), Some(2), "BME280 and DHT22");
    assert_eq!(v("without P1/P2:"), Some(0));
    assert_eq!(v("broken header:"), Some(1));
    assert_eq!(v("not sensor CSV:"), Some(2), "indoor and zip");
    assert_eq!(v("other types:"), Some(0));
    assert_eq!(v("files not read:"), Some(2));
    // 581 + (3 + 2 + 2) + (10 + 1) + 1 rows; the broken header's row is
    // malformed.
    assert_eq!(v("rows read:"), Some(600), "{}", first.stdout);
    assert_eq!(v("rows accepted:"), Some(581 + 3 + 2 + 2 + 1));
    assert_eq!(v("stored:"), Some(5), "82312; 1001 and 1002; 1001; 1001");
    assert_eq!(v("measurements averaged:"), Some(589));
    for (label, n) in [
        ("malformed entry:", 3 + 1),
        ("bad timestamp:", 1),
        ("timestamp out of range:", 1),
        ("non-numeric value:", 1),
        ("negative value:", 1),
        ("sensor saturated:", 1),
        ("in no country:", 2),
        ("no P1/P2 value:", 0),
        ("bad country code:", 0),
    ] {
        assert_eq!(v(label), Some(n), "{label}\n{}", first.stdout);
    }
    assert_eq!(v("rejected:"), Some(11));

    let readings = stored(&db).await;
    let got = by_sensor_day(&readings);
    assert_eq!(got.len(), 5, "{readings:#?}");

    // The fixture's daily mean, against one computed here by hand.
    let (p1s, p2s) = fixture_columns(SDS011_FIXTURE, "P1", "P2");
    assert_eq!(p1s.len(), 581);
    let (p1, p2) = (mean_text(&p1s), mean_text(&p2s));
    let r = got[&(82312, "2025-10-15 23:59:59".to_owned())];
    assert_eq!((r.p1.as_deref(), r.p2.as_deref()), (Some(&*p1), Some(&*p2)));
    assert_indices(r, indices(&p1, &p2));
    assert_eq!(r.samples, Some(581), "the mean keeps how many it averages");
    assert_eq!(r.loc_country, "RU", "the Kola peninsula");
    // Its station's air: the BME280 of the same location id (88882), its
    // day's means worked out here.
    let (humidity, temperature) = fixture_columns(
        "2025-10-15_bme280_sensor_82313.csv",
        "humidity",
        "temperature",
    );
    assert_eq!(humidity.len(), 582);
    assert_eq!(
        (r.air.humidity.as_deref(), r.air.temperature.as_deref()),
        (
            Some(&*mean_text(&humidity)),
            Some(&*mean_text(&temperature))
        )
    );
    let rh: f64 = mean_text(&humidity).parse().expect("a number");
    assert!(rh >= 95.0, "a humid day on the Kola peninsula: {rh}");
    assert_eq!(r.flags, Flags::of(&[Flag::Humid]));
    assert_eq!(
        (r.loc_lat.as_str(), r.loc_long.as_str()),
        ("67.55503520", "33.43993600")
    );
    assert_eq!(
        (r.sensor_type.as_str(), r.loc_id, r.id),
        ("SDS011", Some(88882), None)
    );

    // London: (10.00 + 20.00 + 30.01) / 3 = 20.0033 → 20.00; (5 + 7.01 + 9) / 3 = 7.0033.
    let r = got[&(1001, "2025-10-16 23:59:59".to_owned())];
    assert_eq!(
        (r.p1.as_deref(), r.p2.as_deref()),
        (Some("20.00"), Some("7.00"))
    );
    assert_eq!(r.loc_country, "UK");
    assert_indices(r, indices("20.00", "7.00"));
    // The DHT22 of its station, one row.
    assert_eq!(
        (r.air.humidity.as_deref(), r.air.temperature.as_deref()),
        (Some("80.00"), Some("11.20"))
    );
    assert_eq!(r.flags, Flags::NONE);
    let r = got[&(1002, "2025-10-16 23:59:59".to_owned())];
    assert_eq!(
        (r.p1.as_deref(), r.p2.as_deref()),
        (Some("50.00"), Some("45.50"))
    );
    assert_eq!(
        (r.loc_country.as_str(), r.sensor_type.as_str()),
        ("XK", "SPS30")
    );
    assert_indices(r, indices("50.00", "45.50"));
    assert_eq!(r.flags, Flags::of(&[Flag::NoHumidity]), "no T/RH sensor");
    // The broken file's day: its two good rows, (12 + 14) / 2 and (6 + 8) / 2.
    let r = got[&(1001, "2025-10-17 23:59:59".to_owned())];
    assert_eq!(
        (r.p1.as_deref(), r.p2.as_deref()),
        (Some("13.00"), Some("7.00"))
    );
    assert!(!got.keys().any(|(id, _)| *id == 1003), "the sensor at sea");

    // The state file beside the database records the finished days.
    let state =
        std::fs::read_to_string(dir.path().join("airq.db.backfill.json")).expect("the state file");
    for day in ["2025-10-15", "2025-10-16", "2025-10-17"] {
        assert!(state.contains(day), "{day}: {state}");
    }
    assert!(!state.contains("2025-10-18"), "{state}");

    // Second run: the finished days are skipped, the failed one retried.
    let second = backfill(&db, source, &["--types", "all"]);
    assert_eq!(second.status.code(), Some(1), "{}", second.stderr);
    assert_eq!(
        second.summary_value("days skipped:"),
        Some(3),
        "{}",
        second.stdout
    );
    assert!(
        second
            .stdout
            .contains("--force redoes them: 2025-10-15, 2025-10-16, 2025-10-17"),
        "{}",
        second.stdout
    );
    assert_eq!(second.summary_value("days done:"), Some(0));
    assert_eq!(second.summary_value("files listed:"), Some(2));
    assert!(
        second.stderr.contains("skipping days already backfilled"),
        "{}",
        second.stderr
    );

    // With the file readable, the last day is finished, the rest still skipped.
    archive(&root, false);
    let third = backfill(&db, source, &["--types", "all"]);
    third.assert_success();
    assert_eq!(third.summary_value("days skipped:"), Some(3));
    assert_eq!(third.summary_value("days done:"), Some(1));
    assert_eq!(third.summary_value("days incomplete:"), Some(0));
    let fourth = backfill(&db, source, &["--types", "all"]);
    fourth.assert_success();
    assert_eq!(fourth.summary_value("days skipped:"), Some(4));
    assert_eq!(fourth.summary_value("files listed:"), Some(0));

    // Days done for every type are done for any list of types.
    let sds = backfill(&db, source, &["--types", "sds011"]);
    sds.assert_success();
    assert_eq!(sds.summary_value("days skipped:"), Some(4));

    // --force redoes every day; storing is idempotent.
    let forced = backfill(&db, source, &["--types", "all", "--force"]);
    forced.assert_success();
    assert_eq!(forced.summary_value("days skipped:"), Some(0));
    assert_eq!(forced.summary_value("days done:"), Some(4));
    assert_eq!(stored(&db).await.len(), 5);

    // A new database does not believe a state file of finished days: the
    // old database's record, given to a run on a database that does not
    // exist yet. (A new path rather than deleting the old file: a pool
    // connection of `stored` above, closing in the background, could
    // create the deleted file again before the run looks for it.)
    let state = dir.path().join("airq.db.backfill.json");
    assert!(state.is_file(), "the first runs kept a state file");
    let new_db = dir.path().join("new.db");
    let anew = backfill(
        &new_db,
        source,
        &[
            "--types",
            "all",
            "--state",
            state.to_str().expect("utf-8 path"),
        ],
    );
    anew.assert_success();
    assert_eq!(
        anew.summary_value("days skipped:"),
        Some(0),
        "{}",
        anew.stdout
    );
    assert!(anew.stderr.contains("the store is new"), "{}", anew.stderr);
    assert_eq!(stored(&new_db).await.len(), 5);
}

/// A T/RH sensor's file: one row per `(time, temperature, humidity)`.
fn trh(kind: &str, id: u64, location: u64, rows: &[(&str, &str, &str)]) -> String {
    let mut text =
        "sensor_id;sensor_type;location;lat;lon;timestamp;temperature;humidity\n".to_owned();
    for (ts, t, h) in rows {
        text.push_str(&format!(
            "{id};{kind};{location};42.66;21.17;{ts};{t};{h}\n"
        ));
    }
    text
}

/// Issue 28: a daily backfill gives its means their stations' air and the
/// flags the nightly feed's get, each rule on both sides of its threshold,
/// the days before read from the store (days end in order, whatever the
/// order their files come in); `--air-types none` reads no air, and raw
/// readings are not assessed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_means_are_assessed_with_their_stations_air() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("archive");
    let day = |d: u32| format!("2025-10-{d}");
    let noon = |d: u32| format!("2025-10-{d}T12:00:00");
    // 2001 (London, station 7001, no T/RH sensor) sends the same means
    // three days running: `stuck` from the third (the run is 3 at daily
    // resolution).
    for d in [20, 21, 22] {
        let name = format!("{}_sds011_sensor_2001.csv", day(d));
        put(
            &root,
            &day(d),
            &name,
            &sds011(2001, LONDON, &[(&noon(d), "10.00", "5.00")]),
        );
    }
    // 2002 moves 0.01° of latitude north (1.1 km: `moved`), then 0.0009°
    // (100 m: not).
    let north = [
        ("51.50740000", "20.00"),
        ("51.51740000", "21.00"),
        ("51.51830000", "22.00"),
    ];
    for (d, (lat, p1)) in [20, 21, 22].into_iter().zip(north) {
        let name = format!("{}_sds011_sensor_2002.csv", day(d));
        let text = sds011(2002, (lat, LONDON.1), &[(&noon(d), p1, "6.00")]);
        put(&root, &day(d), &name, &text);
    }
    // 2003 (Pristina): PM2.5 above PM10 on the 20th, equal on the 21st.
    for (d, p2) in [(20, "8.01"), (21, "8.00")] {
        let name = format!("{}_sds011_sensor_2003.csv", day(d));
        put(
            &root,
            &day(d),
            &name,
            &sds011(2003, PRISTINA, &[(&noon(d), "8.00", p2)]),
        );
    }
    // 2004 (Pristina, station 7004) and two T/RH sensors of its station:
    // on the 20th both, the lower id's air (a BME280 at 95.00 %, `humid`)
    // rather than the DHT22's (94.99 %); on the 21st the DHT22 alone, its
    // mean (94.98 + 95.00) / 2 = 94.99 %: not humid.
    for (d, p1) in [(20, "30.00"), (21, "31.00")] {
        let name = format!("{}_sds011_sensor_2004.csv", day(d));
        put(
            &root,
            &day(d),
            &name,
            &sds011(2004, PRISTINA, &[(&noon(d), p1, "9.00")]),
        );
    }
    let d20 = "2025-10-20";
    put(
        &root,
        d20,
        "2025-10-20_bme280_sensor_3000.csv",
        &trh(
            "BME280",
            3000,
            7004,
            &[("2025-10-20T03:00:00", "2.50", "95.00")],
        ),
    );
    put(
        &root,
        d20,
        "2025-10-20_dht22_sensor_3001.csv",
        &trh(
            "DHT22",
            3001,
            7004,
            &[("2025-10-20T03:00:00", "3.00", "94.99")],
        ),
    );
    put(
        &root,
        "2025-10-21",
        "2025-10-21_dht22_sensor_3001.csv",
        &trh(
            "DHT22",
            3001,
            7004,
            &[
                ("2025-10-21T01:00:00", "-2.50", "94.98"),
                ("2025-10-21T02:00:00", "-1.25", "95.00"),
            ],
        ),
    );
    // The 23rd: five sensors of London's cell. P1 10, 11, 11, 21, 22: the
    // median is 11, the absolute deviations 1, 0, 0, 10, 11 have median
    // 1, floored to 2; modified z-scores 0.6745 × 10 / 2 = 3.37 (not) and
    // 0.6745 × 11 / 2 = 3.71 (> 3.5: `outlier`).
    for (id, p1) in [
        (2010, "10.00"),
        (2011, "11.00"),
        (2012, "11.00"),
        (2013, "21.00"),
        (2014, "22.00"),
    ] {
        let name = format!("2025-10-23_sds011_sensor_{id}.csv");
        put(
            &root,
            "2025-10-23",
            &name,
            &sds011(id, LONDON, &[(&noon(23), p1, "5.00")]),
        );
    }

    let db = dir.path().join("airq.db");
    let source = root.to_str().expect("utf-8 path");
    // A backfill of the four days into `db`.
    let go = |db: &Path, extra: &[&str]| {
        let db = db.to_str().expect("utf-8 path");
        let mut a = vec!["backfill", "--db", db, "--source", source];
        a.extend_from_slice(&["--from", "2025-10-20", "--to", "2025-10-23"]);
        a.extend_from_slice(extra);
        run(airq(&a))
    };
    let out = go(&db, &[]);
    out.assert_success();
    assert_eq!(out.summary_value("station air:"), Some(3), "{}", out.stdout);

    use Flag::*;
    let readings = stored(&db).await;
    let got = by_sensor_day(&readings);
    let at = |id: u64, d: u32| got[&(id, format!("2025-10-{d} 23:59:59"))];
    let flags = |id: u64, d: u32| at(id, d).flags;
    assert_eq!(flags(2001, 20), Flags::of(&[NoHumidity]));
    assert_eq!(flags(2001, 21), Flags::of(&[NoHumidity]), "a run of 2");
    assert_eq!(
        flags(2001, 22),
        Flags::of(&[NoHumidity, Stuck]),
        "a run of 3"
    );
    assert_eq!(flags(2002, 20), Flags::of(&[NoHumidity]));
    assert_eq!(flags(2002, 21), Flags::of(&[NoHumidity, Moved]), "1.1 km");
    assert_eq!(flags(2002, 22), Flags::of(&[NoHumidity]), "100 m");
    assert_eq!(flags(2003, 20), Flags::of(&[NoHumidity, Pm25AbovePm10]));
    assert_eq!(flags(2003, 21), Flags::of(&[NoHumidity]), "equal");
    assert_eq!(flags(2004, 20), Flags::of(&[Humid]));
    let air = |id: u64, d: u32| {
        let r = at(id, d);
        (r.air.humidity.clone(), r.air.temperature.clone())
    };
    let some = |h: &str, t: &str| (Some(h.to_owned()), Some(t.to_owned()));
    assert_eq!(air(2004, 20), some("95.00", "2.50"), "the lower id's");
    assert_eq!(flags(2004, 21), Flags::NONE);
    assert_eq!(
        air(2004, 21),
        some("94.99", "-1.88"),
        "(-2.50 - 1.25) / 2 = -1.875"
    );
    assert_eq!(air(2001, 20), (None, None));
    for id in [2010, 2011, 2012, 2013] {
        assert_eq!(flags(id, 23), Flags::of(&[NoHumidity]), "{id}");
    }
    assert_eq!(flags(2014, 23), Flags::of(&[NoHumidity, Outlier]));
    assert_eq!(readings.len(), 3 + 3 + 2 + 2 + 5);

    // Without the stations' air, done again: every mean `no_humidity`,
    // even with every type's files read (the T/RH ones then have no use).
    let none = go(&db, &["--air-types", "none", "--force", "--types", "all"]);
    assert_eq!(
        none.summary_value("without P1/P2:"),
        Some(3),
        "{}",
        none.stdout
    );
    none.assert_success();
    assert_eq!(
        none.summary_value("station air:"),
        Some(0),
        "{}",
        none.stdout
    );
    let readings = stored(&db).await;
    let got = by_sensor_day(&readings);
    let r = got[&(2004, "2025-10-20 23:59:59".to_owned())];
    assert_eq!(
        (r.flags, &r.air),
        (Flags::of(&[NoHumidity]), &Default::default())
    );

    // Raw readings are not assessed.
    let raw_db = dir.path().join("raw.db");
    let raw = go(&raw_db, &["--resolution", "raw"]);
    raw.assert_success();
    assert_eq!(raw.summary_value("station air:"), Some(0), "{}", raw.stdout);
    let readings = stored(&raw_db).await;
    assert_eq!(readings.len(), 3 + 3 + 2 + 2 + 5);
    assert!(readings
        .iter()
        .all(|r| r.flags == Flags::NONE && r.air.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_resolution_stores_every_valid_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("archive");
    archive(&root, false);
    let db = dir.path().join("raw.db");
    let out = backfill(
        &db,
        root.to_str().expect("utf-8 path"),
        &[
            "--types",
            "all",
            "--resolution",
            "raw",
            "--batch-size",
            "100",
        ],
    );
    out.assert_success();
    assert_eq!(out.summary_value("stored:"), Some(589), "{}", out.stdout);
    assert_eq!(out.summary_value("rows accepted:"), Some(589));
    assert_eq!(out.summary_value("measurements averaged:"), None);
    let readings = stored(&db).await;
    assert_eq!(readings.len(), 589);
    let fixture: Vec<&Reading> = readings.iter().filter(|r| r.sensor_id == 82312).collect();
    assert_eq!(fixture.len(), 581);
    // Each row as sent, at its own time.
    let (p1s, p2s) = fixture_columns(SDS011_FIXTURE, "P1", "P2");
    let first = fixture
        .iter()
        .find(|r| r.timestamp.to_string() == "2025-10-15 00:00:55")
        .expect("the fixture's first row");
    assert_eq!(
        (first.p1.as_deref(), first.p2.as_deref()),
        (Some(&*p1s[0]), Some(&*p2s[0]))
    );
    assert_indices(first, indices(&p1s[0], &p2s[0]));
    assert!(fixture.iter().all(|r| r.loc_country == "RU"));
    // A raw run is recorded apart from a daily one.
    let daily = backfill(&db, root.to_str().expect("utf-8 path"), &["--types", "all"]);
    daily.assert_success();
    assert_eq!(daily.summary_value("days skipped:"), Some(0));
}

// ---- over HTTP ----

/// Serves `root` as the archive does: `/<day>/` is an HTML index page,
/// `/<day>/<file>` the file. `fail_once` answers 500 the first time.
#[derive(Clone)]
struct Archive {
    root: PathBuf,
    fail_once: String,
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
    listings: Arc<AtomicUsize>,
}

fn index_page(day: &str, names: &[String]) -> String {
    let mut html = format!(
        "<html>\r\n<head><title>Index of /{day}/</title></head>\r\n<body>\r\n\
         <h1>Index of /{day}/</h1><hr><pre><a href=\"../\">../</a>\r\n\
         <a href=\"?C=M;O=A\">Last modified</a>\r\n"
    );
    for (i, name) in names.iter().enumerate() {
        // Relative and absolute links, as servers write either.
        let href = if i % 2 == 0 {
            name.clone()
        } else {
            format!("/{day}/{name}")
        };
        html.push_str(&format!(
            "<a href=\"{href}\">{name}</a>                 16-Oct-2025 00:31    45477\r\n"
        ));
    }
    html.push_str("</pre><hr></body>\r\n</html>\r\n");
    html
}

async fn serve_archive(
    axum::extract::State(archive): axum::extract::State<Archive>,
    uri: axum::http::Uri,
) -> (axum::http::StatusCode, Vec<u8>) {
    use axum::http::StatusCode;
    let path = uri.path().trim_start_matches('/');
    let (day, file) = path.split_once('/').unwrap_or((path, ""));
    if day.contains("..") || file.contains("..") || file.contains('/') {
        return (StatusCode::NOT_FOUND, Vec::new());
    }
    let dir = archive.root.join(day);
    if file.is_empty() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return (StatusCode::NOT_FOUND, Vec::new());
        };
        archive.listings.fetch_add(1, Ordering::SeqCst);
        let mut names: Vec<String> = entries
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        return (StatusCode::OK, index_page(day, &names).into_bytes());
    }
    let hits = {
        let mut all = archive.hits.lock().expect("lock");
        let n = all.entry(file.to_owned()).or_default();
        *n += 1;
        *n
    };
    if file == archive.fail_once && hits == 1 {
        return (StatusCode::INTERNAL_SERVER_ERROR, b"try again".to_vec());
    }
    match std::fs::read(dir.join(file)) {
        Ok(bytes) => (StatusCode::OK, bytes),
        Err(_) => (StatusCode::NOT_FOUND, Vec::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_with_a_file_that_fails_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("archive");
    archive(&root, false);
    let state = Archive {
        root: root.clone(),
        fail_once: "2025-10-16_sds011_sensor_1001.csv".into(),
        hits: Arc::default(),
        listings: Arc::default(),
    };
    let app = axum::Router::new()
        .fallback(serve_archive)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // The default types, and the default T/RH types beside them.
    let http_db = dir.path().join("http.db");
    let out = tokio::task::spawn_blocking({
        let (db, url) = (http_db.clone(), url.clone());
        move || backfill(&db, &url, &["--concurrency", "3"])
    })
    .await
    .expect("the run");
    out.assert_success();
    let v = |label: &str| out.summary_value(label);
    assert_eq!(v("days done:"), Some(4), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(v("files listed:"), Some(9), "{}", out.stdout);
    assert_eq!(v("files read:"), Some(9));
    assert_eq!(v("station air:"), Some(2), "BME280 and DHT22");
    assert_eq!(v("files failed:"), Some(0));
    assert_eq!(v("other types:"), Some(0));
    assert_eq!(v("not sensor CSV:"), Some(2));
    assert!(
        out.stderr.contains("fetch failed; retrying"),
        "{}",
        out.stderr
    );
    {
        let hits = state.hits.lock().expect("lock");
        assert_eq!(
            hits.get("2025-10-16_sds011_sensor_1001.csv"),
            Some(&2),
            "{hits:?}"
        );
        assert_eq!(hits.get(SDS011_FIXTURE), Some(&1));
        assert_eq!(hits.get("2025-10-15_bme280_sensor_82313.csv"), Some(&1));
    }
    assert_eq!(state.listings.load(Ordering::SeqCst), 4);

    // The same readings as from the directory.
    let dir_db = dir.path().join("dir.db");
    let local = backfill(&dir_db, root.to_str().expect("utf-8 path"), &[]);
    local.assert_success();
    let (over_http, from_dir) = (stored(&http_db).await, stored(&dir_db).await);
    assert_eq!(over_http.len(), 5);
    assert_eq!(over_http, from_dir);

    // A second run lists nothing: every day is done.
    let again = tokio::task::spawn_blocking({
        let (db, url) = (http_db.clone(), url.clone());
        move || backfill(&db, &url, &[])
    })
    .await
    .expect("the run");
    again.assert_success();
    assert_eq!(again.summary_value("days skipped:"), Some(4));
    assert_eq!(state.listings.load(Ordering::SeqCst), 4);

    // A day the server does not have is not done, and says why.
    let missing = tokio::task::spawn_blocking({
        let (db, url) = (http_db.clone(), url.clone());
        move || {
            run(airq(&[
                "backfill",
                "--db",
                db.to_str().expect("utf-8 path"),
                "--source",
                &url,
                "--from",
                "2025-10-19",
                "--to",
                "2025-10-19",
            ]))
        }
    })
    .await
    .expect("the run");
    missing.assert_clean_failure();
    assert!(
        missing.stdout.contains("404 Not Found"),
        "{}",
        missing.stdout
    );
    server.abort();
}

#[test]
fn bad_arguments_are_refused_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let db = db.to_str().expect("utf-8 path");
    let out = run(airq(&[
        "backfill",
        "--db",
        db,
        "--from",
        "2025-10-18",
        "--to",
        "2025-10-15",
    ]));
    out.assert_clean_failure();
    assert!(out.stderr.contains("is after --to"), "{}", out.stderr);
    let out = run(airq(&["backfill", "--db", db, "--to", "2999-01-01"]));
    out.assert_clean_failure();
    assert!(out.stderr.contains("in the future"), "{}", out.stderr);
    let out = run(airq(&["backfill", "--db", db, "--types", "sds 011"]));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
}

// ---- a hostile directory ----

/// Issue: from a directory, a FIFO hung the run for ever, a link to
/// `/dev/zero` filled memory until the OOM killer came, a link to
/// `/etc/passwd` was read, and a file was read whole whatever its size or
/// the length of its lines. Now only regular files inside the source are
/// read (the rest is skipped and counted by reason, without holding the day
/// back), a file over 64 MiB fails as it does over HTTP, a line over 64 KiB
/// is one malformed row, and a second repeated in a file is one
/// measurement. The time limit is what fails a hang.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_directory_is_read_within_bounds() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("archive");
    let d = "2025-10-16";
    let day = root.join(d);
    let name = |id: u64| format!("{d}_sds011_sensor_{id}.csv");

    // London, with its 08:00:00 measurement repeated 5 times (other values).
    let mut rows = sds011(
        1001,
        LONDON,
        &[
            ("2025-10-16T00:01:00", "10.00", "5.00"),
            ("2025-10-16T08:00:00", "20.00", "7.01"),
            ("2025-10-16T16:00:00", "30.01", "9.00"),
        ],
    );
    for _ in 0..5 {
        rows.push_str("1001;SDS011;6001;51.5074;-0.1278;2025-10-16T08:00:00;900.00;;;900.00;;\n");
    }
    put(&root, d, &name(1001), &rows);
    // A stray quote before 500 good rows.
    let mut quoted =
        format!("{SDS011_HEADER}\n1002;SDS011;\"6002;51.5;-0.12;2025-10-16T00:00:00;1;;;1;;\n");
    for i in 0..500 {
        quoted.push_str(&format!(
            "1002;SDS011;6002;51.5;-0.12;2025-10-16T{:02}:{:02}:{:02};12.00;;;6.00;;\n",
            i / 3600,
            i / 60 % 60,
            i % 60
        ));
    }
    put(&root, d, &name(1002), &quoted);
    // A line of 1 MiB between two good rows.
    let mut long = sds011(1003, LONDON, &[("2025-10-16T01:00:00", "4.00", "2.00")]);
    long.push_str(&"x".repeat(1 << 20));
    long.push('\n');
    long.push_str("1003;SDS011;6003;51.5074;-0.1278;2025-10-16T02:00:00;6.00;;;4.00;;\n");
    put(&root, d, &name(1003), &long);
    // Links out of the source, a FIFO, a socket, a broken link.
    symlink("/dev/zero", day.join(name(2001))).expect("a link");
    symlink("/etc/passwd", day.join(name(2002))).expect("a link");
    nix::unistd::mkfifo(&day.join(name(2003)), nix::sys::stat::Mode::S_IRWXU).expect("a FIFO");
    let _socket = std::os::unix::net::UnixListener::bind(day.join(name(2004))).expect("a socket");
    symlink("missing.csv", day.join(name(2006))).expect("a link");
    // A link to a file elsewhere inside the source is read.
    put(
        &root,
        "shared",
        &name(2005),
        &sds011(2005, LONDON, &[("2025-10-16T03:00:00", "8.00", "4.00")]),
    );
    symlink(root.join("shared").join(name(2005)), day.join(name(2005))).expect("a link");

    // The next day: a file over the limit (sparse: 64 MiB and a byte), and
    // a good one, stored even though its day cannot be finished.
    let d17 = "2025-10-17";
    put(
        &root,
        d17,
        "2025-10-17_sds011_sensor_1004.csv",
        &sds011(1004, LONDON, &[("2025-10-17T03:00:00", "8.00", "4.00")]),
    );
    let huge = std::fs::File::create(root.join(d17).join("2025-10-17_sds011_sensor_1005.csv"))
        .expect("created");
    huge.set_len((64 << 20) + 1).expect("sized");
    drop(huge);

    let db = dir.path().join("airq.db");
    let out = run_for(
        airq(&[
            "backfill",
            "--db",
            db.to_str().expect("utf-8 path"),
            "--source",
            root.to_str().expect("utf-8 path"),
            "--from",
            d,
            "--to",
            d17,
        ]),
        std::time::Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let v = |label: &str| out.summary_value(label);
    assert_eq!(v("days done:"), Some(1), "{}", out.stdout);
    assert_eq!(v("days incomplete:"), Some(1));
    assert!(
        out.stdout.contains("2025-10-17: cannot read ")
            && out.stdout.contains("larger than 64 MiB"),
        "{}",
        out.stdout
    );
    assert_eq!(v("files listed:"), Some(11));
    assert_eq!(v("files read:"), Some(5), "{}", out.stdout);
    assert_eq!(v("files failed:"), Some(1));
    assert_eq!(v("files skipped:"), Some(5));
    assert_eq!(v("link out of the source:"), Some(2));
    assert_eq!(v("broken link:"), Some(1));
    assert_eq!(v("FIFO:"), Some(1));
    assert_eq!(v("socket:"), Some(1));
    assert_eq!(v("device:"), Some(0));
    // 8 + 501 + 3 + 1 + 1 rows.
    assert_eq!(v("rows read:"), Some(514), "{}", out.stdout);
    assert_eq!(v("rows accepted:"), Some(3 + 500 + 2 + 1 + 1));
    assert_eq!(v("duplicate timestamp:"), Some(5));
    assert_eq!(
        v("malformed entry:"),
        Some(2),
        "the quote and the long line"
    );
    assert_eq!(v("rejected:"), Some(7));
    assert_eq!(v("measurements averaged:"), Some(507));
    assert!(!out.stdout.contains("root:"), "/etc/passwd was not read");

    let readings = stored(&db).await;
    let got = by_sensor_day(&readings);
    let ids: Vec<u64> = got.keys().map(|k| k.0).collect();
    assert_eq!(ids, [1001, 1002, 1003, 1004, 2005], "{readings:#?}");
    let r = got[&(1001, "2025-10-16 23:59:59".to_owned())];
    assert_eq!(
        (r.p1.as_deref(), r.p2.as_deref(), r.samples),
        (Some("20.00"), Some("7.00"), Some(3)),
        "the first 08:00:00 only"
    );
    assert_eq!(
        got[&(1002, "2025-10-16 23:59:59".to_owned())].samples,
        Some(500)
    );
    let r = got[&(1003, "2025-10-16 23:59:59".to_owned())];
    assert_eq!((r.p1.as_deref(), r.samples), (Some("5.00"), Some(2)));
}

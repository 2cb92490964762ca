//! `airq-master ingest` from files: the sample, idempotence, bad documents,
//! configuration from the environment, JSON logs.

mod support;

use support::*;

#[test]
fn sample_stores_every_valid_reading_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("store/airq.db");
    let sample = sample_path();
    let args = [
        "ingest",
        "--source",
        sample.to_str().expect("utf-8 path"),
        "--db",
        db.to_str().expect("utf-8 path"),
    ];

    let first = run(airq(&args));
    first.assert_success();
    assert_eq!(count_readings(&db), Some(SAMPLE_READINGS));
    assert_eq!(first.summary_value("entries read:"), Some(SAMPLE_ENTRIES));
    assert_eq!(first.summary_value("stored:"), Some(4928));
    assert_eq!(first.summary_value("rejected:"), Some(17));
    assert_eq!(first.summary_value("sensor saturated:"), Some(17));
    // Every reason is listed, with its count.
    for label in [
        "malformed entry:",
        "bad timestamp:",
        "no P1/P2 value:",
        "non-numeric value:",
        "negative value:",
        "non-finite value:",
    ] {
        assert_eq!(
            first.summary_value(label),
            Some(0),
            "{label}\n{}",
            first.stdout
        );
    }
    assert!(first.stdout.contains("readings/s"), "{}", first.stdout);
    // Logs are on stderr, the summary alone on stdout.
    assert!(!first.stdout.contains("INFO"), "{}", first.stdout);
    assert!(
        first.stderr.contains("ingestion finished"),
        "{}",
        first.stderr
    );

    // The day's answer segment is built after the ingestion.
    assert_eq!(segment_files(&db, "day."), 1, "{}", first.stderr);
    assert!(
        first.stderr.contains("rebuilt the answer segments"),
        "{}",
        first.stderr
    );

    let second = run(airq(&args));
    second.assert_success();
    assert_eq!(count_readings(&db), Some(SAMPLE_READINGS));
    // Nothing changed: nothing is rebuilt.
    assert!(
        !second.stderr.contains("rebuilt the answer segments"),
        "{}",
        second.stderr
    );
    assert_eq!(segment_files(&db, "day."), 1);
}

/// The answer segment files beside `db` whose names start with `prefix`.
fn segment_files(db: &std::path::Path, prefix: &str) -> usize {
    let mut folder = db.as_os_str().to_owned();
    folder.push("-segments");
    std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn configuration_comes_from_the_environment_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("env.db");
    let mut cmd = airq(&["ingest"]);
    cmd.env("AIRQ_SOURCE", sample_path())
        .env("AIRQ_DB", &db)
        .env("AIRQ_BACKEND", "embedded")
        .env("AIRQ_BATCH_SIZE", "1000")
        .env("AIRQ_LOG_FORMAT", "json");
    let out = run(cmd);
    out.assert_success();
    assert_eq!(count_readings(&db), Some(SAMPLE_READINGS));
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}

#[test]
fn the_default_db_is_under_the_current_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sample = sample_path();
    let mut cmd = airq(&["ingest", "--source", sample.to_str().expect("utf-8")]);
    cmd.current_dir(dir.path());
    run(cmd).assert_success();
    assert_eq!(
        count_readings(&dir.path().join("data/airq.db")),
        Some(SAMPLE_READINGS)
    );
}

fn ingest_file(dir: &std::path::Path, source: &std::path::Path) -> Output {
    let db = dir.join("airq.db");
    ingest(source, &db)
}

#[test]
fn a_missing_file_fails_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = ingest_file(dir.path(), &dir.path().join("nope.json"));
    out.assert_clean_failure();
    assert!(out.stderr.contains("nope.json"), "{}", out.stderr);
}

/// Issue: a feed file had no size cap (a 2.6 GB sparse file was read
/// whole). One over the download limit, 2 GiB, is refused before it is
/// read, naming the limit and the file; sparse, it costs no disk.
#[test]
fn a_feed_file_over_the_download_limit_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("huge.json");
    let file = std::fs::File::create(&path).expect("created");
    file.set_len((2u64 << 30) + 1).expect("sized");
    drop(file);
    let out = run_for(
        {
            let db = dir.path().join("airq.db");
            airq(&[
                "ingest",
                "--source",
                path.to_str().expect("utf-8 path"),
                "--db",
                db.to_str().expect("utf-8 path"),
            ])
        },
        std::time::Duration::from_secs(30),
    );
    out.assert_clean_failure();
    assert!(
        out.stderr
            .contains("huge.json is larger than 2048 MiB, the limit on a feed"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_document_that_is_not_an_array_fails_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, doc) in [("object.json", "{\"a\": 1}"), ("number.json", "42")] {
        let path = dir.path().join(name);
        std::fs::write(&path, doc).expect("write");
        let out = ingest_file(dir.path(), &path);
        out.assert_clean_failure();
        assert!(out.stderr.contains("not a JSON array"), "{}", out.stderr);
    }
}

#[test]
fn an_array_of_something_else_fails_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("other.json");
    std::fs::write(&path, r#"[{"name": "a"}, {"name": "b"}, 3]"#).expect("write");
    let out = ingest_file(dir.path(), &path);
    out.assert_clean_failure();
    assert!(
        out.stderr
            .contains("none of its 3 entries is a sensor reading"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_empty_or_garbage_document_fails_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, doc) in [("empty.json", ""), ("garbage.json", "<html>oops</html>")] {
        let path = dir.path().join(name);
        std::fs::write(&path, doc).expect("write");
        ingest_file(dir.path(), &path).assert_clean_failure();
    }
}

#[test]
fn a_truncated_document_keeps_its_complete_entries_and_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sample = sample_bytes();
    let cut = sample.len() / 2;
    let path = dir.path().join("truncated.json");
    std::fs::write(&path, &sample[..cut]).expect("write");

    let out = ingest_file(dir.path(), &path);
    out.assert_clean_failure();
    assert!(out.stderr.contains("breaks off"), "{}", out.stderr);
    // "... after N complete entries ..."
    let read: u64 = out
        .stderr
        .split("after ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no entry count in: {}", out.stderr));
    assert!(read > 1000 && read < SAMPLE_ENTRIES, "{read}");
    let stored = count_readings(&dir.path().join("airq.db")).unwrap_or(0);
    assert!(stored > 1000 && stored <= read as i64, "{stored} of {read}");
}

#[test]
fn an_unwritable_store_fails_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A directory where the database file should be.
    let db = dir.path().join("taken");
    std::fs::create_dir(&db).expect("mkdir");
    let sample = sample_path();
    let out = ingest(&sample, &db);
    out.assert_clean_failure();
    assert!(out.stderr.contains("store"), "{}", out.stderr);
}

#[test]
fn bad_flags_are_usage_errors() {
    let out = run(airq(&["ingest", "--backend", "sqlite"]));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("embedded"), "{}", out.stderr);
    let out = run(airq(&["--log-format", "xml", "ingest"]));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    let out = run(airq(&["synth", "--days", "0", "--out", "x.json"]));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
}

/// `--resolution 5min` stores a saved 5-minute feed in the live tier, with
/// the same validation and idempotence as the daily series, and says so.
#[test]
fn a_saved_five_minute_feed_goes_into_the_live_tier() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let sample = sample_path();
    let first = ingest_5min(&sample, &db);
    first.assert_success();
    assert!(
        first.stdout.contains("series:        5min"),
        "{}",
        first.stdout
    );
    assert_eq!(first.summary_value("stored:"), Some(4928));
    assert_eq!(first.summary_value("sensor saturated:"), Some(17));
    assert_eq!(count_readings(&db), Some(0), "not the daily series");
    let again = ingest_5min(&sample, &db);
    again.assert_success();
    assert!(
        again
            .stdout
            .contains("stored:        4928 (0 new, 4928 already stored, 0 replaced)"),
        "{}",
        again.stdout
    );
    let hourly: i64 = rusqlite::Connection::open(&db)
        .expect("db")
        .query_row("SELECT COUNT(*) FROM hourly", [], |r| r.get(0))
        .expect("count");
    assert_eq!(hourly, 4928, "one hour per sensor");
    assert_eq!(
        segment_files(&db, "hour."),
        1,
        "the hourly series' day has its answer segment"
    );

    // The hourly series is made, never ingested.
    let hour = run(airq(&[
        "ingest",
        "--resolution",
        "hour",
        "--source",
        sample.to_str().expect("utf-8 path"),
        "--db",
        db.to_str().expect("utf-8 path"),
    ]));
    assert!(!hour.status.success());
    assert!(
        hour.stderr.contains("ingest it with --resolution 5min"),
        "{}",
        hour.stderr
    );
}

/// The shipped 2019 fragment stores each PM reading with its station's
/// air and the flags the feed decides. Counted by hand from the file's
/// entries (a few lines of Python over it, not this code): 140 SDS011
/// readings; 63 share their location id with a DHT22, so 63 get a
/// humidity and 77 are `no_humidity`; three stations' DHT22 read 95 % or
/// more (99.4 % at location 378 beside SDS011 789; 99.9 % at 7371 beside
/// 14568 and at 8097 beside 15986): `humid`; no PM2.5 above PM10, no
/// `location.indoor`.
#[test]
fn fragment_readings_carry_their_station_air_and_flags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../common/core/tests/fixtures/20190416_v1_data.json.fragment"
    ))
    .expect("the fragment");
    let feed = dir.path().join("fragment.json");
    std::fs::write(&feed, format!("[{}]", text.trim())).expect("write the feed");
    ingest(&feed, &db).assert_success();

    let conn = rusqlite::Connection::open(&db).expect("open");
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
    // The bits of `airq_core::quality::Flag`: indoor 1, pm25_above_pm10 2,
    // humid 4, no_humidity 8.
    assert_eq!(count("SELECT COUNT(*) FROM readings"), 140);
    assert_eq!(
        count("SELECT COUNT(*) FROM readings WHERE humidity IS NOT NULL"),
        63
    );
    assert_eq!(count("SELECT COUNT(*) FROM readings WHERE flags & 8"), 77);
    assert_eq!(
        count("SELECT COUNT(*) FROM readings WHERE (flags & 8 != 0) = (humidity IS NULL)"),
        140,
        "no_humidity exactly where there is none"
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM readings WHERE flags & 4 \
             AND sensor_id IN (789, 14568, 15986)"
        ),
        3
    );
    assert_eq!(count("SELECT COUNT(*) FROM readings WHERE flags & 4"), 3);
    assert_eq!(count("SELECT COUNT(*) FROM readings WHERE flags & 3"), 0);
    let (rh, t): (String, String) = conn
        .query_row(
            "SELECT humidity, temperature FROM readings WHERE loc_id = 6932",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("location 6932");
    assert_eq!((rh.as_str(), t.as_str()), ("29.20", "24.30"));

    // Ingested again: the same flags and air, nothing rewritten.
    let again = ingest(&feed, &db);
    again.assert_success();
    assert_eq!(again.summary_value("stored:"), Some(140));
    assert!(
        again
            .stdout
            .contains("(0 new, 140 already stored, 0 replaced)"),
        "{}",
        again.stdout
    );
}

/// `stuck` and `moved` across ingestions: each feed's readings are
/// compared with the sensor's stored readings of the three days before
/// it. Sensor 77 sends 12.30/7.10 on three days in a row (its third is
/// the third equal reading: `stuck`, bit 16), then on the fourth day it
/// sends the same from 0.01° further north (1.11 km: `moved`, bit 32,
/// and still `stuck`), that feed through a pipe.
#[test]
fn stuck_and_moved_follow_a_sensor_from_feed_to_feed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let entry = |day: u32, lat: &str| {
        format!(
            r#"[{{"id":{day},"timestamp":"2024-03-0{day} 12:00:00","location":{{"id":5077,"latitude":"{lat}","longitude":"9.1800","altitude":"250","country":"DE"}},"sensor":{{"id":77,"sensor_type":{{"id":14,"name":"SDS011","manufacturer":"Nova Fitness"}}}},"sensordatavalues":[{{"value":"12.30","value_type":"P1"}},{{"value":"7.10","value_type":"P2"}}]}}]"#
        )
    };
    for (day, lat) in [(1, "48.7800"), (2, "48.7800"), (3, "48.7800")] {
        let feed = dir.path().join(format!("day{day}.json"));
        std::fs::write(&feed, entry(day, lat)).expect("write the feed");
        ingest(&feed, &db).assert_success();
    }
    // The fourth through a pipe, which cannot be read twice as a file
    // can: it is copied aside first.
    let mut cmd = airq(&[
        "ingest",
        "--source",
        "/dev/stdin",
        "--db",
        db.to_str().expect("utf-8 path"),
    ]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("airq-master");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(entry(4, "48.7900").as_bytes())
            .expect("write the feed into the pipe");
    }
    let out = child.wait_with_output().expect("airq-master ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conn = rusqlite::Connection::open(&db).expect("open");
    let mut stmt = conn
        .prepare("SELECT flags & 48 FROM readings WHERE sensor_id = 77 ORDER BY ts")
        .expect("prepare");
    let flags: Vec<i64> = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(flags, [0, 0, 16, 48]);
}

/// The 5-minute feed is assessed like the daily one (issue 28): each PM
/// reading gets the air of its station's T/RH sensor in the same feed
/// (`data.json` carries every type) and its flags, `stuck` and `moved`
/// read the sensor's 5-minute readings stored in the hour before. Twelve
/// feeds 5 minutes apart (12:00 … 12:55): sensor 77 sends 12.30/7.10 in
/// every one (the twelfth is the twelfth equal reading: `stuck`, bit 16;
/// the eleventh is not); sensor 78 moves 0.01° north (1.1 km: `moved`,
/// bit 32) at 12:05 only; the DHT22 of station 5077 reads 95.00 % at
/// 12:00 (`humid`, 4) and 94.99 % after; sensor 79 sends PM2.5 above
/// PM10 (2) at 12:00 only and is indoors (1) throughout, with no T/RH
/// sensor (`no_humidity`, 8).
#[test]
fn five_minute_feeds_are_assessed_with_their_stations_air() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let pm = |id: u32, at: &str, loc: u32, lat: &str, indoor: u8, p1: &str, p2: &str| {
        format!(
            r#"{{"id":{id}{loc},"timestamp":"{at}","location":{{"id":{loc},"latitude":"{lat}","longitude":"9.1800","altitude":"250","country":"DE","indoor":{indoor}}},"sensor":{{"id":{id},"sensor_type":{{"id":14,"name":"SDS011","manufacturer":"Nova Fitness"}}}},"sensordatavalues":[{{"value":"{p1}","value_type":"P1"}},{{"value":"{p2}","value_type":"P2"}}]}}"#
        )
    };
    let dht = |at: &str, rh: &str| {
        format!(
            r#"{{"id":9,"timestamp":"{at}","location":{{"id":5077,"latitude":"48.7800","longitude":"9.1800","altitude":"250","country":"DE","indoor":0}},"sensor":{{"id":90,"sensor_type":{{"id":9,"name":"DHT22","manufacturer":"various"}}}},"sensordatavalues":[{{"value":"4.50","value_type":"temperature"}},{{"value":"{rh}","value_type":"humidity"}}]}}"#
        )
    };
    for k in 0..12u32 {
        let at = format!("2024-03-01 12:{:02}:00", 5 * k);
        let lat78 = if k == 0 { "48.7800" } else { "48.7900" };
        let p2_79 = if k == 0 { "9.01" } else { "8.00" };
        let p1_78 = format!("{}.00", 20 + k);
        let entries = [
            pm(77, &at, 5077, "48.7800", 0, "12.30", "7.10"),
            pm(78, &at, 5078, lat78, 0, &p1_78, "6.00"),
            pm(79, &at, 5079, "48.7800", 1, "9.00", p2_79),
            dht(&at, if k == 0 { "95.00" } else { "94.99" }),
        ];
        let feed = dir.path().join(format!("feed{k}.json"));
        std::fs::write(&feed, format!("[{}]", entries.join(","))).expect("write the feed");
        ingest_5min(&feed, &db).assert_success();
    }
    let conn = rusqlite::Connection::open(&db).expect("open");
    let column = |sql: &str| -> Vec<(i64, Option<String>)> {
        let mut stmt = conn.prepare(sql).expect(sql);
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect(sql)
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let of = |sensor: u32| {
        column(&format!(
            "SELECT flags, humidity FROM recent WHERE sensor_id = {sensor} ORDER BY ts"
        ))
    };
    let rh = |k: usize| Some(if k == 0 { "95.00" } else { "94.99" }.to_owned());
    let want77: Vec<(i64, Option<String>)> = (0..12)
        .map(|k| {
            (
                if k == 0 {
                    4
                } else if k == 11 {
                    16
                } else {
                    0
                },
                rh(k),
            )
        })
        .collect();
    assert_eq!(of(77), want77, "humid at 12:00, stuck at 12:55");
    let want78: Vec<(i64, Option<String>)> = (0..12)
        .map(|k| (8 + if k == 1 { 32 } else { 0 }, None))
        .collect();
    assert_eq!(of(78), want78, "moved at 12:05 only");
    let want79: Vec<(i64, Option<String>)> = (0..12)
        .map(|k| (1 + 8 + if k == 0 { 2 } else { 0 }, None))
        .collect();
    assert_eq!(of(79), want79);
    // The newest 5-minute reading is the sensors' latest, with its flags.
    assert_eq!(
        column("SELECT flags, humidity FROM latest WHERE sensor_id = 77"),
        vec![(16, rh(11))]
    );
    // Each hour takes its readings' flags (`quality::HourQuality`): 77's
    // `stuck` (the twelfth reading's) and humidity (95.00 + 11 × 94.99) /
    // 12 = 1139.89 / 12 = 94.9908… → 94.99, below 95: not humid; 78's
    // `moved` with `no_humidity`, 40; 79's `indoor` and `no_humidity`, 9,
    // and its P2 mean (9.01 + 11 × 8.00) / 12 = 8.08 below P1 9.00: not
    // `pm25_above_pm10`, though its 12:00 reading was.
    assert_eq!(
        column("SELECT flags, humidity FROM hourly WHERE sensor_id >= 77 ORDER BY sensor_id"),
        vec![(16, rh(1)), (40, None), (9, None)]
    );
}

/// A feed of several days stored in many small batches: each sensor's
/// latest is its newest reading of the feed, whatever the order of the
/// entries (`may_be_latest` hints leave the older ones out of `latest`).
#[test]
fn the_newest_reading_of_a_feed_in_many_batches_is_each_sensors_latest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let entry = |sensor: u32, day: u32| {
        format!(
            r#"{{"id":{sensor}{day},"timestamp":"2024-03-0{day} 12:00:00","location":{{"id":{sensor},"latitude":"48.78{sensor}","longitude":"9.1800","altitude":"250","country":"DE"}},"sensor":{{"id":{sensor},"sensor_type":{{"id":14,"name":"SDS011","manufacturer":"Nova Fitness"}}}},"sensordatavalues":[{{"value":"1{day}.30","value_type":"P1"}},{{"value":"7.10","value_type":"P2"}}]}}"#
        )
    };
    // Sensor 1 in time order, sensor 2 newest first, sensor 3's newest in
    // the middle; batches of two readings.
    let order = [
        (1, 1),
        (2, 4),
        (3, 2),
        (1, 2),
        (2, 3),
        (3, 4),
        (1, 3),
        (2, 2),
        (3, 1),
        (1, 4),
        (2, 1),
        (3, 3),
    ];
    let entries: Vec<String> = order.iter().map(|&(s, d)| entry(s, d)).collect();
    let feed = dir.path().join("feed.json");
    std::fs::write(&feed, format!("[{}]", entries.join(","))).expect("write the feed");
    let db_arg = db.to_str().expect("utf-8 path");
    let feed_arg = feed.to_str().expect("utf-8 path");
    run(airq(&[
        "ingest",
        "--batch-size",
        "2",
        "--source",
        feed_arg,
        "--db",
        db_arg,
    ]))
    .assert_success();
    assert_eq!(count_readings(&db), Some(12));
    let conn = rusqlite::Connection::open(&db).expect("open");
    let mut stmt = conn
        .prepare("SELECT sensor_id, ts, P1 FROM latest ORDER BY sensor_id")
        .expect("prepare");
    let latest: Vec<(i64, i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    // 2024-03-04 12:00:00 UTC = 1,709,553,600 s.
    let day4 = 1_709_553_600;
    assert_eq!(
        latest,
        [1, 2, 3].map(|s| (s, day4, "14.30".to_owned())),
        "each sensor's reading of the 4th, its newest"
    );
}

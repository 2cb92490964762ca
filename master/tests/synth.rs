//! `airq-master synth`: deterministic, feed-shaped, fully ingestible.

mod support;

use std::path::Path;
use support::*;

/// 2 days × 6,000 sensors (more than the template's 4,945, so clones too)
/// × 3 per day.
const SHAPE: [&str; 6] = ["--days", "2", "--sensors", "6000", "--per-day", "3"];
const READINGS: i64 = 2 * 6000 * 3;

fn synth_to(out: &Path, seed: &str) -> Output {
    let template = sample_path();
    let mut args = vec!["synth"];
    args.extend(SHAPE);
    args.extend([
        "--seed",
        seed,
        "--start",
        "2024-03-01",
        "--template",
        template.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    run(airq(&args))
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_does_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b, c) = (
        dir.path().join("a.json"),
        dir.path().join("b.json"),
        dir.path().join("c.json"),
    );
    let out = synth_to(&a, "7");
    out.assert_success();
    assert_eq!(out.summary_value("readings:"), Some(READINGS as u64));
    synth_to(&b, "7").assert_success();
    synth_to(&c, "8").assert_success();
    let (a, b, c) = (
        std::fs::read(&a).expect("a"),
        std::fs::read(&b).expect("b"),
        std::fs::read(&c).expect("c"),
    );
    assert!(a == b, "same seed, different output");
    assert!(a != c, "different seeds, same output");
    assert!(!dir.path().join("a.json.partial").exists());
}

#[test]
fn output_is_feed_shaped_and_ingests_with_no_rejection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let feed = dir.path().join("feed.json");
    synth_to(&feed, "42").assert_success();

    // The feed's schema, values as strings with two decimals.
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&feed).expect("read")).expect("valid JSON");
    let entries = doc.as_array().expect("an array");
    assert_eq!(entries.len() as i64, READINGS);
    let e = &entries[entries.len() - 1];
    for key in ["id", "timestamp", "location", "sensor", "sensordatavalues"] {
        assert!(e.get(key).is_some(), "{key} missing in {e}");
    }
    for key in ["id", "latitude", "longitude", "altitude", "country"] {
        assert!(
            e["location"].get(key).is_some(),
            "location.{key} missing in {e}"
        );
    }
    for key in ["id", "name", "manufacturer"] {
        assert!(e["sensor"]["sensor_type"].get(key).is_some(), "{e}");
    }
    let ts = e["timestamp"].as_str().expect("timestamp string");
    assert!(ts.starts_with("2024-03-02 "), "{ts}");
    for dv in e["sensordatavalues"].as_array().expect("values") {
        let v = dv["value"].as_str().expect("value as string");
        assert_eq!(v.split('.').nth(1).map(str::len), Some(2), "{v}");
        assert!(
            matches!(dv["value_type"].as_str(), Some("P1" | "P2")),
            "{dv}"
        );
    }

    let db = dir.path().join("airq.db");
    let out = ingest(&feed, &db);
    out.assert_success();
    assert_eq!(out.summary_value("entries read:"), Some(READINGS as u64));
    assert_eq!(out.summary_value("rejected:"), Some(0));
    assert_eq!(count_readings(&db), Some(READINGS));

    // Straight into a store: the same readings as through the JSON.
    let direct = dir.path().join("direct.db");
    let template = sample_path();
    let mut args = vec!["synth"];
    args.extend(SHAPE);
    args.extend([
        "--seed",
        "42",
        "--start",
        "2024-03-01",
        "--template",
        template.to_str().expect("utf-8"),
        "--into-store",
        "--db",
        direct.to_str().expect("utf-8"),
    ]);
    let out = run(airq(&args));
    out.assert_success();
    assert_eq!(count_readings(&direct), Some(READINGS));
    assert!(
        dump_readings(&db) == dump_readings(&direct),
        "stores differ"
    );
}

#[test]
fn a_sink_is_required_and_a_bad_template_fails_cleanly() {
    let out = run(airq(&["synth", "--days", "1"]));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);

    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("out.json");
    let out = run(airq(&[
        "synth",
        "--template",
        dir.path().join("missing.json").to_str().expect("utf-8"),
        "--out",
        out_path.to_str().expect("utf-8"),
    ]));
    out.assert_clean_failure();
    assert!(out.stderr.contains("template"), "{}", out.stderr);
    assert!(!out_path.exists());
}

/// The live benchmark reads a directory of 5-minute feed files feed by
/// feed, as it ingests the feeds it generates: the same readings either
/// way; a file of another name is left alone, a directory without feeds
/// is a clear error.
#[test]
fn the_live_benchmark_reads_a_directory_of_feeds_as_it_generates_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let feeds = dir.path().join("feeds");
    let template = sample_path();
    let template = template.to_str().expect("utf-8");
    // 1 day × 20 sensors: 288 feeds of 20 readings.
    let shape = [
        "--resolution",
        "5min",
        "--days",
        "1",
        "--sensors",
        "20",
        "--template",
        template,
    ];
    let mut args = vec!["synth", "--out", feeds.to_str().expect("utf-8")];
    args.extend(shape);
    run(airq(&args)).assert_success();
    std::fs::write(feeds.join("notes.txt"), "not a feed").expect("a stray file");
    let bench_dir = dir.path().to_str().expect("utf-8");
    let mut args = vec!["bench-ingest", "--dir", bench_dir];
    args.extend(shape);
    let generated = run(airq(&args));
    generated.assert_success();
    args.extend(["--source", feeds.to_str().expect("utf-8")]);
    let read = run(airq(&args));
    read.assert_success();
    assert!(
        read.stdout.contains("288 five-minute feed files from"),
        "{}",
        read.stdout
    );
    for out in [&generated, &read] {
        assert!(
            out.stdout.contains("ingested:   288 feeds, 5760 readings"),
            "{}",
            out.stdout
        );
    }

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("a directory");
    for source in [empty.clone(), dir.path().join("missing")] {
        let mut args = vec!["bench-ingest", "--dir", bench_dir, "--resolution", "5min"];
        args.extend(["--source", source.to_str().expect("utf-8")]);
        let out = run(airq(&args));
        out.assert_clean_failure();
        assert!(out.stderr.contains("5-minute feed files"), "{}", out.stderr);
    }
    // A broken feed among others stops the run with its error (the feeds
    // after it are not waited for) and leaves no database behind.
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).expect("a directory");
    let mut names: Vec<_> = std::fs::read_dir(&feeds)
        .expect("the feeds")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    for name in &names[..6] {
        std::fs::copy(feeds.join(name), broken.join(name)).expect("a copy");
    }
    std::fs::write(broken.join(&names[0]), "{").expect("a broken feed");
    let mut args = vec!["bench-ingest", "--dir", bench_dir, "--resolution", "5min"];
    args.extend(["--source", broken.to_str().expect("utf-8")]);
    let out = run_for(airq(&args), std::time::Duration::from_secs(120));
    out.assert_clean_failure();
    assert!(out.stderr.contains("not a JSON array"), "{}", out.stderr);
    // Each run's database is gone, and a refused run made none.
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("the directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("airq-bench-live"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

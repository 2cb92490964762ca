//! The AWS backend end to end, with the real binaries on `--backend aws`
//! against the moto emulator (`AIRQ_TEST_AWS_ENDPOINT`; `bash
//! scripts/test.sh` starts it): provision (twice: the second run changes
//! nothing) → ingest the sample with `airq-master` → `airq-deploy migrate`
//! (nothing to do) → gateway and worker →
//! direct query → queued queries → poll → the same CSV → destroy.

mod support;

use airq_core::Timestamp;
use airq_deploy::emulator;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use support::{command, expected_csv, queued, Service, HOUR_ALL, HOUR_DE_LOW, SAMPLE};

fn run(name: &str, args: &[String]) -> Output {
    support::run(command(name).args(args))
}

/// Starts `name` and, if `listening`, waits for `listening on http://ADDR`.
fn start(name: &str, args: &[String], listening: bool) -> (Service, String) {
    let mut cmd = command(name);
    cmd.args(args);
    support::start(cmd, listening)
}

/// One sensor in Berlin, a day after the sample.
const LATER_FEED: &str = r#"[{"id":1,"timestamp":"2018-06-04 20:00:00","location":{"id":990101,"latitude":"52.5200","longitude":"13.4050","altitude":"34.0","country":"DE"},"sensor":{"id":990001,"sensor_type":{"id":14,"name":"SDS011","manufacturer":"Nova Fitness"}},"sensordatavalues":[{"value":"20.00","value_type":"P1"},{"value":"12.00","value_type":"P2"}]}]"#;

/// Reads the event stream on from `text` until it holds `syncs` sync
/// events (30 s at most).
async fn until_syncs(stream: &mut reqwest::Response, mut text: String, syncs: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while text.matches("event: sync").count() < syncs {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no sync {syncs} within 30 s: {text}"))
            .expect("reading the stream")
            .unwrap_or_else(|| panic!("the stream ended: {text}"));
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

/// The ids of the sync events in `text`, in order.
fn sync_ids(text: &str) -> Vec<u64> {
    text.split("\n\n")
        .filter(|block| block.contains("event: sync"))
        .filter_map(|block| {
            block
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .and_then(|id| id.parse().ok())
        })
        .collect()
}

/// A command line: the given head, the test's AWS flags, the given tail.
type Args<'a> = dyn Fn(&[&str], &[&str]) -> Vec<String> + 'a;

/// One SDS011 entry of a Sensor.Community feed in DE: the sensor and its
/// site `(sensor, latitude, longitude, altitude)` (its location id is the
/// sensor's + 100), and its `(P1, P2)`.
fn feed_entry(id: i64, at: Timestamp, site: (u64, &str, &str, &str), pm: (&str, &str)) -> String {
    let (sensor, lat, lon, alt) = site;
    format!(
        r#"{{"id":{id},"timestamp":"{at}","location":{{"id":{},"latitude":"{lat}","longitude":"{lon}","altitude":"{alt}","country":"DE"}},"sensor":{{"id":{sensor},"sensor_type":{{"id":14,"name":"SDS011","manufacturer":"Nova Fitness"}}}},"sensordatavalues":[{{"value":"{}","value_type":"P1"}},{{"value":"{}","value_type":"P2"}}]}}"#,
        sensor + 100,
        pm.0,
        pm.1
    )
}

/// `airq-master ingest --resolution 5min` of a feed of `entries`.
fn ingest_five_minutes(with: &Args<'_>, entries: &[String]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let feed = dir.path().join("feed.json");
    std::fs::write(&feed, format!("[{}]", entries.join(","))).expect("writing a feed");
    run(
        "airq-master",
        &with(
            &["--backend", "aws"],
            &[
                "ingest",
                "--resolution",
                "5min",
                "--source",
                &feed.to_string_lossy(),
            ],
        ),
    );
}

/// A 5-minute feed through the real master into DynamoDB, and the hourly
/// and 5-minute series through the gateway: an hour of 12 readings of one
/// sensor, P2 10.00 each, is one hourly row of mean 10.00 (one hour: no
/// index yet, AQI and Range empty) and 12 five-minute rows.
async fn the_live_tier_answers(http: &reqwest::Client, base: &str, with: &Args<'_>) {
    let start = Timestamp::parse_feed("2018-06-04 21:00:00")
        .expect("a time")
        .0;
    let entries: Vec<String> = (0..12)
        .map(|k| {
            let site = (990002, "52.5200", "13.4050", "34.0");
            feed_entry(
                100 + k,
                Timestamp(start + 300 * k),
                site,
                ("20.00", "10.00"),
            )
        })
        .collect();
    ingest_five_minutes(with, &entries);
    let csv = |resolution: &'static str| {
        let body = format!(
            r#"{{"startDate":"2018-06-04 21:00:00","endDate":"2018-06-04 21:59:59","resolution":"{resolution}"}}"#
        );
        async move {
            let r = http
                .post(format!("{base}/api/query"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("POST");
            assert_eq!(r.status(), 200, "resolution {resolution}");
            r.text().await.expect("the CSV")
        }
    };
    let hours = csv("hour").await;
    assert_eq!(
        hours.lines().skip(1).collect::<Vec<_>>(),
        [",2018-06-04 21:00:00,990002,SDS011,990102,DE,52.5200,13.4050,34.0,20.00,10.00,,"],
        "{hours}"
    );
    let five = csv("5min").await;
    assert_eq!(five.lines().skip(1).count(), 12, "{five}");
    let meta: serde_json::Value = http
        .get(format!("{base}/api/meta"))
        .send()
        .await
        .expect("GET /api/meta")
        .json()
        .await
        .expect("JSON");
    let names: Vec<&str> = meta["resolutions"]
        .as_array()
        .expect("resolutions")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["day", "hour", "5min"], "{meta}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_ingest_and_query_on_aws() {
    let endpoint = emulator::endpoint();
    let prefix = emulator::unique_prefix();
    let bucket = emulator::names(&prefix).bucket;
    let aws: Vec<String> = [
        "--endpoint-url",
        &endpoint,
        "--aws-prefix",
        &prefix,
        "--bucket",
        &bucket,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let with = |head: &[&str], tail: &[&str]| -> Vec<String> {
        head.iter()
            .map(|s| s.to_string())
            .chain(aws.iter().cloned())
            .chain(tail.iter().map(|s| s.to_string()))
            .collect()
    };

    // Provision, then provision again: the second run is a no-op.
    let first = run(
        "airq-deploy",
        &with(&["provision"], &["--max-receives", "2"]),
    );
    let first = String::from_utf8_lossy(&first.stdout).into_owned();
    assert_eq!(
        first.lines().filter(|l| l.starts_with("created")).count(),
        14,
        "5 tables, 3 time-to-live settings, 4 queues, the bucket and its rules:\n{first}"
    );
    assert!(first.contains("export AIRQ_BACKEND=aws"), "{first}");
    assert!(
        first.contains(&format!("export AIRQ_BUCKET={bucket}")),
        "{first}"
    );
    let second = run(
        "airq-deploy",
        &with(&["provision"], &["--max-receives", "2"]),
    );
    let second = String::from_utf8_lossy(&second.stdout).into_owned();
    assert!(
        second.contains("nothing changed")
            && !second
                .lines()
                .any(|l| l.starts_with("created") || l.starts_with("updated")),
        "the second provision changes nothing:\n{second}"
    );

    // A gateway whose results would outlive the bucket's expiry rule for
    // large results (8 days by default) refuses to start, saying what to do.
    let mut refused = command("airq-gateway")
        .args(with(
            &["--backend", "aws", "--listen", "127.0.0.1:0"],
            &["--result-ttl", "30days"],
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting airq-gateway");
    let began = Instant::now();
    let status = loop {
        if let Some(status) = refused.try_wait().expect("waiting for airq-gateway") {
            break status;
        }
        if began.elapsed() > Duration::from_secs(30) {
            let _ = refused.kill();
            panic!("the gateway started with a result TTL the bucket does not keep");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut e) = refused.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("after 8 days") && stderr.contains("--result-object-days 30"),
        "{stderr}"
    );

    // Ingest the sample with the real master.
    run(
        "airq-master",
        &with(&["--backend", "aws"], &["ingest", "--source", SAMPLE]),
    );

    // On a deployment of this version the migration has nothing to do: it
    // reads every item and writes none.
    let migrated = run("airq-deploy", &with(&["migrate"], &["--segments", "2"]));
    let migrated = String::from_utf8_lossy(&migrated.stdout).into_owned();
    assert!(
        migrated.contains("by_cell")
            && migrated.contains("(0 upgraded")
            && migrated.contains("0 new, 0 moved forward")
            && migrated.contains("0 per-sensor latest items of an older airq deleted")
            && migrated.ends_with("migrated.\n"),
        "{migrated}"
    );

    let (_worker, _) = start(
        "airq-worker",
        &with(&["--backend", "aws"], &["--concurrency", "2"]),
        false,
    );
    let (_gateway, base) = start(
        "airq-gateway",
        &with(
            &["--backend", "aws", "--listen", "127.0.0.1:0"],
            &["--key-cache-ttl", "200ms", "--webhook-allow-loopback"],
        ),
        true,
    );
    let http = reqwest::Client::new();

    let meta: serde_json::Value = http
        .get(format!("{base}/api/meta"))
        .send()
        .await
        .expect("GET meta")
        .json()
        .await
        .expect("meta json");
    assert_eq!(meta["first"], "2018-06-03 20:42:52", "{meta}");
    assert!(
        meta["countries"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == "DE")),
        "{meta}"
    );

    support::direct_and_queued_agree(&http, &base).await;

    // The live stream on DynamoDB's data version: the place's latest
    // readings and a sync, then a reading the master stores later, and a
    // sync of a higher version.
    let mut stream = http
        .get(format!("{base}/api/stream/latest?near=52.52,13.405,2"))
        .send()
        .await
        .expect("GET the stream");
    assert_eq!(stream.status(), 200);
    let first = until_syncs(&mut stream, String::new(), 1).await;
    let version = sync_ids(&first)[0];
    let dir = tempfile::tempdir().expect("a temporary directory");
    let feed = dir.path().join("later.json");
    std::fs::write(&feed, LATER_FEED).expect("writing a feed");
    run(
        "airq-master",
        &with(
            &["--backend", "aws"],
            &["ingest", "--source", &feed.to_string_lossy()],
        ),
    );
    let both = until_syncs(&mut stream, first.clone(), 2).await;
    let after = &both[first.len()..];
    assert!(
        after.contains("event: reading") && after.contains("\"sensor_id\":990001"),
        "{after}"
    );
    assert!(sync_ids(&both)[1] > version, "{after}");
    drop(stream);

    // After the stream (whose versions it would move).
    the_live_tier_answers(&http, &base, &with).await;

    // API keys on DynamoDB: made by airq-deploy, honoured by the gateway,
    // refused once revoked (this gateway remembers a key for 200 ms).
    let made = run(
        "airq-deploy",
        &with(
            &["keys", "--backend", "aws"],
            &["create", "--name", "e2e", "--json"],
        ),
    );
    let made: serde_json::Value =
        serde_json::from_slice(&made.stdout).expect("keys create --json prints JSON");
    let key = made["key"].as_str().expect("the key").to_owned();
    let id = made["id"].as_str().expect("the key's id").to_owned();
    let with_key = || {
        http.post(format!("{base}/api/query"))
            .header("content-type", "application/json")
            .header("x-api-key", &key)
            .body(HOUR_DE_LOW)
    };
    let keyed = with_key().send().await.expect("POST");
    assert_eq!(keyed.status(), 200);
    assert_eq!(
        keyed.headers()["ratelimit-policy"],
        "\"submits\";q=60;w=60",
        "the key's tier (standard) applies"
    );
    // Alerts on DynamoDB: made, read and deleted with the key.
    let alert = http
        .post(format!("{base}/api/alerts"))
        .header("content-type", "application/json")
        .header("x-api-key", &key)
        .body(
            r#"{"place":{"country":"DE"},"index":"us-epa","threshold":{"band":"Unhealthy"},"webhookUrl":"http://127.0.0.1:9/hook","cooldown":"1h"}"#,
        )
        .send()
        .await
        .expect("POST /api/alerts");
    assert_eq!(alert.status(), 201);
    let alert: serde_json::Value = alert.json().await.expect("the alert");
    let alert_url = format!(
        "{base}/api/alerts/{}",
        alert["id"].as_str().expect("its id")
    );
    // Two hours of PM2.5 at 200 µg/m³ up to the last hour, for a sensor
    // in DE: the NowCast is 200.0, US EPA 201–300 ("Very Unhealthy"), so
    // the place (its median) enters the alert's band; the gateway
    // evaluates after the ingestion and tries the webhook (nobody listens
    // on port 9: the attempt fails and is recorded).
    let now = Timestamp::now().0;
    let hour = now - now.rem_euclid(3600);
    let entries: Vec<String> = (0..24)
        .map(|k| {
            let site = (990003, "50.1100", "8.6800", "100.0");
            feed_entry(
                500 + k,
                Timestamp(hour - 7200 + 300 * k),
                site,
                ("250.00", "200.00"),
            )
        })
        .collect();
    ingest_five_minutes(&with, &entries);
    let deadline = Instant::now() + Duration::from_secs(60);
    let read = loop {
        let read: serde_json::Value = http
            .get(&alert_url)
            .header("x-api-key", &key)
            .send()
            .await
            .expect("GET the alert")
            .json()
            .await
            .expect("the alert");
        let tried = read["deliveries"]
            .as_array()
            .and_then(|d| d.first())
            .is_some_and(|d| d["attempts"].as_u64().is_some_and(|a| a >= 1));
        if read["state"]["inside"] == true && tried {
            break read;
        }
        assert!(
            Instant::now() < deadline,
            "the alert entered its band and its webhook was tried: {read}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(read["deliveries"][0]["event"], "alert.entered", "{read}");
    assert_eq!(read["now"]["sensors"], 1, "{read}");
    let deleted = http
        .delete(&alert_url)
        .header("x-api-key", &key)
        .send()
        .await
        .expect("DELETE the alert");
    assert_eq!(deleted.status(), 204);

    let listed = run(
        "airq-deploy",
        &with(&["keys", "--backend", "aws"], &["list"]),
    );
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains(&id) && !listed.contains(&key[5..]),
        "{listed}"
    );
    run(
        "airq-deploy",
        &with(&["keys", "--backend", "aws"], &["revoke", &id]),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = with_key().send().await.expect("POST").status();
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a revoked key is refused once the gateway's cache forgets it; got {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A result larger than an SQS message: worker → S3 → gateway → S3.
    let want_all = expected_csv(HOUR_ALL);
    assert!(want_all.len() > 256 * 1024, "{} bytes", want_all.len());
    assert_eq!(
        queued(&http, &base, HOUR_ALL).await,
        want_all,
        "a large result arrives intact"
    );

    drop(_gateway);
    drop(_worker);
    let gone = run("airq-deploy", &with(&["destroy"], &["--yes"]));
    let gone = String::from_utf8_lossy(&gone.stdout).into_owned();
    assert_eq!(
        gone.lines().filter(|l| l.starts_with("deleted")).count(),
        10,
        "5 tables, 4 queues and the bucket:\n{gone}"
    );
}

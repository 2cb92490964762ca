//! The live stream, end to end with the real binaries: `airq-master
//! ingest --resolution 5min` writes saved 5-minute feeds into the store,
//! and a gateway (another process, told nothing) streams the changes of a
//! place (`GET /api/stream/latest`).

mod support;

use airq_core::Timestamp;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{client, gateway};

/// Bounds every stream read: a stream that stalls fails the test.
const STREAM_LIMIT: Duration = Duration::from_secs(30);
/// Berlin's box: sensors 1 and 2 are in it, 3 (Paris) is not.
const BERLIN: &str = "13.0,52.0,14.0,53.0";

/// The master binary, built beside the gateway (`cargo build --workspace
/// --bins`, as scripts/test.sh does first).
fn master_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_airq-gateway"))
        .with_file_name(format!("airq-master{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: build every binary first (`cargo build --workspace --bins`)",
        bin.display()
    );
    bin
}

/// A time `minutes` after the start of the current hour, an hour ago, as
/// the feed writes it: recent enough for the recent tier's retention.
fn feed_time(minutes: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let t = (now / 3600 - 1) * 3600 + minutes * 60;
    Timestamp(i64::try_from(t).expect("a time")).to_string()
}

/// A sensor's place: (country, latitude, longitude).
fn site(sensor: u64) -> (&'static str, &'static str, &'static str) {
    match sensor {
        3 => ("FR", "48.8566", "2.3522"),
        _ => ("DE", "52.5200", "13.4050"),
    }
}

/// A 5-minute feed of `(sensor, PM2.5)` at `time`, saved in `dir`.
fn feed(dir: &Path, name: &str, time: &str, values: &[(u64, &str)]) -> PathBuf {
    let entries: Vec<Value> = values
        .iter()
        .map(|&(sensor, p2)| {
            let (country, lat, lon) = site(sensor);
            serde_json::json!({
                "id": sensor * 1000 + u64::from(time.as_bytes()[15]),
                "timestamp": time,
                "location": {"id": sensor + 100, "latitude": lat, "longitude": lon,
                    "altitude": "34.0", "country": country},
                "sensor": {"id": sensor, "sensor_type": {"id": 14, "name": "SDS011",
                    "manufacturer": "Nova Fitness"}},
                "sensordatavalues": [
                    {"value": "20.00", "value_type": "P1"},
                    {"value": p2, "value_type": "P2"}
                ]
            })
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(&entries).expect("JSON")).expect("writing a feed");
    path
}

/// `airq-master ingest --resolution 5min` of `feed` into `db`.
fn ingest(db: &Path, feed: &Path) {
    let out = Command::new(master_bin())
        .args(["ingest", "--resolution", "5min", "--source"])
        .arg(feed)
        .arg("--db")
        .arg(db)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running airq-master");
    assert!(
        out.status.success(),
        "ingest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<String>,
    event: String,
    data: Value,
    /// `data` as sent.
    raw: String,
}

/// A number field's text as sent (`"P2":10.00` → `10.00`).
fn number_text(raw: &str, field: &str) -> String {
    let key = format!("\"{field}\":");
    let from = raw.find(&key).map(|i| i + key.len()).expect("the field");
    raw[from..]
        .split([',', '}'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// An open stream, read event by event.
struct Events {
    response: reqwest::Response,
    text: String,
}

impl Events {
    async fn open(url: &str, last_event_id: Option<&str>) -> Events {
        let mut request = client().get(url).header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("GET the stream");
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{url}"
        );
        Events {
            response,
            text: String::new(),
        }
    }

    /// The next event (heartbeat comments skipped), parsing the
    /// `text/event-stream` framing by hand as the spec's processing model
    /// does: blocks end with a blank line.
    async fn next(&mut self) -> Sse {
        let read = async {
            loop {
                while let Some(end) = self.text.find("\n\n") {
                    let block: String = self.text.drain(..end + 2).collect();
                    let Some((id, event, data)) = support::sse_block(&block) else {
                        continue; // a heartbeat comment
                    };
                    return Sse {
                        id,
                        event,
                        data: serde_json::from_str(&data).expect("event data is JSON"),
                        raw: data,
                    };
                }
                let chunk = self.response.chunk().await.expect("reading the stream");
                let bytes = chunk.expect("the stream ended early");
                self.text
                    .push_str(std::str::from_utf8(&bytes).expect("UTF-8"));
            }
        };
        tokio::time::timeout(STREAM_LIMIT, read)
            .await
            .expect("an event within the limit")
    }

    /// The `reading` events up to the next `sync`, as (sensor, timestamp,
    /// P2), and that `sync`.
    async fn step(&mut self) -> (Vec<(u64, String, String)>, Sse) {
        let mut readings = Vec::new();
        loop {
            let e = self.next().await;
            match e.event.as_str() {
                "reading" => readings.push((
                    e.data["sensor_id"].as_u64().expect("sensor_id"),
                    e.data["timestamp"].as_str().expect("timestamp").to_owned(),
                    number_text(&e.raw, "P2"),
                )),
                "sync" => return (readings, e),
                other => panic!("unexpected event {other}: {e:?}"),
            }
        }
    }

    /// The `reading` events of the steps up to the `sync` of `version`
    /// (the gateway may not have read the last ingestions yet when the
    /// stream opens: they come as further steps).
    async fn until_version(&mut self, version: u64) -> Vec<(u64, String, String)> {
        let mut readings = Vec::new();
        loop {
            let (more, sync) = self.step().await;
            readings.extend(more);
            let at: u64 = sync.id.as_deref().expect("id").parse().expect("a version");
            assert!(at <= version, "sync {at} past {version}");
            if at == version {
                return readings;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_sends_its_places_changes_of_each_ingestion_and_resumes_without_loss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let (t1, t2, t3, t4) = (feed_time(5), feed_time(10), feed_time(15), feed_time(20));
    ingest(
        &db,
        &feed(
            dir.path(),
            "a.json",
            &t1,
            &[(1, "10.00"), (2, "11.00"), (3, "12.00")],
        ),
    );
    let g = gateway(&db, &[]);
    let url = g.url(&format!("/api/stream/latest?bbox={BERLIN}&index=us-epa"));

    // First the place's latest readings, then sync.
    let mut s = Events::open(&url, None).await;
    let (first, sync) = s.step().await;
    assert_eq!(
        first,
        vec![
            (1, t1.clone(), "10.00".to_owned()),
            (2, t1.clone(), "11.00".to_owned())
        ],
        "the place's sensors only, in sensor order"
    );
    let v1: u64 = sync
        .id
        .as_deref()
        .expect("sync has an id")
        .parse()
        .expect("a version");
    assert_eq!(sync.data["version"], v1);
    assert_eq!(sync.data["readings"], 2);

    // The next ingestion: sensor 1 (in the place) and 3 (not).
    let b = feed(dir.path(), "b.json", &t2, &[(1, "13.00"), (3, "14.00")]);
    ingest(&db, &b);
    let (second, sync) = s.step().await;
    assert_eq!(second, vec![(1, t2.clone(), "13.00".to_owned())]);
    let v2: u64 = sync.id.as_deref().expect("id").parse().expect("a version");
    assert!(v2 > v1, "{v2} after {v1}");
    assert_eq!(sync.data["readings"], 1);

    // A reading event is a line of the NDJSON answer of the latest
    // readings, with the index asked for.
    let latest = client()
        .get(g.url(&format!(
            "/api/latest?bbox={BERLIN}&index=us-epa&format=ndjson"
        )))
        .send()
        .await
        .expect("GET /api/latest")
        .text()
        .await
        .expect("body");
    let line: Value = serde_json::from_str(latest.lines().next().expect("a line")).expect("JSON");
    assert_eq!(line["sensor_id"], 1);
    assert!(line.get("AQI").is_some());

    // The same feed again changes nothing: no step comes. Then the client
    // goes away, two ingestions pass, and it resumes from v2.
    ingest(&db, &b);
    drop(s);
    ingest(
        &db,
        &feed(dir.path(), "c.json", &t3, &[(2, "15.00"), (3, "16.00")]),
    );
    ingest(&db, &feed(dir.path(), "d.json", &t4, &[(1, "17.00")]));
    // The repeated feed made no version: c and d are v2 + 1 and v2 + 2.
    let v4 = v2 + 2;
    let mut s = Events::open(&url, Some(&v2.to_string())).await;
    let mut resumed = s.until_version(v4).await;
    resumed.sort();
    assert_eq!(
        resumed,
        vec![
            (1, t4.clone(), "17.00".to_owned()),
            (2, t3.clone(), "15.00".to_owned())
        ],
        "each sensor of the place that changed after v2, as it is now"
    );

    // Resuming from the newest version sends nothing but sync.
    let mut s = Events::open(&url, Some(&v4.to_string())).await;
    let (none, sync) = s.step().await;
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(sync.id.as_deref(), Some(v4.to_string().as_str()));

    // Another place sees Paris only.
    let mut fr = Events::open(&g.url("/api/stream/latest?country=FR"), None).await;
    let (paris, _) = fr.step().await;
    assert_eq!(paris, vec![(3, t3.clone(), "16.00".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_bounded_and_bad_requests_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let t = feed_time(5);
    ingest(
        &db,
        &feed(
            dir.path(),
            "a.json",
            &t,
            &[(1, "10.00"), (2, "11.00"), (3, "12.00")],
        ),
    );
    let g = gateway(
        &db,
        &[
            "--max-stream-sensors",
            "2",
            "--max-streams-per-client",
            "2",
            "--max-streams",
            "3",
        ],
    );
    let error = |r: reqwest::Response| async move {
        let status = r.status();
        let body: Value = r.json().await.expect("a JSON error");
        (status, body)
    };

    // Three sensors in the world, two allowed: narrow it.
    let r = client()
        .get(g.url("/api/stream/latest"))
        .send()
        .await
        .expect("GET");
    let (status, body) = error(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["fields"][0]["message"].as_str().expect("a message");
    assert!(
        message.contains("3 sensors") && message.contains("narrow"),
        "{message}"
    );

    // Bad fields are named, as for GET /api/latest; a stream is NDJSON.
    let r = client()
        .get(g.url("/api/stream/latest?country=DE&index=aqi&format=csv"))
        .send()
        .await
        .expect("GET");
    let (status, body) = error(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["fields"][0]["field"], "index", "{body}");
    let r = client()
        .get(g.url("/api/stream/latest?country=DE&format=csv"))
        .send()
        .await
        .expect("GET");
    let (status, body) = error(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["fields"][0]["field"], "format", "{body}");

    // Two streams per client: a third is 429, and a place comes free when
    // one closes.
    let url = g.url("/api/stream/latest?country=DE&format=ndjson");
    let mut a = Events::open(&url, None).await;
    let b = Events::open(&url, None).await;
    let r = client().get(&url).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let (_, body) = error(r).await;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("2 live streams")),
        "{body}"
    );
    let (readings, _) = a.step().await;
    assert_eq!(readings.len(), 2);
    drop(b);
    support::eventually(
        "a place frees when a stream closes",
        50,
        Duration::from_millis(100),
        || async {
            let r = client().get(&url).send().await.ok()?;
            (r.status() == StatusCode::OK).then_some(())
        },
    )
    .await;
}

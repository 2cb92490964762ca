//! Alerts, end to end with the real gateway: 5-minute readings written to
//! the store by this process (another process than the gateway, which is
//! told nothing), webhooks received by small HTTP servers of this test on
//! loopback (`--webhook-allow-loopback`), signatures checked as a receiver
//! would, from RFC 2104's HMAC over SHA-256 written out here.

mod support;

use airq_core::keys::{generate, KeyLimits, KeyStore};
use airq_core::store::ReadingStore;
use airq_core::{Indices, Reading, Timestamp};
use airq_embedded::{Db, SqliteKeyStore, SqliteReadingStore};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{client, eventually, gateway};

/// What a receiver got: each request's headers and body.
type Inbox = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// How a test receiver answers.
#[derive(Clone, Copy)]
enum Behaviour {
    /// 204 at once.
    Good,
    /// 500 to the first two requests, then 204.
    FailsTwice,
    /// Never answers.
    Silent,
    /// 307 to the cloud metadata address.
    RedirectsToMetadata,
}

/// A receiver on loopback: its URL and what it got.
async fn receiver(behaviour: Behaviour) -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let got = inbox.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let got = got.clone();
            async move {
                let n = {
                    let mut got = got.lock().expect("inbox");
                    got.push((headers, body));
                    got.len()
                };
                match behaviour {
                    Behaviour::Good => AxumStatus::NO_CONTENT.into_response(),
                    Behaviour::FailsTwice if n <= 2 => {
                        AxumStatus::INTERNAL_SERVER_ERROR.into_response()
                    }
                    Behaviour::FailsTwice => AxumStatus::NO_CONTENT.into_response(),
                    Behaviour::Silent => {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        AxumStatus::NO_CONTENT.into_response()
                    }
                    Behaviour::RedirectsToMetadata => (
                        AxumStatus::TEMPORARY_REDIRECT,
                        [("location", "http://169.254.169.254/latest/meta-data/")],
                    )
                        .into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a receiver's port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), inbox)
}

/// HMAC-SHA256 (RFC 2104): H((K ⊕ opad) ‖ H((K ⊕ ipad) ‖ m)), B = 64.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(k.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Checks a delivery as a Standard Webhooks receiver does: the signature
/// over `id.timestamp.body` with the secret's key, a recent timestamp.
fn verify(secret: &str, headers: &HeaderMap, body: &str) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("base64");
    let header = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("{name} is sent"))
            .to_str()
            .expect("ASCII")
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let t: i64 = timestamp.parse().expect("a Unix time");
    assert!((Timestamp::now().0 - t).abs() < 300, "a recent timestamp");
    let expected = b64.encode(hmac_sha256(
        &key,
        format!("{id}.{timestamp}.{body}").as_bytes(),
    ));
    assert!(
        signature.split(' ').any(|s| s == format!("v1,{expected}")),
        "signature {signature} is v1,{expected}"
    );
    assert_eq!(headers["content-type"], "application/json");
}

/// Sensors 1–3 in Berlin: three hours of 5-minute readings up to the
/// start of this hour, PM2.5 `old` in the first two and `last` in the
/// third (PM10 20 µg/m³), stored as the live ingestion stores them.
async fn hours(db: &Path, old: &str, last: &str) {
    let store = SqliteReadingStore::new(Db::open(db).expect("the store"));
    let hour = Timestamp::now().0 / 3600 * 3600;
    let mut readings = Vec::new();
    for sensor in 1..=3u64 {
        for k in 0..36i64 {
            let t = hour - 3 * 3600 + k * 300;
            readings.push(Reading {
                id: None,
                timestamp: Timestamp(t),
                sensor_id: sensor,
                sensor_type: "SDS011".into(),
                loc_id: Some(100 + sensor),
                loc_country: "DE".into(),
                loc_lat: format!("52.5{sensor}"),
                loc_long: "13.40".into(),
                loc_alt: "34".into(),
                p1: Some("20.00".into()),
                p2: Some(if k < 24 { old } else { last }.into()),
                indices: Indices::lowest(),
                samples: None,
                basis: None,
                flags: Default::default(),
                air: Default::default(),
            });
        }
    }
    store.put_recent(readings).await.expect("storing readings");
}

fn alert_body(url: &str) -> String {
    json!({
        "place": {"near": {"lat": 52.52, "lon": 13.40, "radiusKm": 10}},
        "index": "us-epa",
        "threshold": {"band": "Unhealthy"},
        "webhookUrl": url,
        "cooldown": "1h",
    })
    .to_string()
}

async fn post_alert(url: &str, key: &str, body: String) -> reqwest::Response {
    client()
        .post(url)
        .header("content-type", "application/json")
        .header("x-api-key", key)
        .body(body)
        .send()
        .await
        .expect("POST /api/alerts")
}

async fn get_alert(base: &support::Service, key: &str, id: &str) -> (StatusCode, Value) {
    let r = client()
        .get(base.url(&format!("/api/alerts/{id}")))
        .header("x-api-key", key)
        .send()
        .await
        .expect("GET an alert");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The deliveries of an alert once `done` says they are all there.
async fn deliveries_when(
    g: &support::Service,
    key: &str,
    id: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    eventually(what, 150, Duration::from_millis(100), || async {
        let (_, alert) = get_alert(g, key, id).await;
        let list = alert["deliveries"].as_array().cloned().unwrap_or_default();
        done(&list).then_some(list)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_enter_leave_cool_down_retry_and_dead_letter_signed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    hours(&db, "5.00", "5.00").await;
    let key = generate("alerts test", "standard", KeyLimits::default()).expect("a key");
    SqliteKeyStore::new(Db::open(&db).expect("db"))
        .insert(&key.record)
        .await
        .expect("storing the key");
    let other = generate("someone else", "standard", KeyLimits::default()).expect("a key");
    SqliteKeyStore::new(Db::open(&db).expect("db"))
        .insert(&other.record)
        .await
        .expect("storing the key");
    let g = gateway(
        &db,
        &[
            "--webhook-allow-loopback",
            "--webhook-timeout",
            "1s",
            "--webhook-retry-first",
            "200ms",
            "--webhook-give-up-after",
            "3s",
            "--max-alerts-per-key",
            "4",
        ],
    );
    let alerts = g.url("/api/alerts");

    // Alerts need a key.
    let r = client()
        .post(&alerts)
        .header("content-type", "application/json")
        .body(alert_body("http://127.0.0.1:9/hook"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let mut made = Vec::new();
    for behaviour in [
        Behaviour::Good,
        Behaviour::FailsTwice,
        Behaviour::Silent,
        Behaviour::RedirectsToMetadata,
    ] {
        let (url, inbox) = receiver(behaviour).await;
        let r = post_alert(&alerts, &key.key, alert_body(&url)).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let location = r.headers()["location"]
            .to_str()
            .expect("Location")
            .to_owned();
        let body: Value = r.json().await.expect("JSON");
        let id = body["id"].as_str().expect("an id").to_owned();
        assert_eq!(location, format!("/api/alerts/{id}"));
        let secret = body["secret"]
            .as_str()
            .expect("the secret, once")
            .to_owned();
        assert_eq!(body["threshold"], json!({"band": "Unhealthy"}));
        made.push((id, secret, inbox));
    }
    // The key's cap (4).
    let r = post_alert(&alerts, &key.key, alert_body("http://127.0.0.1:9/hook")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let (good_id, good_secret, good) = &made[0];
    let (status, view) = get_alert(&g, &key.key, good_id).await;
    assert_eq!(status, StatusCode::OK);
    assert!(view.get("secret").is_none(), "the secret is shown once");
    assert_eq!(
        get_alert(&g, &other.key, good_id).await.0,
        StatusCode::NOT_FOUND
    );

    // PM2.5 100 µg/m³ in all three hours: the NowCast is 100, US EPA
    // 151 + (100 − 55.5) × 49 / 69.9 = 182.2 → 182, "Unhealthy" (from 151):
    // entered. (Before it, 5 µg/m³: 5 × 50 / 9 = 27.8 → 28, Good.)
    hours(&db, "100.00", "100.00").await;
    let list = deliveries_when(&g, &key.key, good_id, "alert.entered delivered", |l| {
        l.len() == 1 && l[0]["state"] == "delivered"
    })
    .await;
    assert_eq!(list[0]["event"], "alert.entered");
    assert_eq!(list[0]["attempts"], 1);
    {
        let got = good.lock().expect("inbox");
        assert_eq!(got.len(), 1);
        let (headers, body) = &got[0];
        verify(good_secret, headers, body);
        let body: Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(body["type"], "alert.entered");
        assert_eq!(body["data"]["value"], 182);
        assert_eq!(body["data"]["band"], "Unhealthy");
        assert_eq!(body["data"]["sensors"], 3);
        assert_eq!(headers["webhook-id"], list[0]["id"].as_str().expect("id"));
    }

    // The receiver that fails twice: delivered on the third attempt, the
    // same webhook-id each time.
    let (flaky_id, _, flaky) = &made[1];
    let list = deliveries_when(&g, &key.key, flaky_id, "the retried delivery", |l| {
        l.iter()
            .any(|d| d["event"] == "alert.entered" && d["state"] == "delivered")
    })
    .await;
    let entered = list
        .iter()
        .find(|d| d["event"] == "alert.entered")
        .expect("entered");
    assert_eq!(entered["attempts"], 3);
    {
        let got = flaky.lock().expect("inbox");
        let ids: Vec<&str> = got[..3]
            .iter()
            .map(|(h, _)| h["webhook-id"].to_str().expect("id"))
            .collect();
        assert!(ids.iter().all(|i| *i == ids[0]), "one webhook-id: {ids:?}");
    }

    // Still inside (120 µg/m³: 196): nothing more.
    hours(&db, "120.00", "120.00").await;
    // The last hour at 5 after two at 120: NowCast w = max(5/120, 0.5) =
    // 0.5, (5 + 0.5 × 120 + 0.25 × 120) / 1.75 = 54.28, truncated to
    // 54.2 → 101 + (54.2 − 35.5) × 49 / 19.9 = 147.0 → 147, below
    // "Unhealthy": left.
    hours(&db, "120.00", "5.00").await;
    let list = deliveries_when(&g, &key.key, good_id, "alert.left delivered", |l| {
        l.len() == 2 && l.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    assert_eq!(list[0]["event"], "alert.left", "newest first");
    {
        let got = good.lock().expect("inbox");
        assert_eq!(
            got.len(),
            2,
            "entered and left, nothing for the step inside"
        );
        let (headers, body) = &got[1];
        verify(good_secret, headers, body);
        let body: Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(body["type"], "alert.left");
        assert_eq!(body["data"]["value"], 147);
    }

    // Back inside within the cooldown (1 h): counted, not sent.
    hours(&db, "100.00", "100.00").await;
    let view = eventually(
        "the suppressed entry",
        100,
        Duration::from_millis(100),
        || async {
            let (_, v) = get_alert(&g, &key.key, good_id).await;
            (v["state"]["suppressedEntries"] == 1).then_some(v)
        },
    )
    .await;
    assert_eq!(view["state"]["inside"], false);
    assert_eq!(view["now"]["value"], 182);
    assert_eq!(view["now"]["sensors"], 3);
    assert_eq!(good.lock().expect("inbox").len(), 2);
    // Down (28) and up again within the cooldown: a second suppressed
    // entry, still nothing sent.
    hours(&db, "5.00", "5.00").await;
    eventually(
        "the drop below",
        100,
        Duration::from_millis(100),
        || async {
            let (_, v) = get_alert(&g, &key.key, good_id).await;
            (v["state"]["valueAtLastChange"] == 28).then_some(())
        },
    )
    .await;
    hours(&db, "100.00", "100.00").await;
    eventually(
        "the second suppressed entry",
        100,
        Duration::from_millis(100),
        || async {
            let (_, v) = get_alert(&g, &key.key, good_id).await;
            (v["state"]["suppressedEntries"] == 2).then_some(())
        },
    )
    .await;
    assert_eq!(good.lock().expect("inbox").len(), 2);

    // The one that never answers: dead-lettered once retries run out.
    let (silent_id, _, _) = &made[2];
    let list = deliveries_when(&g, &key.key, silent_id, "the dead letter", |l| {
        l.iter()
            .any(|d| d["event"] == "alert.entered" && d["state"] == "dead")
    })
    .await;
    let dead = list
        .iter()
        .find(|d| d["event"] == "alert.entered")
        .expect("entered");
    assert!(dead["attempts"].as_u64().is_some_and(|n| n >= 2), "{dead}");
    assert!(
        dead["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("no answer")),
        "{dead}"
    );

    // The one that redirects to the metadata address: refused on every
    // attempt, never followed, dead-lettered.
    let (redirect_id, _, _) = &made[3];
    let list = deliveries_when(&g, &key.key, redirect_id, "the refused redirect", |l| {
        l.iter()
            .any(|d| d["event"] == "alert.entered" && d["state"] == "dead")
    })
    .await;
    let refused = list
        .iter()
        .find(|d| d["event"] == "alert.entered")
        .expect("entered");
    assert!(
        refused["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("169.254.169.254") && e.contains("link-local")),
        "{refused}"
    );

    // Deleted: gone for its key, nothing for another.
    let del = |k: &str, id: &str| {
        client()
            .delete(g.url(&format!("/api/alerts/{id}")))
            .header("x-api-key", k)
            .send()
    };
    assert_eq!(
        del(&other.key, good_id).await.expect("DELETE").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        del(&key.key, good_id).await.expect("DELETE").status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get_alert(&g, &key.key, good_id).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_urls_reaching_private_loopback_or_metadata_addresses_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let key = generate("ssrf test", "standard", KeyLimits::default()).expect("a key");
    SqliteKeyStore::new(Db::open(&db).expect("db"))
        .insert(&key.record)
        .await
        .expect("storing the key");
    let strict = gateway(&db, &[]);
    let local = gateway(&db, &["--webhook-allow-loopback"]);
    for (g, url, why) in [
        (&strict, "https://127.0.0.1/hook", "loopback"),
        (&strict, "https://localhost:8443/hook", "loopback"),
        (&strict, "https://[::1]/hook", "loopback"),
        (&strict, "http://example.org/hook", "https"),
        (&strict, "https://10.1.2.3/hook", "private"),
        (&strict, "https://192.168.1.1/hook", "private"),
        (
            &strict,
            "https://169.254.169.254/latest/meta-data/",
            "link-local",
        ),
        (
            &strict,
            "https://[fd00:ec2::254]/latest/meta-data/",
            "unique-local",
        ),
        (&strict, "https://[::ffff:169.254.169.254]/", "link-local"),
        (&strict, "https://user:pw@example.org/hook", "user name"),
        (
            &local,
            "http://169.254.169.254/latest/meta-data/",
            "link-local",
        ),
        (&local, "http://10.0.0.1/hook", "private"),
    ] {
        let r = post_alert(&g.url("/api/alerts"), &key.key, alert_body(url)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{url}");
        let body: Value = r.json().await.expect("JSON");
        assert_eq!(body["fields"][0]["field"], "webhookUrl", "{url}: {body}");
        let message = body["fields"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{url}: {message}");
    }
    // A bad spec names each field.
    let r = post_alert(
        &strict.url("/api/alerts"),
        &key.key,
        json!({"place": {}, "threshold": {"band": "Awful"}, "cooldown": "9d"}).to_string(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.expect("JSON");
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    for f in ["place", "threshold.band", "webhookUrl", "cooldown"] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
}

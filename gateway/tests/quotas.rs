//! Client identity, rate limits, the queued cap and result ownership, on
//! the real gateway. Several clients are told apart by their keys, or by
//! `X-Forwarded-For` from a gateway that trusts loopback as its proxy.

#![cfg(unix)]

mod support;

use airq_core::keys::{generate, KeyLimits, KeyStore};
use airq_core::Timestamp;
use airq_embedded::SqliteKeyStore;
use reqwest::{header, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use support::client;
use support::{eventually, load_sample, Service, Setup, Worker};

const HOUR: &str =
    r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE"}"#;

/// The keys of a setup's database, as `airq-deploy keys` reaches them.
fn keys(s: &Setup) -> SqliteKeyStore {
    SqliteKeyStore::new(s.db())
}

/// A new key in `tier`, stored as `airq-deploy keys create` stores it.
async fn new_key(s: &Setup, name: &str, tier: &str, limits: KeyLimits) -> (String, uuid::Uuid) {
    let new = generate(name, tier, limits).expect("a valid key");
    keys(s).insert(&new.record).await.expect("storing a key");
    (new.key, new.record.id)
}

fn query(url: &str, body: &str) -> RequestBuilder {
    client()
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_owned())
}

fn queued(url: &str) -> RequestBuilder {
    query(url, HOUR).header("Prefer", "respond-async")
}

async fn send(r: RequestBuilder) -> Response {
    r.send().await.expect("request")
}

async fn json(r: Response) -> Value {
    let bytes = r.bytes().await.expect("body");
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

fn header_str(r: &Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("ASCII header")
        .to_owned()
}

/// The `id` of a `202 Accepted`.
async fn accepted_id(r: Response) -> String {
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    json(r).await["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn a_key_works_until_it_is_revoked_and_is_stored_only_hashed() {
    let s = Setup::new(&["--key-cache-ttl", "200ms"]);
    let (key, id) = new_key(&s, "alice", "standard", KeyLimits::default()).await;

    let r = send(query(&s.url("/api/query"), HOUR).header("X-API-Key", &key)).await;
    assert_eq!(r.status(), StatusCode::OK);
    // A key's tier is announced in its budget: standard's 60/min.
    assert_eq!(header_str(&r, "ratelimit-policy"), "\"submits\";q=60;w=60");
    let bearer = format!("Bearer {key}");
    let r = send(query(&s.url("/api/query"), HOUR).header("Authorization", &bearer)).await;
    assert_eq!(r.status(), StatusCode::OK);

    // Neither the database nor anything beside it holds the key.
    for entry in std::fs::read_dir(s.dir.path()).expect("listing the temp dir") {
        let path = entry.expect("dir entry").path();
        if path.is_file() {
            let bytes = std::fs::read(&path).expect("reading a store file");
            let secret = &key.as_bytes()["airq_".len()..];
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{} holds the key",
                path.display()
            );
        }
    }

    let at = Timestamp::now();
    let revoked = keys(&s).revoke(id, at).await.expect("revoking");
    assert!(revoked.is_some_and(|k| k.revoked_at == Some(at)));
    let r = eventually(
        "the revocation reaches the gateway",
        50,
        Duration::from_millis(100),
        || {
            let req = query(&s.url("/api/query"), HOUR).header("X-API-Key", &key);
            async move {
                let r = send(req).await;
                (r.status() == StatusCode::UNAUTHORIZED).then_some(r)
            }
        },
    )
    .await;
    assert_eq!(header_str(&r, "www-authenticate"), "Bearer realm=\"airq\"");
    let body = json(r).await;
    assert!(
        body["error"].as_str().unwrap().contains("revoked"),
        "{body}"
    );

    let unknown = format!("airq_{}", "0".repeat(64));
    let r = send(
        client()
            .get(s.url("/api/meta"))
            .header("X-API-Key", &unknown),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(r).await["error"], "unknown API key");
}

#[tokio::test]
async fn an_over_limit_client_is_told_to_wait_and_others_are_not() {
    // Loopback is the trusted proxy, so X-Forwarded-For names the client.
    // A budget of 3 per 30 s gives one request back every 10 s: long
    // enough that a slow machine cannot refill it between the requests
    // below (3 per 2 s refilled every 0.67 s, and failed under load).
    let s = Setup::new(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--tier",
        "anonymous:submits=3/30s,polls=off,queued=off",
    ]);
    let from =
        |addr: &'static str| query(&s.url("/api/query"), HOUR).header("X-Forwarded-For", addr);

    for left in ["2", "1", "0"] {
        let r = send(from("203.0.113.1")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header_str(&r, "ratelimit-policy"), "\"submits\";q=3;w=30");
        let state = header_str(&r, "ratelimit");
        assert!(
            state.starts_with(&format!("\"submits\";r={left};t=")),
            "{state}"
        );
    }
    let r = send(from("203.0.113.1")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header_str(&r, "retry-after").parse().expect("seconds");
    assert!((1..=10).contains(&retry), "{retry}");
    assert_eq!(header_str(&r, "ratelimit-policy"), "\"submits\";q=3;w=30");
    assert!(header_str(&r, "ratelimit").starts_with("\"submits\";r=0;t="));
    let body = json(r).await;
    let error = body["error"].as_str().expect("an error message");
    assert!(
        error.contains("3/30s submits") && error.contains("anonymous"),
        "{error}"
    );

    // Another client at the same moment is unaffected.
    assert_eq!(send(from("203.0.113.2")).await.status(), StatusCode::OK);
    // A client behind an untrusted hop cannot pick another budget: only
    // the address our proxy saw counts.
    let spoofed = send(from("198.51.100.7, 203.0.113.1")).await;
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);

    // After Retry-After, the client is let through again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(send(from("203.0.113.1")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_a_trusted_proxy_forwarded_for_is_ignored() {
    let s = Setup::new(&["--tier", "anonymous:submits=2/min"]);
    let mut statuses = Vec::new();
    for addr in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let r = send(query(&s.url("/api/query"), HOUR).header("X-Forwarded-For", addr)).await;
        statuses.push(r.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

#[tokio::test]
async fn a_client_may_queue_only_its_tiers_share() {
    let s = Setup::new(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--tier",
        "anonymous:submits=off,polls=off,queued=2",
    ]);
    let from = |addr: &'static str| queued(&s.url("/api/query")).header("X-Forwarded-For", addr);
    // No worker runs yet: what is queued stays queued.
    accepted_id(send(from("203.0.113.1")).await).await;
    accepted_id(send(from("203.0.113.1")).await).await;
    let r = send(from("203.0.113.1")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let error = json(r).await["error"].as_str().unwrap().to_owned();
    assert!(error.contains("already has 2 queries queued"), "{error}");
    // Another client still queues.
    accepted_id(send(from("203.0.113.2")).await).await;

    // Once the workers have answered, the first client may queue again.
    let _worker = Worker::start(&s.db_path(), &[]);
    eventually(
        "the client's queries finish",
        100,
        Duration::from_millis(200),
        || {
            let req = from("203.0.113.1");
            async move { (send(req).await.status() == StatusCode::ACCEPTED).then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn the_queued_cap_holds_under_a_burst_of_parallel_submits() {
    // The red-team reproduction: 200 submits at once, no worker running,
    // no submit budget. Counting then creating without a per-client lock
    // let 13 to 57 through a cap of 5. (Its connections are not capped
    // here: this is about the queued cap alone.)
    let s = Setup::new(&[
        "--tier",
        "anonymous:submits=off,polls=off,queued=5",
        "--max-connections-per-client",
        "0",
    ]);
    let url = s.url("/api/query");
    let http = client();
    let submits = (0..200).map(|_| {
        let r = http
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .header("Prefer", "respond-async")
            .body(HOUR);
        async move { send(r).await.status() }
    });
    let statuses = futures::future::join_all(submits).await;
    let accepted = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((accepted, refused), (5, 195), "{statuses:?}");
}

#[tokio::test]
async fn a_keyed_result_belongs_to_its_key() {
    let s = Setup::new(&[]);
    let (a, _) = new_key(&s, "a", "standard", KeyLimits::default()).await;
    let (b, _) = new_key(&s, "b", "standard", KeyLimits::default()).await;
    let _worker = Worker::start(&s.db_path(), &[]);

    let mine = accepted_id(send(queued(&s.url("/api/query")).header("X-API-Key", &a)).await).await;
    let anonymous = accepted_id(send(queued(&s.url("/api/query"))).await).await;
    let get = |id: &str, key: Option<&str>| {
        let mut r = client().get(s.url(&format!("/api/results/{id}")));
        if let Some(k) = key {
            r = r.header("X-API-Key", k);
        }
        r
    };
    let done = eventually(
        "the keyed result is done",
        100,
        Duration::from_millis(100),
        || {
            let req = get(&mine, Some(&a));
            async move {
                let r = send(req).await;
                (r.status() == StatusCode::OK).then_some(r)
            }
        },
    )
    .await;
    assert!(done.text().await.unwrap().starts_with("id,timestamp"));
    for (who, key) in [("key B", Some(b.as_str())), ("no key", None)] {
        let r = send(get(&mine, key)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{who}");
        assert_eq!(json(r).await["error"], "no result with this id", "{who}");
    }
    // A result submitted without a key stays readable by its id alone.
    for key in [None, Some(a.as_str()), Some(b.as_str())] {
        let status = send(get(&anonymous, key)).await.status();
        assert!(
            status == StatusCode::OK || status == StatusCode::ACCEPTED,
            "{status}"
        );
    }
}

#[tokio::test]
async fn an_unlimited_key_is_not_limited() {
    let s = Setup::new(&["--tier", "anonymous:submits=1/min"]);
    let (key, _) = new_key(&s, "bench", "unlimited", KeyLimits::default()).await;
    for _ in 0..20 {
        let r = send(query(&s.url("/api/query"), HOUR).header("X-API-Key", &key)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(!r.headers().contains_key("ratelimit"));
    }
    // A key's own budget overrides its tier's.
    let own = KeyLimits {
        submits: Some("1/min".parse().unwrap()),
        ..KeyLimits::default()
    };
    let (tight, _) = new_key(&s, "tight", "unlimited", own).await;
    let r = send(query(&s.url("/api/query"), HOUR).header("X-API-Key", &tight)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(query(&s.url("/api/query"), HOUR).header("X-API-Key", &tight)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// The gateway's log, at the most detailed level, in `dir`.
fn logged_gateway(dir: &Path, args: &[&str]) -> (Service, PathBuf) {
    let log = dir.join("gateway.log");
    let file = std::fs::File::create(&log).expect("creating the log file");
    let db = dir.join("airq.db");
    let db = db.to_str().expect("UTF-8 temp path");
    let mut all = vec![
        "--listen",
        "127.0.0.1:0",
        "--db",
        db,
        "--tier",
        support::NO_LIMITS,
    ];
    all.extend_from_slice(args);
    let service = Service::start_listening_logged(
        env!("CARGO_BIN_EXE_airq-gateway"),
        &all,
        &[("RUST_LOG", "trace")],
        Stdio::from(file),
    );
    (service, log)
}

#[tokio::test]
async fn bad_keys_get_clear_errors_and_are_never_logged() {
    let dir = tempfile::tempdir().expect("temp dir");
    load_sample(&dir.path().join("airq.db"));
    let (mut gw, log) = logged_gateway(dir.path(), &[]);
    let secret = format!("airq_{}", "7e".repeat(32));

    let in_url = gw.url(&format!(
        "/api/results/{}?api_key={secret}",
        uuid::Uuid::new_v4()
    ));
    let r = send(client().get(in_url)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = json(r).await;
    assert_eq!(body["fields"][0]["field"], "query string");
    assert!(body["fields"][0]["message"]
        .as_str()
        .unwrap()
        .contains("X-API-Key"));
    // Percent-encoded forms of the key or of the parameter's name are
    // refused alike.
    let hex = &secret[5..];
    for query_string in [
        format!("x=airq%5F{hex}"),
        format!("x=%61irq_{hex}"),
        format!("api%5Fkey={hex}"),
    ] {
        let url = gw.url(&format!("/api/meta?{query_string}"));
        let r = send(client().get(url)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query_string}");
    }
    // A key in the path is not found, and its path is not logged.
    let r = send(client().get(gw.url(&format!("/api/results/{secret}")))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = send(client().get(gw.url(&format!("/api/results/%61irq_{hex}")))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    for (value, says) in [
        ("", "empty"),
        ("not-a-key", "characters long"),
        (&"k".repeat(6000)[..], "6000 characters"),
        (&secret[..secret.len() - 1], "characters long"),
    ] {
        let r = send(query(&gw.url("/api/query"), HOUR).header("X-API-Key", value)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{says}");
        let e = json(r).await["error"].as_str().unwrap().to_owned();
        assert!(e.contains(says), "{e}");
    }
    let r = send(query(&gw.url("/api/query"), HOUR).header("Authorization", "Basic eDp5")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A well-formed key nobody issued, in the header this time.
    let r = send(query(&gw.url("/api/query"), HOUR).header("X-API-Key", &secret)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Still serving.
    let r = send(client().get(gw.url("/healthz"))).await;
    assert_eq!(r.status(), StatusCode::OK);

    gw.terminate(Duration::from_secs(10));
    let written = std::fs::read_to_string(&log).expect("reading the gateway's log");
    assert!(
        written.contains("refused"),
        "the refusals are logged:\n{written}"
    );
    assert!(
        !written.contains(&secret[5..]),
        "the key reached the log:\n{written}"
    );
}

#[tokio::test]
async fn required_keys_leave_the_page_and_meta_open() {
    let s = Setup::new(&["--auth", "required"]);
    let r = send(query(&s.url("/api/query"), HOUR)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(json(r).await["error"]
        .as_str()
        .unwrap()
        .contains("X-API-Key"));
    let r = send(client().get(s.url(&format!("/api/results/{}", uuid::Uuid::new_v4())))).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for open in ["/", "/api/meta", "/healthz"] {
        assert_eq!(
            send(client().get(s.url(open))).await.status(),
            StatusCode::OK,
            "{open}"
        );
    }
    let (key, _) = new_key(&s, "k", "standard", KeyLimits::default()).await;
    let r = send(query(&s.url("/api/query"), HOUR).header("X-API-Key", &key)).await;
    assert_eq!(r.status(), StatusCode::OK);

    // With keys off, a key header is not even read.
    let off = Setup::new(&["--auth", "off"]);
    let r = send(query(&off.url("/api/query"), HOUR).header("X-API-Key", "whatever")).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn made_up_keys_cannot_become_a_flood_of_store_reads() {
    let s = Setup::new(&[]);
    let mut statuses = Vec::new();
    for i in 0..62u32 {
        let made_up = format!("airq_{i:064x}");
        let r = send(
            client()
                .get(s.url("/api/meta"))
                .header("X-API-Key", &made_up),
        )
        .await;
        statuses.push(r.status().as_u16());
    }
    // Each is looked up once; past 60 lookups a minute from one address,
    // the rest are refused before any lookup.
    assert!(statuses[..60].iter().all(|&s| s == 401), "{statuses:?}");
    assert_eq!(statuses[60..], [429, 429]);
    // The same address without a key is still served: lookups have their
    // own budget.
    let r = send(client().get(s.url("/api/meta"))).await;
    assert_eq!(r.status(), StatusCode::OK);
}

//! The gateway's metrics and request ids, on the real binaries: counters
//! move as queries take the direct and the queued path, the text parses as
//! Prometheus exposition, and one request id follows a query from submit
//! to download through the gateway's and the worker's logs.

#![cfg(unix)]

mod support;

use airq_testkit::metrics::{value, Scrape, Value};
use reqwest::{header, Response, StatusCode};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::client;
use support::{eventually, gateway, load_sample, Service, Worker};

const HOUR: &str =
    r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE"}"#;

async fn submit(gw: &Service, async_: bool, request_id: Option<&str>) -> Response {
    let mut r = client()
        .post(gw.url("/api/query"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(HOUR);
    if async_ {
        r = r.header("Prefer", "respond-async");
    }
    if let Some(id) = request_id {
        r = r.header("X-Request-Id", id);
    }
    r.send().await.expect("POST")
}

async fn scrape(gw: &Service) -> Scrape {
    let r = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with(airq_testkit::metrics::CONTENT_TYPE));
    airq_testkit::metrics::parse(&r.text().await.expect("metrics text"))
}

fn count(samples: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(samples, name, labels).unwrap_or(0.0)
}

#[tokio::test]
async fn counters_move_on_the_direct_and_the_queued_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    load_sample(&db);
    let gw = gateway(&db, &[]);

    let before = scrape(&gw).await;
    assert_eq!(
        count(&before, "airq_queries_total", &[("answer", "direct")]),
        0.0
    );

    for _ in 0..2 {
        assert_eq!(submit(&gw, false, None).await.status(), StatusCode::OK);
    }
    let queued = submit(&gw, true, None).await;
    assert_eq!(queued.status(), StatusCode::ACCEPTED);
    let location = queued.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let _worker = Worker::start(&db, &[]);
    eventually(
        "the queued query is done",
        100,
        Duration::from_millis(100),
        || {
            let url = gw.url(&location);
            async move {
                let r = client().get(url).send().await.ok()?;
                (r.status() == StatusCode::OK).then_some(())
            }
        },
    )
    .await;

    let after = eventually(
        "the collector's count",
        50,
        Duration::from_millis(100),
        || {
            let gw = &gw;
            async move {
                let s = scrape(gw).await;
                (count(&s, "airq_results_finished_total", &[("outcome", "done")]) >= 1.0)
                    .then_some(s)
            }
        },
    )
    .await;
    assert_eq!(
        count(&after, "airq_queries_total", &[("answer", "direct")]),
        2.0
    );
    assert_eq!(
        count(&after, "airq_queries_total", &[("answer", "queued")]),
        1.0
    );
    assert_eq!(
        count(&after, "airq_answer_cache_total", &[("outcome", "miss")]),
        1.0
    );
    assert_eq!(
        count(&after, "airq_answer_cache_total", &[("outcome", "hit")]),
        1.0
    );
    assert_eq!(count(&after, "airq_results_created_total", &[]), 1.0);
    assert_eq!(
        count(
            &after,
            "airq_http_requests_total",
            &[("route", "query"), ("status", "200")]
        ),
        2.0
    );
    assert_eq!(
        count(
            &after,
            "airq_http_requests_total",
            &[("route", "query"), ("status", "202")]
        ),
        1.0
    );
    assert!(count(&after, "airq_http_response_bytes_total", &[]) > 0.0);
    assert!(value(&after, "airq_direct_slots", &[]).is_some_and(|n| n >= 1.0));
    assert!(value(
        &after,
        "airq_request_queue_messages",
        &[("state", "visible")]
    )
    .is_some());
    assert!(value(&after, "airq_request_queue_dlq_messages", &[]).is_some());
    // Time to response is a histogram per route, with buckets.
    assert!(after
        .samples
        .iter()
        .any(|s| s.metric == "airq_http_request_duration_seconds"
            && s.labels.get("route") == Some("query")
            && matches!(&s.value, Value::Histogram(buckets) if buckets.len() > 5)));
    // No label carries a query, a key or an id.
    for s in &after.samples {
        for (k, v) in s.labels.iter() {
            assert!(v.len() <= 16 && !v.contains('{'), "{} {k}={v}", s.metric);
        }
    }
}

#[tokio::test]
async fn rejections_are_counted_and_metrics_can_be_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    load_sample(&db);
    let gw = gateway(&db, &["--tier", "anonymous:submits=1/min"]);
    assert_eq!(submit(&gw, false, None).await.status(), StatusCode::OK);
    assert_eq!(
        submit(&gw, false, None).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let bad_key = client()
        .get(gw.url("/api/meta"))
        .header("X-API-Key", "nope")
        .send()
        .await
        .expect("GET");
    assert_eq!(bad_key.status(), StatusCode::UNAUTHORIZED);
    let s = scrape(&gw).await;
    assert_eq!(
        count(&s, "airq_rejections_total", &[("reason", "rate_limit")]),
        1.0
    );
    assert_eq!(
        count(&s, "airq_rejections_total", &[("reason", "auth")]),
        1.0
    );

    let off = gateway(&db, &["--metrics", "off"]);
    let r = client().get(off.url("/metrics")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = r.json().await.expect("a JSON error");
    assert!(body["error"].as_str().unwrap().contains("--metrics off"));
}

#[tokio::test]
async fn metrics_can_move_off_the_public_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    load_sample(&db);
    let gw = gateway(
        &db,
        &["--auth", "required", "--metrics-listen", "127.0.0.1:0"],
    );
    let metrics_url = gw
        .printed_before
        .iter()
        .find_map(|l| l.trim().strip_prefix("metrics on "))
        .unwrap_or_else(|| panic!("no metrics address in {:?}", gw.printed_before))
        .to_owned();
    // Not on the API's address, where no key is asked for…
    let r = client().get(gw.url("/metrics")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = r.json().await.expect("a JSON error");
    assert!(body["error"].as_str().unwrap().contains("--metrics-listen"));
    // …but on its own, with what the API's requests counted.
    let r = client().get(gw.url("/api/meta")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    let r = client().get(&metrics_url).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.expect("metrics");
    let parsed = airq_testkit::metrics::parse(&text);
    assert!(
        count(
            &parsed,
            "airq_http_requests_total",
            &[("route", "meta"), ("status", "200")]
        ) >= 1.0,
        "{text}"
    );
    // Nothing else is served there.
    let other = metrics_url.replace("/metrics", "/api/meta");
    let r = client().get(&other).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn one_request_id_follows_a_query_from_submit_to_download() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    load_sample(&db);
    let gw_log = dir.path().join("gateway.log");
    let worker_log = dir.path().join("worker.log");
    let db_arg = db.to_str().expect("UTF-8 temp path");
    let gw = Service::start_listening_logged(
        env!("CARGO_BIN_EXE_airq-gateway"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--db",
            db_arg,
            "--tier",
            support::NO_LIMITS,
            "--log-format",
            "json",
        ],
        &[("RUST_LOG", "airq_gateway=debug")],
        Stdio::from(std::fs::File::create(&gw_log).expect("gateway log")),
    );
    let id = "trace-7f3a:retry/1";

    let r = submit(&gw, true, Some(id)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["x-request-id"], id);
    let body: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(body["requestId"], id);
    let result = format!("/api/results/{}", body["id"].as_str().expect("an id"));

    // Polled before any worker runs: pending, under the submit's id.
    let r = client().get(gw.url(&result)).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["x-request-id"], id);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["requestId"],
        id
    );

    let _worker = Worker::start_logged(
        &db,
        &["--log-format", "json"],
        &[("RUST_LOG", "airq_worker=debug")],
        Stdio::from(std::fs::File::create(&worker_log).expect("worker log")),
    );
    let done = eventually(
        "the result is done",
        100,
        Duration::from_millis(100),
        || {
            let url = gw.url(&result);
            async move {
                let r = client().get(url).send().await.ok()?;
                (r.status() == StatusCode::OK).then_some(r)
            }
        },
    )
    .await;
    assert_eq!(
        done.headers()["x-request-id"],
        id,
        "the download names the submit's id"
    );
    // A poll with an id of its own keeps it.
    let own = client()
        .get(gw.url(&result))
        .header("X-Request-Id", "poll-2")
        .send()
        .await
        .expect("GET");
    assert_eq!(own.headers()["x-request-id"], "poll-2");
    // An unusable id is replaced by a fresh one.
    let r = submit(&gw, false, Some("has spaces in it")).await;
    let fresh = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&fresh).is_ok(), "{fresh}");

    // Both processes' JSON logs carry the id as a field.
    let in_json_log = |path: &Path| {
        read(path).lines().any(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|v| v.to_string().contains(&format!("\"request_id\":\"{id}\"")))
        })
    };
    eventually(
        "the worker logs the id",
        50,
        Duration::from_millis(100),
        || async { in_json_log(&worker_log).then_some(()) },
    )
    .await;
    assert!(in_json_log(&gw_log), "gateway log:\n{}", read(&gw_log));
}

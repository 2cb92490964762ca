//! The gateway as a process: HTTP answers on the sample data set.

#![cfg(unix)]

mod support;

use airq_core::export::to_csv;
use airq_core::job::{Job, JobResult, REQUEST_RECEIVE, REQUEST_SEND};
use airq_core::queue::Queue;
use airq_core::results::{Outcome, ResultStore};
use airq_core::store::ReadingStore;
use airq_core::{Query, QueryLimits, Reading, Timestamp};
use airq_embedded::SqliteReadingStore;
use airq_embedded::{Db, SqliteQueue, SqliteResultStore};
use reqwest::{header, Response, StatusCode};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use support::client;
use support::until_final;
use support::{eventually, gateway, sample_readings, store_csv, Setup};
use uuid::Uuid;

const DE_LOW_HOUR: &str = r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE","minAqi":0,"maxAqi":10,"range":"Low"}"#;
const CSV_HEADER: &str =
    "id,timestamp,sensor_id,sensor_type,loc_id,loc_country,loc_lat,loc_long,loc_alt,P1,P2,AQI,Range";

async fn post(url: &str, body: &str, async_: bool) -> Response {
    let mut req = client()
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_owned());
    if async_ {
        req = req.header("Prefer", "respond-async");
    }
    req.send().await.expect("POST")
}

async fn json(r: Response) -> Value {
    let bytes = r.bytes().await.expect("body");
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// The CSV the reference semantics give for `query_json`.
fn reference_csv(query_json: &str) -> (Vec<u8>, usize) {
    let q = Query::from_json(query_json.as_bytes(), &QueryLimits::default()).expect("query");
    let rows: Vec<&Reading> = support::sample_readings()
        .iter()
        .filter(|r| q.matches(r))
        .collect();
    (to_csv(rows.iter().copied()).expect("CSV"), rows.len())
}

/// Queues `query_json` with `Prefer: respond-async`; returns the result id.
async fn submit_async(base: &Setup, query_json: &str) -> Uuid {
    let r = post(&base.url("/api/query"), query_json, true).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["x-airq-answer"], "queued");
    assert_eq!(r.headers()["preference-applied"], "respond-async");
    assert_eq!(r.headers()["x-airq-index"], "daqi");
    let location = r.headers()[header::LOCATION]
        .to_str()
        .expect("ASCII location")
        .to_owned();
    let v = json(r).await;
    assert_eq!(v["status"], "queued");
    let id: Uuid = v["id"].as_str().expect("id").parse().expect("a UUID");
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(location, format!("/api/results/{id}"));
    id
}

/// Plays a worker: takes one job from RequestSend and posts `outcome(job)`.
async fn work_one(db: &Db, outcome: impl FnOnce(&Job) -> Outcome) -> Job {
    let send = SqliteQueue::new(db.clone(), REQUEST_SEND, None);
    let msgs = eventually(
        "a job on RequestSend",
        100,
        Duration::from_millis(50),
        || async {
            let m = send
                .receive(1, Duration::from_secs(60), Duration::from_millis(100))
                .await
                .expect("receive");
            (!m.is_empty()).then_some(m)
        },
    )
    .await;
    let job = Job::parse(&msgs[0].body).expect("a job");
    let result = JobResult {
        id: job.id,
        outcome: outcome(&job),
    };
    SqliteQueue::new(db.clone(), REQUEST_RECEIVE, None)
        .send(&result.to_json())
        .await
        .expect("send result");
    send.delete(&msgs[0].receipt).await.expect("delete job");
    job
}

fn done_from_reference(job: &Job) -> Outcome {
    let (csv, rows) = reference_csv(&job.query);
    Outcome::Done {
        answer: String::from_utf8(csv).expect("UTF-8"),
        rows: rows as u64,
    }
}

async fn assert_csv_result(url: &str, expected: &[u8]) {
    let r = client().get(url).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(r.headers()["x-airq-index"], "daqi");
    assert!(r.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"airq-"));
    assert_eq!(r.bytes().await.expect("body").as_ref(), expected);
}

#[tokio::test]
async fn direct_query_streams_the_reference_csv() {
    let s = Setup::new(&[]);
    let r = post(&s.url("/api/query"), DE_LOW_HOUR, false).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-airq-answer"], "direct");
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    // The default index, said: the CSV itself does not say it.
    assert_eq!(r.headers()["x-airq-index"], "daqi");
    assert_eq!(
        r.headers()[header::CONTENT_DISPOSITION],
        "attachment; filename=\"airq-20180603T200000Z-20180603T210000Z.csv\""
    );
    let body = r.bytes().await.expect("body");
    let text = std::str::from_utf8(&body).expect("UTF-8");
    assert_eq!(text.lines().next(), Some(CSV_HEADER));
    assert_eq!(text.lines().count(), 1 + 3315, "header + the DE/Low rows");
    let (expected, rows) = reference_csv(DE_LOW_HOUR);
    assert_eq!(rows, 3315);
    assert_eq!(body.as_ref(), expected.as_slice());

    // The whole sample, all countries: several chunks.
    let all = r#"{"startDate":"2018-06-03","endDate":"2018-06-03"}"#;
    let r = post(&s.url("/api/query"), all, false).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (expected, rows) = reference_csv(all);
    assert_eq!(rows, 4928);
    assert_eq!(r.bytes().await.unwrap().as_ref(), expected.as_slice());
}

#[tokio::test]
async fn empty_result_is_the_header_alone() {
    let s = Setup::new(&[]);
    for q in [
        r#"{"startDate":"2019-01-01","endDate":"2019-01-01"}"#,
        r#"{"startDate":"2018-06-03","endDate":"2018-06-03","country":"ZZ"}"#,
        r#"{"startDate":"2018-06-03","endDate":"2018-06-03","minAqi":7,"range":"Low"}"#,
    ] {
        let r = post(&s.url("/api/query"), q, false).await;
        assert_eq!(r.status(), StatusCode::OK, "{q}");
        assert_eq!(r.text().await.unwrap(), format!("{CSV_HEADER}\n"), "{q}");
    }
}

#[tokio::test]
async fn queued_query_is_answered_once_a_worker_replies_and_survives_restarts() {
    let mut s = Setup::new(&[]);
    let direct = post(&s.url("/api/query"), DE_LOW_HOUR, false)
        .await
        .bytes()
        .await
        .unwrap();

    let id = submit_async(&s, DE_LOW_HOUR).await;
    let path = format!("/api/results/{id}");
    // No worker runs: it stays queued.
    for _ in 0..3 {
        let r = client().get(s.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let v = json(r).await;
        assert_eq!(v["status"], "queued");
        assert_eq!(v["id"], id.to_string());
        assert!(v["createdAt"].as_str().is_some_and(|t| t.len() == 19));
        assert!(v["updatedAt"].as_str().is_some());
    }

    let job = work_one(&s.db(), done_from_reference).await;
    assert_eq!(job.id, id);
    let r = until_final(&s.url(&path)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-airq-rows"], "3315");
    assert_eq!(r.bytes().await.unwrap(), direct);
    // Served as often as asked.
    assert_csv_result(&s.url(&path), &direct).await;
    assert_csv_result(&s.url(&path), &direct).await;

    // A new gateway on the same file still serves it...
    s.gateway.kill();
    s.gateway = gateway(&s.db_path(), &[]);
    assert_csv_result(&s.url(&path), &direct).await;
    // ... and so does a second one beside it.
    let other = gateway(&s.db_path(), &[]);
    assert_csv_result(&other.url(&path), &direct).await;
    assert_csv_result(&s.url(&path), &direct).await;
}

/// A result of DE_LOW_HOUR that expired as it was made.
async fn expired_result(s: &Setup) -> Uuid {
    let id = Uuid::new_v4();
    let q = Query::from_json(DE_LOW_HOUR.as_bytes(), &QueryLimits::default()).unwrap();
    SqliteResultStore::new(s.db())
        .create(
            id,
            &q,
            Duration::ZERO,
            &airq_core::results::Submission {
                client: airq_core::ClientId::address("127.0.0.1".parse().unwrap()),
                request_id: None,
            },
        )
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn unknown_malformed_and_expired_ids() {
    let s = Setup::new(&[]);
    for path in [
        format!("/api/results/{}", Uuid::new_v4()),
        "/api/results/not-a-uuid".to_owned(),
        "/api/results/%FF%FE".to_owned(),
        "/api/results/".to_owned(),
    ] {
        let r = client().get(s.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(json(r).await["error"].is_string(), "{path}");
    }

    let id = expired_result(&s).await;
    let r = client()
        .get(s.url(&format!("/api/results/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GONE);
    assert!(json(r).await["error"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn failed_outcome_is_422_with_the_reason() {
    let s = Setup::new(&[]);
    let id = submit_async(&s, DE_LOW_HOUR).await;
    work_one(&s.db(), |_| Outcome::Failed {
        error: "the store was on fire".into(),
    })
    .await;
    let r = until_final(&s.url(&format!("/api/results/{id}"))).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let mut body = json(r).await;
    // The submit's request id (generated: the test sent none).
    let request_id = body["requestId"].take();
    assert!(
        request_id
            .as_str()
            .is_some_and(|s| Uuid::parse_str(s).is_ok()),
        "{request_id}"
    );
    assert_eq!(
        body,
        serde_json::json!({"id": id, "status": "failed", "error": "the store was on fire", "requestId": null})
    );
}

#[tokio::test]
async fn dead_lettered_job_fails_with_the_reason() {
    let s = Setup::new(&[]);
    let id = submit_async(&s, DE_LOW_HOUR).await;
    let q = Query::from_json(DE_LOW_HOUR.as_bytes(), &QueryLimits::default()).unwrap();
    let dlq = SqliteQueue::new(s.db(), "RequestSend-dlq", None);
    dlq.send(&Job::new(id, &q, 1_000, None).to_json())
        .await
        .unwrap();
    // A malformed job still names its id.
    let id2 = submit_async(&s, DE_LOW_HOUR).await;
    dlq.send(&format!(r#"{{"id":"{id2}","query":42}}"#))
        .await
        .unwrap();
    // And one that names nothing is dropped.
    dlq.send("garbage").await.unwrap();

    for id in [id, id2] {
        let r = until_final(&s.url(&format!("/api/results/{id}"))).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let v = json(r).await;
        assert_eq!(v["status"], "failed");
        let error = v["error"].as_str().unwrap();
        assert!(error.contains("dead-letter queue"), "{error}");
        assert!(error.contains("3 workers"), "{error}");
    }
    eventually(
        "the dead-letter queue to drain",
        100,
        Duration::from_millis(50),
        || async {
            let d = dlq.depth().await.unwrap();
            (d.visible + d.in_flight == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn backlog_over_the_limit_is_refused_with_503() {
    let s = Setup::new(&["--max-backlog", "0"]);
    submit_async(&s, DE_LOW_HOUR).await;
    let r = post(&s.url("/api/query"), DE_LOW_HOUR, true).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()[header::RETRY_AFTER], "5");
    assert!(json(r).await["error"].is_string());
    // Nothing was created for the refused query.
    let depth = SqliteQueue::new(s.db(), REQUEST_SEND, None)
        .depth()
        .await
        .unwrap();
    assert_eq!(depth.visible, 1);
    let results: i64 = rusqlite_count(&s.db_path());
    assert_eq!(results, 1);
    // Direct answers are not affected.
    let r = post(&s.url("/api/query"), DE_LOW_HOUR, false).await;
    assert_eq!(r.status(), StatusCode::OK);
}

fn rusqlite_count(db: &Path) -> i64 {
    let db = Db::open(db).unwrap();
    db.conn()
        .unwrap()
        .query_row("SELECT COUNT(*) FROM results", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn queries_beyond_the_direct_limits_are_queued() {
    let s = Setup::new(&["--direct-limit", "0"]);
    let r = post(&s.url("/api/query"), DE_LOW_HOUR, false).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["x-airq-answer"], "queued");
    assert!(r.headers().get("preference-applied").is_none());

    let s = Setup::new(&["--direct-max-span", "30m"]);
    let r = post(&s.url("/api/query"), DE_LOW_HOUR, false).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let short = r#"{"startDate":"2018-06-03 20:45:00","endDate":"2018-06-03 21:00:00"}"#;
    let r = post(&s.url("/api/query"), short, false).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Beyond a day (`--direct-max-span`'s default), a query whose answer the
/// store assembles from answer segments is answered directly when it fits
/// in the answer cache (it is sent from memory); a larger one, one from a
/// store that reads rows, or any with the cache off, is queued.
#[tokio::test]
async fn long_queries_are_direct_when_assembled_and_small() {
    let two_days =
        r#"{"startDate":"2018-06-02 00:00:00","endDate":"2018-06-03 23:59:59","country":"DE"}"#;
    let direct = |args: &'static [&'static str], built: bool| async move {
        let s = Setup::new(args);
        if built {
            SqliteReadingStore::new(s.db())
                .refresh_segments()
                .await
                .expect("segments");
        }
        let r = post(&s.url("/api/query"), two_days, false).await;
        let answer = r.headers()["x-airq-answer"].to_str().unwrap().to_owned();
        (r.status(), answer, r.bytes().await.unwrap(), s)
    };
    let (status, answer, body, s) = direct(&[], true).await;
    assert_eq!((status, answer.as_str()), (StatusCode::OK, "direct"));
    assert_eq!(
        body,
        store_csv(&s.db_path(), two_days).await,
        "the store's answer"
    );
    assert!(
        body.len() > 64 * 1024,
        "larger than the next case's cache entry"
    );
    // Asked again after a write made a day stale: the cached answer, as
    // any cached answer, until its TTL is up (the cache is looked in
    // before the store is asked whether the query is cheap); a long query
    // not cached is queued now.
    let mut extra = sample_readings()
        .iter()
        .find(|r| r.loc_country == "DE")
        .expect("a DE reading")
        .clone();
    extra.sensor_id = 999_999_999;
    SqliteReadingStore::new(s.db())
        .put_batch_blocking(std::slice::from_ref(&extra))
        .expect("storing a new reading");
    let again = post(&s.url("/api/query"), two_days, false).await;
    assert_eq!(again.headers()["x-airq-cache"], "hit");
    assert_eq!(again.bytes().await.unwrap(), body);
    let other = two_days.replace("\"DE\"", "\"NL\"");
    let r = post(&s.url("/api/query"), &other, false).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{other}: a stale day");
    for (args, built) in [
        (&["--answer-cache-max-entry-kib", "64"][..], true),
        (&["--answer-segments", "false"], true),
        (&["--answer-cache-ttl", "0"], true),
        (&["--direct-max-span", "24h"], true),
        // Segments not built (yet): the days would be read row by row.
        (&[], false),
    ] {
        let (status, answer, _, _) = direct(args, built).await;
        assert_eq!(
            (status, answer.as_str()),
            (StatusCode::ACCEPTED, "queued"),
            "{args:?}, segments built: {built}"
        );
    }
}

/// Every malformed request gets its documented status and a JSON body
/// naming the field at fault; none is a 500.
#[tokio::test]
async fn bad_requests_name_the_field() {
    let s = Setup::new(&["--max-span", "31days"]);
    const S: &str = r#""startDate":"2018-06-03 20:00:00""#;
    const E: &str = r#""endDate":"2018-06-03 21:00:00""#;
    let q = |extra: &str| format!("{{{S},{E},{extra}}}");
    let cases: Vec<(String, &str, u16, &str)> = vec![
        // (body, content type, status, field)
        (format!(r#"{{{E}}}"#), "application/json", 400, "startDate"),
        (
            format!(r#"{{"startDate":5,{E}}}"#),
            "application/json",
            400,
            "startDate",
        ),
        (
            format!(r#"{{"startDate":"yesterday",{E}}}"#),
            "application/json",
            400,
            "startDate",
        ),
        (
            format!(r#"{{"startDate":"2018-02-30",{E}}}"#),
            "application/json",
            400,
            "startDate",
        ),
        (
            format!(r#"{{"startDate":["2018-06-03"],{E}}}"#),
            "application/json",
            400,
            "startDate",
        ),
        (format!(r#"{{{S}}}"#), "application/json", 400, "endDate"),
        (
            format!(r#"{{{S},"endDate":true}}"#),
            "application/json",
            400,
            "endDate",
        ),
        (
            format!(r#"{{{S},"endDate":"2018-13-01"}}"#),
            "application/json",
            400,
            "endDate",
        ),
        (
            format!(r#"{{{S},"endDate":"2018-06-03 19:00:00"}}"#),
            "application/json",
            400,
            "endDate",
        ),
        (
            format!(r#"{{{S},"endDate":"2018-08-01"}}"#),
            "application/json",
            400,
            "endDate",
        ),
        (q(r#""country":5"#), "application/json", 400, "country"),
        (
            q(r#""country":"Germany""#),
            "application/json",
            400,
            "country",
        ),
        (q(r#""country":"D1""#), "application/json", 400, "country"),
        (q(r#""minAqi":"low""#), "application/json", 400, "minAqi"),
        (q(r#""minAqi":-1"#), "application/json", 400, "minAqi"),
        (q(r#""minAqi":11"#), "application/json", 400, "minAqi"),
        (q(r#""minAqi":2.5"#), "application/json", 400, "minAqi"),
        (q(r#""minAqi":{}"#), "application/json", 400, "minAqi"),
        (q(r#""maxAqi":11"#), "application/json", 400, "maxAqi"),
        (q(r#""maxAqi":true"#), "application/json", 400, "maxAqi"),
        (
            q(r#""minAqi":6,"maxAqi":5"#),
            "application/json",
            400,
            "minAqi",
        ),
        (q(r#""range":"Severe""#), "application/json", 400, "range"),
        (q(r#""range":3"#), "application/json", 400, "range"),
        (q(r#""limit":10"#), "application/json", 400, "limit"),
        ("not json".into(), "application/json", 400, "body"),
        ("[1,2]".into(), "application/json", 400, "body"),
        (r#""a string""#.into(), "application/json", 400, "body"),
        ("".into(), "application/json", 400, "body"),
        (r#"{"startDate":"#.into(), "application/json", 400, "body"),
        ("\u{feff}{}".into(), "application/json", 400, "body"),
        ("x".repeat(64 * 1024), "application/json", 413, "body"),
        ("x".repeat(4 << 20), "application/json", 413, "body"),
        (
            format!(r#"{{{S},{E},"pad":"{}"}}"#, " ".repeat(20_000)),
            "application/json",
            413,
            "body",
        ),
        (DE_LOW_HOUR.into(), "text/plain", 415, "Content-Type"),
        (
            DE_LOW_HOUR.into(),
            "application/x-www-form-urlencoded",
            415,
            "Content-Type",
        ),
        (DE_LOW_HOUR.into(), "", 415, "Content-Type"),
        ("x".repeat(4 << 20), "text/plain", 415, "Content-Type"),
    ];
    let http = client();
    for (body, content_type, status, field) in &cases {
        let mut req = http.post(s.url("/api/query")).body(body.clone());
        if !content_type.is_empty() {
            req = req.header(header::CONTENT_TYPE, *content_type);
        }
        let r = req.send().await.expect("POST");
        let what = format!("{content_type} {:.80}", body);
        assert_eq!(r.status().as_u16(), *status, "{what}");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/json",
            "{what}"
        );
        let v = json(r).await;
        assert!(v["error"].is_string(), "{what}: {v}");
        let fields = v["fields"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: {v}"));
        assert!(
            fields
                .iter()
                .any(|f| f["field"] == *field && f["message"].is_string()),
            "{what}: expected field {field}, got {v}"
        );
    }

    // Several bad fields are all named at once.
    let r = post(
        &s.url("/api/query"),
        r#"{"startDate":"x","endDate":"y","minAqi":99,"range":"?"}"#,
        false,
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v = json(r).await;
    assert_eq!(v["error"], "invalid query");
    let named: Vec<&str> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    for f in ["startDate", "endDate", "minAqi", "range"] {
        assert!(named.contains(&f), "{f} not in {named:?}");
    }

    // A JSON content type with parameters is fine.
    let r = http
        .post(s.url("/api/query"))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(DE_LOW_HOUR)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Wrong method and unknown paths are JSON too.
    let r = http.get(s.url("/api/query")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(json(r).await["error"].is_string());
    let r = http.get(s.url("/api/nothing")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(json(r).await["error"].is_string());
}

#[tokio::test]
async fn health_readiness_and_meta() {
    let s = Setup::new(&[]);
    let r = client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "ok");

    let r = client().get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json(r).await["status"], "ready");

    let r = client().get(s.url("/api/meta")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v = json(r).await;
    assert_eq!(v["readings"], 4928);
    assert_eq!(v["first"], "2018-06-03 20:42:52");
    assert_eq!(v["last"], "2018-06-03 20:48:01");
    let countries = v["countries"].as_array().unwrap();
    assert!(countries.iter().any(|c| c == "DE"));
    assert!(countries.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
}

#[tokio::test]
async fn a_corrupt_reading_store_is_not_ready() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    support::load_sample(&db);
    // Overwrite the readings table's root page with garbage, as a bad disk
    // or a stray write would: the schema (page 1) is intact, so the gateway
    // starts, but every read of the table fails.
    let (root, page_size): (i64, i64) = {
        let conn = rusqlite::Connection::open(&db).expect("open");
        let root = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'readings'",
                [],
                |r| r.get(0),
            )
            .expect("the readings table");
        let size = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .expect("page size");
        (root, size)
    };
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&db)
            .expect("open the file");
        f.seek(SeekFrom::Start(((root - 1) * page_size) as u64))
            .expect("seek");
        f.write_all(&vec![0xA5; page_size as usize]).expect("write");
    }
    let g = gateway(&db, &[]);
    // The queries fail…
    let r = post(&g.url("/api/query"), DE_LOW_HOUR, false).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // …and so does readiness (`SELECT 1` passed), naming the store.
    let r = client().get(g.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v = json(r).await;
    let failed: Vec<&str> = v["failed"]
        .as_array()
        .expect("the failed checks")
        .iter()
        .filter_map(|c| c["check"].as_str())
        .collect();
    assert_eq!(failed, ["readings"], "{v}");
}

#[tokio::test]
async fn repeated_direct_queries_come_from_the_answer_cache_until_it_expires() {
    // A TTL long enough that a loaded machine still asks the cached
    // questions below within it (2 s was not, on 2 busy cores).
    let s = Setup::new(&["--answer-cache-ttl", "6s"]);
    let (expected, _) = reference_csv(DE_LOW_HOUR);
    // A burst of identical queries: computed once, every answer complete.
    let url = s.url("/api/query");
    let burst = futures::future::join_all((0..8).map(|_| post(&url, DE_LOW_HOUR, false))).await;
    for r in burst {
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-airq-answer"], "direct");
        assert!(r.headers().contains_key("x-airq-cache"));
        assert_eq!(r.bytes().await.unwrap().as_ref(), expected.as_slice());
    }
    let again = post(&s.url("/api/query"), DE_LOW_HOUR, false).await;
    assert_eq!(again.headers()["x-airq-cache"], "hit");
    assert_eq!(again.bytes().await.unwrap().as_ref(), expected.as_slice());

    // New readings (a nightly ingestion): the cached answer stays until its
    // time is up, then the new data shows.
    let mut extra = sample_readings()
        .iter()
        .find(|r| r.loc_country == "DE" && r.index(airq_core::Index::Daqi) <= 3)
        .expect("a DE/Low reading")
        .clone();
    extra.timestamp = Timestamp::parse_feed("2018-06-03 20:30:00").unwrap();
    extra.sensor_id = 999_999_999;
    SqliteReadingStore::new(s.db())
        .put_batch_blocking(std::slice::from_ref(&extra))
        .expect("storing a new reading");
    let cached = post(&s.url("/api/query"), DE_LOW_HOUR, false).await;
    assert_eq!(cached.headers()["x-airq-cache"], "hit");
    assert_eq!(cached.bytes().await.unwrap().as_ref(), expected.as_slice());
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let fresh = post(&s.url("/api/query"), DE_LOW_HOUR, false).await;
    assert_eq!(fresh.headers()["x-airq-cache"], "miss");
    let text = fresh.text().await.unwrap();
    assert_eq!(
        text.lines().count(),
        1 + 3315 + 1,
        "the new reading is there"
    );
    assert!(text.contains(",999999999,"));
}

#[tokio::test]
async fn answers_too_large_to_cache_and_a_disabled_cache_still_stream() {
    let all = r#"{"startDate":"2018-06-03","endDate":"2018-06-03"}"#;
    let (expected, _) = reference_csv(all);
    for args in [
        &["--answer-cache-max-entry-kib", "64"][..],
        &["--answer-cache-ttl", "0"][..],
    ] {
        let s = Setup::new(args);
        for _ in 0..2 {
            let r = post(&s.url("/api/query"), all, false).await;
            assert_eq!(r.status(), StatusCode::OK, "{args:?}");
            assert_eq!(r.headers()["x-airq-answer"], "direct");
            assert!(!r.headers().contains_key("x-airq-cache"), "{args:?}");
            assert_eq!(r.bytes().await.unwrap().as_ref(), expected.as_slice());
        }
    }
}

#[tokio::test]
async fn every_response_tells_browsers_not_to_sniff_its_type() {
    let s = Setup::new(&[]);
    let nosniff = |r: &Response| {
        assert_eq!(
            r.headers()
                .get("x-content-type-options")
                .map(|v| v.as_bytes()),
            Some(&b"nosniff"[..]),
            "{} {:?}",
            r.status(),
            r.url().path()
        );
    };
    // An error that echoes its input: HTML a sniffing browser could run.
    let r = post(
        &s.url("/api/query"),
        r#"{"startDate":"<script>alert(1)</script>"}"#,
        false,
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    nosniff(&r);
    assert!(r.text().await.unwrap().contains("<script>"));
    // An answer, the plain-text probes, an unknown path, a wrong method.
    let r = post(&s.url("/api/query"), DE_LOW_HOUR, false).await;
    assert_eq!(r.status(), StatusCode::OK);
    nosniff(&r);
    for path in [
        "/healthz",
        "/readyz",
        "/api/meta",
        "/metrics",
        "/no/such/path",
    ] {
        nosniff(&client().get(s.url(path)).send().await.expect("GET"));
    }
    nosniff(
        &client()
            .delete(s.url("/api/query"))
            .send()
            .await
            .expect("DELETE"),
    );
}

/// `GET /api/results/{id}/status`: the state and the validated query in
/// every state (what a shared link's page fills its form with), with the
/// rows once done and the reason once failed; 404 and 410 as the answer.
#[tokio::test]
async fn a_results_status_says_its_state_and_query() {
    let s = Setup::new(&[]);
    let status = |id: Uuid| {
        client()
            .get(s.url(&format!("/api/results/{id}/status")))
            .send()
    };
    let id = submit_async(&s, DE_LOW_HOUR).await;
    let r = status(id).await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let v = json(r).await;
    assert_eq!(v["id"], id.to_string());
    assert_eq!(v["status"], "queued");
    // The query as validated: the canonical form, range and all, worked
    // out by hand from DE_LOW_HOUR (DAQI and CSV are defaults: left out).
    assert_eq!(
        v["query"],
        serde_json::json!({"startDate": "2018-06-03 20:00:00", "endDate": "2018-06-03 21:00:00",
            "country": "DE", "minAqi": 0, "maxAqi": 10, "range": "Low"})
    );
    assert!(v.get("rows").is_none() && v.get("error").is_none(), "{v}");

    let (expected, rows) = reference_csv(DE_LOW_HOUR);
    work_one(&s.db(), done_from_reference).await;
    let url = s.url(&format!("/api/results/{id}"));
    assert_eq!(until_final(&url).await.status(), StatusCode::OK);
    assert_csv_result(&url, &expected).await;
    let v = json(status(id).await.expect("GET")).await;
    assert_eq!(
        (v["status"].as_str(), v["rows"].as_u64()),
        (Some("done"), Some(rows as u64))
    );

    let failed = submit_async(&s, DE_LOW_HOUR).await;
    work_one(&s.db(), |_| Outcome::Failed {
        error: "the store was on fire".into(),
    })
    .await;
    until_final(&s.url(&format!("/api/results/{failed}"))).await;
    let v = json(status(failed).await.expect("GET")).await;
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"], "the store was on fire");

    let r = status(Uuid::new_v4()).await.expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = client()
        .get(s.url("/api/results/not-a-uuid/status"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let gone = expired_result(&s).await;
    assert_eq!(status(gone).await.expect("GET").status(), StatusCode::GONE);
}

/// `GET /api/meta` carries the options and limits the page builds its form
/// from: every index with its bands (worked out from the standards' tables
/// in `airq_core::aqi`), every format, and this gateway's own span.
#[tokio::test]
async fn meta_carries_the_options_and_this_gateways_limits() {
    let s = Setup::new(&["--max-span", "62days"]);
    let r = client().get(s.url("/api/meta")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    let v = json(r).await;
    assert_eq!(v["limits"]["maxSpanSeconds"], 62 * 86_400);
    assert_eq!(v["limits"]["maxRadiusKm"], 100.0);
    let names: Vec<&str> = v["indices"]
        .as_array()
        .expect("indices")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["daqi", "us-epa", "eaqi"]);
    let daqi = &v["indices"][0];
    assert_eq!(daqi["default"], true);
    assert_eq!(
        (daqi["floor"].as_u64(), daqi["max"].as_u64()),
        (Some(0), Some(10))
    );
    assert_eq!(daqi["valueColours"].as_array().map(Vec::len), Some(10));
    // US EPA's categories (40 CFR 58 App. G Table 2): Good 0–50 … Hazardous
    // 301–500, each with AirNow's colour.
    let epa = &v["indices"][1];
    assert_eq!(
        epa["bands"][0],
        serde_json::json!({"name": "Good", "lo": 0, "hi": 50, "colour": "#00E400", "abbr": null,
            "pm25From": 0.0})
    );
    assert_eq!(epa["bands"][5]["hi"], 500);
    // Hazardous from 225.5 µg/m³ PM2.5 (the 2024 breakpoints).
    assert_eq!(epa["bands"][5]["pm25From"], 225.5);
    assert_eq!(v["limits"]["maxAggregateSpanSeconds"], 366 * 86_400);
    assert_eq!(
        v["aggregate"],
        serde_json::json!({"periods": ["hour", "day", "month", "year"],
            "by": ["sensor", "cell", "country", "all"]})
    );
    let formats: Vec<(&str, &str)> = v["formats"]
        .as_array()
        .expect("formats")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap_or(""),
                f["mediaType"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        formats,
        [
            ("csv", "text/csv"),
            ("ndjson", "application/x-ndjson"),
            ("geojson", "application/geo+json")
        ]
    );
}

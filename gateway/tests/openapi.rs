//! The OpenAPI description against the gateway it describes, on the real
//! binaries: the served document is valid OpenAPI 3.1 (checked by
//! `openapi-spec-validator`, from PyPI, in the project's `.venv/`), every
//! answer the gateway gives to requests on every route (errors included)
//! is one the document lists, with its content type and the headers that
//! matter, and the page at `/api` names every path.

#![cfg(unix)]

mod support;

use airq_core::results::{Outcome, ResultStore, Submission};
use airq_core::{ClientId, Query, QueryLimits};
use airq_embedded::{Db, SqliteResultStore};
use reqwest::{header, RequestBuilder, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;
use support::raw_client as client;
use support::{eventually, venv_bin, Service, Setup, Worker};
use uuid::Uuid;

const HOUR: &str = r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE","minAqi":0,"maxAqi":10,"range":"Low"}"#;
const VALIDATOR: &str = "openapi-spec-validator";
/// A well-formed key that no store knows.
const UNKNOWN_KEY: &str = "airq_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Headers whose presence on an answer the document must show.
const WATCHED: [&str; 15] = [
    "x-request-id",
    "location",
    "preference-applied",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "www-authenticate",
    "etag",
    "accept-ranges",
    "content-range",
    "x-airq-answer",
    "x-airq-cache",
    "x-airq-rows",
    "x-airq-index",
    "content-disposition",
];

/// The description as `gateway` serves it.
async fn served(gateway: &Service) -> Value {
    let r = client()
        .get(gateway.url("/api/openapi.json"))
        .send()
        .await
        .expect("GET /api/openapi.json");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        essence(r.headers().get(header::CONTENT_TYPE)),
        Some("application/json".into())
    );
    let bytes = r.bytes().await.expect("body");
    serde_json::from_slice(&bytes).expect("the description is JSON")
}

/// A media type without its parameters, lower case.
fn essence(value: Option<&header::HeaderValue>) -> Option<String> {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
}

/// One answer: to which documented route, its status, content type and
/// watched headers.
#[derive(Debug)]
struct Seen {
    method: &'static str,
    route: &'static str,
    status: u16,
    content_type: Option<String>,
    has_body: bool,
    /// The body, when it is JSON.
    json: Option<Value>,
    headers: Vec<&'static str>,
}

/// Every answer the test saw.
#[derive(Default)]
struct Log(Vec<Seen>);

impl Log {
    /// Sends `request` (for `method route`), records the answer and
    /// returns its status, headers and body.
    async fn send(
        &mut self,
        method: &'static str,
        route: &'static str,
        request: RequestBuilder,
    ) -> (StatusCode, header::HeaderMap, bytes::Bytes) {
        let r = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {route}: {e}"));
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.bytes().await.expect("body");
        self.0.push(Seen {
            method,
            route,
            status: status.as_u16(),
            content_type: essence(headers.get(header::CONTENT_TYPE)),
            has_body: !body.is_empty(),
            json: serde_json::from_slice(&body).ok(),
            headers: WATCHED
                .into_iter()
                .filter(|h| headers.contains_key(*h))
                .collect(),
        });
        (status, headers, body)
    }

    /// [`Log::send`] for a stream that does not end: its first chunk only.
    async fn send_open(&mut self, route: &'static str, request: RequestBuilder) -> StatusCode {
        let mut r = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {route}: {e}"));
        let status = r.status();
        let headers = r.headers().clone();
        let first = r.chunk().await.expect("a first chunk");
        self.0.push(Seen {
            method: "GET",
            route,
            status: status.as_u16(),
            content_type: essence(headers.get(header::CONTENT_TYPE)),
            has_body: first.is_some_and(|b| !b.is_empty()),
            json: None,
            headers: WATCHED
                .into_iter()
                .filter(|h| headers.contains_key(*h))
                .collect(),
        });
        status
    }

    fn statuses(&self, method: &str, route: &str) -> BTreeSet<u16> {
        self.0
            .iter()
            .filter(|s| s.method == method && s.route == route)
            .map(|s| s.status)
            .collect()
    }
}

/// `response` itself, or what its `$ref` names.
fn resolve<'a>(doc: &'a Value, response: &'a Value) -> &'a Value {
    match response["$ref"].as_str() {
        Some(r) => r
            .strip_prefix("#/")
            .map(|p| p.split('/').fold(doc, |v, k| &v[k]))
            .unwrap_or(&Value::Null),
        None => response,
    }
}

/// What in `seen` the document does not say: each problem, one line.
fn undocumented(doc: &Value, seen: &[Seen]) -> Vec<String> {
    let mut problems = Vec::new();
    for s in seen {
        let at = format!("{} {} → {}", s.method, s.route, s.status);
        let op = &doc["paths"][s.route][s.method.to_ascii_lowercase()];
        if !op.is_object() {
            problems.push(format!("{at}: the route is not described"));
            continue;
        }
        let response = resolve(doc, &op["responses"][s.status.to_string()]);
        if !response.is_object() {
            problems.push(format!("{at}: the status is not documented"));
            continue;
        }
        let documented: Vec<String> = response["content"]
            .as_object()
            .map(|c| {
                c.keys()
                    .map(|k| {
                        k.split(';')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_ascii_lowercase()
                    })
                    .collect()
            })
            .unwrap_or_default();
        match &s.content_type {
            Some(t) if s.has_body && !documented.contains(t) => problems.push(format!(
                "{at}: content type {t} is not documented (only {documented:?})"
            )),
            None if s.has_body => problems.push(format!("{at}: a body without a content type")),
            _ if !s.has_body && !documented.is_empty() => problems.push(format!(
                "{at}: documented as {documented:?}, but no body came"
            )),
            _ => {}
        }
        let headers: Vec<String> = response["headers"]
            .as_object()
            .map(|h| h.keys().map(|k| k.to_ascii_lowercase()).collect())
            .unwrap_or_default();
        for h in &s.headers {
            if !headers.iter().any(|d| d == h) {
                problems.push(format!("{at}: header {h} is not documented"));
            }
        }
        if !s.headers.contains(&"x-request-id") {
            problems.push(format!("{at}: no X-Request-Id, which every answer carries"));
        }
        if let (Some(t), Some(body)) = (&s.content_type, &s.json) {
            let schema = &response["content"][t.as_str()]["schema"];
            for problem in fields_unlike(doc, schema, body) {
                problems.push(format!("{at}: {problem}"));
            }
        }
    }
    problems
}

/// How a JSON `body`'s fields differ from its object `schema`'s (one
/// level): a required field missing, or a field the schema does not name.
fn fields_unlike(doc: &Value, schema: &Value, body: &Value) -> Vec<String> {
    let schema = resolve(doc, schema);
    let (Some(properties), Some(fields)) = (schema["properties"].as_object(), body.as_object())
    else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap_or("");
        if !fields.contains_key(name) {
            problems.push(format!("the body lacks the required field {name}: {body}"));
        }
    }
    for name in fields.keys() {
        if !properties.contains_key(name) {
            problems.push(format!(
                "the body has a field the schema does not name, {name}: {body}"
            ));
        }
    }
    problems
}

fn post_json(url: &str, body: &str) -> RequestBuilder {
    client()
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_owned())
}

/// Puts a result straight into `db`'s store: expired at once, or failed.
async fn stored_result(db: Db, expired: bool) -> Uuid {
    let store = SqliteResultStore::new(db);
    let id = Uuid::new_v4();
    let query = Query::from_json(HOUR.as_bytes(), &QueryLimits::default()).expect("query");
    let submission = Submission {
        client: ClientId::address("127.0.0.1".parse().expect("an address")),
        request_id: None,
    };
    let ttl = if expired {
        Duration::ZERO
    } else {
        Duration::from_secs(3600)
    };
    store
        .create(id, &query, ttl, &submission)
        .await
        .expect("creating a result");
    if !expired {
        let failed = Outcome::Failed {
            error: "the answer has 3 rows, more than the 1 allowed: narrow the query".into(),
        };
        store.finish(id, &failed).await.expect("failing it");
    }
    id
}

#[tokio::test]
async fn the_served_document_is_valid_openapi_3_1() {
    let s = Setup::new(&[]);
    let doc = served(&s.gateway).await;
    assert_eq!(doc["openapi"], "3.1.0");

    let Some(validator) = venv_bin(VALIDATOR) else {
        panic!(
            "{VALIDATOR} is not installed in the project's virtual environment (.venv/): \
             run `bash scripts/moto.sh install && .venv/bin/python -m pip install \
             openapi-spec-validator==0.9.0` (scripts/test.sh does both)"
        );
    };
    let file = s.dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).expect("JSON")).expect("writing it");
    let out = Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", validator.display()));
    assert!(
        out.status.success(),
        "{VALIDATOR} rejects the document ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where the description and the server could disagree on a rule between
/// fields or on a header, the description says what the server does: a
/// query with both `bbox` and `near` is outside the schema (and refused
/// with 400), and any `X-Request-Id` is inside it (and an unacceptable one
/// is replaced, not refused).
#[tokio::test]
async fn the_description_says_what_the_server_does() {
    let s = Setup::new(&[]);
    let doc = served(&s.gateway).await;
    assert_eq!(
        doc["components"]["schemas"]["Query"]["not"],
        serde_json::json!({"required": ["bbox", "near"]})
    );
    let both = r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","bbox":[5,47,15,55],"near":{"lat":48.78,"lon":9.18,"radiusKm":10}}"#;
    let r = post_json(&s.url("/api/query"), both)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A band of the query's own index: `Good` is a US EPA band, not a
    // DAQI one (the default index), and the server says so.
    let rules = doc["components"]["schemas"]["Query"]["allOf"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let epa = rules
        .iter()
        .find(|r| r["then"]["properties"]["range"]["anyOf"][0]["title"] == "us-epa bands")
        .expect("a rule for us-epa's bands");
    // Its condition takes the index as the server does (`US_EPA` too),
    // by the names' pattern.
    let when = regex::Regex::new(
        epa["if"]["properties"]["index"]["pattern"]
            .as_str()
            .expect("a pattern"),
    )
    .expect("a regular expression");
    assert!(when.is_match("us-epa") && when.is_match("US_EPA") && !when.is_match("eaqi"));
    assert_eq!(rules.len(), 3, "one rule per index: {rules:?}");
    let daqi_good =
        r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","range":"Good"}"#;
    let r = post_json(&s.url("/api/query"), daqi_good)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // GET /api/latest's filters: one object, so that the rule can be said.
    let latest = &doc["paths"]["/api/latest"]["get"]["parameters"][0];
    assert_eq!(latest["style"], "form");
    assert_eq!(latest["explode"], true);
    assert_eq!(
        latest["schema"]["not"],
        serde_json::json!({"required": ["bbox", "near"]})
    );
    let r = client()
        .get(s.url("/api/latest?bbox=5,47,15,55&near=48.78,9.18,10"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let param = doc["paths"]["/api/meta"]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "X-Request-Id"))
        .cloned()
        .expect("X-Request-Id is described");
    assert_eq!(param["schema"], serde_json::json!({"type": "string"}));
    let r = client()
        .get(s.url("/api/meta"))
        .header("X-Request-Id", "not an acceptable id!")
        .send()
        .await
        .expect("GET");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "an unacceptable id is not refused"
    );
    let given = r.headers()["x-request-id"].to_str().expect("ASCII");
    assert!(
        Uuid::parse_str(given).is_ok(),
        "replaced by a UUID: {given}"
    );
}

#[tokio::test]
async fn every_answer_the_gateway_gives_is_documented() {
    let mut log = Log::default();
    let s = Setup::new(&[]);
    let doc = served(&s.gateway).await;
    let c = client();

    // The description, the page, operations.
    log.send(
        "GET",
        "/api/openapi.json",
        c.get(s.url("/api/openapi.json")),
    )
    .await;
    log.send("GET", "/api", c.get(s.url("/api"))).await;
    log.send("GET", "/healthz", c.get(s.url("/healthz"))).await;
    let (status, ..) = log.send("GET", "/readyz", c.get(s.url("/readyz"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, ..) = log.send("GET", "/metrics", c.get(s.url("/metrics"))).await;
    assert_eq!(status, StatusCode::OK);

    // The web page and its files, fresh and revalidated.
    let (_, headers, _) = log.send("GET", "/", c.get(s.url("/"))).await;
    let etag = headers[header::ETAG].clone();
    let (status, ..) = log
        .send(
            "GET",
            "/",
            c.get(s.url("/")).header(header::IF_NONE_MATCH, etag),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    for name in ["app.css", "app.js", "favicon.svg"] {
        let url = s.url(&format!("/assets/{name}"));
        let (status, headers, _) = log.send("GET", "/assets/{name}", c.get(&url)).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        let etag = headers[header::ETAG].clone();
        let (status, ..) = log
            .send(
                "GET",
                "/assets/{name}",
                c.get(&url).header(header::IF_NONE_MATCH, etag),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{name}");
    }
    log.send("GET", "/assets/{name}", c.get(s.url("/assets/nope.js")))
        .await;

    // The store's summary, and keys where they do not belong.
    log.send("GET", "/api/meta", c.get(s.url("/api/meta")))
        .await;
    log.send("GET", "/api/meta", c.get(s.url("/api/meta?api_key=x")))
        .await;
    log.send(
        "GET",
        "/api/meta",
        c.get(s.url("/api/meta")).header("X-API-Key", "not-a-key"),
    )
    .await;
    log.send(
        "GET",
        "/api/meta",
        c.get(s.url("/api/meta")).header("X-API-Key", UNKNOWN_KEY),
    )
    .await;

    // Direct answers (computed, then from the cache) and bad requests.
    let query = s.url("/api/query");
    for _ in 0..2 {
        let (status, headers, _) = log
            .send("POST", "/api/query", post_json(&query, HOUR))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-airq-answer"], "direct");
    }
    log.send(
        "POST",
        "/api/query",
        post_json(&query, HOUR).header(header::ACCEPT_ENCODING, "gzip"),
    )
    .await;
    log.send(
        "POST",
        "/api/query",
        c.post(&query)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(HOUR),
    )
    .await;
    log.send("POST", "/api/query", c.post(&query).body(HOUR))
        .await;
    log.send(
        "POST",
        "/api/query",
        post_json(&query, &"x".repeat(17 * 1024)),
    )
    .await;
    log.send(
        "POST",
        "/api/query",
        post_json(&query, r#"{"startDate":"yesterday","colour":"red"}"#),
    )
    .await;
    log.send("POST", "/api/query", post_json(&query, "[1, 2]"))
        .await;
    // Every format, in another index.
    for format in ["ndjson", "geojson"] {
        let body = HOUR.replace(
            r#""range":"Low""#,
            &format!(r#""index":"us-epa","range":"Good","format":"{format}""#),
        );
        for _ in 0..2 {
            let (status, headers, _) = log
                .send("POST", "/api/query", post_json(&query, &body))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(headers["x-airq-index"], "us-epa");
        }
    }
    log.send(
        "POST",
        "/api/query",
        post_json(
            &query,
            &HOUR.replace('}', r#","bbox":[9,49,8,48],"index":"aqi"}"#),
        ),
    )
    .await;
    log.send(
        "POST",
        "/api/query",
        post_json(&query, HOUR).header(header::AUTHORIZATION, "Bearer airq_short"),
    )
    .await;
    log.send(
        "POST",
        "/api/query",
        post_json(&s.url("/api/query?key=airq_x"), HOUR),
    )
    .await;

    // The latest readings, in every format, from the cache, and refused.
    const LATEST: &str = "/api/latest";
    for qs in [
        "",
        "?format=ndjson&index=eaqi",
        "?format=geojson&country=DE",
        "?format=geojson&country=DE",
    ] {
        let (status, ..) = log
            .send("GET", LATEST, c.get(s.url(&format!("{LATEST}{qs}"))))
            .await;
        assert_eq!(status, StatusCode::OK, "{qs}");
    }
    for qs in ["?bbox=9,49,8,48&index=aqi", "?api_key=x"] {
        let (status, ..) = log
            .send("GET", LATEST, c.get(s.url(&format!("{LATEST}{qs}"))))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{qs}");
    }
    log.send(
        "GET",
        LATEST,
        c.get(s.url(LATEST)).header("X-API-Key", UNKNOWN_KEY),
    )
    .await;
    let no_direct = Setup::new(&["--direct-limit", "0"]);
    let (status, ..) = log.send("GET", LATEST, c.get(no_direct.url(LATEST))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // A queued query, polled before any worker runs, then until done.
    let (status, headers, _) = log
        .send(
            "POST",
            "/api/query",
            post_json(&query, HOUR)
                .header("Prefer", "respond-async")
                .header("X-Request-Id", "openapi-test.1"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let location = headers[header::LOCATION]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let result = s.url(&location);
    const RESULT: &str = "/api/results/{id}";
    let (status, ..) = log.send("GET", RESULT, c.get(&result)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let _worker = Worker::start(&s.dir.path().join("airq.db"), &["--receive-wait", "1s"]);
    let (status, headers, csv) = eventually(
        "the queued query to be done",
        600,
        Duration::from_millis(50),
        || async {
            let r = c.get(&result).send().await.expect("GET");
            if r.status() == StatusCode::ACCEPTED {
                return None;
            }
            let status = r.status();
            let headers = r.headers().clone();
            Some((status, headers, r.bytes().await.expect("body")))
        },
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&csv));
    let etag = headers[header::ETAG].clone();
    let (status, ..) = log.send("GET", RESULT, c.get(&result)).await;
    assert_eq!(status, StatusCode::OK);
    log.send(
        "GET",
        RESULT,
        c.get(&result).header(header::ACCEPT_ENCODING, "gzip"),
    )
    .await;
    let (status, headers, _) = log
        .send(
            "GET",
            RESULT,
            c.get(&result).header(header::RANGE, "bytes=0-99"),
        )
        .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert!(headers.contains_key(header::CONTENT_RANGE));
    let (status, ..) = log
        .send(
            "GET",
            RESULT,
            c.get(&result)
                .header(header::RANGE, format!("bytes={}-", csv.len() + 10)),
        )
        .await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    let (status, ..) = log
        .send(
            "GET",
            RESULT,
            c.get(&result).header(header::IF_NONE_MATCH, etag),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    // A queued GeoJSON answer, whole and in part.
    let geojson = r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE","index":"eaqi","format":"geojson"}"#;
    let (status, headers, _) = log
        .send(
            "POST",
            "/api/query",
            post_json(&query, geojson).header("Prefer", "respond-async"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let result = s.url(headers[header::LOCATION].to_str().expect("ASCII"));
    eventually(
        "the queued GeoJSON to be done",
        600,
        Duration::from_millis(50),
        || async {
            let r = c.get(&result).send().await.expect("GET");
            (r.status() != StatusCode::ACCEPTED).then_some(())
        },
    )
    .await;
    let (status, headers, _) = log.send("GET", RESULT, c.get(&result)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-airq-index"], "eaqi");
    let (status, ..) = log
        .send(
            "GET",
            RESULT,
            c.get(&result).header(header::RANGE, "bytes=10-99"),
        )
        .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);

    // Results that are not there, no longer there, or failed.
    let unknown = s.url(&format!("/api/results/{}", Uuid::new_v4()));
    log.send("GET", RESULT, c.get(&unknown)).await;
    log.send("GET", RESULT, c.get(s.url("/api/results/not-a-uuid")))
        .await;
    let expired = stored_result(s.db(), true).await;
    let (status, ..) = log
        .send(
            "GET",
            RESULT,
            c.get(s.url(&format!("/api/results/{expired}"))),
        )
        .await;
    assert_eq!(status, StatusCode::GONE);
    let failed = stored_result(s.db(), false).await;
    let (status, ..) = log
        .send(
            "GET",
            RESULT,
            c.get(s.url(&format!("/api/results/{failed}"))),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    log.send("GET", RESULT, c.get(&result).header("X-API-Key", "airq_"))
        .await;
    log.send("GET", RESULT, c.get(format!("{result}?token=x")))
        .await;
    // A result's status, in each state.
    const STATUS: &str = "/api/results/{id}/status";
    for (url, want) in [
        (format!("{result}/status"), StatusCode::OK),
        (
            s.url(&format!("/api/results/{failed}/status")),
            StatusCode::OK,
        ),
        (format!("{unknown}/status"), StatusCode::NOT_FOUND),
        (
            s.url(&format!("/api/results/{expired}/status")),
            StatusCode::GONE,
        ),
        (format!("{result}/status?token=x"), StatusCode::BAD_REQUEST),
    ] {
        let (status, ..) = log.send("GET", STATUS, c.get(&url)).await;
        assert_eq!(status, want, "{url}");
    }

    // A result's events: a done one's (the stream ends at once), resumed
    // past its end, unknown, expired; and long polls.
    const EVENTS: &str = "/api/results/{id}/events";
    for (url, last, want) in [
        (format!("{result}/events"), None, StatusCode::OK),
        (
            format!("{result}/events"),
            Some("3"),
            StatusCode::NO_CONTENT,
        ),
        (format!("{unknown}/events"), None, StatusCode::NOT_FOUND),
        (
            s.url(&format!("/api/results/{expired}/events")),
            None,
            StatusCode::GONE,
        ),
        (
            format!("{result}/events?token=x"),
            None,
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let mut request = c.get(&url);
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last);
        }
        let (status, ..) = log.send("GET", EVENTS, request).await;
        assert_eq!(status, want, "{url}");
    }
    for (qs, want) in [
        ("?wait=1s", StatusCode::OK),
        ("?wait=forever", StatusCode::BAD_REQUEST),
    ] {
        let (status, ..) = log
            .send("GET", RESULT, c.get(format!("{result}{qs}")))
            .await;
        assert_eq!(status, want, "{qs}");
    }

    const STREAM: &str = "/api/stream/latest";
    let status = log
        .send_open(STREAM, c.get(s.url("/api/stream/latest?country=DE")))
        .await;
    assert_eq!(status, StatusCode::OK);
    for qs in ["?format=csv", "?country=DE&index=aqi"] {
        let (status, ..) = log
            .send("GET", STREAM, c.get(s.url(&format!("{STREAM}{qs}"))))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{qs}");
    }

    // Alerts: on a gateway whose webhooks may go to loopback, with a key.
    let alerting = Setup::new(&["--webhook-allow-loopback"]);
    let key = airq_core::keys::generate("openapi", "standard", Default::default()).expect("a key");
    airq_core::keys::KeyStore::insert(
        &airq_embedded::SqliteKeyStore::new(alerting.db()),
        &key.record,
    )
    .await
    .expect("storing the key");
    const ALERTS: &str = "/api/alerts";
    const ALERT: &str = "/api/alerts/{id}";
    let body = r#"{"place":{"country":"DE"},"threshold":{"value":7},"webhookUrl":"http://127.0.0.1:9/hook"}"#;
    let keyed = |r: RequestBuilder| r.header("x-api-key", key.key.as_str());
    let (status, headers, created) = log
        .send(
            "POST",
            ALERTS,
            keyed(post_json(&alerting.url(ALERTS), body)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(headers.contains_key(header::LOCATION));
    let created: Value = serde_json::from_slice(&created).expect("JSON");
    let alert = alerting.url(&format!(
        "/api/alerts/{}",
        created["id"].as_str().expect("id")
    ));
    for (request, want) in [
        (
            post_json(&alerting.url(ALERTS), body),
            StatusCode::UNAUTHORIZED,
        ),
        (
            keyed(post_json(&alerting.url(ALERTS), r#"{"place":{}}"#)),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, ..) = log.send("POST", ALERTS, request).await;
        assert_eq!(status, want);
    }
    let unknown = alerting.url(&format!("/api/alerts/{}", Uuid::new_v4()));
    for (method, request, want) in [
        ("GET", keyed(c.get(&alert)), StatusCode::OK),
        ("GET", keyed(c.get(&unknown)), StatusCode::NOT_FOUND),
        ("GET", c.get(&alert), StatusCode::UNAUTHORIZED),
        ("DELETE", keyed(c.delete(&alert)), StatusCode::NO_CONTENT),
        ("DELETE", keyed(c.delete(&alert)), StatusCode::NOT_FOUND),
    ] {
        let (status, ..) = log.send(method, ALERT, request).await;
        assert_eq!(status, want, "{method} {alert}");
    }

    // Limits: two submits a minute, and no backlog at all.
    let limited = Setup::new(&["--tier", "anonymous:submits=2/min", "--max-backlog", "0"]);
    let query = limited.url("/api/query");
    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        let (status, ..) = log
            .send(
                "POST",
                "/api/query",
                post_json(&query, HOUR).header("Prefer", "respond-async"),
            )
            .await;
        seen.insert(status.as_u16());
    }
    assert_eq!(
        seen,
        BTreeSet::from([202, 503, 429]),
        "queued, backlog full, over budget"
    );
    log.send("GET", "/api/meta", c.get(limited.url("/api/meta")))
        .await;
    let (status, ..) = log.send("GET", LATEST, c.get(limited.url(LATEST))).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "latest spends submits"
    );
    let (status, ..) = log.send("GET", STREAM, c.get(limited.url(STREAM))).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "a stream spends submits"
    );

    // Keys required.
    let required = Setup::new(&["--auth", "required"]);
    let (status, headers, _) = log
        .send(
            "POST",
            "/api/query",
            post_json(&required.url("/api/query"), HOUR),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key(header::WWW_AUTHENTICATE));
    log.send(
        "GET",
        RESULT,
        c.get(required.url(&format!("/api/results/{}", Uuid::new_v4()))),
    )
    .await;
    log.send(
        "GET",
        "/api/results/{id}/status",
        c.get(required.url(&format!("/api/results/{}/status", Uuid::new_v4()))),
    )
    .await;
    let (status, ..) = log
        .send("GET", "/api/meta", c.get(required.url("/api/meta")))
        .await;
    assert_eq!(status, StatusCode::OK, "the summary stays open");
    let (status, ..) = log.send("GET", LATEST, c.get(required.url(LATEST))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, ..) = log.send("GET", STREAM, c.get(required.url(STREAM))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Every answer is documented, and every route was asked.
    let problems = undocumented(&doc, &log.0);
    assert!(
        problems.is_empty(),
        "answers the description does not document:\n{}",
        problems.join("\n")
    );
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            let method = method.to_ascii_uppercase();
            assert!(
                !log.statuses(&method, path).is_empty(),
                "{method} {path} is described but the test never asked it"
            );
        }
    }
    for (route, wanted) in [
        ("/api/query", &[200, 202, 400, 401, 413, 415, 429, 503][..]),
        (
            RESULT,
            &[200, 202, 206, 304, 400, 401, 404, 410, 416, 422][..],
        ),
        ("/api/meta", &[200, 400, 401][..]),
        ("/api/results/{id}/status", &[200, 400, 401, 404, 410][..]),
        (LATEST, &[200, 400, 401, 429, 503][..]),
    ] {
        let got = log.statuses(if route == "/api/query" { "POST" } else { "GET" }, route);
        for status in wanted {
            assert!(
                got.contains(status),
                "{route}: the test never saw {status} (saw {got:?})"
            );
        }
    }
}

#[tokio::test]
async fn the_api_page_lists_every_path() {
    let s = Setup::new(&[]);
    let doc = served(&s.gateway).await;
    let r = client().get(s.url("/api")).send().await.expect("GET /api");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        essence(r.headers().get(header::CONTENT_TYPE)),
        Some("text/html".into())
    );
    assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    let page = r.text().await.expect("the page");
    for path in doc["paths"].as_object().expect("paths").keys() {
        assert!(
            page.contains(path.as_str()),
            "the page does not name {path}"
        );
    }
    for (status, _) in doc["paths"]["/api/results/{id}"]["get"]["responses"]
        .as_object()
        .expect("responses")
    {
        assert!(
            page.contains(&format!("<b>{status}</b>")),
            "the page does not list {status}"
        );
    }
    assert!(!page.contains("<script"), "the page runs no script");
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "the page loads nothing from elsewhere"
    );
    assert!(page.contains("X-Request-Id") && page.contains("RateLimit-Policy"));
}

#[test]
fn the_check_finds_what_the_description_leaves_out() {
    let doc = serde_json::json!({"paths": {"/x": {"get": {"responses": {
        "200": {"description": "ok", "content": {"text/csv": {}},
                "headers": {"X-Request-Id": {"schema": {"type": "string"}}}},
        "304": {"description": "same",
                "headers": {"X-Request-Id": {"schema": {"type": "string"}}}}
    }}}}});
    let seen = |status, content_type: Option<&str>, headers: Vec<&'static str>| Seen {
        method: "GET",
        route: "/x",
        status,
        content_type: content_type.map(str::to_owned),
        has_body: content_type.is_some(),
        json: None,
        headers,
    };
    let fine = [
        seen(200, Some("text/csv"), vec!["x-request-id"]),
        seen(304, None, vec!["x-request-id"]),
    ];
    assert_eq!(undocumented(&doc, &fine), Vec::<String>::new());
    let wrong = [
        seen(404, Some("application/json"), vec!["x-request-id"]),
        seen(200, Some("application/json"), vec!["x-request-id"]),
        seen(200, Some("text/csv"), vec!["x-request-id", "etag"]),
        seen(304, None, vec![]),
        Seen {
            route: "/y",
            ..seen(200, None, vec![])
        },
    ];
    let schema = serde_json::json!({"type": "object", "required": ["id"],
        "properties": {"id": {"type": "string"}, "note": {"type": "string"}}});
    assert!(fields_unlike(&doc, &schema, &serde_json::json!({"id": "1", "note": "n"})).is_empty());
    assert_eq!(
        fields_unlike(&doc, &schema, &serde_json::json!({"other": 1})).len(),
        2
    );
    assert_eq!(
        undocumented(&doc, &wrong).len(),
        5,
        "{:?}",
        undocumented(&doc, &wrong)
    );
}

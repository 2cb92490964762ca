//! The whole local stack, as a newcomer runs it: `airq-deploy up` with the
//! real master, gateway and workers on a temporary SQLite file.

mod support;

use std::time::{Duration, Instant};
use support::{expected_csv, LocalStack};

const QUERY: &str = r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE","minAqi":0,"maxAqi":10,"range":"Low"}"#;

/// The stack with two workers; `--grace` is the old name of
/// `--shutdown-grace`, still taken.
struct Stack {
    _stack: LocalStack,
    url: String,
}

impl Stack {
    fn up() -> Stack {
        let stack = LocalStack::start(2, &["--grace", "10s"]);
        let (url, _) = stack.wait_until_up();
        Stack { _stack: stack, url }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_queued_answers_are_identical() {
    let stack = Stack::up();
    let http = reqwest::Client::new();
    let want = expected_csv(QUERY);

    let direct = http
        .post(format!("{}/api/query", stack.url))
        .header("content-type", "application/json")
        .body(QUERY)
        .send()
        .await
        .expect("POST");
    assert_eq!(direct.status(), 200);
    assert!(direct.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/csv"));
    assert_eq!(direct.text().await.expect("body"), want, "direct CSV");

    let queued = http
        .post(format!("{}/api/query", stack.url))
        .header("content-type", "application/json")
        .header("prefer", "respond-async")
        .body(QUERY)
        .send()
        .await
        .expect("POST");
    assert_eq!(queued.status(), 202);
    let location = queued.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let body: serde_json::Value = queued.json().await.expect("json");
    assert_eq!(body["status"], "queued");
    assert!(location.ends_with(body["id"].as_str().expect("id")));

    let poll = format!("{}{}", stack.url, location);
    let deadline = Instant::now() + Duration::from_secs(60);
    let csv = loop {
        let r = http.get(&poll).send().await.expect("GET");
        match r.status().as_u16() {
            200 => break r.text().await.expect("body"),
            202 => {
                assert!(
                    Instant::now() < deadline,
                    "the queued result arrives within 60 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!(
                "unexpected status {other}: {}",
                r.text().await.unwrap_or_default()
            ),
        }
    };
    assert_eq!(csv, want, "queued CSV is byte-identical to the direct one");
    let again = http.get(&poll).send().await.expect("GET");
    assert_eq!(again.status(), 200);
    assert_eq!(again.text().await.expect("body"), want, "served again");
}

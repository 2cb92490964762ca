//! Result events and long polls, end to end with the real gateway and
//! worker binaries: `GET /api/results/{id}/events` (Server-Sent Events) and
//! `GET /api/results/{id}?wait=`.

mod support;

use reqwest::{header, StatusCode};
use serde_json::Value;
use std::time::Duration;
use support::{client, Setup, Worker};

const DE_LOW_HOUR: &str = r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE","minAqi":0,"maxAqi":10,"range":"Low"}"#;
/// Readings of DE_LOW_HOUR, counted independently (see the AWS contract).
const DE_LOW_ROWS: u64 = 3315;
/// Bounds every stream read: a stream that never ends fails the test.
const STREAM_LIMIT: Duration = Duration::from_secs(60);

/// Queues `query` (`Prefer: respond-async`) and returns its result path.
async fn queue(s: &Setup, query: &str) -> String {
    let r = client()
        .post(s.url("/api/query"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("Prefer", "respond-async")
        .body(query.to_owned())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.headers()[header::LOCATION]
        .to_str()
        .expect("Location")
        .to_owned()
}

/// One server-sent event.
#[derive(Debug)]
struct Sse {
    id: Option<String>,
    event: String,
    data: Value,
}

/// Reads events from an open stream until it ends (or `until` says stop),
/// parsing the `text/event-stream` framing by hand, as the spec's
/// processing model does: blocks end with a blank line, `:` lines are
/// comments.
async fn read_events(mut r: reqwest::Response, until: impl Fn(&Sse) -> bool) -> (Vec<Sse>, bool) {
    let mut text = String::new();
    let mut events = Vec::new();
    let read = async {
        loop {
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let Some((id, event, data)) = support::sse_block(&block) else {
                    continue; // a heartbeat comment
                };
                let e = Sse {
                    id,
                    event,
                    data: serde_json::from_str(&data).expect("event data is JSON"),
                };
                let stop = until(&e);
                events.push(e);
                if stop {
                    return false;
                }
            }
            match r.chunk().await.expect("reading the stream") {
                Some(bytes) => text.push_str(std::str::from_utf8(&bytes).expect("UTF-8")),
                None => return true,
            }
        }
    };
    let ended = tokio::time::timeout(STREAM_LIMIT, read)
        .await
        .expect("the stream ends within its limit");
    (events, ended)
}

async fn open(s: &Setup, path: &str, last: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .get(s.url(&format!("{path}/events")))
        .timeout(STREAM_LIMIT);
    if let Some(last) = last {
        req = req.header("Last-Event-ID", last);
    }
    req.send().await.expect("GET events")
}

#[tokio::test]
async fn a_queued_result_streams_its_states_and_ends_done() {
    let s = Setup::new(&[]);
    let path = queue(&s, DE_LOW_HOUR).await;
    let id = path.trim_start_matches("/api/results/").to_owned();

    // No worker yet: the stream says `queued` at once and waits.
    let r = open(&s, &path, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let (first, ended) = read_events(r, |_| true).await;
    assert!(!ended);
    assert_eq!(first[0].event, "queued");
    assert_eq!(first[0].id.as_deref(), Some("1"));
    assert_eq!(first[0].data["id"], id.as_str());
    assert_eq!(first[0].data["status"], "queued");

    // Resumed after `queued`, with a worker: what follows, then the end.
    let r = open(&s, &path, Some("1")).await;
    let _worker = Worker::start(&s.db_path(), &[]);
    let (events, ended) = read_events(r, |_| false).await;
    assert!(ended, "the stream ends after the last event");
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert!(
        names == ["done"] || names == ["running", "done"],
        "after queued: {names:?}"
    );
    let done = events.last().expect("an event");
    assert_eq!(done.id.as_deref(), Some("3"));
    assert_eq!(done.data["status"], "done");
    assert_eq!(done.data["rows"], DE_LOW_ROWS);
    assert_eq!(done.data["download"], path.as_str());
    let answer = client()
        .get(s.url(done.data["download"].as_str().expect("a path")))
        .send()
        .await
        .expect("GET the answer");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.headers()["x-airq-rows"],
        DE_LOW_ROWS.to_string().as_str()
    );

    // Opened once done: `done` at once, then the end.
    let (events, ended) = read_events(open(&s, &path, None).await, |_| false).await;
    assert!(ended);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "done");

    // Resumed after the last event: 204, so an EventSource stops.
    let r = open(&s, &path, Some("3")).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_failed_result_ends_its_stream_failed_with_the_reason() {
    let s = Setup::new(&["--max-result-rows", "10"]);
    let path = queue(&s, DE_LOW_HOUR).await;
    let _worker = Worker::start(&s.db_path(), &[]);
    let (events, ended) = read_events(open(&s, &path, None).await, |_| false).await;
    assert!(ended);
    let last = events.last().expect("an event");
    assert_eq!(last.event, "failed", "{events:?}");
    assert_eq!(last.id.as_deref(), Some("3"));
    let error = last.data["error"].as_str().expect("a reason");
    assert!(error.contains("10"), "{error}");
}

#[tokio::test]
async fn a_long_poll_waits_for_the_end_within_its_bound() {
    let s = Setup::new(&[]);
    let path = queue(&s, DE_LOW_HOUR).await;

    // Nothing to run it: the wait passes and the poll says 202.
    let r = client()
        .get(s.url(&format!("{path}?wait=1s")))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let _worker = Worker::start(&s.db_path(), &[]);
    let r = client()
        .get(s.url(&format!("{path}?wait=25s")))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK, "answered once done");
    assert_eq!(r.headers()["x-airq-rows"], DE_LOW_ROWS.to_string().as_str());

    for bad in ["forever", "26s", "1h"] {
        let r = client()
            .get(s.url(&format!("{path}?wait={bad}")))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = r.json().await.expect("JSON error");
        assert_eq!(body["fields"][0]["field"], "wait", "{bad}: {body}");
    }
}

#[tokio::test]
async fn followers_are_bounded_and_unknown_results_are_404() {
    let s = Setup::new(&["--max-followers-per-client", "1"]);
    let path = queue(&s, DE_LOW_HOUR).await;

    let held = open(&s, &path, None).await;
    assert_eq!(held.status(), StatusCode::OK);
    let refused = open(&s, &path, None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    let body: Value = refused.json().await.expect("JSON error");
    assert!(
        body["error"].as_str().unwrap_or("").contains("follows 1"),
        "{body}"
    );
    // A waiting poll is a follower too.
    let r = client()
        .get(s.url(&format!("{path}?wait=5s")))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);

    // Closing the stream gives its place back.
    drop(held);
    let again = support::eventually(
        "the closed stream's place to come free",
        100,
        Duration::from_millis(100),
        || async {
            let r = open(&s, &path, None).await;
            (r.status() == StatusCode::OK).then_some(r)
        },
    )
    .await;
    drop(again);

    for unknown in [
        "/api/results/6f1c2d0e-8a4b-4c1e-9f3a-2b7d5e8c1a90",
        "/api/results/not-a-uuid",
    ] {
        let r = open(&s, unknown, None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{unknown}");
        let body: Value = r.json().await.expect("JSON error");
        assert_eq!(body["error"], "no result with this id");
    }
}

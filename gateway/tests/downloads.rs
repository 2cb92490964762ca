//! Downloading results as users of big files expect: a queued result (a
//! real worker writes it into the payload space) is served by stream with
//! `Content-Length`, a strong `ETag` (`304` on `If-None-Match`), single
//! `Range` requests (`206`, `416`) and gzip when accepted; its bytes are
//! the direct answer's, and gzip-decoded they are the plain ones. An answer
//! over `--max-result-rows` fails, saying how many rows it has.

#![cfg(unix)]

mod support;

use flate2::read::GzDecoder;
use reqwest::{header, Response, StatusCode};
use serde_json::Value;
use std::io::Read;
use support::raw_client as client;
use support::until_final;
use support::{gateway, load_big_hour, load_sample, store_csv, Service, Worker, BIG_DAY};
use tempfile::TempDir;

/// The sample's German hour: 3,370 rows, 294 KB (stored, not inline).
const DE_HOUR: &str =
    r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE"}"#;

struct Stack {
    dir: TempDir,
    gateway: Service,
    _worker: Worker,
}

impl Stack {
    fn new(gateway_args: &[&str]) -> Stack {
        Stack::with(gateway_args, |db| {
            load_sample(db);
        })
    }

    fn with(gateway_args: &[&str], load: impl FnOnce(&std::path::Path)) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("airq.db");
        load(&db);
        let gateway = gateway(&db, gateway_args);
        let worker = Worker::start(&db, &["--receive-wait", "1s"]);
        Stack {
            dir,
            gateway,
            _worker: worker,
        }
    }

    fn url(&self, path: &str) -> String {
        self.gateway.url(path)
    }
}

async fn submit(stack: &Stack, body: &str, prefer_async: bool) -> Response {
    let mut req = client()
        .post(stack.url("/api/query"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_owned());
    if prefer_async {
        req = req.header("Prefer", "respond-async");
    }
    req.send().await.expect("POST")
}

/// Submits `body` to the queue and polls until it is final; returns the
/// result's path and its final answer.
async fn queued(stack: &Stack, body: &str) -> (String, Response) {
    let r = submit(stack, body, true).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v: Value = r.json().await.expect("JSON");
    let path = format!("/api/results/{}", v["id"].as_str().expect("an id"));
    let done = until_final(&stack.url(&path)).await;
    (path, done)
}

fn header_of(r: &Response, name: header::HeaderName) -> &str {
    r.headers()
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.headers()))
        .to_str()
        .expect("ASCII header")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_result_downloads_like_a_file() {
    let stack = Stack::new(&[]);
    let direct = submit(&stack, DE_HOUR, false).await;
    assert_eq!(direct.status(), StatusCode::OK);
    let direct = direct.bytes().await.expect("direct CSV").to_vec();

    let (path, done) = queued(&stack, DE_HOUR).await;
    assert_eq!(done.status(), StatusCode::OK);
    let len: u64 = header_of(&done, header::CONTENT_LENGTH)
        .parse()
        .expect("a length");
    let tag = header_of(&done, header::ETAG).to_owned();
    assert_eq!(header_of(&done, header::ACCEPT_RANGES), "bytes");
    assert_eq!(
        header_of(&done, "x-airq-rows".parse().expect("name")),
        "3370"
    );
    let whole = done.bytes().await.expect("CSV").to_vec();
    assert_eq!(whole.len() as u64, len, "Content-Length is the CSV's size");
    assert!(
        len > 200_000,
        "large enough to be stored, not inline: {len}"
    );
    assert!(
        whole == direct,
        "queued and direct answers are the same bytes"
    );

    // The same again, or unchanged.
    let url = stack.url(&path);
    let again = client().get(&url).send().await.expect("GET");
    assert_eq!(header_of(&again, header::ETAG), tag, "results never change");
    let not_modified = client()
        .get(&url)
        .header(header::IF_NONE_MATCH, &tag)
        .send()
        .await
        .expect("GET");
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert!(not_modified.bytes().await.expect("body").is_empty());

    // Ranges, as `curl -C -` resumes a download.
    for (range, start, end) in [
        ("bytes=0-0", 0, 1),
        ("bytes=100-4099", 100, 4100),
        (&format!("bytes={}-", len - 50) as &str, len - 50, len),
        ("bytes=-10", len - 10, len),
    ] {
        let r = client()
            .get(&url)
            .header(header::RANGE, range)
            .header(header::ACCEPT_ENCODING, "gzip")
            .send()
            .await
            .expect("GET a range");
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header_of(&r, header::CONTENT_RANGE),
            format!("bytes {start}-{}/{len}", end - 1)
        );
        assert!(
            r.headers().get(header::CONTENT_ENCODING).is_none(),
            "a range is a slice of the plain bytes"
        );
        let body = r.bytes().await.expect("range body");
        assert!(body[..] == whole[start as usize..end as usize], "{range}");
    }
    let r = client()
        .get(&url)
        .header(header::RANGE, format!("bytes={len}-"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        header_of(&r, header::CONTENT_RANGE),
        format!("bytes */{len}")
    );
    // Several ranges get the whole answer, however many there are (the
    // range parser refused more than 100 with 416, fewer got 200) and
    // whether they overlap or not.
    for n in [2, 100, 101, 200, 1000] {
        let ranges: Vec<String> = (0..n).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        let overlapping = format!("bytes={},0-5", ranges.join(","));
        for range in [format!("bytes={}", ranges.join(",")), overlapping] {
            let r = client()
                .get(&url)
                .header(header::RANGE, &range)
                .send()
                .await
                .expect("GET ranges");
            assert_eq!(r.status(), StatusCode::OK, "{n} ranges");
            assert_eq!(r.bytes().await.expect("body").len() as u64, len);
        }
    }
    // An If-Range for another version gets the whole CSV.
    let r = client()
        .get(&url)
        .header(header::RANGE, "bytes=0-9")
        .header(header::IF_RANGE, "\"another\"")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.expect("body").len() as u64, len);

    // Gzip when accepted, the same bytes once decoded, its own tag.
    let r = client()
        .get(&url)
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .expect("GET gzip");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CONTENT_ENCODING), "gzip");
    let gz_tag = header_of(&r, header::ETAG).to_owned();
    assert_ne!(gz_tag, tag, "another representation, another tag");
    let packed = r.bytes().await.expect("gzip body");
    assert!(packed.len() * 2 < whole.len(), "CSV compresses well");
    assert!(gunzip(&packed) == whole, "gzip-decoded, the same bytes");
    let r = client()
        .get(&url)
        .header(header::ACCEPT_ENCODING, "gzip")
        .header(header::IF_NONE_MATCH, &gz_tag)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // Direct answers are compressed too, to the same bytes.
    let r = client()
        .post(stack.url("/api/query"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(DE_HOUR)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CONTENT_ENCODING), "gzip");
    assert!(gunzip(&r.bytes().await.expect("body")) == direct);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_row_limit_fails_saying_how_big_it_is() {
    let stack = Stack::new(&["--max-result-rows", "1000"]);
    for prefer_async in [true, false] {
        let r = submit(&stack, DE_HOUR, prefer_async).await;
        let failed = if r.status() == StatusCode::ACCEPTED {
            let v: Value = r.json().await.expect("JSON");
            let path = format!("/api/results/{}", v["id"].as_str().expect("an id"));
            until_final(&stack.url(&path)).await
        } else {
            r
        };
        assert_eq!(
            failed.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "async: {prefer_async}"
        );
        let v: Value = failed.json().await.expect("JSON");
        let error = v["error"].as_str().expect("an error");
        assert!(error.contains("3370 rows"), "{error}");
        assert!(error.contains("limit of 1000"), "{error}");
        assert!(error.contains("narrow the query"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_of_several_megabytes_streams_byte_for_byte() {
    let stack = Stack::with(&[], |db| {
        load_big_hour(db);
    });
    let expected = store_csv(&stack.dir.path().join("airq.db"), BIG_DAY).await;
    assert!(expected.len() > 8 << 20, "{} bytes", expected.len());

    // Direct: too large for the answer cache, so streamed.
    let direct = submit(&stack, BIG_DAY, false).await;
    assert_eq!(direct.status(), StatusCode::OK);
    assert_eq!(
        header_of(&direct, "x-airq-answer".parse().expect("name")),
        "direct"
    );
    assert!(direct.bytes().await.expect("direct").as_ref() == expected.as_slice());

    // Queued: written by the worker chunk by chunk, served by stream.
    let (path, done) = queued(&stack, BIG_DAY).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(
        header_of(&done, header::CONTENT_LENGTH),
        expected.len().to_string()
    );
    assert!(done.bytes().await.expect("queued").as_ref() == expected.as_slice());
    let r = client()
        .get(stack.url(&path))
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .expect("GET gzip");
    assert_eq!(header_of(&r, header::CONTENT_ENCODING), "gzip");
    assert!(gunzip(&r.bytes().await.expect("gzip")) == expected);
}

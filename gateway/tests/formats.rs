//! Answers in every format and index, and the latest readings, against the
//! gateway (and a worker) as processes on the sample data set:
//!
//! - NDJSON (read line by line with serde_json) and GeoJSON (read with the
//!   `geojson` crate) hold the same readings, field for field, as the CSV of
//!   the same query, numbers with the very text the sensor sent; every
//!   answer equals the reference rendering of the reference selection;
//! - each answer says its index (`X-Airq-Index`), its content type and its
//!   file extension, whichever path served it; a queued result is the
//!   direct answer byte for byte in every format, ranges and gzip included;
//! - an answer of tens of megabytes streams in every format (chunked, and
//!   the gateway's peak memory grows by a small part of it);
//! - bad place, index, band and format fields are `400`s naming the field,
//!   on `POST /api/query` and `GET /api/latest` alike;
//! - `GET /api/latest` after two ingestions answers each sensor's newer
//!   reading (a late older one does not replace it), its filters apply to
//!   that reading, it is cached, and it spends the `submits` budget.

#![cfg(unix)]

mod support;

use airq_core::export::{to_answer, Format, CSV_HEADER};
use airq_core::store::ReadingStore as _;
use airq_core::{Index, Indices, LatestQuery, Query, QueryLimits, Reading, Timestamp};
use airq_embedded::{Db, SqliteReadingStore};
use flate2::read::GzDecoder;
use reqwest::{header, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::str::FromStr;
use std::time::Duration;
use support::raw_client as client;
use support::until_final;
use support::{
    eventually, gateway, load_big_hour, sample_readings, store_csv, Service, Setup, Worker, BIG_DAY,
};

/// The sample's German hour: 3,370 readings.
const DE_HOUR: &str =
    r#"{"startDate":"2018-06-03 20:00:00","endDate":"2018-06-03 21:00:00","country":"DE"}"#;
const DE_HOUR_ROWS: usize = 3370;

/// `base` (a JSON query) with the fields of `extra` added.
fn with(base: &str, extra: Value) -> String {
    let mut v: Value = serde_json::from_str(base).expect("a JSON query");
    if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    v.to_string()
}

async fn post(url: &str, body: &str, respond_async: bool) -> Response {
    let mut req = client()
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_owned());
    if respond_async {
        req = req.header("Prefer", "respond-async");
    }
    req.send().await.expect("POST")
}

fn header_of<'a>(r: &'a Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.headers()))
        .to_str()
        .expect("ASCII header")
}

/// Checks that `r` is an answer in `format` and `index` whose file name
/// starts with `stem`.
fn assert_labelled(r: &Response, format: Format, index: Index, stem: &str) {
    let what = format!("{} / {}", format.name(), index.name());
    assert_eq!(
        header_of(r, "content-type"),
        format.content_type(),
        "{what}"
    );
    assert_eq!(header_of(r, "x-airq-index"), index.name(), "{what}");
    let disposition = header_of(r, "content-disposition");
    assert!(
        disposition.starts_with(&format!("attachment; filename=\"{stem}"))
            && disposition.ends_with(&format!(".{}\"", format.extension())),
        "{what}: {disposition}"
    );
}

/// The reference answer to `query_json`: the reference selection of the
/// sample (`Query::matches`), rendered in the query's format and index.
fn reference(query_json: &str) -> Vec<u8> {
    let q = Query::from_json(query_json.as_bytes(), &QueryLimits::default()).expect("a query");
    let rows: Vec<&Reading> = sample_readings().iter().filter(|r| q.matches(r)).collect();
    to_answer(rows, q.rendering()).expect("rendering the reference")
}

/// Asks `query_json` directly; checks its labels and that it is the
/// reference answer; returns its bytes.
async fn direct(s: &Setup, query_json: &str, format: Format, index: Index) -> Vec<u8> {
    let r = post(&s.url("/api/query"), query_json, false).await;
    assert_eq!(r.status(), StatusCode::OK, "{query_json}");
    assert_eq!(header_of(&r, "x-airq-answer"), "direct");
    assert_labelled(&r, format, index, "airq-20180603T200000Z-20180603T210000Z");
    let bytes = r.bytes().await.expect("the answer").to_vec();
    assert!(
        bytes == reference(query_json),
        "{query_json}: not the reference answer"
    );
    bytes
}

/// A reading's fields as text, by column: a CSV's cells, or a JSON
/// answer's values (a string's text, a number's exact text, `null` as the
/// CSV's empty cell).
type Row = BTreeMap<String, String>;

/// The CSV's text columns: JSON strings in the other formats; every other
/// column is a JSON number (or `null` where the CSV cell is empty).
const TEXT_COLUMNS: [&str; 4] = ["timestamp", "sensor_type", "loc_country", "Range"];

fn csv_rows(bytes: &[u8]) -> Vec<Row> {
    let mut reader = csv::Reader::from_reader(bytes);
    let headers = reader.headers().expect("a header row").clone();
    assert_eq!(headers.iter().collect::<Vec<_>>(), CSV_HEADER);
    reader
        .records()
        .map(|record| {
            let record = record.expect("a CSV record");
            headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// One JSON reading's fields as the CSV holds them, checking that it has
/// exactly the CSV's columns and that each value has its column's JSON type.
fn json_row(fields: &BTreeMap<String, Box<RawValue>>) -> Row {
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    let mut want = CSV_HEADER.to_vec();
    names.sort_unstable();
    want.sort_unstable();
    assert_eq!(names, want, "a reading's fields are the CSV's columns");
    fields
        .iter()
        .map(|(column, raw)| {
            let text = raw.get();
            let cell = if text == "null" {
                String::new()
            } else if TEXT_COLUMNS.contains(&column.as_str()) {
                serde_json::from_str::<String>(text)
                    .unwrap_or_else(|e| panic!("{column}: {text} is not a JSON string: {e}"))
            } else {
                assert!(
                    serde_json::from_str::<serde_json::Number>(text).is_ok(),
                    "{column}: {text} is not a JSON number"
                );
                text.to_owned()
            };
            (column.clone(), cell)
        })
        .collect()
}

/// The readings of an NDJSON answer: every line one JSON object, every
/// line ended by a newline.
fn ndjson_rows(bytes: &[u8]) -> Vec<Row> {
    let text = std::str::from_utf8(bytes).expect("NDJSON is UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the last line ends with a newline"
    );
    text.split_terminator('\n')
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:.200}"));
            assert!(value.is_object(), "not an object: {line:.200}");
            json_row(&serde_json::from_str(line).expect("an object"))
        })
        .collect()
}

/// The exact text of every feature's properties, which a GeoJSON parser's
/// numbers (`f64`) do not keep.
#[derive(Deserialize)]
struct RawCollection {
    features: Vec<RawFeature>,
}

#[derive(Deserialize)]
struct RawFeature {
    properties: BTreeMap<String, Box<RawValue>>,
}

/// The readings of a GeoJSON answer, read by the `geojson` crate (each a
/// `Point` at `[lon, lat]` whose properties are the reading's fields) and,
/// for the numbers' exact text, by serde_json.
fn geojson_rows(bytes: &[u8]) -> Vec<Row> {
    let text = std::str::from_utf8(bytes).expect("GeoJSON is UTF-8");
    let collection = geojson::FeatureCollection::from_str(text)
        .unwrap_or_else(|e| panic!("not a GeoJSON FeatureCollection ({e}): {text:.200}"));
    let raw: RawCollection = serde_json::from_str(text).expect("the same document, raw");
    assert_eq!(collection.features.len(), raw.features.len());
    collection
        .features
        .iter()
        .zip(&raw.features)
        .map(|(feature, raw)| {
            let row = json_row(&raw.properties);
            let number = |column: &str| -> f64 {
                row[column]
                    .parse()
                    .unwrap_or_else(|e| panic!("{column} {:?}: {e}", row[column]))
            };
            match feature.geometry.as_ref().map(|g| &g.value) {
                Some(geojson::GeometryValue::Point { coordinates }) => assert_eq!(
                    coordinates.as_slice(),
                    [number("loc_long"), number("loc_lat")],
                    "a point is [lon, lat]"
                ),
                other => panic!("not a point: {other:?}"),
            }
            let properties = feature.properties.as_ref().expect("properties");
            for (column, value) in properties {
                let cell = &row[column];
                match value {
                    Value::String(s) => assert_eq!(s, cell, "{column}"),
                    Value::Number(n) => assert_eq!(n.as_f64(), Some(number(column)), "{column}"),
                    Value::Null => assert!(cell.is_empty(), "{column}"),
                    other => panic!("{column}: unexpected {other}"),
                }
            }
            row
        })
        .collect()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

#[tokio::test]
async fn ndjson_and_geojson_hold_the_csvs_readings_in_every_index() {
    let s = Setup::new(&[]);
    for index in Index::ALL {
        let q = |format: Format| {
            with(
                DE_HOUR,
                json!({"index": index.name(), "format": format.name()}),
            )
        };
        let csv = direct(&s, &q(Format::Csv), Format::Csv, index).await;
        let rows = csv_rows(&csv);
        assert_eq!(rows.len(), DE_HOUR_ROWS, "{index}");
        // The AQI and Range columns are the index's.
        let labels: Vec<&str> = index.bands().iter().map(|b| b.label).collect();
        assert!(
            rows.iter().all(|r| labels.contains(&r["Range"].as_str())),
            "{index}: a band of another index"
        );
        let ndjson = direct(&s, &q(Format::Ndjson), Format::Ndjson, index).await;
        assert!(ndjson_rows(&ndjson) == rows, "{index}: NDJSON ≠ CSV");
        let geojson = direct(&s, &q(Format::Geojson), Format::Geojson, index).await;
        assert!(geojson_rows(&geojson) == rows, "{index}: GeoJSON ≠ CSV");
    }

    // The indices differ on the same readings (or the test shows nothing).
    let values = |index: Index| {
        let csv = reference(&with(DE_HOUR, json!({"index": index.name()})));
        csv_rows(&csv)
            .into_iter()
            .map(|r| r["AQI"].clone())
            .collect::<Vec<_>>()
    };
    assert_ne!(values(Index::Daqi), values(Index::UsEpa));
    assert_ne!(values(Index::Daqi), values(Index::Eaqi));

    // The defaults, written out or not, are the first system's bytes.
    let plain = post(&s.url("/api/query"), DE_HOUR, false).await;
    assert_labelled(
        &plain,
        Format::Csv,
        Index::Daqi,
        "airq-20180603T200000Z-20180603T210000Z",
    );
    let plain = plain.bytes().await.expect("body");
    let explicit = post(
        &s.url("/api/query"),
        &with(DE_HOUR, json!({"index": "daqi", "format": "csv"})),
        false,
    )
    .await
    .bytes()
    .await
    .expect("body");
    assert!(plain == explicit);
    assert!(plain.starts_with(format!("{}\n", CSV_HEADER.join(",")).as_bytes()));

    // An empty answer is still a document of its format.
    let none = with(DE_HOUR, json!({"country": "ZZ", "format": "geojson"}));
    let r = post(&s.url("/api/query"), &none, false).await;
    assert_eq!(r.bytes().await.expect("body").as_ref(), reference(&none));
    assert!(geojson_rows(&reference(&none)).is_empty());
    let none = with(DE_HOUR, json!({"country": "ZZ", "format": "ndjson"}));
    let r = post(&s.url("/api/query"), &none, false).await;
    assert!(r.bytes().await.expect("body").is_empty());
}

/// A cached answer keeps its gzip form when the request that computed it
/// accepted gzip: that request and every later hit that accepts gzip get
/// the same bytes, whole (`Content-Length`: compressed once, not streamed
/// through the compression layer), which decode to the plain answer.
#[tokio::test]
async fn cached_answers_are_gzipped_once() {
    let s = Setup::new(&["--answer-cache-ttl", "60s"]);
    let ask = |body: String, gzip: bool| {
        let mut req = client()
            .post(s.url("/api/query"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        if gzip {
            req = req.header(header::ACCEPT_ENCODING, "gzip, deflate, br");
        }
        async move { req.send().await.expect("POST") }
    };
    let q = with(DE_HOUR, json!({"format": "ndjson"}));
    let mut sent = Vec::new();
    for cache in ["miss", "hit"] {
        let r = ask(q.clone(), true).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header_of(&r, "x-airq-cache"), cache);
        assert_eq!(header_of(&r, "content-encoding"), "gzip", "{cache}");
        assert!(header_of(&r, "vary").contains("accept-encoding"), "{cache}");
        assert_labelled(&r, Format::Ndjson, Index::Daqi, "airq-");
        let length = header_of(&r, "content-length").to_owned();
        let bytes = r.bytes().await.expect("gzip").to_vec();
        assert_eq!(length, bytes.len().to_string(), "{cache}");
        sent.push(bytes);
    }
    assert!(sent[0] == sent[1], "a hit sends the bytes the miss made");
    let plain = ask(q.clone(), false).await;
    assert_eq!(header_of(&plain, "x-airq-cache"), "hit");
    assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
    assert!(header_of(&plain, "vary").contains("accept-encoding"));
    let plain = plain.bytes().await.expect("plain").to_vec();
    assert!(plain == reference(&q));
    assert!(gunzip(&sent[0]) == plain);
    assert!(sent[0].len() < plain.len() / 4);

    // Computed for a client without gzip: the first gzip hit makes the
    // entry's gzip form (whole, with its length: not the compression
    // layer's stream), and later gzip hits send those bytes.
    let q = with(DE_HOUR, json!({"format": "csv"}));
    let plain = ask(q.clone(), false).await;
    assert_eq!(header_of(&plain, "x-airq-cache"), "miss");
    let plain = plain.bytes().await.expect("plain").to_vec();
    let mut sent = Vec::new();
    for _ in 0..2 {
        let r = ask(q.clone(), true).await;
        assert_eq!(header_of(&r, "x-airq-cache"), "hit");
        assert_eq!(header_of(&r, "content-encoding"), "gzip");
        let length = header_of(&r, "content-length").to_owned();
        let bytes = r.bytes().await.expect("gzip").to_vec();
        assert_eq!(length, bytes.len().to_string());
        assert!(gunzip(&bytes) == plain);
        sent.push(bytes);
    }
    assert!(sent[0] == sent[1], "made once");
}

/// A gzip answer's whole days of a segment are compressed once, into a
/// piece kept beside the segment, and copied into every later gzip answer
/// that holds them: another query holding that day copies the piece, and
/// sends its bytes; a query that filters the day's rows makes none. Every
/// body decodes to its reference answer. Computed into the answer cache
/// (whole, `Content-Length`) and streamed (the cache off: chunked).
#[tokio::test]
async fn gzip_answers_copy_whole_days_from_pieces() {
    gzip_pieces_case(&["--answer-cache-ttl", "60s"], true).await;
    gzip_pieces_case(&["--answer-cache-ttl", "0s"], false).await;
}

async fn gzip_pieces_case(args: &[&str], cached: bool) {
    let s = Setup::new(args);
    let store = SqliteReadingStore::new(s.db());
    assert!(store.refresh_segments().await.expect("segments") > 0);
    let gzipped = |body: &str| {
        let req = client()
            .post(s.url("/api/query"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(body.to_owned());
        async move {
            let r = req.send().await.expect("POST");
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(header_of(&r, "content-encoding"), "gzip");
            assert!(header_of(&r, "vary").contains("accept-encoding"));
            assert_eq!(header_of(&r, "x-airq-answer"), "direct");
            let whole = r.headers().get(header::CONTENT_LENGTH).is_some();
            assert_eq!(whole, cached, "sent whole only from the cache");
            if cached {
                assert_eq!(header_of(&r, "x-airq-cache"), "miss");
            }
            r.bytes().await.expect("gzip").to_vec()
        }
    };
    let pieces = |outcome: &'static str| {
        let url = s.url("/metrics");
        async move {
            let text = client().get(url).send().await.expect("GET /metrics");
            let scrape = airq_testkit::metrics::parse(&text.text().await.expect("metrics"));
            airq_testkit::metrics::value(&scrape, "airq_gzip_pieces_total", &[("outcome", outcome)])
                .unwrap_or(0.0)
        }
    };
    let day =
        r#"{"startDate":"2018-06-03 00:00:00","endDate":"2018-06-03 23:59:59","country":"DE"}"#;
    let first = gzipped(day).await;
    assert!(gunzip(&first) == reference(day));
    assert_eq!((pieces("built").await, pieces("hit").await), (1.0, 0.0));
    // Kept after the answer was sent.
    let folder = airq_embedded::segments::folder(&s.db_path());
    let piece = eventually("the piece kept", 100, Duration::from_millis(50), || {
        let folder = folder.clone();
        async move {
            let dirs = std::fs::read_dir(&folder).ok()?;
            let dir = dirs
                .flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with(".gz"))?;
            let file = std::fs::read_dir(dir.path()).ok()?.flatten().next()?;
            std::fs::read(file.path()).ok()
        }
    })
    .await;
    // The stored piece: magic, CRC-32, length, the deflate bytes' CRC-32,
    // then the deflate bytes.
    let deflate = &piece[24..];
    let holds = |body: &[u8]| body.windows(deflate.len()).any(|w| w == deflate);
    assert!(holds(&first), "the first answer sent the piece it made");
    // Cached, the same query would be a hit: a longer one holds the day
    // (beyond --direct-max-span, computed into the cache as the store
    // answers it cheaply); streamed, the same one again.
    let again = match cached {
        true => {
            r#"{"startDate":"2018-06-02 12:00:00","endDate":"2018-06-03 23:59:59","country":"DE"}"#
        }
        false => day,
    };
    let second = gzipped(again).await;
    assert!(gunzip(&second) == reference(again));
    assert!(holds(&second), "the second answer copied the piece");
    assert_eq!((pieces("built").await, pieces("hit").await), (1.0, 1.0));
    let typed = with(day, json!({"sensorType": "SDS011"}));
    assert!(gunzip(&gzipped(&typed).await) == reference(&typed));
    assert_eq!((pieces("built").await, pieces("hit").await), (1.0, 1.0));
    // GeoJSON (1.5 MB: streamed, too large for a cache entry): the day
    // opens the collection (a piece of its own, whose first feature has
    // no comma before it), between the collection's head and its end
    // compressed as they come.
    if !cached {
        let geojson = with(day, json!({"format": "geojson", "index": "eaqi"}));
        assert!(gunzip(&gzipped(&geojson).await) == reference(&geojson));
        assert_eq!((pieces("built").await, pieces("hit").await), (2.0, 1.0));
    }
}

#[tokio::test]
async fn place_and_sensor_type_filters_select_the_reference_readings() {
    let s = Setup::new(&[]);
    let all = sample_readings();
    // Around the first German sensor, where the network is dense.
    let centre = all
        .iter()
        .find(|r| r.loc_country == "DE")
        .and_then(Reading::position)
        .expect("a German reading");
    let (lat, lon) = centre;
    for extra in [
        json!({"bbox": [lon - 0.3, lat - 0.2, lon + 0.3, lat + 0.2]}),
        json!({"near": {"lat": lat, "lon": lon, "radiusKm": 10}, "format": "ndjson"}),
        json!({"near": {"lat": lat, "lon": lon, "radiusKm": 25}, "index": "eaqi", "format": "geojson"}),
        json!({"sensorType": ["pms7003", "HPM"], "country": null}),
        json!({"sensorType": "sds011", "bbox": [lon - 1.0, lat - 1.0, lon + 1.0, lat + 1.0], "index": "us-epa"}),
    ] {
        let body = with(DE_HOUR, extra.clone());
        let q = Query::from_json(body.as_bytes(), &QueryLimits::default()).expect("a query");
        let selected = all.iter().filter(|r| q.matches(r)).count();
        assert!(
            selected > 0 && selected < DE_HOUR_ROWS,
            "{extra}: {selected} readings select nothing of interest"
        );
        let r = post(&s.url("/api/query"), &body, false).await;
        assert_eq!(r.status(), StatusCode::OK, "{extra}");
        assert_labelled(
            &r,
            q.format,
            q.index,
            "airq-20180603T200000Z-20180603T210000Z",
        );
        let bytes = r.bytes().await.expect("body");
        assert!(bytes == reference(&body), "{extra}: not the reference");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_answers_are_the_direct_ones_byte_for_byte_in_every_format() {
    let s = Setup::new(&[]);
    let cases = [
        (Format::Csv, Index::UsEpa),
        (Format::Ndjson, Index::Daqi),
        (Format::Ndjson, Index::Eaqi),
        (Format::Geojson, Index::UsEpa),
        (Format::Geojson, Index::Eaqi),
    ];
    // Queued before any worker runs: the 202 and a poll say the index.
    let mut queued = Vec::new();
    for (format, index) in cases {
        let body = with(
            DE_HOUR,
            json!({"index": index.name(), "format": format.name()}),
        );
        let r = post(&s.url("/api/query"), &body, true).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(header_of(&r, "x-airq-index"), index.name());
        let path = header_of(&r, "location").to_owned();
        let r = client().get(s.url(&path)).send().await.expect("GET");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(header_of(&r, "x-airq-index"), index.name());
        queued.push((format, index, body, path));
    }
    let _worker = Worker::start(&s.db_path(), &["--receive-wait", "1s"]);

    for (format, index, body, path) in queued {
        let what = format!("{} / {}", format.name(), index.name());
        let direct = direct(&s, &body, format, index).await;
        let done = until_final(&s.gateway.url(&path)).await;
        assert_eq!(done.status(), StatusCode::OK, "{what}");
        assert_labelled(
            &done,
            format,
            index,
            "airq-20180603T200000Z-20180603T210000Z",
        );
        assert_eq!(
            header_of(&done, "content-length"),
            direct.len().to_string(),
            "{what}"
        );
        assert_eq!(
            header_of(&done, "x-airq-rows"),
            DE_HOUR_ROWS.to_string(),
            "{what}"
        );
        let whole = done.bytes().await.expect("the result");
        assert!(whole == direct, "{what}: queued ≠ direct");

        // A range keeps the answer's labels, and is a slice of its bytes.
        let url = s.url(&path);
        let r = client()
            .get(&url)
            .header(header::RANGE, "bytes=100-4099")
            .header(header::ACCEPT_ENCODING, "gzip")
            .send()
            .await
            .expect("GET a range");
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{what}");
        assert_labelled(&r, format, index, "airq-20180603T200000Z");
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        assert!(r.bytes().await.expect("the range").as_ref() == &direct[100..4100]);

        // Gzipped when accepted, the same bytes once decoded.
        let r = client()
            .get(&url)
            .header(header::ACCEPT_ENCODING, "gzip")
            .send()
            .await
            .expect("GET gzip");
        assert_eq!(header_of(&r, "content-encoding"), "gzip", "{what}");
        assert_labelled(&r, format, index, "airq-");
        assert!(gunzip(&r.bytes().await.expect("gzip")) == direct);
    }
}

/// An aggregate is answered on both paths alike: directly (a day of the
/// sample, one row per country: the reference count) and queued through a
/// worker, byte for byte, labelled as an aggregate; its span is
/// `--max-aggregate-span`, not `--max-span`; bad fields name themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_come_direct_and_queued_alike() {
    let s = Setup::new(&[]);
    let body = r#"{"startDate":"2018-06-03","endDate":"2018-06-03","aggregate":{"period":"day","by":"country"}}"#;
    let countries: std::collections::BTreeSet<&str> = sample_readings()
        .iter()
        .map(|r| r.loc_country.as_str())
        .collect();
    let r = post(&s.url("/api/query"), body, false).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, "x-airq-answer"), "direct");
    assert_labelled(
        &r,
        Format::Csv,
        Index::Daqi,
        "airq-20180603T000000Z-20180603T235959Z-day-by-country",
    );
    let direct = r.bytes().await.expect("the answer").to_vec();
    let text = String::from_utf8_lossy(&direct).into_owned();
    assert!(
        text.starts_with("period_start,period_end,sensor_id,"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1 + countries.len(), "{text}");
    let de = text
        .lines()
        .find(|l| l.contains(",DE,"))
        .expect("a row for Germany");
    assert!(
        de.starts_with("2018-06-03 00:00:00,2018-06-03 23:59:59,"),
        "{de}"
    );

    let r = post(&s.url("/api/query"), body, true).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let path = header_of(&r, "location").to_owned();
    let _worker = Worker::start(&s.db_path(), &["--receive-wait", "1s"]);
    let done = until_final(&s.url(&path)).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(header_of(&done, "x-airq-rows"), countries.len().to_string());
    assert!(
        done.bytes().await.expect("the result").to_vec() == direct,
        "queued ≠ direct"
    );

    // A year of aggregates is allowed, 32 days of readings are not.
    let year = r#"{"startDate":"2018-01-01","endDate":"2018-12-31","aggregate":{"period":"month","by":"all"},"format":"ndjson"}"#;
    let r = post(&s.url("/api/query"), year, true).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let long = r#"{"startDate":"2018-01-01","endDate":"2018-02-01"}"#;
    assert_eq!(
        post(&s.url("/api/query"), long, false).await.status(),
        StatusCode::BAD_REQUEST
    );
    let bad = r#"{"startDate":"2018-06-03","endDate":"2018-06-03","aggregate":{"period":"hour","by":"street"}}"#;
    let fields = named_fields(
        post(&s.url("/api/query"), bad, false).await,
        "a bad aggregate",
    )
    .await;
    assert!(
        fields
            .iter()
            .any(|(f, m)| f == "aggregate" && m.starts_with("by: ")),
        "{fields:?}"
    );
    let bad = r#"{"startDate":"2018-06-03","endDate":"2018-06-03","aggregate":{"period":"hour","by":"all"}}"#;
    let fields = named_fields(
        post(&s.url("/api/query"), bad, false).await,
        "hourly of daily",
    )
    .await;
    assert_eq!(fields[0].0, "aggregate", "{fields:?}");
    assert!(
        fields[0].1.starts_with("period: ") && fields[0].1.contains("resolution"),
        "{fields:?}"
    );
}

/// A figure of a process's `/proc/PID/status`, KiB, if it is there.
#[cfg(target_os = "linux")]
fn status_figure(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A process's own resident memory now, KiB: its anonymous pages
/// (`RssAnon`). Not `VmRSS`: SQLite reads the store through a memory map
/// (`db::MMAP_BYTES`), whose pages count in `VmRSS` and `VmHWM` but are
/// the page cache's, shared and reclaimable, not the gateway's.
#[cfg(target_os = "linux")]
fn resident_kib(pid: u32) -> u64 {
    status_figure(pid, "RssAnon:").unwrap_or_else(|| panic!("no RssAnon of {pid}"))
}

/// The highest [`resident_kib`] of a process, sampled every 2 ms on a
/// thread from its start until it is dropped (the kernel keeps no peak of
/// the anonymous pages alone, so this is a lower bound of the true peak;
/// an answer held whole would stay resident for far longer than 2 ms).
#[cfg(target_os = "linux")]
struct PeakResident {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(target_os = "linux")]
impl PeakResident {
    /// Sampling stops after this long even if the test forgets to.
    const LONGEST: Duration = Duration::from_secs(600);

    fn start(pid: u32) -> PeakResident {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(resident_kib(pid)));
        let (s, p) = (stop.clone(), peak.clone());
        let until = std::time::Instant::now() + Self::LONGEST;
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                if let Some(now) = status_figure(pid, "RssAnon:") {
                    p.fetch_max(now, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        PeakResident {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn kib(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(target_os = "linux")]
impl Drop for PeakResident {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Streams a response's body, counting its chunks; returns the bytes.
async fn chunks_of(mut r: Response) -> (Vec<u8>, usize) {
    let mut body = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = r.chunk().await.expect("a chunk") {
        body.extend_from_slice(&chunk);
        chunks += 1;
    }
    (body, chunks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_of_tens_of_megabytes_stream_in_every_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    load_big_hour(&db);
    let g = gateway(&db, &[]);
    // Warm: the first answer sets up the store's pool and the like, which
    // is no answer's cost.
    let warm = post(
        &g.url("/api/query"),
        r#"{"startDate":"2024-01-01 00:00:00","endDate":"2024-01-01 00:00:59"}"#,
        false,
    )
    .await;
    assert_eq!(warm.status(), StatusCode::OK);
    let _ = warm.bytes().await;
    #[cfg(target_os = "linux")]
    let (peak_before, peak) = (resident_kib(g.pid()), PeakResident::start(g.pid()));
    let mut largest = 0;
    for (format, index) in [
        (Format::Geojson, Index::UsEpa),
        (Format::Ndjson, Index::Eaqi),
        (Format::Csv, Index::Daqi),
    ] {
        let body = with(
            BIG_DAY,
            json!({"index": index.name(), "format": format.name()}),
        );
        let expected = store_csv(&db, &body).await;
        assert!(
            expected.len() > 8 << 20,
            "{}: {} bytes",
            format.name(),
            expected.len()
        );
        largest = largest.max(expected.len());
        #[cfg(target_os = "linux")]
        let resident_before = resident_kib(g.pid());
        let mut r = post(&g.url("/api/query"), &body, false).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header_of(&r, "x-airq-answer"), "direct");
        assert_labelled(&r, format, index, "airq-");
        // Too large for the answer cache: streamed, its length unknown
        // when its head was sent.
        assert!(r.headers().get("x-airq-cache").is_none());
        assert!(r.headers().get(header::CONTENT_LENGTH).is_none());
        assert_eq!(header_of(&r, "transfer-encoding"), "chunked");
        // Mid-answer, the gateway holds a few chunks of it, not all: one
        // that rendered the whole answer before sending would hold it now.
        let first = r.chunk().await.expect("a chunk").expect("a first chunk");
        tokio::time::sleep(Duration::from_millis(300)).await;
        #[cfg(target_os = "linux")]
        {
            let held = resident_kib(g.pid()).saturating_sub(resident_before) * 1024;
            // Measured: 0.6 to 1.3 MB of anonymous memory (and a peak 0.2 to
            // 3 MB above the start over the three answers).
            assert!(
                held < expected.len() as u64 / 2,
                "{}: mid-answer the gateway holds {held} bytes more than before, for a {}-byte answer",
                format.name(),
                expected.len()
            );
        }
        let (rest, chunks) = chunks_of(r).await;
        let got = [first.as_ref(), &rest].concat();
        assert!(got == expected, "{}: not the store's answer", format.name());
        assert!(chunks > 10, "{}: {chunks} chunks", format.name());
    }
    // Nor did it peak at an answer's size in between. (Its peak grows by a
    // few MB per large answer, measured, whatever its size: the store's
    // connections and page caches, the allocator's per-thread arenas.)
    #[cfg(target_os = "linux")]
    {
        let grown = peak.kib().saturating_sub(peak_before) * 1024;
        assert!(
            grown < largest as u64 / 2,
            "the gateway's peak memory grew by {grown} bytes over answers of up to {largest} bytes"
        );
        drop(peak);
    }

    // Queued: written by the worker as it is rendered, served by stream.
    let _worker = Worker::start(&db, &["--receive-wait", "1s"]);
    let body = with(BIG_DAY, json!({"format": "geojson"}));
    let expected = store_csv(&db, &body).await;
    let r = post(&g.url("/api/query"), &body, true).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let path = header_of(&r, "location").to_owned();
    #[cfg(target_os = "linux")]
    let (peak_before, peak) = (resident_kib(g.pid()), PeakResident::start(g.pid()));
    let done = until_final(&g.url(&path)).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_labelled(&done, Format::Geojson, Index::Daqi, "airq-");
    assert_eq!(
        header_of(&done, "content-length"),
        expected.len().to_string()
    );
    let (got, _) = chunks_of(done).await;
    assert!(got == expected, "the queued GeoJSON is not the store's");
    #[cfg(target_os = "linux")]
    {
        let grown = peak.kib().saturating_sub(peak_before) * 1024;
        assert!(
            grown < expected.len() as u64 / 2,
            "the gateway's peak memory grew by {grown} bytes serving a {}-byte result",
            expected.len()
        );
    }
}

/// The fields a `400` names.
async fn named_fields(r: Response, what: &str) -> Vec<(String, String)> {
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
    assert_eq!(header_of(&r, "content-type"), "application/json", "{what}");
    let v: Value = r.json().await.expect("a JSON error");
    assert_eq!(v["error"], "invalid query", "{what}");
    v["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no fields in {v}"))
        .iter()
        .map(|f| {
            (
                f["field"].as_str().unwrap_or_default().to_owned(),
                f["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn bad_places_indices_bands_and_formats_name_their_field() {
    let s = Setup::new(&[]);
    const BBOX: &str = "minLon (9.5) must be less than maxLon (9)";
    // (extra fields of a query, field named, part of its message)
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"bbox": [9.5, 48.5, 9.0, 49.0]}), "bbox", BBOX),
        (
            json!({"bbox": [9.0, 49.0, 9.5, 49.0]}),
            "bbox",
            "minLat (49) must be less than maxLat (49)",
        ),
        (json!({"bbox": [9.0, 48.5, 9.5]}), "bbox", "four numbers"),
        (
            json!({"near": {"lat": 48.78, "lon": 9.18, "radiusKm": 100.5}}),
            "near",
            "at most 100 km",
        ),
        (
            json!({"near": {"lat": 48.78, "lon": 9.18, "radiusKm": 0}}),
            "near",
            "more than 0",
        ),
        (
            json!({"bbox": [9.0, 48.5, 9.5, 49.0], "near": {"lat": 48.78, "lon": 9.18, "radiusKm": 10}}),
            "near",
            "exclude each other",
        ),
        (
            json!({"index": "aqi"}),
            "index",
            "expected one of daqi, us-epa, eaqi",
        ),
        (
            json!({"range": "Good"}),
            "range",
            "unknown daqi band \"Good\"",
        ),
        (
            json!({"index": "eaqi", "range": "Low"}),
            "range",
            "\"Good\", \"Fair\"",
        ),
        (
            json!({"index": "us-epa", "range": "Very High"}),
            "range",
            "\"Hazardous\"",
        ),
        (json!({"maxAqi": 500}), "maxAqi", "from 0 to 10"),
        (
            json!({"index": "us-epa", "maxAqi": 501}),
            "maxAqi",
            "from 0 to 500",
        ),
        (
            json!({"index": "eaqi", "minAqi": 0}),
            "minAqi",
            "from 1 to 6",
        ),
        (json!({"format": "xlsx"}), "format", "csv, ndjson, geojson"),
        (json!({"sensorType": 5}), "sensorType", "sensor type"),
        (
            json!({"sensorType": ["SDS011", "a,b"]}),
            "sensorType",
            "a,b",
        ),
    ];
    for (extra, field, says) in &cases {
        let body = with(DE_HOUR, extra.clone());
        let named = named_fields(post(&s.url("/api/query"), &body, false).await, &body).await;
        assert!(
            named.iter().any(|(f, m)| f == field && m.contains(says)),
            "{extra}: expected {field} saying {says:?}, got {named:?}"
        );
    }
    // Every one at once, each named.
    let body = with(
        DE_HOUR,
        json!({"index": "aqi", "bbox": [1, 2, 0, 3], "sensorType": 5, "format": "pdf"}),
    );
    let named = named_fields(post(&s.url("/api/query"), &body, false).await, &body).await;
    for field in ["index", "bbox", "sensorType", "format"] {
        assert!(named.iter().any(|(f, _)| f == field), "{field}: {named:?}");
    }

    // The same rules on the latest readings' query string.
    let latest_cases: [(&str, &str, &str); 10] = [
        ("bbox=9.5,48.5,9.0,49.0", "bbox", BBOX),
        ("bbox=9.0,48.5,9.5", "bbox", "four numbers"),
        ("near=48.78,9.18,150", "near", "at most 100 km"),
        ("near=48.78,9.18", "near", "lat,lon,radiusKm"),
        (
            "bbox=9.0,48.5,9.5,49.0&near=48.78,9.18,10",
            "near",
            "exclude each other",
        ),
        ("index=aqi", "index", "daqi, us-epa, eaqi"),
        ("format=xlsx", "format", "csv, ndjson, geojson"),
        ("country=Germany", "country", "country code"),
        ("range=Good", "range", "unknown field"),
        ("startDate=2018-06-03", "startDate", "unknown field"),
    ];
    for (qs, field, says) in latest_cases {
        let r = client()
            .get(s.url(&format!("/api/latest?{qs}")))
            .send()
            .await
            .expect("GET");
        let named = named_fields(r, qs).await;
        assert!(
            named.iter().any(|(f, m)| f == field && m.contains(says)),
            "{qs}: expected {field} saying {says:?}, got {named:?}"
        );
    }
    let r = client()
        .get(s.url("/api/latest?index=aqi&format=pdf&near=1,2,300&sensorType=%3D1"))
        .send()
        .await
        .expect("GET");
    let named = named_fields(r, "several").await;
    for field in ["index", "format", "near", "sensorType"] {
        assert!(named.iter().any(|(f, _)| f == field), "{field}: {named:?}");
    }
}

/// The sample (first ingestion) and a second ingestion: every fourth
/// sensor has a newer reading (other values, so other indices; one of them
/// moved to Austria), and every fourth another has a reading older than
/// its first, sent late, which must not replace it.
fn two_ingestions() -> (Vec<Reading>, Vec<Reading>) {
    let first = sample_readings().to_vec();
    let mut moved = false;
    let second = first
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let mut r = r.clone();
            match i % 4 {
                0 => {
                    r.timestamp = Timestamp(r.timestamp.0 + 3600);
                    r.id = r.id.map(|id| id + 10_000_000);
                    r.p1 = Some(format!("{}.40", 20 + i % 300));
                    r.p2 = Some(format!("{}.7", 5 + i % 150));
                    if !moved && r.loc_country == "DE" {
                        moved = true;
                        r.loc_country = "AT".into();
                        r.loc_lat = "47.0707".into();
                        r.loc_long = "15.4395".into();
                    }
                }
                1 => {
                    r.timestamp = Timestamp(r.timestamp.0 - 3600);
                    r.p1 = Some("999.9".into());
                    r.p2 = Some("999.9".into());
                }
                _ => return None,
            }
            let indices =
                Indices::of_text(r.p1.as_deref(), r.p2.as_deref()).expect("measured values");
            r.indices = indices;
            Some(r)
        })
        .collect();
    (first, second)
}

/// Each sensor's most recent reading, in sensor id order.
fn latest_of(readings: &[Reading]) -> Vec<Reading> {
    let mut latest: HashMap<u64, &Reading> = HashMap::new();
    for r in readings {
        let newer = latest
            .get(&r.sensor_id)
            .is_none_or(|seen| r.timestamp > seen.timestamp);
        if newer {
            latest.insert(r.sensor_id, r);
        }
    }
    let mut out: Vec<Reading> = latest.into_values().cloned().collect();
    out.sort_by_key(|r| r.sensor_id);
    out
}

fn pairs(qs: &str) -> Vec<(&str, &str)> {
    qs.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

async fn get_latest(g: &Service, qs: &str) -> Response {
    client()
        .get(g.url(&format!("/api/latest?{qs}")))
        .send()
        .await
        .expect("GET /api/latest")
}

#[tokio::test]
async fn latest_answers_each_sensors_newer_reading_and_its_filters_apply() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    let (first, second) = two_ingestions();
    let store = SqliteReadingStore::new(Db::open(&db).expect("the test database"));
    store.put_batch_blocking(&first).expect("first ingestion");
    store.put_batch_blocking(&second).expect("second ingestion");
    let everything: Vec<Reading> = first.iter().chain(&second).cloned().collect();
    let latest = latest_of(&everything);
    let g = gateway(&db, &[]);

    // Unfiltered: one row per sensor, the newer reading where there is one.
    let r = get_latest(&g, "").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, "x-airq-answer"), "direct");
    assert_eq!(
        header_of(&r, "content-disposition"),
        "attachment; filename=\"airq-latest.csv\""
    );
    assert_labelled(&r, Format::Csv, Index::Daqi, "airq-latest");
    let rows = csv_rows(&r.bytes().await.expect("body"));
    assert_eq!(rows.len(), first.len(), "one row per sensor");
    let by_sensor: HashMap<&str, &Row> =
        rows.iter().map(|r| (r["sensor_id"].as_str(), r)).collect();
    for (i, r) in first.iter().enumerate() {
        let row = by_sensor[r.sensor_id.to_string().as_str()];
        let want = match i % 4 {
            0 => second
                .iter()
                .find(|s| s.sensor_id == r.sensor_id)
                .expect("newer"),
            _ => r,
        };
        assert_eq!(
            row["timestamp"],
            want.timestamp.to_string(),
            "sensor {}",
            r.sensor_id
        );
        assert_eq!(
            row["P1"],
            want.p1.clone().unwrap_or_default(),
            "sensor {}",
            r.sensor_id
        );
    }
    let moved = second
        .iter()
        .find(|r| r.loc_country == "AT" && r.loc_lat == "47.0707")
        .expect("the moved sensor");

    // Filtered, in every index and format: the reference, byte for byte.
    let centre = first
        .iter()
        .find(|r| r.loc_country == "DE")
        .and_then(Reading::position)
        .expect("a German reading");
    let (lat, lon) = centre;
    let near = format!("near={lat},{lon},10");
    let bbox = format!(
        "bbox={},{},{},{}",
        lon - 0.3,
        lat - 0.2,
        lon + 0.3,
        lat + 0.2
    );
    let queries = [
        String::new(),
        "country=de".into(),
        "country=AT".into(),
        bbox.clone(),
        format!("{near}&index=us-epa&format=geojson"),
        format!("{bbox}&index=eaqi&format=ndjson&country=DE"),
        "sensorType=PMS7003,hpm".into(),
        "sensorType=PMS7003&sensorType=SDS021&format=ndjson".into(),
        "sensorType=SDS011&country=DE&index=eaqi".into(),
        "index=us-epa&format=geojson".into(),
    ];
    let age =
        regex::bytes::Regex::new(r#","resolution":"day","ageSeconds":(\d+)"#).expect("a regex");
    for qs in &queries {
        let l = LatestQuery::from_pairs(pairs(qs)).unwrap_or_else(|e| panic!("{qs}: {e}"));
        let rows: Vec<&Reading> = latest.iter().filter(|r| l.matches(r)).collect();
        assert!(!rows.is_empty(), "{qs}: selects nothing");
        let filtered = ["country", "bbox", "near", "sensorType"]
            .iter()
            .any(|f| qs.contains(f));
        if filtered {
            assert!(rows.len() < latest.len(), "{qs}: filters nothing");
        }
        // The reference without the ages, which the gateway counts from
        // its own second: they are checked apart.
        let plain = LatestQuery {
            at: None,
            ..l.clone()
        };
        let expected = to_answer(rows.iter().copied(), plain.rendering()).expect("rendering");
        let r = get_latest(&g, qs).await;
        assert_eq!(r.status(), StatusCode::OK, "{qs}");
        assert_labelled(&r, l.format, l.index, "airq-latest");
        let got = r.bytes().await.expect("body");
        let now = airq_core::Timestamp::now().0;
        if l.format != Format::Csv {
            let ages: Vec<i64> = age
                .captures_iter(&got)
                .map(|c| String::from_utf8_lossy(&c[1]).parse().expect("a number"))
                .collect();
            assert_eq!(ages.len(), rows.len(), "{qs}: every reading's age");
            for (age, r) in ages.iter().zip(&rows) {
                let want = now - r.timestamp.0;
                assert!(
                    (want - 5..=want).contains(age),
                    "{qs}: age {age}, about {want}"
                );
            }
        }
        let got = age.replace_all(&got, &b""[..]).into_owned();
        assert!(got == expected, "{qs}: not the reference");
        match l.format {
            Format::Ndjson => assert!(!ndjson_rows(&got).is_empty()),
            Format::Geojson => assert!(!geojson_rows(&got).is_empty()),
            Format::Csv => assert!(!csv_rows(&got).is_empty()),
        }
    }

    // The filters apply to the latest reading: the moved sensor is
    // Austrian now, not German.
    let moved_id = format!(",{},", moved.sensor_id);
    let de = get_latest(&g, "country=DE")
        .await
        .text()
        .await
        .expect("body");
    let at = get_latest(&g, "country=AT")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        !de.contains(&moved_id),
        "the moved sensor's older German reading"
    );
    assert!(at.contains(&moved_id) && at.contains("47.0707"));

    // Answered from the answer cache the second time within a second
    // (the request's second is part of the key). Two requests in a row
    // may straddle a second on a busy machine, so the pair is tried a few
    // times: a cache that never serves the second fails every try.
    let mut hit = false;
    for _ in 0..5 {
        get_latest(&g, "country=DE").await;
        let again = get_latest(&g, "country=de").await;
        hit = header_of(&again, "x-airq-cache") == "hit";
        if hit {
            break;
        }
    }
    assert!(hit, "never answered from the answer cache");
}

#[tokio::test]
async fn latest_spends_the_submits_budget() {
    let s = Setup::new(&["--tier", "anonymous:submits=3/min"]);
    for _ in 0..2 {
        let r = get_latest(&s.gateway, "country=DE").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            header_of(&r, "ratelimit-policy").starts_with("\"submits\";q=3"),
            "{:?}",
            r.headers()
        );
    }
    // The same budget as queries.
    let r = post(&s.url("/api/query"), DE_HOUR, false).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = get_latest(&s.gateway, "country=DE").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    let v: Value = r.json().await.expect("JSON");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("submits")),
        "{v}"
    );
}

#[tokio::test]
async fn latest_needs_a_direct_slot_and_a_key_where_keys_are_required() {
    let s = Setup::new(&["--direct-limit", "0"]);
    let r = get_latest(&s.gateway, "").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    let v: Value = r.json().await.expect("JSON");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("--direct-limit 0")),
        "{v}"
    );

    let s = Setup::new(&["--auth", "required"]);
    let r = get_latest(&s.gateway, "").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn the_reading_parsers_see_what_differs() {
    let csv = b"id,timestamp,sensor_id,sensor_type,loc_id,loc_country,loc_lat,loc_long,loc_alt,P1,P2,AQI,Range\n\
        7,2018-06-03 20:47:58,92,SDS011,,DE,48.8000,9.0020,,8.10,,1,Low\n";
    let ndjson = br#"{"id":7,"timestamp":"2018-06-03 20:47:58","sensor_id":92,"sensor_type":"SDS011","loc_id":null,"loc_country":"DE","loc_lat":48.8000,"loc_long":9.0020,"loc_alt":null,"P1":8.10,"P2":null,"AQI":1,"Range":"Low"}
"#;
    assert_eq!(ndjson_rows(ndjson), csv_rows(csv));
    // 8.1 is the same number, but not the text the sensor sent.
    let rounded = String::from_utf8_lossy(ndjson).replace("8.10", "8.1");
    assert_ne!(ndjson_rows(rounded.as_bytes()), csv_rows(csv));
    let geo = format!(
        r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","geometry":{{"type":"Point","coordinates":[9.0020,48.8000]}},"properties":{}}}]}}"#,
        String::from_utf8_lossy(ndjson).trim()
    );
    assert_eq!(geojson_rows(geo.as_bytes()), csv_rows(csv));
    let swapped = geo.replace("[9.0020,48.8000]", "[48.8000,9.0020]");
    assert!(std::panic::catch_unwind(|| geojson_rows(swapped.as_bytes())).is_err());
}

/// `quality`: the answer carries the flags (a CSV column appended, fields
/// in the JSON formats) and leaves out what the filter names, as the
/// reference does; without the field, the answer of before the flags;
/// an aggregate counts what it left out; the hourly series takes the
/// filter too; a bad one is a `400`.
#[tokio::test]
async fn quality_filters_and_shows_the_flags() {
    let s = Setup::new(&[]);
    let day = r#"{"startDate":"2018-06-03","endDate":"2018-06-03"}"#;
    // The sample's one reading whose PM2.5 is above its PM10, as the
    // parser flags it.
    let flagged: Vec<&Reading> = sample_readings()
        .iter()
        .filter(|r| !r.flags.is_empty())
        .collect();
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    let (p1, p2) = (flagged[0].p1.as_deref(), flagged[0].p2.as_deref());
    let value = |t: Option<&str>| t.and_then(|t| t.parse::<f64>().ok()).expect("a value");
    assert!(value(p2) > value(p1), "{p1:?} {p2:?}");

    let plain = post(&s.url("/api/query"), day, false).await;
    let plain = plain.bytes().await.expect("body");
    assert!(plain.starts_with(format!("{}\n", CSV_HEADER.join(",")).as_bytes()));
    for (quality, rows) in [
        (json!("all"), sample_readings().len()),
        (json!("no-flags"), sample_readings().len() - 1),
        (json!(["pm25_above_pm10"]), sample_readings().len() - 1),
        (json!(["humid", "outlier"]), sample_readings().len()),
    ] {
        for format in ["csv", "ndjson", "geojson"] {
            let body = with(day, json!({"quality": quality, "format": format}));
            let r = post(&s.url("/api/query"), &body, false).await;
            assert_eq!(r.status(), StatusCode::OK, "{body}");
            let bytes = r.bytes().await.expect("body");
            assert!(bytes == reference(&body), "{body}: not the reference");
            let text = std::str::from_utf8(&bytes).expect("utf-8");
            match format {
                "csv" => {
                    let header = format!("{},flags\n", CSV_HEADER.join(","));
                    assert!(text.starts_with(&header), "{body}");
                    assert_eq!(text.lines().count(), rows + 1, "{body}");
                    assert_eq!(
                        text.lines()
                            .filter(|l| l.ends_with(",pm25_above_pm10"))
                            .count(),
                        rows + 1 - sample_readings().len(),
                        "{body}"
                    );
                }
                "ndjson" => {
                    assert_eq!(text.lines().count(), rows, "{body}");
                    let first: Value =
                        serde_json::from_str(text.lines().next().expect("a line")).expect("JSON");
                    assert_eq!(first["flags"], json!([]), "{body}");
                    assert_eq!(first["humidity"], Value::Null, "{body}");
                }
                _ => {
                    let v: Value = serde_json::from_slice(&bytes).expect("GeoJSON");
                    let features = v["features"].as_array().expect("features");
                    assert_eq!(features.len(), rows, "{body}");
                    assert!(features[0]["properties"]["flags"].is_array(), "{body}");
                }
            }
        }
    }

    let body = with(
        day,
        json!({"quality": "no-flags", "aggregate": {"period": "day", "by": "all"}}),
    );
    let r = post(&s.url("/api/query"), &body, false).await;
    assert_eq!(r.status(), StatusCode::OK, "{body}");
    let text = r.text().await.expect("body");
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    assert!(
        header.ends_with(
            ",removed,removed_indoor,removed_pm25_above_pm10,removed_humid,\
             removed_no_humidity,removed_stuck,removed_moved,removed_outlier"
        ),
        "{header}"
    );
    let row = lines.next().expect("a row");
    let cells: Vec<&str> = row.split(',').collect();
    let at = |name: &str| {
        header
            .split(',')
            .position(|c| c == name)
            .and_then(|i| cells.get(i).copied())
    };
    assert_eq!(at("removed"), Some("1"), "{row}");
    assert_eq!(at("removed_pm25_above_pm10"), Some("1"), "{row}");
    let kept = (sample_readings().len() - 1).to_string();
    assert_eq!(at("readings"), Some(kept.as_str()), "{row}");

    // The hourly series takes the filter too (its hours' flags, from their
    // 5-minute readings: the live contract checks them).
    let body = with(day, json!({"quality": "no-flags", "resolution": "hour"}));
    let r = post(&s.url("/api/query"), &body, false).await;
    assert_eq!(r.status(), StatusCode::OK, "{body}");

    for (extra, said) in [
        (json!({"quality": "clean"}), "no-flags"),
        (
            json!({"quality": ["humid", "wet"]}),
            "unknown flag \\\"wet\\\"",
        ),
        (json!({"quality": 3}), "a list of flags"),
    ] {
        let body = with(day, extra.clone());
        let r = post(&s.url("/api/query"), &body, false).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{extra}");
        let text = r.text().await.expect("body");
        assert!(
            text.contains(r#""field":"quality""#) && text.contains(said),
            "{extra}: {text}"
        );
    }
}

/// A reading of [`correction_adds_corrected_values_and_reads_indices_from_them`]:
/// PM10 20 and PM2.5 40 (DAQI 4) at 2018-06-10 12:00, with the station's
/// relative humidity `rh` when it has one.
fn humid_reading(n: u64, rh: Option<&str>) -> Reading {
    let (p1, p2) = (Some("20".to_owned()), Some("40".to_owned()));
    Reading {
        id: Some(n),
        timestamp: Timestamp::parse_feed("2018-06-10 12:00:00").expect("a time"),
        sensor_id: 90_000 + n,
        sensor_type: "SDS011".into(),
        loc_id: Some(91_000 + n),
        loc_country: "DE".into(),
        loc_lat: "48.800".into(),
        loc_long: "9.000".into(),
        loc_alt: String::new(),
        indices: Indices::of_text(p1.as_deref(), p2.as_deref()).expect("indices"),
        p1,
        p2,
        samples: None,
        basis: None,
        flags: Default::default(),
        air: airq_core::air::Air {
            humidity: rh.map(str::to_owned),
            temperature: rh.map(|_| "12.5".to_owned()),
        },
    }
}

/// The correction's values are worked by hand from the formula
/// PM / (1 + (κ/1.65) / (100/RH − 1)), κ = 0.3:
/// - RH 80 %: C = 1 + 0.181818…/0.25 = 1.727272…; PM10 20/C = 11.578… →
///   11.58 (DAQI band 1, 0–16), PM2.5 40/C = 23.157… → 23.16 (band 2,
///   12–23): DAQI 2 "Low";
/// - RH 50 %: C = 1.181818…; 20/C = 16.923… → 16.92 (17 rounded: band 2),
///   40/C = 33.846… → 33.85 (34: band 3, 24–35): DAQI 3 "Low";
/// - no humidity: no corrected value, no index.
///
/// Raw, all three are DAQI 4 "Moderate" (PM2.5 40 is in 36–41).
#[tokio::test]
async fn correction_adds_corrected_values_and_reads_indices_from_them() {
    let s = Setup::new(&[]);
    SqliteReadingStore::new(s.db())
        .put_batch_blocking(&[
            humid_reading(1, Some("80")),
            humid_reading(2, Some("50")),
            humid_reading(3, None),
        ])
        .expect("storing the humid readings");
    let day = r#"{"startDate":"2018-06-10","endDate":"2018-06-10"}"#;
    let corrected = with(
        day,
        json!({"correction": {"method": "kappa-kohler", "kappa": 0.3}}),
    );
    let head = CSV_HEADER.join(",");
    let lead = |n: u64| {
        format!(
            "{n},2018-06-10 12:00:00,{},SDS011,{},DE,48.800,9.000,,20,40",
            90_000 + n,
            91_000 + n
        )
    };
    let want = format!(
        "{head},humidity,P1_corrected,P2_corrected\n\
         {},2,Low,80,11.58,23.16\n\
         {},3,Low,50,16.92,33.85\n\
         {},,,,,\n",
        lead(1),
        lead(2),
        lead(3)
    );

    let r = post(&s.url("/api/query"), &corrected, false).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header_of(&r, "x-airq-correction"),
        "kappa-kohler; kappa=0.3; rh-max=95"
    );
    assert_eq!(r.text().await.expect("body"), want);

    // Without the field: the answer of before, raw indices, no header.
    let r = post(&s.url("/api/query"), day, false).await;
    assert!(r.headers().get("x-airq-correction").is_none());
    let plain = r.text().await.expect("body");
    assert_eq!(
        plain,
        format!(
            "{head}\n{},4,Moderate\n{},4,Moderate\n{},4,Moderate\n",
            lead(1),
            lead(2),
            lead(3)
        )
    );

    // The index filters read the corrected indices: minAqi 3 keeps the
    // reading at RH 50 % only (raw, all three are 4).
    let at_least_3 = with(&corrected, json!({"minAqi": 3}));
    let r = post(&s.url("/api/query"), &at_least_3, false).await;
    assert_eq!(
        r.text().await.expect("body"),
        format!(
            "{head},humidity,P1_corrected,P2_corrected\n{},3,Low,50,16.92,33.85\n",
            lead(2)
        )
    );

    // NDJSON: the corrected values, the humidity and the method on each row.
    let ndjson = with(&corrected, json!({"format": "ndjson"}));
    let r = post(&s.url("/api/query"), &ndjson, false).await;
    assert_eq!(r.status(), StatusCode::OK, "{ndjson}");
    let text = r.text().await.expect("body");
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["P1"], json!(20));
    assert_eq!(rows[0]["P1_corrected"], json!(11.58));
    assert_eq!(rows[0]["P2_corrected"], json!(23.16));
    assert_eq!(rows[0]["AQI"], json!(2));
    assert_eq!(rows[0]["humidity"], json!(80));
    assert_eq!(
        rows[0]["correction"],
        json!({"method": "kappa-kohler", "kappa": 0.3, "rhMax": 95})
    );
    assert_eq!(rows[2]["P1_corrected"], Value::Null);
    assert_eq!(rows[2]["AQI"], Value::Null);
    assert_eq!(rows[2]["Range"], Value::Null);

    // A lower cap: RH 80 % read as 60 %: C = 1 + 0.181818…/(100/60 − 1)
    // = 1.272727…; 20/C = 15.714… → 15.71, 40/C = 31.428… → 31.43.
    let capped = with(
        day,
        json!({"correction": {"method": "kappa-kohler", "kappa": 0.3, "rhMax": 60}, "maxAqi": 3}),
    );
    let r = post(&s.url("/api/query"), &capped, false).await;
    assert_eq!(
        header_of(&r, "x-airq-correction"),
        "kappa-kohler; kappa=0.3; rh-max=60"
    );
    let text = r.text().await.expect("body");
    assert!(
        text.contains(&format!("{},3,Low,80,15.71,31.43\n", lead(1))),
        "{text}"
    );

    // Queued: the same bytes and the header, on the 202 and on the result.
    let r = post(&s.url("/api/query"), &corrected, true).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        header_of(&r, "x-airq-correction"),
        "kappa-kohler; kappa=0.3; rh-max=95"
    );
    let path = header_of(&r, "location").to_owned();
    let _worker = Worker::start(&s.db_path(), &["--receive-wait", "1s"]);
    let done = until_final(&s.url(&path)).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(
        header_of(&done, "x-airq-correction"),
        "kappa-kohler; kappa=0.3; rh-max=95"
    );
    assert_eq!(done.text().await.expect("body"), want);

    // An aggregate of the corrected values: the mean of 11.58 and 16.92
    // is 14.25, of 23.16 and 33.85 is 28.505, half up 28.51; the reading
    // without a humidity counts in `readings` only. The name says the
    // correction.
    let daily = with(
        &corrected,
        json!({"aggregate": {"period": "day", "by": "all"}}),
    );
    let r = post(&s.url("/api/query"), &daily, false).await;
    assert_eq!(r.status(), StatusCode::OK, "{daily}");
    assert_eq!(
        header_of(&r, "x-airq-correction"),
        "kappa-kohler; kappa=0.3; rh-max=95"
    );
    assert!(
        header_of(&r, "content-disposition").ends_with("-day-by-all-kappa-kohler-0.3-rh95.csv\""),
        "{:?}",
        r.headers()
    );
    let text = r.text().await.expect("body");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let row: Vec<&str> = lines.next().expect("a row").split(',').collect();
    let at = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .and_then(|i| row.get(i).copied())
    };
    assert_eq!(at("readings"), Some("3"), "{text}");
    assert_eq!(at("P1_mean"), Some("14.25"), "{text}");
    assert_eq!(at("P2_mean"), Some("28.51"), "{text}");

    for (extra, said) in [
        (
            json!({"correction": "kappa-kohler"}),
            "needs the κ of your sensors",
        ),
        (
            json!({"correction": {"method": "kappa-kohler", "kappa": 0.3}, "resolution": "hour"}),
            "daily series",
        ),
        (
            json!({"correction": {"method": "kappa-kohler", "kappa": 2}}),
            "at most 1.5",
        ),
        (
            json!({"correction": {"method": "kappa-kohler", "kappa": 0.3, "rhMax": 100}}),
            "rhMax",
        ),
    ] {
        let body = with(day, extra.clone());
        let r = post(&s.url("/api/query"), &body, false).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{extra}");
        let text = r.text().await.expect("body");
        assert!(
            text.contains(r#""field":"correction""#) && text.contains(said),
            "{extra}: {text}"
        );
    }
}

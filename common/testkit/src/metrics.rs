//! Scraping a binary's `/metrics` and reading its series.

pub use prometheus_parse::{Scrape, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The media type every airq binary serves its metrics as.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// GET `url` (`http://HOST:PORT/PATH`, plain HTTP/1.1; the server closes
/// the connection) and parse the body as Prometheus text. Panics, saying
/// why, on anything but a `200` of [`CONTENT_TYPE`] in valid exposition
/// format.
pub fn scrape(url: &str) -> Scrape {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_once('/').expect("a path");
    let mut conn = TcpStream::connect(host).expect("connect to the metrics port");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        conn,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{url}: {head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-type: {CONTENT_TYPE}")),
        "{url}: {head}"
    );
    parse(body)
}

/// Parses Prometheus text exposition; panics, with the text, if it is not.
pub fn parse(body: &str) -> Scrape {
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{body}"))
}

/// Scrapes until `done` holds or `limit` passes; returns the last scrape.
pub fn scrape_until(url: &str, limit: Duration, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + limit;
    loop {
        let s = scrape(url);
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of the counter or gauge `name` whose labels include `labels`.
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .find_map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// The observations of the histogram `name` (its `_count`).
pub fn observations(scrape: &Scrape, name: &str) -> Option<f64> {
    scrape.samples.iter().find_map(|s| match &s.value {
        Value::Histogram(buckets) if s.metric == name => buckets
            .iter()
            .find(|b| b.less_than == f64::INFINITY)
            .map(|b| b.count),
        _ => None,
    })
}

/// A sample's type, as `# TYPE` names it.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Counter(_) => "counter",
        Value::Gauge(_) => "gauge",
        Value::Histogram(_) => "histogram",
        Value::Summary(_) => "summary",
        Value::Untyped(_) => "untyped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_read_by_name_and_labels() {
        let s = parse(
            "# TYPE airq_runs_total counter\n\
             airq_runs_total{outcome=\"success\"} 3\n\
             airq_runs_total{outcome=\"failure\"} 1\n\
             # TYPE airq_took_seconds histogram\n\
             airq_took_seconds_bucket{le=\"1\"} 2\n\
             airq_took_seconds_bucket{le=\"+Inf\"} 5\n\
             airq_took_seconds_sum 9\n\
             airq_took_seconds_count 5\n",
        );
        assert_eq!(
            value(&s, "airq_runs_total", &[("outcome", "failure")]),
            Some(1.0)
        );
        assert_eq!(value(&s, "airq_runs_total", &[("outcome", "gone")]), None);
        assert_eq!(observations(&s, "airq_took_seconds"), Some(5.0));
        assert_eq!(kind(&s.samples[0].value), "counter");
    }
}

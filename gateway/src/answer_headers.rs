//! The headers of an answer to a query, whichever path produced it (a
//! direct answer, a queued one's `202`, or its result fetched later), so
//! that a client sees one set of names and one attachment name for a CSV.

use airq_core::{Query, Timestamp};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

/// `X-Airq-Answer`: which path answered a query (`direct` or `queued`).
pub const ANSWER: &str = "x-airq-answer";

/// `X-Airq-Cache`: whether a direct answer came from the answer cache
/// (`hit`) or was computed for this request and its concurrent twins
/// (`miss`). Absent on a streamed answer.
pub const CACHE: &str = "x-airq-cache";

/// `X-Airq-Rows`: the number of rows of a queued query's CSV.
pub const ROWS: &str = "x-airq-rows";

/// Sets the status, content type and attachment name of a CSV answer.
pub fn csv(response: &mut Response, filename: &str) {
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    // The name is built from digits, letters and dashes only.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
}

/// `airq-20180603T200000Z-20180603T210000Z.csv`.
pub fn filename(query: &Query) -> String {
    format!("airq-{}-{}.csv", compact(query.start), compact(query.end))
}

/// `2018-06-03 20:00:00` → `20180603T200000Z`.
fn compact(t: Timestamp) -> String {
    let digits: String = t.to_string().chars().filter(char::is_ascii_digit).collect();
    if digits.len() == 14 {
        format!("{}T{}Z", &digits[..8], &digits[8..])
    } else {
        t.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_are_compact_utc() {
        let q = Query::between(
            Timestamp::parse_feed("2018-06-03 20:00:00").unwrap(),
            Timestamp::parse_feed("2018-06-03 21:00:00").unwrap(),
        );
        assert_eq!(filename(&q), "airq-20180603T200000Z-20180603T210000Z.csv");
    }
}

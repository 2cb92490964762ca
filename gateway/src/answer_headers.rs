//! The headers of an answer, whichever path produced it (a direct answer,
//! a cached one, a queued one's `202`, its result fetched later, or the
//! latest readings), so that a client sees one set of names, one content
//! type per format and one attachment name.

use airq_core::correction::Correction;
use airq_core::export::{Format, Rendering};
use airq_core::{Index, LatestQuery, Query, Timestamp};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

/// `X-Airq-Answer`: which path answered a query (`direct` or `queued`).
pub const ANSWER: &str = "x-airq-answer";

/// `X-Airq-Cache`: whether a direct answer came from the answer cache
/// (`hit`) or was computed for this request and its concurrent twins
/// (`miss`). Absent on a streamed answer.
pub const CACHE: &str = "x-airq-cache";

/// `X-Airq-Rows`: the number of rows of a queued query's answer.
pub const ROWS: &str = "x-airq-rows";

/// `X-Airq-Index`: the index (its `Index::name`) whose value and
/// band the answer's `AQI` and `Range` fields hold. The answer itself
/// does not say (the CSV keeps the first system's columns, byte for byte),
/// so without this a saved file would be ambiguous to its reader.
pub const INDEX: &str = "x-airq-index";

/// `X-Airq-Correction`: the humidity correction the answer's corrected
/// values and indices were computed with, and its parameters
/// (`kappa-kohler; kappa=0.3; rh-max=95`); absent on an answer without
/// one. The JSON formats say it on every row as well; the CSV does not.
pub const CORRECTION: &str = "x-airq-correction";

/// How an answer is labelled: its format and index, and the name it is
/// saved under.
#[derive(Debug, Clone)]
pub struct Label {
    pub rendering: Rendering,
    pub filename: String,
}

impl Label {
    /// The answer to `query`: `airq-20180603T200000Z-20180603T210000Z.csv`
    /// (the extension is the format's), `…-month-by-country.csv` for an
    /// aggregate, `…-kappa-kohler-0.3-rh95.csv` for a corrected answer (a
    /// saved CSV says its correction nowhere else).
    pub fn of_query(query: &Query) -> Label {
        let mut aggregate = query
            .aggregate
            .map(|a| format!("-{}-by-{}", a.period.name(), a.by.name()))
            .unwrap_or_default();
        if let Some(c) = query.correction {
            aggregate.push_str(&format!(
                "-{}-{}-rh{}",
                Correction::METHOD,
                c.kappa_text(),
                c.rh_max()
            ));
        }
        Label {
            rendering: query.rendering(),
            filename: format!(
                "airq-{}-{}{aggregate}.{}",
                compact(query.start),
                compact(query.end),
                query.format.extension()
            ),
        }
    }

    /// The latest readings: `airq-latest.ndjson`. The name carries no time,
    /// as the answer is whatever the store held when it was asked (a cached
    /// answer would otherwise be named after a time it was not made at).
    pub fn of_latest(latest: &LatestQuery) -> Label {
        Label {
            rendering: latest.rendering(),
            filename: format!("airq-latest.{}", latest.format.extension()),
        }
    }

    /// Sets the status (`200`), content type, attachment name and index of
    /// an answer.
    pub fn apply(&self, response: &mut Response) {
        *response.status_mut() = StatusCode::OK;
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.rendering.format.content_type()),
        );
        // The name is built from digits, letters, dashes and a dot only.
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", self.filename))
        {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        index(h, self.rendering.index);
        correction(h, self.rendering.correction);
    }
}

/// Sets `X-Airq-Index`.
pub fn index(headers: &mut HeaderMap, index: Index) {
    headers.insert(INDEX, HeaderValue::from_static(index.name()));
}

/// Sets `X-Airq-Correction` when the answer has a correction.
pub fn correction(headers: &mut HeaderMap, correction: Option<Correction>) {
    // The value is the method's name and numbers only.
    if let Some(v) = correction.and_then(|c| HeaderValue::from_str(&c.header_value()).ok()) {
        headers.insert(CORRECTION, v);
    }
}

/// Whether a content type (with or without parameters) is that of an
/// answer in one of the formats.
pub fn is_answer_type(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    Format::ALL.into_iter().any(|f| {
        let own = f.content_type().as_bytes();
        let own = own.split(|&b| b == b';').next().unwrap_or_default();
        essence.eq_ignore_ascii_case(own)
    })
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
    use airq_core::QueryLimits;

    #[test]
    fn filenames_are_compact_utc_with_the_formats_extension() {
        let q = Query::between(
            Timestamp::parse_feed("2018-06-03 20:00:00").unwrap(),
            Timestamp::parse_feed("2018-06-03 21:00:00").unwrap(),
        );
        assert_eq!(
            Label::of_query(&q).filename,
            "airq-20180603T200000Z-20180603T210000Z.csv"
        );
        let q = Query::from_json(
            br#"{"startDate":"2018-06-03","endDate":"2018-06-03","format":"geojson"}"#,
            &QueryLimits::default(),
        )
        .unwrap();
        assert_eq!(
            Label::of_query(&q).filename,
            "airq-20180603T000000Z-20180603T235959Z.geojson"
        );
        let l = LatestQuery::from_pairs([("format", "ndjson")]).unwrap();
        assert_eq!(Label::of_latest(&l).filename, "airq-latest.ndjson");
    }

    #[test]
    fn answer_types() {
        for yes in [
            &b"text/csv; charset=utf-8"[..],
            b"text/csv",
            b"application/x-ndjson",
            b"Application/Geo+JSON",
        ] {
            assert!(is_answer_type(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [&b"application/json"[..], b"text/plain", b""] {
            assert!(!is_answer_type(no), "{}", String::from_utf8_lossy(no));
        }
    }
}

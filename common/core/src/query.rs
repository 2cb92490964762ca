//! The query a user sends, its validation, and its reference evaluation.
//!
//! Users send JSON with the field names of the first version of this system
//! (`startDate`, `endDate`, `country`, `minAqi`, `maxAqi`, `range`).
//! Validation checks every field and reports every problem at once, each
//! naming its field, so a form can show the error next to the input.
//!
//! [`Query::matches`] is the reference semantics: every store backend must
//! select exactly the readings it accepts (the contract tests check this).

use crate::aqi::{Band, MAX_INDEX};
use crate::reading::{Reading, Timestamp};
use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

/// The field names a query may have.
pub const FIELDS: [&str; 6] = [
    "startDate",
    "endDate",
    "country",
    "minAqi",
    "maxAqi",
    "range",
];

/// Limits a deployment puts on queries.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Longest allowed `endDate - startDate`.
    pub max_span: Duration,
}

impl QueryLimits {
    pub const DEFAULT_MAX_SPAN: Duration = Duration::from_secs(31 * 24 * 3600);

    /// No span limit: for a worker re-reading a query that a gateway (with
    /// its own limits) already accepted.
    pub fn unbounded() -> Self {
        QueryLimits {
            max_span: Duration::from_secs(i64::MAX as u64 / 2),
        }
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_span: Self::DEFAULT_MAX_SPAN,
        }
    }
}

/// One problem with one field of a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The JSON field name, or `body` for the document as a whole.
    pub field: String,
    pub message: String,
}

/// Every problem found in a query; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub struct QueryError {
    pub errors: Vec<FieldError>,
}

impl QueryError {
    fn body(message: impl Into<String>) -> Self {
        QueryError {
            errors: vec![FieldError {
                field: "body".into(),
                message: message.into(),
            }],
        }
    }

    /// Whether some error names `field`.
    pub fn names(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

/// A validated query. Bounds are inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    pub start: Timestamp,
    pub end: Timestamp,
    /// Upper-cased; compared exactly with the stored country code.
    pub country: Option<String>,
    pub min_aqi: u8,
    pub max_aqi: u8,
    pub band: Option<Band>,
}

impl Query {
    /// A query for every reading in `[start, end]`.
    pub fn between(start: Timestamp, end: Timestamp) -> Self {
        Query {
            start,
            end,
            country: None,
            min_aqi: 0,
            max_aqi: MAX_INDEX,
            band: None,
        }
    }

    /// Parses and validates a request body.
    pub fn from_json(body: &[u8], limits: &QueryLimits) -> Result<Query, QueryError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| QueryError::body(format!("not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(QueryError::body(
                "expected a JSON object with startDate and endDate",
            ));
        };
        Self::from_map(&map, limits)
    }

    /// Validates the fields of an already-parsed JSON object.
    pub fn from_map(map: &Map<String, Value>, limits: &QueryLimits) -> Result<Query, QueryError> {
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.to_owned(),
                message,
            })
        };
        for key in map.keys() {
            if !FIELDS.contains(&key.as_str()) {
                err(
                    key,
                    format!("unknown field; expected one of {}", FIELDS.join(", ")),
                );
            }
        }
        let field = |name: &str| map.get(name).filter(|v| !v.is_null());

        let mut date = |name: &str, end_of_day: bool| match field(name) {
            None => {
                err(name, "is required".into());
                None
            }
            Some(Value::String(s)) => parse_date(s, end_of_day).map_err(|m| err(name, m)).ok(),
            Some(other) => {
                err(name, format!("must be a date string, got {}", kind(other)));
                None
            }
        };
        let start = date("startDate", false);
        let end = date("endDate", true);

        let country = match field("country") {
            None => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => {
                let s = s.trim();
                if (2..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic()) {
                    Some(s.to_ascii_uppercase())
                } else {
                    err(
                        "country",
                        format!("must be a 2- or 3-letter country code such as DE, got {s:?}"),
                    );
                    None
                }
            }
            Some(other) => {
                err("country", format!("must be a string, got {}", kind(other)));
                None
            }
        };

        let mut aqi = |name: &str, default: u8| match field(name) {
            None => Some(default),
            Some(v) => match aqi_value(v) {
                Some(n) => Some(n),
                None => {
                    err(
                        name,
                        format!("must be a whole number from 0 to {MAX_INDEX}, got {v}"),
                    );
                    None
                }
            },
        };
        let min_aqi = aqi("minAqi", 0);
        let max_aqi = aqi("maxAqi", MAX_INDEX);

        let band = match field("range") {
            None => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => match Band::parse(s) {
                Some(b) => Some(b),
                None => {
                    err(
                        "range",
                        format!("unknown band {s:?}; expected Low, Moderate (or Medium), High or Very High"),
                    );
                    None
                }
            },
            Some(other) => {
                err("range", format!("must be a band name, got {}", kind(other)));
                None
            }
        };

        if let (Some(lo), Some(hi)) = (min_aqi, max_aqi) {
            if lo > hi {
                err(
                    "minAqi",
                    format!("minAqi ({lo}) is greater than maxAqi ({hi})"),
                );
            }
        }
        if let (Some(s), Some(e)) = (start, end) {
            if e < s {
                err("endDate", format!("is before startDate ({e} < {s})"));
            } else if (e.0 - s.0) as u64 > limits.max_span.as_secs() {
                err(
                    "endDate",
                    format!(
                        "the range spans {} but at most {} is allowed",
                        human_span(Duration::from_secs((e.0 - s.0) as u64)),
                        human_span(limits.max_span)
                    ),
                );
            }
        }

        match (start, end, min_aqi, max_aqi) {
            (Some(start), Some(end), Some(min_aqi), Some(max_aqi)) if errors.is_empty() => {
                Ok(Query {
                    start,
                    end,
                    country,
                    min_aqi,
                    max_aqi,
                    band,
                })
            }
            _ => Err(QueryError { errors }),
        }
    }

    /// The inclusive AQI interval this query accepts once `minAqi`, `maxAqi`
    /// and the band are combined; `None` when they exclude each other.
    pub fn aqi_bounds(&self) -> Option<(u8, u8)> {
        let (mut lo, mut hi) = (self.min_aqi, self.max_aqi);
        if let Some(b) = self.band {
            let (blo, bhi) = b.indices();
            lo = lo.max(blo);
            hi = hi.min(bhi);
        }
        (lo <= hi).then_some((lo, hi))
    }

    /// The reference evaluation every backend must agree with.
    pub fn matches(&self, r: &Reading) -> bool {
        r.timestamp >= self.start
            && r.timestamp <= self.end
            && self.country.as_deref().is_none_or(|c| r.loc_country == c)
            && self
                .aqi_bounds()
                .is_some_and(|(lo, hi)| (lo..=hi).contains(&r.aqi))
    }

    /// Length of the time range.
    pub fn span(&self) -> Duration {
        Duration::from_secs((self.end.0 - self.start.0).max(0) as u64)
    }

    /// The canonical JSON form, accepted back by [`Query::from_json`].
    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        m.insert("startDate".into(), self.start.to_string().into());
        m.insert("endDate".into(), self.end.to_string().into());
        if let Some(c) = &self.country {
            m.insert("country".into(), c.clone().into());
        }
        m.insert("minAqi".into(), self.min_aqi.into());
        m.insert("maxAqi".into(), self.max_aqi.into());
        if let Some(b) = self.band {
            m.insert("range".into(), b.label().into());
        }
        Value::Object(m).to_string()
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An AQI bound: an integer 0..=10, as a JSON number or a numeric string.
fn aqi_value(v: &Value) -> Option<u8> {
    let n = match v {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse::<u64>().ok()?,
        _ => return None,
    };
    (n <= u64::from(MAX_INDEX)).then_some(n as u8)
}

/// Parses a date bound: `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DDTHH:MM:SS`,
/// `YYYY-MM-DD` (the whole day: midnight for a start, 23:59:59 for an end,
/// since both bounds are inclusive) or RFC 3339 with any offset (converted
/// to UTC, sub-seconds dropped).
fn parse_date(s: &str, end_of_day: bool) -> Result<Timestamp, String> {
    let t = s.trim();
    if let Some(ts) = Timestamp::parse_feed(t) {
        return Ok(ts);
    }
    if t.len() == 10 {
        if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            let (h, m, sec) = if end_of_day { (23, 59, 59) } else { (0, 0, 0) };
            if let Some(dt) = d.and_hms_opt(h, m, sec) {
                return Ok(Timestamp::from_naive(dt));
            }
        }
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(Timestamp(dt.timestamp()));
    }
    Err(format!(
        "must be a UTC date as YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or RFC 3339 (2024-01-01T00:00:00Z), got {s:?}"
    ))
}

fn human_span(d: Duration) -> String {
    let s = d.as_secs();
    let (days, rem) = (s / 86_400, s % 86_400);
    match (days, rem) {
        (0, _) => format!("{}h {}m {}s", rem / 3600, rem % 3600 / 60, rem % 60),
        (d, 0) => format!("{d} days"),
        (d, r) => format!("{d} days {}h {}m {}s", r / 3600, r % 3600 / 60, r % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Query, QueryError> {
        Query::from_json(json.as_bytes(), &QueryLimits::default())
    }

    #[test]
    fn the_first_clients_query_is_accepted() {
        let q = parse(
            r#"{"startDate":"2024-01-01 00:00:00","endDate":"2024-01-01 01:00:00","country":"DE","minAqi":0,"maxAqi":10,"range":"Low"}"#,
        )
        .unwrap();
        assert_eq!(q.start.to_string(), "2024-01-01 00:00:00");
        assert_eq!(q.end.to_string(), "2024-01-01 01:00:00");
        assert_eq!(q.country.as_deref(), Some("DE"));
        assert_eq!((q.min_aqi, q.max_aqi), (0, 10));
        assert_eq!(q.band, Some(Band::Low));
        assert_eq!(q.aqi_bounds(), Some((1, 3)));
    }

    #[test]
    fn medium_is_moderate() {
        let q =
            parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-02","range":"Medium"}"#).unwrap();
        assert_eq!(q.band, Some(Band::Moderate));
    }

    #[test]
    fn date_forms() {
        let q = parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-01"}"#).unwrap();
        assert_eq!(q.start.to_string(), "2024-01-01 00:00:00");
        assert_eq!(
            q.end.to_string(),
            "2024-01-01 23:59:59",
            "a bare end date covers its day"
        );
        let q = parse(
            r#"{"startDate":"2024-01-01T02:00:00+02:00","endDate":"2024-01-01T00:30:00.900Z"}"#,
        )
        .unwrap();
        assert_eq!(q.start.to_string(), "2024-01-01 00:00:00");
        assert_eq!(q.end.to_string(), "2024-01-01 00:30:00");
        let q = parse(r#"{"startDate":"2024-01-01T00:00:00","endDate":"2024-01-01 00:00:00"}"#)
            .unwrap();
        assert_eq!(q.start, q.end);
    }

    #[test]
    fn every_bad_field_is_named() {
        let e = parse(
            r#"{"startDate":"yesterday","endDate":5,"country":"Germany","minAqi":-1,"maxAqi":11.5,"range":"Severe","limit":3}"#,
        )
        .unwrap_err();
        for f in [
            "startDate",
            "endDate",
            "country",
            "minAqi",
            "maxAqi",
            "range",
            "limit",
        ] {
            assert!(e.names(f), "no error for {f}: {e}");
        }
    }

    #[test]
    fn missing_dates_are_required() {
        let e = parse("{}").unwrap_err();
        assert!(e.names("startDate") && e.names("endDate"));
        assert!(e.to_string().contains("is required"));
    }

    #[test]
    fn end_before_start() {
        let e = parse(r#"{"startDate":"2024-01-02","endDate":"2024-01-01"}"#).unwrap_err();
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].field, "endDate");
        assert!(e.errors[0].message.contains("before startDate"));
    }

    #[test]
    fn span_limit() {
        assert!(parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-31"}"#).is_ok());
        let e = parse(r#"{"startDate":"2024-01-01","endDate":"2024-02-01"}"#).unwrap_err();
        assert!(e.names("endDate"));
        assert!(e.errors[0].message.contains("at most 31 days"), "{e}");
        let tight = QueryLimits {
            max_span: Duration::from_secs(3600),
        };
        assert!(Query::from_json(
            br#"{"startDate":"2024-01-01 00:00:00","endDate":"2024-01-01 01:00:01"}"#,
            &tight
        )
        .is_err());
    }

    #[test]
    fn min_above_max() {
        let e =
            parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-01","minAqi":5,"maxAqi":"4"}"#)
                .unwrap_err();
        assert!(e.names("minAqi"));
        assert!(e.errors[0].message.contains("greater than maxAqi"));
    }

    #[test]
    fn body_errors() {
        for body in ["", "[1]", "not json", "\"x\"", "{\"startDate\":"] {
            let e = parse(body).unwrap_err();
            assert!(e.names("body"), "{body:?}: {e}");
        }
    }

    #[test]
    fn canonical_json_round_trips() {
        let q = parse(
            r#"{"startDate":"2024-01-01T00:00:00Z","endDate":"2024-01-03","country":"de","minAqi":"2","range":"very high"}"#,
        )
        .unwrap();
        assert_eq!(
            Query::from_json(q.to_json().as_bytes(), &QueryLimits::default()).unwrap(),
            q
        );
    }

    #[test]
    fn band_and_bounds_can_exclude_everything() {
        let q =
            parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-01","minAqi":7,"range":"Low"}"#)
                .unwrap();
        assert_eq!(q.aqi_bounds(), None);
    }
}

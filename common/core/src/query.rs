//! The query a user sends, its validation, and its reference evaluation.
//!
//! Users send JSON with the field names of the first version of this system
//! (`startDate`, `endDate`, `country`, `minAqi`, `maxAqi`, `range`).
//! Validation checks every field and reports every problem at once, each
//! naming its field, so a form can show the error next to the input.
//!
//! [`Query::matches`] is the reference semantics: every store backend must
//! select exactly the readings it accepts (the contract tests check this).

use crate::aggregate::{Aggregate, Aggregator, Period};
use crate::aqi::{Index, Indices, MAX_INDEX};
use crate::correction::Correction;
use crate::export::{Format, Rendering};
use crate::place::{Bbox, Near, Place, MAX_RADIUS_KM};
use crate::quality::Quality;
use crate::reading::{Reading, Timestamp};
use crate::resolution::Resolution;
use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

/// The field names a query may have.
pub const FIELDS: [&str; 15] = [
    "startDate",
    "endDate",
    "country",
    "index",
    "minAqi",
    "maxAqi",
    "range",
    "bbox",
    "near",
    "sensorType",
    "format",
    "resolution",
    "aggregate",
    "quality",
    "correction",
];

/// Limits a deployment puts on queries.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Longest allowed `endDate - startDate` of a query for readings.
    pub max_span: Duration,
    /// Longest allowed span of an aggregate (its answer has a row per
    /// period and group, not per reading).
    pub max_aggregate_span: Duration,
}

impl QueryLimits {
    pub const DEFAULT_MAX_SPAN: Duration = Duration::from_secs(31 * 24 * 3600);
    /// A leap year: a `year` aggregate of any calendar year fits.
    pub const DEFAULT_MAX_AGGREGATE_SPAN: Duration = Duration::from_secs(366 * 24 * 3600);

    /// The longest span a query on `resolution` may have: `max_span` (or
    /// `max_aggregate_span` for an aggregate) for the daily series, and no
    /// more than the series' own cap ([`Resolution::max_span`]) for the
    /// finer ones.
    pub fn span_limit(&self, resolution: Resolution, aggregate: bool) -> Duration {
        let max = if aggregate {
            self.max_aggregate_span
        } else {
            self.max_span
        };
        match resolution {
            Resolution::Day => max,
            finer => max.min(finer.max_span()),
        }
    }

    /// No span limit: for a worker re-reading a query that a gateway (with
    /// its own limits) already accepted.
    pub fn unbounded() -> Self {
        let max = Duration::from_secs(i64::MAX as u64 / 2);
        QueryLimits {
            max_span: max,
            max_aggregate_span: max,
        }
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_span: Self::DEFAULT_MAX_SPAN,
            max_aggregate_span: Self::DEFAULT_MAX_AGGREGATE_SPAN,
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
    /// The index `min_aqi`, `max_aqi` and `band` are on, and answers show.
    pub index: Index,
    pub min_aqi: u16,
    pub max_aqi: u16,
    /// A band of `index`: its position in [`Index::bands`].
    pub band: Option<usize>,
    pub place: Option<Place>,
    /// Sensor types, upper-cased, sorted, without repeats; compared with
    /// the stored type case-insensitively. Empty: every type.
    pub sensor_types: Vec<String>,
    pub format: Format,
    /// The series asked for ([`Resolution`]): the daily one by default.
    pub resolution: Resolution,
    /// Statistics by period and group instead of the readings
    /// ([`crate::aggregate`]); the filters select what is aggregated.
    pub aggregate: Option<Aggregate>,
    /// The quality filter, when the query has one ([`Quality`]): the
    /// answer then carries each reading's flags and air.
    pub quality: Option<Quality>,
    /// The humidity correction asked for ([`Correction`]): the answer then
    /// adds corrected values, and its indices (and the index filters) are
    /// those of the corrected values.
    pub correction: Option<Correction>,
}

impl Query {
    /// A query for every reading in `[start, end]`.
    pub fn between(start: Timestamp, end: Timestamp) -> Self {
        Query {
            start,
            end,
            country: None,
            index: Index::Daqi,
            min_aqi: 0,
            max_aqi: MAX_INDEX.into(),
            band: None,
            place: None,
            sensor_types: Vec::new(),
            format: Format::Csv,
            resolution: Resolution::Day,
            aggregate: None,
            quality: None,
            correction: None,
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
        let mut v = Fields::new(map, &FIELDS);
        let start = v.date("startDate", false);
        let end = v.date("endDate", true);
        let country = v.country();
        let index = v.index();
        let (min_aqi, max_aqi, band) = match index {
            Some(index) => {
                let lo = v.aqi("minAqi", index, index.floor());
                let hi = v.aqi("maxAqi", index, index.floor());
                let band = v.band(index);
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    if lo > hi {
                        v.err(
                            "minAqi",
                            format!("minAqi ({lo}) is greater than maxAqi ({hi})"),
                        );
                    }
                }
                (lo, hi, band)
            }
            None => (None, None, None),
        };
        let place = v.place();
        let sensor_types = v.sensor_types();
        let format = v.format();
        let resolution = v.resolution();
        let aggregate = v.aggregate(resolution.unwrap_or_default());
        let quality = v.quality();
        let correction = v.correction(resolution.unwrap_or_default());

        if let (Some(s), Some(e)) = (start, end) {
            let aggregating = matches!(aggregate, Some(Some(_)));
            let limit = limits.span_limit(resolution.unwrap_or_default(), aggregating);
            if e < s {
                v.err("endDate", format!("is before startDate ({e} < {s})"));
            } else if (e.0 - s.0) as u64 > limit.as_secs() {
                let of = match resolution {
                    Some(r @ (Resolution::Hour | Resolution::FiveMin)) => {
                        format!(" for resolution \"{}\"", r.name())
                    }
                    _ if aggregating => " for an aggregate".to_owned(),
                    _ => String::new(),
                };
                v.err(
                    "endDate",
                    format!(
                        "the range spans {} but at most {}{of} is allowed",
                        human_span(Duration::from_secs((e.0 - s.0) as u64)),
                        human_span(limit)
                    ),
                );
            }
        }

        match (
            start,
            end,
            index,
            min_aqi,
            max_aqi,
            band,
            place,
            sensor_types,
            format,
            resolution,
            aggregate,
            quality,
            correction,
        ) {
            (
                Some(start),
                Some(end),
                Some(index),
                Some(min_aqi),
                Some(max_aqi),
                Some(band),
                Some(place),
                Some(sensor_types),
                Some(format),
                Some(resolution),
                Some(aggregate),
                Some(quality),
                Some(correction),
            ) if v.errors.is_empty() => Ok(Query {
                start,
                end,
                country,
                index,
                min_aqi,
                max_aqi,
                band,
                place,
                sensor_types,
                format,
                resolution,
                aggregate,
                quality,
                correction,
            }),
            _ => Err(v.into_error()),
        }
    }

    /// The inclusive interval of index values this query accepts once
    /// `minAqi`, `maxAqi` and the band are combined; `None` when they
    /// exclude each other.
    pub fn aqi_bounds(&self) -> Option<(u16, u16)> {
        let (mut lo, mut hi) = (self.min_aqi, self.max_aqi);
        if let Some(b) = self.band.and_then(|b| self.index.bands().get(b)) {
            lo = lo.max(b.lo);
            hi = hi.min(b.hi);
        }
        (lo <= hi).then_some((lo, hi))
    }

    /// Whether a sensor type is one the query asks for.
    pub fn wants_type(&self, sensor_type: &str) -> bool {
        wants_type(&self.sensor_types, sensor_type)
    }

    /// The bounds to filter the query's index on, `None` when the query
    /// takes every value (then a reading whose index is undefined, an
    /// hour with too little data, is kept too), `Some(None)` when they
    /// exclude everything.
    pub fn index_filter(&self) -> Option<Option<(u16, u16)>> {
        match self.aqi_bounds() {
            Some((lo, hi)) if lo <= self.index.min() && hi >= self.index.max() => None,
            bounds => Some(bounds),
        }
    }

    /// The reference evaluation every backend must agree with. With a
    /// correction, the index filters read the corrected values' indices.
    pub fn matches(&self, r: &Reading) -> bool {
        r.timestamp >= self.start
            && r.timestamp <= self.end
            && self.country.as_deref().is_none_or(|c| r.loc_country == c)
            && self.wants_type(&r.sensor_type)
            && self
                .place
                .is_none_or(|p| p.contains_text(&r.loc_lat, &r.loc_long))
            && match self.index_filter() {
                None => true,
                Some(bounds) => bounds.is_some_and(|(lo, hi)| {
                    self.indices_of(r)
                        .defined(self.index)
                        .is_some_and(|v| (lo..=hi).contains(&v))
                }),
            }
            && self.quality.is_none_or(|q| q.keeps(r.flags))
    }

    /// The indices the query's index filters and answer read: the stored
    /// ones, or with a correction those of the corrected values.
    pub fn indices_of(&self, r: &Reading) -> Indices {
        match self.correction {
            None => r.indices,
            Some(c) => {
                c.apply(r.p1.as_deref(), r.p2.as_deref(), r.air.humidity.as_deref())
                    .indices
            }
        }
    }

    /// What a store reads for a query with a correction: the same
    /// readings without the index filters (the stored indices are not the
    /// corrected ones), which [`Query::matches`] then applies to the
    /// corrected values; the query itself without one.
    pub fn before_correction(&self) -> Query {
        match self.correction {
            None => self.clone(),
            Some(_) => Query {
                min_aqi: self.index.min(),
                max_aqi: self.index.max(),
                band: None,
                correction: None,
                ..self.clone()
            },
        }
    }

    /// The query with no quality filter: what an aggregation reads (its
    /// [`Aggregator`] leaves out and counts what the filter names).
    pub fn without_quality(&self) -> Query {
        Query {
            quality: None,
            ..self.clone()
        }
    }

    /// The aggregation this query asks for, if it asks for one.
    pub fn aggregator(&self) -> Option<Aggregator> {
        self.aggregate.map(|a| {
            Aggregator::new(a, self.index, self.resolution, self.start, self.end)
                .with_quality(self.quality)
                .with_correction(self.correction)
        })
    }

    /// How answers to this query are written.
    pub fn rendering(&self) -> Rendering {
        Rendering {
            format: self.format,
            index: self.index,
            age_at: None,
            quality: self.quality.is_some(),
            correction: self.correction,
        }
    }

    /// Length of the time range.
    pub fn span(&self) -> Duration {
        Duration::from_secs((self.end.0 - self.start.0).max(0) as u64)
    }

    /// The canonical JSON form, accepted back by [`Query::from_json`]. A
    /// query of the first system's fields has the form it had before the
    /// others existed: fields at their defaults are left out.
    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        m.insert("startDate".into(), self.start.to_string().into());
        m.insert("endDate".into(), self.end.to_string().into());
        if let Some(c) = &self.country {
            m.insert("country".into(), c.clone().into());
        }
        if self.index != Index::default() {
            m.insert("index".into(), self.index.name().into());
        }
        m.insert("minAqi".into(), self.min_aqi.into());
        m.insert("maxAqi".into(), self.max_aqi.into());
        if let Some(b) = self.band.and_then(|b| self.index.bands().get(b)) {
            m.insert("range".into(), b.label.into());
        }
        insert_place(&mut m, self.place);
        insert_types(&mut m, &self.sensor_types);
        if self.format != Format::Csv {
            m.insert("format".into(), self.format.name().into());
        }
        if self.resolution != Resolution::Day {
            m.insert("resolution".into(), self.resolution.name().into());
        }
        if let Some(a) = self.aggregate {
            m.insert("aggregate".into(), a.to_json());
        }
        if let Some(q) = self.quality {
            m.insert("quality".into(), q.to_value());
        }
        if let Some(c) = self.correction {
            m.insert("correction".into(), c.to_value());
        }
        Value::Object(m).to_string()
    }
}

fn wants_type(types: &[String], sensor_type: &str) -> bool {
    types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case(sensor_type))
}

fn insert_place(m: &mut Map<String, Value>, place: Option<Place>) {
    match place {
        Some(Place::Bbox(b)) => {
            m.insert(
                "bbox".into(),
                serde_json::json!([b.min_lon, b.min_lat, b.max_lon, b.max_lat]),
            );
        }
        Some(Place::Near(n)) => {
            m.insert(
                "near".into(),
                serde_json::json!({"lat": n.lat, "lon": n.lon, "radiusKm": n.radius_km}),
            );
        }
        None => {}
    }
}

fn insert_types(m: &mut Map<String, Value>, types: &[String]) {
    match types {
        [] => {}
        [one] => {
            m.insert("sensorType".into(), one.clone().into());
        }
        many => {
            m.insert("sensorType".into(), many.to_vec().into());
        }
    }
}

/// The field names `GET /api/latest` takes in its query string.
pub const LATEST_FIELDS: [&str; 6] = ["country", "bbox", "near", "sensorType", "index", "format"];

/// A request for the most recent reading of each sensor: place, sensor
/// type and country filters, and the index and format of the answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LatestQuery {
    pub country: Option<String>,
    pub place: Option<Place>,
    pub sensor_types: Vec<String>,
    pub index: Index,
    pub format: Format,
    /// When the request was made (to the second): JSON answers give each
    /// reading's `ageSeconds` from it and its `resolution`. Part of the
    /// query, so that an answer cached for it is exact to its second.
    pub at: Option<Timestamp>,
}

impl LatestQuery {
    /// Parses a query string's fields (`country=DE&bbox=5,47,15,55&
    /// near=52.5,13.4,10&sensorType=SDS011,SPS30&index=eaqi&format=csv`):
    /// the same rules as [`Query`]'s fields of those names, lists written
    /// comma-separated (a repeated `sensorType` adds to the list).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<LatestQuery, QueryError> {
        let mut map = Map::new();
        let mut repeated = Vec::new();
        for (key, value) in pairs {
            let parsed = match key {
                "bbox" => Value::Array(value.split(',').map(number_or_text).collect()),
                "near" => {
                    let parts: Vec<&str> = value.split(',').collect();
                    match parts.as_slice() {
                        [lat, lon, r] => serde_json::json!({
                            "lat": number_or_text(lat),
                            "lon": number_or_text(lon),
                            "radiusKm": number_or_text(r),
                        }),
                        _ => Value::String(value.to_owned()),
                    }
                }
                "sensorType" => {
                    let mut list = match map.remove(key) {
                        Some(Value::Array(list)) => list,
                        _ => Vec::new(),
                    };
                    list.extend(
                        value
                            .split(',')
                            .filter(|t| !t.trim().is_empty())
                            .map(|t| Value::String(t.to_owned())),
                    );
                    Value::Array(list)
                }
                _ => Value::String(value.to_owned()),
            };
            if map.contains_key(key) && key != "sensorType" {
                repeated.push(key.to_owned());
            }
            map.insert(key.to_owned(), parsed);
        }
        let mut errors: Vec<(String, String)> = repeated
            .into_iter()
            .map(|key| (key, "is given more than once".to_owned()))
            .collect();
        if map.contains_key("near") && !matches!(map.get("near"), Some(Value::Object(_))) {
            errors.push((
                "near".into(),
                "must be lat,lon,radiusKm (three numbers), e.g. 52.52,13.40,10".into(),
            ));
        }
        LatestQuery::checked(&map, errors)
    }

    /// The same fields as a JSON object (`near` as `{"lat","lon","radiusKm"}`,
    /// `bbox` and `sensorType` as arrays), as an alert's place has them.
    pub fn from_map(map: &Map<String, Value>) -> Result<LatestQuery, QueryError> {
        LatestQuery::checked(map, Vec::new())
    }

    fn checked(
        map: &Map<String, Value>,
        errors: Vec<(String, String)>,
    ) -> Result<LatestQuery, QueryError> {
        let mut v = Fields::new(map, &LATEST_FIELDS);
        for (field, message) in errors {
            v.err(&field, message);
        }
        let country = v.country();
        let place = v.place();
        let sensor_types = v.sensor_types();
        let index = v.index();
        let format = v.format();
        match (place, sensor_types, index, format) {
            (Some(place), Some(sensor_types), Some(index), Some(format)) if v.errors.is_empty() => {
                Ok(LatestQuery {
                    country,
                    place,
                    sensor_types,
                    index,
                    format,
                    at: Some(Timestamp::now()),
                })
            }
            _ => Err(v.into_error()),
        }
    }

    /// Whether a sensor's latest reading is one this request returns.
    pub fn matches(&self, r: &Reading) -> bool {
        self.country.as_deref().is_none_or(|c| r.loc_country == c)
            && wants_type(&self.sensor_types, &r.sensor_type)
            && self
                .place
                .is_none_or(|p| p.contains_text(&r.loc_lat, &r.loc_long))
    }

    /// Whether a sensor type is one the request asks for.
    pub fn wants_type(&self, sensor_type: &str) -> bool {
        wants_type(&self.sensor_types, sensor_type)
    }

    pub fn rendering(&self) -> Rendering {
        Rendering {
            format: self.format,
            index: self.index,
            age_at: self.at,
            quality: false,
            correction: None,
        }
    }

    /// A canonical text of the request, for logs and cache keys.
    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        if let Some(c) = &self.country {
            m.insert("country".into(), c.clone().into());
        }
        insert_place(&mut m, self.place);
        insert_types(&mut m, &self.sensor_types);
        m.insert("index".into(), self.index.name().into());
        m.insert("format".into(), self.format.name().into());
        Value::Object(m).to_string()
    }
}

/// A query-string value as a JSON number when it is one, else as text (so
/// that the validator names what is wrong with it).
fn number_or_text(s: &str) -> Value {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .and_then(serde_json::Number::from_f64)
        .map_or_else(|| Value::String(s.to_owned()), Value::Number)
}

/// Most sensor types one query may list.
pub const MAX_SENSOR_TYPES: usize = 32;

/// The validator of a query's fields: each method checks one field,
/// records every problem under its field's name, and returns `None` when
/// the field is unusable (`Some(default)` when it is absent).
struct Fields<'a> {
    map: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    fn new(map: &'a Map<String, Value>, known: &[&str]) -> Self {
        let mut v = Fields {
            map,
            errors: Vec::new(),
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                v.err(
                    key,
                    format!("unknown field; expected one of {}", known.join(", ")),
                );
            }
        }
        v
    }

    fn err(&mut self, field: &str, message: String) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            message,
        })
    }

    fn into_error(self) -> QueryError {
        QueryError {
            errors: self.errors,
        }
    }

    fn field(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// A non-empty trimmed string field, `Ok(None)` when absent or blank.
    fn text(&mut self, name: &str, what: &str) -> Result<Option<&'a str>, ()> {
        match self.field(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim())),
            Some(other) => {
                self.err(name, format!("must be {what}, got {}", kind(other)));
                Err(())
            }
        }
    }

    /// A registry name (`index`, `format`, `range`): blanks alone are not
    /// given; the text is handed on whole, for [`crate::name`]'s rule.
    fn name_text(&mut self, name: &str, what: &str) -> Result<Option<&'a str>, ()> {
        match self.field(name) {
            None => Ok(None),
            Some(Value::String(s)) if crate::name::is_blank_text(s) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => {
                self.err(name, format!("must be {what}, got {}", kind(other)));
                Err(())
            }
        }
    }

    fn date(&mut self, name: &str, end_of_day: bool) -> Option<Timestamp> {
        match self.field(name) {
            None => {
                self.err(name, "is required".into());
                None
            }
            Some(Value::String(s)) => match parse_date(s, end_of_day) {
                Ok(t) => Some(t),
                Err(m) => {
                    self.err(name, m);
                    None
                }
            },
            Some(other) => {
                self.err(name, format!("must be a date string, got {}", kind(other)));
                None
            }
        }
    }

    fn country(&mut self) -> Option<String> {
        let s = self.text("country", "a string").ok()??;
        if (2..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic()) {
            Some(s.to_ascii_uppercase())
        } else {
            self.err(
                "country",
                format!("must be a 2- or 3-letter country code such as DE, got {s:?}"),
            );
            None
        }
    }

    fn index(&mut self) -> Option<Index> {
        let names = Index::ALL.map(Index::name).join(", ");
        self.one_of("index", Index::default(), Index::parse, &names)
    }

    /// A field naming one of a fixed set (`index`, `format`): `default`
    /// when absent, an error listing `names` when unknown.
    fn one_of<T>(
        &mut self,
        field: &str,
        default: T,
        parse: impl Fn(&str) -> Option<T>,
        names: &str,
    ) -> Option<T> {
        match self.name_text(field, &format!("one of {names}")) {
            Err(()) => None,
            Ok(None) => Some(default),
            Ok(Some(s)) => {
                let parsed = parse(s);
                if parsed.is_none() {
                    self.err(
                        field,
                        format!("unknown {field} {s:?}; expected one of {names}"),
                    );
                }
                parsed
            }
        }
    }

    /// An index bound: an integer on `index`'s scale (from `floor`), as a
    /// JSON number or a numeric string.
    fn aqi(&mut self, name: &str, index: Index, floor: u16) -> Option<u16> {
        let default = if name == "minAqi" { floor } else { index.max() };
        let Some(v) = self.field(name) else {
            return Some(default);
        };
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if (u64::from(floor)..=u64::from(index.max())).contains(&n) => Some(n as u16),
            _ => {
                self.err(
                    name,
                    format!(
                        "must be a whole number from {floor} to {} on the {} scale, got {v}",
                        index.max(),
                        index.name()
                    ),
                );
                None
            }
        }
    }

    fn band(&mut self, index: Index) -> Option<Option<usize>> {
        let s = match self.name_text("range", "a band name") {
            Err(()) => return None,
            Ok(None) => return Some(None),
            Ok(Some(s)) => s,
        };
        match index.parse_band(s) {
            Some(b) => Some(Some(b)),
            None => {
                let extra: String = index
                    .band_aliases()
                    .iter()
                    .map(|(alias, label)| format!(" ({alias} is taken for {label})"))
                    .collect();
                self.err(
                    "range",
                    format!(
                        "unknown {} band {s:?}; expected one of {}{extra}",
                        index.name(),
                        index.band_list()
                    ),
                );
                None
            }
        }
    }

    /// `bbox` or `near`, at most one of them.
    fn place(&mut self) -> Option<Option<Place>> {
        let bbox = self.field("bbox").map(|v| self.bbox(v));
        let near = self.field("near").map(|v| self.near(v));
        match (bbox, near) {
            (Some(_), Some(_)) => {
                self.err(
                    "near",
                    "bbox and near exclude each other; give one of them".into(),
                );
                None
            }
            (Some(b), None) => b.map(|b| Some(Place::Bbox(b))),
            (None, Some(n)) => n.map(|n| Some(Place::Near(n))),
            (None, None) => Some(None),
        }
    }

    fn bbox(&mut self, v: &Value) -> Option<Bbox> {
        const SHAPE: &str =
            "must be [minLon, minLat, maxLon, maxLat], four numbers in degrees (GeoJSON order)";
        let nums: Option<Vec<f64>> = match v {
            Value::Array(items) if items.len() == 4 => items.iter().map(Value::as_f64).collect(),
            _ => None,
        };
        let Some(n) = nums else {
            self.err("bbox", format!("{SHAPE}, got {v}"));
            return None;
        };
        let b = Bbox {
            min_lon: n[0],
            min_lat: n[1],
            max_lon: n[2],
            max_lat: n[3],
        };
        let mut problems = Vec::new();
        if !(-180.0..=180.0).contains(&b.min_lon) || !(-180.0..=180.0).contains(&b.max_lon) {
            problems.push("longitudes must be from -180 to 180".to_owned());
        }
        if !(-90.0..=90.0).contains(&b.min_lat) || !(-90.0..=90.0).contains(&b.max_lat) {
            problems.push("latitudes must be from -90 to 90".to_owned());
        }
        if b.min_lon >= b.max_lon {
            problems.push(format!(
                "minLon ({}) must be less than maxLon ({})",
                b.min_lon, b.max_lon
            ));
        }
        if b.min_lat >= b.max_lat {
            problems.push(format!(
                "minLat ({}) must be less than maxLat ({})",
                b.min_lat, b.max_lat
            ));
        }
        if problems.is_empty() {
            Some(b)
        } else {
            self.err("bbox", problems.join("; "));
            None
        }
    }

    fn near(&mut self, v: &Value) -> Option<Near> {
        const SHAPE: &str =
            "must be {\"lat\": …, \"lon\": …, \"radiusKm\": …} with numbers in degrees and km";
        let Value::Object(o) = v else {
            self.err("near", format!("{SHAPE}, got {}", kind(v)));
            return None;
        };
        let mut problems = Vec::new();
        for k in o.keys() {
            if !["lat", "lon", "radiusKm"].contains(&k.as_str()) {
                problems.push(format!("unknown member {k:?}"));
            }
        }
        let num = |k: &str, problems: &mut Vec<String>| match o.get(k).and_then(Value::as_f64) {
            Some(f) => Some(f),
            None => {
                problems.push(format!("{k} is required and must be a number"));
                None
            }
        };
        let (lat, lon, r) = (
            num("lat", &mut problems),
            num("lon", &mut problems),
            num("radiusKm", &mut problems),
        );
        if lat.is_some_and(|l| !(-90.0..=90.0).contains(&l)) {
            problems.push("lat must be from -90 to 90".into());
        }
        if lon.is_some_and(|l| !(-180.0..=180.0).contains(&l)) {
            problems.push("lon must be from -180 to 180".into());
        }
        if r.is_some_and(|r| !(r > 0.0 && r <= MAX_RADIUS_KM)) {
            problems.push(format!(
                "radiusKm must be more than 0 and at most {MAX_RADIUS_KM} km"
            ));
        }
        match (lat, lon, r) {
            (Some(lat), Some(lon), Some(radius_km)) if problems.is_empty() => Some(Near {
                lat,
                lon,
                radius_km,
            }),
            _ => {
                self.err("near", problems.join("; "));
                None
            }
        }
    }

    fn sensor_types(&mut self) -> Option<Vec<String>> {
        const SHAPE: &str = "must be a sensor type name or a list of them, e.g. \"SDS011\" or [\"SDS011\", \"SPS30\"]";
        let items: Vec<&Value> = match self.field("sensorType") {
            None => return Some(Vec::new()),
            Some(Value::Array(items)) => items.iter().collect(),
            Some(one @ Value::String(_)) => vec![one],
            Some(other) => {
                self.err("sensorType", format!("{SHAPE}, got {}", kind(other)));
                return None;
            }
        };
        if items.len() > MAX_SENSOR_TYPES {
            self.err(
                "sensorType",
                format!(
                    "lists {} types; at most {MAX_SENSOR_TYPES} are allowed",
                    items.len()
                ),
            );
            return None;
        }
        let mut types = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::String(s) if s.trim().is_empty() => {}
                Value::String(s) if crate::feed::valid_sensor_type(s.trim()) => {
                    types.push(s.trim().to_ascii_uppercase())
                }
                Value::String(s) => {
                    self.err(
                        "sensorType",
                        format!("{s:?} is not a sensor type name (letters, digits, _ . - and spaces, at most 32)"),
                    );
                    return None;
                }
                other => {
                    self.err("sensorType", format!("{SHAPE}, got {}", kind(other)));
                    return None;
                }
            }
        }
        types.sort();
        types.dedup();
        Some(types)
    }

    fn format(&mut self) -> Option<Format> {
        let names = Format::ALL.map(Format::name).join(", ");
        self.one_of("format", Format::default(), Format::parse, &names)
    }

    fn resolution(&mut self) -> Option<Resolution> {
        let names = Resolution::ALL.map(Resolution::name).join(", ");
        self.one_of(
            "resolution",
            Resolution::default(),
            Resolution::parse,
            &names,
        )
    }

    /// `quality` (absent or null: none, the answer of before the flags):
    /// `Some(None)` without one, `None` after an error. Every series keeps
    /// flags ([`crate::quality::SERIES`]).
    fn quality(&mut self) -> Option<Option<Quality>> {
        let value = match self.map.get("quality") {
            None | Some(Value::Null) => return Some(None),
            Some(v) => v,
        };
        match Quality::from_value(value) {
            Ok(q) => Some(Some(q)),
            Err(message) => {
                self.err("quality", message);
                None
            }
        }
    }

    /// `correction` (absent, null or `"none"`: none): `Some(None)` without
    /// one, `None` after an error. Only the daily series' indices are
    /// recomputed from corrected values (the live tier's are its hours').
    fn correction(&mut self, resolution: Resolution) -> Option<Option<Correction>> {
        let value = match self.map.get("correction") {
            None | Some(Value::Null) => return Some(None),
            Some(v) => v,
        };
        match Correction::from_value(value) {
            Ok(Some(_)) if resolution != Resolution::Day => {
                self.err(
                    "correction",
                    format!(
                        "corrected indices are computed for the daily series only so far \
                         (the live tier's indices are its hours', which would need corrected \
                         hourly means); leave correction out or ask resolution \"{}\"",
                        Resolution::Day.name()
                    ),
                );
                None
            }
            Ok(c) => Some(c),
            Err(message) => {
                self.err("correction", message);
                None
            }
        }
    }

    /// `aggregate` (absent or null: none): `Some(None)` without one,
    /// `None` after an error. An hourly period needs a series finer than
    /// a day.
    fn aggregate(&mut self, resolution: Resolution) -> Option<Option<Aggregate>> {
        let value = match self.map.get("aggregate") {
            None | Some(Value::Null) => return Some(None),
            Some(v) => v,
        };
        match Aggregate::from_value(value) {
            Ok(a) if a.period == Period::Hour && resolution == Resolution::Day => {
                self.err(
                    "aggregate",
                    "period: \"hour\" needs resolution \"hour\" or \"5min\": the daily series \
                     has one reading a sensor a day"
                        .into(),
                );
                None
            }
            Ok(a) => Some(Some(a)),
            Err(errors) => {
                self.errors.extend(errors);
                None
            }
        }
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

/// A span as people read it: `7 days`, `2 days`, `1h 0m 0s`.
pub fn human_span(d: Duration) -> String {
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
        assert_eq!(q.band, Some(0), "Low");
        assert_eq!(q.aqi_bounds(), Some((1, 3)));
    }

    #[test]
    fn medium_is_moderate() {
        let q =
            parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-02","range":"Medium"}"#).unwrap();
        assert_eq!(q.band, Some(1), "Moderate");
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
            ..QueryLimits::default()
        };
        assert!(Query::from_json(
            br#"{"startDate":"2024-01-01 00:00:00","endDate":"2024-01-01 01:00:01"}"#,
            &tight
        )
        .is_err());
    }

    #[test]
    fn each_series_has_its_span() {
        // hour: 7 days; 5min: 48 hours; day: --max-span.
        let q = parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-07","resolution":"Hour"}"#)
            .expect("7 days of hours");
        assert_eq!(q.resolution, Resolution::Hour);
        let e = parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-08","resolution":"hour"}"#)
            .unwrap_err();
        assert!(e.names("endDate"), "{e}");
        assert!(
            e.errors[0]
                .message
                .contains("at most 7 days for resolution \"hour\""),
            "{e}"
        );
        let e = parse(
            r#"{"startDate":"2024-01-01","endDate":"2024-01-03 00:00:01","resolution":"5min"}"#,
        )
        .unwrap_err();
        assert!(e.errors[0].message.contains("at most 2 days"), "{e}");
        // A gateway's shorter --max-span caps the finer series too.
        let tight = QueryLimits {
            max_span: Duration::from_secs(3600),
            ..QueryLimits::default()
        };
        assert!(Query::from_json(
            br#"{"startDate":"2024-01-01 00:00:00","endDate":"2024-01-01 01:00:01","resolution":"hour"}"#,
            &tight
        )
        .is_err());
        // Unknown names and other types are named; blank or null is the default.
        for bad in [r#""minute""#, "5", "[]", r#""day hour""#] {
            let e = parse(&format!(
                r#"{{"startDate":"2024-01-01","endDate":"2024-01-01","resolution":{bad}}}"#
            ))
            .unwrap_err();
            assert!(e.names("resolution"), "{bad}: {e}");
        }
        for default in [r#""""#, "null", r#"" ""#] {
            let q = parse(&format!(
                r#"{{"startDate":"2024-01-01","endDate":"2024-01-01","resolution":{default}}}"#
            ))
            .expect("the default series");
            assert_eq!(q.resolution, Resolution::Day);
            assert!(
                !q.to_json().contains("resolution"),
                "the default is left out"
            );
        }
        let q = parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-01","resolution":"5-MIN"}"#)
            .expect("5min");
        assert_eq!(parse(&q.to_json()).expect("round trip"), q);
        assert!(q.to_json().contains(r#""resolution":"5min""#));
    }

    #[test]
    fn min_above_max() {
        let e =
            parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-01","minAqi":5,"maxAqi":"4"}"#)
                .unwrap_err();
        assert!(e.names("minAqi"), "{e}");
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

    #[test]
    fn each_index_has_its_own_scale_and_bands() {
        let q = parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-01","index":"us-epa","minAqi":101,"range":"Unhealthy"}"#).unwrap();
        assert_eq!((q.index, q.min_aqi, q.max_aqi), (Index::UsEpa, 101, 500));
        assert_eq!(q.aqi_bounds(), Some((151, 200)));
        let q = parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-01","index":"EAQI","range":"very poor"}"#).unwrap();
        assert_eq!((q.min_aqi, q.max_aqi, q.aqi_bounds()), (1, 6, Some((5, 5))));
        // A value or band the chosen index does not have is named, with
        // the valid ones.
        let e = parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-01","index":"eaqi","minAqi":0,"maxAqi":7,"range":"Low"}"#).unwrap_err();
        assert!(
            e.names("minAqi") && e.names("maxAqi") && e.names("range"),
            "{e}"
        );
        assert!(
            e.to_string().contains("from 1 to 6 on the eaqi scale"),
            "{e}"
        );
        assert!(e.to_string().contains("\"Good\", \"Fair\""), "{e}");
        let e = parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-01","range":"Good"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("unknown daqi band \"Good\""), "{e}");
        let e = parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-01","index":"aqi"}"#)
            .unwrap_err();
        assert!(
            e.names("index") && e.to_string().contains("daqi, us-epa, eaqi"),
            "{e}"
        );
    }

    #[test]
    fn place_shapes() {
        let base = r#""startDate":"2024-01-01","endDate":"2024-01-01""#;
        let q = parse(&format!(r#"{{{base},"bbox":[9.0,48.5,9.5,49.0]}}"#)).unwrap();
        assert!(matches!(q.place, Some(Place::Bbox(b)) if b.min_lon == 9.0 && b.max_lat == 49.0));
        let q = parse(&format!(
            r#"{{{base},"near":{{"lat":48.78,"lon":9.18,"radiusKm":10}}}}"#
        ))
        .unwrap();
        assert!(matches!(q.place, Some(Place::Near(n)) if n.radius_km == 10.0));
        for (bad, field, says) in [
            (
                r#""bbox":[9.5,48.5,9.0,49.0]"#,
                "bbox",
                "minLon (9.5) must be less than maxLon (9)",
            ),
            (
                r#""bbox":[9.0,49.0,9.5,49.0]"#,
                "bbox",
                "minLat (49) must be less than maxLat (49)",
            ),
            (r#""bbox":[9.0,48.5,9.5]"#, "bbox", "four numbers"),
            (
                r#""bbox":[-200,48.5,9.5,49]"#,
                "bbox",
                "longitudes must be from -180 to 180",
            ),
            (
                r#""near":{"lat":48.78,"lon":9.18,"radiusKm":100.5}"#,
                "near",
                "at most 100 km",
            ),
            (
                r#""near":{"lat":48.78,"lon":9.18,"radiusKm":0}"#,
                "near",
                "more than 0",
            ),
            (
                r#""near":{"lat":98,"lon":9.18}"#,
                "near",
                "radiusKm is required",
            ),
            (r#""near":[48.78,9.18,10]"#, "near", "must be {"),
            (
                r#""bbox":[9.0,48.5,9.5,49.0],"near":{"lat":48.78,"lon":9.18,"radiusKm":10}"#,
                "near",
                "exclude each other",
            ),
        ] {
            let e = parse(&format!("{{{base},{bad}}}")).unwrap_err();
            assert!(e.names(field), "{bad}: {e}");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn sensor_types_and_formats() {
        let base = r#""startDate":"2024-01-01","endDate":"2024-01-01""#;
        let q = parse(&format!(
            r#"{{{base},"sensorType":["sps30","SDS011","SDS011"],"format":"NDJSON"}}"#
        ))
        .unwrap();
        assert_eq!(q.sensor_types, ["SDS011", "SPS30"]);
        assert_eq!(q.format, Format::Ndjson);
        assert!(q.wants_type("Sps30") && !q.wants_type("PMS5003"));
        let q = parse(&format!(r#"{{{base},"sensorType":"sds011"}}"#)).unwrap();
        assert_eq!(q.sensor_types, ["SDS011"]);
        for (bad, field) in [
            (r#""sensorType":5"#, "sensorType"),
            (r#""sensorType":["SDS011",7]"#, "sensorType"),
            (r#""sensorType":"a,b""#, "sensorType"),
            (r#""format":"xlsx""#, "format"),
        ] {
            let e = parse(&format!("{{{base},{bad}}}")).unwrap_err();
            assert!(e.names(field), "{bad}: {e}");
        }
    }

    #[test]
    fn every_field_round_trips_through_the_canonical_form() {
        let q = parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-02","country":"de","index":"us-epa","minAqi":"51","range":"Moderate","near":{"lat":48.78,"lon":9.18,"radiusKm":12.5},"sensorType":["SPS30","sds011"],"format":"geojson"}"#).unwrap();
        assert_eq!(
            Query::from_json(q.to_json().as_bytes(), &QueryLimits::default()).unwrap(),
            q
        );
        // The first system's fields alone keep their old canonical form:
        // the fields at their defaults are left out. (Compared as JSON: the
        // key order depends on serde_json's `preserve_order`, which another
        // crate of the workspace may turn on.)
        let old = parse(r#"{"startDate":"2024-01-01","endDate":"2024-01-01","minAqi":2}"#).unwrap();
        let got: Value = serde_json::from_str(&old.to_json()).unwrap();
        assert_eq!(
            got,
            serde_json::json!({"endDate":"2024-01-01 23:59:59","maxAqi":10,"minAqi":2,"startDate":"2024-01-01 00:00:00"})
        );
    }

    #[test]
    fn quality_is_taken_on_every_series() {
        let with = |resolution: &str| {
            parse(&format!(
                r#"{{"startDate":"2024-01-01","endDate":"2024-01-01 12:00:00","resolution":"{resolution}","quality":"no-flags"}}"#
            ))
        };
        for series in crate::quality::SERIES {
            assert!(with(series.name()).is_ok(), "{series:?}");
        }
        // A correction's indices are the daily series' alone.
        let corrected = parse(
            r#"{"startDate":"2024-01-01","endDate":"2024-01-01 12:00:00","resolution":"5min","correction":{"method":"kappa-kohler","kappa":0.3}}"#,
        );
        assert!(corrected.is_err_and(|e| e.names("correction")));
    }

    #[test]
    fn latest_reads_a_query_string() {
        let l = LatestQuery::from_pairs([
            ("country", "de"),
            ("near", "48.78,9.18,10"),
            ("sensorType", "SDS011,sps30"),
            ("sensorType", "PMS5003"),
            ("index", "eaqi"),
            ("format", "geojson"),
        ])
        .unwrap();
        assert_eq!(l.country.as_deref(), Some("DE"));
        assert!(matches!(l.place, Some(Place::Near(n)) if n.lat == 48.78 && n.radius_km == 10.0));
        assert_eq!(l.sensor_types, ["PMS5003", "SDS011", "SPS30"]);
        assert_eq!((l.index, l.format), (Index::Eaqi, Format::Geojson));
        let l = LatestQuery::from_pairs([("bbox", "5,47,15,55")]).unwrap();
        assert!(matches!(l.place, Some(Place::Bbox(b)) if b.max_lat == 55.0));
        let bare = LatestQuery::from_pairs([]).unwrap();
        assert!(bare.at.is_some(), "the request's time, for ageSeconds");
        assert_eq!(LatestQuery { at: None, ..bare }, LatestQuery::default());
        for (pairs, field) in [
            (vec![("bbox", "5,47,15")], "bbox"),
            (vec![("bbox", "15,47,5,55")], "bbox"),
            (vec![("near", "48.78,9.18")], "near"),
            (vec![("near", "48.78,9.18,500")], "near"),
            (
                vec![("bbox", "5,47,15,55"), ("near", "48.78,9.18,10")],
                "near",
            ),
            (vec![("index", "x")], "index"),
            (vec![("startDate", "2024-01-01")], "startDate"),
            (vec![("country", "DE"), ("country", "FR")], "country"),
        ] {
            let e = LatestQuery::from_pairs(pairs.clone()).unwrap_err();
            assert!(e.names(field), "{pairs:?}: {e}");
        }
    }
}

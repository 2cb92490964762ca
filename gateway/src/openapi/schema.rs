//! The JSON bodies, as the handlers write them. Never built: they only
//! describe (the handlers build their bodies with `serde_json::json!` or
//! their own types).

#![allow(dead_code)]

use airq_core::aggregate::{GroupBy, Period, COLUMNS};
use airq_core::aqi::Index;
use airq_core::correction::Correction;
use airq_core::export::Format;
use airq_core::name;
use airq_core::quality::{Flag, Quality};
use airq_core::query::{human_span, MAX_SENSOR_TYPES};
use airq_core::Resolution;
use serde::Deserialize;
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema,
    SchemaType, Type,
};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// A query for readings. Every bad field is reported at once (`400`),
/// each naming its field; any other field is an error.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Query, examples(json!({
    "startDate": "2018-06-03 20:00:00",
    "endDate": "2018-06-03 21:00:00",
    "country": "DE",
    "minAqi": 0,
    "maxAqi": 10,
    "range": "Low"
}), json!({
    "startDate": "2018-06-03",
    "endDate": "2018-06-03",
    "index": "us-epa",
    "range": "Moderate",
    "near": {"lat": 48.78, "lon": 9.18, "radiusKm": 10},
    "sensorType": ["SDS011", "SPS30"],
    "format": "geojson"
})))]
pub struct QueryBody {
    /// The first time wanted, inclusive, UTC: `YYYY-MM-DD HH:MM:SS`,
    /// `YYYY-MM-DDTHH:MM:SS`, `YYYY-MM-DD` (from 00:00:00) or RFC 3339
    /// with any offset (converted to UTC).
    #[schema(examples("2018-06-03 20:00:00", "2018-06-03", "2018-06-03T20:00:00Z"))]
    start_date: String,
    /// The last time wanted, inclusive, in the same forms (a bare date
    /// is up to 23:59:59); not before `startDate`, and at most the span
    /// of the query's `resolution` after it (for `day`, `--max-span`: 31
    /// days by default; see `resolution`).
    #[schema(examples("2018-06-03 21:00:00", "2018-06-03", "2018-06-03T23:00:00+02:00"))]
    end_date: String,
    #[schema(schema_with = country, required = false)]
    country: Option<String>,
    #[schema(schema_with = index, required = false)]
    index: Option<String>,
    #[schema(schema_with = min_aqi, required = false)]
    min_aqi: Option<u16>,
    #[schema(schema_with = max_aqi, required = false)]
    max_aqi: Option<u16>,
    #[schema(schema_with = band, required = false)]
    range: Option<String>,
    #[schema(schema_with = bbox, required = false)]
    bbox: Option<Vec<f64>>,
    #[schema(schema_with = near, required = false)]
    near: Option<serde_json::Value>,
    #[schema(schema_with = sensor_type, required = false)]
    sensor_type: Option<String>,
    #[schema(schema_with = format, required = false)]
    format: Option<String>,
    #[schema(schema_with = resolution, required = false)]
    resolution: Option<String>,
    #[schema(schema_with = aggregate, required = false)]
    aggregate: Option<serde_json::Value>,
    #[schema(schema_with = quality, required = false)]
    quality: Option<serde_json::Value>,
    #[schema(schema_with = correction, required = false)]
    correction: Option<serde_json::Value>,
}

/// The `correction` of a query, from `airq_core::correction`.
fn correction() -> impl Into<RefOr<Schema>> {
    let method = ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .enum_values(Some([Correction::METHOD]));
    let kappa = ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Number))
        .exclusive_minimum(Some(0.0))
        .maximum(Some(f64::from(Correction::MAX_KAPPA_MILLI) / 1000.0))
        // At most 3 decimals: said, not stated as `multipleOf`, which
        // validators test in floating point (0.102 / 0.001 is not whole).
        .description(Some(
            "The aerosol's hygroscopicity κ, with at most 3 decimals.",
        ));
    let rh_max = ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Integer))
        .minimum(Some(f64::from(*Correction::RH_MAX_RANGE.start())))
        .maximum(Some(f64::from(*Correction::RH_MAX_RANGE.end())))
        .description(Some(format!(
            "The relative humidity (%) the formula is capped at; {} by default.",
            Correction::DEFAULT_RH_MAX
        )));
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .enum_values(Some([Correction::NONE])),
        )
        .item(
            ObjectBuilder::new()
                .property("method", method)
                .property("kappa", kappa)
                .property("rhMax", rh_max)
                .required("method")
                .required("kappa")
                .additional_properties(Some(AdditionalProperties::FreeForm(false))),
        )
        .item(ObjectBuilder::new().schema_type(SchemaType::new(Type::Null)))
        .description(Some(format!(
            "A humidity correction of the values ({}; source: {}). The answer keeps P1 and \
             P2 as measured and adds the corrected values (CSV: `humidity`, `P1_corrected`, \
             `P2_corrected` appended after any `flags` column; NDJSON/GeoJSON: `humidity`, \
             `temperature`, `P1_corrected`, `P2_corrected` and `correction`); `AQI`, `Range` \
             and the index filters are those of the corrected values; a reading without its \
             station's humidity has neither. The `X-Airq-Correction` header names the method \
             and its parameters. With `aggregate`, the statistics and band counts are of the \
             corrected values (a reading without a humidity counts in `readings` only). The \
             daily series only.",
            Correction::SUMMARY,
            Correction::SOURCE
        )))
        .examples([serde_json::json!({"method": Correction::METHOD, "kappa": 0.3})])
}

/// The `quality` filter of a query: the flags and their rules, from
/// `airq_core::quality`.
fn quality() -> impl Into<RefOr<Schema>> {
    let rules: Vec<String> = Flag::ALL
        .iter()
        .map(|f| format!("`{}`: {}", f.name(), f.rule()))
        .collect();
    let flag = ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .enum_values(Some(Flag::ALL.map(Flag::name)));
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .enum_values(Some([Quality::ALL, Quality::NO_FLAGS])),
        )
        .item(ArrayBuilder::new().items(flag))
        .item(ObjectBuilder::new().schema_type(SchemaType::new(Type::Null)))
        .description(Some(format!(
            "Which flagged readings to leave out: `{}` none, `{}` every flagged one, or a \
             list of flags. With the field (any value) the answer carries each reading's \
             flags (a `flags` column appended to the CSV, names separated by spaces; \
             `flags`, `humidity` and `temperature` in NDJSON/GeoJSON; an aggregate counts \
             what it left out, `removed` and `removed_<flag>` per flag named, after the \
             band columns); without it the answer is as before the flags. Every series \
             keeps flags: an hourly mean takes its 5-minute readings'. The flags: {}.",
            Quality::ALL,
            Quality::NO_FLAGS,
            rules.join("; ")
        )))
        .examples([
            serde_json::json!("no-flags"),
            serde_json::json!(["humid", "outlier"]),
        ])
}

/// The `aggregate` of a query: its periods, groups and columns, from
/// `airq_core::aggregate`.
fn aggregate() -> impl Into<RefOr<Schema>> {
    let names = |list: Vec<&'static str>| {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .pattern(Some(name::name_pattern(list)))
    };
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .property(
            "period",
            names(Period::ALL.iter().map(|p| p.name()).collect()).description(Some(
                "UTC calendar periods; `hour` needs `resolution` `hour` or `5min`",
            )),
        )
        .property(
            "by",
            names(GroupBy::ALL.iter().map(|b| b.name()).collect()).description(Some(
                "`sensor`, the 0.25° grid `cell`, `country`, or `all` the readings together",
            )),
        )
        .required("period")
        .required("by")
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ))
        .description(Some(format!(
            "Statistics of the readings the other fields select, instead of the readings: one \
             row per period and group, in period order. Columns: {}, then \
             `readings_<band>` for each band of `index`. P1 is PM10 and P2 PM2.5 (µg/m³, two \
             decimals); p98 by the rank of 40 CFR Part 50 Appendix N; `coverage` is the \
             percent of the input series' slots with a reading (a group's mean over its \
             sensors); the WHO 2021 guideline levels are 15 (PM2.5) and 45 (PM10) µg/m³ for \
             24 hours, counted on daily input, and 5 and 15 for a year's mean. Spans up to \
             the gateway's `--max-aggregate-span` (366 days by default).",
            COLUMNS
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .examples([serde_json::json!({"period": "month", "by": "country"})])
}

/// The `resolution` of a query: the names, spans and meanings of
/// `airq_core`'s registry.
fn resolution() -> impl Into<RefOr<Schema>> {
    let listed: Vec<String> = Resolution::ALL
        .iter()
        .map(|r| {
            format!(
                "`{}`: {} (a query spans at most {})",
                r.name(),
                r.description(),
                human_span(r.max_span())
            )
        })
        .collect();
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(name::pattern(Resolution::ALL.map(Resolution::name))))
        .description(Some(format!(
            "The series asked for: {}. `day` is the default (blank or null means it too); \
             for `day` the span is the gateway's `--max-span`. On `hour` and `5min` an index \
             whose averaging window has too little data is empty (`AQI` and `Range` null), \
             and NDJSON/GeoJSON add the concentrations the indices were computed from. \
             Case, blanks, `-` and `_` do not matter (the pattern).",
            listed.join("; ")
        )))
        .default(Some(serde_json::json!(Resolution::default().name())))
        .examples(["hour"])
}

fn country() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(r"^\s*([A-Za-z]{2,3})?\s*$"))
        .description(Some(
            "A 2- or 3-letter country code as the feed sends it (`DE`, `UK`, …), \
             case-insensitive; empty or null for every country.",
        ))
        .examples(["DE"])
}

/// The index names, as queries write them.
fn index_names() -> Vec<&'static str> {
    Index::ALL.iter().map(|i| i.name()).collect()
}

fn index() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(name::pattern(index_names())))
        .description(Some(format!(
            "The air-quality index that `minAqi`, `maxAqi` and `range` are on, and that the \
             answer's `AQI` and `Range` show: {}. Case, blanks, `-` and `_` do not matter \
             (the pattern); blank or null for the default, `{}`.",
            Index::ALL
                .iter()
                .map(|i| format!("`{}` ({})", i.name(), i.summary()))
                .collect::<Vec<_>>()
                .join(", "),
            Index::default().name()
        )))
        .default(Some(serde_json::json!(Index::default().name())))
        .examples([Index::ALL[Index::COUNT - 1].name()])
}

/// The scales, for the descriptions: `daqi` 0–10, …, then which take a
/// floor below their lowest value (0, meaning no lower bound).
fn scales() -> String {
    let scales = Index::ALL
        .iter()
        .map(|i| format!("`{}` {}–{}", i.name(), i.floor(), i.max()))
        .collect::<Vec<_>>()
        .join(", ");
    let floors = Index::ALL
        .iter()
        .filter(|i| i.floor() < i.min())
        .map(|i| format!("`{}`'s {} means no lower bound", i.name(), i.floor()))
        .collect::<Vec<_>>();
    if floors.is_empty() {
        scales
    } else {
        format!("{scales}; {}", floors.join(", "))
    }
}

fn aqi(what: &str, default: &str) -> RefOr<Schema> {
    let top = Index::ALL.iter().map(|i| i.max()).max().unwrap_or(500);
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(top)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^\s*[0-9]{1,3}\s*$")),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(format!(
            "The {what} value wanted of the query's `index`, inclusive: a whole number on \
             that index's scale ({}), as a JSON number or a \
             numeric string (default {default}; null is the default). A value outside the \
             scale is an error naming the scale. `minAqi` must not be greater than \
             `maxAqi`.",
            scales()
        )))
        .examples([0])
        .into()
}

fn min_aqi() -> RefOr<Schema> {
    aqi("lowest", "the lowest the scale takes, above")
}

fn max_aqi() -> RefOr<Schema> {
    aqi("highest", "the scale's highest")
}

/// The bands of each index, as an `anyOf` of one enum per index
/// (`anyOf`, not `oneOf`: `Moderate` is a band of all three).
fn band() -> RefOr<Schema> {
    let mut any = AnyOfBuilder::new();
    for i in Index::ALL {
        let mut names: Vec<&str> = i.bands().iter().map(|b| b.label).collect();
        names.extend(i.band_aliases().iter().map(|(alias, _)| *alias));
        let names = name::name_pattern(names);
        let list = i
            .bands()
            .iter()
            .map(|b| {
                if b.lo == b.hi {
                    format!("`{}` ({})", b.label, b.lo)
                } else {
                    format!("`{}` ({}–{})", b.label, b.lo, b.hi)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let extra: String = i
            .band_aliases()
            .iter()
            .map(|(alias, label)| format!("; `{alias}` is `{label}`"))
            .collect();
        any = any.item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .title(Some(format!("{} bands", i.name())))
                .pattern(Some(names))
                .description(Some(format!("With `index` `{}`: {list}{extra}.", i.name()))),
        );
    }
    any.item(
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .title(Some("any band"))
            .pattern(Some(name::blank_pattern())),
    )
    .description(Some(
        "A band of the query's `index` (a band of another index is an error naming the \
         valid ones); combined with `minAqi`/`maxAqi`. \
         Case, blanks, `-` and `_` do not matter; blank or null for every band.",
    ))
    .examples(["Low"])
    .into()
}

fn bbox() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::Number))
                .min_items(Some(4))
                .max_items(Some(4)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "A bounding box, `[minLon, minLat, maxLon, maxLat]` (GeoJSON order, degrees: \
             longitudes from -180 to 180, latitudes from -90 to 90, each minimum less than \
             its maximum, bounds inclusive, no wrap at the antimeridian). Not with `near`; \
             combines with `country`.",
        ))
        .examples([serde_json::json!([9.0, 48.6, 9.4, 48.9])])
        .into()
}

fn near() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Near")))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "A circle: readings at most `radiusKm` away (great-circle distance). Not with \
             `bbox`; combines with `country`.",
        ))
        .into()
}

fn sensor_type() -> RefOr<Schema> {
    let name = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^\s*[A-Za-z0-9_. -]{0,32}\s*$"))
    };
    OneOfBuilder::new()
        .item(name())
        .item(
            ArrayBuilder::new()
                .items(name())
                .max_items(Some(MAX_SENSOR_TYPES)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(format!(
            "One sensor type (`\"SDS011\"`) or a list of them (`[\"SDS011\", \"SPS30\"]`, at \
             most {MAX_SENSOR_TYPES}), case-insensitive; empty or null for every type."
        )))
        .examples(["SDS011"])
        .into()
}

fn format() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(name::pattern(Format::ALL.map(Format::name))))
        .description(Some(
            "The answer's format: `csv` (the default; `text/csv`), `ndjson` \
             (`application/x-ndjson`, one JSON object per reading and line) or `geojson` \
             (`application/geo+json`, a `FeatureCollection` of `Point`s `[lon, lat]` with \
             the reading's fields as `properties`). A queued query's result keeps it. Case, \
             blanks, `-` and `_` do not matter (the pattern); blank or null for the default.",
        ))
        .default(Some(serde_json::json!("csv")))
        .examples(["ndjson"])
}

/// A circle around a point (`near` of a query).
#[derive(ToSchema)]
#[schema(as = Near, examples(json!({"lat": 48.78, "lon": 9.18, "radiusKm": 10})),
    rename_all = "camelCase")]
pub struct Near {
    /// The centre's latitude, degrees, from -90 to 90.
    #[schema(minimum = -90, maximum = 90)]
    lat: f64,
    /// The centre's longitude, degrees, from -180 to 180.
    #[schema(minimum = -180, maximum = 180)]
    lon: f64,
    /// The radius, km: more than 0, at most 100.
    #[schema(exclusive_minimum = 0, maximum = 100)]
    radius_km: f64,
}

/// An index name (`X-Airq-Index`, the `index` of `GET /api/latest`):
/// the names of `airq_core`'s registry, not a copy of them.
pub struct IndexName;

impl utoipa::PartialSchema for IndexName {
    fn schema() -> RefOr<Schema> {
        names_schema(
            "An index name (`X-Airq-Index`, the `index` of `GET /api/latest`)",
            Index::ALL.map(|i| (i.name(), format!("`{}` ({})", i.name(), i.title()))),
            Index::default().name(),
        )
    }
}

impl ToSchema for IndexName {
    fn name() -> std::borrow::Cow<'static, str> {
        "Index".into()
    }
}

/// A format name (the `format` of `GET /api/latest`): from
/// `airq_core::export::Format`, not a copy.
pub struct FormatName;

impl utoipa::PartialSchema for FormatName {
    fn schema() -> RefOr<Schema> {
        names_schema(
            "A format name (the `format` of `GET /api/latest`)",
            Format::ALL.map(|f| (f.name(), format!("`{}` (`{}`)", f.name(), f.media_type()))),
            Format::default().name(),
        )
    }
}

/// A string schema of a registry's `names` (each with how it is listed in
/// the description), the default named.
fn names_schema<const N: usize>(
    what: &str,
    names: [(&'static str, String); N],
    default: &str,
) -> RefOr<Schema> {
    let listed: Vec<&str> = names.iter().map(|(_, l)| l.as_str()).collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(name::pattern(names.iter().map(|(n, _)| *n))))
        .description(Some(format!(
            "{what}: {}; `{default}` is the default (blank means it too). Case, blanks, `-` \
             and `_` do not matter (the pattern).",
            listed.join(", ")
        )))
        .into()
}

impl ToSchema for FormatName {
    fn name() -> std::borrow::Cow<'static, str> {
        "Format".into()
    }
}

/// One reading as NDJSON writes it (one such object per line) and as
/// a GeoJSON feature's `properties`: the CSV's columns, under the same
/// names. Numbers are written as the sensor sent them (`48.8000` stays
/// `48.8000`), text as strings; a CSV's empty cell is `null`.
#[derive(Deserialize, ToSchema)]
#[schema(as = Reading, examples(json!({
    "id": 1014552, "timestamp": "2018-06-03 20:47:58", "sensor_id": 92,
    "sensor_type": "SDS011", "loc_id": 46, "loc_country": "DE",
    "loc_lat": 48.8000, "loc_long": 9.0020, "loc_alt": null,
    "P1": 8.13, "P2": 4.30, "AQI": 1, "Range": "Low"
})))]
pub struct ReadingLine {
    /// The feed's entry id (null when it had none).
    #[schema(required = true)]
    id: Option<u64>,
    /// UTC, `YYYY-MM-DD HH:MM:SS`.
    timestamp: String,
    /// The Sensor.Community sensor id.
    sensor_id: u64,
    /// E.g. `SDS011`.
    sensor_type: String,
    /// The location id (null when the feed had none).
    #[schema(required = true)]
    loc_id: Option<u64>,
    /// The country code as sent (`UK`, not `GB`).
    loc_country: String,
    /// Latitude as sent.
    #[schema(required = true)]
    loc_lat: Option<f64>,
    /// Longitude as sent.
    #[schema(required = true)]
    loc_long: Option<f64>,
    /// Altitude as sent (null when not sent).
    #[schema(required = true)]
    loc_alt: Option<f64>,
    /// PM10, µg/m³, as sent (null when not measured).
    #[serde(rename = "P1")]
    #[schema(required = true)]
    p1: Option<f64>,
    /// PM2.5, µg/m³, as sent (null when not measured).
    #[serde(rename = "P2")]
    #[schema(required = true)]
    p2: Option<f64>,
    /// The value in the answer's index (`X-Airq-Index`); null on an hour
    /// (or a 5-minute reading) whose index's averaging window has too
    /// little data.
    #[serde(rename = "AQI")]
    #[schema(required = true)]
    aqi: Option<u16>,
    /// Its band in that index (null where `AQI` is).
    #[serde(rename = "Range")]
    #[schema(required = true)]
    range: Option<String>,
    /// On a daily mean of the archive backfill: how many measurements it
    /// averages; on an hour: how many 5-minute readings.
    samples: Option<u32>,
    /// Hourly and 5-minute series: the PM2.5 NowCast (µg/m³, truncated to
    /// 0.1) the US EPA AQI was computed from; null when not defined.
    #[serde(rename = "nowcastPm25")]
    nowcast_pm25: Option<f64>,
    /// Hourly and 5-minute series: the PM10 NowCast (µg/m³, truncated to 1).
    #[serde(rename = "nowcastPm10")]
    nowcast_pm10: Option<f64>,
    /// Hourly and 5-minute series: the PM2.5 24-hour running mean the DAQI
    /// and EAQI were computed from (18 of 24 valid hours, else null).
    #[serde(rename = "meanPm25_24h")]
    mean_pm25_24h: Option<f64>,
    /// Hourly and 5-minute series: the PM10 24-hour running mean.
    #[serde(rename = "meanPm10_24h")]
    mean_pm10_24h: Option<f64>,
    /// `GET /api/latest` only: the series the reading is of, `5min` (the
    /// live tier's newest reading, with its hour's indices) or `day` (the
    /// sensor's newest daily reading, where the live tier has none).
    resolution: Option<String>,
    /// `GET /api/latest` only: seconds from the reading's timestamp to the
    /// request.
    #[serde(rename = "ageSeconds")]
    age_seconds: Option<i64>,
}

/// A GeoJSON answer (RFC 7946): every reading a `Point` feature.
#[derive(ToSchema)]
#[schema(as = FeatureCollection)]
pub struct FeatureCollection {
    /// Always `FeatureCollection`.
    #[schema(inline)]
    r#type: FeatureCollectionType,
    /// The readings, in the store's order (time, then sensor id).
    features: Vec<Feature>,
}

#[derive(ToSchema)]
pub enum FeatureCollectionType {
    FeatureCollection,
}

/// One reading as a GeoJSON feature.
#[derive(ToSchema)]
pub struct Feature {
    /// Always `Feature`.
    #[schema(inline)]
    r#type: FeatureType,
    /// Where the sensor is.
    geometry: Point,
    /// The reading's fields.
    properties: ReadingLine,
}

#[derive(ToSchema)]
pub enum FeatureType {
    Feature,
}

/// A GeoJSON point.
#[derive(ToSchema)]
pub struct Point {
    /// Always `Point`.
    #[schema(inline)]
    r#type: PointType,
    /// `[longitude, latitude]`, degrees, as the sensor sent them.
    #[schema(min_items = 2, max_items = 2)]
    coordinates: Vec<f64>,
}

#[derive(ToSchema)]
pub enum PointType {
    Point,
}

/// A queued query (`202` to `POST /api/query`).
#[derive(ToSchema)]
#[schema(as = Queued, examples(json!({
    "id": "6f1c2d0e-8a4b-4c1e-9f3a-2b7d5e8c1a90",
    "status": "queued",
    "requestId": "4f1c-9e2a:checkout/7"
})), rename_all = "camelCase")]
pub struct Queued {
    /// The result's id (a UUID); poll `GET /api/results/{id}`
    /// (`Location` says the same).
    #[schema(format = "uuid")]
    id: String,
    /// Always `queued`.
    #[schema(inline)]
    status: QueuedState,
    /// The submit's request id (`X-Request-Id`), which the result
    /// keeps.
    request_id: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum QueuedState {
    Queued,
}

/// A result still on its way (`202` to `GET /api/results/{id}`).
#[derive(ToSchema)]
#[schema(as = Pending, examples(json!({
    "id": "6f1c2d0e-8a4b-4c1e-9f3a-2b7d5e8c1a90",
    "status": "running",
    "createdAt": "2024-01-01 12:00:00",
    "updatedAt": "2024-01-01 12:00:01",
    "expiresAt": "2024-01-02 12:00:00",
    "requestId": "4f1c-9e2a:checkout/7"
})), rename_all = "camelCase")]
pub struct Pending {
    /// The result's id.
    #[schema(format = "uuid")]
    id: String,
    /// `queued` (no worker has it yet) or `running`.
    #[schema(inline)]
    status: PendingState,
    /// When it was submitted, `YYYY-MM-DD HH:MM:SS` UTC.
    created_at: String,
    /// When its state last changed, `YYYY-MM-DD HH:MM:SS` UTC.
    updated_at: String,
    /// When it expires (`410` after), `YYYY-MM-DD HH:MM:SS` UTC.
    expires_at: String,
    /// The request id its query was submitted with (null for results
    /// older than request ids).
    #[schema(required = true)]
    request_id: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum PendingState {
    Queued,
    Running,
}

/// One Server-Sent Event of `GET /api/results/{id}/events`, as an
/// `EventSource` hands it over.
#[derive(ToSchema)]
#[schema(example = json!({
    "event": "queued",
    "id": "1",
    "data": "{\"id\":\"6f1c2d0e-8a4b-4c1e-9f3a-2b7d5e8c1a90\",\"status\":\"queued\",\"createdAt\":\"2024-01-01 12:00:00\",\"updatedAt\":\"2024-01-01 12:00:00\",\"expiresAt\":\"2024-01-02 12:00:00\",\"requestId\":null}"
}))]
pub struct ResultEvent {
    /// The result's state: `queued`, `running`, `done`, `failed`, or
    /// `expired` (it expired or was purged while followed).
    #[schema(inline)]
    event: ResultEventName,
    /// The state's rank, `1` (queued), `2` (running) or `3` (done or
    /// failed), to send back as `Last-Event-ID`; absent on `expired`.
    id: Option<String>,
    /// JSON: the fields of a `202` body (`id`, `status`, `createdAt`,
    /// `updatedAt`, `expiresAt`, `requestId`), with `rows` and `download`
    /// (the answer's path) when done and `error` when failed; `{"error"}`
    /// when expired.
    data: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ResultEventName {
    Queued,
    Running,
    Done,
    Failed,
    Expired,
}

/// `POST /api/alerts`'s body.
#[derive(ToSchema)]
#[schema(example = json!({
    "place": {"near": {"lat": 52.52, "lon": 13.40, "radiusKm": 10}},
    "index": "us-epa",
    "threshold": {"band": "Unhealthy"},
    "webhookUrl": "https://example.org/airq-hook",
    "cooldown": "1h"
}), rename_all = "camelCase")]
pub struct AlertBody {
    /// The place: `country`, `bbox` or `near` (one at least, as in a
    /// query), and optionally `sensorType`.
    #[schema(value_type = Object)]
    place: serde_json::Value,
    /// The index (`GET /api/meta` lists them; default the one marked
    /// `default`).
    index: Option<IndexName>,
    /// `{"band": name}` (that band or worse) or `{"value": n}` (at least n).
    #[schema(value_type = Object)]
    threshold: serde_json::Value,
    /// Where the webhooks go: `https`, public addresses only.
    webhook_url: String,
    /// The least time between two `alert.entered` (a duration such as
    /// `30m`, or seconds; at most 7 days; default 1 h).
    cooldown: Option<String>,
}

/// An alert as its owner sees it (`GET /api/alerts/{id}`).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AlertView {
    id: String,
    #[schema(value_type = Object)]
    place: serde_json::Value,
    index: IndexName,
    #[schema(value_type = Object)]
    threshold: serde_json::Value,
    webhook_url: String,
    /// Seconds, as `3600s`.
    cooldown: String,
    created_at: String,
    /// `inside` (the receiver was last told `alert.entered`), `enteredAt`,
    /// `valueAtLastChange`, `suppressedEntries`.
    #[schema(value_type = Object)]
    state: serde_json::Value,
    /// The place's value now and the sensors it is the median of; null
    /// before this gateway has the latest readings.
    #[schema(value_type = Object)]
    now: Option<serde_json::Value>,
    /// The last 20 deliveries, newest first: `id` (the `webhook-id`),
    /// `event`, `createdAt`, `state` (`pending`, `delivered`, `dead`),
    /// `attempts`, `nextAttemptAt`, `lastStatus`, `lastError`,
    /// `finishedAt`.
    #[schema(value_type = Vec<Object>)]
    deliveries: Vec<serde_json::Value>,
}

/// A new alert (`201`): as [`AlertView`] shows it, with its secret.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AlertCreated {
    id: String,
    #[schema(value_type = Object)]
    place: serde_json::Value,
    index: IndexName,
    #[schema(value_type = Object)]
    threshold: serde_json::Value,
    webhook_url: String,
    cooldown: String,
    created_at: String,
    #[schema(value_type = Object)]
    state: serde_json::Value,
    /// `whsec_` and base64: the key of the deliveries' HMAC-SHA256
    /// (`webhook-signature`), shown this once.
    secret: String,
}

/// One Server-Sent Event of `GET /api/stream/latest`, as an `EventSource`
/// hands it over.
#[derive(ToSchema)]
#[schema(example = json!({
    "event": "reading",
    "data": "{\"id\":7,\"timestamp\":\"2026-12-05 10:05:00\",\"sensor_id\":42,\"sensor_type\":\"SDS011\",\"loc_id\":9,\"loc_country\":\"DE\",\"loc_lat\":52.5,\"loc_long\":13.4,\"loc_alt\":30,\"P1\":20.00,\"P2\":10.00,\"AQI\":1,\"Range\":\"Low\"}"
}))]
pub struct StreamEvent {
    /// `reading` (a sensor's latest reading), `sync` (every change up to
    /// the data version in `id` is sent) or `dropped` (the stream fell too
    /// far behind and ends; reconnect with `Last-Event-ID`).
    #[schema(inline)]
    event: StreamEventName,
    /// On `sync` only: the data version, to send back as
    /// `Last-Event-ID`.
    id: Option<String>,
    /// JSON: a line of `GET /api/latest`'s NDJSON answer (without
    /// `ageSeconds` and `resolution`) for `reading`; `{"version",
    /// "readings"}` for `sync`; `{"error"}` for `dropped`.
    data: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum StreamEventName {
    Reading,
    Sync,
    Dropped,
}

/// A result's state and the query it answers (`GET
/// /api/results/{id}/status`).
#[derive(ToSchema)]
#[schema(as = ResultStatus, examples(json!({
    "id": "6f1c2d0e-8a4b-4c1e-9f3a-2b7d5e8c1a90",
    "status": "done",
    "createdAt": "2024-01-01 12:00:00",
    "updatedAt": "2024-01-01 12:00:03",
    "expiresAt": "2024-01-02 12:00:00",
    "requestId": "4f1c-9e2a:checkout/7",
    "query": {"startDate": "2018-06-03 00:00:00", "endDate": "2018-06-03 23:59:59",
        "country": "DE", "index": "us-epa", "minAqi": 0, "maxAqi": 500},
    "rows": 3315
})), rename_all = "camelCase")]
pub struct ResultStatus {
    /// The result's id.
    #[schema(format = "uuid")]
    id: String,
    /// `queued`, `running`, `done` or `failed`.
    #[schema(inline)]
    status: ResultState,
    /// When it was submitted, `YYYY-MM-DD HH:MM:SS` UTC.
    created_at: String,
    /// When its state last changed, `YYYY-MM-DD HH:MM:SS` UTC.
    updated_at: String,
    /// When it expires (`410` after), `YYYY-MM-DD HH:MM:SS` UTC.
    expires_at: String,
    /// The request id its query was submitted with (null for results
    /// older than request ids).
    #[schema(required = true)]
    request_id: Option<String>,
    /// The query it answers, as validated, in the form `POST
    /// /api/query` takes (fields at their defaults left out; null if
    /// the stored query is damaged).
    #[schema(required = true)]
    query: Option<QueryBody>,
    /// Rows of the answer, once done.
    rows: Option<u64>,
    /// Why it failed, when it did.
    error: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ResultState {
    Queued,
    Running,
    Done,
    Failed,
}

/// A query that failed (`422` to `GET /api/results/{id}`).
#[derive(ToSchema)]
#[schema(as = Failed, examples(json!({
    "id": "6f1c2d0e-8a4b-4c1e-9f3a-2b7d5e8c1a90",
    "status": "failed",
    "error": "the answer has 2500000 rows, more than the 2000000 allowed: narrow the query",
    "requestId": "4f1c-9e2a:checkout/7"
})), rename_all = "camelCase")]
pub struct Failed {
    /// The result's id.
    #[schema(format = "uuid")]
    id: String,
    /// Always `failed`.
    #[schema(inline)]
    status: FailedState,
    /// Why: the query failed, its answer has more than
    /// `--max-result-rows` rows, or it could not be stored.
    error: String,
    /// The request id its query was submitted with (null for results
    /// older than request ids).
    #[schema(required = true)]
    request_id: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum FailedState {
    Failed,
}

/// Every error answer's body.
#[derive(ToSchema)]
#[schema(as = Error, examples(json!({
    "error": "invalid query",
    "fields": [{"field": "endDate", "message": "is before startDate (2024-01-01 23:59:59 < 2024-01-02 00:00:00)"}]
})))]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    error: String,
    /// The fields at fault, when the problem is in the request (`400`,
    /// `413`, `415`, `416`); absent otherwise.
    #[schema(required = false)]
    fields: Vec<FieldError>,
}

/// One problem with one part of the request.
#[derive(ToSchema)]
pub struct FieldError {
    /// A query field (`startDate`, …), `body` for the document as a
    /// whole, `Content-Type`, `Range` or `query string`.
    field: String,
    /// What is wrong with it.
    message: String,
}

/// Ready (`200` to `GET /readyz`).
#[derive(ToSchema)]
#[schema(as = Ready, examples(json!({"status": "ready"})))]
pub struct Ready {
    /// Always `ready`.
    #[schema(inline)]
    status: ReadyState,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ReadyState {
    Ready,
}

/// Not ready (`503` to `GET /readyz`): which checks failed. The
/// backend's own error goes to the gateway's log, not here.
#[derive(ToSchema)]
#[schema(as = NotReady, examples(json!({
    "error": "not ready",
    "failed": [{"check": "resultsWritable", "error": "cannot be written"}]
})))]
pub struct NotReady {
    /// Always `not ready`.
    error: String,
    /// The failed checks.
    failed: Vec<FailedCheck>,
}

/// One failed readiness check.
#[derive(ToSchema)]
pub struct FailedCheck {
    /// `readings` (the reading store answers), `requestQueue` (the
    /// request queue answers) or `resultsWritable` (the result store
    /// takes writes).
    check: String,
    /// `does not answer`, `cannot be written` or `no answer in time`.
    error: String,
}

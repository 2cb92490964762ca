//! `GET /api/meta`: what the store holds, and the options and limits this
//! gateway runs with, for the web page's form (which hard-codes none of
//! them: the indices, their bands and colours, the formats and the limits
//! come from `airq_core` and the gateway's flags, here).

use crate::error::ApiError;
use crate::state::AppState;
use airq_core::aggregate::{GroupBy, Period};
use airq_core::aqi::Index;
use airq_core::correction::Correction;
use airq_core::export::Format;
use airq_core::place::MAX_RADIUS_KM;
use airq_core::quality::{Flag, Quality};
use airq_core::query::MAX_SENSOR_TYPES;
use airq_core::{QueryLimits, Resolution};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use utoipa::ToSchema;

/// What the reading store holds (cached 5 s), and the options and limits
/// of this gateway.
#[derive(Serialize, ToSchema)]
#[schema(examples(json!({
    "readings": 9071,
    "first": "2018-06-03 00:00:02",
    "last": "2018-06-03 22:49:58",
    "countries": ["AT", "BE", "DE"],
    "indices": [{"name": "eaqi", "title": "European EAQI", "short": "EAQI", "floor": 1,
        "min": 1, "max": 6, "default": false, "valueColours": [],
        "hourlyWindow": "24-hour running mean",
        "bands": [{"name": "Good", "lo": 1, "hi": 1, "colour": "#50F0E6", "abbr": null,
            "pm25From": 0.0}]}],
    "formats": [{"name": "csv", "label": "CSV", "mediaType": "text/csv",
        "extension": "csv", "default": true}],
    "resolutions": [{"name": "hour", "label": "Hourly", "description": "hourly means of the 5-minute feed",
        "stepSeconds": 3600, "maxSpanSeconds": 604800, "default": false}],
    "aggregate": {"periods": ["hour", "day", "month", "year"], "by": ["sensor", "cell", "country", "all"]},
    "quality": {"values": ["all", "no-flags"], "resolutions": ["day", "hour", "5min"], "flags": [{"name": "humid",
        "rule": "relative humidity at the station is at least 95 % (an hour: the mean of its readings')"}]},
    "correction": {"methods": ["kappa-kohler"], "summary": "κ-Köhler: …",
        "source": "https://doi.org/10.5194/amt-11-709-2018", "maxKappa": 1.5,
        "rhMax": {"default": 95, "min": 50, "max": 99}},
    "limits": {"maxSpanSeconds": 2678400, "maxAggregateSpanSeconds": 31622400, "maxRadiusKm": 100.0,
        "maxSensorTypes": 32}
})))]
pub struct Meta {
    /// How many readings the store holds.
    readings: u64,
    /// The earliest reading's time, `YYYY-MM-DD HH:MM:SS` UTC; null on an
    /// empty store.
    #[schema(required = true)]
    first: Option<String>,
    /// The latest reading's time, `YYYY-MM-DD HH:MM:SS` UTC; null on an
    /// empty store.
    #[schema(required = true)]
    last: Option<String>,
    /// The country codes that have readings.
    countries: Vec<String>,
    /// The indices a query can be on, the default one marked.
    indices: Vec<IndexInfo>,
    /// The formats an answer can come in, the default one marked.
    formats: Vec<FormatInfo>,
    /// The series a query can ask for (`resolution`): those this
    /// deployment's store keeps, the default one marked, each with the
    /// longest span this gateway allows on it.
    resolutions: Vec<ResolutionInfo>,
    /// What `aggregate` takes.
    aggregate: AggregateInfo,
    /// What `quality` takes.
    quality: QualityInfo,
    /// What `correction` takes.
    correction: CorrectionInfo,
    /// The limits this gateway applies to a query.
    limits: Limits,
}

/// The choices of a query's `quality` field.
#[derive(Serialize, ToSchema)]
pub struct QualityInfo {
    /// The values besides a list of flags.
    values: Vec<&'static str>,
    /// The series (`resolution`) whose readings keep flags: the only
    /// ones a query with `quality` may ask.
    resolutions: Vec<&'static str>,
    /// The flags, each with its rule.
    flags: Vec<FlagInfo>,
}

/// The choices of a query's `correction` field (besides `"none"`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorrectionInfo {
    /// The methods `correction.method` takes.
    methods: Vec<&'static str>,
    /// The method in one line, for people.
    summary: &'static str,
    /// Where the formula is published.
    source: &'static str,
    /// The largest `kappa` accepted (it has no default).
    max_kappa: f64,
    /// `rhMax`: its default and range, percent.
    rh_max: RhMaxInfo,
}

/// The range of `correction.rhMax`.
#[derive(Serialize, ToSchema)]
pub struct RhMaxInfo {
    default: u8,
    min: u8,
    max: u8,
}

/// One quality flag.
#[derive(Serialize, ToSchema)]
pub struct FlagInfo {
    name: &'static str,
    rule: String,
}

/// The choices of a query's `aggregate` field.
#[derive(Serialize, ToSchema)]
pub struct AggregateInfo {
    /// The names `aggregate.period` takes (UTC calendar periods).
    periods: Vec<&'static str>,
    /// The names `aggregate.by` takes.
    by: Vec<&'static str>,
}

/// One index: its name in queries, its names for people, its scale, its
/// bands and the publisher's colours.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndexInfo {
    /// The name `index` takes.
    name: &'static str,
    title: &'static str,
    short: &'static str,
    /// The lowest `minAqi`/`maxAqi` a query takes; below `min`, it means
    /// no lower bound.
    floor: u16,
    /// The lowest and highest values of a reading.
    min: u16,
    max: u16,
    /// Whether a query without `index` is on this one.
    default: bool,
    /// The publisher's colour of each value from `min` up, where it colours
    /// values rather than bands; empty otherwise.
    value_colours: &'static [&'static str],
    /// The named bands, lowest first, covering `min` to `max`.
    bands: Vec<BandInfo>,
    /// How the hourly series averages PM for this index: `NowCast` or
    /// `24-hour running mean`.
    hourly_window: &'static str,
}

/// One named band of an index.
#[derive(Serialize, ToSchema)]
pub struct BandInfo {
    /// The name `range` takes.
    name: &'static str,
    /// The values it covers, inclusive.
    lo: u16,
    hi: u16,
    /// The publisher's colour (`#RRGGBB`), null where values are coloured.
    #[schema(required = true)]
    colour: Option<&'static str>,
    /// The lowest PM2.5 (µg/m³) whose index alone is in this band: where
    /// the band begins on a PM2.5 axis.
    #[serde(rename = "pm25From")]
    pm25_from: f64,
    /// A shorter name for charts, null when the name is short.
    #[schema(required = true)]
    abbr: Option<&'static str>,
}

/// One answer format.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FormatInfo {
    /// The name `format` takes.
    name: &'static str,
    label: &'static str,
    media_type: &'static str,
    extension: &'static str,
    /// Whether a query without `format` gets this one.
    default: bool,
}

/// One series.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolutionInfo {
    /// The name `resolution` takes.
    name: &'static str,
    /// Its short name for people.
    label: &'static str,
    description: &'static str,
    /// Time between a sensor's readings, seconds.
    step_seconds: u64,
    /// Longest `endDate - startDate` on this series, seconds.
    max_span_seconds: u64,
    /// Whether a query without `resolution` gets this one.
    default: bool,
}

/// The limits of this gateway's queries.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Longest `endDate - startDate`, in seconds (`--max-span`).
    max_span_seconds: u64,
    /// Longest span of an aggregate (`--max-aggregate-span`).
    max_aggregate_span_seconds: u64,
    /// Largest `near` radius, in km.
    max_radius_km: f64,
    /// Most sensor types one query lists.
    max_sensor_types: usize,
}

impl Meta {
    fn options(
        readings: u64,
        first: Option<String>,
        last: Option<String>,
        countries: Vec<String>,
        limits: &QueryLimits,
        kept: &[Resolution],
    ) -> Meta {
        let indices = Index::ALL
            .into_iter()
            .map(|ix| IndexInfo {
                name: ix.name(),
                title: ix.title(),
                short: ix.short(),
                floor: ix.floor(),
                min: ix.min(),
                max: ix.max(),
                default: ix == Index::default(),
                value_colours: ix.value_colours(),
                hourly_window: ix.hourly_averaging().label(),
                bands: ix
                    .bands()
                    .iter()
                    .zip(ix.pm25_band_starts())
                    .map(|(b, pm25_from)| BandInfo {
                        name: b.label,
                        lo: b.lo,
                        hi: b.hi,
                        colour: b.colour,
                        abbr: b.abbr,
                        pm25_from,
                    })
                    .collect(),
            })
            .collect();
        let formats = Format::ALL
            .into_iter()
            .map(|f| FormatInfo {
                name: f.name(),
                label: f.label(),
                media_type: f.media_type(),
                extension: f.extension(),
                default: f == Format::default(),
            })
            .collect();
        let resolutions = kept
            .iter()
            .map(|&r| ResolutionInfo {
                name: r.name(),
                label: r.label(),
                description: r.description(),
                step_seconds: r.step().as_secs(),
                max_span_seconds: limits.span_limit(r, false).as_secs(),
                default: r == Resolution::default(),
            })
            .collect();
        Meta {
            readings,
            first,
            last,
            countries,
            indices,
            formats,
            resolutions,
            aggregate: AggregateInfo {
                periods: Period::ALL.iter().map(|p| p.name()).collect(),
                by: GroupBy::ALL.iter().map(|b| b.name()).collect(),
            },
            quality: QualityInfo {
                values: vec![Quality::ALL, Quality::NO_FLAGS],
                resolutions: airq_core::quality::SERIES.map(Resolution::name).to_vec(),
                flags: Flag::ALL
                    .iter()
                    .map(|f| FlagInfo {
                        name: f.name(),
                        rule: f.rule(),
                    })
                    .collect(),
            },
            correction: CorrectionInfo {
                methods: vec![Correction::METHOD],
                summary: Correction::SUMMARY,
                source: Correction::SOURCE,
                max_kappa: f64::from(Correction::MAX_KAPPA_MILLI) / 1000.0,
                rh_max: RhMaxInfo {
                    default: Correction::DEFAULT_RH_MAX,
                    min: *Correction::RH_MAX_RANGE.start(),
                    max: *Correction::RH_MAX_RANGE.end(),
                },
            },
            limits: Limits {
                max_span_seconds: limits.max_span.as_secs(),
                max_aggregate_span_seconds: limits.max_aggregate_span.as_secs(),
                max_radius_km: MAX_RADIUS_KM,
                max_sensor_types: MAX_SENSOR_TYPES,
            },
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/meta",
    tag = "store",
    operation_id = "getMeta",
    summary = "What the reading store holds, and this gateway's options and limits",
    description = "How many readings, their time span and their countries (cached 5 s), \
        and the indices (bands, colours), formats and query limits this gateway runs with: \
        what the web page builds its form from. Open under `--auth required` too. Spends \
        one request of the client's `polls` budget.",
    responses(
        (status = 200, description = "The store's summary and the options", body = Meta),
        (status = 400, description = "An API key in the URL", body = crate::openapi::schema::ErrorBody),
        (status = 401, description = "A malformed, unknown or revoked API key",
            body = crate::openapi::schema::ErrorBody),
        (status = 429, description = "Over the client's `polls` budget",
            body = crate::openapi::schema::ErrorBody),
        (status = 503, description = "The reading store does not answer",
            body = crate::openapi::schema::ErrorBody),
    ),
    security((), ("apiKey" = []), ("bearer" = []))
)]
pub async fn get(State(app): State<AppState>) -> Result<Response, ApiError> {
    let readings = &app.backend.readings;
    let limits = app.limits;
    let body = app
        .meta
        .get(|| async {
            let s = readings.summary().await?;
            let meta = Meta::options(
                s.readings,
                s.first.map(|t| t.to_string()),
                s.last.map(|t| t.to_string()),
                s.countries,
                &limits,
                readings.series(),
            );
            Ok(Bytes::from(serde_json::to_vec(&meta).unwrap_or_default()))
        })
        .await
        .map_err(ApiError::unavailable("reading store unavailable"))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

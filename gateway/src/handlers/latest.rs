//! `GET /api/latest`: the most recent stored reading of each sensor, with
//! the place, sensor-type and country filters of a query and its index and
//! format, as query-string fields.
//!
//! Always answered directly (there is nothing to wait for: the store keeps
//! each sensor's latest reading up to date at ingestion), through the same
//! answer cache as direct queries (keyed apart from them), so a popular
//! map view costs one store read per `--answer-cache-ttl`. It spends the
//! caller's `submits` budget, like a query: each one not in the cache is a
//! store read of up to one row per sensor, which is what `submits` meters
//! (a poll is a key lookup), and a client looping on it should meet the
//! same limit as one looping on small queries.

use crate::error::ApiError;
use crate::state::AppState;
use airq_core::query::FieldError;
use airq_core::{LatestQuery, QueryError};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

#[utoipa::path(
    get,
    path = "/api/latest",
    tag = "queries",
    operation_id = "getLatest",
    summary = "The latest reading of each sensor",
    description = "The most recent stored reading of each sensor whose latest reading passes \
        the filters (`country`, `bbox` or `near`, `sensorType`), ordered by sensor id, in the \
        `format` and `index` asked for (the same fields as a query, written as query-string \
        fields; lists comma-separated): its newest 5-minute reading where the live tier has \
        one (with its hour's indices: the NowCast for US EPA, 24-hour running means for the \
        others, empty where too little data), else its newest daily reading. NDJSON and \
        GeoJSON say which (`resolution`: `5min` or `day`) and how old it is (`ageSeconds`, \
        from the request's second); the CSV keeps its columns. Answered directly (`200`), \
        never queued: it waits for a direct slot when none is free (`503` after \
        `--request-timeout`, or at once on a gateway with `--direct-limit 0`). Served from \
        the answer cache like a direct query (`X-Airq-Cache`); the request's second is part \
        of the cache key, so a cached answer is at most a second old. Every \
        bad field is named at once (`400`), as for `POST /api/query`. Spends one request of \
        the client's `submits` budget (as a query does: each is a read of the reading store); \
        under `--auth required` it needs a key.",
    params(
        ("country" = Option<String>, Query,
            description = "A 2- or 3-letter country code as the feed sends it (`DE`, `UK`, …), \
                case-insensitive; empty for every country",
            pattern = r"^\s*([A-Za-z]{2,3})?\s*$", example = "DE"),
        ("bbox" = Option<String>, Query,
            description = "A bounding box `minLon,minLat,maxLon,maxLat` (GeoJSON order, degrees, \
                bounds inclusive, each minimum less than its maximum, no wrap at the \
                antimeridian); not with `near`",
            pattern = r"^\s*-?[0-9.]+(\s*,\s*-?[0-9.]+){3}\s*$", example = "9.0,48.6,9.4,48.9"),
        ("near" = Option<String>, Query,
            description = "A circle `lat,lon,radiusKm`: readings at most `radiusKm` (more than 0, \
                at most 100) km away along the great circle; not with `bbox`",
            pattern = r"^\s*-?[0-9.]+\s*,\s*-?[0-9.]+\s*,\s*[0-9.]+\s*$", example = "48.78,9.18,10"),
        ("sensorType" = Option<String>, Query,
            description = "Sensor types, comma-separated (or the field repeated), \
                case-insensitive, at most 32; empty for every type",
            example = "SDS011,SPS30"),
        ("index" = Option<crate::openapi::schema::IndexName>, Query,
            description = "The index the answer's `AQI` and `Range` show (`GET /api/meta` lists them; default the one marked `default`)"),
        ("format" = Option<crate::openapi::schema::FormatName>, Query,
            description = "The answer's format (default `csv`)"),
        ("Accept-Encoding" = Option<String>, Header,
            description = "`gzip` to get the answer gzipped (the same bytes otherwise)"),
    ),
    responses(
        (status = 200, description = "Each sensor's latest reading, one row per sensor, in the \
            format asked for (the same columns, fields and order of fields as a query's answer)",
            content(
                (String = "text/csv",
                    example = json!("id,timestamp,sensor_id,sensor_type,loc_id,loc_country,loc_lat,loc_long,loc_alt,P1,P2,AQI,Range\n")),
                (crate::openapi::schema::ReadingLine = "application/x-ndjson"),
                (crate::openapi::schema::FeatureCollection = "application/geo+json"),
            ),
            headers(
                ("X-Airq-Answer" = String, description = "`direct`"),
                ("X-Airq-Cache" = String, description = "`hit` (served from the answer cache) or \
                    `miss` (computed for this request); absent on a streamed answer"),
                ("X-Airq-Index" = crate::openapi::schema::IndexName,
                    description = "The index whose value and band the answer's `AQI` and `Range` hold"),
                ("Content-Disposition" = String,
                    description = "`attachment; filename=\"airq-latest.csv\"` (`.ndjson`, `.geojson` for those formats)"),
                ("Content-Encoding" = String, description = "`gzip` when the request accepted it"),
            )),
        (status = 400, description = "Invalid fields (each named: `country`, `bbox`, `near`, \
            `sensorType`, `index`, `format`, or an unknown one), or an API key in the URL",
            body = crate::openapi::schema::ErrorBody,
            example = json!({"error": "invalid query", "fields": [
                {"field": "bbox", "message": "minLon (9.5) must be less than maxLon (9)"},
                {"field": "index", "message": "unknown index \"aqi\"; expected one of daqi, us-epa, eaqi"}]})),
        (status = 401, description = "A malformed, unknown or revoked API key, or none under \
            `--auth required`", body = crate::openapi::schema::ErrorBody),
        (status = 429, description = "Over the client's `submits` budget",
            body = crate::openapi::schema::ErrorBody),
        (status = 503, description = "The reading store does not answer, no direct slot came \
            free within `--request-timeout`, or the gateway answers nothing directly \
            (`--direct-limit 0`)", body = crate::openapi::schema::ErrorBody),
    ),
    security((), ("apiKey" = []), ("bearer" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (latest, _) = parse(&uri)?;
    app.direct
        .latest(&latest, crate::gzip::accepts(&headers))
        .await
}

/// The request's fields, and whether it named a `format`: every bad field
/// named at once (`400`).
pub fn parse(uri: &Uri) -> Result<(LatestQuery, bool), ApiError> {
    // Parsed here rather than by axum's `Query` extractor, whose rejection
    // is plain text; percent-decoding itself cannot fail (invalid escapes
    // are kept as they are, and the field's check names them).
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).map_err(|e| {
        ApiError::InvalidQuery(QueryError {
            errors: vec![FieldError {
                field: "query string".into(),
                message: format!("could not be read: {e}"),
            }],
        })
    })?;
    let latest = LatestQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(ApiError::InvalidQuery)?;
    Ok((latest, pairs.iter().any(|(k, _)| k == "format")))
}

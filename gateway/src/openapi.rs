//! The API's description: an OpenAPI 3.1 document generated from the code
//! (utoipa), served at `GET /api/openapi.json`, and a short HTML page
//! listing it at `GET /api`.
//!
//! Each handler carries its own `#[utoipa::path]` (method, path, every
//! status it can answer, its headers); the schemas of the JSON bodies are
//! the doc-only types of [`schema`]; the headers every answer of a kind
//! carries (`X-Request-Id` everywhere, the `RateLimit` pair on the counted
//! routes, `Retry-After` on their `429`/`503`, `WWW-Authenticate` on a
//! `401`) and the security schemes are added by [`Common`] and
//! [`Security`], once, rather than repeated on every response. Routes
//! whose handlers live elsewhere (`/`, `/assets/{name}`, `/metrics`) are
//! described by the stubs of [`described`].
//!
//! Both answers are built once, on first use. The page is rendered here,
//! from the same document: no script, no CDN, nothing fetched elsewhere,
//! every text escaped.

use crate::handlers::{health, latest, meta, results, submit};
use crate::state::AppState;
use airq_core::aqi::Index;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::fmt::Write as _;
use std::sync::LazyLock;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Required};
use utoipa::{Modify, OpenApi};

/// The description of the whole HTTP surface.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "airq",
        description = "Air-quality readings from the Sensor.Community network with three air-quality \
            indices computed for each (the UK DAQI, the US EPA AQI and the European EAQI), \
            queried by time range, country, place (a bounding box or a circle), sensor type, \
            index value and band, answered as CSV, NDJSON or GeoJSON.\n\n\
            A query (`POST /api/query`) is answered at once (`200`, the answer) when its span is \
            short and a direct slot is free, or queued (`202` with a result id) to be polled at \
            `GET /api/results/{id}` until it is done; either way the answer is in the query's \
            `format`, and its `AQI` and `Range` are its `index` (`X-Airq-Index` says which). \
            `GET /api/latest` answers each sensor's most recent reading, directly.\n\n\
            Clients may send an API key (`X-API-Key: airq_…` or `Authorization: Bearer airq_…`). \
            The gateway's `--auth` decides what a missing key means: `optional` (the default) \
            serves the client in the `anonymous` tier, `required` refuses queries, latest \
            readings and results without one (`401`; `/api/meta` and the page stay open), `off` \
            ignores keys. Every client has a rate budget per tier (`submits` for queries and \
            latest readings, `polls` for results and meta); a counted answer carries \
            `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10), and a \
            refusal is `429` with `Retry-After`.\n\n\
            Every answer carries `X-Request-Id`: the client's own (1 to 128 characters of \
            `A-Za-z0-9._~:+/=-`) or a new UUID. Every error body is JSON: \
            `{\"error\", \"fields\"?: [{\"field\", \"message\"}]}`."
    ),
    paths(
        submit::submit,
        results::get,
        results::status,
        latest::get,
        meta::get,
        health::healthz,
        health::readyz,
        described::metrics,
        described::page,
        described::asset,
        document,
        api_page,
    ),
    components(schemas(
        schema::ErrorBody,
        schema::FieldError,
        schema::Near,
        schema::IndexName,
        schema::FormatName,
        schema::ReadingLine,
        schema::FeatureCollection,
    )),
    modifiers(&Security, &Common),
    tags(
        (name = "queries", description = "Asking for readings and fetching the answers"),
        (name = "store", description = "What the reading store holds"),
        (name = "operations", description = "Health, readiness and metrics, for supervisors \
            and monitoring (not rate limited)"),
        (name = "web", description = "The web page and this description"),
    )
)]
pub struct ApiDoc;

/// `GET /api/openapi.json` and `GET /api`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(document))
        .route("/api", get(api_page))
}

/// The document and the page, built once.
struct Built {
    json: String,
    page: String,
}

static BUILT: LazyLock<Built> = LazyLock::new(|| {
    let doc = ApiDoc::openapi();
    let json = serde_json::to_value(&doc)
        .map(with_cross_field_rules)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|e| {
            format!("{{\"error\":\"the description could not be serialized: {e}\"}}")
        });
    Built {
        page: render(&doc),
        json,
    }
});

/// The rules between fields that JSON Schema can say and utoipa's types
/// cannot, so that the description admits exactly what the server takes:
///
/// - a query has at most one of `bbox` and `near` (both: `400`), in the
///   body of `POST /api/query` and in the query string of `GET
///   /api/latest` (whose filters are therefore described as one
///   form-exploded object: JSON Schema has no rule across parameters);
/// - a query's `range` is a band of its own `index` (the default index's
///   when none is given).
fn with_cross_field_rules(mut doc: serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Value};
    let one_place = json!({"required": ["bbox", "near"]});
    if let Some(Value::Object(query)) = doc.pointer_mut("/components/schemas/Query") {
        query.insert("not".into(), one_place.clone());
        let branches: Vec<Value> = query
            .get("properties")
            .and_then(|p| p.get("range"))
            .and_then(|r| r.get("anyOf"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let bands_of = |name: &str| {
            branches
                .iter()
                .find(|b| b["title"] == format!("{name} bands"))
                .cloned()
        };
        let any_band = branches.iter().find(|b| b["title"] == "any band").cloned();
        let default = Index::default().name();
        let mut rules = Vec::new();
        for ix in Index::ALL {
            let (Some(bands), Some(any)) = (bands_of(ix.name()), any_band.clone()) else {
                continue;
            };
            let range = json!({"properties": {"range": {"anyOf": [bands, any]}}});
            let when = if ix.name() == default {
                // No index, or an empty or null one, is the default.
                json!({"anyOf": [
                    {"not": {"required": ["index"]}},
                    {"properties": {"index": {"enum": [ix.name(), "", null]}}},
                ]})
            } else {
                json!({"required": ["index"], "properties": {"index": {"const": ix.name()}}})
            };
            rules.push(json!({"if": when, "then": range}));
        }
        if !rules.is_empty() {
            query.insert("allOf".into(), Value::Array(rules));
        }
    }
    if let Some(Value::Array(params)) = doc.pointer_mut("/paths/~1api~1latest/get/parameters") {
        let (filters, rest): (Vec<Value>, Vec<Value>) =
            params.drain(..).partition(|p| p["in"] == "query");
        let mut properties = serde_json::Map::new();
        for f in &filters {
            let mut schema = f["schema"].clone();
            // An empty value (`?index=`) is the default, as the server
            // takes it.
            if schema.get("$ref").is_some() {
                schema = json!({"anyOf": [schema, {"const": ""}]});
            }
            if let (Value::Object(m), Some(d)) = (&mut schema, f.get("description")) {
                m.insert("description".into(), d.clone());
            }
            if let Some(name) = f["name"].as_str() {
                properties.insert(name.to_owned(), schema);
            }
        }
        *params = rest;
        if !properties.is_empty() {
            params.insert(
                0,
                json!({
                    "name": "filters",
                    "in": "query",
                    "style": "form",
                    "explode": true,
                    "description": "The filters, each its own query parameter (`?country=DE&bbox=…`); at most one of `bbox` and `near`.",
                    "schema": {
                        "type": "object",
                        "properties": properties,
                        "additionalProperties": false,
                        "not": one_place,
                    },
                }),
            );
        }
    }
    doc
}

/// The description, as JSON (what `/api/openapi.json` serves).
pub fn json() -> &'static str {
    &BUILT.json
}

const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";
/// The page has no script and loads nothing; its one style sheet is inline.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The OpenAPI 3.1 description of this API.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "web",
    operation_id = "openapiDocument",
    summary = "This description, as OpenAPI 3.1 JSON",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document (generated from the gateway's code)",
            content_type = "application/json", body = Object),
    )
)]
async fn document() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(JSON)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        json(),
    )
        .into_response()
}

/// A page listing the endpoints, their answers and headers.
#[utoipa::path(
    get,
    path = "/api",
    tag = "web",
    operation_id = "apiPage",
    summary = "This description, as a page for people",
    responses(
        (status = 200, description = "An HTML page listing every endpoint, its parameters, \
            statuses and headers, rendered from the OpenAPI document (no script, nothing \
            loaded from elsewhere)",
            content_type = "text/html", body = String),
    )
)]
async fn api_page() -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(HTML)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        BUILT.page.as_str(),
    )
        .into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The API routes that pass admission (keys and rate budgets).
const COUNTED: [&str; 4] = [
    "/api/query",
    "/api/results/{id}",
    "/api/latest",
    "/api/meta",
];

/// The security schemes: an API key in either of two headers.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key (`airq_` and 64 hex digits), made with `airq-deploy keys create`. \
                 Optional under `--auth optional` (the default: without one a client is known by \
                 its address, in the `anonymous` tier), needed for queries and results under \
                 `--auth required`, ignored under `--auth off`. A malformed, unknown or revoked \
                 key is `401`; a key in the URL is `400`.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("airq_<64 hex digits>")
                    .description(Some(
                        "The same API key as `Authorization: Bearer airq_…`; sent with \
                         `X-API-Key` too, both must carry the same key.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The headers every answer of a kind carries, and `X-Request-Id` on
/// every request.
struct Common;

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

fn integer_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .description(Some(description))
        .build()
}

/// A path item's operations, whichever methods it has.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// A path item's operations with their methods, upper case.
fn operations(item: &PathItem) -> impl Iterator<Item = (&'static str, &Operation)> {
    [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("HEAD", &item.head),
        ("PATCH", &item.patch),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_ref().map(|op| (method, op)))
}

impl Modify for Common {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let request_id = ParameterBuilder::new()
            .name("X-Request-Id")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "The client's id for this request, kept when it is 1 to 128 characters of \
                 `A-Za-z0-9._~:+/=-`. Any other value is accepted and replaced by a new UUID \
                 (the answer's `X-Request-Id` says which): a request is never refused for its \
                 id. It is on every log line of the request, in the job a queued query \
                 becomes and on its result.",
            ))
            // Any string: what the server does with one that is not an
            // acceptable id is replace it, not refuse the request.
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .example(Some(serde_json::json!("4f1c-9e2a:checkout/7")))
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let counted = COUNTED.contains(&path.as_str());
            for op in operations_mut(item) {
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .push(request_id.clone());
                for (status, response) in op.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    let h = &mut response.headers;
                    h.insert(
                        "X-Request-Id".into(),
                        string_header(
                            "This request's id: the client's `X-Request-Id` when acceptable, \
                             else a new UUID. A poll of a result that does not send one is \
                             answered with the id its query was submitted with.",
                        ),
                    );
                    if counted {
                        h.insert(
                            "RateLimit-Policy".into(),
                            string_header(
                                "The budget this request spent, e.g. `\"submits\";q=30;w=60` \
                                 (30 requests per 60 s); policies `submits` and `polls`. Absent \
                                 for an unlimited budget, and on a refusal before the budget \
                                 was known (`400`, `401`).",
                            ),
                        );
                        h.insert(
                            "RateLimit".into(),
                            string_header(
                                "Where the client stands, e.g. `\"submits\";r=29;t=2` (29 more \
                                 requests pass now; the whole quota is back in 2 s). Present \
                                 with `RateLimit-Policy`.",
                            ),
                        );
                        if status == "429" || status == "503" {
                            h.insert(
                                "Retry-After".into(),
                                integer_header(
                                    "Seconds to wait before trying again: until the next \
                                     request passes the budget (`429`), or 5.",
                                ),
                            );
                        }
                    }
                    if status == "401" {
                        h.insert(
                            "WWW-Authenticate".into(),
                            string_header("`Bearer realm=\"airq\"`"),
                        );
                    }
                }
            }
        }
    }
}

/// Descriptions of routes whose handlers live elsewhere (`web.rs`, the
/// metrics module): never called, only read by [`ApiDoc`].
#[allow(dead_code)]
mod described {
    /// `GET /metrics`.
    #[utoipa::path(
        get,
        path = "/metrics",
        tag = "operations",
        operation_id = "metrics",
        summary = "Prometheus metrics",
        description = "The gateway's metrics in the Prometheus text format: requests by route \
            and status, time to response, direct and queued answers, the answer cache, direct \
            slots, the request queue's depth, results, rejections. Not rate limited.",
        responses(
            (status = 200, description = "The Prometheus text exposition format (0.0.4)",
                content_type = "text/plain", body = String,
                example = json!("# TYPE airq_http_requests_total counter\nairq_http_requests_total{route=\"query\",status=\"200\"} 1\n")),
            (status = 404, description = "Metrics are off on this gateway (`--metrics off`)",
                body = super::schema::ErrorBody),
        )
    )]
    pub fn metrics() {}

    /// `GET /`.
    #[utoipa::path(
        get,
        path = "/",
        tag = "web",
        operation_id = "page",
        summary = "The web page",
        description = "A form for queries, served with its files by the gateway (no CDN). \
            `Cache-Control: no-cache`, a strong `ETag`, and a `Content-Security-Policy` that \
            allows only this gateway.",
        params(
            ("If-None-Match" = Option<String>, Header,
                description = "An `ETag` from an earlier answer: `304` while the page is the same"),
        ),
        responses(
            (status = 200, description = "The page", content_type = "text/html", body = String,
                headers(
                    ("ETag" = String, description = "The page's version"),
                    ("Cache-Control" = String, description = "`no-cache`"),
                    ("Content-Security-Policy" = String, description = "Only this gateway"),
                )),
            (status = 304, description = "Not modified (a matching `If-None-Match`)",
                headers(("ETag" = String, description = "The page's version"))),
        )
    )]
    pub fn page() {}

    /// `GET /assets/{name}`.
    #[utoipa::path(
        get,
        path = "/assets/{name}",
        tag = "web",
        operation_id = "asset",
        summary = "A file of the web page",
        description = "`app.css`, `app.js` or `favicon.svg`. Asked for with its current \
            version (`?v=HASH`, as the page links it) it is `immutable` for a year, else \
            `no-cache`.",
        params(
            ("name" = String, Path, description = "The file's name", example = "app.js"),
            ("v" = Option<String>, Query, description = "The file's version, as the page links it"),
            ("If-None-Match" = Option<String>, Header,
                description = "An `ETag` from an earlier answer: `304` while the file is the same"),
        ),
        responses(
            (status = 200, description = "The file", content((String = "text/css"), (String = "text/javascript"), (String = "image/svg+xml")),
                headers(
                    ("ETag" = String, description = "The file's version"),
                    ("Cache-Control" = String, description = "`public, max-age=31536000, immutable` with the current `v`, else `no-cache`"),
                )),
            (status = 304, description = "Not modified (a matching `If-None-Match`)",
                headers(("ETag" = String, description = "The file's version"))),
            (status = 404, description = "No such file", body = super::schema::ErrorBody),
        )
    )]
    pub fn asset() {}
}

/// The JSON bodies, as the handlers write them. Never built: they only
/// describe (the handlers build their bodies with `serde_json::json!` or
/// their own types).
#[allow(dead_code)]
pub mod schema {
    use airq_core::aqi::Index;
    use airq_core::export::Format;
    use airq_core::query::MAX_SENSOR_TYPES;
    use serde::Deserialize;
    use utoipa::openapi::schema::{
        AnyOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
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
        /// is up to 23:59:59); not before `startDate`, and at most
        /// `--max-span` (31 days by default) after it.
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
            .enum_values(Some(
                index_names().into_iter().map(Some).chain([Some(""), None]),
            ))
            .description(Some(
                "The air-quality index that `minAqi`, `maxAqi` and `range` are on, and that the \
                 answer's `AQI` and `Range` show: `daqi` (UK DAQI, 1–10; the default, and the \
                 first system's only index), `us-epa` (US EPA AQI, 2024 revision, 0–500) or \
                 `eaqi` (European Air Quality Index, levels 1–6). Case, `-` and `_` do not \
                 matter; empty or null for the default.",
            ))
            .default(Some(serde_json::json!("daqi")))
            .examples(["us-epa"])
    }

    /// The scales, for the descriptions: `daqi` 0–10, ….
    fn scales() -> String {
        Index::ALL
            .iter()
            .map(|i| {
                let lo = if *i == Index::Daqi { 0 } else { i.min() };
                format!("`{}` {lo}–{}", i.name(), i.max())
            })
            .collect::<Vec<_>>()
            .join(", ")
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
                 that index's scale ({}; DAQI's 0 means no lower bound), as a JSON number or a \
                 numeric string (default {default}; null is the default). A value outside the \
                 scale is an error naming the scale. `minAqi` must not be greater than \
                 `maxAqi`.",
                scales()
            )))
            .examples([0])
            .into()
    }

    fn min_aqi() -> RefOr<Schema> {
        aqi("lowest", "the scale's lowest: 0 for DAQI")
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
            if i == Index::Daqi {
                names.push("Medium");
            }
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
            let extra = if i == Index::Daqi {
                "; `Medium` is `Moderate`"
            } else {
                ""
            };
            any = any.item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .title(Some(format!("{} bands", i.name())))
                    .enum_values(Some(names))
                    .description(Some(format!("With `index` `{}`: {list}{extra}.", i.name()))),
            );
        }
        any.item(
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .title(Some("any band"))
                .enum_values(Some([Some(""), None])),
        )
        .description(Some(
            "A band of the query's `index` (a band of another index, such as `Good` with \
             `daqi`, is an error naming the valid ones); combined with `minAqi`/`maxAqi`. \
             Case, spaces, `-` and `_` do not matter; empty or null for every band.",
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
            .enum_values(Some([
                Some("csv"),
                Some("ndjson"),
                Some("geojson"),
                Some(""),
                None,
            ]))
            .description(Some(
                "The answer's format: `csv` (the default; `text/csv`), `ndjson` \
                 (`application/x-ndjson`, one JSON object per reading and line) or `geojson` \
                 (`application/geo+json`, a `FeatureCollection` of `Point`s `[lon, lat]` with \
                 the reading's fields as `properties`). A queued query's result keeps it. Case \
                 does not matter; empty or null for the default.",
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
            let names: Vec<String> = Index::ALL
                .iter()
                .map(|i| format!("`{}` ({})", i.name(), i.title()))
                .collect();
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(Index::ALL.map(Index::name)))
                .description(Some(format!(
                    "An index name (`X-Airq-Index`, the `index` of `GET /api/latest`): {}; \
                     `{}` is the default.",
                    names.join(", "),
                    Index::default().name()
                )))
                .into()
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
            let names: Vec<String> = Format::ALL
                .iter()
                .map(|f| format!("`{}` (`{}`)", f.name(), f.media_type()))
                .collect();
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(Format::ALL.map(Format::name)))
                .description(Some(format!(
                    "A format name (the `format` of `GET /api/latest`): {}; `{}` is the default.",
                    names.join(", "),
                    Format::default().name()
                )))
                .into()
        }
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
        /// The value in the answer's index (`X-Airq-Index`).
        #[serde(rename = "AQI")]
        aqi: u16,
        /// Its band in that index.
        #[serde(rename = "Range")]
        range: String,
        /// Only on a daily mean of the archive backfill: how many
        /// measurements it averages.
        samples: Option<u32>,
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
}

/// HTML-escapes `text`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escaped text with its `code` spans (between backticks) marked up, and
/// its blank-line-separated paragraphs as `<p>`.
fn prose(text: &str) -> String {
    let mut out = String::new();
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        out.push_str("<p>");
        out.push_str(&inline(para));
        out.push_str("</p>");
    }
    out
}

/// Escaped text with its `code` spans marked up.
fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

/// An anchor name for an operation.
fn anchor(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for c in path.chars() {
        id.push(if c.is_ascii_alphanumeric() { c } else { '-' });
    }
    id
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:62rem;margin:2rem auto;\
padding:0 1rem;color:#1b1b1b}code{font:13px ui-monospace,monospace;background:#f2f2f2;\
padding:0 .2em;border-radius:3px}table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}\
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}\
th{background:#f7f7f7}section{border-top:2px solid #ccc;margin-top:2rem}\
h3 code{font-size:15px}.m{font-weight:700}";

/// The page: every endpoint with its parameters, answers and headers.
fn render(doc: &utoipa::openapi::OpenApi) -> String {
    let mut html = String::new();
    let title = &doc.info.title;
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} API</title><style>{STYLE}</style></head><body>\
         <h1>{} API <small>{}</small></h1>",
        escape(title),
        escape(title),
        escape(&doc.info.version),
    );
    if let Some(description) = &doc.info.description {
        html.push_str(&prose(description));
    }
    html.push_str(
        "<p>The same, machine-readable: <a href=\"/api/openapi.json\"><code>/api/openapi.json\
         </code></a> (OpenAPI 3.1).</p>",
    );

    html.push_str("<h2>Endpoints</h2><table><tr><th>method</th><th>path</th><th>what</th><th>statuses</th></tr>");
    for (path, item) in doc.paths.paths.iter() {
        for (method, op) in operations(item) {
            let statuses: Vec<&str> = op.responses.responses.keys().map(String::as_str).collect();
            let _ = write!(
                html,
                "<tr><td class=\"m\">{method}</td><td><a href=\"#{}\"><code>{}</code></a></td>\
                 <td>{}</td><td>{}</td></tr>",
                anchor(method, path),
                escape(path),
                inline(op.summary.as_deref().unwrap_or("")),
                escape(&statuses.join(", ")),
            );
        }
    }
    html.push_str("</table>");

    if let Some(components) = &doc.components {
        if !components.security_schemes.is_empty() {
            html.push_str("<h2>API keys</h2><ul>");
            for (name, scheme) in &components.security_schemes {
                let (how, description) = match scheme {
                    SecurityScheme::ApiKey(
                        ApiKey::Header(v) | ApiKey::Query(v) | ApiKey::Cookie(v),
                    ) => (format!("`{}` header", v.name), v.description.clone()),
                    SecurityScheme::Http(h) => (
                        "`Authorization: Bearer …`".to_owned(),
                        h.description.clone(),
                    ),
                    _ => (name.clone(), None),
                };
                let _ = write!(
                    html,
                    "<li><b>{}</b> ({}): {}</li>",
                    escape(name),
                    inline(&how),
                    inline(description.as_deref().unwrap_or("")),
                );
            }
            html.push_str("</ul>");
        }
    }

    for (path, item) in doc.paths.paths.iter() {
        for (method, op) in operations(item) {
            render_operation(&mut html, method, path, op);
        }
    }
    html.push_str("</body></html>\n");
    html
}

fn render_operation(html: &mut String, method: &str, path: &str, op: &Operation) {
    let _ = write!(
        html,
        "<section id=\"{}\"><h3><code>{method} {}</code> {}</h3>",
        anchor(method, path),
        escape(path),
        inline(op.summary.as_deref().unwrap_or("")),
    );
    if let Some(description) = &op.description {
        html.push_str(&prose(description));
    }
    if let Some(security) = &op.security {
        if !security.is_empty() {
            html.push_str(
                "<p>API key: optional by default (<code>X-API-Key</code> or \
                 <code>Authorization: Bearer</code>); see API keys above.</p>",
            );
        }
    }
    if let Some(params) = op.parameters.as_ref().filter(|p| !p.is_empty()) {
        html.push_str(
            "<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th>\
             <th>meaning</th></tr>",
        );
        for p in params {
            let place = match p.parameter_in {
                ParameterIn::Path => "path",
                ParameterIn::Query => "query",
                ParameterIn::Header => "header",
                ParameterIn::Cookie => "cookie",
            };
            let required = if matches!(p.required, Required::True) {
                "yes"
            } else {
                "no"
            };
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{place}</td><td>{required}</td><td>{}</td></tr>",
                escape(&p.name),
                inline(p.description.as_deref().unwrap_or("")),
            );
        }
        html.push_str("</table>");
    }
    if let Some(body) = &op.request_body {
        let types: Vec<String> = body
            .content
            .keys()
            .map(|t| format!("<code>{}</code>", escape(t)))
            .collect();
        let _ = write!(
            html,
            "<h4>Request body</h4><p>{} {}</p>",
            types.join(", "),
            inline(body.description.as_deref().unwrap_or("")),
        );
    }
    html.push_str(
        "<h4>Answers</h4><table><tr><th>status</th><th>meaning</th><th>content</th>\
         <th>headers</th></tr>",
    );
    for (status, response) in &op.responses.responses {
        let RefOr::T(response) = response else {
            continue;
        };
        let types: Vec<String> = response
            .content
            .keys()
            .map(|t| format!("<code>{}</code>", escape(t)))
            .collect();
        let headers: Vec<String> = response
            .headers
            .iter()
            .map(|(name, h)| {
                format!(
                    "<code title=\"{}\">{}</code>",
                    escape(h.description.as_deref().unwrap_or("")),
                    escape(name)
                )
            })
            .collect();
        let _ = write!(
            html,
            "<tr><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(status),
            inline(&response.description),
            types.join(", "),
            headers.join(" "),
        );
    }
    html.push_str("</table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let v: serde_json::Value = serde_json::from_str(json()).expect("the document is JSON");
        assert_eq!(v["openapi"], "3.1.0");
        for path in [
            "/api/query",
            "/api/results/{id}",
            "/api/meta",
            "/healthz",
            "/readyz",
            "/metrics",
            "/",
            "/assets/{name}",
            "/api/openapi.json",
            "/api",
        ] {
            assert!(v["paths"][path].is_object(), "{path} is not described");
        }
        let ids: Vec<&str> = v["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(ids.len(), unique.len(), "operation ids repeat: {ids:?}");
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(inline("a `<b>` c"), "a <code>&lt;b&gt;</code> c");
        let page = &BUILT.page;
        assert!(page.contains("/api/results/{id}"));
        assert!(!page.contains("<script"), "the page has no script");
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}

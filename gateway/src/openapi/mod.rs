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

mod page;
mod rules;
pub mod schema;

use crate::handlers::{alerts, health, latest, meta, result_events, results, stream, submit};
use crate::state::AppState;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
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
        description = "Air-quality readings from the Sensor.Community network with air-quality \
            indices computed for each (`GET /api/meta` lists them), \
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
        result_events::events,
        latest::get,
        stream::latest,
        alerts::create,
        alerts::get,
        alerts::delete,
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
        (name = "alerts", description = "Webhooks when the air of a place crosses a threshold"),
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
        .map(rules::with_cross_field_rules)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|e| {
            format!("{{\"error\":\"the description could not be serialized: {e}\"}}")
        });
    Built {
        page: page::render(&doc),
        json,
    }
});

/// Every (path, status) the description documents: the answers the
/// gateway gives, which `/metrics` shows at 0 from the start.
pub fn answers() -> Vec<(String, u16)> {
    let doc = ApiDoc::openapi();
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        for (_, op) in operations(item) {
            for status in op.responses.responses.keys() {
                if let Ok(code) = status.parse::<u16>() {
                    out.push((path.clone(), code));
                }
            }
        }
    }
    out
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
const COUNTED: [&str; 9] = [
    "/api/query",
    "/api/results/{id}",
    "/api/results/{id}/status",
    "/api/results/{id}/events",
    "/api/latest",
    "/api/stream/latest",
    "/api/alerts",
    "/api/alerts/{id}",
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
                    // A range is a slice of the answer's bytes, of its
                    // media type but no document of it (half a GeoJSON
                    // is no JSON): no schema.
                    if status == "206" {
                        for content in response.content.values_mut() {
                            content.schema = None;
                        }
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
            allows only this gateway. Gzipped (once, when the gateway starts) for a request \
            that accepts it.",
        params(
            ("If-None-Match" = Option<String>, Header,
                description = "An `ETag` from an earlier answer: `304` while the page is the same"),
            ("Accept-Encoding" = Option<String>, Header,
                description = "`gzip` to get the page gzipped"),
        ),
        responses(
            (status = 200, description = "The page", content_type = "text/html", body = String,
                headers(
                    ("ETag" = String, description = "The page's version, `\"<version>-gzip\"` when gzipped"),
                    ("Cache-Control" = String, description = "`no-cache`"),
                    ("Content-Security-Policy" = String, description = "Only this gateway"),
                    ("Content-Encoding" = String, description = "`gzip` when the request accepted it"),
                    ("Vary" = String, description = "`accept-encoding`"),
                )),
            (status = 304, description = "Not modified (`If-None-Match` names the representation \
                the request would get)",
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
            ("Accept-Encoding" = Option<String>, Header,
                description = "`gzip` to get the file gzipped (computed once, when the gateway starts)"),
        ),
        responses(
            (status = 200, description = "The file", content((String = "text/css"), (String = "text/javascript"), (String = "image/svg+xml")),
                headers(
                    ("ETag" = String, description = "The file's version, `\"<version>-gzip\"` when gzipped"),
                    ("Cache-Control" = String, description = "`public, max-age=31536000, immutable` with the current `v`, else `no-cache`"),
                    ("Content-Encoding" = String, description = "`gzip` when the request accepted it"),
                    ("Vary" = String, description = "`accept-encoding`"),
                )),
            (status = 304, description = "Not modified (`If-None-Match` names the representation \
                the request would get)",
                headers(("ETag" = String, description = "The file's version"))),
            (status = 404, description = "No such file", body = super::schema::ErrorBody),
        )
    )]
    pub fn asset() {}
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
            page::escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(page::inline("a `<b>` c"), "a <code>&lt;b&gt;</code> c");
        let page = &BUILT.page;
        assert!(page.contains("/api/results/{id}"));
        assert!(!page.contains("<script"), "the page has no script");
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}

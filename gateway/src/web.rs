//! The web page: `GET /` and `GET /assets/{name}`, plain files from
//! `gateway/web/` embedded in the binary (no build step, nothing fetched
//! from elsewhere at run time), so a release binary is self-contained.
//!
//! Caching: every answer carries a strong `ETag` (a hash of the bytes) and
//! honours `If-None-Match` with `304`. The page itself is `no-cache` (always
//! revalidated); it links each asset as `/assets/NAME?v=HASH`, and an asset
//! asked for with its current hash is `immutable` for a year, so a new
//! binary's page never runs an old script. Without (or with a stale) `v`
//! an asset is `no-cache` too.
//!
//! The page only talks to this gateway; its `Content-Security-Policy`
//! enforces that (no CDN, no inline script).

use crate::error::ApiError;
use axum::extract::{Path, RawQuery};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::LazyLock;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// The files under `/assets/`. The country outlines are Natural Earth's,
/// packaged as TopoJSON by `world-atlas` 2.0.2 (`web/geo/SOURCES.md`,
/// public domain and ISC): the map draws them with no tile server.
const ASSETS: [Asset; 7] = [
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../web/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../web/app.js"),
    },
    Asset {
        name: "map.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../web/map.js"),
    },
    Asset {
        name: "timechart.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../web/timechart.js"),
    },
    Asset {
        name: "countries-110m.json",
        content_type: "application/json",
        bytes: include_bytes!("../web/geo/countries-110m.json"),
    },
    Asset {
        name: "countries-50m.json",
        content_type: "application/json",
        bytes: include_bytes!("../web/geo/countries-50m.json"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../web/favicon.svg"),
    },
];

/// The page as written; `/assets/NAME"` links get `?v=HASH` when served.
const INDEX_HTML: &str = include_str!("../web/index.html");

const HTML: &str = "text/html; charset=utf-8";
const REVALIDATE: &str = "no-cache";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The routes of the page, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike std's
/// hasher, so every gateway running the same files names them alike.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn version(bytes: &[u8]) -> String {
    format!("{:016x}", fnv1a(bytes))
}

/// An asset with its version, computed once.
struct Versioned {
    asset: &'static Asset,
    version: String,
}

static VERSIONED: LazyLock<Vec<Versioned>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| Versioned {
            asset,
            version: version(asset.bytes),
        })
        .collect()
});

/// The page with versioned asset links, and its version.
static INDEX: LazyLock<(String, String)> = LazyLock::new(|| {
    let mut html = INDEX_HTML.to_owned();
    for v in VERSIONED.iter() {
        let plain = format!("/assets/{}\"", v.asset.name);
        let pinned = format!("/assets/{}?v={}\"", v.asset.name, v.version);
        html = html.replace(&plain, &pinned);
    }
    let version = version(html.as_bytes());
    (html, version)
});

async fn index(headers: HeaderMap) -> Response {
    let (html, version) = &*INDEX;
    let mut response = file(&headers, HTML, html.as_bytes(), version, REVALIDATE);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn asset(
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let v = VERSIONED
        .iter()
        .find(|v| v.asset.name == name)
        .ok_or(ApiError::NotFound("no such file"))?;
    let asked = query.as_deref().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("v="))
            .map(str::to_owned)
    });
    let cache = if asked.as_deref() == Some(v.version.as_str()) {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    Ok(file(
        &headers,
        v.asset.content_type,
        v.asset.bytes,
        &v.version,
        cache,
    ))
}

/// A `200` with the bytes, or a `304` when the client has them already.
fn file(
    request: &HeaderMap,
    content_type: &'static str,
    bytes: &'static [u8],
    version: &str,
    cache: &'static str,
) -> Response {
    let etag = format!("\"{version}\"");
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*");
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            bytes,
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_asset(name: &str, query: Option<&str>, headers: HeaderMap) -> Response {
        asset(
            Path(name.to_owned()),
            RawQuery(query.map(str::to_owned)),
            headers,
        )
        .await
        .unwrap_or_else(IntoResponse::into_response)
    }

    #[test]
    fn the_page_links_every_asset_with_its_version() {
        let (html, _) = &*INDEX;
        for v in VERSIONED.iter() {
            let link = format!("/assets/{}?v={}\"", v.asset.name, v.version);
            assert!(html.contains(&link), "the page does not link {link}");
        }
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "the page must not load anything from elsewhere"
        );
    }

    #[tokio::test]
    async fn content_types_and_caching() {
        let r = index(HeaderMap::new()).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], HTML);
        assert_eq!(r.headers()[header::CACHE_CONTROL], REVALIDATE);
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));

        for v in VERSIONED.iter() {
            let pinned = format!("v={}", v.version);
            let r = get_asset(v.asset.name, Some(&pinned), HeaderMap::new()).await;
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()[header::CONTENT_TYPE], v.asset.content_type);
            assert_eq!(r.headers()[header::CACHE_CONTROL], IMMUTABLE);
            let stale = get_asset(v.asset.name, Some("v=old"), HeaderMap::new()).await;
            assert_eq!(stale.headers()[header::CACHE_CONTROL], REVALIDATE);
        }
        let missing = get_asset("nope.js", None, HeaderMap::new()).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn if_none_match_answers_304() {
        let r = get_asset("app.js", None, HeaderMap::new()).await;
        let etag = r.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", {}", etag.to_str().unwrap())).unwrap(),
        );
        let r = get_asset("app.js", None, h).await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(r.headers()[header::ETAG], etag);
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(get_asset("app.js", None, h).await.status(), StatusCode::OK);
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

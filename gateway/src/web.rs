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
//! The page's script is a set of JavaScript modules: the page links the
//! entry one, which imports the others as `./NAME.js`. Those imports are
//! pinned the same way when served (`./NAME.js?v=HASH`), and a module's
//! hash covers its pinned imports, so an immutable module never imports
//! a stale one and a change to any module reaches the page's link.
//!
//! The page only talks to this gateway; its `Content-Security-Policy`
//! enforces that (no CDN, no inline script).

use crate::error::ApiError;
use axum::extract::{Path, RawQuery};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::borrow::Cow;
use std::sync::LazyLock;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// The files under `/assets/`. Every `.js` file is a module (`app.js` is
/// the one the page links; it imports the others). The country outlines
/// are Natural Earth's, packaged as TopoJSON by `world-atlas` 2.0.2
/// (`web/geo/SOURCES.md`, public domain and ISC): the map draws them with
/// no tile server.
const ASSETS: [Asset; 18] = [
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../web/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        bytes: include_bytes!("../web/app.js"),
    },
    Asset {
        name: "aggregate.js",
        content_type: JS,
        bytes: include_bytes!("../web/aggregate.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        bytes: include_bytes!("../web/api.js"),
    },
    Asset {
        name: "flow.js",
        content_type: JS,
        bytes: include_bytes!("../web/flow.js"),
    },
    Asset {
        name: "form.js",
        content_type: JS,
        bytes: include_bytes!("../web/form.js"),
    },
    Asset {
        name: "indices.js",
        content_type: JS,
        bytes: include_bytes!("../web/indices.js"),
    },
    Asset {
        name: "map.js",
        content_type: JS,
        bytes: include_bytes!("../web/map.js"),
    },
    Asset {
        name: "now.js",
        content_type: JS,
        bytes: include_bytes!("../web/now.js"),
    },
    Asset {
        name: "result.js",
        content_type: JS,
        bytes: include_bytes!("../web/result.js"),
    },
    Asset {
        name: "state.js",
        content_type: JS,
        bytes: include_bytes!("../web/state.js"),
    },
    Asset {
        name: "status.js",
        content_type: JS,
        bytes: include_bytes!("../web/status.js"),
    },
    Asset {
        name: "table.js",
        content_type: JS,
        bytes: include_bytes!("../web/table.js"),
    },
    Asset {
        name: "timechart.js",
        content_type: JS,
        bytes: include_bytes!("../web/timechart.js"),
    },
    Asset {
        name: "util.js",
        content_type: JS,
        bytes: include_bytes!("../web/util.js"),
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
const JS: &str = "text/javascript; charset=utf-8";
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

/// An asset as served, with its version, computed once: a module's bytes
/// have its imports pinned (see [`pinned`]); the others are the file's.
struct Versioned {
    asset: &'static Asset,
    bytes: Cow<'static, [u8]>,
    /// The hash of `bytes` as served, so that it (and the `ETag`) changes
    /// when a module it imports does.
    version: String,
}

/// Whether an asset is a JavaScript module: all the page's scripts are,
/// and they import one another by file name.
fn is_module(asset: &Asset) -> bool {
    asset.name.ends_with(".js")
}

/// How a module names the module `name`: `from './NAME.js'` (an import
/// or a re-export) or a bare `import './NAME.js'`, in either quote; each
/// as the text before the closing quote, and that quote. Written out
/// rather than parsed: the modules are ours, and a unit test checks that
/// every relative import in them comes out pinned.
fn import_forms(name: &str) -> Vec<(String, char)> {
    let mut forms = Vec::new();
    for keyword in ["from ", "import "] {
        for quote in ['\'', '"'] {
            forms.push((format!("{keyword}{quote}./{name}"), quote));
        }
    }
    forms
}

/// The bytes `asset` is served as: a module's with each module it imports
/// pinned to that module's version (`./NAME.js?v=HASH`), as the page pins
/// its links; `None` while one of those has no version yet (`done` holds
/// the versions so far, in [`ASSETS`]'s order).
fn pinned(asset: &'static Asset, done: &[Option<Versioned>]) -> Option<Cow<'static, [u8]>> {
    if !is_module(asset) {
        return Some(Cow::Borrowed(asset.bytes));
    }
    let original = std::str::from_utf8(asset.bytes)
        .unwrap_or_else(|e| panic!("web/{} is not UTF-8: {e}", asset.name));
    let mut text = original.to_owned();
    for (import, versioned) in ASSETS.iter().zip(done) {
        if !is_module(import) {
            continue;
        }
        let forms = import_forms(import.name);
        if !forms
            .iter()
            .any(|(form, quote)| original.contains(&format!("{form}{quote}")))
        {
            continue;
        }
        let version = &versioned.as_ref()?.version;
        for (form, quote) in forms {
            text = text.replace(
                &format!("{form}{quote}"),
                &format!("{form}?v={version}{quote}"),
            );
        }
    }
    Some(Cow::Owned(text.into_bytes()))
}

/// Every asset's version, a module's after those of the modules it
/// imports (its hash covers theirs). Modules that import one another in
/// a cycle could not be versioned so: the page's do not (a unit test
/// builds this and would fail).
static VERSIONED: LazyLock<Vec<Versioned>> = LazyLock::new(|| {
    let mut done: Vec<Option<Versioned>> = ASSETS.iter().map(|_| None).collect();
    while done.iter().any(Option::is_none) {
        let mut progress = false;
        for (i, asset) in ASSETS.iter().enumerate() {
            if done[i].is_some() {
                continue;
            }
            if let Some(bytes) = pinned(asset, &done) {
                let version = version(&bytes);
                done[i] = Some(Versioned {
                    asset,
                    bytes,
                    version,
                });
                progress = true;
            }
        }
        assert!(
            progress,
            "the page's modules import one another in a cycle: {:?}",
            ASSETS
                .iter()
                .zip(&done)
                .filter(|(_, v)| v.is_none())
                .map(|(a, _)| a.name)
                .collect::<Vec<_>>()
        );
    }
    done.into_iter().flatten().collect()
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
        &v.bytes,
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

    /// A served module's text.
    fn module_text(v: &Versioned) -> &str {
        std::str::from_utf8(&v.bytes).expect("a module is UTF-8")
    }

    /// The `./...` strings of a module (its relative import specifiers,
    /// as written or pinned), in either quote.
    fn relative_specifiers(text: &str) -> Vec<&str> {
        let mut specs = Vec::new();
        for quote in ['\'', '"'] {
            let open = format!("{quote}./");
            for (at, _) in text.match_indices(&open) {
                let rest = &text[at + 1..];
                let end = rest.find(quote).expect("a closed string");
                specs.push(&rest[..end]);
            }
        }
        specs
    }

    /// Every asset is reachable, with its version: linked from the page,
    /// or imported by a module.
    #[test]
    fn the_page_links_every_asset_with_its_version() {
        let (html, _) = &*INDEX;
        for v in VERSIONED.iter() {
            let link = format!("/assets/{}?v={}\"", v.asset.name, v.version);
            // Or a module imports it (pinned, as the next test checks).
            let import = format!("./{}?v={}", v.asset.name, v.version);
            let imported = VERSIONED
                .iter()
                .filter(|m| is_module(m.asset))
                .any(|m| relative_specifiers(module_text(m)).contains(&import.as_str()));
            assert!(
                html.contains(&link) || imported,
                "neither the page links {link} nor a module imports it"
            );
        }
        assert!(
            html.contains("<script type=\"module\" src=\"/assets/app.js?v="),
            "the page runs app.js as a module"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "the page must not load anything from elsewhere"
        );
    }

    /// Every relative import of every module as served names an asset,
    /// pinned to its current version, so a module cached as immutable
    /// never runs with a stale one; and a module's version is the hash of
    /// those pinned bytes (its `ETag` changes with any module it imports).
    #[test]
    fn modules_import_modules_by_their_current_versions() {
        let mut imports = 0;
        for m in VERSIONED.iter().filter(|m| is_module(m.asset)) {
            let name = m.asset.name;
            let text = module_text(m);
            assert_eq!(
                m.version,
                version(&m.bytes),
                "{name}: version of the served bytes"
            );
            for spec in relative_specifiers(text) {
                let (file, query) = spec.split_once('?').unwrap_or((spec, ""));
                let file = file.trim_start_matches("./");
                let import = VERSIONED
                    .iter()
                    .find(|v| v.asset.name == file)
                    .unwrap_or_else(|| panic!("{name} imports {spec}, which is not an asset"));
                assert!(
                    is_module(import.asset),
                    "{name} imports {spec}, not a module"
                );
                assert_eq!(
                    query,
                    format!("v={}", import.version),
                    "{name} imports {spec}: not pinned to {file}'s current version"
                );
                imports += 1;
            }
            // No other kind of specifier (bare, absolute, `../`) slips by
            // unpinned.
            for keyword in ["from ", "import "] {
                for quote in ['\'', '"'] {
                    let open = format!("{keyword}{quote}");
                    for (at, _) in text.match_indices(&open) {
                        assert!(
                            text[at + open.len()..].starts_with("./"),
                            "{name}: an import that is not ./NAME.js at byte {at}"
                        );
                    }
                }
            }
        }
        assert!(imports > 0, "the page's modules import one another");
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
            // The bytes as served (a module's with its imports pinned), and
            // the hash of those.
            assert_eq!(r.headers()[header::ETAG], format!("\"{}\"", v.version));
            let body = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            assert_eq!(&body[..], &*v.bytes, "{}", v.asset.name);
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

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
//! Compression: the page and every asset are gzipped once, at the best
//! level, when their versions are computed ([`prepare`], which the
//! gateway calls on a blocking thread before it serves), and kept only
//! when smaller. A request whose `Accept-Encoding` takes gzip gets those
//! bytes (`Content-Encoding: gzip`), any other the plain ones; either way
//! with `Vary: Accept-Encoding`. The gzipped bytes are another
//! representation, so they have their own strong `ETag`, `"<version>-gzip"`
//! (as a gzipped answer's, see `api.rs`), and `If-None-Match` answers `304`
//! only for the tag of the representation the request would get. The
//! router's compression layer leaves these alone (it compresses answers
//! only, and never a body already encoded).
//!
//! The page only talks to this gateway; its `Content-Security-Policy`
//! enforces that (no CDN, no inline script).

use crate::error::ApiError;
use crate::gzip::GZIP_TAG_SUFFIX;
use axum::extract::{Path, RawQuery};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use flate2::Compression;
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
const ASSETS: [Asset; 20] = [
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
        name: "stream.js",
        content_type: JS,
        bytes: include_bytes!("../web/stream.js"),
    },
    Asset {
        name: "parse.js",
        content_type: JS,
        bytes: include_bytes!("../web/parse.js"),
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
    /// `bytes` gzipped, when that is smaller.
    gzip: Option<Vec<u8>>,
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
                let gzip = crate::gzip::compressed(&bytes, Compression::best());
                done[i] = Some(Versioned {
                    asset,
                    bytes,
                    version,
                    gzip,
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

/// The page as served: with versioned asset links, its version and its
/// gzip.
struct Page {
    html: String,
    version: String,
    /// `html` gzipped, when that is smaller.
    gzip: Option<Vec<u8>>,
}

static INDEX: LazyLock<Page> = LazyLock::new(|| {
    let mut html = INDEX_HTML.to_owned();
    for v in VERSIONED.iter() {
        let plain = format!("/assets/{}\"", v.asset.name);
        let pinned = format!("/assets/{}?v={}\"", v.asset.name, v.version);
        html = html.replace(&plain, &pinned);
    }
    let version = version(html.as_bytes());
    let gzip = crate::gzip::compressed(html.as_bytes(), Compression::best());
    Page {
        html,
        version,
        gzip,
    }
});

/// Computes every file as served (versions, pinned imports, gzip: about
/// a megabyte to compress) so that no request pays it. Blocking: the
/// gateway runs it on a blocking thread before it starts serving.
pub fn prepare() {
    LazyLock::force(&INDEX);
}

async fn index(headers: HeaderMap) -> Response {
    let page = &*INDEX;
    let mut response = file(
        &headers,
        HTML,
        page.html.as_bytes(),
        page.gzip.as_deref(),
        &page.version,
        REVALIDATE,
    );
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
        v.gzip.as_deref(),
        &v.version,
        cache,
    ))
}

/// A `200` with the bytes, gzipped when the request accepts that and
/// there are `gzip` bytes, or a `304` when the client has that
/// representation already.
fn file(
    request: &HeaderMap,
    content_type: &'static str,
    plain: &'static [u8],
    gzip: Option<&'static [u8]>,
    version: &str,
    cache: &'static str,
) -> Response {
    let gzip = gzip.filter(|_| crate::gzip::accepts(request));
    let etag = if gzip.is_some() {
        format!("\"{version}{GZIP_TAG_SUFFIX}\"")
    } else {
        format!("\"{version}\"")
    };
    // Weak comparison (RFC 9110 §13.1.2), against the tag of the
    // representation this request gets: a cache holding the other one
    // must not be told that it is fresh.
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
        let mut response = (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            gzip.unwrap_or(plain),
        )
            .into_response();
        if gzip.is_some() {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, header::ACCEPT_ENCODING.into());
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
        let html = &INDEX.html;
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

    fn with(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(name, HeaderValue::from_static(value));
        }
        h
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut plain)
            .expect("valid gzip");
        plain
    }

    /// The page (`/`) and every asset as served: name, plain bytes and
    /// gzip bytes.
    type Served = (&'static str, &'static [u8], Option<&'static [u8]>);

    fn everything() -> Vec<Served> {
        let mut all = vec![("/", INDEX.html.as_bytes(), INDEX.gzip.as_deref())];
        for v in VERSIONED.iter() {
            all.push((v.asset.name, &*v.bytes, v.gzip.as_deref()));
        }
        all
    }

    async fn get(name: &str, headers: HeaderMap) -> Response {
        if name == "/" {
            index(headers).await
        } else {
            get_asset(name, None, headers).await
        }
    }

    fn version_of(name: &str) -> &'static str {
        if name == "/" {
            &INDEX.version
        } else {
            &VERSIONED
                .iter()
                .find(|v| v.asset.name == name)
                .expect("an asset")
                .version
        }
    }

    /// With gzip accepted, the page and every asset that gains from it
    /// (all but a tiny file could not) come gzipped, with their own tag,
    /// and decompress to exactly the plain bytes.
    #[tokio::test]
    async fn gzip_when_accepted_decompresses_to_the_plain_bytes() {
        let accepting = || with(&[(header::ACCEPT_ENCODING, "gzip, deflate, br, zstd")]);
        for (name, plain, gzip) in everything() {
            let r = get(name, accepting()).await;
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            assert_eq!(r.headers()[header::VARY], "accept-encoding", "{name}");
            let version = version_of(name);
            let body = |r: Response| async {
                axum::body::to_bytes(r.into_body(), usize::MAX)
                    .await
                    .unwrap()
            };
            match gzip {
                Some(gzip) => {
                    assert!(gzip.len() < plain.len(), "{name}");
                    assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip", "{name}");
                    assert_eq!(
                        r.headers()[header::ETAG],
                        format!("\"{version}-gzip\""),
                        "{name}"
                    );
                    let sent = body(r).await;
                    assert_eq!(&sent[..], gzip, "{name}");
                    assert_eq!(gunzip(&sent), plain, "{name}: not the plain bytes");
                }
                None => {
                    assert!(plain.len() < 1024, "{name} should gain from gzip");
                    assert!(!r.headers().contains_key(header::CONTENT_ENCODING));
                    assert_eq!(r.headers()[header::ETAG], format!("\"{version}\""));
                    assert_eq!(&body(r).await[..], plain, "{name}");
                }
            }
        }
    }

    /// A request that does not take gzip gets the plain bytes, their tag,
    /// and `Vary` all the same.
    #[tokio::test]
    async fn plain_when_gzip_is_not_accepted() {
        let refusing: [&[(header::HeaderName, &'static str)]; 5] = [
            &[],
            &[(header::ACCEPT_ENCODING, "identity")],
            &[(header::ACCEPT_ENCODING, "gzip;q=0, deflate")],
            &[(header::ACCEPT_ENCODING, "br, *;q=0")],
            &[(header::ACCEPT_ENCODING, "*, gzip;q=0")],
        ];
        for headers in refusing {
            for (name, plain, _) in everything() {
                let r = get(name, with(headers)).await;
                assert_eq!(r.status(), StatusCode::OK, "{name} {headers:?}");
                assert!(
                    !r.headers().contains_key(header::CONTENT_ENCODING),
                    "{name} {headers:?}"
                );
                assert_eq!(r.headers()[header::VARY], "accept-encoding");
                assert_eq!(
                    r.headers()[header::ETAG],
                    format!("\"{}\"", version_of(name))
                );
                let body = axum::body::to_bytes(r.into_body(), usize::MAX)
                    .await
                    .unwrap();
                assert_eq!(&body[..], plain, "{name} {headers:?}");
            }
        }
    }

    /// `If-None-Match` answers `304` for the tag of the representation the
    /// request would get, with that tag, `Vary` and `Cache-Control`; the
    /// other representation's tag gets that representation.
    #[tokio::test]
    async fn if_none_match_names_one_representation() {
        let version = version_of("app.js");
        let plain_tag = format!("\"{version}\"");
        let gzip_tag = format!("\"{version}-gzip\"");
        let ask = |tag: &str, accept: &'static str| {
            let mut h = with(&[(header::ACCEPT_ENCODING, accept)]);
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(tag).unwrap());
            h
        };
        for (tag, accept, status, etag) in [
            (&gzip_tag, "gzip", StatusCode::NOT_MODIFIED, &gzip_tag),
            (&plain_tag, "identity", StatusCode::NOT_MODIFIED, &plain_tag),
            (&gzip_tag, "identity", StatusCode::OK, &plain_tag),
            (&plain_tag, "gzip", StatusCode::OK, &gzip_tag),
        ] {
            let r = get_asset("app.js", None, ask(tag, accept)).await;
            assert_eq!(r.status(), status, "{tag} {accept}");
            assert_eq!(&r.headers()[header::ETAG], etag.as_str(), "{tag} {accept}");
            assert_eq!(r.headers()[header::VARY], "accept-encoding");
            assert_eq!(r.headers()[header::CACHE_CONTROL], REVALIDATE);
        }
        let weak = format!("\"x\", W/{gzip_tag}");
        let r = index(ask(&weak.replace(version, &INDEX.version), "gzip")).await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }

    /// What the page weighs, plain and gzipped (`cargo test -p
    /// airq-gateway --lib -- sizes --nocapture` prints it).
    #[test]
    fn sizes() {
        let sized = |plain: &[u8], gzip: Option<&[u8]>| {
            (plain.len(), gzip.map_or(plain.len(), <[u8]>::len))
        };
        let mut page = sized(INDEX.html.as_bytes(), INDEX.gzip.as_deref());
        println!("{:<22} {:>9} {:>9}", "file", "plain", "gzip");
        println!("{:<22} {:>9} {:>9}", "/", page.0, page.1);
        for v in VERSIONED.iter() {
            let (plain, gzip) = sized(&v.bytes, v.gzip.as_deref());
            println!("{:<22} {plain:>9} {gzip:>9}", v.asset.name);
            if v.asset.name != "countries-50m.json" {
                page.0 += plain;
                page.1 += gzip;
            }
        }
        println!(
            "{:<22} {:>9} {:>9}",
            "page + assets but 50m", page.0, page.1
        );
        assert!(page.1 < page.0 / 2);
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

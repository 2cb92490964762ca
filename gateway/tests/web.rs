//! The web page as the gateway process serves it: `/` and every asset the
//! page links, with their content types and caching headers.

#![cfg(unix)]

mod support;

use reqwest::{header, StatusCode};
use support::client;
use support::{gateway, load_sample};

/// The `/assets/...` links of `html`, in order.
fn asset_links(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|part| part.starts_with("/assets/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_their_types() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("airq.db");
    load_sample(&db);
    let gw = gateway(&db, &[]);
    let http = client();

    let r = http.get(gw.url("/")).send().await.expect("GET /");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("ASCII CSP");
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    let html = r.text().await.expect("page body");
    assert!(html.contains("<form id=\"query\""), "not the query page");

    let links = asset_links(&html);
    let want = [
        ("/assets/app.css?v=", "text/css; charset=utf-8"),
        ("/assets/app.js?v=", "text/javascript; charset=utf-8"),
        ("/assets/favicon.svg?v=", "image/svg+xml"),
    ];
    for (prefix, content_type) in want {
        let link = links
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("the page does not link {prefix}…: {links:?}"));
        let r = http.get(gw.url(link)).send().await.expect("GET asset");
        assert_eq!(r.status(), StatusCode::OK, "{link}");
        assert_eq!(r.headers()[header::CONTENT_TYPE], content_type, "{link}");
        assert_eq!(
            r.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable",
            "{link}: a versioned link is cached for good"
        );
        let etag = r.headers()[header::ETAG].clone();
        assert!(!r.bytes().await.expect("asset body").is_empty());

        // Revalidation answers 304 without a body.
        let again = http
            .get(gw.url(link))
            .header(header::IF_NONE_MATCH, etag.clone())
            .send()
            .await
            .expect("conditional GET");
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{link}");
        assert_eq!(again.headers()[header::ETAG], etag);

        // Without its version an asset is revalidated every time.
        let plain = link.split('?').next().unwrap_or_default();
        let r = http.get(gw.url(plain)).send().await.expect("GET asset");
        assert_eq!(r.headers()[header::CONTENT_TYPE], content_type, "{plain}");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache", "{plain}");

        let head = http.head(gw.url(link)).send().await.expect("HEAD asset");
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(head.headers()[header::CONTENT_TYPE], content_type);
    }

    let missing = http
        .get(gw.url("/assets/nope.js"))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers()[header::CONTENT_TYPE], "application/json");

    let post = http.post(gw.url("/")).send().await.expect("POST /");
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
}

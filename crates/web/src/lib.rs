//! The web dashboard `serve` answers at `/`: a single page (plain HTML, JavaScript modules and
//! CSS, no build step) that talks to the `/v1` API with the user's token.
//!
//! Every file is embedded in the binary ([`ASSETS`]), so the one binary still does everything.
//! The chart library is TradingView's `lightweight-charts`, its npm package's standalone
//! production build vendored byte for byte in `assets/vendor/` (`web/vendor.sh` re-fetches it
//! from npm and checks it).
//!
//! Responses carry a Content-Security-Policy that allows nothing but this origin (no inline
//! script, no inline style sheet, no framing), `nosniff`, no referrer, and an `ETag` with
//! `Cache-Control: no-cache` (browsers revalidate; an unchanged file is a `304`).

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy of every dashboard response: this origin only. `connect-src 'self'` covers the
/// API, its event stream and its WebSocket on the same host and port; the chart draws on
/// canvases (`img-src data:` for the images it may create from them).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The path under `/assets/` (`index.html` is also `/`).
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../assets/", $path)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Every file the dashboard is made of (a test checks the `assets/` directory holds no other).
pub const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("app.css", CSS),
    asset!("favicon.svg", SVG),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/alerts.js", JS),
    asset!("js/form.js", JS),
    asset!("js/live.js", JS),
    asset!("js/chart.js", JS),
    asset!("js/bots.js", JS),
    asset!("js/deliveries.js", JS),
    asset!("vendor/lightweight-charts.standalone.production.mjs", JS),
];

/// Files kept beside the assets that are not served (licences).
pub const NOT_SERVED: &[&str] = &["vendor/lightweight-charts.LICENSE"];

/// The asset at `path` (under `/assets/`).
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// `/` (the page) and `/assets/{path}`; anything else under `/assets/` is a 404.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{*path}", get(file))
        .route("/assets/", get(|| std::future::ready(not_found())))
}

async fn index(headers: HeaderMap) -> Response {
    match asset("index.html") {
        Some(a) => respond(a, &headers),
        None => not_found(),
    }
}

async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match asset(&path) {
        Some(a) if a.path != "index.html" => respond(a, &headers),
        _ => not_found(),
    }
}

fn etag(a: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{:016x}\"", fnv1a(a.body)))
            .collect()
    });
    ASSETS
        .iter()
        .position(|x| x.path == a.path)
        .and_then(|i| tags.get(i))
        .map_or("\"0\"", String::as_str)
}

/// FNV-1a, 64 bits: enough to tell versions of a file apart (not a security property).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn respond(a: &'static Asset, request: &HeaderMap) -> Response {
    let tag = etag(a);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = a.body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(a.content_type),
        );
        r
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    security_headers(h);
    response
}

fn not_found() -> Response {
    let mut r = (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found",
    )
        .into_response();
    security_headers(r.headers_mut());
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        router()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body(r: Response) -> Vec<u8> {
        axum::body::to_bytes(r.into_body(), 4 << 20)
            .await
            .unwrap()
            .to_vec()
    }

    fn header<'a>(r: &'a Response, name: &str) -> &'a str {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn the_page_is_served_at_the_root_with_its_policy() {
        let r = get("/", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
        let csp = header(&r, "content-security-policy");
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe"), "no unsafe-inline/eval: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        assert_eq!(header(&r, "x-frame-options"), "DENY");
        assert_eq!(header(&r, "cache-control"), "no-cache");
        let html = String::from_utf8(body(r).await).unwrap();
        assert!(html.contains("<script type=\"module\" src=\"/assets/js/app.js\">"));
        // Nothing inline: the policy would block it.
        assert!(!html.contains("<script>") && !html.contains("style=\""));
        assert!(!html.contains("onclick=") && !html.contains("onload="));
    }

    #[tokio::test]
    async fn every_asset_has_its_content_type() {
        for (path, ty) in [
            ("/assets/app.css", "text/css; charset=utf-8"),
            ("/assets/js/app.js", "text/javascript; charset=utf-8"),
            (
                "/assets/vendor/lightweight-charts.standalone.production.mjs",
                "text/javascript; charset=utf-8",
            ),
            ("/assets/favicon.svg", "image/svg+xml"),
        ] {
            let r = get(path, &[]).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&r, "content-type"), ty, "{path}");
            assert!(header(&r, "content-security-policy").contains("default-src 'self'"));
            assert!(header(&r, "etag").starts_with('"'), "{path}");
        }
        for a in ASSETS {
            let r = get(&format!("/assets/{}", a.path), &[]).await;
            let expect = if a.path == "index.html" {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            assert_eq!(r.status(), expect, "{}", a.path);
            if expect == StatusCode::OK {
                assert_eq!(body(r).await, a.body, "{}", a.path);
            }
        }
    }

    #[tokio::test]
    async fn unknown_assets_are_404() {
        for path in [
            "/assets/nope.js",
            "/assets/js/../app.css",
            "/assets/vendor/lightweight-charts.LICENSE",
            "/assets/",
            "/assets/%2e%2e/Cargo.toml",
        ] {
            let r = get(path, &[]).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(header(&r, "content-security-policy").contains("default-src 'self'"));
        }
    }

    #[tokio::test]
    async fn an_unchanged_file_is_304() {
        let r = get("/assets/app.css", &[]).await;
        let tag = header(&r, "etag").to_owned();
        let again = get("/assets/app.css", &[("if-none-match", &tag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(body(again).await.is_empty());
        let other = get("/assets/app.css", &[("if-none-match", "\"other\"")]).await;
        assert_eq!(other.status(), StatusCode::OK);
    }

    /// Every file under `assets/` is served (or listed as not served), and every served one
    /// exists: a new file cannot be forgotten.
    #[test]
    fn the_table_lists_every_file() {
        fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, root, out);
                } else {
                    let rel = p.strip_prefix(root).unwrap().to_string_lossy();
                    out.push(rel.replace('\\', "/"));
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut files = Vec::new();
        walk(&root, &root, &mut files);
        files.sort();
        let mut listed: Vec<String> = ASSETS
            .iter()
            .map(|a| a.path.to_owned())
            .chain(NOT_SERVED.iter().map(|p| (*p).to_owned()))
            .collect();
        listed.sort();
        assert_eq!(files, listed);
    }

    /// The page's modules import only modules that are served.
    #[test]
    fn imports_resolve() {
        for a in ASSETS.iter().filter(|a| a.path.starts_with("js/")) {
            let text = std::str::from_utf8(a.body).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let Some(from) = line.split(" from ").nth(1) else {
                    continue;
                };
                let target = from.trim().trim_end_matches(';').trim_matches(['\'', '"']);
                let resolved = if let Some(rest) = target.strip_prefix("./") {
                    format!("js/{rest}")
                } else if let Some(rest) = target.strip_prefix("../") {
                    rest.to_owned()
                } else {
                    panic!("{}: import of {target}", a.path)
                };
                assert!(asset(&resolved).is_some(), "{}: {target}", a.path);
            }
        }
    }
}

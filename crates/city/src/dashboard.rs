//! The city dashboard: static assets embedded in the binary (no CDN, works offline), served at `/`
//! and `/dashboard/*`, plus `/dashboard/config.json` and the city @context document.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

/// The embedded assets: file name, content, media type.
const ASSETS: &[(&str, &[u8], &str)] = &[
    ("index.html", include_bytes!("../dashboard/index.html"), "text/html; charset=utf-8"),
    ("app.js", include_bytes!("../dashboard/app.js"), "text/javascript; charset=utf-8"),
    ("style.css", include_bytes!("../dashboard/style.css"), "text/css; charset=utf-8"),
];

/// Settings of the dashboard.
#[derive(Debug, Clone, Default)]
pub struct DashboardConfig {
    /// A raster tile URL template (`https://…/{z}/{x}/{y}.png`) drawn under the map, where the
    /// city has a tile server; without it the map draws the city outline only.
    pub tile_url: Option<String>,
    /// The attribution the tiles require.
    pub tile_attribution: Option<String>,
    /// Serve the assets from this directory instead of the embedded copy (for development).
    pub dir: Option<PathBuf>,
}

/// The tenants the dashboard offers: Tomakomai and the four East Iburi towns.
const TENANTS: &[(&str, &str, &str, &str)] = &[
    ("", "012131", "苫小牧市", "Tomakomai"),
    ("shiraoi", "015784", "白老町", "Shiraoi"),
    ("atsuma", "015814", "厚真町", "Atsuma"),
    ("abira", "015857", "安平町", "Abira"),
    ("mukawa", "015865", "むかわ町", "Mukawa"),
];

/// The routes of the dashboard, to be merged into the broker's router.
pub fn router<S: Clone + Send + Sync + 'static>(config: DashboardConfig) -> Router<S> {
    let config = Arc::new(config);
    Router::new()
        .route("/", get(|State(c): State<Arc<DashboardConfig>>| async move { asset(&c, "index.html").await }))
        .route("/dashboard/config.json", get(client_config))
        .route(
            "/dashboard/{file}",
            get(|State(c): State<Arc<DashboardConfig>>, Path(f): Path<String>| async move { asset(&c, &f).await }),
        )
        .route("/haskap/v1/contexts/city/v1.jsonld", get(city_context))
        .with_state(config)
}

async fn asset(config: &DashboardConfig, name: &str) -> Response {
    let Some((_, embedded, mime)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let body = match &config.dir {
        Some(dir) => match std::fs::read(dir.join(name)) {
            Ok(bytes) => bytes,
            Err(e) => return (StatusCode::NOT_FOUND, e.to_string()).into_response(),
        },
        None => embedded.to_vec(),
    };
    let cache = if config.dir.is_some() { "no-store" } else { "no-cache" };
    let policy = content_security_policy(config.tile_url.as_deref());
    ([(header::CONTENT_TYPE, *mime), (header::CACHE_CONTROL, cache), (header::CONTENT_SECURITY_POLICY, &policy)], body)
        .into_response()
}

/// The dashboard's Content-Security-Policy: its own files and API only (no inline script or
/// style, no framing), plus images from the tile server when one is configured.
fn content_security_policy(tile_url: Option<&str>) -> String {
    let tiles = tile_url.and_then(tile_origin).map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:{tiles}; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The origin of a tile URL template as a CSP source (`https://{s}.tile.example/{z}/…` →
/// `https://*.tile.example`), if it has one that can be written.
fn tile_origin(template: &str) -> Option<String> {
    let (scheme, rest) = template.split_once("://")?;
    let host = rest.split('/').next()?;
    let host: Vec<String> =
        host.split('.').map(|label| if label.contains('{') { "*".to_string() } else { label.to_string() }).collect();
    let host = host.join(".");
    let valid = host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'*'));
    (matches!(scheme, "http" | "https") && valid && !host.is_empty()).then(|| format!("{scheme}://{host}"))
}

async fn client_config(State(config): State<Arc<DashboardConfig>>) -> Response {
    let tenants: Vec<_> =
        TENANTS.iter().map(|(id, code, ja, en)| json!({"id": id, "code": code, "ja": ja, "en": en})).collect();
    let body = json!({
        "tileUrl": config.tile_url,
        "tileAttribution": config.tile_attribution,
        "contextUrl": haskap_model::builtin::CITY_CONTEXT_URL,
        "tenants": tenants,
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn city_context() -> Response {
    let doc = haskap_model::builtin::BUILTIN_CONTEXTS
        .iter()
        .find(|(url, _)| *url == haskap_model::builtin::CITY_CONTEXT_URL)
        .map_or("", |(_, doc)| *doc);
    ([(header::CONTENT_TYPE, "application/ld+json")], doc).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_servers_are_allowed_images_and_nothing_else() {
        assert_eq!(
            tile_origin("https://{s}.tile.example.org/{z}/{x}/{y}.png").as_deref(),
            Some("https://*.tile.example.org")
        );
        assert_eq!(
            tile_origin("http://tiles.city.example:8080/{z}/{x}/{y}.png").as_deref(),
            Some("http://tiles.city.example:8080")
        );
        assert_eq!(tile_origin("javascript:alert(1)"), None);
        assert_eq!(tile_origin("https://a b/"), None);
        let policy = content_security_policy(Some("https://tiles.example/{z}/{x}/{y}.png"));
        assert!(policy.contains("img-src 'self' data: https://tiles.example;"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(!content_security_policy(None).contains("https:"));
    }
}

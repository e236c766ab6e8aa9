//! What every response and request goes through before any route, the dashboard's included:
//! the `Host` check against DNS rebinding, a declared body over the limit refused before it is
//! sent, security headers, CORS as configured (off by default), and a debug log line.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use haskap_model::ErrorKind;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::AppState;
use crate::error::ApiError;

/// The Content-Security-Policy of responses that set none: nothing may be loaded or framed
/// (API answers are data, never documents). The dashboard sets its own.
const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Wraps `router` (the API and the dashboard) in the guards.
pub fn harden(router: Router, app: &AppState) -> Router {
    let router = router.layer(middleware::from_fn_with_state(app.clone(), guard));
    match cors(&app.config.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// The CORS layer for `origins` (`*` allows any), or none when the list is empty.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()))
    };
    let names = |list: &[&'static str]| list.iter().map(|h| header::HeaderName::from_static(h)).collect::<Vec<_>>();
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers(names(&[
                "accept",
                "authorization",
                "content-type",
                "link",
                "ngsild-tenant",
                "ngsild-scope",
                "x-api-key",
                "x-auth-token",
                "last-event-id",
            ]))
            .expose_headers(names(&[
                "link",
                "location",
                "ngsild-results-count",
                "ngsild-tenant",
                "ngsild-warning",
                "retry-after",
            ]))
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Checks a request, runs it, secures and logs (at debug level) its response.
async fn guard(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| (req.method().clone(), req.uri().path().to_string()));
    let resp = match check(&app, &req) {
        Err(e) => e.into_response(),
        Ok(()) => next.run(req).await,
    };
    if let Some((method, path)) = logged {
        tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
    }
    secured(resp)
}

/// Refuses a request whose `Host` is not this broker's (when the allowed hosts are set) or whose
/// declared body is over the limit (at once, before a client waiting for `100 Continue` sends it).
fn check(app: &AppState, req: &Request) -> Result<(), ApiError> {
    if let Some(allowed) = &app.config.allowed_hosts
        && let Some(host) = req.headers().get(header::HOST)
    {
        let name = host.to_str().ok().map(host_name).unwrap_or_default();
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(name)) {
            return Err(ApiError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "Host {} is not a name of this broker; allowed are {} (see --allowed-host)",
                    String::from_utf8_lossy(host.as_bytes()),
                    allowed.join(", ")
                ),
            ));
        }
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let limit = app.config.body_limit as u64;
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        ));
    }
    Ok(())
}

/// The host name of a `Host` value, without its port (`[::1]:1026` → `[::1]`).
fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Adds the security headers a response does not set itself.
fn secured(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(DEFAULT_CSP));
    h.entry(header::X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::X_FRAME_OPTIONS).or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::REFERRER_POLICY).or_insert(HeaderValue::from_static("strict-origin-when-cross-origin"));
    resp
}

/// The host names a broker listening on `listen` answers to when nothing else is configured:
/// on a loopback address, only the loopback names and the public URL's host (a web page from
/// another site cannot then reach it through DNS rebinding); on any other address, any name.
pub fn default_allowed_hosts(listen: std::net::SocketAddr, public_url: &str, extra: &[String]) -> Option<Vec<String>> {
    if !listen.ip().is_loopback() && extra.is_empty() {
        return None;
    }
    let mut hosts: Vec<String> = extra.to_vec();
    if listen.ip().is_loopback() {
        hosts.extend(["localhost", "127.0.0.1", "[::1]"].map(String::from));
    }
    let public_host = public_url.split_once("://").map_or(public_url, |(_, rest)| rest);
    let public_host = public_host.split(['/', '?', '#']).next().unwrap_or_default();
    let public_host = host_name(public_host.rsplit_once('@').map_or(public_host, |(_, h)| h));
    if !public_host.is_empty() {
        hosts.push(public_host.to_string());
    }
    hosts.sort();
    hosts.dedup();
    Some(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("localhost:1026"), "localhost");
        assert_eq!(host_name("[::1]:1026"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("example.org"), "example.org");
    }

    #[test]
    fn loopback_brokers_answer_to_their_own_names_only() {
        let local: std::net::SocketAddr = "127.0.0.1:1026".parse().unwrap();
        let hosts = default_allowed_hosts(local, "https://broker.city.example:8443/base", &[]).unwrap();
        assert_eq!(hosts, ["127.0.0.1", "[::1]", "broker.city.example", "localhost"]);
        let any: std::net::SocketAddr = "0.0.0.0:1026".parse().unwrap();
        assert_eq!(default_allowed_hosts(any, "http://0.0.0.0:1026", &[]), None);
        assert_eq!(
            default_allowed_hosts(any, "http://x", &["api.city.example".into()]).unwrap(),
            ["api.city.example", "x"]
        );
    }
}

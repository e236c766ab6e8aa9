//! Turning an HTTP request into what the NGSI-LD handlers need: negotiated media types, tenant,
//! query parameters, the JSON body and the active @context, checked in the order the standard
//! (and the ETSI suite) expects: 406/415, unknown parameters, JSON syntax, then content.
//!
//! Bad input is refused, not guessed: query parameters must be valid UTF-8, the boolean ones
//! (`local`, `entityMap`, `count`, `deleteAll`, `details`) `true` or `false` and the numeric ones
//! (`limit`, `offset`, `lastN`) non-negative integers; a body may not repeat a key in an object;
//! @context URLs (Link header or body) must be absolute URIs within the URL length limit.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, header};
use haskap_model::jsonld::ActiveContext;
use haskap_model::parse::Limits;
use haskap_model::{ErrorKind, NgsiError};
use serde_json::Value;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// The `rel` of a JSON-LD context Link header.
pub const LINK_REL: &str = "http://www.w3.org/ns/json-ld#context";

/// The representation a client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// `application/json`: the context goes in a Link header.
    Json,
    /// `application/ld+json`: the context goes in the body.
    JsonLd,
    /// `application/geo+json` (entity retrieval and query only).
    GeoJson,
}

/// The media type of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    /// `application/json` (or `application/merge-patch+json`): the context comes from Link.
    Json,
    /// `application/ld+json`: the context is in the body.
    JsonLd,
}

/// How the response should name its @context.
#[derive(Debug, Clone)]
pub enum ContextRef {
    /// The core context (no client context).
    Core,
    /// A context URL (from the Link header or a string `@context`).
    Url(String),
    /// An inline context from an ld+json body.
    Inline(Value),
}

/// A parsed NGSI-LD request.
pub struct Req {
    /// The app.
    pub app: AppState,
    /// The tenant ("" for the default tenant).
    pub tenant: String,
    /// Whether the `NGSILD-Tenant` header was given.
    pub tenant_given: bool,
    /// The negotiated response representation.
    pub accept: Accept,
    /// The request body's media type, if it has a body.
    pub body_type: Option<BodyType>,
    /// Query parameters (last value wins).
    pub query: HashMap<String, String>,
    /// The JSON body, if any.
    pub body: Option<Value>,
    /// The URL of the Link header, if any.
    pub link: Option<String>,
    /// The active context of the request.
    pub ctx: Arc<ActiveContext>,
    /// What to name as @context in the response.
    pub ctx_ref: ContextRef,
}

/// The parts of an HTTP request every NGSI-LD handler starts from (an extractor).
pub struct Raw {
    /// The app.
    pub app: AppState,
    /// The method.
    pub method: Method,
    /// The URI (path and query).
    pub uri: axum::http::Uri,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, not read yet.
    pub body: Body,
}

impl axum::extract::FromRequest<AppState> for Raw {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        Ok(Raw { app: state.clone(), method: parts.method, uri: parts.uri, headers: parts.headers, body })
    }
}

/// What an endpoint accepts.
pub struct Spec<'a> {
    /// Query parameters the endpoint knows.
    pub params: &'a [&'a str],
    /// Whether `application/geo+json` is an acceptable response.
    pub geo: bool,
    /// Whether the body carries entities whose @context applies to the request (single entity or
    /// attribute payloads); batch bodies resolve contexts per entity.
    pub body_context: bool,
}

impl Req {
    /// Parses and checks a request for an endpoint described by `spec`.
    pub async fn parse(
        app: &AppState,
        method: &Method,
        headers: &HeaderMap,
        raw_query: Option<&str>,
        body: Body,
        spec: Spec<'_>,
    ) -> ApiResult<Req> {
        let accept = negotiate_accept(headers, spec.geo)?;
        let has_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        let body_type = if has_body { Some(body_type(headers, method)?) } else { None };
        let query = parse_query(raw_query, spec.params)?;
        check_typed_params(&query)?;
        let (tenant, tenant_given) = tenant(headers)?;
        let link = link_context(headers, &app.config.limits)?;
        let body = if has_body { Some(read_json(app, body).await?) } else { None };

        let mut ctx_ref = match &link {
            Some(url) => ContextRef::Url(url.clone()),
            None => ContextRef::Core,
        };
        if let Some(bt) = body_type {
            if bt == BodyType::JsonLd && link.is_some() {
                return Err(bad(
                    "a Link header must not be sent with Content-Type application/ld+json; put the @context in the body",
                ));
            }
            if spec.body_context {
                if !body.as_ref().is_some_and(Value::is_object) {
                    return Err(ApiError(NgsiError::invalid("the request body must be a JSON object")));
                }
                let inline = body.as_ref().and_then(|b| b.get("@context")).cloned();
                match (bt, inline) {
                    (BodyType::Json, Some(_)) => {
                        return Err(bad(
                            "the body has an @context but Content-Type is application/json; send application/ld+json or use a Link header",
                        ));
                    }
                    (BodyType::JsonLd, None) => {
                        return Err(bad("Content-Type is application/ld+json but the body has no @context"));
                    }
                    (BodyType::JsonLd, Some(Value::String(url))) => {
                        check_context_urls(&Value::String(url.clone()), &app.config.limits)?;
                        ctx_ref = ContextRef::Url(url)
                    }
                    (BodyType::JsonLd, Some(inline)) => {
                        check_context_urls(&inline, &app.config.limits)?;
                        ctx_ref = ContextRef::Inline(inline)
                    }
                    (BodyType::Json, None) => {}
                }
            }
        }
        let ctx = match &ctx_ref {
            ContextRef::Core => app.contexts.core(),
            ContextRef::Url(u) => app.contexts.resolve(&tenant, &Value::String(u.clone())).await?,
            ContextRef::Inline(v) => app.contexts.resolve(&tenant, v).await?,
        };
        Ok(Req { app: app.clone(), tenant, tenant_given, accept, body_type, query, body, link, ctx, ctx_ref })
    }

    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// A boolean parameter: absent or `false` is false, `true` is true, anything else an error.
    pub fn flag(&self, name: &str) -> ApiResult<bool> {
        match self.param(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(v) => Err(ApiError(NgsiError::bad_data(format!("{name} must be true or false, not {v:?}")))),
        }
    }

    /// A non-negative integer parameter, or `default` when absent.
    pub fn number(&self, name: &str, default: usize) -> ApiResult<usize> {
        match self.param(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                ApiError(NgsiError::bad_data(format!("{name} must be a non-negative integer, not {v:?}")))
            }),
        }
    }

    /// `limit` and `offset` of a paged answer; a limit above the maximum page size is
    /// TooManyResults.
    pub fn page(&self) -> ApiResult<(usize, usize)> {
        let limit = self.number("limit", self.app.config.default_page)?;
        if limit > self.app.config.max_page {
            return Err(ApiError::new(
                ErrorKind::TooManyResults,
                format!("limit {limit} is above the maximum page size {}", self.app.config.max_page),
            ));
        }
        Ok((limit, self.number("offset", 0)?))
    }

    /// The comma-separated values of `options`.
    pub fn options(&self) -> Vec<&str> {
        self.param("options")
            .map(|o| o.split(',').map(str::trim).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }

    /// Fails with NonexistentTenant when a named tenant does not exist (for reads).
    pub fn require_tenant(&self) -> ApiResult<()> {
        if self.tenant_given && !self.app.store.tenant_exists(&self.tenant) {
            return Err(ApiError::new(ErrorKind::NonexistentTenant, format!("tenant {} does not exist", self.tenant)));
        }
        Ok(())
    }

    /// The request body (callers only ask when the method has one).
    pub fn json(&self) -> &Value {
        self.body.as_ref().unwrap_or(&Value::Null)
    }
}

fn bad(detail: &str) -> ApiError {
    ApiError(NgsiError::bad_data(detail))
}

fn media(v: &str) -> String {
    v.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// The media ranges of an `Accept` value, each with its quality (1 when not given).
pub fn accept_items(raw: &str) -> impl Iterator<Item = (String, f32)> + '_ {
    raw.split(',').map(|item| {
        let q = item
            .split(';')
            .skip(1)
            .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()))
            .unwrap_or(1.0);
        (media(item), q)
    })
}

/// Picks the response representation from `Accept`.
pub fn negotiate_accept(headers: &HeaderMap, geo: bool) -> ApiResult<Accept> {
    let Some(raw) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Accept::Json);
    };
    if raw.trim().is_empty() {
        return Ok(Accept::Json);
    }
    let mut best: Option<(f32, Accept)> = None;
    for (m, q) in accept_items(raw) {
        let a = match m.as_str() {
            "application/json" | "*/*" | "application/*" => Accept::Json,
            "application/ld+json" => Accept::JsonLd,
            "application/geo+json" if geo => Accept::GeoJson,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, a));
        }
    }
    best.map(|(_, a)| a).ok_or_else(|| {
        ApiError::new(
            ErrorKind::NotAcceptable,
            format!(
                "cannot answer in {raw}; acceptable are application/json and application/ld+json{}",
                if geo { " and application/geo+json" } else { "" }
            ),
        )
    })
}

fn body_type(headers: &HeaderMap, method: &Method) -> ApiResult<BodyType> {
    let raw = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    match media(raw).as_str() {
        "application/json" => Ok(BodyType::Json),
        "application/ld+json" => Ok(BodyType::JsonLd),
        "application/merge-patch+json" if *method == Method::PATCH => Ok(BodyType::Json),
        "" => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "the request has no Content-Type; send application/json or application/ld+json",
        )),
        other => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!("Content-Type {other} is not supported; send application/json or application/ld+json"),
        )),
    }
}

fn parse_query(raw: Option<&str>, allowed: &[&str]) -> ApiResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode(k);
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError(NgsiError::invalid(format!(
                "unknown query parameter {}; this endpoint knows {}",
                haskap_model::parse::shorten(&k),
                allowed.join(", ")
            ))));
        }
        let v = decode_strict(v).ok_or_else(|| bad(&format!("query parameter {k} is not valid UTF-8")))?;
        out.insert(k, v);
    }
    Ok(out)
}

/// Query parameters of the NGSI-LD API that are booleans.
const BOOLEAN_PARAMS: &[&str] = &["local", "entityMap", "count", "deleteAll", "details"];

/// Query parameters of the NGSI-LD API that are non-negative integers.
const NUMBER_PARAMS: &[&str] = &["limit", "offset", "lastN"];

/// Checks the parameters whose type the standard fixes, wherever an endpoint accepts them (even
/// where they change nothing yet, such as `local` on a broker without context sources).
fn check_typed_params(query: &HashMap<String, String>) -> ApiResult<()> {
    for (k, v) in query {
        if BOOLEAN_PARAMS.contains(&k.as_str()) && !matches!(v.as_str(), "true" | "false") {
            return Err(bad(&format!("{k} must be true or false, not {}", haskap_model::parse::shorten(v))));
        }
        if NUMBER_PARAMS.contains(&k.as_str()) && v.parse::<usize>().is_err() {
            return Err(bad(&format!("{k} must be a non-negative integer, not {}", haskap_model::parse::shorten(v))));
        }
    }
    Ok(())
}

/// Percent-decodes a query component (`+` is a space); `None` when it is not UTF-8.
fn decode_strict(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8().ok().map(|c| c.into_owned())
}

/// Percent-decodes a query component (`+` is a space).
pub fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

fn tenant(headers: &HeaderMap) -> ApiResult<(String, bool)> {
    let Some(v) = headers.get("ngsild-tenant") else {
        return Ok((String::new(), false));
    };
    let t = v.to_str().map_err(|_| bad("NGSILD-Tenant must be ASCII"))?.trim();
    if t.is_empty()
        || t.len() > 64
        || !t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
    {
        return Err(bad("NGSILD-Tenant must be 1 to 64 characters of letters, digits, _ - . : /"));
    }
    Ok((t.to_string(), true))
}

/// The context URL of a JSON-LD Link header, if there is one: an absolute URI within
/// `max_url_bytes`.
fn link_context(headers: &HeaderMap, limits: &Limits) -> ApiResult<Option<String>> {
    for v in headers.get_all(header::LINK) {
        let s = v.to_str().map_err(|_| bad("the Link header must be ASCII"))?;
        for link in s.split(",<").map(|l| l.trim_start_matches('<')) {
            let Some((url, params)) = link.split_once('>') else {
                return Err(bad(
                    "the Link header is not of the form <URL>; rel=\"http://www.w3.org/ns/json-ld#context\"",
                ));
            };
            let rel =
                params.split(';').filter_map(|p| p.trim().strip_prefix("rel=")).next().map(|r| r.trim_matches('"'));
            if rel.is_none_or(|r| r == LINK_REL) {
                let url = url.trim();
                limits.check_url(url, "the @context URL of the Link header")?;
                return Ok(Some(url.to_string()));
            }
        }
    }
    Ok(None)
}

/// Checks the URLs an @context names (itself when a string, its items when a list, and
/// `@import`s): absolute URIs within `max_url_bytes`.
pub fn check_context_urls(context: &Value, limits: &Limits) -> ApiResult<()> {
    match context {
        Value::String(url) => Ok(limits.check_url(url, "@context URL")?),
        Value::Array(items) => items.iter().try_for_each(|c| check_context_urls(c, limits)),
        Value::Object(m) => match m.get("@import") {
            Some(Value::String(url)) => Ok(limits.check_url(url, "@context @import URL")?),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

async fn read_json(app: &AppState, body: Body) -> ApiResult<Value> {
    let limit = app.config.body_limit;
    let deadline = app.config.body_timeout;
    let read = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await.map_err(|_| {
        ApiError(NgsiError::invalid(format!("the request body was not received within {} s", deadline.as_secs())))
    })?;
    let bytes = read.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!("the request body is larger than the limit of {limit} bytes"),
            )
        } else {
            ApiError(NgsiError::invalid(format!("the request body could not be read: {e}")))
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError(NgsiError::invalid("the request body is empty")));
    }
    strict_json::from_slice(&bytes)
        .map_err(|e| ApiError(NgsiError::invalid(format!("the request body is not valid JSON: {e}"))))
}

/// JSON parsing that refuses an object with the same key twice, which `serde_json` would take,
/// silently keeping the last: in one pass, building the same `Value` at the same cost.
pub mod strict_json {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::map::Entry;
    use serde_json::{Map, Number, Value};

    /// Parses `bytes` as one JSON value (surrounding whitespace allowed); a key repeated in an
    /// object is an error that names it, with its position.
    pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let v = Strict.deserialize(&mut de)?;
        de.end()?;
        Ok(v)
    }

    /// Builds a [`Value`], failing on duplicate keys.
    struct Strict;

    impl<'de> DeserializeSeed<'de> for Strict {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(Strict)
        }
    }

    impl<'de> Visitor<'de> for Strict {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
            Ok(Value::Bool(b))
        }
        fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
            Ok(Value::Number(n.into()))
        }
        fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
            Ok(Value::Number(n.into()))
        }
        fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
            Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, s: &str) -> Result<Value, E> {
            Ok(Value::String(s.to_owned()))
        }
        fn visit_string<E>(self, s: String) -> Result<Value, E> {
            Ok(Value::String(s))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(v) = seq.next_element_seed(Strict)? {
                items.push(v);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                match out.entry(key) {
                    Entry::Vacant(slot) => {
                        slot.insert(map.next_value_seed(Strict)?);
                    }
                    Entry::Occupied(slot) => {
                        return Err(de::Error::custom(format_args!(
                            "the key {} appears twice in one object",
                            haskap_model::parse::shorten(slot.key())
                        )));
                    }
                }
            }
            Ok(Value::Object(out))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::from_slice;

        /// Regression (issue 19): serde_json kept the last of two equal keys, silently.
        #[test]
        fn duplicate_keys_are_refused() {
            let e = from_slice(br#"{"id": "urn:x:1", "type": "T", "id": "urn:x:2"}"#).unwrap_err();
            assert!(e.to_string().contains("the key \"id\" appears twice in one object at line 1"), "{e}");
            let nested = br#"[{"a": {"type": "Property", "value": {"k": 1, "k": 2}}}]"#;
            assert!(from_slice(nested).unwrap_err().to_string().contains("\"k\" appears twice"));
            // Equal keys in different objects are fine, and so is everything serde_json parses.
            let ok = br#" {"a": {"x": 1}, "b": {"x": [1, -2, 3.5, 1e300, true, null, "s\u00e9"]}} "#;
            assert_eq!(from_slice(ok).unwrap(), serde_json::from_slice::<serde_json::Value>(ok).unwrap());
            for bad in [&b"{\"a\": 1} x"[..], b"{\"a\": 1e999}", b"[1,]", b"", b"\xff", &[b'['; 200][..]] {
                assert!(from_slice(bad).is_err(), "{}", String::from_utf8_lossy(bad));
            }
        }
    }
}

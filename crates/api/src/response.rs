//! Building NGSI-LD responses: media type, the @context as Link header or body member.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use haskap_model::builtin::CORE_CONTEXT_URL;
use haskap_model::ops::UpdateResult;
use serde_json::{Map, Value, json};

use crate::request::{Accept, ContextRef, LINK_REL, Req};

/// A JSON response in the representation the client asked for, with its @context.
pub fn ngsi_json(req: &Req, status: StatusCode, mut body: Value) -> Response {
    let ld = req.accept == Accept::JsonLd;
    if ld {
        let ctx = match &req.ctx_ref {
            ContextRef::Core => Value::String(CORE_CONTEXT_URL.into()),
            ContextRef::Url(u) => Value::String(u.clone()),
            ContextRef::Inline(v) => v.clone(),
        };
        match &mut body {
            Value::Object(m) => insert_context(m, ctx),
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(m) = item {
                        insert_context(m, ctx.clone());
                    }
                }
            }
            _ => {}
        }
    }
    let mut resp = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
    let h = resp.headers_mut();
    if ld {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/ld+json"));
    } else {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let url = match &req.ctx_ref {
            ContextRef::Url(u) => u.as_str(),
            _ => CORE_CONTEXT_URL,
        };
        if let Ok(v) = HeaderValue::from_str(&context_link(url)) {
            h.insert(header::LINK, v);
        }
    }
    resp
}

/// The value of a `Link` header naming `url` as the JSON-LD context.
pub fn context_link(url: &str) -> String {
    format!("<{url}>; rel=\"{LINK_REL}\"; type=\"application/ld+json\"")
}

fn insert_context(m: &mut Map<String, Value>, ctx: Value) {
    m.insert("@context".into(), ctx);
}

/// A plain JSON response, without any @context (batch results, lists of ids).
pub fn plain_json(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, serde_json::to_vec(body).unwrap_or_default()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// 204 No Content.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// 201 Created with a Location header.
pub fn created(location: &str) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// 204 when everything was updated, else 207 with the UpdateResult (names as expanded IRIs, as
/// the ETSI suite expects).
pub fn update_result(r: &UpdateResult) -> Response {
    if r.not_updated.is_empty() {
        return no_content();
    }
    let body = json!({
        "updated": r.updated,
        "notUpdated": r.not_updated.iter().map(|(n, why)| json!({"attributeName": n, "reason": why})).collect::<Vec<_>>(),
    });
    plain_json(StatusCode::MULTI_STATUS, &body)
}

/// Percent-encodes a path segment (entity ids in Location headers).
pub fn encode_segment(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::CONTROLS.add(b' ').add(b'/').add(b'?').add(b'#').add(b'%').add(b'"').add(b'<').add(b'>');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

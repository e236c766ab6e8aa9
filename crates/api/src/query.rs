//! `GET /entities`: the query of entities by id, type and attributes, with paging and counting,
//! and the GeoJSON representation of results.
//!
//! This is the simple scan the broker starts with; the indexed query engine (q, geo-queries)
//! replaces its evaluation without changing its interface.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use haskap_model::NgsiError;
use haskap_model::render::render_entity;
use serde_json::{Value, json};

use crate::entities::{entity_geo, pick_omit, render_options};
use crate::error::{ApiError, ApiResult};
use crate::request::{Accept, Req};
use crate::response::ngsi_json;

fn list(req: &Req, name: &str) -> Option<Vec<String>> {
    req.param(name).map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

fn number(req: &Req, name: &str, default: usize) -> ApiResult<usize> {
    match req.param(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| ApiError(NgsiError::bad_data(format!("{name} must be a non-negative integer, not {v:?}")))),
    }
}

/// Query Entities.
pub fn query_entities(req: Req) -> ApiResult<Response> {
    for p in ["q", "scopeQ", "georel", "idPattern", "csf"] {
        if req.param(p).is_some() {
            return Err(ApiError::new(
                haskap_model::ErrorKind::OperationNotSupported,
                format!("the {p} parameter is not supported yet"),
            ));
        }
    }
    let ids = list(&req, "id");
    let types: Option<Vec<String>> = list(&req, "type").map(|t| t.iter().map(|t| req.ctx.expand(t)).collect());
    let attrs: Option<Vec<String>> = list(&req, "attrs").map(|a| a.iter().map(|a| req.ctx.expand(a)).collect());
    if ids.is_none() && types.is_none() && attrs.is_none() {
        return Err(ApiError(NgsiError::bad_data(
            "a query needs at least one of type, id, idPattern, attrs, q or a geo-query",
        )));
    }
    let limit = number(&req, "limit", req.app.config.default_page)?;
    let offset = number(&req, "offset", 0)?;
    if limit > req.app.config.max_page {
        return Err(ApiError::new(
            haskap_model::ErrorKind::TooManyResults,
            format!("limit {limit} is above the maximum page size {}", req.app.config.max_page),
        ));
    }
    let count = match req.param("count") {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(ApiError(NgsiError::bad_data(format!("count must be true or false, not {v:?}"))));
        }
    };
    let opts = render_options(&req, &[])?;
    if !req.app.store.tenant_exists(&req.tenant) && req.tenant_given {
        req.require_tenant()?;
    }
    let matches = |e: &haskap_model::Entity| {
        types.as_ref().is_none_or(|ts| e.types.iter().any(|t| ts.contains(t)))
            && attrs.as_ref().is_none_or(|a| a.iter().any(|n| e.attrs.contains_key(n)))
    };
    let (total, page) = req.app.store.read(|state| {
        let Some(t) = state.tenants.get(&req.tenant) else {
            return (0, Vec::new());
        };
        let mut total = 0usize;
        let mut page = Vec::new();
        let mut visit = |e: std::sync::Arc<haskap_model::Entity>| {
            if matches(&e) {
                if total >= offset && page.len() < limit {
                    page.push(e);
                }
                total += 1;
            }
        };
        match &ids {
            Some(ids) => {
                let mut sorted: Vec<&String> = ids.iter().collect();
                sorted.sort();
                sorted.dedup();
                sorted.into_iter().filter_map(|id| t.get(id)).for_each(&mut visit);
            }
            None => t.iter().map(std::sync::Arc::new).for_each(&mut visit),
        }
        (total, page)
    });
    let items: Vec<Value> = page
        .iter()
        .map(|e| {
            let mut m = render_entity(e, &req.ctx, &opts);
            pick_omit(&req, &mut m);
            Value::Object(m)
        })
        .collect();
    let mut resp = if req.accept == Accept::GeoJson {
        geojson_response(&req, items, &entity_geo(&req), false)
    } else {
        ngsi_json(&req, StatusCode::OK, Value::Array(items))
    };
    if count {
        resp.headers_mut().insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    Ok(resp)
}

/// Renders entities as GeoJSON: a Feature for a single retrieval, else a FeatureCollection.
pub fn geojson_response(req: &Req, items: Vec<Value>, geo_prop: &str, single: bool) -> Response {
    let features: Vec<Value> = items
        .into_iter()
        .map(|item| {
            let Value::Object(mut m) = item else { return item };
            let id = m.remove("id").unwrap_or(Value::Null);
            let geometry = match m.get(geo_prop) {
                Some(Value::Object(g)) if g.contains_key("coordinates") => Value::Object(g.clone()),
                Some(Value::Object(g)) => g.get("value").cloned().unwrap_or(Value::Null),
                _ => Value::Null,
            };
            json!({"id": id, "type": "Feature", "geometry": geometry, "properties": Value::Object(m)})
        })
        .collect();
    let mut body = if single {
        features.into_iter().next().unwrap_or(Value::Null)
    } else {
        json!({"type": "FeatureCollection", "features": features})
    };
    if let (Value::Object(m), crate::request::ContextRef::Url(u)) = (&mut body, &req.ctx_ref) {
        m.insert("@context".into(), Value::String(u.clone()));
    } else if let Value::Object(m) = &mut body {
        m.insert("@context".into(), Value::String(haskap_model::builtin::CORE_CONTEXT_URL.into()));
    }
    let mut resp = (StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/geo+json"));
    resp
}

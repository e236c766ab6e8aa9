//! Discovery: `/types`, `/types/{type}`, `/attributes`, `/attributes/{attrId}`, computed from the
//! live entities of the tenant through the type and attribute indexes.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use haskap_model::NgsiError;
use haskap_model::validate::now_micros;
use haskap_store::Tenant;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::request::{Raw, Req, Spec, decode};
use crate::response::ngsi_json;

/// Handles `GET /types[/{type}]` and `GET /attributes[/{attrId}]`.
pub async fn dispatch(Raw { app, method, uri, headers, body }: Raw) -> ApiResult<Response> {
    run(&app, &method, &uri, &headers, body).await
}

async fn run(app: &AppState, method: &Method, uri: &Uri, headers: &HeaderMap, body: Body) -> ApiResult<Response> {
    if *method != Method::GET {
        return Err(ApiError::not_allowed("GET"));
    }
    let path = uri.path().strip_prefix("/ngsi-ld/v1/").unwrap_or("");
    let (collection, item) = path.split_once('/').map(|(c, i)| (c, decode(i))).unwrap_or((path, String::new()));
    let req = Req::parse(
        app,
        method,
        headers,
        uri.query(),
        body,
        Spec { params: &["details", "local", "limit", "offset", "count"], geo: false, body_context: false },
    )
    .await?;
    let details = req.flag("details")?;
    req.require_tenant()?;
    let body = req.app.store.read(|state| {
        let empty = Tenant::default();
        let t = state.tenants.get(&req.tenant).unwrap_or(&empty);
        match (collection, item.is_empty()) {
            ("types", true) => Ok(types(&req, t, details)),
            ("types", false) => type_info(&req, t, &item),
            (_, true) => Ok(attributes(&req, t, details)),
            (_, false) => attribute_info(&req, t, &item),
        }
    })?;
    Ok(ngsi_json(&req, StatusCode::OK, body))
}

fn list_id(kind: &str) -> String {
    format!("urn:ngsi-ld:{kind}:{:x}", now_micros())
}

/// Attribute names of the entities of type `ty`.
fn attrs_of_type(t: &Tenant, ty: &str) -> BTreeSet<String> {
    let Some(of_type) = t.of_type(ty) else { return BTreeSet::new() };
    t.attr_counts()
        .filter(|(a, _)| t.of_attr(a).is_some_and(|b| b.intersection_len(of_type) > 0))
        .map(|(a, _)| a.to_string())
        .collect()
}

/// Types of the entities that have attribute `attr`.
fn types_of_attr(t: &Tenant, attr: &str) -> BTreeSet<String> {
    let Some(of_attr) = t.of_attr(attr) else { return BTreeSet::new() };
    t.type_counts()
        .filter(|(ty, _)| t.of_type(ty).is_some_and(|b| b.intersection_len(of_attr) > 0))
        .map(|(ty, _)| ty.to_string())
        .collect()
}

/// The attribute kinds (Property, Relationship, ...) attribute `attr` has among `slots`.
fn kinds(t: &Tenant, slots: &roaring::RoaringBitmap, attr: &str) -> BTreeSet<&'static str> {
    slots
        .iter()
        .filter_map(|s| t.entity_at(s))
        .flat_map(|e| e.attrs.get(attr).into_iter().flatten().map(|a| a.kind.name()).collect::<Vec<_>>())
        .collect()
}

fn types(req: &Req, t: &Tenant, details: bool) -> Value {
    let names: BTreeSet<&str> = t.type_counts().map(|(n, _)| n).collect();
    if !details {
        let list: Vec<String> = names.iter().map(|n| req.ctx.compact(n)).collect();
        return json!({"id": list_id("EntityTypeList"), "type": "EntityTypeList", "typeList": list});
    }
    names
        .iter()
        .map(|n| {
            let attrs: Vec<String> = attrs_of_type(t, n).iter().map(|a| req.ctx.compact(a)).collect();
            json!({"id": n, "type": "EntityType", "typeName": req.ctx.compact(n), "attributeNames": attrs})
        })
        .collect()
}

fn type_info(req: &Req, t: &Tenant, name: &str) -> ApiResult<Value> {
    let iri = req.ctx.expand(name);
    let of_type = t
        .of_type(&iri)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ApiError(NgsiError::not_found(format!("no entity of type {name}"))))?;
    let details: Vec<Value> = attrs_of_type(t, &iri)
        .iter()
        .map(|a| {
            let kinds: Vec<&str> = kinds(t, of_type, a).into_iter().collect();
            json!({"id": a, "type": "Attribute", "attributeName": req.ctx.compact(a), "attributeTypes": kinds})
        })
        .collect();
    Ok(
        json!({"id": iri, "type": "EntityTypeInfo", "typeName": req.ctx.compact(&iri), "entityCount": of_type.len(), "attributeDetails": details}),
    )
}

fn attributes(req: &Req, t: &Tenant, details: bool) -> Value {
    let names: BTreeSet<&str> = t.attr_counts().map(|(n, _)| n).collect();
    if !details {
        let list: Vec<String> = names.iter().map(|n| req.ctx.compact(n)).collect();
        return json!({"id": list_id("AttributeList"), "type": "AttributeList", "attributeList": list});
    }
    names
        .iter()
        .map(|n| {
            let types: Vec<String> = types_of_attr(t, n).iter().map(|ty| req.ctx.compact(ty)).collect();
            json!({"id": n, "type": "Attribute", "attributeName": req.ctx.compact(n), "typeNames": types})
        })
        .collect()
}

fn attribute_info(req: &Req, t: &Tenant, name: &str) -> ApiResult<Value> {
    let iri = req.ctx.expand(name);
    let slots = t
        .of_attr(&iri)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ApiError(NgsiError::not_found(format!("no entity has attribute {name}"))))?;
    let kinds: Vec<&str> = kinds(t, slots, &iri).into_iter().collect();
    let types: Vec<String> = types_of_attr(t, &iri).iter().map(|ty| req.ctx.compact(ty)).collect();
    Ok(json!({
        "id": iri, "type": "Attribute", "attributeName": req.ctx.compact(&iri),
        "attributeCount": slots.len(), "attributeTypes": kinds, "typeNames": types,
    }))
}

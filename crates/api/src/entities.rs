//! `/ngsi-ld/v1/entities` and everything below it: create, retrieve, query, replace, merge and
//! delete entities; append, update, partially update, replace and delete attributes.
//!
//! Routing is done by hand on the raw path so that the quirks the standard's test suite relies
//! on hold: trailing slashes are accepted, an empty entity id is a 400, and ids are
//! percent-decoded segment by segment.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use haskap_model::entity::Entity;
use haskap_model::ops::{self, Change};
use haskap_model::parse::Parser;
use haskap_model::validate::now_micros;
use haskap_model::{ErrorKind, NgsiError};
use serde_json::{Map, Value};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::request::{Raw, Req, Spec};
use crate::response::{created, encode_segment, ngsi_json, no_content, update_result};

const RETRIEVE_PARAMS: &[&str] = &[
    "attrs",
    "options",
    "format",
    "lang",
    "pick",
    "omit",
    "geometryProperty",
    "local",
    "type",
    "containedBy",
    "join",
    "joinLevel",
    "entityMap",
    "datasetId",
];
const QUERY_PARAMS: &[&str] = &[
    "orderBy",
    "id",
    "type",
    "idPattern",
    "attrs",
    "q",
    "scopeQ",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "geometryProperty",
    "lang",
    "pick",
    "omit",
    "limit",
    "offset",
    "count",
    "options",
    "format",
    "local",
    "csf",
    "datasetId",
    "containedBy",
    "join",
    "joinLevel",
    "entityMap",
];

enum Target<'a> {
    Collection,
    Entity(String),
    Attrs(String),
    Attr(String, &'a str),
}

/// Handles every request under `/ngsi-ld/v1/entities`.
pub async fn dispatch(Raw { app, method, uri, headers, body }: Raw) -> ApiResult<Response> {
    route(&app, &method, &uri, &headers, body).await
}

async fn route(app: &AppState, method: &Method, uri: &Uri, headers: &HeaderMap, body: Body) -> ApiResult<Response> {
    let rest = uri.path().strip_prefix("/ngsi-ld/v1/entities").unwrap_or("");
    let segs: Vec<&str> = if rest.is_empty() || rest == "/" { Vec::new() } else { rest[1..].split('/').collect() };
    let target = match segs.as_slice() {
        [] => Target::Collection,
        [id] => Target::Entity(decode_path(id)?),
        [id, "attrs"] | [id, "attrs", ""] => Target::Attrs(decode_path(id)?),
        [id, "attrs", attr] => Target::Attr(decode_path(id)?, attr),
        _ => {
            return Err(ApiError(NgsiError::not_found(format!("no resource at {}", uri.path()))));
        }
    };
    let q = uri.query();
    let m = method.clone();
    let spec = |params: &'static [&'static str], body_context: bool| Spec { params, geo: false, body_context };
    match (target, m) {
        (Target::Collection, Method::POST) => {
            create(Req::parse(app, method, headers, q, body, spec(&["local"], true)).await?).await
        }
        (Target::Collection, Method::GET) => {
            let req = Req::parse(
                app,
                method,
                headers,
                q,
                body,
                Spec { params: QUERY_PARAMS, geo: true, body_context: false },
            )
            .await?;
            crate::query::query_entities(req)
        }
        (Target::Collection, Method::DELETE) => {
            Req::parse(
                app,
                method,
                headers,
                q,
                body,
                spec(&["type", "id", "idPattern", "q", "scopeQ", "attrs", "local", "drop"], false),
            )
            .await?;
            Err(ApiError::new(ErrorKind::OperationNotSupported, "purging entities is not supported yet"))
        }
        (Target::Collection, Method::PUT | Method::PATCH) => {
            Err(ApiError(NgsiError::bad_data("the entity id is missing from the path")))
        }
        (Target::Entity(id), Method::GET) => retrieve(
            Req::parse(app, method, headers, q, body, Spec { params: RETRIEVE_PARAMS, geo: true, body_context: false })
                .await?,
            id,
        ),
        (Target::Entity(id), Method::DELETE) => {
            delete(Req::parse(app, method, headers, q, body, spec(&["local"], false)).await?, id).await
        }
        (Target::Entity(id), Method::PUT) => {
            replace(Req::parse(app, method, headers, q, body, spec(&["local", "options"], true)).await?, id).await
        }
        (Target::Entity(id), Method::PATCH) => {
            merge(Req::parse(app, method, headers, q, body, spec(&["local", "options", "format"], true)).await?, id)
                .await
        }
        (Target::Attrs(id), Method::POST) => {
            append(Req::parse(app, method, headers, q, body, spec(&["options", "local"], true)).await?, id).await
        }
        (Target::Attrs(id), Method::PATCH) => {
            update(Req::parse(app, method, headers, q, body, spec(&["options", "local"], true)).await?, id).await
        }
        (Target::Attr(id, attr), m @ (Method::PATCH | Method::PUT | Method::DELETE)) if !attr.is_empty() => {
            let params: &'static [&'static str] =
                if m == Method::DELETE { &["datasetId", "deleteAll", "lang", "local"] } else { &["local", "options"] };
            let req = Req::parse(app, method, headers, q, body, spec(params, true)).await?;
            let attr = decode_path(attr)?;
            match m {
                Method::PATCH => partial_update(req, id, attr).await,
                Method::PUT => replace_attribute(req, id, attr).await,
                _ => delete_attribute(req, id, attr).await,
            }
        }
        (Target::Collection, _) => Err(ApiError::not_allowed("GET, POST, DELETE")),
        (Target::Entity(_), _) => Err(ApiError::not_allowed("GET, PUT, PATCH, DELETE")),
        (Target::Attrs(_), _) => Err(ApiError::not_allowed("POST, PATCH")),
        (Target::Attr(..), _) => Err(ApiError::not_allowed("PATCH, PUT, DELETE")),
    }
}

/// Percent-decodes a path segment; one that is not UTF-8 once decoded is refused.
fn decode_path(s: &str) -> ApiResult<String> {
    match percent_encoding::percent_decode_str(s).decode_utf8() {
        Ok(d) => Ok(d.into_owned()),
        Err(_) => Err(ApiError(NgsiError::bad_data("the path is not valid UTF-8 once percent-decoded"))),
    }
}

fn check_id(req: &Req, id: &str) -> ApiResult<()> {
    if id.is_empty() {
        return Err(ApiError(NgsiError::bad_data("the entity id is missing from the path")));
    }
    req.app.config.limits.check_id(id, "entity id").map_err(ApiError)
}

/// Runs an entity operation in the writer and returns its outcome once durable.
pub async fn commit<T, F>(req: &Req, id: String, op: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(Option<&Entity>) -> Result<(Change, T), NgsiError> + Send + 'static,
{
    let tenant = req.tenant.clone();
    let out = req
        .app
        .store
        .write(move |txn| {
            let (change, out) = op(txn.get(&tenant, &id).as_deref())?;
            txn.apply(&tenant, &id, change);
            Ok::<T, NgsiError>(out)
        })
        .await?;
    out.map_err(ApiError)
}

/// A parser for this request's context, stamped now.
pub fn parser(req: &Req) -> (Arc<haskap_model::jsonld::ActiveContext>, i64, haskap_model::parse::Limits) {
    (req.ctx.clone(), now_micros(), req.app.config.limits)
}

fn body_object(req: &Req) -> ApiResult<&Map<String, Value>> {
    req.json().as_object().ok_or_else(|| ApiError(NgsiError::invalid("the request body must be a JSON object")))
}

async fn create(req: Req) -> ApiResult<Response> {
    body_object(&req)?;
    let (ctx, now, limits) = parser(&req);
    let entity = Parser { ctx: &ctx, now, limits }.entity(req.json())?;
    let id = entity.id.clone();
    commit(&req, id.clone(), move |cur| Ok((ops::create(cur, entity)?, ()))).await?;
    Ok(created(&format!("/ngsi-ld/v1/entities/{}", encode_segment(&id))))
}

fn retrieve(req: Req, id: String) -> ApiResult<Response> {
    check_id(&req, &id)?;
    req.require_tenant()?;
    let view = crate::view::View::from_request(&req)?;
    let mut wanted = Vec::new();
    for t in req.param("type").into_iter().flat_map(|t| t.split(',')).map(str::trim) {
        let limits = &req.app.config.limits;
        limits.check_name(t, "entity type")?;
        let iri = req.ctx.expand(t);
        limits.check_expanded(t, &iri, "entity type")?;
        wanted.push(iri);
    }
    let entity = req
        .app
        .store
        .get(&req.tenant, &id)
        .ok_or_else(|| ApiError(NgsiError::not_found(format!("entity {id} does not exist"))))?;
    if let Some(types) = req.param("type")
        && !entity.types.iter().any(|t| wanted.contains(t))
    {
        return Err(ApiError(NgsiError::not_found(format!("entity {id} is not of type {types}"))));
    }
    if let Some(attrs) = &view.opts.attrs
        && !attrs.iter().any(|a| entity.attrs.contains_key(a))
    {
        return Err(ApiError(NgsiError::not_found(format!("entity {id} has none of the attributes asked for"))));
    }
    let out = view
        .render_one(&req, &entity)
        .ok_or_else(|| ApiError(NgsiError::not_found(format!("nothing of entity {id} is left after pick and omit"))))?;
    if req.accept == crate::request::Accept::GeoJson {
        return Ok(crate::query::geojson_response(&req, vec![out], &entity_geo(&req), true));
    }
    Ok(ngsi_json(&req, StatusCode::OK, out))
}

/// The GeoProperty (compacted) a GeoJSON response uses as geometry.
pub fn entity_geo(req: &Req) -> String {
    req.param("geometryProperty").unwrap_or("location").to_string()
}

async fn delete(req: Req, id: String) -> ApiResult<Response> {
    check_id(&req, &id)?;
    let target = id.clone();
    commit(&req, id, move |cur| Ok((ops::delete(cur, &target)?, ()))).await?;
    Ok(no_content())
}

/// The body with the path's id put in (a body id, if any, must agree).
fn with_path_id(req: &Req, id: &str) -> ApiResult<Value> {
    let mut obj = body_object(req)?.clone();
    match obj.get("id") {
        Some(Value::String(b)) if b != id => {
            return Err(ApiError(NgsiError::bad_data(format!("the body's id {b} differs from the path's id {id}"))));
        }
        _ => {}
    }
    obj.insert("id".into(), Value::String(id.to_string()));
    Ok(Value::Object(obj))
}

async fn replace(req: Req, id: String) -> ApiResult<Response> {
    check_id(&req, &id)?;
    let body = with_path_id(&req, &id)?;
    let (ctx, now, limits) = parser(&req);
    let entity = Parser { ctx: &ctx, now, limits }.entity(&body)?;
    commit(&req, id, move |cur| Ok((ops::replace(cur, entity)?, ()))).await?;
    Ok(no_content())
}

async fn merge(req: Req, id: String) -> ApiResult<Response> {
    check_id(&req, &id)?;
    let body = with_path_id(&req, &id)?;
    let (ctx, now, limits) = parser(&req);
    Parser { ctx: &ctx, now, limits }.fragment(&body, true)?;
    let target = id.clone();
    commit(&req, id, move |cur| Ok((ops::merge(cur, &target, &body, &Parser { ctx: &ctx, now, limits })?, ()))).await?;
    Ok(no_content())
}

async fn append(req: Req, id: String) -> ApiResult<Response> {
    check_id(&req, &id)?;
    body_object(&req)?;
    let no_overwrite = flag_option(&req, "noOverwrite")?;
    let (ctx, now, limits) = parser(&req);
    let frag = Parser { ctx: &ctx, now, limits }.fragment(req.json(), false)?;
    let target = id.clone();
    let result = commit(&req, id, move |cur| ops::append(cur, &target, frag, no_overwrite, now)).await?;
    Ok(update_result(&result))
}

async fn update(req: Req, id: String) -> ApiResult<Response> {
    check_id(&req, &id)?;
    body_object(&req)?;
    flag_option(&req, "")?;
    let (ctx, now, limits) = parser(&req);
    let frag = Parser { ctx: &ctx, now, limits }.fragment(req.json(), true)?;
    let target = id.clone();
    let result = commit(&req, id, move |cur| ops::update(cur, &target, frag, now)).await?;
    Ok(update_result(&result))
}

/// Whether `options` has `flag`; any other option is an error.
fn flag_option(req: &Req, flag: &str) -> ApiResult<bool> {
    let mut found = false;
    for o in req.options() {
        if o == flag {
            found = true;
        } else {
            return Err(ApiError(NgsiError::bad_data(format!("unknown option {o:?} for this operation"))));
        }
    }
    Ok(found)
}

/// Checks the attribute name of the path and expands it.
fn attr_name(req: &Req, attr: &str) -> ApiResult<String> {
    if attr == "scope" || attr.starts_with('@') {
        return Err(ApiError(NgsiError::bad_data(format!("{attr} cannot be addressed as an attribute here"))));
    }
    let (ctx, now, limits) = parser(req);
    Ok(Parser { ctx: &ctx, now, limits }.name(attr, "attribute name")?)
}

async fn partial_update(req: Req, id: String, attr: String) -> ApiResult<Response> {
    check_id(&req, &id)?;
    let patch = body_object(&req)?.clone();
    let name = attr_name(&req, &attr)?;
    let patch: Map<String, Value> = patch.into_iter().filter(|(k, _)| k != "@context").collect();
    if patch.is_empty() {
        return Err(ApiError(NgsiError::bad_data("the attribute fragment is empty")));
    }
    let (ctx, now, limits) = parser(&req);
    let target = id.clone();
    commit(&req, id, move |cur| {
        if let (Some(e), Some(Value::String(t))) = (cur, patch.get("type")) {
            let ds = patch.get("datasetId").and_then(Value::as_str);
            if let Some(old) = e.instance(&name, ds)
                && old.kind.name() != t
            {
                return Err(NgsiError::bad_data(format!("attribute {attr} is a {}, not a {t}", old.kind.name())));
            }
        }
        let p = Parser { ctx: &ctx, now, limits };
        Ok((ops::partial_update(cur, &target, &name, &attr, &Value::Object(patch), &p)?, ()))
    })
    .await?;
    Ok(no_content())
}

async fn replace_attribute(req: Req, id: String, attr: String) -> ApiResult<Response> {
    check_id(&req, &id)?;
    let name = attr_name(&req, &attr)?;
    let raw: Value = match req.json() {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(k, _)| *k != "@context").map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        other => other.clone(),
    };
    let (ctx, now, limits) = parser(&req);
    let inputs = Parser { ctx: &ctx, now, limits }.attribute(&attr, &raw, false, 0)?;
    let target = id.clone();
    commit(&req, id, move |cur| Ok((ops::replace_attribute(cur, &target, &name, &attr, inputs, now)?, ()))).await?;
    Ok(no_content())
}

async fn delete_attribute(req: Req, id: String, attr: String) -> ApiResult<Response> {
    check_id(&req, &id)?;
    let all = req.flag("deleteAll")?;
    let dataset_id = req.param("datasetId").map(str::to_string);
    if let Some(d) = dataset_id.as_deref().filter(|d| *d != "@none") {
        req.app.config.limits.check_id(d, "datasetId")?;
    }
    let now = now_micros();
    let target = id.clone();
    if attr == "scope" {
        return commit(&req, id, move |cur| {
            let mut e = cur.ok_or_else(|| NgsiError::not_found(format!("entity {target} does not exist")))?.clone();
            if e.scope.take().is_none() {
                return Err(NgsiError::not_found(format!("entity {target} has no scope")));
            }
            e.modified_at = now;
            Ok((Change::Put(e), ()))
        })
        .await
        .map(|()| no_content());
    }
    let name = attr_name(&req, &attr)?;
    commit(&req, id, move |cur| {
        Ok((ops::delete_attribute(cur, &target, &name, &attr, dataset_id.as_deref(), all, now)?, ()))
    })
    .await?;
    Ok(no_content())
}

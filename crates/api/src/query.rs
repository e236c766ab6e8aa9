//! `GET /entities` and `POST /entityOperations/query`: query entities by ids, id pattern, type
//! expression, attributes, `q` and `scopeQ`, with paging, counting and GeoJSON output.
//!
//! Results come in the store's slot order (creation order; a deleted entity's slot is reused by a
//! later one), nearest first for `near`, or by `orderBy`: paging over a collection that does not
//! change never repeats or skips an entity.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use geo::Geometry;
use haskap_model::{ErrorKind, NgsiError};
use haskap_query::filter::Filter;
use haskap_query::geo::{GeoQuery, GeoRel};
use haskap_query::q::QueryError;
use haskap_query::types::TypeExpr;
use serde_json::{Value, json};

use crate::entities::entity_geo;
use crate::error::{ApiError, ApiResult};
use crate::request::{Accept, Req};
use crate::response::ngsi_json;

/// The selection part of a query, as text, from URL parameters or a Query body.
#[derive(Debug, Default)]
pub struct Selection {
    /// Entity ids.
    pub ids: Option<Vec<String>>,
    /// A regular expression on ids.
    pub id_pattern: Option<String>,
    /// A type expression.
    pub types: Option<String>,
    /// Attribute names.
    pub attrs: Option<Vec<String>>,
    /// The `q` query.
    pub q: Option<String>,
    /// The `scopeQ` query.
    pub scope_q: Option<String>,
    /// The geo-query.
    pub geo: Option<GeoText>,
}

/// A geo-query as the client wrote it.
#[derive(Debug)]
pub struct GeoText {
    /// `georel`.
    pub rel: String,
    /// `geometry`.
    pub geometry: String,
    /// `coordinates`, parsed as JSON.
    pub coordinates: Value,
    /// `geoproperty`, if given.
    pub property: Option<String>,
}

fn list(v: Option<&str>) -> Option<Vec<String>> {
    v.map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

fn syntax(what: &str, e: QueryError) -> ApiError {
    ApiError(NgsiError::bad_data(format!("invalid {what}: {e}")))
}

/// Compiles a selection with the request's context.
pub fn build_filter(req: &Req, sel: Selection) -> ApiResult<Filter> {
    let local_all = req.param("local") == Some("true");
    if sel.types.is_none()
        && sel.id_pattern.is_none()
        && sel.attrs.is_none()
        && sel.q.is_none()
        && sel.geo.is_none()
        && !local_all
    {
        return Err(ApiError(NgsiError::bad_data(
            "a query needs at least one of type, idPattern, attrs, q, a geo-query or local=true",
        )));
    }
    let limits = &req.app.config.limits;
    for id in sel.ids.iter().flatten() {
        limits.check_id(id, "entity id")?;
    }
    if let Some(a) =
        sel.attrs.iter().flatten().find(|a| matches!(a.as_str(), "id" | "type" | "@id" | "@type" | "scope"))
    {
        return Err(ApiError(NgsiError::bad_data(format!("{a} is not an attribute; attrs names attributes only"))));
    }
    let expand = |t: &str| req.ctx.expand(t);
    // Every name is checked as entity creation checks it, as sent and expanded.
    let name = |n: &str, what: &str| -> ApiResult<()> {
        limits.check_name(n, what)?;
        limits.check_expanded(n, &expand(n), what)?;
        Ok(())
    };
    for a in sel.attrs.iter().flatten() {
        name(a, "attribute name")?;
    }
    let mut f = Filter { ids: sel.ids, ..Default::default() };
    if let Some(p) = sel.id_pattern {
        f.id_pattern = Some(
            haskap_query::filter::check_pattern(&p)
                .map_err(|e| ApiError(NgsiError::bad_data(format!("invalid idPattern {p:?}: {e}"))))?,
        );
    }
    if let Some(t) = sel.types {
        let types = TypeExpr::parse(&t).map_err(|e| syntax("type", e))?;
        for n in types.names() {
            name(n, "entity type")?;
        }
        f.types = Some(types.expand(&expand));
    }
    f.attrs = sel.attrs.map(|a| a.iter().map(|n| expand(n)).collect());
    if let Some(q) = sel.q {
        let expr = haskap_query::q::parse(&q).map_err(|e| syntax("q", e))?;
        for path in expr.paths() {
            name(&path.attr, "attribute name in q")?;
            for sub in path.sub.iter().filter(|s| !haskap_query::q::METADATA.contains(&s.as_str())) {
                name(sub, "sub-attribute name in q")?;
            }
        }
        f.q = Some(haskap_query::eval::compile(&expr, &q, &expand).map_err(|e| syntax("q", e))?);
    }
    if let Some(s) = sel.scope_q {
        f.scope = Some(TypeExpr::parse(&s).map_err(|e| syntax("scopeQ", e))?);
    }
    if let Some(g) = sel.geo {
        if let Some(p) = &g.property {
            name(p, "geoproperty")?;
        }
        let property = expand(g.property.as_deref().unwrap_or("location"));
        f.geo = Some(
            GeoQuery::new(&g.rel, &g.geometry, &g.coordinates, property)
                .map_err(|e| ApiError(NgsiError::bad_data(format!("invalid geo-query: {e}"))))?,
        );
    }
    Ok(f)
}

/// Query Entities (`GET /entities`).
pub fn query_entities(req: Req) -> ApiResult<Response> {
    if req.param("csf").is_some() {
        return Err(ApiError::new(
            ErrorKind::OperationNotSupported,
            "context source filters (csf) are not supported yet",
        ));
    }
    let sel = Selection {
        ids: list(req.param("id")),
        id_pattern: req.param("idPattern").map(str::to_string),
        types: req.param("type").map(str::to_string),
        attrs: list(req.param("attrs")),
        q: req.param("q").map(str::to_string),
        scope_q: req.param("scopeQ").map(str::to_string),
        geo: geo_params(&req)?,
    };
    let filter = build_filter(&req, sel)?;
    run(&req, &filter)
}

/// The geo-query of URL parameters: all of georel, geometry and coordinates, or none.
fn geo_params(req: &Req) -> ApiResult<Option<GeoText>> {
    let (rel, geometry, coords) = (req.param("georel"), req.param("geometry"), req.param("coordinates"));
    if rel.is_none() && geometry.is_none() && coords.is_none() {
        return Ok(None);
    }
    let (Some(rel), Some(geometry), Some(coords)) = (rel, geometry, coords) else {
        return Err(ApiError(NgsiError::bad_data("a geo-query needs georel, geometry and coordinates together")));
    };
    let coords: Value = serde_json::from_str(coords)
        .map_err(|e| ApiError(NgsiError::bad_data(format!("coordinates must be a JSON array of numbers: {e}"))))?;
    Ok(Some(GeoText {
        rel: rel.to_string(),
        geometry: geometry.to_string(),
        coordinates: coords,
        property: req.param("geoproperty").map(str::to_string),
    }))
}

/// Runs a compiled query and renders the page.
pub fn run(req: &Req, filter: &Filter) -> ApiResult<Response> {
    run_with(req, filter, crate::view::View::from_request(req)?)
}

/// Runs a compiled query with an explicit view and renders the page.
fn run_with(req: &Req, filter: &Filter, view: crate::view::View) -> ApiResult<Response> {
    let (limit, offset) = req.page()?;
    let count = req.flag("count")?;
    if limit == 0 && !count {
        return Err(ApiError(NgsiError::bad_data("limit 0 is only meaningful with count=true")));
    }
    let order = match req.param("orderBy") {
        None => None,
        Some(o) => Some(haskap_query::order::parse(o, &|t| req.ctx.expand(t)).map_err(|e| syntax("orderBy", e))?),
    };
    run_view(req, filter, &view, Paging { limit, offset, count, order })
}

/// Which page of the results, in which order, and whether to count them all.
struct Paging {
    limit: usize,
    offset: usize,
    count: bool,
    order: Option<Vec<haskap_query::order::Key>>,
}

/// Runs a compiled query with a view and renders the page.
fn run_view(req: &Req, filter: &Filter, view: &crate::view::View, paging: Paging) -> ApiResult<Response> {
    let Paging { limit, offset, count, order } = paging;
    req.require_tenant()?;
    let extent = view.extent();
    let (total, page) = req.app.store.read(|state| {
        let Some(t) = state.tenants.get(&req.tenant) else { return (0, Vec::new()) };
        let (candidates, exact) = t.select(filter);
        let near = filter.geo.as_ref().filter(|g| matches!(g.rel, GeoRel::Near { .. }));
        // Filters are evaluated on entities decoded with just the attributes they need; only the
        // page is decoded whole.
        let mut wanted = filter.attributes();
        if let Some(keys) = &order {
            wanted.extend(keys.iter().map(|k| k.path.as_str()));
        }
        let matching = || {
            candidates
                .iter()
                .filter_map(|s| t.sparse_at(s, &wanted).map(|e| (s, e)))
                .filter(|(_, e)| exact || filter.matches(e))
        };
        let page_of = |slots: Vec<u32>| -> Vec<haskap_model::Entity> {
            slots.into_iter().skip(offset).take(limit).filter_map(|s| t.entity_in(s, &extent)).collect()
        };
        if let Some(keys) = &order {
            let mut all: Vec<(u32, haskap_model::Entity)> = matching().collect();
            all.sort_by(|a, b| haskap_query::order::compare(&a.1, &b.1, keys));
            return (all.len(), page_of(all.into_iter().map(|(s, _)| s).collect()));
        }
        if exact {
            // Jump straight to the offset-th candidate instead of walking past the others.
            let page = match u32::try_from(offset).ok().and_then(|o| candidates.select(o)) {
                Some(first) => candidates.range(first..).take(limit).filter_map(|s| t.entity_in(s, &extent)).collect(),
                None => Vec::new(),
            };
            return (candidates.len() as usize, page);
        }
        if let Some(g) = near {
            // Near: nearest first, so every candidate is measured.
            let Geometry::Point(p) = g.geometry else { return (0, Vec::new()) };
            // Points (the common case) are measured from the index alone, without decoding.
            let indexed = filter
                .is_index_exact_but_geo()
                .then(|| g.envelope())
                .flatten()
                .and_then(|env| t.points_within(&g.property, env, &candidates));
            let mut hits: Vec<(f64, u32)> = match indexed {
                Some(points) => near_points(points, g, p),
                None => matching().map(|(s, e)| (nearest(&e, &g.property, p), s)).collect(),
            };
            hits.sort_by(|a, b| a.0.total_cmp(&b.0));
            return (hits.len(), page_of(hits.into_iter().map(|(_, s)| s).collect()));
        }
        let mut total = 0usize;
        let mut page = Vec::new();
        let matches = t.matcher(filter, &wanted);
        for s in candidates.iter().filter(|s| exact || matches(*s)) {
            if total >= offset && page.len() < limit {
                page.extend(t.entity_in(s, &extent));
            }
            total += 1;
            if !count && page.len() >= limit {
                break;
            }
        }
        (total, page)
    });
    let items = view.render_list(req, &page);
    let mut resp = if req.accept == Accept::GeoJson {
        geojson_response(req, items, &entity_geo(req), false)
    } else {
        ngsi_json(req, StatusCode::OK, Value::Array(items))
    };
    if count {
        resp.headers_mut().insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    Ok(resp)
}

/// A member of a Query body that must be a string, if present.
fn text_member(obj: &serde_json::Map<String, Value>, key: &str, what: &str) -> ApiResult<Option<String>> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError(NgsiError::bad_data(format!("{what} must be a string")))),
    }
}

/// `POST /entityOperations/query`: the same query, described by a Query body. Every member must
/// have its type (a `q` that is a number is refused, not ignored).
pub fn query_post(req: Req) -> ApiResult<Response> {
    let body = req.json().as_object().ok_or_else(|| ApiError(NgsiError::invalid("the Query must be a JSON object")))?;
    if body.get("type").and_then(Value::as_str) != Some("Query") {
        return Err(ApiError(NgsiError::bad_data("the body must be a Query: \"type\": \"Query\"")));
    }
    let attrs = match body.get("attrs") {
        None => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiError(NgsiError::bad_data("attrs must be an array of attribute names")))?,
        ),
        Some(_) => return Err(ApiError(NgsiError::bad_data("attrs must be an array of attribute names"))),
    };
    let mut sel = Selection {
        attrs,
        q: text_member(body, "q", "q")?,
        scope_q: text_member(body, "scopeQ", "scopeQ")?,
        ..Default::default()
    };
    if let Some(g) = body.get("geoQ") {
        let g = g.as_object().ok_or_else(|| ApiError(NgsiError::bad_data("geoQ must be an object")))?;
        let coords = match g.get("coordinates") {
            Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
                ApiError(NgsiError::bad_data(format!("geoQ.coordinates must be a JSON array of numbers: {e}")))
            })?,
            Some(other) => other.clone(),
            None => Value::Null,
        };
        let (Some(rel), Some(geometry)) =
            (text_member(g, "georel", "geoQ.georel")?, text_member(g, "geometry", "geoQ.geometry")?)
        else {
            return Err(ApiError(NgsiError::bad_data("geoQ needs georel, geometry and coordinates")));
        };
        let property = text_member(g, "geoproperty", "geoQ.geoproperty")?;
        sel.geo = Some(GeoText { rel, geometry, coordinates: coords, property });
    }
    if let Some(entities) = body.get("entities") {
        let entities = entities
            .as_array()
            .ok_or_else(|| ApiError(NgsiError::bad_data("entities must be an array of EntitySelectors")))?;
        // One selector: its parts combine; several: any selector may match (approximated by
        // gathering ids and types, which is exact for the usual single-kind selections).
        let mut ids = Vec::new();
        let mut types = Vec::new();
        for sel_item in entities {
            let sel_item = sel_item.as_object().ok_or_else(|| {
                ApiError(NgsiError::bad_data("each item of entities must be an EntitySelector object"))
            })?;
            if let Some(id) = text_member(sel_item, "id", "an EntitySelector id")? {
                ids.push(id);
            }
            if let Some(p) = text_member(sel_item, "idPattern", "an EntitySelector idPattern")? {
                sel.id_pattern = Some(p);
            }
            if let Some(t) = text_member(sel_item, "type", "an EntitySelector type")? {
                types.push(format!("({t})"));
            }
        }
        if !ids.is_empty() {
            sel.ids = Some(ids);
        }
        if !types.is_empty() {
            sel.types = Some(types.join("|"));
        }
    }
    let filter = build_filter(&req, sel)?;
    let view = crate::view::View::from_request(&req)?.with_join(body.get("join").and_then(Value::as_str))?;
    run_with(&req, &filter, view)
}

/// The entities among `points` (several per entity when its GeoProperty has several instances)
/// that satisfy the near query `g` around `p`, each with its distance to the nearest instance.
fn near_points(points: Vec<(u32, [f64; 2])>, g: &haskap_query::geo::GeoQuery, p: geo::Point<f64>) -> Vec<(f64, u32)> {
    let GeoRel::Near { max, min } = g.rel else { return Vec::new() };
    let mut by_slot: std::collections::BTreeMap<u32, (f64, bool)> = std::collections::BTreeMap::new();
    for (slot, [x, y]) in points {
        let d = haskap_query::geo::distance_m(&Geometry::Point(geo::Point::new(x, y)), p);
        let ok = max.is_none_or(|m| d <= m) && min.is_none_or(|m| d >= m);
        let entry = by_slot.entry(slot).or_insert((f64::INFINITY, false));
        *entry = (entry.0.min(d), entry.1 || ok);
    }
    by_slot.into_iter().filter(|(_, (_, ok))| *ok).map(|(s, (d, _))| (d, s)).collect()
}

/// The distance in metres from `p` to the closest instance of GeoProperty `property` of `e`.
fn nearest(e: &haskap_model::Entity, property: &str, p: geo::Point<f64>) -> f64 {
    e.attrs
        .get(property)
        .into_iter()
        .flatten()
        .filter_map(|a| haskap_query::geo::to_geometry(&a.value).ok())
        .map(|g| haskap_query::geo::distance_m(&g, p))
        .fold(f64::INFINITY, f64::min)
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
    let ctx = match &req.ctx_ref {
        crate::request::ContextRef::Url(u) => u.clone(),
        _ => haskap_model::builtin::CORE_CONTEXT_URL.to_string(),
    };
    if let Value::Object(m) = &mut body {
        m.insert("@context".into(), Value::String(ctx));
    }
    let mut resp = (StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/geo+json"));
    resp
}

//! How entities are shown: representation (`options`, `format`, `attrs`, `lang`), projection
//! (`pick`, `omit`) and linked entity retrieval (`join=inline|flat`, `joinLevel`).

use std::collections::HashSet;

use haskap_model::NgsiError;
use haskap_model::entity::{AttrKind, Entity};
use haskap_model::render::{Format, RenderOptions, render_entity};
use haskap_query::projection::{self, Item};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::request::Req;

/// Where a view reads linked entities and compacts names: a tenant of the store, a context.
pub struct Source<'a> {
    /// The store.
    pub store: &'a haskap_store::Store,
    /// The tenant.
    pub tenant: &'a str,
    /// The context names are compacted with.
    pub ctx: &'a haskap_model::jsonld::ActiveContext,
}

impl<'a> Source<'a> {
    /// The tenant and context of a request.
    pub fn of(req: &'a Req) -> Source<'a> {
        Source { store: &req.app.store, tenant: &req.tenant, ctx: &req.ctx }
    }
}

/// Members a projection never removes.
const KEEP: &[&str] = &["@context", "createdAt", "modifiedAt"];

/// How linked entities are returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// Inside the relationship, as `entity`.
    Inline,
    /// Appended to the result list.
    Flat,
}

/// Everything that decides how an entity is shown.
pub struct View {
    /// The representation.
    pub opts: RenderOptions,
    pick: Option<Vec<Item>>,
    omit: Option<Vec<Item>>,
    join: Option<Join>,
    join_level: usize,
}

fn bad(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError(NgsiError::bad_data(format!("invalid {what}: {e}")))
}

impl View {
    /// The view a request asks for.
    ///
    /// The representation options (`keyValues` or `simplified`, `concise`, `normalized`) are
    /// alternatives, so `options` may name one of them only; `format`, when given, wins over it.
    /// `pick` and `omit` cannot be combined, with each other or with `attrs`.
    pub fn from_request(req: &Req) -> ApiResult<View> {
        let mut opts = RenderOptions::default();
        let mut representation: Option<&str> = None;
        for o in req.options() {
            let format = match o {
                "keyValues" | "simplified" => Format::KeyValues,
                "concise" => Format::Concise,
                "normalized" => Format::Normalized,
                "sysAttrs" => {
                    opts.sys_attrs = true;
                    continue;
                }
                other => {
                    return Err(ApiError(NgsiError::invalid(format!(
                        "unknown option {}; known are keyValues, concise, normalized, sysAttrs",
                        haskap_model::parse::shorten(other)
                    ))));
                }
            };
            if let Some(first) = representation.filter(|_| format != opts.format) {
                return Err(ApiError(NgsiError::bad_data(format!(
                    "options {first} and {o} contradict each other: a representation is one of keyValues, concise and normalized"
                ))));
            }
            representation = Some(o);
            opts.format = format;
        }
        // `format` wins over a representation named in `options`.
        if let Some(f) = req.param("format") {
            opts.format = match f {
                "keyValues" | "simplified" => Format::KeyValues,
                "concise" => Format::Concise,
                "normalized" => Format::Normalized,
                other => {
                    return Err(ApiError(NgsiError::invalid(format!(
                        "unknown format {other:?}; known are keyValues, concise, normalized"
                    ))));
                }
            };
        }
        let limits = &req.app.config.limits;
        if let Some(list) = req.param("attrs") {
            let mut names = HashSet::new();
            for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                limits.check_name(t, "attribute name")?;
                let iri = req.ctx.expand(t);
                limits.check_expanded(t, &iri, "attribute name")?;
                names.insert(iri);
            }
            opts.attrs = Some(names);
        }
        opts.lang = req.param("lang").map(str::to_string);
        if let Some(list) = req.param("datasetId") {
            let mut ids = Vec::new();
            for d in list.split(',').map(str::trim) {
                if d != "@none" {
                    limits.check_id(d, "datasetId")?;
                }
                ids.push((d != "@none").then(|| d.to_string()));
            }
            opts.dataset_ids = Some(ids);
        }
        let pick = req.param("pick").map(projection::parse).transpose().map_err(|e| bad("pick", e))?;
        let omit = req.param("omit").map(projection::parse).transpose().map_err(|e| bad("omit", e))?;
        if (pick.is_some() || omit.is_some()) && req.param("attrs").is_some() {
            return Err(ApiError(NgsiError::bad_data("pick and omit cannot be combined with attrs")));
        }
        if let (Some(p), Some(o)) = (&pick, &omit) {
            if let Some(n) = projection::names(p).find(|n| projection::names(o).any(|m| m == *n)) {
                return Err(ApiError(NgsiError::bad_data(format!("{n} is both picked and omitted"))));
            }
            return Err(ApiError(NgsiError::bad_data(
                "pick and omit cannot be used together: pick the members to keep, or omit the ones to drop",
            )));
        }
        let join = match req.param("join") {
            None => None,
            Some("inline") => Some(Join::Inline),
            Some("flat") => Some(Join::Flat),
            Some(other) => {
                return Err(ApiError(NgsiError::bad_data(format!("join must be inline or flat, not {other:?}"))));
            }
        };
        let join_level = match req.param("joinLevel") {
            None => 1,
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| (1..=10).contains(n))
                .ok_or_else(|| bad("joinLevel", "it must be a whole number from 1 to 10"))?,
        };
        Ok(View { opts, pick, omit, join, join_level })
    }

    /// The view of a subscription's notifications: its representation and `join`/`joinLevel`
    /// (an unknown join is no join).
    pub fn notification(opts: RenderOptions, join: Option<&str>, join_level: Option<u64>) -> View {
        let join = match join {
            Some("inline") => Some(Join::Inline),
            Some("flat") => Some(Join::Flat),
            _ => None,
        };
        let join_level = join_level.map_or(1, |l| l.clamp(1, 10) as usize);
        View { opts, pick: None, omit: None, join, join_level }
    }

    /// How much of each stored entity this view shows: the attributes asked for and, for
    /// key-values without a datasetId filter or a join, only each attribute's first value.
    pub fn extent(&self) -> haskap_store::Extent<'_> {
        haskap_store::Extent {
            attrs: self.opts.attrs.as_ref(),
            values_only: self.opts.format == Format::KeyValues
                && self.opts.dataset_ids.is_none()
                && self.join.is_none(),
        }
    }

    /// Whether linked entities are joined.
    pub fn joins(&self) -> bool {
        self.join.is_some()
    }

    /// Sets the join from a Query body.
    pub fn with_join(mut self, join: Option<&str>) -> ApiResult<View> {
        match join {
            None => {}
            Some("inline") => self.join = Some(Join::Inline),
            Some("flat") => self.join = Some(Join::Flat),
            Some(other) => {
                return Err(ApiError(NgsiError::bad_data(format!("join must be inline or flat, not {other:?}"))));
            }
        }
        Ok(self)
    }

    /// Renders query results: entities left empty by `pick` are dropped; with `join=flat` the
    /// linked entities follow.
    pub fn render_list(&self, req: &Req, entities: &[Entity]) -> Vec<Value> {
        self.render_all(&Source::of(req), entities)
    }

    /// [`View::render_list`] for any tenant and context.
    pub fn render_all(&self, req: &Source<'_>, entities: &[Entity]) -> Vec<Value> {
        let mut out = Vec::with_capacity(entities.len());
        let mut linked = Vec::new();
        // Only a flat join needs to know which entities are already in the list.
        let mut seen: HashSet<String> = match self.join {
            Some(Join::Flat) => entities.iter().map(|e| e.id.clone()).collect(),
            _ => HashSet::new(),
        };
        for e in entities {
            if let Some(m) = self.render(req, e, self.pick.as_deref(), self.omit.as_deref(), 1, &mut linked, &mut seen)
            {
                out.push(Value::Object(m));
            }
        }
        out.extend(linked);
        out
    }

    /// Renders one retrieved entity: `None` when `pick` leaves nothing. With `join=flat` and
    /// linked entities found, an array.
    pub fn render_one(&self, req: &Req, e: &Entity) -> Option<Value> {
        let req = &Source::of(req);
        let mut linked = Vec::new();
        let mut seen = HashSet::from([e.id.clone()]);
        let m = self.render(req, e, self.pick.as_deref(), self.omit.as_deref(), 1, &mut linked, &mut seen)?;
        if linked.is_empty() {
            return Some(Value::Object(m));
        }
        let mut all = vec![Value::Object(m)];
        all.extend(linked);
        Some(Value::Array(all))
    }

    #[allow(clippy::too_many_arguments)]
    fn render(
        &self,
        req: &Source<'_>,
        e: &Entity,
        pick: Option<&[Item]>,
        omit: Option<&[Item]>,
        level: usize,
        flat: &mut Vec<Value>,
        seen: &mut HashSet<String>,
    ) -> Option<Map<String, Value>> {
        let linked_opts;
        let opts = if level == 1 {
            &self.opts
        } else {
            linked_opts = RenderOptions { attrs: None, ..self.opts.clone() };
            &linked_opts
        };
        let mut m = render_entity(e, req.ctx, opts);
        if let Some(p) = pick {
            m.retain(|k, _| KEEP.contains(&k.as_str()) || projection::names(p).any(|n| n == k));
        }
        if let Some(o) = omit {
            for item in o.iter().filter(|i| i.nested.is_none()) {
                m.remove(&item.name);
            }
        }
        if !m.keys().any(|k| !KEEP.contains(&k.as_str())) {
            return None;
        }
        if let Some(join) = self.join.filter(|_| level <= self.join_level) {
            self.link(req, e, &mut m, pick, omit, level, join, flat, seen);
        }
        Some(m)
    }

    /// Fetches the entities `e`'s relationships point to and attaches them.
    #[allow(clippy::too_many_arguments)]
    fn link(
        &self,
        req: &Source<'_>,
        e: &Entity,
        m: &mut Map<String, Value>,
        pick: Option<&[Item]>,
        omit: Option<&[Item]>,
        level: usize,
        join: Join,
        flat: &mut Vec<Value>,
        seen: &mut HashSet<String>,
    ) {
        for (name, instances) in &e.attrs {
            let key = req.ctx.compact(name);
            if !m.contains_key(&key) {
                continue;
            }
            let child_pick = pick.and_then(|p| projection::nested(p, &key));
            let child_omit = omit.and_then(|o| projection::nested(o, &key));
            let many = instances.len() > 1;
            for (idx, inst) in instances.iter().enumerate().filter(|(_, a)| a.kind == AttrKind::Relationship) {
                let objects: Vec<&str> = match &inst.value {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                for object in objects {
                    let Some(child) = req.store.get(req.tenant, object) else { continue };
                    let Some(rendered) = self.render(req, &child, child_pick, child_omit, level + 1, flat, seen) else {
                        continue;
                    };
                    match join {
                        Join::Flat => {
                            if seen.insert(child.id.clone()) {
                                flat.push(Value::Object(rendered));
                            }
                        }
                        Join::Inline => {
                            let slot =
                                if many { m.get_mut(&key).and_then(|v| v.get_mut(idx)) } else { m.get_mut(&key) };
                            match (self.opts.format, slot) {
                                (Format::KeyValues, Some(v)) => *v = Value::Object(rendered),
                                (_, Some(Value::Object(attr))) => {
                                    attr.insert("entity".into(), Value::Object(rendered));
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
    }
}

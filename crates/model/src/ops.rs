//! The entity operations as pure functions: the current entity (if any) and a request in, the
//! change to commit and what to tell the client out. The store runs them inside its writer, so
//! each sees the latest committed state and applies atomically.

use serde_json::{Map, Value};

use crate::entity::{Attribute, Entity, Micros, put_instance};
use crate::error::{NgsiError, Result};
use crate::jsonld::ActiveContext;
use crate::parse::{AttrInput, Fragment, Parser};
use crate::render::{Format, RenderOptions, render_attribute};

/// What an operation does to the stored entity.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Store this entity (create or overwrite).
    Put(Entity),
    /// Delete the entity.
    Delete,
    /// Leave everything as it is.
    Unchanged,
}

/// Which attributes an append or update changed, and which not and why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateResult {
    /// Expanded names of the attributes updated.
    pub updated: Vec<String>,
    /// Expanded names of the attributes not updated, with the reason.
    pub not_updated: Vec<(String, String)>,
}

fn must_exist<'e>(current: Option<&'e Entity>, id: &str) -> Result<&'e Entity> {
    current.ok_or_else(|| NgsiError::not_found(format!("entity {id} does not exist")))
}

/// Create Entity: fails when the id is taken.
pub fn create(current: Option<&Entity>, new: Entity) -> Result<Change> {
    if current.is_some() {
        return Err(NgsiError::exists(format!("entity {} already exists", new.id)));
    }
    Ok(Change::Put(new))
}

/// Replace Entity: all of the entity's content becomes `new`; it keeps its `createdAt`.
pub fn replace(current: Option<&Entity>, mut new: Entity) -> Result<Change> {
    let old = must_exist(current, &new.id)?;
    new.created_at = old.created_at;
    Ok(Change::Put(new))
}

/// Delete Entity.
pub fn delete(current: Option<&Entity>, id: &str) -> Result<Change> {
    must_exist(current, id)?;
    Ok(Change::Delete)
}

/// Upsert in a batch: create, or else replace (`replace`) or append (`update` mode).
pub fn upsert(current: Option<&Entity>, new: Entity, replace_mode: bool, now: Micros) -> Result<(Change, bool)> {
    match current {
        None => Ok((Change::Put(new), true)),
        Some(_) if replace_mode => Ok((replace(current, new)?, false)),
        Some(old) => {
            let frag = Fragment {
                id: Some(new.id.clone()),
                types: Some(new.types.clone()),
                scope: new.scope.clone(),
                attrs: new
                    .attrs
                    .into_iter()
                    .map(|(n, list)| (n, list.into_iter().map(AttrInput::Set).collect()))
                    .collect(),
            };
            let (change, _) = append(Some(old), &new.id, frag, false, now)?;
            Ok((change, false))
        }
    }
}

/// Append Entity Attributes: adds (or, unless `no_overwrite`, overwrites) attributes. Types are
/// merged; scopes are replaced, or joined with `no_overwrite`.
pub fn append(
    current: Option<&Entity>,
    id: &str,
    frag: Fragment,
    no_overwrite: bool,
    now: Micros,
) -> Result<(Change, UpdateResult)> {
    let mut e = must_exist(current, id)?.clone();
    merge_types(&mut e, frag.types);
    if let Some(scope) = frag.scope {
        match (&mut e.scope, no_overwrite) {
            (Some(old), true) => scope.into_iter().for_each(|s| push_unique(old, &s)),
            (old, _) => *old = Some(scope),
        }
    }
    let result = apply_attrs(&mut e, frag.attrs, no_overwrite);
    e.modified_at = now;
    Ok((Change::Put(e), result))
}

/// Update Entity Attributes: overwrites (and, as the ETSI suite expects, adds) attributes;
/// deletions of absent instances are reported. Types are merged; a scope is replaced only if the
/// entity has one.
pub fn update(current: Option<&Entity>, id: &str, frag: Fragment, now: Micros) -> Result<(Change, UpdateResult)> {
    let mut e = must_exist(current, id)?.clone();
    merge_types(&mut e, frag.types);
    let mut scope_refused = false;
    if let Some(scope) = frag.scope {
        match &mut e.scope {
            Some(old) => *old = scope,
            None => scope_refused = true,
        }
    }
    let mut result = apply_attrs(&mut e, frag.attrs, false);
    if scope_refused {
        result.not_updated.push(("scope".into(), "the entity has no scope to update".into()));
    }
    e.modified_at = now;
    Ok((Change::Put(e), result))
}

fn apply_attrs(e: &mut Entity, attrs: Vec<(String, Vec<AttrInput>)>, no_overwrite: bool) -> UpdateResult {
    let mut result = UpdateResult::default();
    for (name, inputs) in attrs {
        for input in inputs {
            match input {
                AttrInput::Set(a) => {
                    if no_overwrite && e.instance(&name, a.dataset_id.as_deref()).is_some() {
                        result.not_updated.push((name.clone(), "attribute exists and noOverwrite was asked".into()));
                        continue;
                    }
                    put_instance(&mut e.attrs, &name, a);
                    push_unique(&mut result.updated, &name);
                }
                AttrInput::Delete(ds) => {
                    if remove_instance(e, &name, ds.as_deref()) {
                        push_unique(&mut result.updated, &name);
                    } else {
                        result.not_updated.push((name.clone(), "no such attribute instance to delete".into()));
                    }
                }
            }
        }
    }
    result
}

/// Partial Attribute Update: the members in `patch` replace those of the existing instance.
pub fn partial_update(
    current: Option<&Entity>,
    id: &str,
    name: &str,
    term: &str,
    patch: &Value,
    parser: &Parser<'_>,
) -> Result<Change> {
    let mut e = must_exist(current, id)?.clone();
    let patch = patch.as_object().ok_or_else(|| NgsiError::bad_data("the attribute fragment must be a JSON object"))?;
    let ds = patch.get("datasetId").and_then(Value::as_str);
    let old = e.instance(name, ds).ok_or_else(|| {
        NgsiError::not_found(format!(
            "entity {id} has no attribute {term}{}",
            ds.map(|d| format!(" with datasetId {d}")).unwrap_or_default()
        ))
    })?;
    let merged = overlay(old, patch, parser.ctx, false);
    match parser.attribute(term, &merged, true, 0)?.pop() {
        Some(AttrInput::Set(a)) => {
            put_instance(&mut e.attrs, name, a);
        }
        Some(AttrInput::Delete(ds)) => {
            remove_instance(&mut e, name, ds.as_deref());
        }
        None => {}
    }
    e.modified_at = parser.now;
    Ok(Change::Put(e))
}

/// Replace Attribute: the attribute (instance) must exist and is replaced whole.
pub fn replace_attribute(
    current: Option<&Entity>,
    id: &str,
    name: &str,
    term: &str,
    inputs: Vec<AttrInput>,
    now: Micros,
) -> Result<Change> {
    let mut e = must_exist(current, id)?.clone();
    for input in inputs {
        let AttrInput::Set(a) = input else { continue };
        if e.instance(name, a.dataset_id.as_deref()).is_none() {
            return Err(NgsiError::not_found(format!("entity {id} has no attribute {term}")));
        }
        put_instance(&mut e.attrs, name, a);
    }
    e.modified_at = now;
    Ok(Change::Put(e))
}

/// Delete Attribute: one instance (`dataset_id`, default instance when `None`) or all of them.
pub fn delete_attribute(
    current: Option<&Entity>,
    id: &str,
    name: &str,
    term: &str,
    dataset_id: Option<&str>,
    all: bool,
    now: Micros,
) -> Result<Change> {
    let mut e = must_exist(current, id)?.clone();
    let found = if all { e.attrs.remove(name).is_some() } else { remove_instance(&mut e, name, dataset_id) };
    if !found {
        let which = dataset_id.map(|d| format!(" with datasetId {d}")).unwrap_or_default();
        return Err(NgsiError::not_found(format!("entity {id} has no attribute {term}{which}")));
    }
    e.modified_at = now;
    Ok(Change::Put(e))
}

/// Merge Entity: like append, but an existing attribute is merged member by member, and
/// `urn:ngsi-ld:null` deletes.
pub fn merge(current: Option<&Entity>, id: &str, body: &Value, parser: &Parser<'_>) -> Result<Change> {
    let mut e = must_exist(current, id)?.clone();
    let obj = body.as_object().ok_or_else(|| NgsiError::bad_data("the request body must be a JSON object"))?;
    let mut rest = Map::new();
    for (term, raw) in obj {
        let name = parser.ctx.expand(term);
        let instance_patch = raw.as_object().filter(|o| !o.is_empty());
        let ds = instance_patch.and_then(|o| o.get("datasetId")).and_then(Value::as_str);
        match (e.instance(&name, ds), instance_patch) {
            (Some(old), Some(patch))
                if !patch.contains_key("type") || patch.get("type") == Some(&Value::String(old.kind.name().into())) =>
            {
                rest.insert(term.clone(), overlay(old, patch, parser.ctx, true));
            }
            _ => {
                rest.insert(term.clone(), raw.clone());
            }
        }
    }
    let frag = parser.fragment(&Value::Object(rest), true)?;
    merge_types(&mut e, frag.types);
    if let Some(scope) = frag.scope {
        e.scope = Some(scope);
    }
    for (name, inputs) in frag.attrs {
        for input in inputs {
            match input {
                AttrInput::Set(a) => {
                    put_instance(&mut e.attrs, &name, a);
                }
                AttrInput::Delete(ds) => {
                    remove_instance(&mut e, &name, ds.as_deref());
                }
            }
        }
    }
    e.modified_at = parser.now;
    Ok(Change::Put(e))
}

/// The instance rendered in normalized form with `patch` laid over it, ready to parse again.
/// With `deep`, sub-attributes present in both are merged too.
fn overlay(old: &Attribute, patch: &Map<String, Value>, ctx: &ActiveContext, deep: bool) -> Value {
    let opts = RenderOptions { format: Format::Normalized, ..Default::default() };
    let Value::Object(mut base) = render_attribute(old, ctx, &opts) else {
        unreachable!("attributes render as objects")
    };
    let kind_changed = patch.get("type").and_then(Value::as_str).is_some_and(|t| t != old.kind.name());
    if kind_changed {
        base.remove(old.kind.value_key());
    }
    for (k, v) in patch {
        match (deep, base.get_mut(k), v) {
            (true, Some(Value::Object(b)), Value::Object(p)) if k != "value" && k != "json" && k != "languageMap" => {
                for (pk, pv) in p {
                    b.insert(pk.clone(), pv.clone());
                }
            }
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(base)
}

fn merge_types(e: &mut Entity, types: Option<Vec<String>>) {
    for t in types.into_iter().flatten() {
        if !e.types.contains(&t) {
            e.types.push(t);
        }
    }
}

fn remove_instance(e: &mut Entity, name: &str, dataset_id: Option<&str>) -> bool {
    let Some(list) = e.attrs.get_mut(name) else {
        return false;
    };
    let before = list.len();
    list.retain(|a| a.dataset_id.as_deref() != dataset_id);
    let removed = list.len() != before;
    if list.is_empty() {
        e.attrs.remove(name);
    }
    removed
}

fn push_unique(v: &mut Vec<String>, name: &str) {
    if !v.iter().any(|n| n == name) {
        v.push(name.to_string());
    }
}

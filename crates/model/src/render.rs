//! From the canonical [`Entity`] to the JSON a client asked for: normalized, concise or
//! key-values, compacted with the client's @context.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::entity::{AttrKind, Attribute, Attrs, Entity};
use crate::jsonld::ActiveContext;
use crate::validate::format_micros;

/// The three NGSI-LD representations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Every attribute with its `type` and all members.
    #[default]
    Normalized,
    /// Without redundant `type` members, bare values where unambiguous.
    Concise,
    /// Only the values (simplified representation).
    KeyValues,
}

/// What to put in a rendered entity.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// The representation.
    pub format: Format,
    /// Include `createdAt` and `modifiedAt`.
    pub sys_attrs: bool,
    /// Only these attributes (expanded names), when set.
    pub attrs: Option<HashSet<String>>,
    /// Render LanguageProperties as the string in this language (`lang` parameter).
    pub lang: Option<String>,
    /// Only instances with these datasetIds (`None` is the default instance), when set.
    pub dataset_ids: Option<Vec<Option<String>>>,
}

/// Renders an entity.
pub fn render_entity(e: &Entity, ctx: &ActiveContext, opts: &RenderOptions) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("id".into(), Value::String(e.id.clone()));
    out.insert("type".into(), render_types(&e.types, ctx));
    if let Some(scope) = &e.scope {
        let v = if scope.len() == 1 {
            Value::String(scope[0].clone())
        } else {
            scope.iter().cloned().map(Value::String).collect()
        };
        out.insert("scope".into(), v);
    }
    if opts.sys_attrs && opts.format != Format::KeyValues {
        out.insert("createdAt".into(), Value::String(format_micros(e.created_at)));
        out.insert("modifiedAt".into(), Value::String(format_micros(e.modified_at)));
    }
    for (name, instances) in &e.attrs {
        if opts.attrs.as_ref().is_some_and(|only| !only.contains(name)) || instances.is_empty() {
            continue;
        }
        match &opts.dataset_ids {
            None => {
                out.insert(ctx.compact(name), render_instances(instances, ctx, opts));
            }
            Some(ids) => {
                let kept: Vec<Attribute> = instances.iter().filter(|a| ids.contains(&a.dataset_id)).cloned().collect();
                if !kept.is_empty() {
                    out.insert(ctx.compact(name), render_instances(&kept, ctx, opts));
                }
            }
        }
    }
    out
}

/// Compacts entity types: one type is a string, several an array.
pub fn render_types(types: &[String], ctx: &ActiveContext) -> Value {
    if types.len() == 1 {
        Value::String(ctx.compact(&types[0]))
    } else {
        types.iter().map(|t| Value::String(ctx.compact(t))).collect()
    }
}

/// Renders all instances of one attribute: one object, or an array for a multi-attribute.
pub fn render_instances(instances: &[Attribute], ctx: &ActiveContext, opts: &RenderOptions) -> Value {
    if opts.format == Format::KeyValues {
        return key_value(&instances[0], ctx, opts);
    }
    if instances.len() == 1 {
        render_attribute(&instances[0], ctx, opts)
    } else {
        instances.iter().map(|a| render_attribute(a, ctx, opts)).collect()
    }
}

/// Renders one attribute instance (normalized or concise).
pub fn render_attribute(a: &Attribute, ctx: &ActiveContext, opts: &RenderOptions) -> Value {
    let payload = payload_out(a, ctx);
    let concise = opts.format == Format::Concise;
    let has_meta = a.dataset_id.is_some()
        || a.observed_at.is_some()
        || a.unit_code.is_some()
        || opts.sys_attrs
        || !a.sub.is_empty();
    if concise && !has_meta {
        match a.kind {
            AttrKind::Property if !payload.is_object() => return payload,
            AttrKind::GeoProperty => return payload,
            _ => {}
        }
    }
    let mut out = Map::new();
    if let (Some(lang), AttrKind::LanguageProperty) = (&opts.lang, a.kind) {
        let (tag, text) = pick_language(&a.value, lang);
        if !concise {
            out.insert("type".into(), Value::String("Property".into()));
        }
        out.insert("value".into(), text);
        out.insert("lang".into(), Value::String(tag));
    } else {
        if !concise {
            out.insert("type".into(), Value::String(a.kind.name().into()));
        }
        out.insert(a.kind.value_key().into(), payload);
    }
    if let Some(d) = &a.dataset_id {
        out.insert("datasetId".into(), Value::String(d.clone()));
    }
    if let Some(o) = &a.observed_at {
        out.insert("observedAt".into(), Value::String(o.clone()));
    }
    if let Some(u) = &a.unit_code {
        out.insert("unitCode".into(), Value::String(u.clone()));
    }
    if let Some(l) = &a.lang {
        out.insert("lang".into(), Value::String(l.clone()));
    }
    if opts.sys_attrs {
        out.insert("createdAt".into(), Value::String(format_micros(a.created_at)));
        out.insert("modifiedAt".into(), Value::String(format_micros(a.modified_at)));
    }
    render_sub(&a.sub, ctx, opts, &mut out);
    Value::Object(out)
}

fn render_sub(sub: &Attrs, ctx: &ActiveContext, opts: &RenderOptions, out: &mut Map<String, Value>) {
    let sub_opts = RenderOptions { attrs: None, ..opts.clone() };
    for (name, instances) in sub {
        if !instances.is_empty() {
            out.insert(ctx.compact(name), render_instances(instances, ctx, &sub_opts));
        }
    }
}

fn key_value(a: &Attribute, ctx: &ActiveContext, opts: &RenderOptions) -> Value {
    match (&opts.lang, a.kind) {
        (Some(lang), AttrKind::LanguageProperty) => pick_language(&a.value, lang).1,
        _ => payload_out(a, ctx),
    }
}

/// The payload as the client sees it: vocabulary IRIs compacted.
fn payload_out(a: &Attribute, ctx: &ActiveContext) -> Value {
    match (a.kind, &a.value) {
        (AttrKind::VocabProperty, Value::String(s)) => Value::String(ctx.compact(s)),
        (AttrKind::VocabProperty, Value::Array(items)) => {
            items.iter().map(|v| v.as_str().map_or_else(|| v.clone(), |s| Value::String(ctx.compact(s)))).collect()
        }
        (_, v) => v.clone(),
    }
}

/// The best match for `lang` in a language map: exact tag, then primary subtag, `@none`, first.
fn pick_language(map: &Value, lang: &str) -> (String, Value) {
    let Some(map) = map.as_object() else {
        return (String::new(), Value::Null);
    };
    let wanted: Vec<&str> = lang.split(',').map(|l| l.split(';').next().unwrap_or("").trim()).collect();
    for w in &wanted {
        if *w == "*" {
            break;
        }
        if let Some((tag, v)) = map.iter().find(|(t, _)| t.eq_ignore_ascii_case(w)) {
            return (tag.clone(), v.clone());
        }
        let primary = w.split('-').next().unwrap_or(w);
        if let Some((tag, v)) = map.iter().find(|(t, _)| t.split('-').next().unwrap_or(t).eq_ignore_ascii_case(primary))
        {
            return (tag.clone(), v.clone());
        }
    }
    map.get("@none")
        .map(|v| ("@none".to_string(), v.clone()))
        .or_else(|| map.iter().next().map(|(t, v)| (t.clone(), v.clone())))
        .unwrap_or_default()
}

//! From the JSON a client sends (normalized or concise, compacted with its @context) to the
//! canonical, expanded [`Entity`] and its attributes.

use serde_json::{Map, Value};

use crate::entity::{AttrKind, Attribute, Attrs, Entity, Micros};
use crate::error::{NgsiError, Result};
use crate::jsonld::ActiveContext;
use crate::validate::{check_datetime, check_geometry, check_name, check_uri, is_uri};

/// The value that deletes an attribute in merge and update operations.
pub const NGSI_LD_NULL: &str = "urn:ngsi-ld:null";

/// Entity members that are not attributes.
const ENTITY_RESERVED: &[&str] =
    &["id", "@id", "type", "@type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt"];

/// Attribute members that are neither the payload nor sub-attributes.
const ATTR_META: &[&str] = &[
    "type",
    "datasetId",
    "observedAt",
    "unitCode",
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "instanceId",
    "@context",
    "lang",
];

/// Limits enforced while parsing, so that no single entity can exhaust the broker.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most attributes (names) an entity may have.
    pub max_attributes: usize,
    /// Deepest nesting of sub-attributes.
    pub max_sub_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_attributes: 1024, max_sub_depth: 8 }
    }
}

/// What an attribute in a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrInput {
    /// Create or overwrite this instance.
    Set(Attribute),
    /// Delete the instance with this datasetId (`urn:ngsi-ld:null` in a merge or update).
    Delete(Option<String>),
}

/// A partial entity: what append, update and merge operations carry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fragment {
    /// The `id`, if the body has one.
    pub id: Option<String>,
    /// Expanded types, if the body has them.
    pub types: Option<Vec<String>>,
    /// Scopes, if the body has them.
    pub scope: Option<Vec<String>>,
    /// Attribute inputs by expanded name, in instance order.
    pub attrs: Vec<(String, Vec<AttrInput>)>,
}

/// Parses request bodies with one active context at one point in time.
pub struct Parser<'a> {
    /// The request's context.
    pub ctx: &'a ActiveContext,
    /// The time stamped on what is created or modified.
    pub now: Micros,
    /// The limits to enforce.
    pub limits: Limits,
}

impl Parser<'_> {
    /// Parses a complete entity (create, replace, upsert): `id` and `type` are required.
    pub fn entity(&self, body: &Value) -> Result<Entity> {
        let obj = as_object(body, "an entity")?;
        let frag = self.fragment_of(obj, false)?;
        let id = frag.id.ok_or_else(|| NgsiError::bad_data("the entity has no \"id\""))?;
        let types = frag.types.ok_or_else(|| NgsiError::bad_data(format!("entity {id} has no \"type\"")))?;
        let mut attrs = Attrs::new();
        for (name, inputs) in frag.attrs {
            let list = attrs.entry(name).or_default();
            for input in inputs {
                if let AttrInput::Set(a) = input {
                    list.push(a);
                }
            }
        }
        Ok(Entity { id, types, scope: frag.scope, created_at: self.now, modified_at: self.now, attrs })
    }

    /// Parses a partial entity. With `allow_null`, `urn:ngsi-ld:null` deletes.
    pub fn fragment(&self, body: &Value, allow_null: bool) -> Result<Fragment> {
        self.fragment_of(as_object(body, "the request body")?, allow_null)
    }

    fn fragment_of(&self, obj: &Map<String, Value>, allow_null: bool) -> Result<Fragment> {
        let mut frag = Fragment::default();
        if let Some(id) = obj.get("id").or_else(|| obj.get("@id")) {
            let id = id.as_str().ok_or_else(|| NgsiError::bad_data("\"id\" must be a string"))?;
            check_uri(id, "entity id")?;
            frag.id = Some(id.to_string());
        }
        if let Some(t) = obj.get("type").or_else(|| obj.get("@type")) {
            frag.types = Some(self.types(t)?);
        }
        if let Some(s) = obj.get("scope") {
            frag.scope = Some(scopes(s)?);
        }
        for (term, raw) in obj {
            if ENTITY_RESERVED.contains(&term.as_str()) {
                continue;
            }
            let name = self.name(term, "attribute name")?;
            let inputs = self.attribute(term, raw, allow_null, 0)?;
            frag.attrs.push((name, inputs));
        }
        if frag.attrs.len() > self.limits.max_attributes {
            return Err(NgsiError::bad_data(format!(
                "the entity has {} attributes, more than the limit of {}",
                frag.attrs.len(),
                self.limits.max_attributes
            )));
        }
        Ok(frag)
    }

    /// Checks a name (attribute or type) and expands it to an IRI.
    pub fn name(&self, term: &str, what: &str) -> Result<String> {
        check_name(term, what)?;
        let iri = self.ctx.expand(term);
        if iri.starts_with('@') || !iri.contains(':') {
            return Err(NgsiError::bad_data(format!(
                "{what} {term:?} does not expand to an IRI with the @context in use"
            )));
        }
        Ok(iri)
    }

    /// Parses entity types: a name or a non-empty list of names.
    pub fn types(&self, v: &Value) -> Result<Vec<String>> {
        let names: Vec<&str> = match v {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) if !a.is_empty() => a
                .iter()
                .map(|t| t.as_str().ok_or_else(|| NgsiError::bad_data("entity types must be strings")))
                .collect::<Result<_>>()?,
            _ => {
                return Err(NgsiError::bad_data("\"type\" must be a string or a non-empty array of strings"));
            }
        };
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let iri = self.name(n, "entity type")?;
            if !out.contains(&iri) {
                out.push(iri);
            }
        }
        Ok(out)
    }

    /// Parses one attribute's value (one instance or an array of instances) named `term`.
    pub fn attribute(&self, term: &str, raw: &Value, allow_null: bool, depth: usize) -> Result<Vec<AttrInput>> {
        if depth > self.limits.max_sub_depth {
            return Err(NgsiError::bad_data(format!(
                "sub-attributes of {term} are nested deeper than the limit of {}",
                self.limits.max_sub_depth
            )));
        }
        let inputs = match raw {
            Value::Array(items) if !items.is_empty() && items.iter().all(is_instance_like) => {
                items.iter().map(|i| self.instance(term, i, allow_null, depth)).collect::<Result<Vec<_>>>()?
            }
            _ => vec![self.instance(term, raw, allow_null, depth)?],
        };
        let mut seen: Vec<Option<&str>> = Vec::new();
        for i in &inputs {
            let ds = match i {
                AttrInput::Set(a) => a.dataset_id.as_deref(),
                AttrInput::Delete(d) => d.as_deref(),
            };
            if seen.contains(&ds) {
                return Err(NgsiError::bad_data(format!(
                    "attribute {term} has two instances with the same datasetId {}",
                    ds.unwrap_or("(default)")
                )));
            }
            seen.push(ds);
        }
        Ok(inputs)
    }

    fn instance(&self, term: &str, raw: &Value, allow_null: bool, depth: usize) -> Result<AttrInput> {
        let obj = match raw {
            Value::Null => {
                return Err(NgsiError::bad_data(format!(
                    "attribute {term} is null; use \"{NGSI_LD_NULL}\" to delete an attribute"
                )));
            }
            Value::String(s) if s == NGSI_LD_NULL && allow_null => {
                return Ok(AttrInput::Delete(None));
            }
            Value::Object(obj) => obj,
            // Concise form: a bare value is a Property.
            other => return Ok(AttrInput::Set(self.bare_property(other.clone()))),
        };
        let kind = self.kind_of(term, obj)?;
        let Some(kind) = kind else {
            // A concise GeoProperty: the geometry itself.
            return Ok(AttrInput::Set(Attribute { kind: AttrKind::GeoProperty, ..self.bare_property(raw.clone()) }));
        };
        let key = kind.value_key();
        let dataset_id = match obj.get("datasetId") {
            None => None,
            Some(Value::String(d)) => {
                check_uri(d, "datasetId")?;
                Some(d.clone())
            }
            Some(_) => {
                return Err(NgsiError::bad_data(format!("datasetId of {term} must be a URI string")));
            }
        };
        let payload = match obj.get(key) {
            Some(p) if allow_null && is_ngsi_null(p) => return Ok(AttrInput::Delete(dataset_id)),
            Some(Value::Null) | None => {
                return Err(NgsiError::bad_data(format!("{} {term} has no \"{key}\"", kind.name())));
            }
            Some(p) => self.payload(term, kind, p)?,
        };
        let mut attr = Attribute {
            kind,
            value: payload,
            dataset_id,
            observed_at: None,
            unit_code: None,
            lang: None,
            created_at: self.now,
            modified_at: self.now,
            sub: Attrs::new(),
        };
        if let Some(o) = obj.get("observedAt") {
            attr.observed_at = Some(check_datetime(o, &format!("observedAt of {term}"))?);
        }
        if let Some(u) = obj.get("unitCode") {
            let u = u.as_str().ok_or_else(|| NgsiError::bad_data(format!("unitCode of {term} must be a string")))?;
            attr.unit_code = Some(u.to_string());
        }
        if let Some(l) = obj.get("lang") {
            let l = l.as_str().ok_or_else(|| NgsiError::bad_data(format!("lang of {term} must be a string")))?;
            attr.lang = Some(l.to_string());
        }
        for (sub_term, sub_raw) in obj {
            if sub_term == key || ATTR_META.contains(&sub_term.as_str()) {
                continue;
            }
            if AttrKind::ALL.iter().any(|k| k.value_key() == sub_term) {
                return Err(NgsiError::bad_data(format!("{} {term} cannot have a \"{sub_term}\" member", kind.name())));
            }
            let sub_name = self.name(sub_term, "sub-attribute name")?;
            let list = attr.sub.entry(sub_name).or_default();
            for input in self.attribute(sub_term, sub_raw, false, depth + 1)? {
                if let AttrInput::Set(a) = input {
                    list.push(a);
                }
            }
        }
        Ok(AttrInput::Set(attr))
    }

    /// The kind of an attribute object: explicit `type`, or inferred from its members (concise
    /// form). `None` means the object is itself a GeoJSON geometry.
    fn kind_of(&self, term: &str, obj: &Map<String, Value>) -> Result<Option<AttrKind>> {
        if let Some(t) = obj.get("type") {
            let name =
                t.as_str().ok_or_else(|| NgsiError::bad_data(format!("type of attribute {term} must be a string")))?;
            if let Some(kind) = AttrKind::from_name(name).or_else(|| AttrKind::from_name(&self.ctx.expand(name))) {
                return Ok(Some(kind));
            }
            if is_geometry_type(name) && obj.contains_key("coordinates") {
                return Ok(None);
            }
            return Err(NgsiError::bad_data(format!(
                "attribute {term} has type {name:?}, which is not an NGSI-LD attribute type"
            )));
        }
        let inferred =
            AttrKind::ALL.into_iter().filter(|k| *k != AttrKind::GeoProperty).find(|k| obj.contains_key(k.value_key()));
        Ok(Some(match inferred {
            Some(AttrKind::Property) if obj.get("value").is_some_and(|v| check_geometry(v).is_ok()) => {
                AttrKind::GeoProperty
            }
            Some(k) => k,
            None => {
                return Err(NgsiError::bad_data(format!(
                    "attribute {term} has neither a \"type\" nor a value member (value, object, languageMap, vocab, json, valueList, objectList)"
                )));
            }
        }))
    }

    fn payload(&self, term: &str, kind: AttrKind, p: &Value) -> Result<Value> {
        let bad = |why: &str| NgsiError::bad_data(format!("{} {term}: {why}", kind.name()));
        match kind {
            AttrKind::Property | AttrKind::JsonProperty => Ok(p.clone()),
            AttrKind::GeoProperty => {
                check_geometry(p).map_err(|e| bad(&e.detail))?;
                Ok(p.clone())
            }
            AttrKind::Relationship => match p {
                Value::String(s) if is_uri(s) => Ok(p.clone()),
                Value::Array(a) if !a.is_empty() && a.iter().all(|o| o.as_str().is_some_and(is_uri)) => Ok(p.clone()),
                _ => Err(bad("\"object\" must be a URI or a list of URIs")),
            },
            AttrKind::ListRelationship => {
                let items = p.as_array().ok_or_else(|| bad("\"objectList\" must be an array"))?;
                let ids = items
                    .iter()
                    .map(|o| match o {
                        Value::String(s) if is_uri(s) => Ok(Value::String(s.clone())),
                        Value::Object(m) => match m.get("object") {
                            Some(Value::String(s)) if is_uri(s) => Ok(Value::String(s.clone())),
                            _ => Err(bad("each item of \"objectList\" must be a URI")),
                        },
                        _ => Err(bad("each item of \"objectList\" must be a URI")),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Value::Array(ids))
            }
            AttrKind::ListProperty => match p {
                Value::Array(_) => Ok(p.clone()),
                _ => Err(bad("\"valueList\" must be an array")),
            },
            AttrKind::LanguageProperty => {
                let map = p.as_object().ok_or_else(|| bad("\"languageMap\" must be an object of language tags"))?;
                for (tag, text) in map {
                    let ok = !tag.is_empty()
                        && match text {
                            Value::String(_) => true,
                            Value::Array(a) => a.iter().all(Value::is_string),
                            _ => false,
                        };
                    if !ok {
                        return Err(bad(&format!("language {tag:?} must map to a string or a list of strings")));
                    }
                }
                Ok(p.clone())
            }
            AttrKind::VocabProperty => match p {
                Value::String(s) => Ok(Value::String(self.ctx.expand(s))),
                Value::Array(a) if !a.is_empty() => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(|s| Value::String(self.ctx.expand(s)))
                            .ok_or_else(|| bad("\"vocab\" items must be strings"))
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Value::Array),
                _ => Err(bad("\"vocab\" must be a string or a list of strings")),
            },
        }
    }

    fn bare_property(&self, value: Value) -> Attribute {
        Attribute {
            kind: AttrKind::Property,
            value,
            dataset_id: None,
            observed_at: None,
            unit_code: None,
            lang: None,
            created_at: self.now,
            modified_at: self.now,
            sub: Attrs::new(),
        }
    }
}

/// Whether a payload is the NGSI-LD null: the string itself, or a language map of it.
fn is_ngsi_null(p: &Value) -> bool {
    match p {
        Value::String(s) => s == NGSI_LD_NULL,
        Value::Object(m) => m.len() == 1 && m.get("@none").is_some_and(|v| v == NGSI_LD_NULL),
        _ => false,
    }
}

fn as_object<'v>(v: &'v Value, what: &str) -> Result<&'v Map<String, Value>> {
    v.as_object().ok_or_else(|| NgsiError::bad_data(format!("{what} must be a JSON object")))
}

fn scopes(v: &Value) -> Result<Vec<String>> {
    let list: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    list.into_iter()
        .map(|s| match s.as_str() {
            Some(s) if s.starts_with('/') && !s.contains(char::is_whitespace) => Ok(s.to_string()),
            _ => Err(NgsiError::bad_data(format!("scope {s} is not of the form /a/b"))),
        })
        .collect()
}

fn is_geometry_type(t: &str) -> bool {
    matches!(
        t,
        "Point" | "MultiPoint" | "LineString" | "MultiLineString" | "Polygon" | "MultiPolygon" | "GeometryCollection"
    )
}

/// Whether an array item looks like an attribute instance (so the array is a multi-attribute).
fn is_instance_like(v: &Value) -> bool {
    v.as_object().is_some_and(|o| o.contains_key("type") || AttrKind::ALL.iter().any(|k| o.contains_key(k.value_key())))
}

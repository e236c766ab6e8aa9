//! From the JSON a client sends (normalized or concise, compacted with its @context) to the
//! canonical, expanded [`Entity`] and its attributes.

use serde_json::{Map, Value};

use crate::entity::{AttrKind, Attribute, Attrs, Entity, Micros};
use crate::error::{NgsiError, Result};
use crate::jsonld::ActiveContext;
use crate::validate::{check_datetime, check_geometry, check_name, check_uri, is_invisible, is_uri};

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
///
/// The byte limits keep every value that becomes (part of) a storage key well under the storage
/// engine's key limit of 65,535 bytes, and refuse absurd names and URLs with a clear 400 before
/// anything is stored or fetched.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most attributes (names) an entity may have; also the most types it may have.
    pub max_attributes: usize,
    /// Deepest nesting of sub-attributes.
    pub max_sub_depth: usize,
    /// Longest id in bytes: entity and subscription ids, relationship objects, datasetIds and any
    /// other URI that names a resource (`--max-id-bytes`, default 2,048).
    pub max_id_bytes: usize,
    /// Longest entity type or attribute name in bytes, both as sent and expanded to an IRI
    /// (`--max-name-bytes`, default 512).
    pub max_name_bytes: usize,
    /// Longest URL in bytes: @context URLs (Link header or body), `jsonldContext`, notification
    /// endpoints (`--max-url-bytes`, default 2,048).
    pub max_url_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_attributes: 1024, max_sub_depth: 8, max_id_bytes: 2048, max_name_bytes: 512, max_url_bytes: 2048 }
    }
}

impl Limits {
    /// Checks that `id` is a URI of at most `max_id_bytes`, naming `what` in the error.
    pub fn check_id(&self, id: &str, what: &str) -> Result<()> {
        check_len(id, self.max_id_bytes, what, "max-id-bytes")?;
        check_uri(id, what)
    }

    /// Checks a name (entity type or attribute) as sent: the NGSI-LD name grammar and
    /// `max_name_bytes`.
    pub fn check_name(&self, name: &str, what: &str) -> Result<()> {
        check_len(name, self.max_name_bytes, what, "max-name-bytes")?;
        check_name(name, what)
    }

    /// Checks the IRI a name expanded to against `max_name_bytes`.
    pub fn check_expanded(&self, term: &str, iri: &str, what: &str) -> Result<()> {
        if iri.len() > self.max_name_bytes {
            return Err(NgsiError::bad_data(format!(
                "{what} {} expands to an IRI of {} bytes, more than the limit of {} bytes (max-name-bytes)",
                shorten(term),
                iri.len(),
                self.max_name_bytes
            )));
        }
        Ok(())
    }

    /// Checks that `url` is an absolute URI of at most `max_url_bytes`, naming `what`.
    pub fn check_url(&self, url: &str, what: &str) -> Result<()> {
        check_len(url, self.max_url_bytes, what, "max-url-bytes")?;
        if is_uri(url) { Ok(()) } else { Err(NgsiError::bad_data(format!("{what} {url:?} is not an absolute URI"))) }
    }
}

/// Fails when `s` is longer than `max` bytes, naming `what` and the limit (`flag`).
fn check_len(s: &str, max: usize, what: &str, flag: &str) -> Result<()> {
    if s.len() > max {
        return Err(NgsiError::bad_data(format!(
            "{what} {} is {} bytes long, more than the limit of {max} bytes ({flag})",
            shorten(s),
            s.len()
        )));
    }
    Ok(())
}

/// The start of a long value, quoted, for error details that must not echo megabytes back.
pub fn shorten(s: &str) -> String {
    const SHOWN: usize = 40;
    if s.len() <= SHOWN {
        return format!("{s:?}");
    }
    let end = (0..=SHOWN).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
    format!("{:?}...", &s[..end])
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
            self.limits.check_id(id, "entity id")?;
            frag.id = Some(id.to_string());
        }
        if let Some(t) = obj.get("type").or_else(|| obj.get("@type")) {
            frag.types = Some(self.types(t)?);
        }
        if let Some(s) = obj.get("scope") {
            frag.scope = Some(scopes(s, &self.limits)?);
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
        self.limits.check_name(term, what)?;
        let iri = self.ctx.expand(term);
        if iri.starts_with('@') || !iri.contains(':') {
            return Err(NgsiError::bad_data(format!(
                "{what} {term:?} does not expand to an IRI with the @context in use"
            )));
        }
        self.limits.check_expanded(term, &iri, what)?;
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
        if names.len() > self.limits.max_attributes {
            return Err(NgsiError::bad_data(format!(
                "the entity has {} types, more than the limit of {} (max-attributes)",
                names.len(),
                self.limits.max_attributes
            )));
        }
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
            // A concise GeoProperty: the geometry itself, checked as a GeoProperty's value is.
            check_geometry(raw).map_err(|e| NgsiError::bad_data(format!("GeoProperty {term}: {}", e.detail)))?;
            return Ok(AttrInput::Set(Attribute { kind: AttrKind::GeoProperty, ..self.bare_property(raw.clone()) }));
        };
        let key = kind.value_key();
        let dataset_id = match obj.get("datasetId") {
            None => None,
            Some(Value::String(d)) => {
                self.limits.check_id(d, &format!("datasetId of {term}"))?;
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
            AttrKind::Relationship => {
                let object = |s: &str| self.limits.check_id(s, &format!("the object of {term}"));
                match p {
                    Value::String(s) if is_uri(s) => object(s).map(|()| p.clone()),
                    Value::Array(a) if !a.is_empty() && a.iter().all(|o| o.as_str().is_some_and(is_uri)) => {
                        a.iter().filter_map(Value::as_str).try_for_each(object).map(|()| p.clone())
                    }
                    _ => Err(bad("\"object\" must be a URI or a list of URIs")),
                }
            }
            AttrKind::ListRelationship => {
                let items = p.as_array().ok_or_else(|| bad("\"objectList\" must be an array"))?;
                let object = |s: &String| {
                    self.limits.check_id(s, &format!("an object of {term}")).map(|()| Value::String(s.clone()))
                };
                let ids = items
                    .iter()
                    .map(|o| match o {
                        Value::String(s) if is_uri(s) => object(s),
                        Value::Object(m) => match m.get("object") {
                            Some(Value::String(s)) if is_uri(s) => object(s),
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

fn scopes(v: &Value, limits: &Limits) -> Result<Vec<String>> {
    let list: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    list.into_iter()
        .map(|s| match s.as_str() {
            Some(s) if s.starts_with('/') && !s.contains(|c: char| c.is_whitespace() || is_invisible(c)) => {
                check_len(s, limits.max_id_bytes, "scope", "max-id-bytes")?;
                Ok(s.to_string())
            }
            _ => Err(NgsiError::bad_data(format!("scope {} is not of the form /a/b", shorten(&s.to_string())))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(limits: Limits, body: Value) -> Result<Entity> {
        let ctx = ActiveContext::core(&json!({"@context": {"@vocab": "urn:v:"}})).unwrap();
        Parser { ctx: &ctx, now: 0, limits }.entity(&body)
    }

    fn refused(limits: Limits, body: Value, detail: &str) {
        let e = parse(limits, body).expect_err("refused");
        assert_eq!(e.kind, crate::ErrorKind::BadRequestData);
        assert!(e.detail.contains(detail), "{}", e.detail);
    }

    /// Regression (issue 19): an id of 65,535 bytes reached the storage engine and panicked its
    /// writer; every id, name and object is length-checked first.
    #[test]
    fn lengths_are_limited() {
        let l = Limits::default();
        let long_id = format!("urn:ngsi-ld:T:{}", "x".repeat(65_535));
        refused(l, json!({"id": long_id, "type": "T"}), "more than the limit of 2048 bytes (max-id-bytes)");
        let id = format!("urn:x:{}", "a".repeat(2042));
        assert_eq!(id.len(), 2048);
        assert!(parse(l, json!({"id": id, "type": "T"})).is_ok());
        refused(l, json!({"id": format!("{id}b"), "type": "T"}), "max-id-bytes");
        let long = "n".repeat(513);
        refused(l, json!({"id": "urn:x:1", "type": long}), "entity type \"nnnn");
        refused(l, json!({"id": "urn:x:1", "type": "T", long.as_str(): 1}), "max-name-bytes");
        // 500 bytes as sent, but longer than 512 once expanded with @vocab urn:v:.
        let term = "m".repeat(509);
        refused(l, json!({"id": "urn:x:1", "type": "T", term.as_str(): 1}), "expands to an IRI of 515 bytes");
        let far = format!("urn:x:{}", "o".repeat(3000));
        refused(l, json!({"id": "urn:x:1", "type": "T", "r": {"type": "Relationship", "object": far}}), "object of r");
        refused(
            l,
            json!({"id": "urn:x:1", "type": "T", "r": {"type": "Relationship", "object": ["urn:x:2", far]}}),
            "",
        );
        refused(l, json!({"id": "urn:x:1", "type": "T", "r": {"type": "ListRelationship", "objectList": [far]}}), "");
        refused(l, json!({"id": "urn:x:1", "type": "T", "p": {"type": "Property", "value": 1, "datasetId": far}}), "");
        refused(l, json!({"id": "urn:x:1", "type": "T", "scope": format!("/{}", "s".repeat(3000))}), "scope");
        let small = Limits { max_id_bytes: 10, max_name_bytes: 3, ..l };
        refused(small, json!({"id": "urn:x:12345", "type": "T"}), "limit of 10 bytes");
        refused(small, json!({"id": "urn:x:1", "type": "Tree"}), "limit of 3 bytes");
    }

    /// Regression (issue 19): a concise GeoProperty (the geometry itself) was not validated.
    #[test]
    fn concise_geometries_are_checked() {
        let l = Limits::default();
        let open = json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]});
        refused(l, json!({"id": "urn:x:1", "type": "T", "area": open}), "GeoProperty area: invalid GeoJSON geometry");
        let far = json!({"type": "Point", "coordinates": [500, 0]});
        refused(l, json!({"id": "urn:x:1", "type": "T", "location": far}), "GeoProperty location");
        let ok = json!({"type": "Point", "coordinates": [141.6, 42.6]});
        assert!(parse(l, json!({"id": "urn:x:1", "type": "T", "location": ok})).is_ok());
    }

    /// Regression (issue 19): an entity could have any number of types.
    #[test]
    fn types_are_capped_like_attributes() {
        let l = Limits { max_attributes: 3, ..Limits::default() };
        assert!(parse(l, json!({"id": "urn:x:1", "type": ["A", "B", "C"]})).is_ok());
        refused(l, json!({"id": "urn:x:1", "type": ["A", "B", "C", "D"]}), "4 types, more than the limit of 3");
    }

    /// Regression (issue 19): bidi overrides passed in ids, types and attribute names.
    #[test]
    fn bidi_characters_are_refused() {
        let l = Limits::default();
        refused(l, json!({"id": "urn:x:\u{202E}1", "type": "T"}), "not a URI");
        refused(l, json!({"id": "urn:x:1", "type": "T\u{2066}"}), "forbidden character");
        refused(l, json!({"id": "urn:x:1", "type": "T", "a\u{202D}b": 1}), "forbidden character");
        refused(l, json!({"id": "urn:x:1", "type": "T", "scope": "/a\u{202E}b"}), "scope");
    }
}

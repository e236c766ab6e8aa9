//! The canonical, expanded form of an NGSI-LD entity as the store keeps it.
//!
//! Names and types are full IRIs; values are kept as JSON (`serde_json::Value`). Serialized field
//! names are one letter on purpose: this is the on-disk format, and it is versioned by the store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Attributes by expanded name; each name has one or more instances, told apart by `datasetId`.
pub type Attrs = BTreeMap<String, Vec<Attribute>>;

/// Microseconds since the Unix epoch (UTC): system timestamps.
pub type Micros = i64;

/// An NGSI-LD entity in canonical (expanded) form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// The entity id, a URI.
    pub id: String,
    /// Expanded type IRIs, at least one.
    #[serde(rename = "t")]
    pub types: Vec<String>,
    /// Scopes (`/a/b`), if any.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<String>>,
    /// When the entity was created.
    #[serde(rename = "c")]
    pub created_at: Micros,
    /// When the entity last changed.
    #[serde(rename = "m")]
    pub modified_at: Micros,
    /// The attributes.
    #[serde(rename = "a", default)]
    pub attrs: Attrs,
}

/// The kinds of NGSI-LD attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttrKind {
    /// A value of any JSON type.
    Property,
    /// A link to another entity (or entities): `object`.
    Relationship,
    /// A GeoJSON geometry.
    GeoProperty,
    /// Strings by language tag: `languageMap`.
    LanguageProperty,
    /// Vocabulary IRIs: `vocab`.
    VocabProperty,
    /// Opaque JSON, never expanded: `json`.
    JsonProperty,
    /// An ordered list of values: `valueList`.
    ListProperty,
    /// An ordered list of entity ids: `objectList`.
    ListRelationship,
}

impl AttrKind {
    /// All kinds, for lookups by name.
    pub const ALL: [AttrKind; 8] = [
        AttrKind::Property,
        AttrKind::Relationship,
        AttrKind::GeoProperty,
        AttrKind::LanguageProperty,
        AttrKind::VocabProperty,
        AttrKind::JsonProperty,
        AttrKind::ListProperty,
        AttrKind::ListRelationship,
    ];

    /// The kind's name as it appears in `type`.
    pub fn name(self) -> &'static str {
        match self {
            AttrKind::Property => "Property",
            AttrKind::Relationship => "Relationship",
            AttrKind::GeoProperty => "GeoProperty",
            AttrKind::LanguageProperty => "LanguageProperty",
            AttrKind::VocabProperty => "VocabProperty",
            AttrKind::JsonProperty => "JsonProperty",
            AttrKind::ListProperty => "ListProperty",
            AttrKind::ListRelationship => "ListRelationship",
        }
    }

    /// The member holding the kind's main payload.
    pub fn value_key(self) -> &'static str {
        match self {
            AttrKind::Property | AttrKind::GeoProperty => "value",
            AttrKind::Relationship => "object",
            AttrKind::LanguageProperty => "languageMap",
            AttrKind::VocabProperty => "vocab",
            AttrKind::JsonProperty => "json",
            AttrKind::ListProperty => "valueList",
            AttrKind::ListRelationship => "objectList",
        }
    }

    /// The kind named `name` (compact or expanded under the core context).
    pub fn from_name(name: &str) -> Option<AttrKind> {
        let short = name.strip_prefix("https://uri.etsi.org/ngsi-ld/").unwrap_or(name);
        let short = short.strip_prefix("ngsi-ld:").unwrap_or(short);
        // v1.7 called VocabProperty VocabularyProperty.
        if short == "VocabularyProperty" {
            return Some(AttrKind::VocabProperty);
        }
        AttrKind::ALL.into_iter().find(|k| k.name() == short)
    }
}

/// One instance of an attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    /// What kind of attribute this is.
    #[serde(rename = "k")]
    pub kind: AttrKind,
    /// The payload, whose member name depends on the kind ([`AttrKind::value_key`]).
    #[serde(rename = "v")]
    pub value: Value,
    /// The instance's datasetId; `None` is the default instance.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    /// When the value was observed, as the client sent it (a validated DateTime).
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<String>,
    /// The UN/CEFACT unit code.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub unit_code: Option<String>,
    /// For LanguageProperty created from a plain string with `lang`, and for Property `lang`.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// When this instance was created.
    #[serde(rename = "c")]
    pub created_at: Micros,
    /// When this instance last changed.
    #[serde(rename = "m")]
    pub modified_at: Micros,
    /// Sub-attributes (properties of properties and alike).
    #[serde(rename = "s", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sub: Attrs,
}

impl Entity {
    /// The instance of attribute `name` with `dataset_id`, if present.
    pub fn instance(&self, name: &str, dataset_id: Option<&str>) -> Option<&Attribute> {
        self.attrs.get(name)?.iter().find(|a| a.dataset_id.as_deref() == dataset_id)
    }
}

/// Puts `attr` into `attrs[name]`, replacing the instance with the same datasetId (whose
/// `createdAt` it keeps). Returns whether an instance was replaced.
pub fn put_instance(attrs: &mut Attrs, name: &str, mut attr: Attribute) -> bool {
    let list = attrs.entry(name.to_string()).or_default();
    match list.iter_mut().find(|a| a.dataset_id == attr.dataset_id) {
        Some(old) => {
            attr.created_at = old.created_at;
            *old = attr;
            true
        }
        None => {
            if attr.dataset_id.is_none() {
                list.insert(0, attr);
            } else {
                list.push(attr);
            }
            false
        }
    }
}

//! Building NGSI-LD entities in the normalized representation, attribute by attribute.

use serde_json::{Map, Value, json};

/// An entity being built; [`EntityBuilder::build`] gives its normalized JSON (without @context).
#[derive(Debug, Clone)]
pub struct EntityBuilder(Map<String, Value>);

impl EntityBuilder {
    /// A new entity of `entity_type` with the id `urn:ngsi-ld:{entity_type}:{local_id}`; the local
    /// id is percent-encoded where a URN could not hold it.
    pub fn new(entity_type: &str, local_id: &str) -> EntityBuilder {
        let mut m = Map::new();
        m.insert("id".into(), Value::String(entity_id(entity_type, local_id)));
        m.insert("type".into(), Value::String(entity_type.into()));
        EntityBuilder(m)
    }

    /// The entity id.
    pub fn id(&self) -> &str {
        self.0["id"].as_str().unwrap_or_default()
    }

    /// Adds a Property.
    pub fn prop(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.0.insert(name.into(), json!({"type": "Property", "value": value.into()}));
        self
    }

    /// Adds a Property when there is a value.
    pub fn prop_opt<V: Into<Value>>(self, name: &str, value: Option<V>) -> Self {
        match value {
            Some(v) => self.prop(name, v),
            None => self,
        }
    }

    /// Adds a Property with a UN/CEFACT unit code.
    pub fn measure(mut self, name: &str, value: impl Into<Value>, unit_code: &str) -> Self {
        self.0.insert(name.into(), json!({"type": "Property", "value": value.into(), "unitCode": unit_code}));
        self
    }

    /// Adds a DateTime Property (`value` is an ISO 8601 date-time).
    pub fn date_time(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.into(), json!({"type": "Property", "value": {"@type": "DateTime", "@value": value}}));
        self
    }

    /// Adds a Relationship.
    pub fn rel(mut self, name: &str, object: &str) -> Self {
        self.0.insert(name.into(), json!({"type": "Relationship", "object": object}));
        self
    }

    /// Adds the GeoProperty `location` holding a point.
    pub fn point(self, lon: f64, lat: f64) -> Self {
        self.geo("location", json!({"type": "Point", "coordinates": [round6(lon), round6(lat)]}))
    }

    /// Adds a GeoProperty holding a GeoJSON geometry.
    pub fn geo(mut self, name: &str, geometry: Value) -> Self {
        self.0.insert(name.into(), json!({"type": "GeoProperty", "value": geometry}));
        self
    }

    /// The normalized entity.
    pub fn build(self) -> Value {
        Value::Object(self.0)
    }
}

/// `urn:ngsi-ld:{entity_type}:{local_id}`, with characters a URN cannot hold percent-encoded.
pub fn entity_id(entity_type: &str, local_id: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');
    format!("urn:ngsi-ld:{entity_type}:{}", percent_encoding::utf8_percent_encode(local_id, KEEP))
}

/// Coordinates are kept to 6 decimals (about 0.1 m), as the municipal datasets give them.
pub fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_normalized_entities_with_safe_ids() {
        let e = EntityBuilder::new("AED", "012131-A 1/2")
            .prop("name", "市役所")
            .prop_opt("nameKana", None::<String>)
            .measure("emission", 12.5, "KTN")
            .point(141.605531234, 42.634061)
            .build();
        assert_eq!(e["id"], "urn:ngsi-ld:AED:012131-A%201%2F2");
        assert_eq!(e["name"], json!({"type": "Property", "value": "市役所"}));
        assert!(e.get("nameKana").is_none());
        assert_eq!(e["emission"]["unitCode"], "KTN");
        assert_eq!(e["location"]["value"]["coordinates"], json!([141.605531, 42.634061]));
    }
}

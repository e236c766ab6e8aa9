//! Property tests: parsing arbitrary JSON as an entity, a fragment or an attribute never panics,
//! and whatever parses renders in every representation.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::jsonld::ActiveContext;
use crate::parse::{Limits, Parser};
use crate::render::{Format, RenderOptions, render_entity};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        prop_oneof![
            Just("Property"),
            Just("Relationship"),
            Just("GeoProperty"),
            Just("LanguageProperty"),
            Just("VocabProperty"),
            Just("JsonProperty"),
            Just("ListProperty"),
            Just("ListRelationship"),
            Just("Point"),
            Just("urn:ngsi-ld:null"),
            Just("urn:x:1"),
            Just("2024-01-01T00:00:00Z"),
            Just("value"),
            Just("object"),
        ]
        .prop_map(|s| Value::String(s.into())),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("type"),
            Just("value"),
            Just("object"),
            Just("languageMap"),
            Just("vocab"),
            Just("json"),
            Just("valueList"),
            Just("objectList"),
            Just("datasetId"),
            Just("observedAt"),
            Just("unitCode"),
            Just("coordinates"),
            Just("id"),
            Just("a"),
            Just("b"),
            Just("location"),
            Just("@context"),
            Just("scope"),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys, inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn parsing_never_panics_and_what_parses_renders(body in json_value(), a in json_value()) {
        let core = ActiveContext::core(&json!({"@context": {"@vocab": "urn:v:"}})).unwrap();
        let p = Parser { ctx: &core, now: 0, limits: Limits::default() };
        let mut entity = match body {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        entity.insert("id".into(), json!("urn:x:1"));
        entity.insert("type".into(), json!("T"));
        entity.insert("attr".into(), a.clone());
        if let Ok(e) = p.entity(&Value::Object(entity.clone())) {
            for format in [Format::Normalized, Format::Concise, Format::KeyValues] {
                let _ = render_entity(&e, &core, &RenderOptions { format, sys_attrs: true, ..Default::default() });
            }
        }
        let _ = p.fragment(&Value::Object(entity), true);
        let _ = p.attribute("attr", &a, true, 0);
    }
}

//! The @context documents built into the binary: every NGSI-LD core context version and the
//! datamodels.jp contexts (CC0). They are served and used offline, never fetched.

/// The core context Haskap expands and compacts with, and names in responses by default.
pub const CORE_CONTEXT_URL: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

/// The document of [`CORE_CONTEXT_URL`].
pub const CORE_CONTEXT: &str = include_str!("../contexts/ngsi-ld-core-context-v1.8.jsonld");

macro_rules! ctx {
    ($url:expr, $file:expr) => {
        ($url, include_str!(concat!("../contexts/", $file)))
    };
}

/// The Haskap city vocabulary (docs/city-vocabulary.md): the datamodels.jp disaster context plus
/// the city's own terms.
pub const CITY_CONTEXT_URL: &str = "https://w3id.org/haskap/context/city/v1.jsonld";

/// Built-in documents by URL. Core contexts come first.
pub const BUILTIN_CONTEXTS: &[(&str, &str)] = &[
    ctx!("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld", "ngsi-ld-core-context.jsonld"),
    ctx!("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.3.jsonld", "ngsi-ld-core-context-v1.3.jsonld"),
    ctx!("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.4.jsonld", "ngsi-ld-core-context-v1.4.jsonld"),
    ctx!("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.5.jsonld", "ngsi-ld-core-context-v1.5.jsonld"),
    ctx!("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld", "ngsi-ld-core-context-v1.6.jsonld"),
    ctx!("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.7.jsonld", "ngsi-ld-core-context-v1.7.jsonld"),
    ctx!("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld", "ngsi-ld-core-context-v1.8.jsonld"),
    ctx!("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld", "ngsi-ld-core-context-v1.9.jsonld"),
    ctx!("https://datamodels.jp/context/common/v1.0.0.jsonld", "datamodels/common-v1.0.0.jsonld"),
    ctx!("https://datamodels.jp/context/common/v1.jsonld", "datamodels/common-v1.0.0.jsonld"),
    ctx!("https://datamodels.jp/context/disaster/v1.0.0.jsonld", "datamodels/disaster-v1.0.0.jsonld"),
    ctx!("https://datamodels.jp/context/disaster/v1.jsonld", "datamodels/disaster-v1.0.0.jsonld"),
    ctx!("https://datamodels.jp/context/task/v1.0.0.jsonld", "datamodels/task-v1.0.0.jsonld"),
    ctx!("https://datamodels.jp/context/task/v1.jsonld", "datamodels/task-v1.0.0.jsonld"),
    ctx!("https://datamodels.jp/context/transportation/v1.0.0.jsonld", "datamodels/transportation-v1.0.0.jsonld"),
    ctx!("https://datamodels.jp/context/transportation/v1.jsonld", "datamodels/transportation-v1.0.0.jsonld"),
    ctx!("https://w3id.org/haskap/context/city/v1.jsonld", "haskap/city-v1.jsonld"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::ActiveContext;
    use std::sync::Arc;

    #[test]
    fn every_builtin_context_parses_and_datamodels_expand() {
        let docs: std::collections::HashMap<&str, Arc<serde_json::Value>> =
            BUILTIN_CONTEXTS.iter().map(|(u, d)| (*u, Arc::new(serde_json::from_str(d).unwrap()))).collect();
        let core = ActiveContext::core(&serde_json::from_str(CORE_CONTEXT).unwrap()).unwrap();
        for (url, _) in BUILTIN_CONTEXTS {
            core.extend(&serde_json::json!(url), &|u| docs.get(u).cloned()).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        let disaster = core
            .extend(&serde_json::json!("https://datamodels.jp/context/disaster/v1.jsonld"), &|u| docs.get(u).cloned())
            .unwrap();
        assert_eq!(disaster.expand("EvacuationSite"), "https://datamodels.jp/ns/disaster/EvacuationSite");
        assert_eq!(disaster.compact("https://datamodels.jp/ns/disaster/EvacuationSite"), "EvacuationSite");
        assert_eq!(disaster.expand("location"), "https://uri.etsi.org/ngsi-ld/location");
        let city = core.extend(&serde_json::json!(CITY_CONTEXT_URL), &|u| docs.get(u).cloned()).unwrap();
        assert_eq!(city.expand("EvacuationSite"), "https://datamodels.jp/ns/disaster/EvacuationSite");
        assert_eq!(city.expand("AED"), "https://w3id.org/haskap/city/AED");
        assert_eq!(city.expand("addressText"), "https://datamodels.jp/ns/common/addressText");
    }
}

//! Property tests: no parser panics, whatever the input, and whatever parses also compiles or
//! fails cleanly. They run with the unit tests (random inputs, a few thousand cases each).

use proptest::prelude::*;

use crate::{eval, geo, order, projection, q, types};

/// Characters that matter to the grammars, plus some that do not.
const ALPHABET: &str = "[a-zA-Z0-9()\\[\\];|!=<>~.,\"\\\\:/#{}+* _-]{0,48}";

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn q_parser_never_panics(s in ALPHABET) {
        if let Ok(expr) = q::parse(&s) {
            let _ = eval::compile(&expr, &s, &|t| format!("urn:v:{t}"));
        }
    }

    #[test]
    fn q_parser_never_panics_on_any_text(s in "\\PC{0,32}") {
        let _ = q::parse(&s);
    }

    #[test]
    fn type_and_scope_expressions_never_panic(s in ALPHABET) {
        if let Ok(t) = types::TypeExpr::parse(&s) {
            let _ = t.matches(&["A".to_string()]);
            let _ = crate::filter::scope_matches(&t, &["/a/b".to_string()]);
        }
    }

    #[test]
    fn projections_and_order_never_panic(s in ALPHABET) {
        let _ = projection::parse(&s);
        let _ = order::parse(&s, &|t| t.to_string());
    }

    #[test]
    fn geo_parsing_never_panics(rel in ALPHABET, coords in "[\\[\\]0-9.,eE+-]{0,40}") {
        let _ = geo::GeoRel::parse(&rel);
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&coords) {
            for g in ["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"] {
                if let Ok(query) = geo::GeoQuery::new("near;maxDistance==10", g, &v, "p".into()) {
                    let _ = query.envelope();
                }
                let _ = geo::GeoQuery::new("within", g, &v, "p".into());
            }
        }
    }
}

//! The whole selection of a query: ids, id pattern, type expression, attributes, `q` and
//! `scopeQ`, combined into one predicate over canonical entities.

use haskap_model::entity::Entity;
use regex::Regex;

use crate::eval::Compiled;
use crate::geo::GeoQuery;
use crate::types::TypeExpr;

/// A selection of entities. Every part that is set must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// One of these ids.
    pub ids: Option<Vec<String>>,
    /// An id matching this pattern.
    pub id_pattern: Option<Regex>,
    /// Types (expanded).
    pub types: Option<TypeExpr>,
    /// At least one of these attributes (expanded).
    pub attrs: Option<Vec<String>>,
    /// The `q` query.
    pub q: Option<Compiled>,
    /// The `scopeQ` query (scope patterns, see [`scope_matches`]).
    pub scope: Option<TypeExpr>,
    /// The geo-query.
    pub geo: Option<GeoQuery>,
}

impl Filter {
    /// Whether `e` is selected.
    pub fn matches(&self, e: &Entity) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(&e.id))
            && self.id_pattern.as_ref().is_none_or(|p| p.is_match(&e.id))
            && self.types.as_ref().is_none_or(|t| t.matches(&e.types))
            && self.attrs.as_ref().is_none_or(|a| a.iter().any(|n| e.attrs.contains_key(n)))
            && self.scope.as_ref().is_none_or(|s| scope_matches(s, e.scope.as_deref().unwrap_or(&[])))
            && self.q.as_ref().is_none_or(|q| q.matches(e))
            && self.geo.as_ref().is_none_or(|g| g.matches(e))
    }

    /// The (expanded) attributes evaluating the filter needs from an entity.
    pub fn attributes(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        if let Some(q) = &self.q {
            v.extend(q.attributes.iter().map(String::as_str));
        }
        if let Some(a) = &self.attrs {
            v.extend(a.iter().map(String::as_str));
        }
        if let Some(g) = &self.geo {
            v.push(&g.property);
        }
        v
    }

    /// Whether ids, types and attributes alone decide the selection (so that indexes answer it
    /// exactly, counts included, without looking at entities).
    pub fn is_index_exact(&self) -> bool {
        self.is_index_exact_but_geo() && self.geo.is_none()
    }

    /// Whether the indexes answer everything but `q`.
    pub fn is_index_exact_but_q(&self) -> bool {
        self.id_pattern.is_none() && self.scope.is_none() && self.geo.is_none()
    }

    /// Whether the indexes answer everything but the geo-query.
    pub fn is_index_exact_but_geo(&self) -> bool {
        self.id_pattern.is_none() && self.q.is_none() && self.scope.is_none()
    }
}

/// Compiles an id pattern. Beyond what the `regex` crate rejects, a quantifier applied to a
/// quantifier (`a**`, `a+*`) is an error, as in the regular expressions NGSI-LD refers to.
pub fn check_pattern(pattern: &str) -> Result<Regex, String> {
    use regex_syntax::ast::{Ast, parse::Parser};
    fn nested(a: &Ast) -> bool {
        match a {
            Ast::Repetition(r) => matches!(*r.ast, Ast::Repetition(_)) || nested(&r.ast),
            Ast::Group(g) => nested(&g.ast),
            Ast::Alternation(x) => x.asts.iter().any(nested),
            Ast::Concat(x) => x.asts.iter().any(nested),
            _ => false,
        }
    }
    if Parser::new().parse(pattern).is_ok_and(|a| nested(&a)) {
        return Err("a quantifier follows a quantifier".into());
    }
    Regex::new(pattern).map_err(|e| e.to_string())
}

/// Whether an entity with `scopes` satisfies a scope expression whose names are patterns:
/// `/a/b` is that scope, `/a/b/#` that scope and all below it, `/a/+` its direct children, `/#`
/// any scope at all.
pub fn scope_matches(expr: &TypeExpr, scopes: &[String]) -> bool {
    match expr {
        TypeExpr::Is(p) => scopes.iter().any(|s| scope_pattern(p, s)),
        TypeExpr::And(v) => v.iter().all(|e| scope_matches(e, scopes)),
        TypeExpr::Or(v) => v.iter().any(|e| scope_matches(e, scopes)),
    }
}

fn scope_pattern(pattern: &str, scope: &str) -> bool {
    if pattern == "/#" {
        return true;
    }
    let mut p = pattern.trim_start_matches('/').split('/');
    let mut s = scope.trim_start_matches('/').split('/');
    loop {
        match (p.next(), s.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let m = |p: &str, s: &[&str]| {
            scope_matches(&TypeExpr::parse(p).unwrap(), &s.iter().map(|x| x.to_string()).collect::<Vec<_>>())
        };
        assert!(m("/Tomakomai", &["/Tomakomai"]));
        assert!(!m("/Tomakomai", &["/Tomakomai/Port"]));
        assert!(m("/Tomakomai/#", &["/Tomakomai/Port"]));
        assert!(m("/Tomakomai/#", &["/Tomakomai"]));
        assert!(m("/Tomakomai/+", &["/Tomakomai/Port"]));
        assert!(!m("/Tomakomai/+", &["/Tomakomai/Port/East"]));
        assert!(m("/#", &["/x"]));
        assert!(!m("/#", &[]));
        assert!(m("/a;/b", &["/a", "/b"]));
        assert!(m("/a,/b", &["/b"]));
    }
}

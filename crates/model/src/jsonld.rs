//! JSON-LD term expansion and compaction: the subset of JSON-LD 1.1 context processing that NGSI-LD
//! needs.
//!
//! An [`ActiveContext`] is built once per distinct request context (the api layer caches it) from
//! the core context plus the user's context. Remote documents are never fetched here: building
//! asks a loader for each URL and reports [`ContextError::Missing`] when one is not at hand, so the
//! caller can fetch it and build again. Core terms are protected: a user context cannot redefine
//! them.

use std::collections::{HashMap, HashSet};

// Compaction looks up every attribute name of every entity rendered: a fast hash pays.
use rustc_hash::FxBuildHasher;
use std::sync::Arc;

use serde_json::{Map, Value};

/// How deep `@context` documents may refer to each other before we call it a loop.
const MAX_DEPTH: usize = 16;

/// Why an active context could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// A referenced context document is not loaded yet; fetch it and build again.
    #[error("context {0} is not loaded")]
    Missing(String),
    /// The context is not a valid JSON-LD context.
    #[error("invalid @context: {0}")]
    Invalid(String),
}

/// One term definition after expansion of its IRI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermDef {
    /// The absolute IRI (or keyword) the term stands for.
    pub iri: String,
    /// `@type` coercion (`@id`, `@vocab`, `@json` or a datatype IRI).
    pub coerce: Option<String>,
}

/// The result of processing a context: what every term means, and the reverse for compaction.
#[derive(Debug, Clone, Default)]
pub struct ActiveContext {
    terms: HashMap<String, TermDef, FxBuildHasher>,
    protected: HashSet<String, FxBuildHasher>,
    vocab: Option<String>,
    /// IRI → the term compaction prefers for it.
    reverse: HashMap<String, String, FxBuildHasher>,
    /// Terms usable as prefixes of compact IRIs: (IRI, term), longest IRI first.
    prefixes: Vec<(String, String)>,
}

impl ActiveContext {
    /// Builds the context that `core` (the NGSI-LD core context document) defines, protected.
    pub fn core(core_doc: &Value) -> Result<Self, ContextError> {
        let mut ctx = ActiveContext::default();
        let inner =
            core_doc.get("@context").ok_or_else(|| ContextError::Invalid("core context has no @context".into()))?;
        ctx.process(inner, &|_| None, 0)?;
        ctx.protected = ctx.terms.keys().cloned().collect();
        ctx.finish();
        Ok(ctx)
    }

    /// Builds the context of a request: `self` (the core) extended with the user's `@context`
    /// value, whose remote documents `loader` supplies (the whole document, with its `@context`).
    pub fn extend(&self, user: &Value, loader: &dyn Fn(&str) -> Option<Arc<Value>>) -> Result<Self, ContextError> {
        let mut ctx = self.clone();
        ctx.process(user, loader, 0)?;
        ctx.finish();
        Ok(ctx)
    }

    fn process(
        &mut self,
        value: &Value,
        loader: &dyn Fn(&str) -> Option<Arc<Value>>,
        depth: usize,
    ) -> Result<(), ContextError> {
        if depth > MAX_DEPTH {
            return Err(ContextError::Invalid("@context documents refer to each other too deeply".into()));
        }
        match value {
            Value::Null => Ok(()),
            Value::String(url) => {
                let doc = loader(url).ok_or_else(|| ContextError::Missing(url.clone()))?;
                let inner = doc
                    .get("@context")
                    .ok_or_else(|| ContextError::Invalid(format!("document {url} has no @context member")))?;
                self.process(inner, loader, depth + 1)
            }
            Value::Array(items) => {
                for item in items {
                    self.process(item, loader, depth + 1)?;
                }
                Ok(())
            }
            Value::Object(map) => self.process_object(map, loader, depth),
            other => Err(ContextError::Invalid(format!("a context cannot be {other}"))),
        }
    }

    fn process_object(
        &mut self,
        map: &Map<String, Value>,
        loader: &dyn Fn(&str) -> Option<Arc<Value>>,
        depth: usize,
    ) -> Result<(), ContextError> {
        if depth > MAX_DEPTH {
            return Err(ContextError::Invalid("@context documents import each other too deeply".into()));
        }
        if let Some(import) = map.get("@import") {
            let url = import.as_str().ok_or_else(|| ContextError::Invalid("@import must be a string".into()))?;
            let doc = loader(url).ok_or_else(|| ContextError::Missing(url.to_string()))?;
            if let Some(inner) = doc.get("@context").and_then(Value::as_object) {
                self.process_object(inner, loader, depth + 1)?;
            }
        }
        if let Some(vocab) = map.get("@vocab") {
            self.vocab = match vocab {
                Value::Null => None,
                Value::String(v) => Some(self.expand_with(map, v, &mut Vec::new())?),
                _ => return Err(ContextError::Invalid("@vocab must be a string".into())),
            };
        }
        for (term, def) in map {
            if term.starts_with('@') {
                continue;
            }
            if self.protected.contains(term) {
                continue;
            }
            let resolved = self.define(map, term, def, &mut Vec::new())?;
            match resolved {
                Some(d) => {
                    self.terms.insert(term.clone(), d);
                }
                None => {
                    self.terms.remove(term);
                }
            }
        }
        Ok(())
    }

    /// Resolves the definition of `term` found in `local` (the context object being processed).
    fn define(
        &self,
        local: &Map<String, Value>,
        term: &str,
        def: &Value,
        seen: &mut Vec<String>,
    ) -> Result<Option<TermDef>, ContextError> {
        if seen.iter().any(|s| s == term) {
            return Err(ContextError::Invalid(format!("cyclic definition of term {term}")));
        }
        seen.push(term.to_string());
        let out = match def {
            Value::Null => None,
            Value::String(iri) => Some(TermDef { iri: self.expand_with(local, iri, seen)?, coerce: None }),
            Value::Object(obj) => {
                let iri = match obj.get("@id") {
                    Some(Value::String(id)) => self.expand_with(local, id, seen)?,
                    Some(Value::Null) => return Ok(None),
                    Some(_) => {
                        return Err(ContextError::Invalid(format!("@id of term {term} must be a string")));
                    }
                    None if obj.contains_key("@reverse") => return Ok(None),
                    None => self.default_iri(local, term, seen)?,
                };
                let coerce = match obj.get("@type") {
                    Some(Value::String(t)) if t.starts_with('@') => Some(t.clone()),
                    Some(Value::String(t)) => Some(self.expand_with(local, t, seen)?),
                    _ => None,
                };
                Some(TermDef { iri, coerce })
            }
            _ => {
                return Err(ContextError::Invalid(format!("definition of term {term} must be a string or an object")));
            }
        };
        seen.pop();
        Ok(out)
    }

    /// The IRI of a term defined without `@id`: itself if it is an IRI, else under `@vocab`.
    fn default_iri(
        &self,
        local: &Map<String, Value>,
        term: &str,
        seen: &mut Vec<String>,
    ) -> Result<String, ContextError> {
        if term.contains(':') {
            return self.expand_with(local, term, seen);
        }
        match &self.vocab {
            Some(v) => Ok(format!("{v}{term}")),
            None => Ok(term.to_string()),
        }
    }

    /// Expands `value` (a term, compact IRI or IRI) using definitions of `local` first.
    fn expand_with(
        &self,
        local: &Map<String, Value>,
        value: &str,
        seen: &mut Vec<String>,
    ) -> Result<String, ContextError> {
        if value.starts_with('@') {
            return Ok(value.to_string());
        }
        if let Some(def) = local.get(value).filter(|_| !self.protected.contains(value))
            && !seen.iter().any(|s| s == value)
            && let Some(d) = self.define(local, value, def, seen)?
        {
            return Ok(d.iri);
        }
        if let Some(d) = self.terms.get(value) {
            return Ok(d.iri.clone());
        }
        if let Some((prefix, suffix)) = value.split_once(':') {
            if suffix.starts_with("//") || prefix == "_" {
                return Ok(value.to_string());
            }
            if let Some(def) = local.get(prefix).filter(|_| !self.protected.contains(prefix))
                && !seen.iter().any(|s| s == prefix)
                && let Some(d) = self.define(local, prefix, def, seen)?
            {
                return Ok(format!("{}{suffix}", d.iri));
            }
            if let Some(d) = self.terms.get(prefix) {
                return Ok(format!("{}{suffix}", d.iri));
            }
            return Ok(value.to_string());
        }
        Ok(match &self.vocab {
            Some(v) => format!("{v}{value}"),
            None => value.to_string(),
        })
    }

    fn finish(&mut self) {
        self.reverse.clear();
        self.prefixes.clear();
        for (term, def) in &self.terms {
            if def.iri.starts_with('@') {
                continue;
            }
            let better = match self.reverse.get(&def.iri) {
                None => true,
                Some(old) => (term.len(), term.as_str()) < (old.len(), old.as_str()),
            };
            if better {
                self.reverse.insert(def.iri.clone(), term.clone());
            }
            if !term.contains(':') && def.iri.ends_with(['/', '#', ':', '?', '@', '[', ']']) {
                self.prefixes.push((def.iri.clone(), term.clone()));
            }
        }
        self.prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.1.cmp(&b.1)));
    }

    /// Expands a term, compact IRI or IRI used as a key or a type.
    pub fn expand(&self, term: &str) -> String {
        if let Some(d) = self.terms.get(term) {
            return d.iri.clone();
        }
        if term.starts_with('@') {
            return term.to_string();
        }
        if let Some((prefix, suffix)) = term.split_once(':') {
            if !suffix.starts_with("//")
                && let Some(d) = self.terms.get(prefix)
            {
                return format!("{}{suffix}", d.iri);
            }
            return term.to_string();
        }
        match &self.vocab {
            Some(v) => format!("{v}{term}"),
            None => term.to_string(),
        }
    }

    /// The definition of a term, if the context has one.
    pub fn term(&self, term: &str) -> Option<&TermDef> {
        self.terms.get(term)
    }

    /// Compacts an IRI to the shortest term or compact IRI this context offers.
    pub fn compact(&self, iri: &str) -> String {
        if let Some(t) = self.reverse.get(iri) {
            return t.clone();
        }
        if let Some(v) = &self.vocab
            && let Some(rest) = iri.strip_prefix(v.as_str())
            && !rest.is_empty()
            && !rest.contains(':')
            && !self.terms.contains_key(rest)
        {
            return rest.to_string();
        }
        for (prefix_iri, prefix) in &self.prefixes {
            if let Some(rest) = iri.strip_prefix(prefix_iri.as_str())
                && !rest.is_empty()
                && !rest.starts_with("//")
            {
                return format!("{prefix}:{rest}");
            }
        }
        iri.to_string()
    }
}

/// The remote documents a `@context` value refers to directly (not those inside them).
pub fn referenced_urls(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_urls(value, &mut out);
    out
}

fn collect_urls(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| collect_urls(i, out)),
        Value::Object(map) => {
            if let Some(Value::String(s)) = map.get("@import") {
                out.push(s.clone());
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn core() -> ActiveContext {
        let doc = json!({"@context": {
            "ngsi-ld": "https://uri.etsi.org/ngsi-ld/",
            "id": "@id", "type": "@type",
            "Property": "ngsi-ld:Property",
            "location": "ngsi-ld:location",
            "vocab": {"@id": "ngsi-ld:hasVocabValue", "@type": "@vocab"},
            "@vocab": "https://uri.etsi.org/ngsi-ld/default-context/"
        }});
        ActiveContext::core(&doc).unwrap()
    }

    #[test]
    fn expands_and_compacts_core_terms() {
        let c = core();
        assert_eq!(c.expand("Property"), "https://uri.etsi.org/ngsi-ld/Property");
        assert_eq!(c.expand("brandName"), "https://uri.etsi.org/ngsi-ld/default-context/brandName");
        assert_eq!(c.compact("https://uri.etsi.org/ngsi-ld/default-context/brandName"), "brandName");
        assert_eq!(c.compact("https://uri.etsi.org/ngsi-ld/location"), "location");
        assert_eq!(c.compact("https://uri.etsi.org/ngsi-ld/other"), "ngsi-ld:other");
        assert_eq!(c.compact("http://example.org/x"), "http://example.org/x");
        assert_eq!(c.term("vocab").unwrap().coerce.as_deref(), Some("@vocab"));
    }

    #[test]
    fn user_context_adds_terms_but_cannot_redefine_core() {
        let c = core();
        let user =
            json!([{"schema": "https://schema.org/", "name": "schema:name", "location": "http://x/loc"}, "urn:remote"]);
        let remote = Arc::new(json!({"@context": {"Vehicle": "http://example.org/Vehicle"}}));
        let loader = |url: &str| (url == "urn:remote").then(|| remote.clone());
        let u = c.extend(&user, &loader).unwrap();
        assert_eq!(u.expand("name"), "https://schema.org/name");
        assert_eq!(u.expand("schema:color"), "https://schema.org/color");
        assert_eq!(u.expand("Vehicle"), "http://example.org/Vehicle");
        assert_eq!(u.expand("location"), "https://uri.etsi.org/ngsi-ld/location");
        assert_eq!(u.compact("https://schema.org/name"), "name");
        assert_eq!(u.compact("https://schema.org/color"), "schema:color");
    }

    #[test]
    fn missing_document_is_reported() {
        let c = core();
        let err = c.extend(&json!("http://nowhere/ctx.jsonld"), &|_| None).unwrap_err();
        assert_eq!(err, ContextError::Missing("http://nowhere/ctx.jsonld".into()));
        let err = c.extend(&json!(42), &|_| None).unwrap_err();
        assert!(matches!(err, ContextError::Invalid(_)));
    }
}

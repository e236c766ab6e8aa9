//! `orderBy` (clause 4.23): sorting query results by entity members and attribute values.
//!
//! ```text
//! OrderBy ::= Key ( ',' Key )*
//! Key     ::= Path ( ';asc' | ';desc' )?
//! Path    ::= 'id' | 'type' | 'createdAt' | 'modifiedAt' | Name ( '.' Name )?
//! ```
//! Values compare numbers numerically, strings and date-times as text; entities lacking a value
//! sort last. Ties keep the store's order.

use std::cmp::Ordering;

use haskap_model::entity::Entity;
use serde_json::Value;

use crate::q::QueryError;

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// `id`, `type`, `createdAt`, `modifiedAt`, or an expanded attribute name.
    pub path: String,
    /// A sub-attribute or metadata name after the dot.
    pub sub: Option<String>,
    /// Descending order.
    pub desc: bool,
}

/// Parses `orderBy`, expanding attribute names with `expand`.
pub fn parse(s: &str, expand: &dyn Fn(&str) -> String) -> Result<Vec<Key>, QueryError> {
    let err = |pos: usize, m: &str| QueryError { position: pos, message: m.to_string(), query: s.to_string() };
    let mut keys = Vec::new();
    let mut pos = 0;
    for part in s.split(',') {
        let (path, dir) = part.split_once(';').unwrap_or((part, "asc"));
        let desc = match dir {
            "asc" => false,
            "desc" => true,
            _ => return Err(err(pos, "a direction must be asc or desc")),
        };
        if path.is_empty() {
            return Err(err(pos, "expected a name"));
        }
        let (name, sub) = match path.split_once('.') {
            Some((n, s)) => (n, Some(s.to_string())),
            None => (path, None),
        };
        let path = match name {
            "id" | "type" | "createdAt" | "modifiedAt" => name.to_string(),
            n => expand(n),
        };
        let sub = sub.map(|s| {
            if matches!(s.as_str(), "createdAt" | "modifiedAt" | "observedAt" | "unitCode" | "datasetId") {
                s
            } else {
                expand(&s)
            }
        });
        keys.push(Key { path, sub, desc });
        pos += part.len() + 1;
    }
    Ok(keys)
}

/// Compares two entities by `keys`.
pub fn compare(a: &Entity, b: &Entity, keys: &[Key]) -> Ordering {
    for k in keys {
        let (x, y) = (value(a, k), value(b, k));
        let ord = match (&x, &y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => {
                let o = cmp_values(x, y);
                if k.desc { o.reverse() } else { o }
            }
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

fn value(e: &Entity, k: &Key) -> Option<Value> {
    match k.path.as_str() {
        "id" => return Some(Value::String(e.id.clone())),
        "type" => return e.types.first().cloned().map(Value::String),
        "createdAt" => return Some(Value::from(e.created_at)),
        "modifiedAt" => return Some(Value::from(e.modified_at)),
        _ => {}
    }
    let a = e.attrs.get(&k.path)?.first()?;
    match k.sub.as_deref() {
        None => Some(a.value.clone()),
        Some("createdAt") => Some(Value::from(a.created_at)),
        Some("modifiedAt") => Some(Value::from(a.modified_at)),
        Some("observedAt") => a.observed_at.clone().map(Value::String),
        Some("unitCode") => a.unit_code.clone().map(Value::String),
        Some("datasetId") => a.dataset_id.clone().map(Value::String),
        Some(sub) => a.sub.get(sub)?.first().map(|s| s.value.clone()),
    }
}

fn cmp_values(x: &Value, y: &Value) -> Ordering {
    match (x, y) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().unwrap_or(0.0).total_cmp(&b.as_f64().unwrap_or(0.0)),
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Number(_), _) => Ordering::Less,
        (_, Value::Number(_)) => Ordering::Greater,
        _ => x.to_string().cmp(&y.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let k = parse("type;asc,name.subProperty;desc,name", &|n| format!("urn:{n}")).unwrap();
        assert_eq!(k[0], Key { path: "type".into(), sub: None, desc: false });
        assert_eq!(k[1], Key { path: "urn:name".into(), sub: Some("urn:subProperty".into()), desc: true });
        assert_eq!(k[2].path, "urn:name");
        assert!(parse("name;up", &|n| n.into()).is_err());
        assert!(parse("name,", &|n| n.into()).is_err());
    }
}

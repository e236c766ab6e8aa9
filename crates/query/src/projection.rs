//! `pick` and `omit` (clause 4.21): which members of an entity to keep or drop, with nested
//! projections for the entities linked through a relationship (`locatedAt{id,name}`).
//!
//! ```text
//! List ::= Item ( ( ',' | '|' ) Item )*
//! Item ::= Name ( '{' List '}' )?
//! ```

use crate::q::QueryError;

/// One member of a projection, with the projection of its linked entities, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The member name as written (compacted).
    pub name: String,
    /// The projection applied to entities linked through this relationship.
    pub nested: Option<Vec<Item>>,
}

/// Parses a `pick` or `omit` value.
pub fn parse(s: &str) -> Result<Vec<Item>, QueryError> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let mut p = P { s: &compact, pos: 0, depth: 0 };
    let items = p.list()?;
    if p.pos < compact.len() {
        return Err(p.err("unexpected character"));
    }
    Ok(items)
}

/// The names at the top level of a projection.
pub fn names(items: &[Item]) -> impl Iterator<Item = &str> {
    items.iter().map(|i| i.name.as_str())
}

/// The nested projection for relationship `name`, if the projection names it with one.
pub fn nested<'a>(items: &'a [Item], name: &str) -> Option<&'a [Item]> {
    items.iter().find(|i| i.name == name).and_then(|i| i.nested.as_deref())
}

struct P<'a> {
    s: &'a str,
    pos: usize,
    depth: usize,
}

impl P<'_> {
    fn err(&self, m: &str) -> QueryError {
        QueryError { position: self.pos, message: m.to_string(), query: self.s.to_string() }
    }

    fn list(&mut self) -> Result<Vec<Item>, QueryError> {
        let mut items = vec![self.item()?];
        while matches!(self.s[self.pos..].chars().next(), Some(',' | '|')) {
            self.pos += 1;
            items.push(self.item()?);
        }
        Ok(items)
    }

    fn item(&mut self) -> Result<Item, QueryError> {
        let rest = &self.s[self.pos..];
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | ':' | '/' | '#' | '@' | '-' | '.')))
            .unwrap_or(rest.len());
        if len == 0 {
            return Err(self.err("expected a name"));
        }
        let name = rest[..len].to_string();
        self.pos += len;
        let mut nested = None;
        if self.s[self.pos..].starts_with('{') {
            self.pos += 1;
            self.depth += 1;
            if self.depth > 16 {
                return Err(self.err("projections are nested too deeply"));
            }
            nested = Some(self.list()?);
            if !self.s[self.pos..].starts_with('}') {
                return Err(self.err("expected }"));
            }
            self.pos += 1;
            self.depth -= 1;
        }
        Ok(Item { name, nested })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let p = parse("id, locatedAt{id,name,isInCountry{description}}").unwrap();
        assert_eq!(names(&p).collect::<Vec<_>>(), vec!["id", "locatedAt"]);
        let l1 = nested(&p, "locatedAt").unwrap();
        assert_eq!(names(l1).collect::<Vec<_>>(), vec!["id", "name", "isInCountry"]);
        assert_eq!(names(nested(l1, "isInCountry").unwrap()).collect::<Vec<_>>(), vec!["description"]);
        assert_eq!(parse("a|b").unwrap().len(), 2);
        for bad in [
            "",
            "id;name",
            "id,locatedAt{name",
            "id,locatedAt{{name}",
            "id,,name",
            "id,locatedAt{,name}",
            "id,locatedAt{}",
            ",id",
            "id,",
            "{id}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}

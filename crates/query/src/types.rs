//! Entity type expressions (the `type` parameter): names combined with `,` or `|` (or), `;`
//! (and) and parentheses.
//!
//! ```text
//! Types  ::= And ( ( ',' | '|' ) And )*
//! And    ::= Factor ( ';' Factor )*
//! Factor ::= '(' Types ')' | Name
//! ```

use crate::q::QueryError;

/// A type expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeExpr {
    /// The entity has this type (expanded by [`TypeExpr::expand`]).
    Is(String),
    /// All hold.
    And(Vec<TypeExpr>),
    /// Any holds.
    Or(Vec<TypeExpr>),
}

impl TypeExpr {
    /// Parses a type expression.
    pub fn parse(s: &str) -> Result<TypeExpr, QueryError> {
        let mut p = P { s, pos: 0, depth: 0 };
        let e = p.or()?;
        if p.pos < s.len() {
            return Err(p.err("unexpected character"));
        }
        Ok(e)
    }

    /// The same expression with every name expanded.
    pub fn expand(self, f: &dyn Fn(&str) -> String) -> TypeExpr {
        match self {
            TypeExpr::Is(n) => TypeExpr::Is(f(&n)),
            TypeExpr::And(v) => TypeExpr::And(v.into_iter().map(|e| e.expand(f)).collect()),
            TypeExpr::Or(v) => TypeExpr::Or(v.into_iter().map(|e| e.expand(f)).collect()),
        }
    }

    /// Whether an entity with `types` satisfies the expression.
    pub fn matches(&self, types: &[String]) -> bool {
        match self {
            TypeExpr::Is(n) => types.iter().any(|t| t == n),
            TypeExpr::And(v) => v.iter().all(|e| e.matches(types)),
            TypeExpr::Or(v) => v.iter().any(|e| e.matches(types)),
        }
    }

    /// Every type name in the expression.
    pub fn names(&self) -> Vec<&str> {
        match self {
            TypeExpr::Is(n) => vec![n.as_str()],
            TypeExpr::And(v) | TypeExpr::Or(v) => v.iter().flat_map(TypeExpr::names).collect(),
        }
    }
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
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }
    fn or(&mut self) -> Result<TypeExpr, QueryError> {
        let mut v = vec![self.and()?];
        while matches!(self.peek(), Some(',' | '|')) {
            self.pos += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 { v.remove(0) } else { TypeExpr::Or(v) })
    }
    fn and(&mut self) -> Result<TypeExpr, QueryError> {
        let mut v = vec![self.factor()?];
        while self.peek() == Some(';') {
            self.pos += 1;
            v.push(self.factor()?);
        }
        Ok(if v.len() == 1 { v.remove(0) } else { TypeExpr::And(v) })
    }
    fn factor(&mut self) -> Result<TypeExpr, QueryError> {
        if self.peek() == Some('(') {
            self.pos += 1;
            self.depth += 1;
            if self.depth > 32 {
                return Err(self.err("parentheses are nested too deeply"));
            }
            let e = self.or()?;
            if self.peek() != Some(')') {
                return Err(self.err("expected )"));
            }
            self.pos += 1;
            self.depth -= 1;
            return Ok(e);
        }
        let rest = &self.s[self.pos..];
        let len = rest.find([',', '|', ';', '(', ')']).unwrap_or(rest.len());
        let name = rest[..len].trim();
        if name.is_empty() {
            return Err(self.err("expected a type name"));
        }
        self.pos += len;
        Ok(TypeExpr::Is(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expr: &str, types: &[&str], expected: bool) {
        let e = TypeExpr::parse(expr).unwrap_or_else(|e| panic!("{e}"));
        let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
        assert_eq!(e.matches(&types), expected, "{expr} on {types:?}");
    }

    #[test]
    fn expressions() {
        check("Shelter", &["Shelter"], true);
        check("Shelter,Park", &["Park"], true);
        check("Shelter|Park", &["AED"], false);
        check("Shelter;Park", &["Shelter"], false);
        check("Shelter;Park", &["Park", "Shelter"], true);
        check("(Shelter;Park)|AED", &["AED"], true);
        check("(Shelter|Park);AED", &["Park"], false);
        assert!(TypeExpr::parse("").is_err());
        assert!(TypeExpr::parse("(A").is_err());
        assert!(TypeExpr::parse("A,,B").is_err());
        assert_eq!(TypeExpr::parse("A,B;C").unwrap().names(), vec!["A", "B", "C"]);
    }
}

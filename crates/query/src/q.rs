//! The NGSI-LD query language `q` (ETSI GS CIM 009, clause 4.9): parser and AST.
//!
//! ```text
//! Query      ::= Or
//! Or         ::= And ( '|' And )*
//! And        ::= Factor ( ';' Factor )*
//! Factor     ::= '(' Or ')' | '!' Path | Path ( Operator Operand )?
//! Path       ::= Name ( '.' Name )* ( '[' Name ']' )*
//! Operator   ::= '==' | '!=' | '>=' | '>' | '<=' | '<' | '~=' | '!~='
//! Operand    ::= Value '..' Value | Value ( ',' Value )*
//! Value      ::= QuotedString | Number | 'true' | 'false' | DateTime | Date | Time | URI
//! ```
//! `;` (and) binds tighter than `|` (or). A bare path tests that the attribute exists, `!path`
//! that it does not. Errors carry the byte position in the query.
//!
//! Input that the grammar does not describe is refused rather than guessed at: a range goes only
//! with `==` and `!=`; an unquoted value that starts like a number (a digit, a sign or a dot) must
//! be a finite number, a date, a time or a date-time; unquoted values cannot hold brackets,
//! braces, quotes or invisible characters (so `a==[1,2` is no list); metadata (`observedAt`,
//! `unitCode`...) ends a path, and `observedAt`, `createdAt` and `modifiedAt` compare only with
//! dates and date-times.

use std::fmt;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// All must hold.
    And(Vec<Expr>),
    /// At least one must hold.
    Or(Vec<Expr>),
    /// One comparison or existence test.
    Term(Term),
}

/// One query term.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// What is tested.
    pub path: Path,
    /// The comparison; `None` tests existence.
    pub test: Option<(Op, Operand)>,
    /// `!path`: the attribute must not exist.
    pub absent: bool,
}

/// An attribute path: `attr`, `attr.sub`, `attr[key][key]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The attribute name, as written (a term to expand with the @context).
    pub attr: String,
    /// Sub-attribute (or metadata such as `observedAt`) names after dots.
    pub sub: Vec<String>,
    /// Keys into a compound value, in brackets.
    pub keys: Vec<String>,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `~=` (regular expression match)
    Match,
    /// `!~=`
    NotMatch,
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// One value.
    One(Value),
    /// Any of these values (`==` and `!=` only).
    List(Vec<Value>),
    /// An inclusive range (`==` and `!=` only).
    Range(Value, Value),
}

/// A literal in a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Number(f64),
    /// A quoted string.
    Str(String),
    /// `true` or `false`.
    Bool(bool),
    /// Anything else unquoted: a URI, a date, a time, a date-time.
    Bare(String),
}

/// A syntax error, with the byte position where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position} of {query:?}")]
pub struct QueryError {
    /// Byte offset in the query.
    pub position: usize,
    /// What is wrong.
    pub message: String,
    /// The query text.
    pub query: String,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(n) => write!(f, "{n}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Bare(s) => f.write_str(s),
        }
    }
}

/// Most nested parentheses accepted.
const MAX_DEPTH: usize = 32;

/// Attribute metadata that a path can name after a dot; it ends the path.
pub const METADATA: &[&str] = &["observedAt", "createdAt", "modifiedAt", "unitCode", "datasetId"];

/// The metadata whose values are date-times.
const TEMPORAL: &[&str] = &["observedAt", "createdAt", "modifiedAt"];

impl Expr {
    /// Every attribute path of the query, in the order written.
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            Expr::And(v) | Expr::Or(v) => v.iter().flat_map(Expr::paths).collect(),
            Expr::Term(t) => vec![&t.path],
        }
    }
}

/// Parses a `q` query.
pub fn parse(q: &str) -> Result<Expr, QueryError> {
    let mut p = Parser { s: q, pos: 0, depth: 0 };
    let e = p.or()?;
    p.skip_ws();
    if p.pos < q.len() {
        return Err(p.err(format!("unexpected {:?}", p.rest().chars().next().unwrap_or(' '))));
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }

    fn err(&self, message: impl Into<String>) -> QueryError {
        QueryError { position: self.pos, message: message.into(), query: self.s.to_string() }
    }

    fn skip_ws(&mut self) {
        while self.rest().starts_with(' ') {
            self.pos += 1;
        }
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut items = vec![self.and()?];
        while self.eat("|") {
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 { items.pop().unwrap_or(Expr::And(Vec::new())) } else { Expr::Or(items) })
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut items = vec![self.factor()?];
        while self.eat(";") {
            items.push(self.factor()?);
        }
        Ok(if items.len() == 1 { items.pop().unwrap_or(Expr::And(Vec::new())) } else { Expr::And(items) })
    }

    fn factor(&mut self) -> Result<Expr, QueryError> {
        self.skip_ws();
        if self.eat("(") {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(self.err("parentheses are nested too deeply"));
            }
            let e = self.or()?;
            if !self.eat(")") {
                return Err(self.err("expected )"));
            }
            self.depth -= 1;
            return Ok(e);
        }
        if self.rest().starts_with('!') && !self.rest().starts_with("!=") && !self.rest().starts_with("!~=") {
            self.pos += 1;
            let path = self.path()?;
            return Ok(Expr::Term(Term { path, test: None, absent: true }));
        }
        let path = self.path()?;
        self.skip_ws();
        let op = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">=", Op::Ge),
            (">", Op::Gt),
            ("<=", Op::Le),
            ("<", Op::Lt),
            ("~=", Op::Match),
            ("!~=", Op::NotMatch),
        ]
        .into_iter()
        .find(|(tok, _)| self.rest().starts_with(tok));
        let Some((tok, op)) = op else {
            return Ok(Expr::Term(Term { path, test: None, absent: false }));
        };
        self.pos += tok.len();
        let at = self.pos;
        let operand = self.operand(op)?;
        if let Some(meta) = path.sub.last().filter(|m| TEMPORAL.contains(&m.as_str()))
            && !matches!(op, Op::Match | Op::NotMatch)
        {
            let values = match &operand {
                Operand::One(v) => vec![v],
                Operand::List(vs) => vs.iter().collect(),
                Operand::Range(a, b) => vec![a, b],
            };
            if let Some(v) = values.into_iter().find(|v| !is_datetime_literal(v)) {
                return Err(QueryError {
                    position: at,
                    message: format!("{meta} compares with date-times such as 2024-04-01T09:00:00Z, not {v}"),
                    query: self.s.to_string(),
                });
            }
        }
        Ok(Expr::Term(Term { path, test: Some((op, operand)), absent: false }))
    }

    fn name(&mut self, what: &str) -> Result<String, QueryError> {
        self.skip_ws();
        let len = self
            .rest()
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | ':' | '/' | '#' | '@' | '-' | '%')))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.err(format!("expected {what}")));
        }
        let n = self.rest()[..len].to_string();
        self.pos += len;
        Ok(n)
    }

    fn path(&mut self) -> Result<Path, QueryError> {
        let attr = self.name("an attribute name")?;
        let mut sub: Vec<String> = Vec::new();
        while self.rest().starts_with('.') && !self.rest().starts_with("..") {
            if let Some(meta) = sub.last().filter(|m| METADATA.contains(&m.as_str())) {
                return Err(self.err(format!("{meta} is metadata and ends the path")));
            }
            self.pos += 1;
            sub.push(self.name("a sub-attribute name")?);
        }
        if self.rest().starts_with('[')
            && let Some(meta) = sub.last().filter(|m| METADATA.contains(&m.as_str()))
        {
            return Err(self.err(format!("{meta} is metadata and has no keys")));
        }
        let mut keys = Vec::new();
        while self.rest().starts_with('[') {
            self.pos += 1;
            keys.push(self.name("a key")?);
            if !self.rest().starts_with(']') {
                return Err(self.err("expected ]"));
            }
            self.pos += 1;
        }
        Ok(Path { attr, sub, keys })
    }

    fn operand(&mut self, op: Op) -> Result<Operand, QueryError> {
        let first = self.value()?;
        if matches!(op, Op::Match | Op::NotMatch) {
            return match first {
                Value::Str(_) | Value::Bare(_) => Ok(Operand::One(first)),
                _ => Err(self.err("a pattern must be a string")),
            };
        }
        if self.rest().starts_with("..") {
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(self.err("a range of values goes only with == or !="));
            }
            self.pos += 2;
            let last = self.value()?;
            return Ok(Operand::Range(first, last));
        }
        if self.rest().starts_with(',') {
            let mut items = vec![first];
            while self.rest().starts_with(',') {
                self.pos += 1;
                items.push(self.value()?);
            }
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(self.err("a list of values goes only with == or !="));
            }
            return Ok(Operand::List(items));
        }
        Ok(Operand::One(first))
    }

    fn value(&mut self) -> Result<Value, QueryError> {
        self.skip_ws();
        let rest = self.rest();
        if let Some(body) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = body.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        self.pos += i + 2;
                        return Ok(Value::Str(out));
                    }
                    '\\' => match chars.next() {
                        Some((_, e)) => out.push(e),
                        None => break,
                    },
                    c => out.push(c),
                }
            }
            return Err(self.err("unterminated string"));
        }
        // An unquoted token runs to the next operator character outside of a URI's own syntax.
        let mut end = 0;
        let bytes = rest.as_bytes();
        while end < bytes.len() {
            let c = bytes[end];
            if c == b';' || c == b'|' || c == b')' || c == b',' || c == b' ' {
                break;
            }
            if c == b'.' && bytes.get(end + 1) == Some(&b'.') {
                break;
            }
            end += 1;
        }
        if end == 0 || matches!(bytes[0], b'<' | b'>' | b'=' | b'!' | b'~' | b'(' | b'"') {
            return Err(self.err("expected a value"));
        }
        let tok = rest[..end].to_string();
        if let Some(c) = tok.chars().find(|c| {
            matches!(c, '[' | ']' | '{' | '}' | '(' | '<' | '>' | '"' | '\'' | '\\' | '^' | '`')
                || haskap_model::validate::is_invisible(*c)
        }) {
            return Err(self.err(format!("{c:?} cannot appear in an unquoted value; quote strings with \"")));
        }
        let numeric = tok.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'));
        let value = match tok.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            t if numeric => match t.parse::<f64>() {
                Ok(n) if n.is_finite() && !t.starts_with('+') => Value::Number(n),
                Ok(n) if !n.is_finite() => return Err(self.err(format!("the number {t} is out of range"))),
                _ if haskap_model::validate::is_temporal(t) => Value::Bare(t.to_string()),
                _ => {
                    return Err(self.err(format!(
                        "{t} is neither a number nor a valid date, time or date-time (such as 2024-04-01T09:00:00Z)"
                    )));
                }
            },
            t => Value::Bare(t.to_string()),
        };
        self.pos += end;
        Ok(value)
    }
}

/// Whether a literal is a date-time or a date (quoted or not).
fn is_datetime_literal(v: &Value) -> bool {
    match v {
        Value::Str(s) | Value::Bare(s) => haskap_model::validate::is_temporal(s) && s.contains('-'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(q: &str, expected: &str) {
        let got = match parse(q) {
            Ok(e) => show(&e),
            Err(e) => format!("error at {}: {}", e.position, e.message),
        };
        assert_eq!(got, expected, "q = {q}");
    }

    fn show(e: &Expr) -> String {
        match e {
            Expr::And(v) => format!("and({})", v.iter().map(show).collect::<Vec<_>>().join(", ")),
            Expr::Or(v) => format!("or({})", v.iter().map(show).collect::<Vec<_>>().join(", ")),
            Expr::Term(t) => {
                let mut p = t.path.attr.clone();
                for s in &t.path.sub {
                    p.push('.');
                    p.push_str(s);
                }
                for k in &t.path.keys {
                    p.push_str(&format!("[{k}]"));
                }
                match &t.test {
                    None if t.absent => format!("!{p}"),
                    None => p,
                    Some((op, Operand::One(v))) => format!("{p} {op:?} {v}"),
                    Some((op, Operand::List(vs))) => {
                        format!("{p} {op:?} [{}]", vs.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" "))
                    }
                    Some((op, Operand::Range(a, b))) => format!("{p} {op:?} {a}..{b}"),
                }
            }
        }
    }

    #[test]
    fn grammar() {
        check("speed>50", "speed Gt 50");
        check("speed>=50;speed<=100", "and(speed Ge 50, speed Le 100)");
        check("a==1|b==2;c==3", "or(a Eq 1, and(b Eq 2, c Eq 3))");
        check("(a==1|b==2);c==3", "and(or(a Eq 1, b Eq 2), c Eq 3)");
        check("brandName==\"Mercedes\"", "brandName Eq \"Mercedes\"");
        check("name==\"a;b|c\"", "name Eq \"a;b|c\"");
        check("speed==50..60", "speed Eq 50..60");
        check("color==\"red\",\"blue\"", "color Eq [\"red\" \"blue\"]");
        check("isParked==urn:ngsi-ld:OffStreetParking:Downtown1", "isParked Eq urn:ngsi-ld:OffStreetParking:Downtown1");
        check("observedAt>2018-12-04T12:00:00Z", "observedAt Gt 2018-12-04T12:00:00Z");
        check("speed.observedAt>=2018-12-04T12:00:00.00Z", "speed.observedAt Ge 2018-12-04T12:00:00.00Z");
        check("address[city]==\"Tomakomai\"", "address[city] Eq \"Tomakomai\"");
        check("a.b[c][d]!=true", "a.b[c][d] Ne true");
        check("name~=\"^苫小牧\"", "name Match \"^苫小牧\"");
        check("name!~=\"(?i)park\"", "name NotMatch \"(?i)park\"");
        check("capacity", "capacity");
        check("!capacity", "!capacity");
        check("ngsi-ld:default-context/speed>1", "ngsi-ld:default-context/speed Gt 1");
        check("temperature==-3.5", "temperature Eq -3.5");
    }

    #[test]
    fn errors_say_where() {
        check("speed>", "error at 6: expected a value");
        check("speed>>1", "error at 6: expected a value");
        check("(speed>1", "error at 8: expected )");
        check("speed>1)", "error at 7: unexpected ')'");
        check("", "error at 0: expected an attribute name");
        check("a==\"open", "error at 3: unterminated string");
        check("a>1,2", "error at 5: a list of values goes only with == or !=");
        check(&"(".repeat(100), "error at 33: parentheses are nested too deeply");
    }

    /// Regression (issue 19): these were accepted and then compared as strings (or not at all).
    #[test]
    fn bad_input_is_refused_not_guessed() {
        check("a>1..5", "error at 3: a range of values goes only with == or !=");
        check("a==[1,2", "error at 3: '[' cannot appear in an unquoted value; quote strings with \"");
        check("a==1,2]", "error at 5: ']' cannot appear in an unquoted value; quote strings with \"");
        check("a==x{", "error at 3: '{' cannot appear in an unquoted value; quote strings with \"");
        check("a==b\u{202E}c", "error at 3: '\\u{202e}' cannot appear in an unquoted value; quote strings with \"");
        check("a>1e500", "error at 2: the number 1e500 is out of range");
        check(
            "a>2024-13-45T99:00:00Z",
            "error at 2: 2024-13-45T99:00:00Z is neither a number nor a valid date, time or date-time (such as 2024-04-01T09:00:00Z)",
        );
        check(
            "a==2024-02-30",
            "error at 3: 2024-02-30 is neither a number nor a valid date, time or date-time (such as 2024-04-01T09:00:00Z)",
        );
        check(
            "a==25:00:00",
            "error at 3: 25:00:00 is neither a number nor a valid date, time or date-time (such as 2024-04-01T09:00:00Z)",
        );
        check(
            "a==+5",
            "error at 3: +5 is neither a number nor a valid date, time or date-time (such as 2024-04-01T09:00:00Z)",
        );
        check(
            "a.observedAt>yesterday",
            "error at 13: observedAt compares with date-times such as 2024-04-01T09:00:00Z, not yesterday",
        );
        check("a.createdAt==5", "error at 13: createdAt compares with date-times such as 2024-04-01T09:00:00Z, not 5");
        check("a.observedAt.b==1", "error at 12: observedAt is metadata and ends the path");
        check("a.unitCode[x]==1", "error at 10: unitCode is metadata and has no keys");
        // What is valid stays valid.
        check("a==2024-02-29", "a Eq 2024-02-29");
        check("a<12:30:00", "a Lt 12:30:00");
        check("a.observedAt>=\"2024-04-01T09:00:00+09:00\"", "a.observedAt Ge \"2024-04-01T09:00:00+09:00\"");
        check(
            "a.observedAt==2024-01-01T00:00:00Z..2024-02-01T00:00:00Z",
            "a.observedAt Eq 2024-01-01T00:00:00Z..2024-02-01T00:00:00Z",
        );
        check("a!=NaN", "a Ne NaN");
        check("a.unitCode==\"C62\"", "a.unitCode Eq \"C62\"");
    }
}

//! Evaluating a parsed `q` against canonical entities.
//!
//! A query is first compiled: names are expanded with the request's @context and patterns are
//! compiled once. A term matches an entity when any instance of the attribute (any datasetId),
//! and for array values any element, satisfies it. `!=` and `!~=` hold only where the attribute
//! exists and no value is equal (matches).
//!
//! Terms that name a plain attribute (no sub-attribute, metadata or compound-value path) can also
//! be decided from the attribute's plain values alone ([`Compiled::matches_plain`]), which a store
//! can read without decoding the entity.

use std::borrow::Cow;

use haskap_model::entity::{AttrKind, Attribute, Entity};
use haskap_model::validate::{format_micros, parse_datetime};
use regex::Regex;
use serde_json::Value as Json;

use crate::q::{Expr, METADATA, Op, Operand, QueryError, Term, Value};

/// A query ready to run: names expanded, patterns compiled.
#[derive(Debug, Clone)]
pub struct Compiled {
    root: Node,
    /// Expanded names of the attributes the query refers to (for index pre-selection).
    pub attributes: Vec<String>,
}

#[derive(Debug, Clone)]
enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Term(Box<CTerm>),
}

#[derive(Debug, Clone)]
struct CTerm {
    attr: String,
    /// The position of `attr` in [`Compiled::attributes`].
    index: usize,
    sub: Vec<String>,
    keys: Vec<String>,
    absent: bool,
    test: Option<Test>,
}

#[derive(Debug, Clone)]
enum Test {
    Cmp(Op, Operand, Vec<Option<String>>),
    Pattern(Regex, bool),
}

/// Compiles `expr`, expanding attribute names with `expand`. Fails on an invalid pattern.
pub fn compile(expr: &Expr, q: &str, expand: &dyn Fn(&str) -> String) -> Result<Compiled, QueryError> {
    let mut attributes = Vec::new();
    let root = node(expr, q, expand, &mut attributes)?;
    Ok(Compiled { root, attributes })
}

fn node(e: &Expr, q: &str, expand: &dyn Fn(&str) -> String, attrs: &mut Vec<String>) -> Result<Node, QueryError> {
    Ok(match e {
        Expr::And(v) => Node::And(v.iter().map(|e| node(e, q, expand, attrs)).collect::<Result<_, _>>()?),
        Expr::Or(v) => Node::Or(v.iter().map(|e| node(e, q, expand, attrs)).collect::<Result<_, _>>()?),
        Expr::Term(t) => Node::Term(Box::new(term(t, q, expand, attrs)?)),
    })
}

fn term(t: &Term, q: &str, expand: &dyn Fn(&str) -> String, attrs: &mut Vec<String>) -> Result<CTerm, QueryError> {
    let attr = expand(&t.path.attr);
    let index = attrs.iter().position(|a| *a == attr).unwrap_or_else(|| {
        attrs.push(attr.clone());
        attrs.len() - 1
    });
    let sub = t.path.sub.iter().map(|s| if METADATA.contains(&s.as_str()) { s.clone() } else { expand(s) }).collect();
    let test = match &t.test {
        None => None,
        Some((op @ (Op::Match | Op::NotMatch), Operand::One(Value::Str(p) | Value::Bare(p)))) => {
            let re = Regex::new(p).map_err(|e| QueryError {
                position: q.find(p.as_str()).unwrap_or(0),
                message: format!("invalid regular expression: {e}"),
                query: q.to_string(),
            })?;
            Some(Test::Pattern(re, *op == Op::NotMatch))
        }
        Some((op, operand)) => {
            // Strings may name vocabulary terms: keep their expansion to compare VocabProperties.
            let values: Vec<&Value> = match operand {
                Operand::One(v) => vec![v],
                Operand::List(vs) => vs.iter().collect(),
                Operand::Range(a, b) => vec![a, b],
            };
            let vocab = values
                .iter()
                .map(|v| match v {
                    Value::Str(s) | Value::Bare(s) => Some(expand(s)),
                    _ => None,
                })
                .collect();
            Some(Test::Cmp(*op, operand.clone(), vocab))
        }
    };
    Ok(CTerm { attr, index, sub, keys: t.path.keys.clone(), absent: t.absent, test })
}

impl Compiled {
    /// An attribute every matching entity must have (for index pre-selection), if there is one.
    pub fn required_attribute(&self) -> Option<&str> {
        fn required(n: &Node) -> Option<&str> {
            match n {
                Node::Term(t) if !t.absent => Some(&t.attr),
                Node::And(v) => v.iter().find_map(required),
                _ => None,
            }
        }
        required(&self.root)
    }

    /// Whether `e` satisfies the query.
    pub fn matches(&self, e: &Entity) -> bool {
        self.root.holds(&mut |t| {
            let mut values = Vec::new();
            let instances = e.attrs.get(&t.attr);
            for a in instances.into_iter().flatten() {
                collect(a, &t.sub, &t.keys, &mut values);
            }
            let vocab = instances.is_some_and(|i| i.iter().any(|a| a.kind == AttrKind::VocabProperty));
            t.decide(values.iter().map(|v| Plain::of(v)), vocab)
        })
    }

    /// Whether every term names a plain attribute (no sub-attribute, metadata or compound-value
    /// path), so that [`Compiled::matches_plain`] can decide the query.
    pub fn is_plain(&self) -> bool {
        fn plain(n: &Node) -> bool {
            match n {
                Node::And(v) | Node::Or(v) => v.iter().all(plain),
                Node::Term(t) => t.sub.is_empty() && t.keys.is_empty(),
            }
        }
        plain(&self.root)
    }

    /// Whether an entity satisfies a plain query (see [`Compiled::is_plain`]) given `value(i)`,
    /// the value of attribute `i` of [`Compiled::attributes`] (None: the entity does not have
    /// it), where each attribute has at most one value, a plain one, and is no VocabProperty.
    /// Decides as [`Compiled::matches`] does on the decoded entity.
    pub fn matches_values<'v>(&self, value: &dyn Fn(usize) -> Option<Plain<'v>>) -> bool {
        self.root.holds(&mut |t| t.decide(value(t.index).into_iter().map(Some), false))
    }
}

/// A plain value (a JSON scalar) of an attribute, borrowed from where it is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plain<'a> {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    Str(&'a str),
}

impl<'a> Plain<'a> {
    /// The plain value of a JSON value; None for arrays and objects.
    pub fn of(v: &'a Json) -> Option<Plain<'a>> {
        Some(match v {
            Json::Null => Plain::Null,
            Json::Bool(b) => Plain::Bool(*b),
            Json::Number(n) => Plain::Number(n.as_f64()?),
            Json::String(s) => Plain::Str(s),
            Json::Array(_) | Json::Object(_) => return None,
        })
    }
}

impl Node {
    fn holds(&self, term: &mut dyn FnMut(&CTerm) -> bool) -> bool {
        match self {
            Node::And(v) => v.iter().all(|n| n.holds(term)),
            Node::Or(v) => v.iter().any(|n| n.holds(term)),
            Node::Term(t) => term(t),
        }
    }
}

impl CTerm {
    /// Decides the term from the values its path designates (`None`: a value that is not plain,
    /// which exists but compares with nothing).
    fn decide<'v>(&self, values: impl Iterator<Item = Option<Plain<'v>>> + Clone, vocab_kind: bool) -> bool {
        let present = values.clone().next().is_some();
        if self.absent {
            return !present;
        }
        let Some(test) = &self.test else { return present };
        if !present {
            return false;
        }
        let plain = || values.clone().flatten();
        match test {
            Test::Pattern(re, negate) => {
                let any = plain().any(|v| matches!(v, Plain::Str(s) if re.is_match(s)));
                any != *negate
            }
            Test::Cmp(op, operand, vocab) => {
                let vocab = if vocab_kind { Some(vocab.as_slice()) } else { None };
                match op {
                    Op::Ne => !plain().any(|v| compare(v, Op::Eq, operand, vocab)),
                    _ => plain().any(|v| compare(v, *op, operand, vocab)),
                }
            }
        }
    }
}

/// The values a path designates in one attribute instance; arrays are flattened one level.
fn collect<'a>(a: &'a Attribute, sub: &[String], keys: &[String], out: &mut Vec<Cow<'a, Json>>) {
    if let Some((first, rest)) = sub.split_first() {
        let meta = match first.as_str() {
            "observedAt" => a.observed_at.clone().map(Json::String),
            "unitCode" => a.unit_code.clone().map(Json::String),
            "datasetId" => a.dataset_id.clone().map(Json::String),
            "createdAt" => Some(Json::String(format_micros(a.created_at))),
            "modifiedAt" => Some(Json::String(format_micros(a.modified_at))),
            _ => None,
        };
        if METADATA.contains(&first.as_str()) {
            if let Some(m) = meta {
                out.push(Cow::Owned(m));
            }
            return;
        }
        for s in a.sub.get(first).into_iter().flatten() {
            collect(s, rest, keys, out);
        }
        return;
    }
    let mut v: &Json = &a.value;
    for k in keys {
        match v.get(k) {
            Some(inner) => v = inner,
            None => return,
        }
    }
    let push_flat = |v: &'a Json, out: &mut Vec<Cow<'a, Json>>| match v {
        Json::Array(items) => out.extend(items.iter().map(Cow::Borrowed)),
        other => out.push(Cow::Borrowed(other)),
    };
    if a.kind == AttrKind::LanguageProperty && keys.is_empty() {
        if let Json::Object(m) = v {
            m.values().for_each(|t| push_flat(t, out));
        }
        return;
    }
    push_flat(v, out);
}

fn compare(v: Plain<'_>, op: Op, operand: &Operand, vocab: Option<&[Option<String>]>) -> bool {
    match (op, operand) {
        (Op::Eq | Op::Ne, Operand::List(items)) => items
            .iter()
            .enumerate()
            .any(|(i, lit)| ordering(v, lit, vocab.and_then(|x| x[i].as_deref())) == Some(std::cmp::Ordering::Equal)),
        (Op::Eq | Op::Ne, Operand::Range(lo, hi)) => {
            let a = ordering(v, lo, None);
            let b = ordering(v, hi, None);
            matches!(a, Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal))
                && matches!(b, Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal))
        }
        (_, Operand::One(lit)) => {
            let Some(ord) = ordering(v, lit, vocab.and_then(|x| x[0].as_deref())) else { return false };
            match op {
                Op::Eq | Op::Ne => ord.is_eq(),
                Op::Gt => ord.is_gt(),
                Op::Ge => ord.is_ge(),
                Op::Lt => ord.is_lt(),
                Op::Le => ord.is_le(),
                Op::Match | Op::NotMatch => false,
            }
        }
        _ => false,
    }
}

/// How a stored value compares with a query literal; `None` when they are not comparable.
fn ordering(v: Plain<'_>, lit: &Value, vocab: Option<&str>) -> Option<std::cmp::Ordering> {
    match (v, lit) {
        (Plain::Number(n), Value::Number(x)) => n.partial_cmp(x),
        (Plain::Bool(b), Value::Bool(x)) => Some(b.cmp(x)),
        (Plain::Str(s), Value::Str(x) | Value::Bare(x)) => {
            if vocab.is_some_and(|iri| s == iri) {
                return Some(std::cmp::Ordering::Equal);
            }
            if let (Some(a), Some(b)) = (parse_datetime(s), parse_datetime(x)) {
                return Some(a.cmp(&b));
            }
            Some(s.cmp(x.as_str()))
        }
        (Plain::Str(s), Value::Number(x)) => s.parse::<f64>().ok()?.partial_cmp(x),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haskap_model::jsonld::ActiveContext;
    use haskap_model::parse::{Limits, Parser};
    use serde_json::json;

    fn entity() -> Entity {
        let core = ActiveContext::core(&json!({"@context": {"@vocab": "urn:v:"}})).unwrap();
        let p = Parser { ctx: &core, now: 0, limits: Limits::default() };
        p.entity(&json!({
            "id": "urn:ngsi-ld:Shelter:1", "type": "Shelter",
            "capacity": {"type": "Property", "value": 120, "observedAt": "2026-04-01T09:00:00Z",
                         "source": {"type": "Property", "value": "survey"}},
            "hazard": [{"type": "Property", "value": ["tsunami", "flood"]}, {"type": "Property", "value": "earthquake", "datasetId": "urn:d:1"}],
            "address": {"type": "Property", "value": {"city": "苫小牧市", "code": "012131"}},
            "open": {"type": "Property", "value": true},
            "managedBy": {"type": "Relationship", "object": "urn:ngsi-ld:City:tomakomai"},
            "name": {"type": "LanguageProperty", "languageMap": {"ja": "市民会館", "en": "Civic Hall"}},
            "category": {"type": "VocabProperty", "vocab": "shelter"}
        }))
        .unwrap()
    }

    fn check(q: &str, expected: bool) {
        let expr = crate::q::parse(q).unwrap_or_else(|e| panic!("{e}"));
        let c = compile(&expr, q, &|t| if t.contains(':') { t.to_string() } else { format!("urn:v:{t}") }).unwrap();
        let e = entity();
        assert_eq!(c.matches(&e), expected, "q = {q}");
        if let Some(values) = single_values(&e, &c.attributes).filter(|_| c.is_plain()) {
            assert_eq!(c.matches_values(&|i| values[i]), expected, "q = {q} on plain values");
        }
    }

    /// The values of `names` in `e` as a store's columns hold them; None when one is not a
    /// single plain value.
    fn single_values<'a>(e: &'a Entity, names: &[String]) -> Option<Vec<Option<Plain<'a>>>> {
        names
            .iter()
            .map(|n| match e.attrs.get(n).map(Vec::as_slice) {
                None => Some(None),
                Some([a]) if a.kind != AttrKind::VocabProperty => Plain::of(&a.value).map(Some),
                Some(_) => None,
            })
            .collect()
    }

    #[test]
    fn plain_evaluation_covers_the_plain_terms() {
        let mut plain = 0;
        for q in ["capacity>100", "open==true;capacity==1,2,120", "!missing|managedBy==urn:x", "hazard==\"flood\""] {
            let expr = crate::q::parse(q).unwrap();
            let c = compile(&expr, q, &|t| format!("urn:v:{t}")).unwrap();
            assert!(c.is_plain(), "{q}");
            plain += usize::from(single_values(&entity(), &c.attributes).is_some());
        }
        assert_eq!(plain, 3, "all but the multi-instance hazard have single plain values");
        let expr = crate::q::parse("capacity.observedAt>2026-01-01").unwrap();
        assert!(!compile(&expr, "", &|t| t.to_string()).unwrap().is_plain());
    }

    #[test]
    fn evaluation() {
        for (q, want) in [
            ("capacity>100", true),
            ("capacity>=120;capacity<=120", true),
            ("capacity<100", false),
            ("capacity==100..200", true),
            ("capacity==1,2,120", true),
            ("capacity!=120", false),
            ("capacity!=5", true),
            ("capacity", true),
            ("!capacity", false),
            ("!missing", true),
            ("missing", false),
            ("missing!=1", false),
            ("hazard==\"flood\"", true),
            ("hazard==\"earthquake\"", true),
            ("hazard.datasetId==urn:d:1", true),
            ("address[city]==\"苫小牧市\"", true),
            ("address[code]~=\"^0121\"", true),
            ("address[zip]==\"x\"", false),
            ("open==true", true),
            ("open==false|capacity>1", true),
            ("(open==false|capacity>1);managedBy==urn:ngsi-ld:City:tomakomai", true),
            ("capacity.observedAt>2026-03-01T00:00:00Z", true),
            ("capacity.observedAt>2026-05-01T00:00:00Z", false),
            ("capacity.source==\"survey\"", true),
            ("name==\"Civic Hall\"", true),
            ("name~=\"会館$\"", true),
            ("name!~=\"Hall\"", false),
            ("category==shelter", true),
            ("category==\"park\"", false),
        ] {
            check(q, want);
        }
    }

    #[test]
    fn bad_patterns_are_errors() {
        let expr = crate::q::parse("name~=\"(\"").unwrap();
        assert!(compile(&expr, "name~=\"(\"", &|t| t.to_string()).is_err());
    }
}

//! The stored form of an entity, in memory and on disk (data format 3).
//!
//! A MessagePack map: `id`, `t` (types), `s` (scopes, when there are any), `c` and `m` (created
//! and modified, microseconds), then `a`: the attributes, a map from expanded name to a binary
//! holding that attribute's instances (the MessagePack of `Vec<Attribute>`, field names as in
//! `haskap_model::entity`). The binary's length prefix lets a reader step over an attribute in
//! one hop, so a query picks the attributes it needs without walking the others. Format 2 held
//! the instances inline instead of in a binary; its records are still read (see [`is_current`]).

use haskap_model::entity::{AttrKind, Attribute, Entity};
use haskap_query::eval::Plain;

use crate::StoreError;
use crate::msgpack::{Scalar, array_header, bin_at, json_at, map_header, scalar_at, str_at, value_len};
use crate::state::Encoded;

/// Where a stored entity goes wrong.
fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("entity record: {what}"))
}

/// Encodes an entity.
pub fn encode(e: &Entity) -> Result<Encoded, StoreError> {
    use rmp::encode::{write_array_len, write_bin, write_map_len, write_sint, write_str};
    let mut out = Vec::with_capacity(1024);
    let mut scratch = Vec::with_capacity(256);
    let failed = |e: rmp::encode::ValueWriteError| StoreError::Corrupt(format!("cannot encode an entity: {e}"));
    let len = |n: usize| u32::try_from(n).map_err(|_| StoreError::Corrupt("too many items to encode".into()));
    write_map_len(&mut out, if e.scope.is_some() { 6 } else { 5 }).map_err(failed)?;
    write_str(&mut out, "id").map_err(failed)?;
    write_str(&mut out, &e.id).map_err(failed)?;
    for (key, list) in [("t", Some(&e.types)), ("s", e.scope.as_ref())] {
        let Some(list) = list else { continue };
        write_str(&mut out, key).map_err(failed)?;
        write_array_len(&mut out, len(list.len())?).map_err(failed)?;
        for item in list {
            write_str(&mut out, item).map_err(failed)?;
        }
    }
    for (key, micros) in [("c", e.created_at), ("m", e.modified_at)] {
        write_str(&mut out, key).map_err(failed)?;
        write_sint(&mut out, micros).map_err(failed)?;
    }
    write_str(&mut out, "a").map_err(failed)?;
    write_map_len(&mut out, len(e.attrs.len())?).map_err(failed)?;
    for (name, instances) in &e.attrs {
        write_str(&mut out, name).map_err(failed)?;
        scratch.clear();
        rmp_serde::encode::write_named(&mut scratch, instances)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode attribute {name}: {e}")))?;
        write_bin(&mut out, &scratch).map_err(failed)?;
    }
    Ok(out.into())
}

/// One part of a stored entity, as [`parts`] reads it.
enum Part<'a> {
    /// A member of the entity other than its attributes: its key and encoded value.
    Field(&'a [u8], &'a [u8]),
    /// An attribute: its expanded name, its encoded instances and whether they were wrapped in a
    /// binary (format 3).
    Attribute(&'a [u8], &'a [u8], bool),
}

/// Reads a stored entity part by part, until `f` answers false.
fn parts<'a>(bytes: &'a [u8], mut f: impl FnMut(Part<'a>) -> Result<bool, StoreError>) -> Result<(), StoreError> {
    let (n, mut pos) = map_header(bytes).ok_or_else(|| corrupt("not a map"))?;
    for _ in 0..n {
        let (key, klen) = str_at(&bytes[pos..]).ok_or_else(|| corrupt("bad key"))?;
        pos += klen;
        let rest = &bytes[pos..];
        if key != b"a" {
            let vlen = value_len(rest).ok_or_else(|| corrupt("truncated"))?;
            if !f(Part::Field(key, &rest[..vlen]))? {
                return Ok(());
            }
            pos += vlen;
            continue;
        }
        let (count, mut at) = map_header(rest).ok_or_else(|| corrupt("attributes are not a map"))?;
        for _ in 0..count {
            let (name, nlen) = str_at(&rest[at..]).ok_or_else(|| corrupt("bad attribute name"))?;
            at += nlen;
            // Format 3 wraps the instances in a binary; format 2 has them inline.
            let (instances, len, wrapped) = match bin_at(&rest[at..]) {
                Some((instances, len)) => (instances, len, true),
                None => {
                    let len = value_len(&rest[at..]).ok_or_else(|| corrupt("truncated attribute"))?;
                    (&rest[at..at + len], len, false)
                }
            };
            if !f(Part::Attribute(name, instances, wrapped))? {
                return Ok(());
            }
            at += len;
        }
        pos += at;
    }
    Ok(())
}

fn utf8(b: &[u8]) -> Result<String, StoreError> {
    std::str::from_utf8(b).map(str::to_string).map_err(corrupt)
}

fn string(b: &[u8]) -> Result<String, StoreError> {
    utf8(str_at(b).ok_or_else(|| corrupt("not a string"))?.0)
}

fn strings(b: &[u8]) -> Result<Vec<String>, StoreError> {
    let (n, mut pos) = array_header(b).ok_or_else(|| corrupt("not an array"))?;
    let mut out = Vec::with_capacity(n.min(b.len()));
    for _ in 0..n {
        let (s, len) = str_at(&b[pos..]).ok_or_else(|| corrupt("not a string"))?;
        out.push(utf8(s)?);
        pos += len;
    }
    Ok(out)
}

fn int(b: &[u8]) -> Result<i64, StoreError> {
    match scalar_at(b) {
        Some(Scalar::Int(i)) => Ok(i),
        _ => Err(corrupt("not an integer")),
    }
}

/// Decodes encoded instances (the MessagePack of `Vec<Attribute>`, as `rmp_serde` writes it
/// with field names), returning them and their length. Written out rather than derived: reading
/// entities is the hot path of every query.
fn attributes(b: &[u8]) -> Result<(Vec<Attribute>, usize), StoreError> {
    let (n, mut pos) = array_header(b).ok_or_else(|| corrupt("instances are not an array"))?;
    let mut out = Vec::with_capacity(n.min(8));
    for _ in 0..n {
        let (a, len) = attribute(&b[pos..], false)?;
        out.push(a);
        pos += len;
    }
    Ok((out, pos))
}

/// Decodes the first of encoded instances with only its kind and value (see
/// [`Extent::values_only`]).
fn first_value(b: &[u8]) -> Result<Vec<Attribute>, StoreError> {
    let (n, pos) = array_header(b).ok_or_else(|| corrupt("instances are not an array"))?;
    if n == 0 {
        return Ok(Vec::new());
    }
    Ok(vec![attribute(&b[pos..], true)?.0])
}

/// Decodes one encoded instance, returning it and its length; with `values_only`, only its kind
/// and value.
fn attribute(b: &[u8], values_only: bool) -> Result<(Attribute, usize), StoreError> {
    let (n, mut pos) = map_header(b).ok_or_else(|| corrupt("an instance is not a map"))?;
    let mut a = Attribute {
        kind: AttrKind::Property,
        value: serde_json::Value::Null,
        dataset_id: None,
        observed_at: None,
        unit_code: None,
        lang: None,
        created_at: 0,
        modified_at: 0,
        sub: Default::default(),
    };
    let text = |v: &[u8]| if v == [0xc0] { Ok(None) } else { string(v).map(Some) };
    for _ in 0..n {
        let (key, klen) = str_at(&b[pos..]).ok_or_else(|| corrupt("bad instance key"))?;
        pos += klen;
        let v = &b[pos..];
        let len = match key {
            b"v" => {
                let (value, len) = json_at(v).ok_or_else(|| corrupt("bad value"))?;
                a.value = value;
                len
            }
            b"s" if !values_only => {
                let (count, mut at) = map_header(v).ok_or_else(|| corrupt("sub-attributes are not a map"))?;
                for _ in 0..count {
                    let (name, nlen) = str_at(&v[at..]).ok_or_else(|| corrupt("bad sub-attribute name"))?;
                    at += nlen;
                    let (instances, len) = attributes(&v[at..])?;
                    a.sub.insert(utf8(name)?, instances);
                    at += len;
                }
                at
            }
            _ => {
                let len = value_len(v).ok_or_else(|| corrupt("truncated instance"))?;
                let v = &v[..len];
                match key {
                    b"k" => {
                        let name = str_at(v).ok_or_else(|| corrupt("bad kind"))?.0;
                        a.kind = AttrKind::ALL
                            .into_iter()
                            .find(|k| k.name().as_bytes() == name)
                            .ok_or_else(|| corrupt("unknown attribute kind"))?;
                    }
                    _ if values_only => {}
                    b"d" => a.dataset_id = text(v)?,
                    b"o" => a.observed_at = text(v)?,
                    b"u" => a.unit_code = text(v)?,
                    b"l" => a.lang = text(v)?,
                    b"c" => a.created_at = int(v)?,
                    b"m" => a.modified_at = int(v)?,
                    _ => {}
                }
                len
            }
        };
        pos += len;
    }
    Ok((a, pos))
}

/// How much of a stored entity a reader needs; the default is all of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extent<'a> {
    /// Only these attributes (expanded names), when set.
    pub attrs: Option<&'a std::collections::HashSet<String>>,
    /// Only the first instance of each attribute, with just its kind and value (no metadata, no
    /// sub-attributes): what the key-values representation shows.
    pub values_only: bool,
}

/// Decodes an entity; a failure means stored data is corrupt.
pub fn decode(bytes: &[u8]) -> Result<Entity, StoreError> {
    decode_where(bytes, |_| true, false)
}

/// Decodes as much of an entity as `extent` asks for; the other attributes and instances are
/// stepped over, never decoded.
pub fn decode_extent(bytes: &[u8], extent: &Extent<'_>) -> Result<Entity, StoreError> {
    let keep =
        |name: &[u8]| extent.attrs.is_none_or(|only| std::str::from_utf8(name).is_ok_and(|name| only.contains(name)));
    decode_where(bytes, keep, extent.values_only)
}

/// Decodes an entity keeping only the attributes named in `wanted` (expanded names): enough to
/// evaluate a query, at a fraction of the cost of a full decode. The other attributes are stepped
/// over, never decoded.
pub fn decode_sparse(bytes: &[u8], wanted: &[&str]) -> Result<Entity, StoreError> {
    decode_where(bytes, |name| wanted.iter().any(|w| w.as_bytes() == name), false)
}

fn decode_where(bytes: &[u8], keep: impl Fn(&[u8]) -> bool, values_only: bool) -> Result<Entity, StoreError> {
    let mut e = Entity {
        id: String::new(),
        types: Vec::new(),
        scope: None,
        created_at: 0,
        modified_at: 0,
        attrs: Default::default(),
    };
    let result = parts(bytes, |part| {
        match part {
            Part::Field(b"id", v) => e.id = string(v)?,
            Part::Field(b"t", v) => e.types = strings(v)?,
            Part::Field(b"s", v) => e.scope = if v == [0xc0] { None } else { Some(strings(v)?) },
            Part::Field(b"c", v) => e.created_at = int(v)?,
            Part::Field(b"m", v) => e.modified_at = int(v)?,
            Part::Field(..) => {}
            Part::Attribute(name, instances, _) if keep(name) => {
                let instances = if values_only { first_value(instances)? } else { attributes(instances)?.0 };
                e.attrs.insert(utf8(name)?, instances);
            }
            Part::Attribute(..) => {}
        }
        Ok(true)
    });
    if let Err(err) = result {
        tracing::error!(error = %err, "undecodable entity record");
        return Err(err);
    }
    Ok(e)
}

/// Whether `bytes` is in the current format (format 2 records are rewritten at start-up).
pub(crate) fn is_current(bytes: &[u8]) -> bool {
    let mut current = true;
    let _ = parts(bytes, |part| {
        if let Part::Attribute(_, _, wrapped) = part {
            current = wrapped;
            return Ok(false);
        }
        Ok(true)
    });
    current
}

/// The encoded instances of attribute `name` (expanded) of a stored entity, if it has it.
pub(crate) fn instances_of<'a>(bytes: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, StoreError> {
    let mut found = None;
    parts(bytes, |part| {
        if let Part::Attribute(n, instances, _) = part
            && n == name.as_bytes()
        {
            found = Some(instances);
            return Ok(false);
        }
        Ok(true)
    })?;
    Ok(found)
}

/// The plain values of one attribute.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct PlainValues<'a> {
    /// Every instance's value, arrays flattened one level.
    pub(crate) values: Vec<Plain<'a>>,
    /// Whether an instance is a VocabProperty.
    pub(crate) vocab: bool,
}

/// The plain values of an attribute's encoded instances; None when one is not plain (a
/// compound value, a language map).
pub(crate) fn plain_instances(b: &[u8]) -> Option<PlainValues<'_>> {
    let (count, mut pos) = array_header(b)?;
    let mut out = PlainValues::default();
    for _ in 0..count {
        let (fields, head) = map_header(b.get(pos..)?)?;
        pos += head;
        for _ in 0..fields {
            let (key, klen) = str_at(b.get(pos..)?)?;
            pos += klen;
            let v = b.get(pos..)?;
            let vlen = value_len(v)?;
            match key {
                b"k" => out.vocab |= str_at(v)?.0 == b"VocabProperty",
                b"v" => match array_header(v) {
                    Some((items, mut at)) => {
                        for _ in 0..items {
                            out.values.push(plain(scalar_at(&v[at..])?));
                            at += value_len(&v[at..])?;
                        }
                    }
                    None => out.values.push(plain(scalar_at(v)?)),
                },
                _ => {}
            }
            pos += vlen;
        }
    }
    Some(out)
}

fn plain(s: Scalar<'_>) -> Plain<'_> {
    match s {
        Scalar::Nil => Plain::Null,
        Scalar::Bool(b) => Plain::Bool(b),
        Scalar::Int(i) => Plain::Number(i as f64),
        Scalar::Float(f) => Plain::Number(f),
        Scalar::Str(s) => Plain::Str(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entity() -> Entity {
        let core = haskap_model::jsonld::ActiveContext::core(&json!({"@context": {"@vocab": "urn:v:"}})).unwrap();
        // A real clock's microseconds: wider than 32 bits.
        let p = haskap_model::parse::Parser { ctx: &core, now: 1_795_000_000_000_000, limits: Default::default() };
        p.entity(&json!({"id": "urn:x:1", "type": "T", "scope": "/a", "a": 1, "b": {"type": "Relationship", "object": "urn:x:2"}, "c": "three",
            "d": [{"type": "Property", "value": [1.5, "x"]}, {"type": "Property", "value": -3, "datasetId": "urn:d:1"}],
            "e": {"type": "Property", "value": {"nested": true}}, "f": {"type": "VocabProperty", "vocab": "shelter"},
            "g": {"type": "Property", "value": 21.5, "unitCode": "CEL", "observedAt": "2026-04-01T09:00:00Z",
                  "accuracy": {"type": "Property", "value": 0.5, "source": {"type": "Relationship", "object": "urn:x:3"}}},
            "h": {"type": "LanguageProperty", "languageMap": {"ja": "苫小牧", "en": "Tomakomai"}},
            "i": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [141.6, 42.63]}},
            "j": {"type": "ListProperty", "valueList": [1, "two", {"three": 3}]}, "k": {"type": "JsonProperty", "json": {"any": [null, -1]}}}))
        .unwrap()
    }

    #[test]
    fn records_round_trip_and_read_format_2() {
        let e = entity();
        let bytes = encode(&e).unwrap();
        assert!(is_current(&bytes));
        assert_eq!(decode(&bytes).unwrap(), e);
        let legacy = rmp_serde::to_vec_named(&e).unwrap();
        assert!(!is_current(&legacy), "format 2 is told apart");
        assert_eq!(decode(&legacy).unwrap(), e, "format 2 is still read");
        let bare = Entity { attrs: Default::default(), scope: None, ..e };
        assert_eq!(decode(&encode(&bare).unwrap()).unwrap(), bare);
    }

    /// Damaged records are errors, never panics: every truncation and every single-byte change.
    #[test]
    fn damaged_records_do_not_panic() {
        let bytes = encode(&entity()).unwrap().to_vec();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err());
        }
        for at in 0..bytes.len() {
            for x in [0x00, 0x7f, 0x90, 0xc1, 0xc6, 0xdd, 0xdf, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] = x;
                let _ = decode(&damaged);
                let _ = decode_extent(&damaged, &Extent { attrs: None, values_only: true });
                let _ = is_current(&damaged);
                let _ = instances_of(&damaged, "urn:v:d").map(|i| i.map(plain_instances));
            }
        }
    }

    #[test]
    fn sparse_decoding_keeps_only_what_is_wanted() {
        let e = entity();
        for bytes in [encode(&e).unwrap().to_vec(), rmp_serde::to_vec_named(&e).unwrap()] {
            let sparse = decode_sparse(&bytes, &["urn:v:b"]).unwrap();
            assert_eq!(sparse.attrs.keys().collect::<Vec<_>>(), vec!["urn:v:b"]);
            assert_eq!(sparse.attrs["urn:v:b"], e.attrs["urn:v:b"]);
            assert_eq!(
                (sparse.id.as_str(), &sparse.types, &sparse.scope, sparse.created_at),
                (e.id.as_str(), &e.types, &e.scope, e.created_at)
            );
            assert!(decode_sparse(&bytes[..bytes.len() / 4], &["urn:v:b"]).is_err(), "truncated records are errors");
        }
        assert!(decode_sparse(b"\xc1", &[]).is_err());
    }

    /// Key-values shown from an entity decoded with `values_only` are those of the whole
    /// entity, with and without `lang`; `attrs` keeps just the attributes asked for.
    #[test]
    fn an_extent_decodes_what_the_view_shows() {
        use haskap_model::render::{Format, RenderOptions, render_entity};
        let e = entity();
        let ctx = haskap_model::jsonld::ActiveContext::core(&json!({"@context": {"@vocab": "urn:v:"}})).unwrap();
        for bytes in [encode(&e).unwrap().to_vec(), rmp_serde::to_vec_named(&e).unwrap()] {
            let light = decode_extent(&bytes, &Extent { attrs: None, values_only: true }).unwrap();
            for lang in [None, Some("en".to_string())] {
                let opts = RenderOptions { format: Format::KeyValues, lang, ..Default::default() };
                assert_eq!(render_entity(&light, &ctx, &opts), render_entity(&e, &ctx, &opts));
            }
            assert!(light.attrs.values().all(|i| i.len() == 1 && i[0].sub.is_empty() && i[0].observed_at.is_none()));
            let only = ["urn:v:g".to_string(), "urn:v:d".to_string()].into();
            let some = decode_extent(&bytes, &Extent { attrs: Some(&only), values_only: false }).unwrap();
            assert_eq!(some.attrs.keys().collect::<Vec<_>>(), ["urn:v:d", "urn:v:g"]);
            assert_eq!((&some.attrs["urn:v:d"], &some.attrs["urn:v:g"]), (&e.attrs["urn:v:d"], &e.attrs["urn:v:g"]));
        }
    }

    #[test]
    fn plain_values_are_read_in_place() {
        let bytes = encode(&entity()).unwrap();
        let plain =
            |name: &str| instances_of(&bytes, name).unwrap().map(|i| plain_instances(i).map(|p| (p.values, p.vocab)));
        assert_eq!(
            plain("urn:v:d"),
            Some(Some((vec![Plain::Number(1.5), Plain::Str("x"), Plain::Number(-3.0)], false)))
        );
        assert_eq!(plain("urn:v:a"), Some(Some((vec![Plain::Number(1.0)], false))));
        assert_eq!(plain("urn:v:missing"), None);
        assert_eq!(plain("urn:v:b"), Some(Some((vec![Plain::Str("urn:x:2")], false))));
        assert_eq!(plain("urn:v:f"), Some(Some((vec![Plain::Str("urn:v:shelter")], true))));
        assert_eq!(plain("urn:v:e"), Some(None), "a compound value is not plain");
    }
}

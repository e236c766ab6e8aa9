//! Walking MessagePack without decoding it: the extent of a value, headers, string keys and
//! scalars, so that a query can pick the attributes it needs out of a stored entity and step over
//! the rest without validating or allocating anything.

/// The length in bytes of the value at the start of `b`; None when `b` is truncated or invalid.
pub(crate) fn value_len(b: &[u8]) -> Option<usize> {
    let m = *b.first()?;
    let be = |at: usize, n: usize| -> Option<usize> {
        Some(b.get(at..at + n)?.iter().fold(0usize, |acc, x| (acc << 8) | usize::from(*x)))
    };
    let (head, body) = match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, 0),
        0x80..=0x8f => return values_len(b, 1, 2 * usize::from(m & 0x0f)),
        0x90..=0x9f => return values_len(b, 1, usize::from(m & 0x0f)),
        0xa0..=0xbf => (1, usize::from(m & 0x1f)),
        0xc4 | 0xd9 => (2, be(1, 1)?),
        0xc5 | 0xda => (3, be(1, 2)?),
        0xc6 | 0xdb => (5, be(1, 4)?),
        0xc7 => (3, be(1, 1)?),
        0xc8 => (4, be(1, 2)?),
        0xc9 => (6, be(1, 4)?),
        0xcc | 0xd0 => (2, 0),
        0xcd | 0xd1 => (3, 0),
        0xca | 0xce | 0xd2 => (5, 0),
        0xcb | 0xcf | 0xd3 => (9, 0),
        0xd4 => (3, 0),
        0xd5 => (4, 0),
        0xd6 => (6, 0),
        0xd7 => (10, 0),
        0xd8 => (18, 0),
        0xdc => return values_len(b, 3, be(1, 2)?),
        0xdd => return values_len(b, 5, be(1, 4)?),
        0xde => return values_len(b, 3, 2 * be(1, 2)?),
        0xdf => return values_len(b, 5, 2 * be(1, 4)?),
        0xc1 => return None,
    };
    let end = head + body;
    (end <= b.len()).then_some(end)
}

/// The end of `n` consecutive values starting at `start`.
fn values_len(b: &[u8], start: usize, n: usize) -> Option<usize> {
    let mut pos = start;
    for _ in 0..n {
        pos += value_len(b.get(pos..)?)?;
    }
    Some(pos)
}

/// A map header at the start of `b`: the number of entries and the header's length.
pub(crate) fn map_header(b: &[u8]) -> Option<(usize, usize)> {
    header(b, 0x80, 0xde)
}

/// An array header at the start of `b`: the number of items and the header's length.
pub(crate) fn array_header(b: &[u8]) -> Option<(usize, usize)> {
    header(b, 0x90, 0xdc)
}

/// A container header: `fix` is the marker of the short form (count in the low four bits),
/// `wide` that of the 16-bit form, followed by that of the 32-bit form.
fn header(b: &[u8], fix: u8, wide: u8) -> Option<(usize, usize)> {
    let m = *b.first()?;
    let be = |n: usize| Some(b.get(1..1 + n)?.iter().fold(0usize, |acc, x| (acc << 8) | usize::from(*x)));
    if m & 0xf0 == fix {
        Some((usize::from(m & 0x0f), 1))
    } else if m == wide {
        Some((be(2)?, 3))
    } else if m == wide + 1 {
        Some((be(4)?, 5))
    } else {
        None
    }
}

/// A binary at the start of `b`: its bytes and the total length.
pub(crate) fn bin_at(b: &[u8]) -> Option<(&[u8], usize)> {
    let head = match *b.first()? {
        0xc4 => 2,
        0xc5 => 3,
        0xc6 => 5,
        _ => return None,
    };
    let len = value_len(b)?;
    Some((&b[head..len], len))
}

/// A scalar at the start of `b`, borrowed: nil, a boolean, a number or a (validated) string.
/// None for anything else (arrays, maps, binaries, extensions) or invalid input.
pub(crate) fn scalar_at(b: &[u8]) -> Option<Scalar<'_>> {
    let m = *b.first()?;
    let int =
        |n: usize| -> Option<u64> { Some(b.get(1..1 + n)?.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x))) };
    Some(match m {
        0xc0 => Scalar::Nil,
        0xc2 => Scalar::Bool(false),
        0xc3 => Scalar::Bool(true),
        0x00..=0x7f => Scalar::Int(i64::from(m)),
        0xe0..=0xff => Scalar::Int(i64::from(m as i8)),
        0xcc => Scalar::Int(int(1)? as i64),
        0xcd => Scalar::Int(int(2)? as i64),
        0xce => Scalar::Int(int(4)? as i64),
        0xcf => match i64::try_from(int(8)?) {
            Ok(i) => Scalar::Int(i),
            Err(_) => Scalar::Float(int(8)? as f64),
        },
        0xd0 => Scalar::Int(i64::from(int(1)? as u8 as i8)),
        0xd1 => Scalar::Int(i64::from(int(2)? as u16 as i16)),
        0xd2 => Scalar::Int(i64::from(int(4)? as u32 as i32)),
        0xd3 => Scalar::Int(int(8)? as i64),
        0xca => Scalar::Float(f64::from(f32::from_bits(int(4)? as u32))),
        0xcb => Scalar::Float(f64::from_bits(int(8)?)),
        0xa0..=0xbf | 0xd9..=0xdb => Scalar::Str(std::str::from_utf8(str_at(b)?.0).ok()?),
        _ => return None,
    })
}

/// The JSON value at the start of `b` and its length; None for what JSON cannot hold (binaries,
/// extensions, non-string map keys) or invalid input. Integers keep their exact value.
pub(crate) fn json_at(b: &[u8]) -> Option<(serde_json::Value, usize)> {
    use serde_json::Value;
    if let Some((n, head)) = array_header(b) {
        let mut items = Vec::with_capacity(n.min(b.len()));
        let mut pos = head;
        for _ in 0..n {
            let (v, len) = json_at(b.get(pos..)?)?;
            items.push(v);
            pos += len;
        }
        return Some((Value::Array(items), pos));
    }
    if let Some((n, head)) = map_header(b) {
        let mut map = serde_json::Map::new();
        let mut pos = head;
        for _ in 0..n {
            let (k, klen) = str_at(b.get(pos..)?)?;
            let k = std::str::from_utf8(k).ok()?.to_string();
            pos += klen;
            let (v, len) = json_at(b.get(pos..)?)?;
            map.insert(k, v);
            pos += len;
        }
        return Some((Value::Object(map), pos));
    }
    let len = value_len(b)?;
    let v = match *b.first()? {
        0xcf => Value::from(u64::from_be_bytes(b.get(1..9)?.try_into().ok()?)),
        _ => match scalar_at(b)? {
            Scalar::Nil => Value::Null,
            Scalar::Bool(x) => Value::Bool(x),
            Scalar::Int(i) => Value::from(i),
            Scalar::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            Scalar::Str(s) => Value::String(s.to_string()),
        },
    };
    Some((v, len))
}

/// A MessagePack scalar, borrowed from the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

/// A string at the start of `b`: its bytes (not validated) and the total length.
pub(crate) fn str_at(b: &[u8]) -> Option<(&[u8], usize)> {
    let m = *b.first()?;
    let len = value_len(b)?;
    let head = match m {
        0xa0..=0xbf => 1,
        0xd9 => 2,
        0xda => 3,
        0xdb => 5,
        _ => return None,
    };
    Some((&b[head..len], len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn value_lengths_match_what_rmp_writes() {
        let long = "x".repeat(70_000);
        let values = [
            json!(null),
            json!(true),
            json!(7),
            json!(-7),
            json!(300),
            json!(-300),
            json!(70_000),
            json!(5_000_000_000u64),
            json!(-5_000_000_000i64),
            json!(1.5),
            json!("short"),
            json!("x".repeat(40)),
            json!("x".repeat(300)),
            json!(long),
            json!([1, "two", [3], {"four": 4}]),
            json!((0..20).collect::<Vec<_>>()),
            json!({"a": {"b": [1, 2, {"c": null}]}, "d": "e"}),
            json!((0..20).map(|i| (i.to_string(), json!(i))).collect::<serde_json::Map<_, _>>()),
        ];
        for v in values {
            let bytes = rmp_serde::to_vec_named(&v).unwrap();
            assert_eq!(value_len(&bytes), Some(bytes.len()), "{v}");
            let mut padded = bytes.clone();
            padded.extend_from_slice(&[0xc0, 0xc0]);
            assert_eq!(value_len(&padded), Some(bytes.len()), "{v} followed by more");
            assert_eq!(value_len(&bytes[..bytes.len() - 1]), None, "{v} truncated");
        }
        for (v, want) in [
            (json!(null), Scalar::Nil),
            (json!(true), Scalar::Bool(true)),
            (json!(-7), Scalar::Int(-7)),
            (json!(300), Scalar::Int(300)),
            (json!(-300), Scalar::Int(-300)),
            (json!(70_000), Scalar::Int(70_000)),
            (json!(-5_000_000_000i64), Scalar::Int(-5_000_000_000)),
            (json!(1_790_000_000_000_000u64), Scalar::Int(1_790_000_000_000_000)),
            (json!(u64::MAX), Scalar::Float(u64::MAX as f64)),
            (json!(1.5), Scalar::Float(1.5)),
            (json!("active"), Scalar::Str("active")),
        ] {
            assert_eq!(scalar_at(&rmp_serde::to_vec_named(&v).unwrap()), Some(want), "{v}");
        }
        assert_eq!(scalar_at(&rmp_serde::to_vec_named(&json!([1])).unwrap()), None);
        assert_eq!(scalar_at(&[0xa2, 0xff, 0xfe]), None, "invalid UTF-8");
        assert_eq!(scalar_at(&[0xcd, 0x01]), None, "truncated");
        let array = rmp_serde::to_vec_named(&json!((0..20).collect::<Vec<_>>())).unwrap();
        assert_eq!(array_header(&array), Some((20, 3)));
        let mut bin = Vec::new();
        rmp::encode::write_bin(&mut bin, &[7; 300]).unwrap();
        assert_eq!(bin_at(&bin), Some((&[7u8; 300][..], 303)));
        for v in [
            json!({"a": [1, -2, 3.5, u64::MAX, i64::MIN, "x", null, true, {"b": {}}], "c": "苫小牧"}),
            json!([]),
            json!(0),
        ] {
            let bytes = rmp_serde::to_vec_named(&v).unwrap();
            assert_eq!(json_at(&bytes), Some((v.clone(), bytes.len())), "{v}");
            assert_eq!(json_at(&bytes[..bytes.len() - 1]), None, "{v} truncated");
        }
        let map = rmp_serde::to_vec_named(&json!({"key": 1})).unwrap();
        assert_eq!(map_header(&map), Some((1, 1)));
        assert_eq!(str_at(&map[1..]), Some((&b"key"[..], 4)));
        assert_eq!(value_len(&[0xc1]), None);
    }
}

//! Checks on the shapes NGSI-LD data must have: URIs, date-times, GeoJSON, names.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::entity::Micros;
use crate::error::{NgsiError, Result};

/// Characters NGSI-LD forbids in names and identifiers (clause 4.6.2).
const FORBIDDEN: &[char] = &['<', '>', '"', '\'', '=', ';', '(', ')'];

/// Whether `c` is a control character or an invisible bidirectional formatting character
/// (U+061C, U+200E, U+200F, the embeddings and overrides U+202A to U+202E and the isolates
/// U+2066 to U+2069): neither may appear in ids or names, where they would make two different
/// identifiers look the same, or one look like another.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `s` is an absolute URI: a scheme, a colon and a non-empty rest without spaces.
pub fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    scheme_ok
        && !rest.is_empty()
        && !s.chars().any(|c| {
            c.is_whitespace() || is_invisible(c) || matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '\\' | '^' | '`')
        })
}

/// Checks that `id` is a URI, naming `what` in the error.
pub fn check_uri(id: &str, what: &str) -> Result<()> {
    if is_uri(id) { Ok(()) } else { Err(NgsiError::bad_data(format!("{what} {id:?} is not a URI"))) }
}

/// Checks an attribute or type name as sent by a client.
pub fn check_name(name: &str, what: &str) -> Result<()> {
    if name.is_empty() {
        return Err(NgsiError::bad_data(format!("{what} must not be empty")));
    }
    if let Some(c) = name.chars().find(|c| FORBIDDEN.contains(c) || c.is_whitespace() || is_invisible(*c)) {
        return Err(NgsiError::bad_data(format!("{what} {name:?} contains the forbidden character {c:?}")));
    }
    Ok(())
}

/// Parses an ISO 8601 / RFC 3339 date-time.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.with_timezone(&Utc))
}

/// Whether `s` is a date-time (RFC 3339, or without a time zone), a date (`2024-04-01`) or a
/// time (`09:00:00`, with optional fractions and `Z`): the temporal literals of queries.
pub fn is_temporal(s: &str) -> bool {
    use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
    parse_datetime(s).is_some()
        || NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        || NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        || NaiveTime::parse_from_str(s.strip_suffix('Z').unwrap_or(s), "%H:%M:%S%.f").is_ok()
}

/// Checks a DateTime member such as `observedAt`.
pub fn check_datetime(v: &Value, what: &str) -> Result<String> {
    match v.as_str() {
        Some(s) if parse_datetime(s).is_some() => Ok(s.to_string()),
        _ => Err(NgsiError::bad_data(format!(
            "{what} must be an ISO 8601 date-time such as 2024-04-01T09:00:00Z, got {v}"
        ))),
    }
}

/// A fresh id `urn:ngsi-ld:{kind}:{time}-{n}`, unique within the process (`n` counts the ids made)
/// and, through the time, across restarts.
pub fn fresh_urn(kind: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("urn:ngsi-ld:{kind}:{:x}-{n:x}", now_micros())
}

/// The current time in microseconds since the epoch.
pub fn now_micros() -> Micros {
    Utc::now().timestamp_micros()
}

/// Formats system timestamps as ISO 8601 UTC with microseconds.
pub fn format_micros(t: Micros) -> String {
    DateTime::<Utc>::from_timestamp_micros(t).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Checks that `v` is a GeoJSON geometry of a type NGSI-LD supports.
pub fn check_geometry(v: &Value) -> Result<()> {
    let bad = |why: &str| NgsiError::bad_data(format!("invalid GeoJSON geometry: {why}"));
    let obj = v.as_object().ok_or_else(|| bad("it must be an object"))?;
    let ty = obj.get("type").and_then(Value::as_str).ok_or_else(|| bad("\"type\" is missing"))?;
    if ty == "GeometryCollection" {
        let geoms =
            obj.get("geometries").and_then(Value::as_array).ok_or_else(|| bad("\"geometries\" must be an array"))?;
        return geoms.iter().try_for_each(check_geometry);
    }
    let coords = obj.get("coordinates").ok_or_else(|| bad("\"coordinates\" is missing"))?;
    let ok = match ty {
        "Point" => is_position(coords),
        "MultiPoint" => is_list(coords, 0, is_position),
        "LineString" => is_list(coords, 2, is_position),
        "MultiLineString" => is_list(coords, 0, |l| is_list(l, 2, is_position)),
        "Polygon" => is_polygon(coords),
        "MultiPolygon" => is_list(coords, 0, is_polygon),
        other => return Err(bad(&format!("unsupported type {other:?}"))),
    };
    if ok { Ok(()) } else { Err(bad(&format!("coordinates do not form a valid {ty}"))) }
}

fn is_position(v: &Value) -> bool {
    match v.as_array() {
        Some(a) if (2..=3).contains(&a.len()) && a.iter().all(Value::is_number) => {
            let lon = a[0].as_f64().unwrap_or(f64::NAN);
            let lat = a[1].as_f64().unwrap_or(f64::NAN);
            (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)
        }
        _ => false,
    }
}

fn is_list(v: &Value, min: usize, item: impl Fn(&Value) -> bool) -> bool {
    v.as_array().is_some_and(|a| a.len() >= min && a.iter().all(item))
}

fn is_polygon(v: &Value) -> bool {
    is_list(v, 1, |ring| is_list(ring, 4, is_position) && ring.as_array().is_some_and(|r| is_ring(r)))
}

/// Whether positions (already checked to be positions) form a linear ring: at least four, the
/// last equal to the first, enclosing a non-zero area.
pub fn is_ring(ring: &[Value]) -> bool {
    let xy = |p: &Value| (p[0].as_f64().unwrap_or(f64::NAN), p[1].as_f64().unwrap_or(f64::NAN));
    let points: Vec<(f64, f64)> = ring.iter().map(xy).collect();
    ring_is_valid(&points)
}

/// Whether points form a linear ring: at least four, closed (the last equal to the first, in
/// longitude and latitude), enclosing a non-zero area.
pub fn ring_is_valid(points: &[(f64, f64)]) -> bool {
    let (Some(&first), Some(&last)) = (points.first(), points.last()) else { return false };
    if points.len() < 4 || first != last {
        return false;
    }
    // The shoelace formula, relative to the first point to keep rounding small; collinear points
    // leave only rounding noise (the coordinates' rounding error times the ring's extent), which
    // stays far below the threshold.
    let (mut twice_area, mut min, mut max) = (0.0, first, first);
    for w in points.windows(2) {
        let (a, b) = ((w[0].0 - first.0, w[0].1 - first.1), (w[1].0 - first.0, w[1].1 - first.1));
        twice_area += a.0 * b.1 - b.0 * a.1;
        min = (min.0.min(w[1].0), min.1.min(w[1].1));
        max = (max.0.max(w[1].0), max.1.max(w[1].1));
    }
    let diagonal = ((max.0 - min.0).powi(2) + (max.1 - min.1).powi(2)).sqrt();
    let magnitude = first.0.abs().max(first.1.abs()).max(1.0);
    twice_area.is_finite() && twice_area.abs() > diagonal * magnitude * 1e-12
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uris() {
        for ok in ["urn:ngsi-ld:Vehicle:A4567", "http://example.org/x", "a:b"] {
            assert!(is_uri(ok), "{ok}");
        }
        for bad in ["", "Vehicle", ":x", "urn:", "1urn:x", "urn:a b", "urn:<x>"] {
            assert!(!is_uri(bad), "{bad}");
        }
    }

    /// Regression (issue 19): bidi overrides and isolates, and control characters, are refused in
    /// ids and names.
    #[test]
    fn invisible_characters() {
        for c in ['\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200F}', '\u{0007}', '\u{007F}', '\u{0085}'] {
            assert!(!is_uri(&format!("urn:ngsi-ld:T:a{c}b")), "{c:?}");
            assert!(check_name(&format!("na{c}me"), "attribute name").is_err(), "{c:?}");
        }
        assert!(is_uri("urn:ngsi-ld:苫小牧:1"));
        assert!(check_name("名前", "attribute name").is_ok());
    }

    #[test]
    fn geometries() {
        assert!(check_geometry(&json!({"type": "Point", "coordinates": [141.6, 42.63]})).is_ok());
        assert!(check_geometry(&json!({"type": "Point", "coordinates": [141.6]})).is_err());
        assert!(check_geometry(&json!({"type": "Point", "coordinates": [200, 42]})).is_err());
        let square = json!([[[0, 0], [1, 0], [1, 1], [0, 0]]]);
        assert!(check_geometry(&json!({"type": "Polygon", "coordinates": square})).is_ok());
        let open = json!([[[0, 0], [1, 0], [1, 1], [0, 1]]]);
        assert!(check_geometry(&json!({"type": "Polygon", "coordinates": open})).is_err());
        // Regression (issue 19): degenerate rings enclose nothing.
        for degenerate in [
            json!([[[0, 0], [1, 1], [2, 2], [0, 0]]]),
            json!([[[141.6036, 42.6342], [141.6037, 42.6343], [141.6038, 42.6344], [141.6036, 42.6342]]]),
            json!([[[0, 0], [0, 0], [0, 0], [0, 0]]]),
            json!([[[0, 0], [1, 0], [0, 0]]]),
        ] {
            assert!(check_geometry(&json!({"type": "Polygon", "coordinates": degenerate})).is_err(), "{degenerate}");
        }
        let tiny = json!([[[141.60360, 42.6342], [141.60361, 42.6342], [141.60361, 42.63421], [141.60360, 42.6342]]]);
        assert!(check_geometry(&json!({"type": "Polygon", "coordinates": tiny})).is_ok());
        let hole = json!([[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]], [[1, 1], [2, 2], [1, 1], [1, 1]]]);
        assert!(check_geometry(&json!({"type": "MultiPolygon", "coordinates": [hole]})).is_err());
        assert!(check_geometry(&json!({"type": "Circle", "coordinates": [0, 0]})).is_err());
        assert!(check_geometry(&json!("POINT(0 0)")).is_err());
    }

    #[test]
    fn datetimes() {
        assert!(check_datetime(&json!("2024-04-01T09:00:00Z"), "observedAt").is_ok());
        assert!(check_datetime(&json!("2024-04-01T09:00:00.123+09:00"), "observedAt").is_ok());
        assert!(check_datetime(&json!("yesterday"), "observedAt").is_err());
        assert!(check_datetime(&json!(12), "observedAt").is_err());
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
    }
}

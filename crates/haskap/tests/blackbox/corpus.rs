//! The malformed-input corpus (issue 19): every case listed in `tests/corpus/malformed.json` and
//! every case generated here goes to the real binary, one at a time. Each must answer 4xx with a
//! ProblemDetails body whose `status` is the HTTP status (raw HTTP garbage may instead get its
//! connection closed), within a timeout, without changing what the broker holds, and the broker
//! must take a canary write after it.
//!
//! Generated cases: wrong types at every level of a valid entity (for create, replace, append,
//! update and merge), of a valid subscription and of a valid Query, and invisible characters
//! (bidi overrides and isolates, controls) in every place an id or a name arrives. Each valid
//! base is first sent to another tenant and must succeed there, so that every generated case
//! differs from an accepted request by one value only.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Server, shelter};

/// The listed cases.
const CORPUS: &str = include_str!("../corpus/malformed.json");

/// How long one case may take, answer included.
const CASE_TIMEOUT: Duration = Duration::from_secs(5);

/// The entity every case may aim at, present in the default tenant and in `baseline`.
const SEED: &str = "urn:ngsi-ld:EvacuationShelter:seed";

/// One HTTP request of the corpus.
struct Case {
    class: String,
    name: String,
    method: String,
    path: String,
    /// Headers to set; `None` removes the Content-Type added for a body.
    headers: Vec<(String, Option<String>)>,
    body: Option<Vec<u8>>,
    /// The exact status expected, if the case says.
    status: Option<u16>,
    /// A batch operation, which may refuse per entity: 207 with no success and a ProblemDetails
    /// per item.
    batch: bool,
}

impl Case {
    fn new(class: &str, name: String, method: &str, path: String, body: Option<Vec<u8>>) -> Case {
        let batch = path_is_batch(&path);
        Case { class: class.into(), name, method: method.into(), path, headers: Vec::new(), body, status: None, batch }
    }
}

/// Bytes written to a TCP connection as they are.
struct RawCase {
    name: String,
    bytes: Vec<u8>,
    /// Whether to shut the writing side down after them (for incomplete requests).
    half_close: bool,
}

/// Expands `«n*text»` (text repeated n times) and `«host»`.
fn expand(s: &str, host: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('«') {
        out.push_str(&rest[..start]);
        let after = &rest[start + '«'.len_utf8()..];
        let end = after.find('»').unwrap_or_else(|| panic!("unterminated « in {s:?}"));
        let inner = &after[..end];
        match inner.split_once('*') {
            _ if inner == "host" => out.push_str(host),
            Some((n, text)) => out.push_str(&text.repeat(n.parse().unwrap_or_else(|_| panic!("bad repeat {inner:?}")))),
            None => panic!("unknown placeholder «{inner}»"),
        }
        rest = &after[end + '»'.len_utf8()..];
    }
    out.push_str(rest);
    out
}

fn path_is_batch(path: &str) -> bool {
    ["create", "upsert", "update", "delete", "merge"]
        .iter()
        .any(|op| path.starts_with(&format!("/ngsi-ld/v1/entityOperations/{op}")))
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// The listed HTTP cases and raw cases.
fn listed(host: &str) -> (Vec<Case>, Vec<RawCase>) {
    let corpus: Value = serde_json::from_str(CORPUS).expect("the corpus is JSON");
    let text = |c: &Value, k: &str| c[k].as_str().map(|s| expand(s, host));
    let http = corpus["http"]
        .as_array()
        .expect("http cases")
        .iter()
        .map(|c| Case {
            class: text(c, "class").expect("class"),
            name: text(c, "name").expect("name"),
            method: text(c, "method").expect("method"),
            path: text(c, "path").expect("path"),
            headers: c["headers"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().map(|v| expand(v, host))))
                .collect(),
            body: text(c, "body").map(String::into_bytes).or_else(|| c["body_hex"].as_str().map(unhex)),
            status: c["status"].as_u64().map(|s| s as u16),
            batch: c["batch"] == true,
        })
        .collect();
    let raw = corpus["raw"]
        .as_array()
        .expect("raw cases")
        .iter()
        .map(|c| {
            // Raw bytes are written as the code points 0 to 255 of the text (Latin-1).
            let bytes = expand(c["text"].as_str().expect("text"), host)
                .chars()
                .map(|ch| u8::try_from(u32::from(ch)).expect("raw text is Latin-1"))
                .collect();
            RawCase { name: c["name"].as_str().expect("name").to_string(), bytes, half_close: c["half_close"] == true }
        })
        .collect();
    (http, raw)
}

/// Which JSON types a slot accepts.
#[derive(Clone, Copy)]
enum Kind {
    Null,
    Bool,
    Number,
    Str,
    Array,
    Object,
}

fn kind_of(v: &Value) -> Kind {
    match v {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(_) => Kind::Number,
        Value::String(_) => Kind::Str,
        Value::Array(_) => Kind::Array,
        Value::Object(_) => Kind::Object,
    }
}

/// A value of every JSON type, two of most.
fn generic_values() -> Vec<Value> {
    vec![
        json!(null),
        json!(true),
        json!(0),
        json!(-1.5),
        json!(""),
        json!("x"),
        json!([]),
        json!([null]),
        json!({}),
        json!({"k": "v"}),
    ]
}

/// The wrong values for a slot: every generic value of a type it does not accept, and `extra`
/// (wrong values of a type it accepts).
fn wrong_values(accepted: &[Kind], extra: Vec<Value>) -> Vec<Value> {
    let accepts = |v: &Value| accepted.iter().any(|k| std::mem::discriminant(k) == std::mem::discriminant(&kind_of(v)));
    generic_values().into_iter().filter(|v| !accepts(v)).chain(extra).collect()
}

/// `base` with the value at `pointer` replaced.
fn with(base: &Value, pointer: &str, v: &Value) -> Value {
    let mut out = base.clone();
    *out.pointer_mut(pointer).unwrap_or_else(|| panic!("no {pointer} in the base")) = v.clone();
    out
}

fn valid_entity() -> Value {
    json!({
        "id": "urn:ngsi-ld:T:new",
        "type": "T",
        "scope": "/a/b",
        "name": {"type": "Property", "value": "x", "observedAt": "2026-04-01T09:00:00Z", "unitCode": "C62",
                 "datasetId": "urn:ngsi-ld:Dataset:a"},
        "managedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Organization:1"},
        "members": {"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Person:1"]},
        "label": {"type": "LanguageProperty", "languageMap": {"ja": "市民会館", "en": "Civic Hall"}},
        "category": {"type": "VocabProperty", "vocab": "shelter"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [141.6, 42.6]}},
        "area": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}
    })
}

fn valid_subscription() -> Value {
    json!({
        "id": "urn:ngsi-ld:Subscription:new",
        "type": "Subscription",
        "entities": [{"type": "T", "id": "urn:ngsi-ld:T:1"}],
        "watchedAttributes": ["a"],
        "q": "a>1",
        "isActive": true,
        "expiresAt": "2099-01-01T00:00:00Z",
        "throttling": 5,
        "geoQ": {"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": [141.6, 42.6]},
        "notificationTrigger": ["attributeUpdated"],
        "notification": {"attributes": ["a"], "format": "keyValues",
                         "endpoint": {"uri": "http://127.0.0.1:9/n", "accept": "application/json"}}
    })
}

fn valid_query() -> Value {
    json!({
        "type": "Query",
        "entities": [{"type": "T", "idPattern": ".*"}],
        "attrs": ["a"],
        "q": "a>1",
        "geoQ": {"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": [0, 0]}
    })
}

/// Wrong types at every level of an entity, for the operations that take one.
fn entity_cases() -> Vec<Case> {
    use Kind::*;
    let all_but_null = [Bool, Number, Str, Array, Object];
    // (pointer, accepted types, wrong values of an accepted type, whole entities only)
    let slots: Vec<(&str, Vec<Kind>, Vec<Value>, bool)> = vec![
        ("/id", vec![Str], vec![json!("not a uri"), json!("urn:")], true),
        ("/type", vec![Str, Array], vec![json!("a b"), json!([]), json!([1]), json!(["T", null])], true),
        ("/scope", vec![Str, Array], vec![json!("a/b"), json!("/a b"), json!([1])], true),
        ("/name", all_but_null.to_vec(), vec![], false),
        ("/name/type", vec![Str], vec![json!("Magic"), json!("property")], false),
        ("/name/value", all_but_null.to_vec(), vec![], false),
        ("/name/observedAt", vec![Str], vec![json!("yesterday"), json!("2026-02-30T00:00:00Z")], false),
        ("/name/unitCode", vec![Str], vec![], false),
        ("/name/datasetId", vec![Str], vec![json!("not a uri")], false),
        ("/managedBy/type", vec![Str], vec![json!("Magic")], false),
        (
            "/managedBy/object",
            vec![Str, Array],
            vec![json!("no uri"), json!([]), json!([1]), json!(["urn:x:1", 2])],
            false,
        ),
        ("/members/objectList", vec![Array], vec![json!([1]), json!(["no uri"]), json!([{}])], false),
        ("/members/objectList/0", vec![Str, Object], vec![json!("no uri"), json!({"object": 1})], false),
        ("/label/languageMap", vec![Object], vec![json!({"ja": 1}), json!({"": "x"}), json!({"ja": [1]})], false),
        ("/label/languageMap/ja", vec![Str, Array], vec![json!([1])], false),
        ("/category/vocab", vec![Str, Array], vec![json!([]), json!([1])], false),
        (
            "/location/value",
            vec![Object],
            vec![json!({"type": "Point"}), json!({"type": "Circle", "coordinates": [0, 0]})],
            false,
        ),
        ("/location/value/type", vec![Str], vec![json!("Circle"), json!("point")], false),
        (
            "/location/value/coordinates",
            vec![Array],
            vec![json!([1]), json!([200, 0]), json!([0, 100]), json!([[1, 2]]), json!([1, 2, 3, 4])],
            false,
        ),
        ("/location/value/coordinates/0", vec![Number], vec![json!(181), json!(-181), json!(1e300)], false),
        ("/location/value/coordinates/1", vec![Number], vec![json!(91), json!(-90.5)], false),
        (
            "/area/value/coordinates",
            vec![Array],
            vec![
                json!([[]]),
                json!([[[0, 0], [1, 0], [1, 1]]]),
                json!([[[0, 0], [1, 0], [1, 1], [0, 1]]]),
                json!([[[0, 0], [1, 1], [2, 2], [0, 0]]]),
            ],
            false,
        ),
        ("/area/value/coordinates/0/0", vec![Array], vec![json!([]), json!([1]), json!(["a", 0])], false),
    ];
    let base = valid_entity();
    let mut out = Vec::new();
    let mut rotation = 0usize;
    for (pointer, accepted, extra, whole) in slots {
        for v in wrong_values(&accepted, extra) {
            let body = with(&base, pointer, &v);
            let name = |op: &str| format!("{op} with {pointer} = {}", short(&v));
            out.push(Case::new(
                "wrong-types",
                name("create"),
                "POST",
                "/ngsi-ld/v1/entities".into(),
                Some(bytes(&body)),
            ));
            if pointer == "/id" {
                continue;
            }
            let mut fragment = body.clone();
            fragment.as_object_mut().map(|m| m.remove("id"));
            if whole {
                out.push(Case::new(
                    "wrong-types",
                    name("replace"),
                    "PUT",
                    format!("/ngsi-ld/v1/entities/{SEED}"),
                    Some(bytes(&fragment)),
                ));
                continue;
            }
            for k in ["type", "scope"] {
                fragment.as_object_mut().map(|m| m.remove(k));
            }
            // Each wrong value also goes through one of the partial operations, in turn.
            let (op, method, path) = [
                ("replace", "PUT", format!("/ngsi-ld/v1/entities/{SEED}")),
                ("append", "POST", format!("/ngsi-ld/v1/entities/{SEED}/attrs")),
                ("update", "PATCH", format!("/ngsi-ld/v1/entities/{SEED}/attrs")),
                ("merge", "PATCH", format!("/ngsi-ld/v1/entities/{SEED}")),
            ][rotation % 4]
                .clone();
            rotation += 1;
            if op == "replace" {
                fragment["type"] = json!("T");
            }
            out.push(Case::new("wrong-types", name(op), method, path, Some(bytes(&fragment))));
        }
    }
    out
}

/// Wrong types at every level of a subscription.
fn subscription_cases() -> Vec<Case> {
    use Kind::*;
    let slots: Vec<(&str, Vec<Kind>, Vec<Value>)> = vec![
        ("/id", vec![Str], vec![json!("not a uri")]),
        ("/type", vec![Str], vec![json!("Subscriptions")]),
        ("/entities", vec![Array], vec![json!([1]), json!(["T"])]),
        ("/entities/0", vec![Object], vec![json!({"id": "urn:x:1"})]),
        ("/entities/0/type", vec![Str], vec![json!("A B"), json!("(A")]),
        ("/entities/0/id", vec![Str], vec![json!("no uri")]),
        ("/watchedAttributes", vec![Array], vec![json!([1]), json!([""])]),
        ("/watchedAttributes/0", vec![Str], vec![json!("a b")]),
        ("/q", vec![Str], vec![json!("a>>1")]),
        ("/isActive", vec![Bool], vec![]),
        ("/expiresAt", vec![Str], vec![json!("tomorrow"), json!("2000-01-01T00:00:00Z")]),
        ("/throttling", vec![Number], vec![json!(0), json!(-1), json!(1e20)]),
        ("/geoQ", vec![Object], vec![]),
        ("/geoQ/georel", vec![Str], vec![json!("nearby")]),
        ("/geoQ/coordinates", vec![Array], vec![json!([200, 0]), json!([[[0, 0], [1, 0], [1, 1]]])]),
        ("/notificationTrigger", vec![Array], vec![json!(["sometimes"]), json!([1])]),
        ("/notification", vec![Object], vec![]),
        ("/notification/attributes", vec![Array], vec![json!([1]), json!(["a b"])]),
        ("/notification/format", vec![Str], vec![json!("xml")]),
        ("/notification/endpoint", vec![Object], vec![]),
        ("/notification/endpoint/uri", vec![Str], vec![json!("notify")]),
        ("/notification/endpoint/accept", vec![Str], vec![json!("text/plain")]),
    ];
    let base = valid_subscription();
    let mut out = Vec::new();
    for (pointer, accepted, extra) in slots {
        for v in wrong_values(&accepted, extra) {
            let body = with(&base, pointer, &v);
            let name = format!("subscription with {pointer} = {}", short(&v));
            out.push(Case::new("wrong-types", name, "POST", "/ngsi-ld/v1/subscriptions".into(), Some(bytes(&body))));
        }
    }
    out
}

/// Wrong types at every level of a Query.
fn query_cases() -> Vec<Case> {
    use Kind::*;
    let slots: Vec<(&str, Vec<Kind>, Vec<Value>)> = vec![
        ("/type", vec![Str], vec![json!("Quarry")]),
        ("/entities", vec![Array], vec![json!([1]), json!(["T"])]),
        ("/entities/0", vec![Object], vec![]),
        ("/entities/0/type", vec![Str], vec![json!("(A"), json!("A B")]),
        ("/entities/0/idPattern", vec![Str], vec![json!("(")]),
        ("/attrs", vec![Array], vec![json!([1]), json!(["a b"])]),
        ("/attrs/0", vec![Str], vec![json!("a b")]),
        ("/q", vec![Str], vec![json!("a>>1")]),
        ("/geoQ", vec![Object], vec![]),
        ("/geoQ/georel", vec![Str], vec![json!("nearby")]),
        ("/geoQ/geometry", vec![Str], vec![json!("Circle")]),
        ("/geoQ/coordinates", vec![Array], vec![json!([200, 0])]),
    ];
    let base = valid_query();
    let mut out = Vec::new();
    for (pointer, accepted, extra) in slots {
        for v in wrong_values(&accepted, extra) {
            // A Query with an empty object for an EntitySelector still has attrs to select by.
            if pointer == "/entities/0" && v == json!({}) {
                continue;
            }
            let body = with(&base, pointer, &v);
            let name = format!("Query with {pointer} = {}", short(&v));
            out.push(Case::new(
                "wrong-types",
                name,
                "POST",
                "/ngsi-ld/v1/entityOperations/query".into(),
                Some(bytes(&body)),
            ));
        }
    }
    out
}

/// Bidi overrides and isolates and control characters in every place an id or a name arrives.
fn invisible_cases() -> Vec<Case> {
    const CHARS: [char; 10] = [
        '\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200F}', '\u{0000}', '\u{0007}', '\u{001B}', '\u{007F}',
        '\u{0085}',
    ];
    let enc = |s: &str| {
        s.bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b == b':' { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect::<String>()
    };
    let mut out = Vec::new();
    for c in CHARS {
        let id = format!("urn:ngsi-ld:T:a{c}b");
        let name = format!("a{c}b");
        let e = |body: Value| Some(bytes(&body));
        let sub = |pointer: &str, v: Value| Some(bytes(&with(&valid_subscription(), pointer, &v)));
        let places: Vec<(&str, &str, String, Option<Vec<u8>>)> = vec![
            ("entity id", "POST", "/ngsi-ld/v1/entities".into(), e(json!({"id": id, "type": "T"}))),
            ("entity type", "POST", "/ngsi-ld/v1/entities".into(), e(json!({"id": "urn:ngsi-ld:T:new", "type": name}))),
            (
                "attribute name",
                "POST",
                "/ngsi-ld/v1/entities".into(),
                e(json!({"id": "urn:ngsi-ld:T:new", "type": "T", name.as_str(): 1})),
            ),
            (
                "sub-attribute name",
                "POST",
                "/ngsi-ld/v1/entities".into(),
                e(
                    json!({"id": "urn:ngsi-ld:T:new", "type": "T", "a": {"type": "Property", "value": 1, name.as_str(): 1}}),
                ),
            ),
            (
                "relationship object",
                "POST",
                "/ngsi-ld/v1/entities".into(),
                e(json!({"id": "urn:ngsi-ld:T:new", "type": "T", "r": {"type": "Relationship", "object": id}})),
            ),
            (
                "datasetId",
                "POST",
                "/ngsi-ld/v1/entities".into(),
                e(
                    json!({"id": "urn:ngsi-ld:T:new", "type": "T", "a": {"type": "Property", "value": 1, "datasetId": id}}),
                ),
            ),
            ("batch entity id", "POST", "/ngsi-ld/v1/entityOperations/delete".into(), e(json!([id]))),
            ("path id", "GET", format!("/ngsi-ld/v1/entities/{}", enc(&id)), None),
            (
                "attribute path",
                "PATCH",
                format!("/ngsi-ld/v1/entities/{SEED}/attrs/{}", enc(&name)),
                e(json!({"value": 1})),
            ),
            ("query id", "GET", format!("/ngsi-ld/v1/entities?id={}", enc(&id)), None),
            ("query type", "GET", format!("/ngsi-ld/v1/entities?type={}", enc(&name)), None),
            ("query attrs", "GET", format!("/ngsi-ld/v1/entities?attrs={}", enc(&name)), None),
            ("subscription id", "POST", "/ngsi-ld/v1/subscriptions".into(), sub("/id", json!(id))),
            ("subscription type", "POST", "/ngsi-ld/v1/subscriptions".into(), sub("/entities/0/type", json!(name))),
            ("watchedAttributes", "POST", "/ngsi-ld/v1/subscriptions".into(), sub("/watchedAttributes/0", json!(name))),
            (
                "notification.attributes",
                "POST",
                "/ngsi-ld/v1/subscriptions".into(),
                sub("/notification/attributes/0", json!(name)),
            ),
        ];
        for (place, method, path, body) in places {
            out.push(Case::new("control-chars", format!("{c:?} in the {place}"), method, path, body));
        }
    }
    out
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON")
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 { format!("{}...", s.chars().take(40).collect::<String>()) } else { s }
}

/// What the broker holds: the default tenant's entities and subscriptions (system attributes
/// included), its @contexts, and whether the tenant the cases name exists.
async fn snapshot(s: &Server) -> String {
    let mut out = String::new();
    for (path, tenant) in [
        ("/entities?local=true&options=sysAttrs&limit=1000", None),
        ("/subscriptions?options=sysAttrs&limit=1000", None),
        ("/jsonldContexts", None),
        ("/entities?local=true&limit=1000", Some("corpus")),
        ("/entities?local=true&limit=1000", Some("baseline")),
    ] {
        let headers: Vec<(&str, &str)> = tenant.map(|t| ("NGSILD-Tenant", t)).into_iter().collect();
        let r = s.call("GET", path, None, &headers).await;
        out.push_str(&format!("{path} {tenant:?} {} {}\n", r.status, r.text));
    }
    out
}

/// Sends one case and says what is wrong with the answer, if anything.
async fn run(s: &Server, c: &Case) -> Result<(), String> {
    let method = reqwest::Method::from_bytes(c.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut rb = s.client.request(method, format!("{}{}", s.base, c.path));
    let mut content_type = c.body.is_some();
    for (k, v) in &c.headers {
        if k.eq_ignore_ascii_case("content-type") {
            content_type = false;
        }
        if let Some(v) = v {
            rb = rb.header(k.as_str(), v.as_str());
        }
    }
    if content_type {
        rb = rb.header("Content-Type", "application/json");
    }
    if let Some(b) = &c.body {
        rb = rb.body(b.clone());
    }
    let answer = async {
        let r = rb.send().await.map_err(|e| format!("request failed: {e}"))?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| format!("reading the answer failed: {e}"))?;
        Ok::<_, String>((status, text))
    };
    let (status, text) =
        tokio::time::timeout(CASE_TIMEOUT, answer).await.map_err(|_| "no answer in time".to_string())??;
    if c.batch && status == 207 {
        return check_batch_refusal(&text);
    }
    check_answer(status, &text, c.status)
}

/// A batch answer that refused every entity: no success, each error a 4xx ProblemDetails.
fn check_batch_refusal(text: &str) -> Result<(), String> {
    let body: Value = serde_json::from_str(text).map_err(|_| format!("207 without a JSON body: {text}"))?;
    let errors = body["errors"].as_array().filter(|e| !e.is_empty());
    let refused = body["success"] == json!([])
        && errors.is_some_and(|errors| {
            errors.iter().all(|e| {
                let status = e["error"]["status"].as_u64().unwrap_or(0) as u16;
                check_answer(status, &e["error"].to_string(), None).is_ok()
            })
        });
    if refused {
        Ok(())
    } else {
        Err(format!("207 that is not a refusal of every entity: {}", text.chars().take(300).collect::<String>()))
    }
}

/// A 4xx (exactly `expected`, if given) with a ProblemDetails body of the same status.
fn check_answer(status: u16, text: &str, expected: Option<u16>) -> Result<(), String> {
    let shown = || text.chars().take(300).collect::<String>();
    if !(400..500).contains(&status) || expected.is_some_and(|e| e != status) {
        return Err(format!(
            "answered {status} (expected {}): {}",
            expected.map_or("4xx".into(), |e| e.to_string()),
            shown()
        ));
    }
    let body: Value = serde_json::from_str(text).map_err(|_| format!("{status} without a JSON body: {}", shown()))?;
    let ok = body["type"].as_str().is_some_and(|t| t.starts_with("https://uri.etsi.org/ngsi-ld/errors/"))
        && body["title"].as_str().is_some_and(|t| !t.is_empty())
        && body["detail"].as_str().is_some_and(|t| !t.is_empty())
        && body["status"] == status;
    if ok { Ok(()) } else { Err(format!("{status} without a matching ProblemDetails: {}", shown())) }
}

/// Writes raw bytes and reads one answer: a 4xx (with a ProblemDetails body if it has a JSON
/// one) or a closed connection is fine; a 5xx or no end in time is not.
async fn run_raw(addr: &str, bytes: &[u8], half_close: bool) -> Result<(), String> {
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        // The broker may close before everything is written: that is an answer too.
        if conn.write_all(bytes).await.is_ok() && half_close {
            let _ = conn.shutdown().await;
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            let n = conn.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return Ok::<_, String>(got);
            }
            got.extend_from_slice(&buf[..n]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    got.truncate(end + 4 + length);
                    return Ok(got);
                }
            }
        }
    };
    let got = tokio::time::timeout(CASE_TIMEOUT, exchange)
        .await
        .map_err(|_| "no answer and not closed in time".to_string())??;
    if got.is_empty() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&got);
    let status: u16 = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {}", text.chars().take(200).collect::<String>()))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if head.to_ascii_lowercase().contains("content-type: application/json") && !body.is_empty() {
        return check_answer(status, body, None);
    }
    if (400..500).contains(&status) { Ok(()) } else { Err(format!("answered {status}: {head}")) }
}

/// Puts the state every case starts from, in the default tenant and (for the valid bases) in
/// `baseline`.
async fn seed(s: &Server) {
    for tenant in ["", "baseline"] {
        let h: Vec<(&str, &str)> = if tenant.is_empty() { vec![] } else { vec![("NGSILD-Tenant", tenant)] };
        let mut e = shelter(SEED);
        for (k, v) in valid_entity().as_object().unwrap() {
            if !matches!(k.as_str(), "id" | "type") {
                e[k] = v.clone();
            }
        }
        assert_eq!(s.call("POST", "/entities", Some(&e), &h).await.status, 201);
        let t = json!({"id": "urn:ngsi-ld:T:seed2", "type": "T", "a": 1});
        assert_eq!(s.call("POST", "/entities", Some(&t), &h).await.status, 201);
    }
    let sub = json!({"id": "urn:ngsi-ld:Subscription:seed", "type": "Subscription", "entities": [{"type": "NeverWritten"}],
                     "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}});
    assert_eq!(s.post("/subscriptions", &sub).await.status, 201);
    assert_eq!(s.post("/jsonldContexts", &json!({"@context": {"corpus": "urn:corpus:"}})).await.status, 201);
}

/// The valid bases of the generated cases are accepted (in the `baseline` tenant), so that each
/// generated case is refused for its one wrong value.
async fn bases_are_valid(s: &Server) {
    let h = [("NGSILD-Tenant", "baseline")];
    let r = s.call("POST", "/entities", Some(&valid_entity()), &h).await;
    assert_eq!(r.status, 201, "valid entity: {}", r.text);
    let mut fragment = valid_entity();
    for k in ["id", "type", "scope"] {
        fragment.as_object_mut().unwrap().remove(k);
    }
    let mut whole = fragment.clone();
    whole["type"] = json!("T");
    for (method, path, body) in [
        ("PUT", format!("/entities/{SEED}"), &whole),
        ("POST", format!("/entities/{SEED}/attrs"), &fragment),
        ("PATCH", format!("/entities/{SEED}/attrs"), &fragment),
        ("PATCH", format!("/entities/{SEED}"), &fragment),
    ] {
        let r = s.call(method, &path, Some(body), &h).await;
        assert_eq!(r.status, 204, "valid {method} {path}: {}", r.text);
    }
    let r = s.call("POST", "/subscriptions", Some(&valid_subscription()), &h).await;
    assert_eq!(r.status, 201, "valid subscription: {}", r.text);
    let r = s.call("POST", "/entityOperations/query", Some(&valid_query()), &h).await;
    assert_eq!(r.status, 200, "valid Query: {}", r.text);
}

#[tokio::test]
async fn malformed_input_is_refused_and_changes_nothing() {
    let started = Instant::now();
    let mut s = Server::start_in(tempfile::tempdir().unwrap(), &["--body-limit", "1048576"]).await;
    // A fresh connection per request: the broker closes a connection whose request it refused
    // before reading the body, and a pooled one could be reused just as it closes.
    s.client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let host = s.base.trim_start_matches("http://").to_string();
    seed(&s).await;
    bases_are_valid(&s).await;
    let before = snapshot(&s).await;

    let (listed, raw) = listed(&host);
    let generated: Vec<Case> =
        entity_cases().into_iter().chain(subscription_cases()).chain(query_cases()).chain(invisible_cases()).collect();
    let mut failures = Vec::new();
    let mut classes = std::collections::BTreeMap::<String, usize>::new();
    let mut state = before.clone();
    let raw_cases = raw.iter().map(|r| (None, Some(r)));
    for (n, (case, raw_case)) in listed.iter().chain(&generated).map(|c| (Some(c), None)).chain(raw_cases).enumerate() {
        let (class, what, outcome) = match (case, raw_case) {
            (Some(c), _) => {
                let what =
                    format!("[{}] {} {} ({})", c.class, c.method, c.path.chars().take(120).collect::<String>(), c.name);
                (c.class.clone(), what, run(&s, c).await)
            }
            (_, Some(r)) => {
                ("raw-http".to_string(), format!("[raw-http] {}", r.name), run_raw(&host, &r.bytes, r.half_close).await)
            }
            _ => unreachable!(),
        };
        *classes.entry(class).or_default() += 1;
        if let Err(e) = outcome {
            failures.push(format!("{what}: {e}"));
        }
        let body = json!({"id": format!("urn:ngsi-ld:Canary:{n}"), "type": "Canary"});
        let r = s.call("POST", "/entities", Some(&body), &[("NGSILD-Tenant", "canary")]).await;
        if r.status != 201 {
            failures.push(format!("{what}: the canary write then failed with {}: {}", r.status, r.text));
        }
        let now = snapshot(&s).await;
        if now != state {
            // Judge the cases that follow against the changed state.
            failures.push(format!("{what}: changed the state"));
            state = now;
        }
    }
    let total = listed.len() + generated.len() + raw.len();
    assert!(failures.is_empty(), "{} failures in {total} cases:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(snapshot(&s).await, before);
    assert!(total >= 300, "the corpus has {total} cases");
    eprintln!("corpus: {total} cases ({classes:?}) in {:.1} s", started.elapsed().as_secs_f64());
}

//! The NGSI-LD Subscription (clause 5.2.12): validation, canonical form and rendering.
//!
//! The canonical form is the subscription's JSON with entity types and attribute names expanded
//! to IRIs and system members (`createdAt`, `modifiedAt`) in microseconds; `q` and `scopeQ` are
//! kept as written, with the @context they were written in (`jsonldContext`), so that they can be
//! compiled again for matching.

use haskap_model::NgsiError;
use haskap_model::jsonld::ActiveContext;
use haskap_model::parse::Limits;
use haskap_model::validate::{check_datetime, format_micros, is_uri, parse_datetime};
use serde_json::{Map, Value, json};

/// Where the canonical form keeps the @context the subscription was written in (never shown).
pub const CONTEXT_KEY: &str = "_context";

/// The notification triggers NGSI-LD defines.
const TRIGGERS: &[&str] =
    &["entityCreated", "entityUpdated", "entityDeleted", "attributeCreated", "attributeUpdated", "attributeDeleted"];

/// Members a client may set; anything else is rejected.
const MEMBERS: &[&str] = &[
    "id",
    "type",
    "subscriptionName",
    "description",
    "entities",
    "watchedAttributes",
    "notificationTrigger",
    "timeInterval",
    "q",
    "geoQ",
    "csf",
    "isActive",
    "notification",
    "expiresAt",
    "throttling",
    "temporalQ",
    "scopeQ",
    "lang",
    "@context",
    "jsonldContext",
    "status",
    "createdAt",
    "modifiedAt",
    "showChanges",
    "sysAttrs",
    "localOnly",
    "timeIntervalStart",
    "datasetId",
];

/// The longest `timeInterval` or `throttling` accepted, in seconds: 10 years. Longer ones are
/// refused rather than stored, so that no stored value can overflow a timer.
pub const MAX_SECONDS: f64 = 315_360_000.0;

/// The longest endpoint `timeout` or `cooldown` accepted, in milliseconds: 10 years.
pub const MAX_MILLIS: f64 = MAX_SECONDS * 1000.0;

/// The deepest `notification.joinLevel` accepted (as for queries).
pub const MAX_JOIN_LEVEL: u64 = 10;

/// Headers a `receiverInfo` may not set: hop-by-hop and framing headers, which the broker's HTTP
/// client owns (compared case-insensitively).
pub const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "expect",
];

fn bad(detail: impl Into<String>) -> NgsiError {
    NgsiError::bad_data(detail)
}

/// Checks a duration in seconds (`timeInterval`, `throttling`): positive, finite, at most
/// [`MAX_SECONDS`].
fn check_seconds(v: &Value, what: &str) -> Result<(), NgsiError> {
    match v.as_f64() {
        Some(n) if n.is_finite() && n > 0.0 && n <= MAX_SECONDS => Ok(()),
        _ => {
            Err(bad(format!("{what} must be a positive number of seconds, at most {MAX_SECONDS} (10 years), got {v}")))
        }
    }
}

/// Checks that `v` is a string, if present.
fn check_string(v: &Value, what: &str) -> Result<(), NgsiError> {
    if v.is_string() { Ok(()) } else { Err(bad(format!("{what} must be a string"))) }
}

/// Whether `name` is an HTTP header name (an RFC 9110 token).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` can be sent as an HTTP header value: visible ASCII, spaces and tabs, without
/// leading or trailing whitespace.
pub fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) && value.trim() == value
}

/// Checks a `receiverInfo` or `notifierInfo`: an array of `{"key": string, "value": string}`.
fn key_values<'a>(v: &'a Value, what: &str) -> Result<Vec<(&'a str, &'a str)>, NgsiError> {
    let shape = || bad(format!("{what} must be an array of {{\"key\": string, \"value\": string}} objects"));
    let list = v.as_array().ok_or_else(shape)?;
    list.iter()
        .map(|kv| {
            let kv = kv.as_object().filter(|o| o.keys().all(|k| k == "key" || k == "value")).ok_or_else(shape)?;
            match (kv.get("key").and_then(Value::as_str), kv.get("value").and_then(Value::as_str)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(shape()),
            }
        })
        .collect()
}

/// Checks `notification.endpoint.receiverInfo`: headers the receiver gets with every
/// notification, so valid header names and values, and none the HTTP client owns
/// ([`FORBIDDEN_HEADERS`]).
fn check_receiver_info(v: &Value) -> Result<(), NgsiError> {
    for (key, value) in key_values(v, "notification.endpoint.receiverInfo")? {
        if !is_header_name(key) {
            return Err(bad(format!("notification.endpoint.receiverInfo: {key:?} is not an HTTP header name")));
        }
        if FORBIDDEN_HEADERS.iter().any(|f| f.eq_ignore_ascii_case(key)) {
            return Err(bad(format!("notification.endpoint.receiverInfo may not set the {key} header")));
        }
        if !is_header_value(value) {
            return Err(bad(format!(
                "notification.endpoint.receiverInfo: the value of {key} is not an HTTP header value (visible ASCII)"
            )));
        }
    }
    Ok(())
}

/// Checks `notification.endpoint.notifierInfo`: its shape, and `MQTT-QoS` 0, 1 or 2.
fn check_notifier_info(v: &Value) -> Result<(), NgsiError> {
    for (key, value) in key_values(v, "notification.endpoint.notifierInfo")? {
        if key == "MQTT-QoS" && !matches!(value, "0" | "1" | "2") {
            return Err(bad(format!(
                "notification.endpoint.notifierInfo: MQTT-QoS must be \"0\", \"1\" or \"2\", got {value:?}"
            )));
        }
    }
    Ok(())
}

/// Checks an endpoint's `timeout` or `cooldown`: a non-negative number of milliseconds, at most
/// [`MAX_MILLIS`].
fn check_millis(v: &Value, what: &str) -> Result<(), NgsiError> {
    match v.as_f64() {
        Some(n) if (0.0..=MAX_MILLIS).contains(&n) => Ok(()),
        _ => Err(bad(format!("{what} must be a non-negative number of milliseconds, at most {MAX_MILLIS}, got {v}"))),
    }
}

/// Checks a `temporalQ`: an object whose `timeAt` and `endTimeAt` are date-times and whose
/// `timerel` and `timeproperty` are strings.
fn check_temporal_q(v: &Value) -> Result<(), NgsiError> {
    let t = v.as_object().ok_or_else(|| bad("temporalQ must be an object"))?;
    for (k, v) in t {
        match k.as_str() {
            "timeAt" | "endTimeAt" => {
                check_datetime(v, &format!("temporalQ.{k}"))?;
            }
            "timerel" => {
                if !v.as_str().is_some_and(|r| matches!(r, "before" | "after" | "between")) {
                    return Err(bad("temporalQ.timerel must be before, after or between"));
                }
            }
            _ => check_string(v, &format!("temporalQ.{k}"))?,
        }
    }
    Ok(())
}

/// Validates a subscription a client sends (create: `patch` false; update: only the members
/// present, `patch` true) and returns its members in canonical form.
pub fn canonical(body: &Value, ctx: &ActiveContext, patch: bool) -> Result<Map<String, Value>, NgsiError> {
    canonical_with(body, ctx, patch, &Limits::default())
}

/// [`canonical`] with the broker's limits on ids, names and URLs: the subscription id and the
/// entities' ids within `max_id_bytes`; entity types, `watchedAttributes` and
/// `notification.attributes` names as entity creation accepts them (the NGSI-LD name grammar,
/// `max_name_bytes` as sent and expanded); `jsonldContext` and the endpoint's `uri` absolute URIs
/// within `max_url_bytes`.
pub fn canonical_with(
    body: &Value,
    ctx: &ActiveContext,
    patch: bool,
    limits: &Limits,
) -> Result<Map<String, Value>, NgsiError> {
    let obj = body.as_object().ok_or_else(|| NgsiError::invalid("a subscription must be a JSON object"))?;
    let mut out = Map::new();
    for (k, v) in obj {
        if !MEMBERS.contains(&k.as_str()) {
            return Err(bad(format!("{k} is not a member of a Subscription")));
        }
        match k.as_str() {
            "@context" | "status" | "createdAt" | "modifiedAt" => {}
            "id" => {
                let id = v.as_str().ok_or_else(|| bad("the subscription id must be a URI"))?;
                limits.check_id(id, "the subscription id")?;
                out.insert(k.clone(), json!(id));
            }
            "type" => {
                if v != "Subscription" {
                    return Err(bad("type must be \"Subscription\""));
                }
                out.insert(k.clone(), v.clone());
            }
            "entities" => {
                out.insert(k.clone(), entities(v, ctx, limits)?);
            }
            "watchedAttributes" => {
                out.insert(k.clone(), names(v, ctx, "watchedAttributes", limits)?);
            }
            "notificationTrigger" => {
                let list = v
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| bad("notificationTrigger must be a non-empty array"))?;
                if let Some(t) = list.iter().find(|t| !t.as_str().is_some_and(|t| TRIGGERS.contains(&t))) {
                    return Err(bad(format!("{t} is not a notification trigger")));
                }
                out.insert(k.clone(), v.clone());
            }
            "timeInterval" | "throttling" => {
                check_seconds(v, k)?;
                out.insert(k.clone(), v.clone());
            }
            "subscriptionName" | "description" | "lang" | "csf" => {
                check_string(v, k)?;
                out.insert(k.clone(), v.clone());
            }
            "temporalQ" => {
                check_temporal_q(v)?;
                out.insert(k.clone(), v.clone());
            }
            "datasetId" => {
                let ok = match v {
                    Value::String(d) => !d.is_empty(),
                    Value::Array(a) => a.iter().all(|d| d.as_str().is_some_and(|d| !d.is_empty())),
                    _ => false,
                };
                if !ok {
                    return Err(bad("datasetId must be a string or an array of strings"));
                }
                out.insert(k.clone(), v.clone());
            }
            "q" => {
                let q = v.as_str().ok_or_else(|| bad("q must be a string"))?;
                haskap_query::q::parse(q).map_err(|e| bad(format!("invalid q: {e}")))?;
                out.insert(k.clone(), v.clone());
            }
            "scopeQ" => {
                let s = v.as_str().ok_or_else(|| bad("scopeQ must be a string"))?;
                haskap_query::types::TypeExpr::parse(s).map_err(|e| bad(format!("invalid scopeQ: {e}")))?;
                out.insert(k.clone(), v.clone());
            }
            "geoQ" => {
                let g = v.as_object().ok_or_else(|| bad("geoQ must be an object"))?;
                let text = |n: &str| g.get(n).and_then(Value::as_str).unwrap_or("");
                let coords = match g.get("coordinates") {
                    Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
                    Some(c) => c.clone(),
                    None => Value::Null,
                };
                haskap_query::geo::GeoQuery::new(text("georel"), text("geometry"), &coords, "location".into())
                    .map_err(|e| bad(format!("invalid geoQ: {e}")))?;
                // Positions are longitudes and latitudes in range, as in entities.
                haskap_model::validate::check_geometry(&json!({"type": text("geometry"), "coordinates": coords}))
                    .map_err(|e| bad(format!("invalid geoQ: {}", e.detail)))?;
                out.insert(k.clone(), v.clone());
            }
            "isActive" | "showChanges" | "sysAttrs" | "localOnly" => {
                if !v.is_boolean() {
                    return Err(bad(format!("{k} must be true or false")));
                }
                out.insert(k.clone(), v.clone());
            }
            "expiresAt" | "timeIntervalStart" => {
                check_datetime(v, k)?;
                out.insert(k.clone(), v.clone());
            }
            "jsonldContext" => {
                let url = v.as_str().ok_or_else(|| bad("jsonldContext must be the URI of an @context"))?;
                limits.check_url(url, "jsonldContext")?;
                out.insert(k.clone(), v.clone());
            }
            "notification" => {
                out.insert(k.clone(), notification(v, ctx, patch, limits)?);
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if !patch {
        if out.get("type").is_none() {
            return Err(bad("type must be \"Subscription\""));
        }
        if !out.contains_key("notification") {
            return Err(bad("a subscription needs a notification"));
        }
        if !out.contains_key("entities") && !out.contains_key("watchedAttributes") {
            return Err(bad("a subscription needs entities or watchedAttributes"));
        }
    }
    if out.contains_key("timeInterval") && out.contains_key("watchedAttributes") {
        return Err(bad("timeInterval and watchedAttributes cannot be used together"));
    }
    if out.contains_key("timeInterval") && out.contains_key("throttling") {
        return Err(bad("timeInterval and throttling cannot be used together"));
    }
    Ok(out)
}

/// A name as entity creation accepts it, expanded; `what` names it in errors.
fn name(n: &str, ctx: &ActiveContext, what: &str, limits: &Limits) -> Result<String, NgsiError> {
    limits.check_name(n, what)?;
    let iri = ctx.expand(n);
    limits.check_expanded(n, &iri, what)?;
    Ok(iri)
}

fn entities(v: &Value, ctx: &ActiveContext, limits: &Limits) -> Result<Value, NgsiError> {
    let list = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| bad("entities must be a non-empty array"))?;
    let mut out = Vec::new();
    for sel in list {
        let sel = sel.as_object().ok_or_else(|| bad("each entities item must be an object"))?;
        let ty = sel.get("type").and_then(Value::as_str).ok_or_else(|| bad("each entities item needs a type"))?;
        let types = haskap_query::types::TypeExpr::parse(ty).map_err(|e| bad(format!("invalid type: {e}")))?;
        for n in types.names() {
            name(n, ctx, "an entities type", limits)?;
        }
        let mut m = Map::new();
        if let Some(id) = sel.get("id") {
            let id = id.as_str().ok_or_else(|| bad("an entities id must be a URI"))?;
            limits.check_id(id, "an entities id")?;
            m.insert("id".into(), json!(id));
        }
        if let Some(p) = sel.get("idPattern") {
            let p = p.as_str().ok_or_else(|| bad("idPattern must be a string"))?;
            haskap_query::filter::check_pattern(p).map_err(|e| bad(format!("invalid idPattern: {e}")))?;
            m.insert("idPattern".into(), json!(p));
        }
        let expanded: Vec<String> = types.names().iter().map(|n| ctx.expand(n)).collect();
        m.insert(
            "type".into(),
            if expanded.len() == 1 && !ty.contains([',', ';', '|', '(']) { json!(expanded[0]) } else { json!(ty) },
        );
        out.push(Value::Object(m));
    }
    Ok(Value::Array(out))
}

fn names(v: &Value, ctx: &ActiveContext, what: &str, limits: &Limits) -> Result<Value, NgsiError> {
    let list = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad(format!("{what} must be a non-empty array of names")))?;
    list.iter()
        .map(|n| {
            let n = n.as_str().ok_or_else(|| bad(format!("{what} must hold names")))?;
            name(n, ctx, &format!("a name of {what}"), limits).map(Value::String)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn notification(v: &Value, ctx: &ActiveContext, patch: bool, limits: &Limits) -> Result<Value, NgsiError> {
    let n = v.as_object().ok_or_else(|| bad("notification must be an object"))?;
    let mut out = Map::new();
    for (k, v) in n {
        match k.as_str() {
            "attributes" => {
                out.insert(k.clone(), names(v, ctx, "notification.attributes", limits)?);
            }
            "pick" | "omit" => {
                if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                    return Err(bad(format!("notification.{k} must be an array of member names")));
                }
                out.insert(k.clone(), v.clone());
            }
            "format" => {
                if !v.as_str().is_some_and(|f| matches!(f, "normalized" | "keyValues" | "simplified" | "concise")) {
                    return Err(bad("notification.format must be normalized, concise or keyValues"));
                }
                out.insert(k.clone(), v.clone());
            }
            "endpoint" => {
                let e = v.as_object().ok_or_else(|| bad("notification.endpoint must be an object"))?;
                let uri =
                    e.get("uri").and_then(Value::as_str).ok_or_else(|| bad("notification.endpoint needs a uri"))?;
                limits.check_url(uri, "notification.endpoint.uri")?;
                if let Some(a) = e.get("accept")
                    && !a.as_str().is_some_and(|a| {
                        matches!(a, "application/json" | "application/ld+json" | "application/geo+json")
                    })
                {
                    return Err(bad(
                        "notification.endpoint.accept must be application/json, application/ld+json or application/geo+json",
                    ));
                }
                if let Some(info) = e.get("receiverInfo") {
                    check_receiver_info(info)?;
                }
                if let Some(info) = e.get("notifierInfo") {
                    check_notifier_info(info)?;
                }
                for m in ["timeout", "cooldown"] {
                    if let Some(n) = e.get(m) {
                        check_millis(n, &format!("notification.endpoint.{m}"))?;
                    }
                }
                out.insert(k.clone(), v.clone());
            }
            "joinLevel" => {
                if !v.as_u64().is_some_and(|l| (1..=MAX_JOIN_LEVEL).contains(&l)) {
                    return Err(bad(format!(
                        "notification.joinLevel must be a whole number from 1 to {MAX_JOIN_LEVEL}, got {v}"
                    )));
                }
                out.insert(k.clone(), v.clone());
            }
            "join" => {
                if !v.as_str().is_some_and(|j| matches!(j, "flat" | "inline" | "@none")) {
                    return Err(bad("notification.join must be flat, inline or @none"));
                }
                out.insert(k.clone(), v.clone());
            }
            "sysAttrs" | "showChanges" => {
                if !v.is_boolean() {
                    return Err(bad(format!("notification.{k} must be true or false")));
                }
                out.insert(k.clone(), v.clone());
            }
            "status" | "timesSent" | "timesFailed" | "lastNotification" | "lastSuccess" | "lastFailure" => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if !patch && !out.contains_key("endpoint") {
        return Err(bad("notification needs an endpoint"));
    }
    let list = |k: &str| -> Vec<String> {
        out.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let (pick, omit) = (list("pick"), list("omit"));
    if let Some(both) = pick.iter().find(|p| omit.contains(p)) {
        return Err(bad(format!("{both} is both picked and omitted")));
    }
    if out.contains_key("pick") && out.contains_key("omit") {
        return Err(bad("notification.pick and notification.omit cannot be used together"));
    }
    if (out.contains_key("pick") || out.contains_key("omit")) && out.contains_key("attributes") {
        return Err(bad("notification.pick and notification.omit cannot be combined with notification.attributes"));
    }
    Ok(Value::Object(out))
}

/// Applies an update (canonical members, each replacing the stored member whole) to a stored
/// subscription and checks that the result is still a valid subscription.
pub fn merge(stored: &Value, update: Map<String, Value>, now: i64) -> Result<Value, NgsiError> {
    let mut s =
        stored.as_object().cloned().ok_or_else(|| NgsiError::internal("stored subscription is not an object"))?;
    for (k, v) in update {
        if k != "id" && k != "type" {
            s.insert(k, v);
        }
    }
    if s.contains_key("timeInterval") && s.contains_key("watchedAttributes") {
        return Err(bad("timeInterval and watchedAttributes cannot be used together"));
    }
    if s.contains_key("timeInterval") && s.contains_key("throttling") {
        return Err(bad("timeInterval and throttling cannot be used together"));
    }
    if !s.get("notification").and_then(|n| n.get("endpoint")).is_some_and(Value::is_object) {
        return Err(bad("notification needs an endpoint"));
    }
    if !s.contains_key("entities") && !s.contains_key("watchedAttributes") {
        return Err(bad("a subscription needs entities or watchedAttributes"));
    }
    s.insert("modifiedAt".into(), json!(now));
    Ok(Value::Object(s))
}

/// Fails when `expiresAt` is given and already past.
pub fn check_not_expired(members: &Map<String, Value>, now: i64) -> Result<(), NgsiError> {
    match members.get("expiresAt").and_then(Value::as_str).and_then(parse_datetime) {
        Some(t) if t.timestamp_micros() <= now => Err(bad("expiresAt is in the past")),
        _ => Ok(()),
    }
}

/// The status a subscription has now: `active`, `paused` or `expired`.
pub fn status(s: &Value, now: i64) -> &'static str {
    let expired = s
        .get("expiresAt")
        .and_then(Value::as_str)
        .and_then(parse_datetime)
        .is_some_and(|t| t.timestamp_micros() <= now);
    if expired {
        "expired"
    } else if s.get("isActive") == Some(&Value::Bool(false)) {
        "paused"
    } else {
        "active"
    }
}

/// Renders a stored subscription with a client's context.
pub fn render(s: &Value, ctx: &ActiveContext, sys_attrs: bool, now: i64) -> Value {
    let mut out = s.as_object().cloned().unwrap_or_default();
    let created = out.remove("createdAt");
    let modified = out.remove("modifiedAt");
    out.remove(CONTEXT_KEY);
    let compact_list = |v: &mut Value| {
        if let Value::Array(items) = v {
            for i in items.iter_mut() {
                if let Value::String(n) = i {
                    *n = ctx.compact(n);
                }
            }
        }
    };
    if let Some(Value::Array(ents)) = out.get_mut("entities") {
        for e in ents {
            if let Some(Value::String(t)) = e.get_mut("type")
                && is_uri(t)
            {
                *t = ctx.compact(t);
            }
        }
    }
    if let Some(w) = out.get_mut("watchedAttributes") {
        compact_list(w);
    }
    if let Some(Value::Object(n)) = out.get_mut("notification")
        && let Some(a) = n.get_mut("attributes")
    {
        compact_list(a);
    }
    out.insert("status".into(), json!(status(s, now)));
    out.entry("notificationTrigger").or_insert(json!(["attributeCreated", "attributeUpdated"]));
    if sys_attrs {
        for (k, v) in [("createdAt", created), ("modifiedAt", modified)] {
            if let Some(t) = v.and_then(|v| v.as_i64()) {
                out.insert(k.into(), json!(format_micros(t)));
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ActiveContext {
        let core: Value = serde_json::from_str(haskap_model::builtin::CORE_CONTEXT).unwrap();
        ActiveContext::core(&core).unwrap()
    }

    /// A valid subscription with `extra` members merged in (top level, and `notification` and
    /// `endpoint` members under those keys).
    fn sub(extra: Value, notification: Value, endpoint: Value) -> Value {
        let mut s = json!({
            "type": "Subscription",
            "entities": [{"type": "Room"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}},
        });
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        for (k, v) in notification.as_object().unwrap() {
            s["notification"][k] = v.clone();
        }
        for (k, v) in endpoint.as_object().unwrap() {
            s["notification"]["endpoint"][k] = v.clone();
        }
        s
    }

    fn check(extra: Value, notification: Value, endpoint: Value) -> Result<Map<String, Value>, NgsiError> {
        canonical(&sub(extra, notification, endpoint), &ctx(), false)
    }

    fn refused(extra: Value, notification: Value, endpoint: Value) -> String {
        let shown = format!("{extra} {notification} {endpoint}");
        let e = check(extra, notification, endpoint).expect_err(&shown);
        assert_eq!(e.kind, haskap_model::ErrorKind::BadRequestData, "{shown}");
        e.detail
    }

    #[test]
    fn durations_are_range_checked() {
        for k in ["timeInterval", "throttling"] {
            for ok in [json!(0.5), json!(1), json!(MAX_SECONDS)] {
                check(json!({k: ok}), json!({}), json!({})).unwrap();
            }
            for bad in
                [json!(1e20), json!(MAX_SECONDS + 1.0), json!(0), json!(-1), json!(u64::MAX), json!("60"), json!(null)]
            {
                let detail = refused(json!({k: bad}), json!({}), json!({}));
                assert!(detail.contains(k) && detail.contains("10 years"), "{detail}");
            }
        }
        for k in ["expiresAt", "timeIntervalStart"] {
            refused(json!({k: "tomorrow"}), json!({}), json!({}));
            refused(json!({k: 1e20}), json!({}), json!({}));
        }
    }

    #[test]
    fn notification_numbers_are_range_checked() {
        check(json!({}), json!({"join": "inline", "joinLevel": 3}), json!({})).unwrap();
        for level in [json!(0), json!(-1), json!(11), json!(1.5), json!(1e20), json!("2")] {
            refused(json!({}), json!({"joinLevel": level}), json!({}));
        }
        refused(json!({}), json!({"join": "deep"}), json!({}));
        check(json!({}), json!({}), json!({"timeout": 5000, "cooldown": 0})).unwrap();
        for n in [json!(-1), json!(1e300), json!("5")] {
            refused(json!({}), json!({}), json!({"timeout": n.clone()}));
            refused(json!({}), json!({}), json!({"cooldown": n}));
        }
        refused(json!({"temporalQ": {"timerel": "before", "timeAt": 5}}), json!({}), json!({}));
        refused(json!({"subscriptionName": 5}), json!({}), json!({}));
        let geo =
            |c: Value| json!({"geoQ": {"georel": "near;maxDistance==100", "geometry": "Point", "coordinates": c}});
        check(geo(json!([141.6, 42.6])), json!({}), json!({})).unwrap();
        refused(geo(json!([1e300, 42.6])), json!({}), json!({}));
        refused(geo(json!([141.6, -91])), json!({}), json!({}));
    }

    #[test]
    fn mqtt_qos_is_0_1_or_2() {
        for qos in ["0", "1", "2"] {
            check(json!({}), json!({}), json!({"notifierInfo": [{"key": "MQTT-QoS", "value": qos}]})).unwrap();
        }
        for qos in [json!("3"), json!("-1"), json!("1e20"), json!(1)] {
            refused(json!({}), json!({}), json!({"notifierInfo": [{"key": "MQTT-QoS", "value": qos}]}));
        }
        for shape in [json!({"MQTT-QoS": "1"}), json!(["MQTT-QoS"]), json!([{"key": "MQTT-QoS"}])] {
            refused(json!({}), json!({}), json!({"notifierInfo": shape}));
        }
    }

    #[test]
    fn receiver_info_cannot_set_framing_or_hop_by_hop_headers() {
        check(json!({}), json!({}), json!({"receiverInfo": [{"key": "X-Auth-Token", "value": "abc 123"}]})).unwrap();
        for key in FORBIDDEN_HEADERS.iter().map(|k| k.to_string()).chain(["HOST".into(), "Content-Length".into()]) {
            let detail = refused(json!({}), json!({}), json!({"receiverInfo": [{"key": key, "value": "1"}]}));
            assert!(detail.contains("may not set"), "{detail}");
        }
        for (key, value) in [("Bad Name", "x"), ("", "x"), ("X-A:", "x"), ("X-A", "a\r\nHost: evil"), ("X-A", "ü")] {
            refused(json!({}), json!({}), json!({"receiverInfo": [{"key": key, "value": value}]}));
        }
        for shape in [json!({"X-A": "1"}), json!([{"key": "X-A", "value": 1}]), json!([{"key": "X-A"}]), json!("X-A")] {
            refused(json!({}), json!({}), json!({"receiverInfo": shape}));
        }
    }
}

/// Issue 19, points 1 and 7: ids, names and URLs of subscriptions are checked as entities' are.
#[cfg(test)]
mod limit_tests {
    use super::*;

    fn ctx() -> ActiveContext {
        let core: Value = serde_json::from_str(haskap_model::builtin::CORE_CONTEXT).unwrap();
        ActiveContext::core(&core).unwrap()
    }

    fn refused(body: Value, detail: &str) {
        let e = canonical_with(&body, &ctx(), false, &Limits::default()).expect_err(&body.to_string());
        assert_eq!(e.kind, haskap_model::ErrorKind::BadRequestData);
        assert!(e.detail.contains(detail), "{}", e.detail);
    }

    fn sub(entity: Value, notification: Value) -> Value {
        let mut n = json!({"endpoint": {"uri": "http://127.0.0.1:9/notify"}});
        for (k, v) in notification.as_object().unwrap() {
            n[k] = v.clone();
        }
        json!({"type": "Subscription", "entities": [entity], "notification": n})
    }

    /// Regression: a subscription id of 65,535 bytes reached the storage engine; names of any
    /// length and types that entity creation refuses were accepted.
    #[test]
    fn ids_names_and_urls_are_checked() {
        let ok = sub(json!({"type": "Room"}), json!({}));
        assert!(canonical_with(&ok, &ctx(), false, &Limits::default()).is_ok());
        let mut long_id = ok.clone();
        long_id["id"] = json!(format!("urn:ngsi-ld:Subscription:{}", "x".repeat(65_535)));
        refused(long_id, "max-id-bytes");
        refused(sub(json!({"type": "Bad Type"}), json!({})), "forbidden character");
        refused(sub(json!({"type": "A,B<C"}), json!({})), "forbidden character");
        refused(sub(json!({"type": "R\u{202E}oom"}), json!({})), "forbidden character");
        refused(sub(json!({"type": "T".repeat(600)}), json!({})), "max-name-bytes");
        refused(sub(json!({"type": "Room", "id": format!("urn:x:{}", "i".repeat(3000))}), json!({})), "max-id-bytes");
        refused(sub(json!({"type": "Room"}), json!({"attributes": ["a".repeat(600)]})), "max-name-bytes");
        refused(sub(json!({"type": "Room"}), json!({"attributes": ["a=b"]})), "forbidden character");
        let mut watched = ok.clone();
        watched["watchedAttributes"] = json!(["x\u{2066}y"]);
        refused(watched, "forbidden character");
        let mut far = ok.clone();
        far["notification"]["endpoint"]["uri"] = json!(format!("http://example.org/{}", "u".repeat(3000)));
        refused(far, "max-url-bytes");
        let mut ctx_url = ok.clone();
        ctx_url["jsonldContext"] = json!(format!("http://example.org/{}.jsonld", "c".repeat(3000)));
        refused(ctx_url, "max-url-bytes");
    }

    /// Regression: pick with omit, and pick of non-strings, were accepted.
    #[test]
    fn pick_and_omit_are_exclusive() {
        refused(sub(json!({"type": "Room"}), json!({"pick": ["a"], "omit": ["b"]})), "cannot be used together");
        refused(sub(json!({"type": "Room"}), json!({"pick": [1]})), "array of member names");
        refused(sub(json!({"type": "Room"}), json!({"omit": "a"})), "array of member names");
    }
}

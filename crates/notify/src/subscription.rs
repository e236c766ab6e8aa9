//! The NGSI-LD Subscription (clause 5.2.12): validation, canonical form and rendering.
//!
//! The canonical form is the subscription's JSON with entity types and attribute names expanded
//! to IRIs and system members (`createdAt`, `modifiedAt`) in microseconds; `q` and `scopeQ` are
//! kept as written, with the @context they were written in (`jsonldContext`), so that they can be
//! compiled again for matching.

use haskap_model::NgsiError;
use haskap_model::jsonld::ActiveContext;
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

fn bad(detail: impl Into<String>) -> NgsiError {
    NgsiError::bad_data(detail)
}

/// Validates a subscription a client sends (create: `patch` false; update: only the members
/// present, `patch` true) and returns its members in canonical form.
pub fn canonical(body: &Value, ctx: &ActiveContext, patch: bool) -> Result<Map<String, Value>, NgsiError> {
    let obj = body.as_object().ok_or_else(|| NgsiError::invalid("a subscription must be a JSON object"))?;
    let mut out = Map::new();
    for (k, v) in obj {
        if !MEMBERS.contains(&k.as_str()) {
            return Err(bad(format!("{k} is not a member of a Subscription")));
        }
        match k.as_str() {
            "@context" | "status" | "createdAt" | "modifiedAt" => {}
            "id" => {
                let id = v.as_str().filter(|s| is_uri(s)).ok_or_else(|| bad("the subscription id must be a URI"))?;
                out.insert(k.clone(), json!(id));
            }
            "type" => {
                if v != "Subscription" {
                    return Err(bad("type must be \"Subscription\""));
                }
                out.insert(k.clone(), v.clone());
            }
            "entities" => {
                out.insert(k.clone(), entities(v, ctx)?);
            }
            "watchedAttributes" => {
                out.insert(k.clone(), names(v, ctx, "watchedAttributes")?);
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
                if !v.as_f64().is_some_and(|n| n > 0.0) {
                    return Err(bad(format!("{k} must be a positive number of seconds")));
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
                if !v.as_str().is_some_and(is_uri) {
                    return Err(bad("jsonldContext must be the URI of an @context"));
                }
                out.insert(k.clone(), v.clone());
            }
            "notification" => {
                out.insert(k.clone(), notification(v, ctx, patch)?);
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

fn entities(v: &Value, ctx: &ActiveContext) -> Result<Value, NgsiError> {
    let list = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| bad("entities must be a non-empty array"))?;
    let mut out = Vec::new();
    for sel in list {
        let sel = sel.as_object().ok_or_else(|| bad("each entities item must be an object"))?;
        let ty = sel.get("type").and_then(Value::as_str).ok_or_else(|| bad("each entities item needs a type"))?;
        let types = haskap_query::types::TypeExpr::parse(ty).map_err(|e| bad(format!("invalid type: {e}")))?;
        let mut m = Map::new();
        if let Some(id) = sel.get("id") {
            if !id.as_str().is_some_and(is_uri) {
                return Err(bad("an entities id must be a URI"));
            }
            m.insert("id".into(), id.clone());
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

fn names(v: &Value, ctx: &ActiveContext, what: &str) -> Result<Value, NgsiError> {
    let list = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad(format!("{what} must be a non-empty array of names")))?;
    list.iter()
        .map(|n| {
            n.as_str()
                .filter(|s| !s.is_empty())
                .map(|s| json!(ctx.expand(s)))
                .ok_or_else(|| bad(format!("{what} must hold names")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn notification(v: &Value, ctx: &ActiveContext, patch: bool) -> Result<Value, NgsiError> {
    let n = v.as_object().ok_or_else(|| bad("notification must be an object"))?;
    let mut out = Map::new();
    for (k, v) in n {
        match k.as_str() {
            "attributes" => {
                out.insert(k.clone(), names(v, ctx, "notification.attributes")?);
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
                if !is_uri(uri) {
                    return Err(bad(format!("notification.endpoint.uri {uri:?} is not a URI")));
                }
                if let Some(a) = e.get("accept")
                    && !a.as_str().is_some_and(|a| {
                        matches!(a, "application/json" | "application/ld+json" | "application/geo+json")
                    })
                {
                    return Err(bad(
                        "notification.endpoint.accept must be application/json, application/ld+json or application/geo+json",
                    ));
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

//! `/ngsi-ld/v1/subscriptions`: create, query, retrieve, update and delete subscriptions.
//!
//! Subscriptions are stored durably through the writer like entities, per tenant. Matching and
//! delivery of notifications are not built yet: a subscription is accepted, kept and shown with
//! its status, but nothing is sent.

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use haskap_model::NgsiError;
use haskap_model::builtin::CORE_CONTEXT_URL;
use haskap_model::validate::now_micros;
use haskap_notify::subscription;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::request::{ContextRef, Raw, Req, Spec, decode};
use crate::response::{created, encode_segment, ngsi_json, no_content};

/// Handles every request under `/ngsi-ld/v1/subscriptions`.
pub async fn dispatch(Raw { app, method, uri, headers, body }: Raw) -> ApiResult<Response> {
    let rest = uri.path().strip_prefix("/ngsi-ld/v1/subscriptions").unwrap_or("").trim_start_matches('/');
    let id = decode(rest);
    let q = uri.query();
    let spec = |params: &'static [&'static str], body_context: bool| Spec { params, geo: false, body_context };
    match (id.is_empty(), method.clone()) {
        (true, Method::POST) => {
            create(Req::parse(&app, &method, &headers, q, body, spec(&["local"], true)).await?).await
        }
        (true, Method::GET) => list(
            Req::parse(
                &app,
                &method,
                &headers,
                q,
                body,
                spec(&["limit", "offset", "count", "local", "options"], false),
            )
            .await?,
        ),
        (false, Method::GET) => {
            retrieve(Req::parse(&app, &method, &headers, q, body, spec(&["local", "options"], false)).await?, &id)
        }
        (false, Method::PATCH) => {
            update(Req::parse(&app, &method, &headers, q, body, spec(&["local"], true)).await?, id).await
        }
        (false, Method::DELETE) => {
            delete(Req::parse(&app, &method, &headers, q, body, spec(&["local"], false)).await?, id).await
        }
        (true, _) => Err(ApiError::not_allowed("GET, POST")),
        (false, _) => Err(ApiError::not_allowed("GET, PATCH, DELETE")),
    }
}

fn check_id(req: &Req, id: &str) -> ApiResult<()> {
    Ok(req.app.config.limits.check_id(id, "subscription id")?)
}

/// The context a subscription was written in, kept to compile its queries later.
fn context_of(req: &Req) -> Value {
    match &req.ctx_ref {
        ContextRef::Core => json!(CORE_CONTEXT_URL),
        ContextRef::Url(u) => json!(u),
        ContextRef::Inline(v) => v.clone(),
    }
}

async fn create(req: Req) -> ApiResult<Response> {
    let now = now_micros();
    let mut sub = subscription::canonical_with(req.json(), &req.ctx, false, &req.app.config.limits)?;
    let id = match sub.get("id").and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => haskap_model::validate::fresh_urn("Subscription"),
    };
    sub.insert("id".into(), json!(id));
    subscription::check_not_expired(&sub, now)?;
    let exists = |key: &str| format!("subscription {key} already exists");
    if req.app.store.read(|s| s.tenants.get(&req.tenant).is_some_and(|t| t.subscriptions.contains_key(&id))) {
        return Err(ApiError(NgsiError::exists(exists(&id))));
    }
    // Notifications name their @context by URL: one written inline (not a list of one URL) is
    // hosted for them.
    let one_url = |c: &Value| c.as_array().is_some_and(|a| a.len() == 1 && a[0].is_string());
    if let (None, ContextRef::Inline(c)) = (sub.get("jsonldContext"), &req.ctx_ref)
        && !one_url(c)
    {
        sub.insert("jsonldContext".into(), json!(req.app.contexts.add_implicit(&req.tenant, c.clone()).await?));
    }
    if let Some(c) = sub.get("jsonldContext") {
        req.app.contexts.resolve(&req.tenant, c).await?;
    }
    sub.insert(subscription::CONTEXT_KEY.into(), context_of(&req));
    sub.insert("createdAt".into(), json!(now));
    sub.insert("modifiedAt".into(), json!(now));
    let tenant = req.tenant.clone();
    let key = id.clone();
    req.app
        .store
        .write(move |txn| {
            if txn.subscription(&tenant, &key).is_some() {
                return Err(NgsiError::exists(exists(&key)));
            }
            txn.put_subscription(&tenant, &key, Some(Value::Object(sub)));
            Ok(())
        })
        .await?
        .map_err(ApiError)?;
    Ok(created(&format!("/ngsi-ld/v1/subscriptions/{}", encode_segment(&id))))
}

/// Whether `options` asks for system attributes, its only option for subscriptions.
fn sys_attrs(req: &Req) -> ApiResult<bool> {
    let options = req.options();
    if let Some(o) = options.iter().find(|o| **o != "sysAttrs") {
        return Err(ApiError(NgsiError::bad_data(format!(
            "unknown option {} for subscriptions; the only one is sysAttrs",
            haskap_model::parse::shorten(o)
        ))));
    }
    Ok(!options.is_empty())
}

fn list(req: Req) -> ApiResult<Response> {
    req.require_tenant()?;
    let (limit, offset) = req.page()?;
    let count = req.flag("count")?;
    let sys_attrs = sys_attrs(&req)?;
    let now = now_micros();
    let (total, page): (usize, Vec<Value>) = req.app.store.read(|state| {
        let Some(t) = state.tenants.get(&req.tenant) else { return (0, Vec::new()) };
        let page = t
            .subscriptions
            .values()
            .skip(offset)
            .take(limit)
            .map(|s| subscription::render(s, &req.ctx, sys_attrs, now))
            .collect();
        (t.subscriptions.len(), page)
    });
    let mut resp = ngsi_json(&req, StatusCode::OK, Value::Array(page));
    let mut links = Vec::new();
    if offset > 0 {
        links.push(format!(
            "</ngsi-ld/v1/subscriptions?limit={limit}&offset={}>;rel=\"prev\";type=\"application/ld+json\"",
            offset.saturating_sub(limit)
        ));
    }
    if offset + limit < total {
        links.push(format!(
            "</ngsi-ld/v1/subscriptions?limit={limit}&offset={}>;rel=\"next\";type=\"application/ld+json\"",
            offset + limit
        ));
    }
    for l in links {
        if let Ok(v) = HeaderValue::from_str(&l) {
            resp.headers_mut().append(axum::http::header::LINK, v);
        }
    }
    if count {
        resp.headers_mut().insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    Ok(resp)
}

fn retrieve(req: Req, id: &str) -> ApiResult<Response> {
    check_id(&req, id)?;
    req.require_tenant()?;
    let sub = req
        .app
        .store
        .read(|state| state.tenants.get(&req.tenant).and_then(|t| t.subscriptions.get(id).cloned()))
        .ok_or_else(|| ApiError(NgsiError::not_found(format!("subscription {id} does not exist"))))?;
    let mut out = subscription::render(&sub, &req.ctx, sys_attrs(&req)?, now_micros());
    req.app.notifier.decorate(&req.tenant, &mut out);
    Ok(ngsi_json(&req, StatusCode::OK, out))
}

async fn update(req: Req, id: String) -> ApiResult<Response> {
    check_id(&req, &id)?;
    let patch = subscription::canonical_with(req.json(), &req.ctx, true, &req.app.config.limits)?;
    subscription::check_not_expired(&patch, now_micros())?;
    let tenant = req.tenant.clone();
    req.app
        .store
        .write(move |txn| {
            let old = txn
                .subscription(&tenant, &id)
                .ok_or_else(|| NgsiError::not_found(format!("subscription {id} does not exist")))?;
            let merged = subscription::merge(&old, patch, now_micros())?;
            txn.put_subscription(&tenant, &id, Some(merged));
            Ok(())
        })
        .await?
        .map_err(ApiError)?;
    Ok(no_content())
}

async fn delete(req: Req, id: String) -> ApiResult<Response> {
    check_id(&req, &id)?;
    let tenant = req.tenant.clone();
    req.app
        .store
        .write(move |txn| {
            if txn.subscription(&tenant, &id).is_none() {
                return Err(NgsiError::not_found(format!("subscription {id} does not exist")));
            }
            txn.put_subscription(&tenant, &id, None);
            Ok(())
        })
        .await?
        .map_err(ApiError)?;
    Ok(no_content())
}

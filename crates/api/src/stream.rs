//! `GET /haskap/v1/stream`: a live stream of entity changes as Server-Sent Events (a Haskap
//! extension, for browsers such as the city dashboard).
//!
//! Parameters: `type` (a type expression) and `q` select the entities, `options=keyValues` picks
//! the representation; the tenant and @context are taken as for any NGSI-LD request, or from the
//! `tenant` and `context` (a context URL) query parameters, since a browser's `EventSource`
//! cannot send headers. Each event
//! is `event: notification` with a Notification-shaped JSON (`data` holds the changed entity as
//! it is after the change, or `{id, type, deletedAt}` when it was deleted). The stream starts
//! with a comment and sends keep-alives every 15 s.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use haskap_model::NgsiError;
use haskap_model::validate::{format_micros, now_micros};
use haskap_query::types::TypeExpr;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::request::{Raw, Req, Spec};

/// Opens the stream.
pub async fn open(Raw { app, method, uri, mut headers, body }: Raw) -> ApiResult<Response> {
    let query = headers_from_query(uri.query().unwrap_or(""), &mut headers)?;
    accept_event_stream(&mut headers)?;
    let req = Req::parse(
        &app,
        &method,
        &headers,
        (!query.is_empty()).then_some(query.as_str()),
        body,
        Spec { params: &["type", "q", "options"], geo: false, body_context: false },
    )
    .await?;
    let types = req
        .param("type")
        .map(|t| TypeExpr::parse(t).map(|e| e.expand(&|n| req.ctx.expand(n))))
        .transpose()
        .map_err(|e| ApiError(NgsiError::bad_data(format!("invalid type: {e}"))))?;
    let q = match req.param("q") {
        Some(q) => {
            let expr =
                haskap_query::q::parse(q).map_err(|e| ApiError(NgsiError::bad_data(format!("invalid q: {e}"))))?;
            Some(
                haskap_query::eval::compile(&expr, q, &|t| req.ctx.expand(t))
                    .map_err(|e| ApiError(NgsiError::bad_data(format!("invalid q: {e}"))))?,
            )
        }
        None => None,
    };
    let opts = crate::view::View::from_request(&req)?.opts;
    let ctx = req.ctx.clone();
    let tenant = req.tenant.clone();
    let rx = app.store.changes();
    let events = futures_util::stream::unfold(rx, move |mut rx| {
        let (types, q, opts, ctx, tenant) = (types.clone(), q.clone(), opts.clone(), ctx.clone(), tenant.clone());
        async move {
            loop {
                let batch = rx.recv().await?;
                let mut out = Vec::new();
                for ev in batch.iter().filter(|e| e.tenant == tenant) {
                    let Some(e) = ev.new.as_deref().or(ev.old.as_deref()) else { continue };
                    if types.as_ref().is_some_and(|t| !t.matches(&e.types)) || q.as_ref().is_some_and(|q| !q.matches(e))
                    {
                        continue;
                    }
                    let data = match &ev.new {
                        Some(n) => Value::Object(haskap_model::render::render_entity(n, &ctx, &opts)),
                        None => {
                            json!({"id": e.id, "type": haskap_model::render::render_types(&e.types, &ctx), "deletedAt": format_micros(now_micros())})
                        }
                    };
                    let now = now_micros();
                    let body = json!({"id": haskap_model::validate::fresh_urn("Notification"), "type": "Notification", "notifiedAt": format_micros(now), "data": [data]});
                    out.push(Ok::<Event, Infallible>(Event::default().event("notification").data(body.to_string())));
                }
                if !out.is_empty() {
                    return Some((futures_util::stream::iter(out), rx));
                }
            }
        }
    });
    let flat = futures_util::StreamExt::flatten(events);
    let start =
        futures_util::stream::once(async { Ok::<Event, Infallible>(Event::default().comment("haskap stream")) });
    let stream = futures_util::StreamExt::chain(start, flat);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

/// Moves the `tenant` and `context` query parameters into the headers they stand for, and returns
/// the rest of the query.
fn headers_from_query(query: &str, headers: &mut axum::http::HeaderMap) -> ApiResult<String> {
    let bad = |what: &str| ApiError(NgsiError::bad_data(format!("invalid {what} parameter")));
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || percent_encoding::percent_decode_str(value).decode_utf8().map(|v| v.into_owned());
        match key {
            "tenant" => {
                let tenant = decoded().map_err(|_| bad("tenant"))?;
                headers.insert("ngsild-tenant", tenant.parse().map_err(|_| bad("tenant"))?);
            }
            "context" => {
                let url = decoded().map_err(|_| bad("context"))?;
                let link = crate::response::context_link(&url);
                headers.insert(axum::http::header::LINK, link.parse().map_err(|_| bad("context"))?);
            }
            _ => rest.push(pair),
        }
    }
    Ok(rest.join("&"))
}

/// The stream answers in `text/event-stream` (what a browser's `EventSource` asks for), so the
/// `Accept` header must allow it; it is then taken out of the NGSI-LD negotiation.
fn accept_event_stream(headers: &mut axum::http::HeaderMap) -> ApiResult<()> {
    let Some(accept) = headers.remove(axum::http::header::ACCEPT) else { return Ok(()) };
    let raw = accept.to_str().unwrap_or_default();
    let ok = raw.trim().is_empty()
        || crate::request::accept_items(raw)
            .any(|(media, q)| matches!(media.as_str(), "text/event-stream" | "text/*" | "*/*") && q > 0.0);
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            haskap_model::ErrorKind::NotAcceptable,
            format!("cannot answer in {raw}; the stream is text/event-stream"),
        ))
    }
}

//! `/ngsi-ld/v1/jsonldContexts`: list, serve, add and delete @context documents.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use haskap_model::NgsiError;
use serde_json::Value;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::ldcontext::ContextRegistry;
use crate::request::{Raw, Req, Spec, decode};
use crate::response::{no_content, plain_json};

/// Handles every request under `/ngsi-ld/v1/jsonldContexts`.
pub async fn dispatch(Raw { app, method, uri, headers, body }: Raw) -> ApiResult<Response> {
    run(&app, &method, &uri, &headers, body).await
}

async fn run(app: &AppState, method: &Method, uri: &Uri, headers: &HeaderMap, body: Body) -> ApiResult<Response> {
    let rest = uri.path().strip_prefix("/ngsi-ld/v1/jsonldContexts").unwrap_or("").trim_start_matches('/');
    let id = decode(rest);
    let spec = |params| Spec { params, geo: false, body_context: false };
    match (id.is_empty(), method.clone()) {
        (true, Method::GET) => {
            let req = Req::parse(app, method, headers, uri.query(), body, spec(&["details", "kind"])).await?;
            let details = req.flag("details")?;
            let kind = req.param("kind").map(str::to_string);
            if let Some(k) = &kind
                && !matches!(k.as_str(), "Hosted" | "Cached" | "ImplicitlyCreated")
            {
                return Err(ApiError(NgsiError::bad_data(format!(
                    "kind must be Hosted, Cached or ImplicitlyCreated, not {k:?}"
                ))));
            }
            let items: Vec<Value> = app
                .contexts
                .list(&req.tenant)
                .into_iter()
                .filter(|(_, d)| kind.as_deref().is_none_or(|k| ContextRegistry::details("", d)["kind"] == k))
                .map(|(url, d)| if details { ContextRegistry::details(&url, &d) } else { Value::String(url) })
                .collect();
            Ok(plain_json(StatusCode::OK, &Value::Array(items)))
        }
        (true, Method::POST) => {
            let req = Req::parse(app, method, headers, uri.query(), body, spec(&[])).await?;
            let context = match req.json().get("@context") {
                Some(c @ (Value::Object(_) | Value::Array(_) | Value::String(_))) => c.clone(),
                _ => {
                    return Err(ApiError(NgsiError::invalid("the body must be a JSON object with an @context member")));
                }
            };
            let id = app.contexts.add_hosted(&req.tenant, context).await?;
            let mut resp = StatusCode::CREATED.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/ngsi-ld/v1/jsonldContexts/{id}")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(resp)
        }
        (false, Method::GET) => {
            let req = Req::parse(app, method, headers, uri.query(), body, spec(&["details"])).await?;
            let (url, doc) = app
                .contexts
                .find(&req.tenant, &id)
                .ok_or_else(|| ApiError(NgsiError::not_found(format!("no @context {id}"))))?;
            // Report, then count this request as a use.
            let body = if req.flag("details")? { ContextRegistry::details(&url, &doc) } else { (*doc.doc).clone() };
            doc.hit();
            Ok(plain_json(StatusCode::OK, &body))
        }
        (false, Method::DELETE) => {
            let req = Req::parse(app, method, headers, uri.query(), body, spec(&["reload"])).await?;
            app.contexts.delete(&req.tenant, &id, req.flag("reload")?).await?;
            Ok(no_content())
        }
        (true, _) => Err(ApiError::not_allowed("GET, POST")),
        (false, _) => Err(ApiError::not_allowed("GET, DELETE")),
    }
}

//! Endpoints of the NGSI-LD API that Haskap does not serve yet (subscriptions, temporal,
//! context sources, discovery). They still negotiate like every other endpoint, so a client
//! gets the precise error for a bad request (406, 415, unknown parameter, unloadable @context)
//! and otherwise a clear 501 saying the operation is not available in this version.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use haskap_model::{ErrorKind, NgsiError};

use crate::error::problem_body;
use crate::request::{Raw, Req, Spec};

const SUBSCRIPTION_PARAMS: &[&str] = &["limit", "offset", "count", "local"];
const TEMPORAL_PARAMS: &[&str] = &[
    "id",
    "type",
    "idPattern",
    "attrs",
    "q",
    "scopeQ",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "timerel",
    "timeAt",
    "endTimeAt",
    "timeproperty",
    "lastN",
    "lang",
    "limit",
    "offset",
    "count",
    "options",
    "format",
    "aggrMethods",
    "aggrPeriodDuration",
    "local",
    "csf",
    "datasetId",
    "pick",
    "omit",
];
const CSOURCE_PARAMS: &[&str] = &[
    "id",
    "type",
    "idPattern",
    "attrs",
    "q",
    "csf",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "timerel",
    "timeAt",
    "endTimeAt",
    "timeproperty",
    "limit",
    "offset",
    "count",
    "options",
    "local",
];
const DISCOVERY_PARAMS: &[&str] = &["details", "type", "local", "limit", "offset", "count"];

/// Handles a request to a resource Haskap does not serve yet.
pub(crate) async fn dispatch(Raw { app, method, uri, headers, body }: Raw) -> Response {
    let path = uri.path();
    let params = if path.contains("/temporal/") {
        TEMPORAL_PARAMS
    } else if path.contains("/csource") {
        CSOURCE_PARAMS
    } else if path.contains("/types") || path.contains("/attributes") {
        DISCOVERY_PARAMS
    } else {
        SUBSCRIPTION_PARAMS
    };
    let body_context = method == Method::POST || method == Method::PUT;
    if let Err(e) =
        Req::parse(&app, &method, &headers, uri.query(), body, Spec { params, geo: false, body_context }).await
    {
        return e.into_response();
    }
    let e = NgsiError::new(
        ErrorKind::OperationNotSupported,
        format!("{method} {path} is not available in this version of Haskap"),
    );
    let mut resp =
        (StatusCode::NOT_IMPLEMENTED, serde_json::to_vec(&problem_body(&e)).unwrap_or_default()).into_response();
    resp.headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    resp
}

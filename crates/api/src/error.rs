//! The one error type of the HTTP layer: every failure becomes an NGSI-LD ProblemDetails.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use haskap_model::{ErrorKind, NgsiError};
use haskap_store::StoreError;
use serde_json::json;

/// An error on its way to the client as ProblemDetails.
#[derive(Debug)]
pub struct ApiError(pub NgsiError);

impl From<NgsiError> for ApiError {
    fn from(e: NgsiError) -> Self {
        ApiError(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let kind = match e {
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            StoreError::Refused(_) => ErrorKind::BadRequestData,
            _ => ErrorKind::InternalError,
        };
        ApiError::new(kind, e.to_string())
    }
}

impl ApiError {
    /// 405 Method Not Allowed; `allow` becomes the `Allow` header (and is named in the detail).
    pub fn not_allowed(allow: &str) -> Self {
        ApiError::new(ErrorKind::MethodNotAllowed, format!("{ALLOWED}{allow}"))
    }

    /// Shorthand for a problem of `kind` with `detail`.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        ApiError(NgsiError::new(kind, detail))
    }
}

/// How the detail of a 405 introduces the allowed methods, which `into_response` turns into the
/// `Allow` header.
const ALLOWED: &str = "method not allowed here; allowed: ";

/// The HTTP status of a problem kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::BadRequestData => StatusCode::BAD_REQUEST,
        ErrorKind::AlreadyExists => StatusCode::CONFLICT,
        ErrorKind::OperationNotSupported => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::ResourceNotFound | ErrorKind::NonexistentTenant => StatusCode::NOT_FOUND,
        ErrorKind::TooComplexQuery | ErrorKind::TooManyResults | ErrorKind::QuotaExceeded => StatusCode::FORBIDDEN,
        ErrorKind::LdContextNotAvailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
        ErrorKind::LengthRequired => StatusCode::LENGTH_REQUIRED,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The ProblemDetails body of an error.
pub fn problem_body(e: &NgsiError) -> serde_json::Value {
    json!({
        "type": e.kind.type_uri(),
        "title": e.kind.title(),
        "status": status_of(e.kind).as_u16(),
        "detail": e.detail,
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind);
        // Refusals while the store is unwritable are logged once, by the store.
        if status.is_server_error() && self.0.kind != ErrorKind::Unavailable {
            tracing::error!(kind = ?self.0.kind, detail = %self.0.detail, "request failed");
        }
        let body = serde_json::to_vec(&problem_body(&self.0)).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.0.kind == ErrorKind::Unavailable {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(allow) = self.0.detail.strip_prefix(ALLOWED).and_then(|a| HeaderValue::from_str(a).ok()) {
            resp.headers_mut().insert(header::ALLOW, allow);
        }
        resp
    }
}

/// Results of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

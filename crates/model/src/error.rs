//! The NGSI-LD problem types and the one error type every library crate reports user errors with.

use std::fmt;

/// The NGSI-LD problem types (ETSI GS CIM 009, clause 5.5.2), plus the few Haskap needs beyond them.
///
/// Only the API layer maps a kind to an HTTP status; everything below it speaks in kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed: bad JSON, bad parameters, unsupported shapes.
    InvalidRequest,
    /// The request is well formed but its data is not acceptable.
    BadRequestData,
    /// The entity (or attribute, or context) already exists.
    AlreadyExists,
    /// The operation is not supported, e.g. deleting a core context.
    OperationNotSupported,
    /// The referred resource does not exist.
    ResourceNotFound,
    /// An internal failure: storage, I/O.
    InternalError,
    /// The query is too complex to be answered.
    TooComplexQuery,
    /// The answer would be larger than the broker returns at once.
    TooManyResults,
    /// A JSON-LD @context could not be retrieved or is not valid.
    LdContextNotAvailable,
    /// The tenant named by `NGSILD-Tenant` does not exist.
    NonexistentTenant,
    /// The request body is larger than allowed.
    PayloadTooLarge,
    /// The request's media type is not supported.
    UnsupportedMediaType,
    /// No acceptable representation exists for the request's `Accept`.
    NotAcceptable,
    /// A request body is required but its length is unknown.
    LengthRequired,
    /// The method is not allowed on the resource.
    MethodNotAllowed,
    /// The broker cannot serve this now (writes while the disk is full, too many connections);
    /// HTTP 503 with `Retry-After`. Its problem type is InternalError.
    Unavailable,
    /// A tenant would keep more of something than it may (hosted @contexts); HTTP 403. Its
    /// problem type is BadRequestData.
    QuotaExceeded,
}

impl ErrorKind {
    /// The problem type URI of this kind.
    pub fn type_uri(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::UnsupportedMediaType
            | ErrorKind::NotAcceptable
            | ErrorKind::LengthRequired
            | ErrorKind::MethodNotAllowed
            | ErrorKind::PayloadTooLarge => "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest",
            ErrorKind::BadRequestData | ErrorKind::QuotaExceeded => {
                "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
            }
            ErrorKind::AlreadyExists => "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists",
            ErrorKind::OperationNotSupported => "https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported",
            ErrorKind::ResourceNotFound => "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound",
            ErrorKind::InternalError | ErrorKind::Unavailable => "https://uri.etsi.org/ngsi-ld/errors/InternalError",
            ErrorKind::TooComplexQuery => "https://uri.etsi.org/ngsi-ld/errors/TooComplexQuery",
            ErrorKind::TooManyResults => "https://uri.etsi.org/ngsi-ld/errors/TooManyResults",
            ErrorKind::LdContextNotAvailable => "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable",
            ErrorKind::NonexistentTenant => "https://uri.etsi.org/ngsi-ld/errors/NonexistentTenant",
        }
    }

    /// A short, human-readable summary of the problem type.
    pub fn title(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "Invalid request",
            ErrorKind::BadRequestData => "Bad request data",
            ErrorKind::AlreadyExists => "Already exists",
            ErrorKind::OperationNotSupported => "Operation not supported",
            ErrorKind::ResourceNotFound => "Resource not found",
            ErrorKind::InternalError => "Internal error",
            ErrorKind::TooComplexQuery => "Too complex query",
            ErrorKind::TooManyResults => "Too many results",
            ErrorKind::LdContextNotAvailable => "JSON-LD context not available",
            ErrorKind::NonexistentTenant => "Nonexistent tenant",
            ErrorKind::PayloadTooLarge => "Payload too large",
            ErrorKind::UnsupportedMediaType => "Unsupported media type",
            ErrorKind::NotAcceptable => "Not acceptable",
            ErrorKind::LengthRequired => "Length required",
            ErrorKind::MethodNotAllowed => "Method not allowed",
            ErrorKind::Unavailable => "Service unavailable",
            ErrorKind::QuotaExceeded => "Quota exceeded",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

/// An NGSI-LD problem: a kind and a detail a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct NgsiError {
    /// Which problem type this is.
    pub kind: ErrorKind,
    /// What exactly was wrong, in words a user can act on (lowercase, no trailing period).
    pub detail: String,
}

impl NgsiError {
    /// A problem of `kind` with `detail`.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        NgsiError { kind, detail: detail.into() }
    }
    /// Shorthand for [`ErrorKind::BadRequestData`].
    pub fn bad_data(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequestData, detail)
    }
    /// Shorthand for [`ErrorKind::InvalidRequest`].
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, detail)
    }
    /// Shorthand for [`ErrorKind::ResourceNotFound`].
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, detail)
    }
    /// Shorthand for [`ErrorKind::AlreadyExists`].
    pub fn exists(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, detail)
    }
    /// Shorthand for [`ErrorKind::InternalError`].
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InternalError, detail)
    }
}

/// Results whose error is an [`NgsiError`].
pub type Result<T, E = NgsiError> = std::result::Result<T, E>;

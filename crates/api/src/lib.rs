//! The HTTP face of Haskap: the NGSI-LD API under `/ngsi-ld/v1`, plus `/health` and `/version`.
//!
//! One module per resource, mirroring the URL space; [`request`] does content negotiation,
//! tenancy, limits and @context resolution once for all of them, and every failure leaves as an
//! NGSI-LD ProblemDetails ([`error`]). Only this crate knows HTTP and JSON-LD context documents.
//!
//! Invariant: nothing here writes except through `haskap_store::Store::write`.

pub mod batch;
pub mod contexts;
pub mod discovery;
pub mod entities;
pub mod error;
pub mod guard;
pub mod ldcontext;
pub mod notifier;
mod pending;
pub mod query;
pub mod request;
pub mod response;
mod server;
pub mod stream;
pub mod subscriptions;
pub mod supervise;
pub mod view;

pub use server::{ConnectionLimits, serve};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use haskap_model::parse::Limits;
use haskap_store::Store;
use serde_json::json;

use crate::ldcontext::ContextRegistry;

/// Settings of the API layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Most entities in one batch operation.
    pub max_batch: usize,
    /// Limits on entities.
    pub limits: Limits,
    /// Default page size of queries.
    pub default_page: usize,
    /// Largest page size a query may ask for.
    pub max_page: usize,
    /// This broker's public base URL (for hosted @contexts).
    pub public_url: String,
    /// Timeout of fetching a remote @context.
    pub context_timeout: Duration,
    /// Version and build, for `/version`.
    pub version: serde_json::Value,
    /// How long a notification is retried before it is given up.
    pub notify_horizon: Duration,
    /// PEM certificates trusted for `mqtts://` endpoints besides the public roots (a city's own
    /// broker with its own CA).
    pub mqtt_ca_file: Option<std::path::PathBuf>,
    /// Time a client has to send a whole request body.
    pub body_timeout: Duration,
    /// The host names requests may be addressed to (`Host`), or any when `None`; see
    /// [`guard::default_allowed_hosts`].
    pub allowed_hosts: Option<Vec<String>>,
    /// Origins allowed to call the API from a browser (CORS); `*` is any; empty is none.
    pub cors_origins: Vec<String>,
    /// Most hosted @contexts (Hosted and ImplicitlyCreated) one tenant may keep.
    pub max_hosted_contexts: usize,
    /// How many changes a stream (SSE) client may fall behind before it is dropped with a
    /// reconnect hint (see [`stream`]).
    pub stream_buffer: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            body_limit: 8 << 20,
            max_batch: 10_000,
            limits: Limits::default(),
            default_page: 20,
            max_page: 1000,
            public_url: "http://127.0.0.1:1026".into(),
            context_timeout: Duration::from_secs(3),
            version: json!({}),
            notify_horizon: Duration::from_secs(300),
            mqtt_ca_file: None,
            body_timeout: Duration::from_secs(30),
            allowed_hosts: None,
            cors_origins: Vec::new(),
            max_hosted_contexts: 100,
            stream_buffer: stream::DEFAULT_BUFFER,
        }
    }
}

/// What every handler shares.
pub struct AppInner {
    /// The store.
    pub store: Store,
    /// The @context registry.
    pub contexts: ContextRegistry,
    /// Settings.
    pub config: ApiConfig,
    /// Notification delivery counters.
    pub notifier: notifier::Notifier,
    /// The HTTP client notifications go out with.
    pub http: reqwest::Client,
    /// The TLS settings of `mqtts://` notifications.
    pub mqtt_tls: Arc<rustls::ClientConfig>,
    /// The feed of changes stream clients share.
    pub stream: stream::Hub,
}

/// The shared application state.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// The state over `store` with `config`.
    pub fn new(store: Store, config: ApiConfig) -> Result<AppState, haskap_model::NgsiError> {
        let contexts = ContextRegistry::new(
            store.clone(),
            &config.public_url,
            config.context_timeout,
            config.max_hosted_contexts,
        )?;
        // Title-Case header names (`Link`, `NGSILD-Tenant`), as receivers written against other
        // brokers (and the ETSI suite's) expect.
        let http = reqwest::Client::builder()
            .http1_title_case_headers()
            .build()
            .map_err(|e| haskap_model::NgsiError::internal(e.to_string()))?;
        let mqtt_tls = notifier::mqtt_tls(config.mqtt_ca_file.as_deref())?;
        let app = AppState(Arc::new(AppInner {
            stream: stream::Hub::new(config.stream_buffer),
            store,
            contexts,
            config,
            notifier: Default::default(),
            http,
            mqtt_tls,
        }));
        Ok(app)
    }
}

/// Starts the background work of the API: matching committed changes to subscriptions and
/// sending notifications. Call once, inside the runtime.
pub fn start_background(app: &AppState) {
    notifier::spawn(app.clone());
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(|| async { response::plain_json(StatusCode::OK, &json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/version", get(version))
        .route("/ngsi-ld/v1/entities", any(entities::dispatch))
        .route("/ngsi-ld/v1/entities/", any(entities::dispatch))
        .route("/ngsi-ld/v1/entities/{*rest}", any(entities::dispatch))
        .route("/ngsi-ld/v1/entityOperations/{op}", any(batch::dispatch))
        .route("/ngsi-ld/v1/jsonldContexts", any(contexts::dispatch))
        .route("/ngsi-ld/v1/jsonldContexts/", any(contexts::dispatch))
        .route("/ngsi-ld/v1/jsonldContexts/{*rest}", any(contexts::dispatch))
        .route("/ngsi-ld/v1/subscriptions", any(subscriptions::dispatch))
        .route("/ngsi-ld/v1/subscriptions/", any(subscriptions::dispatch))
        .route("/ngsi-ld/v1/subscriptions/{*rest}", any(subscriptions::dispatch))
        .route("/ngsi-ld/v1/temporal/{*rest}", any(pending::dispatch))
        .route("/ngsi-ld/v1/csourceRegistrations", any(pending::dispatch))
        .route("/ngsi-ld/v1/csourceRegistrations/", any(pending::dispatch))
        .route("/ngsi-ld/v1/csourceRegistrations/{*rest}", any(pending::dispatch))
        .route("/ngsi-ld/v1/csourceSubscriptions", any(pending::dispatch))
        .route("/ngsi-ld/v1/csourceSubscriptions/", any(pending::dispatch))
        .route("/ngsi-ld/v1/csourceSubscriptions/{*rest}", any(pending::dispatch))
        .route("/ngsi-ld/v1/types", any(discovery::dispatch))
        .route("/ngsi-ld/v1/types/", any(discovery::dispatch))
        .route("/ngsi-ld/v1/types/{*rest}", any(discovery::dispatch))
        .route("/ngsi-ld/v1/attributes", any(discovery::dispatch))
        .route("/ngsi-ld/v1/attributes/", any(discovery::dispatch))
        .route("/ngsi-ld/v1/attributes/{*rest}", any(discovery::dispatch))
        .route("/haskap/v1/stream", get(stream::open))
        .fallback(not_found)
        .with_state(state)
}

/// Whether writes can be made now: 200 `{"status": "ready"}`, or 503 with the reason while the
/// store refuses writes (a full disk; `"failed"` when the process is about to exit).
async fn ready(axum::extract::State(app): axum::extract::State<AppState>) -> Response {
    match app.store.health() {
        haskap_store::Health::Ready => response::plain_json(StatusCode::OK, &json!({"status": "ready"})),
        haskap_store::Health::Unwritable(why) => {
            response::plain_json(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "unwritable", "reason": why}))
        }
        haskap_store::Health::Failed(why) => {
            response::plain_json(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "failed", "reason": why}))
        }
    }
}

async fn version(axum::extract::State(app): axum::extract::State<AppState>) -> Response {
    response::plain_json(StatusCode::OK, &app.config.version)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error::ApiError(haskap_model::NgsiError::not_found(format!("no resource at {}", uri.path()))).into_response()
}

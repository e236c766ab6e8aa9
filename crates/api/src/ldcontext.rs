//! The @context registry: built-in documents, hosted ones (added through `/jsonldContexts`),
//! and remote ones fetched once with a short timeout, cached and persisted. Active contexts are
//! built once per distinct request context and cached.
//!
//! Hosted and ImplicitlyCreated documents belong to the tenant that made them: only requests in
//! that tenant can use, list, read or delete them, and a tenant keeps at most
//! `max_hosted_contexts`. Cached copies of public documents are shared by all tenants (deleting
//! one only makes the broker fetch it again when next needed); at most [`MAX_CACHED`] are kept,
//! the least used going first. A URL too long to be a storage key is stored under its hash.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use haskap_model::builtin::{BUILTIN_CONTEXTS, CORE_CONTEXT};
use haskap_model::jsonld::{ActiveContext, ContextError, referenced_urls};
use haskap_model::validate::{format_micros, now_micros};
use haskap_model::{ErrorKind, NgsiError};
use haskap_store::Store;
use parking_lot::RwLock;
use serde_json::{Value, json};

/// Largest remote @context document accepted.
const MAX_DOC_BYTES: usize = 1 << 20;
/// How many built active contexts are kept before the cache starts over.
const MAX_BUILT: usize = 4096;
/// Metadata key prefix of persisted documents.
const META_PREFIX: &str = "ctx/";
/// Most cached copies of remote documents kept; beyond it the least used is forgotten.
pub const MAX_CACHED: usize = 1000;
/// URLs longer than this are stored under a hash of themselves (the record keeps the URL).
const MAX_KEYED_URL: usize = 512;

/// Where a document came from (the `kind` of the jsonldContexts API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    /// Added by a client and served by this broker.
    Hosted,
    /// Fetched from its URL and kept.
    Cached,
    /// Made by the broker for a subscription written with an @context that is not one URL, so
    /// that its `jsonldContext` can name it.
    ImplicitlyCreated,
    /// Built into the binary.
    Builtin,
}

impl DocKind {
    fn name(self) -> &'static str {
        match self {
            DocKind::Hosted => "Hosted",
            DocKind::Cached | DocKind::Builtin => "Cached",
            DocKind::ImplicitlyCreated => "ImplicitlyCreated",
        }
    }
}

/// One known @context document.
pub struct Doc {
    /// The document, with its `@context` member.
    pub doc: Arc<Value>,
    /// Where it came from.
    pub kind: DocKind,
    /// The id under `/jsonldContexts/`.
    pub local_id: String,
    /// When it was added (micros).
    pub created_at: i64,
    /// The tenant a Hosted or ImplicitlyCreated document belongs to; `None` for shared ones.
    pub owner: Option<String>,
    /// Its metadata key in the store.
    meta_key: String,
    hits: AtomicU64,
}

/// A built active context and the documents it was built from.
type Built = (Arc<ActiveContext>, Vec<Arc<Doc>>);

/// All known @context documents and the active contexts built from them.
pub struct ContextRegistry {
    core: Arc<ActiveContext>,
    docs: RwLock<HashMap<String, Arc<Doc>>>,
    /// Built active contexts by request context, with the documents they were built from (whose
    /// hits every use counts).
    built: RwLock<HashMap<String, Built>>,
    client: reqwest::Client,
    store: Store,
    hosted_prefix: String,
    max_hosted: usize,
}

impl ContextRegistry {
    /// The registry with the built-in documents and whatever was persisted in `store`.
    /// `public_url` is this broker's base URL, under which hosted contexts are served.
    pub fn new(store: Store, public_url: &str, fetch_timeout: Duration, max_hosted: usize) -> Result<Self, NgsiError> {
        let core_doc: Value = serde_json::from_str(CORE_CONTEXT).map_err(|e| NgsiError::internal(e.to_string()))?;
        let core = ActiveContext::core(&core_doc).map_err(|e| NgsiError::internal(e.to_string()))?;
        let mut docs = HashMap::new();
        let started = now_micros();
        for (i, (url, text)) in BUILTIN_CONTEXTS.iter().enumerate() {
            let doc: Value = serde_json::from_str(text).map_err(|e| NgsiError::internal(format!("{url}: {e}")))?;
            let meta = Meta { local_id: format!("builtin-{i}"), created_at: started, owner: None, key: String::new() };
            docs.insert(url.to_string(), Arc::new(Doc::new(doc, DocKind::Builtin, meta)));
        }
        for (key, bytes) in store.scan_meta(META_PREFIX).map_err(crate::error::ApiError::from).map_err(|e| e.0)? {
            let Ok(rec) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            let kind = match rec["kind"].as_str() {
                Some("Hosted") => DocKind::Hosted,
                Some("ImplicitlyCreated") => DocKind::ImplicitlyCreated,
                _ => DocKind::Cached,
            };
            // Older records have no `url` (their key is the URL) and no owner (the default tenant's).
            let url = rec["url"].as_str().map_or_else(|| key[META_PREFIX.len()..].to_string(), str::to_string);
            let owner = match kind {
                DocKind::Hosted | DocKind::ImplicitlyCreated => Some(rec["tenant"].as_str().unwrap_or_default().into()),
                _ => None,
            };
            let meta = Meta {
                local_id: rec["localId"].as_str().unwrap_or_default().to_string(),
                created_at: rec["createdAt"].as_i64().unwrap_or_default(),
                owner,
                key,
            };
            docs.insert(url, Arc::new(Doc::new(rec["doc"].clone(), kind, meta)));
        }
        let client = reqwest::Client::builder()
            .timeout(fetch_timeout)
            .connect_timeout(fetch_timeout)
            .build()
            .map_err(|e| NgsiError::internal(e.to_string()))?;
        Ok(ContextRegistry {
            core: Arc::new(core),
            docs: RwLock::new(docs),
            built: RwLock::new(HashMap::new()),
            client,
            store,
            hosted_prefix: format!("{}/ngsi-ld/v1/jsonldContexts/", public_url.trim_end_matches('/')),
            max_hosted,
        })
    }

    /// The core context.
    pub fn core(&self) -> Arc<ActiveContext> {
        self.core.clone()
    }

    /// The active context for a request's `@context` value (a URL, an object or an array) in
    /// `tenant` (whose hosted documents it may name).
    pub async fn resolve(&self, tenant: &str, value: &Value) -> Result<Arc<ActiveContext>, NgsiError> {
        let key = match value {
            Value::String(s) => format!("{tenant}\0{s}"),
            other => format!("{tenant}\0{other}"),
        };
        if let Some((c, used)) = self.built.read().get(&key) {
            used.iter().for_each(Doc::hit);
            return Ok(c.clone());
        }
        let mut fetched = 0;
        loop {
            let used = parking_lot::Mutex::new(Vec::new());
            let attempt = {
                let docs = self.docs.read();
                self.core.extend(value, &|url| {
                    docs.get(url).filter(|d| d.visible_in(tenant)).map(|d| {
                        used.lock().push(d.clone());
                        d.doc.clone()
                    })
                })
            };
            match attempt {
                Ok(ctx) => {
                    let ctx = Arc::new(ctx);
                    let mut used = used.into_inner();
                    used.sort_by_key(|d| Arc::as_ptr(d) as usize);
                    used.dedup_by_key(|d| Arc::as_ptr(d) as usize);
                    used.iter().for_each(Doc::hit);
                    let mut built = self.built.write();
                    if built.len() >= MAX_BUILT {
                        built.clear();
                    }
                    built.insert(key, (ctx.clone(), used));
                    return Ok(ctx);
                }
                Err(ContextError::Missing(url)) if fetched < 32 => {
                    self.fetch(&url).await?;
                    fetched += 1;
                }
                Err(ContextError::Missing(url)) => {
                    return Err(NgsiError::new(
                        ErrorKind::LdContextNotAvailable,
                        format!("too many @context documents to load, last {url}"),
                    ));
                }
                Err(ContextError::Invalid(why)) => return Err(NgsiError::bad_data(why)),
                Err(other) => return Err(NgsiError::bad_data(other.to_string())),
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<(), NgsiError> {
        let doc = self.download(url).await?;
        self.insert(url.to_string(), doc, DocKind::Cached, next_id(), None)?;
        Ok(())
    }

    /// Downloads a context document (with a short timeout), checking it is one.
    async fn download(&self, url: &str) -> Result<Value, NgsiError> {
        let unavailable = |why: String| {
            NgsiError::new(ErrorKind::LdContextNotAvailable, format!("@context {url} cannot be loaded: {why}"))
        };
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(unavailable("only http and https URLs can be fetched".into()));
        }
        if url.starts_with(&self.hosted_prefix) {
            return Err(unavailable("no such hosted context".into()));
        }
        let resp = self
            .client
            .get(url)
            .header("Accept", "application/ld+json, application/json;q=0.9")
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("the server answered {}", resp.status())));
        }
        let bytes = resp.bytes().await.map_err(|e| unavailable(e.to_string()))?;
        if bytes.len() > MAX_DOC_BYTES {
            return Err(unavailable(format!("it is larger than {MAX_DOC_BYTES} bytes")));
        }
        let doc: Value = serde_json::from_slice(&bytes).map_err(|e| unavailable(format!("it is not JSON: {e}")))?;
        if !doc.get("@context").is_some_and(|c| c.is_object() || c.is_array() || c.is_string()) {
            return Err(unavailable("it has no @context member".into()));
        }
        tracing::info!(url, "fetched @context");
        Ok(doc)
    }

    fn insert(
        &self,
        url: String,
        doc: Value,
        kind: DocKind,
        local_id: String,
        owner: Option<&str>,
    ) -> Result<Arc<Doc>, NgsiError> {
        if kind == DocKind::Cached {
            self.make_room_for_cached(&url)?;
        }
        let created = now_micros();
        let rec = json!({"kind": kind.name(), "localId": local_id, "createdAt": created, "url": url, "tenant": owner, "doc": doc});
        let key = meta_key(&url);
        self.store.put_meta(&key, rec.to_string().as_bytes()).map_err(|e| crate::error::ApiError::from(e).0)?;
        let meta = Meta { local_id, created_at: created, owner: owner.map(str::to_string), key };
        let d = Arc::new(Doc::new(doc, kind, meta));
        self.docs.write().insert(url, d.clone());
        Ok(d)
    }

    /// Forgets the least used cached documents while [`MAX_CACHED`] are kept (not counting `url`
    /// itself, which is being replaced).
    fn make_room_for_cached(&self, url: &str) -> Result<(), NgsiError> {
        loop {
            let victim = {
                let docs = self.docs.read();
                let cached: Vec<(&String, &Arc<Doc>)> =
                    docs.iter().filter(|(u, d)| d.kind == DocKind::Cached && u.as_str() != url).collect();
                if cached.len() < MAX_CACHED {
                    return Ok(());
                }
                cached
                    .into_iter()
                    .min_by_key(|(_, d)| (d.hits.load(Ordering::Relaxed), d.created_at))
                    .map(|(u, d)| (u.clone(), d.clone()))
            };
            let Some((victim, doc)) = victim else { return Ok(()) };
            tracing::info!(url = %victim, "cached @context forgotten to make room");
            self.forget(&victim, &doc)?;
        }
    }

    /// Removes a document from memory and from the store.
    fn forget(&self, url: &str, doc: &Doc) -> Result<(), NgsiError> {
        self.docs.write().remove(url);
        self.built.write().clear();
        self.store.delete_meta(&doc.meta_key).map_err(|e| crate::error::ApiError::from(e).0)
    }

    /// Hosts a client's context document (`{"@context": ...}`); returns its local id. The remote
    /// documents it refers to are fetched and cached now, as far as they can be.
    pub async fn add_hosted(&self, tenant: &str, context: Value) -> Result<String, NgsiError> {
        self.host(tenant, context, DocKind::Hosted).await
    }

    /// Hosts the @context a subscription was written in (not a single URL) as an
    /// ImplicitlyCreated document; returns the URL it is served at.
    pub async fn add_implicit(&self, tenant: &str, context: Value) -> Result<String, NgsiError> {
        let id = self.host(tenant, context, DocKind::ImplicitlyCreated).await?;
        Ok(format!("{}{id}", self.hosted_prefix))
    }

    async fn host(&self, tenant: &str, context: Value, kind: DocKind) -> Result<String, NgsiError> {
        let hosted = self.docs.read().values().filter(|d| d.owner.as_deref() == Some(tenant)).count();
        if hosted >= self.max_hosted {
            return Err(NgsiError::new(
                ErrorKind::QuotaExceeded,
                format!(
                    "this tenant already hosts {hosted} @contexts, the most it may (--max-hosted-contexts); delete some first"
                ),
            ));
        }
        let mut pending = referenced_urls(&context);
        let mut seen = 0;
        while let Some(url) = pending.pop() {
            seen += 1;
            if seen > 32 || self.docs.read().contains_key(&url) {
                continue;
            }
            match self.download(&url).await {
                Ok(doc) => {
                    pending.extend(referenced_urls(doc.get("@context").unwrap_or(&Value::Null)));
                    self.insert(url, doc, DocKind::Cached, next_id(), None)?;
                }
                Err(e) => tracing::warn!(detail = %e.detail, "a context referred to by a hosted context is not cached"),
            }
        }
        let id = next_id();
        let url = format!("{}{id}", self.hosted_prefix);
        self.insert(url, json!({"@context": context}), kind, id.clone(), Some(tenant))?;
        Ok(id)
    }

    /// Finds a document `tenant` can see by URL or local id.
    pub fn find(&self, tenant: &str, id: &str) -> Option<(String, Arc<Doc>)> {
        let docs = self.docs.read();
        if let Some(d) = docs.get(id).filter(|d| d.visible_in(tenant)) {
            return Some((id.to_string(), d.clone()));
        }
        docs.iter().find(|(_, d)| d.local_id == id && d.visible_in(tenant)).map(|(u, d)| (u.clone(), d.clone()))
    }

    /// The documents `tenant` can see, as (URL, document).
    pub fn list(&self, tenant: &str) -> Vec<(String, Arc<Doc>)> {
        let mut v: Vec<_> = self
            .docs
            .read()
            .iter()
            .filter(|(_, d)| d.visible_in(tenant))
            .map(|(u, d)| (u.clone(), d.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Deletes a hosted or cached document, or (with `reload`) fetches a cached one again. Built-in
    /// documents cannot be deleted; "reloading" them is a no-op. A failed reload keeps the old copy.
    pub async fn delete(&self, tenant: &str, id: &str, reload: bool) -> Result<(), NgsiError> {
        let found = self.find(tenant, id);
        if reload {
            return match found {
                Some((_, d)) if d.kind == DocKind::Builtin => Ok(()),
                Some((url, d)) if d.kind == DocKind::Cached => {
                    let doc = self.download(&url).await?;
                    self.insert(url, doc, DocKind::Cached, d.local_id.clone(), None)?;
                    self.built.write().clear();
                    Ok(())
                }
                _ => Err(NgsiError::bad_data(format!("{id} is not a cached @context, so it cannot be reloaded"))),
            };
        }
        let Some((url, doc)) = found else {
            return Err(NgsiError::not_found(format!("no @context {id}")));
        };
        if doc.kind == DocKind::Builtin {
            return Err(NgsiError::bad_data(format!("{url} is built in and cannot be deleted")));
        }
        self.forget(&url, &doc)
    }

    /// The details object of a document (jsonldContexts `details=true`).
    pub fn details(url: &str, d: &Doc) -> Value {
        json!({
            "URL": url,
            "localId": d.local_id,
            "kind": d.kind.name(),
            "createdAt": format_micros(d.created_at),
            "numberOfHits": d.hits.load(Ordering::Relaxed),
        })
    }
}

impl Doc {
    /// Counts one use of the document.
    pub fn hit(self: &Arc<Self>) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    fn new(doc: Value, kind: DocKind, meta: Meta) -> Self {
        let Meta { local_id, created_at, owner, key } = meta;
        Doc { doc: Arc::new(doc), kind, local_id, created_at, owner, meta_key: key, hits: AtomicU64::new(0) }
    }

    /// Whether requests in `tenant` may use the document.
    fn visible_in(&self, tenant: &str) -> bool {
        self.owner.as_deref().is_none_or(|owner| owner == tenant)
    }
}

/// What a document is kept with besides itself.
struct Meta {
    local_id: String,
    created_at: i64,
    owner: Option<String>,
    key: String,
}

/// The metadata key of the document at `url`: the URL itself, or, when it is long, its SHA-256
/// (the record holds the URL).
fn meta_key(url: &str) -> String {
    if url.len() <= MAX_KEYED_URL {
        return format!("{META_PREFIX}{url}");
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, url.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{META_PREFIX}#sha256:{hex}")
}

fn next_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!("{:x}{:04x}", now_micros(), SEQ.fetch_add(1, Ordering::Relaxed) & 0xffff)
}

//! `GET /haskap/v1/stream`: a live stream of entity changes as Server-Sent Events (a Haskap
//! extension, for browsers such as the city dashboard).
//!
//! Parameters: `type` (a type expression) and `q` select the entities, `options=keyValues` picks
//! the representation; the tenant and @context are taken as for any NGSI-LD request, or from the
//! `tenant` and `context` (a context URL) query parameters, since a browser's `EventSource`
//! cannot send headers. The stream starts with a comment and a `retry:` hint and sends
//! keep-alives every 15 s. Events:
//!
//! - `event: notification`, `id: <epoch>-<seq>`: a Notification-shaped JSON whose `data` holds the
//!   changed entity as it is after the change, or `{id, type, deletedAt}` when it was deleted.
//! - `event: overflow` (with `retry:` and the `id` of the last change the stream got to): the
//!   client fell more than the stream buffer (`--stream-buffer`) behind, and the stream ends. It
//!   reconnects (an `EventSource` does so by itself) with `Last-Event-ID` and gets every change
//!   it missed, then the live feed, without a gap or a duplicate.
//! - `event: reset` (with the `id` of the newest change): the `Last-Event-ID` given is not in the
//!   replay window (too old, or from another run of the broker), so changes may have been missed:
//!   the client should reload what it shows. The live feed follows.
//!
//! `Last-Event-ID` is the header an `EventSource` sends when it reconnects; a `lastEventId` query
//! parameter does the same for clients that cannot send headers (the header wins).
//!
//! Design: one hub per process ([`Hub`], started with the first stream) takes the store's change
//! feed once, numbers every change and fans it out through a bounded `tokio::sync::broadcast`
//! channel, so clients share one copy of every change and a client that stops reading costs
//! nothing but its position: when the channel overtakes it (`Lagged`) it gets `overflow`. The hub
//! also keeps the most recent changes for reconnecting clients in a replay window (at most
//! [`REPLAY_EVENTS`] changes and [`REPLAY_BYTES`] bytes), as stored records (a third of the
//! memory of decoded entities, and exactly counted), decoded only when replayed. Ids start with
//! an epoch of the hub, so an id from an earlier process (or from before the hub was restarted)
//! is recognised as unknown. A reconnecting client replays from the window, a chunk at a time,
//! then subscribes to the channel under the same lock the hub publishes under, so replay and live
//! feed meet exactly. Each client's SSE body is a stream that hyper pulls only as the socket
//! drains, with nothing unbounded in between.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use haskap_model::NgsiError;
use haskap_model::entity::Entity;
use haskap_model::jsonld::ActiveContext;
use haskap_model::render::RenderOptions;
use haskap_model::validate::{format_micros, now_micros};
use haskap_query::types::TypeExpr;
use haskap_store::ChangeEvent;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::request::{Raw, Req, Spec};

/// Most changes kept for clients that reconnect.
pub const REPLAY_EVENTS: usize = 65_536;

/// The most memory the changes kept for reconnecting clients take, in bytes.
pub const REPLAY_BYTES: usize = 16 << 20;

/// The default of `--stream-buffer`: how many changes a client may fall behind before it is
/// dropped with `overflow` (the channel holds as many decoded changes).
pub const DEFAULT_BUFFER: usize = 1024;

/// How long a client waits before it reconnects (the SSE `retry:` field).
const RETRY: Duration = Duration::from_secs(1);

/// How many changes a replaying client takes from the window at a time.
const CHUNK: usize = 256;

/// One committed change, as clients get it.
struct Change {
    /// Its number in the hub's epoch.
    seq: u64,
    tenant: String,
    /// The entity after the change, or before it when it was deleted.
    entity: Arc<Entity>,
    deleted: bool,
    /// When the hub heard of it (micros).
    at: i64,
}

/// One committed change as the replay window keeps it: the entity as a stored record.
struct Kept {
    seq: u64,
    tenant: String,
    record: haskap_store::Encoded,
    deleted: bool,
    at: i64,
}

impl Kept {
    /// The bytes it holds (allocations included, roughly).
    fn size(&self) -> usize {
        size_of::<Kept>() + self.tenant.len() + self.record.len() + 64
    }
}

/// The shared feed of changes every stream client reads: a replay window and a bounded
/// broadcast channel (see the module doc).
pub struct Hub {
    /// The capacity of the broadcast channel (`--stream-buffer`).
    buffer: usize,
    started: OnceLock<()>,
    inner: Mutex<Window>,
}

/// What the hub keeps, under one lock.
struct Window {
    epoch: String,
    ring: VecDeque<Arc<Kept>>,
    bytes: usize,
    /// The highest number dropped from the ring (0: none).
    evicted: u64,
    /// The highest number given.
    head: u64,
    tx: broadcast::Sender<Arc<Change>>,
}

impl Hub {
    /// A hub whose clients may fall `buffer` changes behind (at least 1; the channel rounds it up
    /// to a power of two) before they are dropped.
    pub fn new(buffer: usize) -> Hub {
        let buffer = buffer.clamp(1, REPLAY_EVENTS);
        let inner = Window {
            epoch: String::new(),
            ring: VecDeque::new(),
            bytes: 0,
            evicted: 0,
            head: 0,
            tx: broadcast::channel(buffer).0,
        };
        Hub { buffer, started: OnceLock::new(), inner: Mutex::new(inner) }
    }

    /// Starts the hub's task once (supervised: restarted, with a new epoch, if it fails).
    fn start(&self, app: &AppState) {
        self.started.get_or_init(|| {
            let app = app.clone();
            crate::supervise::supervise("stream hub", move || {
                let rx = app.store.changes();
                app.stream.begin();
                run(app.clone(), rx)
            });
        });
    }

    /// Starts a new epoch: an empty window and a new channel (clients of the old one end with
    /// `overflow`, and reconnect to a `reset`).
    fn begin(&self) {
        let mut w = self.inner.lock();
        static EPOCHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = EPOCHS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        w.epoch = format!("{:x}{n:x}", now_micros());
        w.ring.clear();
        w.bytes = 0;
        w.evicted = 0;
        w.head = 0;
        w.tx = broadcast::channel(self.buffer).0;
    }

    /// Numbers, keeps and sends a group of committed changes.
    fn publish(&self, events: &[ChangeEvent]) {
        let at = now_micros();
        // Encoded before the lock is taken, so that clients wait for it as little as possible.
        let changes: Vec<(Arc<Entity>, bool, Option<haskap_store::Encoded>, &str)> = events
            .iter()
            .filter_map(|ev| {
                let entity = ev.new.clone().or_else(|| ev.old.clone())?;
                let record = haskap_store::encode(&entity)
                    .inspect_err(|e| tracing::warn!(error = %e, "a change could not be kept for replay"))
                    .ok();
                Some((entity, ev.new.is_none(), record, ev.tenant.as_str()))
            })
            .collect();
        let mut w = self.inner.lock();
        for (entity, deleted, record, tenant) in changes {
            w.head += 1;
            let seq = w.head;
            match record {
                Some(record) => {
                    let kept = Kept { seq, tenant: tenant.to_string(), record, deleted, at };
                    w.bytes += kept.size();
                    w.ring.push_back(Arc::new(kept));
                }
                // Not kept: the window starts after it (replay cannot leave a gap).
                None => {
                    w.ring.clear();
                    w.bytes = 0;
                    w.evicted = seq;
                }
            }
            while w.ring.len() > REPLAY_EVENTS || w.bytes > REPLAY_BYTES {
                let Some(old) = w.ring.pop_front() else { break };
                w.bytes -= old.size();
                w.evicted = old.seq;
            }
            // No receiver is no error: nobody streams now.
            let _ = w.tx.send(Arc::new(Change { seq, tenant: tenant.to_string(), entity, deleted, at }));
        }
    }
}

/// The hub's task: every committed change, into the hub.
async fn run(app: AppState, mut rx: tokio::sync::mpsc::UnboundedReceiver<Arc<Vec<ChangeEvent>>>) {
    while let Some(events) = rx.recv().await {
        app.stream.publish(&events);
    }
}

/// Which changes a client sees, and how.
struct Filter {
    tenant: String,
    types: Option<TypeExpr>,
    q: Option<haskap_query::eval::Compiled>,
    ctx: Arc<ActiveContext>,
    opts: RenderOptions,
}

impl Filter {
    /// The event of `c` for this client, if it selects it.
    fn event(&self, c: &Change, epoch: &str) -> Option<Event> {
        let e = &c.entity;
        if c.tenant != self.tenant
            || self.types.as_ref().is_some_and(|t| !t.matches(&e.types))
            || self.q.as_ref().is_some_and(|q| !q.matches(e))
        {
            return None;
        }
        let data = if c.deleted {
            json!({"id": e.id, "type": haskap_model::render::render_types(&e.types, &self.ctx), "deletedAt": format_micros(c.at)})
        } else {
            Value::Object(haskap_model::render::render_entity(e, &self.ctx, &self.opts))
        };
        let body = json!({"id": haskap_model::validate::fresh_urn("Notification"), "type": "Notification", "notifiedAt": format_micros(now_micros()), "data": [data]});
        Some(Event::default().event("notification").id(format!("{epoch}-{}", c.seq)).data(body.to_string()))
    }
}

/// Where a client is in the feed.
enum Phase {
    /// Reading the window, a chunk at a time.
    Replay,
    /// Reading the channel.
    Live(broadcast::Receiver<Arc<Change>>),
    /// Ended.
    Done,
}

/// A change a client has taken: live (decoded) or from the window (a record).
enum Chunked {
    Live(Arc<Change>),
    Kept(Arc<Kept>),
}

impl Chunked {
    /// The change, decoded.
    fn change(self) -> Option<Arc<Change>> {
        match self {
            Chunked::Live(c) => Some(c),
            Chunked::Kept(k) => {
                let entity = haskap_store::decode(&k.record)
                    .inspect_err(|e| tracing::warn!(error = %e, "a kept change could not be decoded"))
                    .ok()?;
                let (seq, tenant, deleted, at) = (k.seq, k.tenant.clone(), k.deleted, k.at);
                Some(Arc::new(Change { seq, tenant, entity: Arc::new(entity), deleted, at }))
            }
        }
    }

    fn seq(&self) -> u64 {
        match self {
            Chunked::Live(c) => c.seq,
            Chunked::Kept(k) => k.seq,
        }
    }

    fn tenant(&self) -> &str {
        match self {
            Chunked::Live(c) => &c.tenant,
            Chunked::Kept(k) => &k.tenant,
        }
    }
}

/// One stream client.
struct Client {
    app: AppState,
    filter: Filter,
    epoch: String,
    /// The number of the last change this client got to (shown or passed over).
    pos: u64,
    /// Changes taken from the window or the channel, not yet shown.
    chunk: VecDeque<Chunked>,
    phase: Phase,
    /// An event to send before any change (a `reset`).
    first: Option<Event>,
}

impl Client {
    /// The next event, waiting for one; `None` when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        if let Some(e) = self.first.take() {
            return Some(e);
        }
        loop {
            if let Some(c) = self.chunk.pop_front() {
                self.pos = c.seq();
                // Other tenants' changes are passed over without decoding them.
                if c.tenant() != self.filter.tenant {
                    continue;
                }
                match c.change().and_then(|c| self.filter.event(&c, &self.epoch)) {
                    Some(e) => return Some(e),
                    None => continue,
                }
            }
            match &mut self.phase {
                Phase::Done => return None,
                Phase::Replay => {
                    let w = self.app.stream.inner.lock();
                    if w.epoch != self.epoch || self.pos < w.evicted {
                        // The window moved past this client while it replayed, or the hub
                        // restarted.
                        drop(w);
                        return Some(self.overflow("the client fell behind while catching up"));
                    }
                    let first = w.evicted + 1;
                    let from = usize::try_from(self.pos + 1 - first).unwrap_or(usize::MAX);
                    let from = from.min(w.ring.len());
                    self.chunk.extend(w.ring.range(from..).take(CHUNK).cloned().map(Chunked::Kept));
                    if self.chunk.is_empty() {
                        // Caught up: from the next change on, the channel has everything.
                        self.phase = Phase::Live(w.tx.subscribe());
                    }
                }
                Phase::Live(rx) => match rx.recv().await {
                    Ok(c) => self.chunk.push_back(Chunked::Live(c)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return Some(self.overflow("the client fell behind the change feed"));
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Some(self.overflow("the change feed restarted"));
                    }
                },
            }
        }
    }

    /// The event that ends a client that fell behind: reconnect from `pos`.
    fn overflow(&mut self, why: &str) -> Event {
        self.phase = Phase::Done;
        self.chunk.clear();
        Event::default()
            .event("overflow")
            .id(format!("{}-{}", self.epoch, self.pos))
            .retry(RETRY)
            .data(json!({"reason": why, "reconnect": "with Last-Event-ID, to get every change missed"}).to_string())
    }
}

/// Where a client given `last` (a `Last-Event-ID`) starts: after `last` when the window still
/// holds every change since, else after the newest change, with a `reset` event.
fn start_at(hub: &Hub, last: Option<&str>) -> (String, u64, Option<Event>) {
    let w = hub.inner.lock();
    let epoch = w.epoch.clone();
    let Some(last) = last else { return (epoch, w.head, None) };
    let known = last
        .rsplit_once('-')
        .filter(|(e, _)| *e == epoch)
        .and_then(|(_, n)| n.parse::<u64>().ok())
        .filter(|n| (w.evicted..=w.head).contains(n));
    match known {
        Some(n) => (epoch, n, None),
        None => {
            let reset = Event::default()
                .event("reset")
                .id(format!("{epoch}-{}", w.head))
                .data(json!({"reason": "the Last-Event-ID is not in the replay window: changes may have been missed; reload"}).to_string());
            (epoch, w.head, Some(reset))
        }
    }
}

/// Opens the stream.
pub async fn open(Raw { app, method, uri, mut headers, body }: Raw) -> ApiResult<Response> {
    let query = headers_from_query(uri.query().unwrap_or(""), &mut headers)?;
    accept_event_stream(&mut headers)?;
    let last = headers
        .get("last-event-id")
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| ApiError(NgsiError::bad_data("invalid Last-Event-ID")))?;
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
    let filter = Filter { tenant: req.tenant.clone(), types, q, ctx: req.ctx.clone(), opts };
    app.stream.start(&app);
    let (epoch, pos, first) = start_at(&app.stream, last.as_deref());
    let client = Client { app: app.clone(), filter, epoch, pos, chunk: VecDeque::new(), phase: Phase::Replay, first };
    let events = futures_util::stream::unfold(client, |mut c| async move {
        let e = c.next().await?;
        Some((Ok::<Event, Infallible>(e), c))
    });
    let start = futures_util::stream::once(async {
        Ok::<Event, Infallible>(Event::default().comment("haskap stream").retry(RETRY))
    });
    let stream = futures_util::StreamExt::chain(start, events);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

/// Moves the `tenant`, `context` and `lastEventId` query parameters into the headers they stand
/// for (`Last-Event-ID` only when the header is not given), and returns the rest of the query.
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
            "lastEventId" => {
                let id = decoded().map_err(|_| bad("lastEventId"))?;
                if !headers.contains_key("last-event-id") {
                    headers.insert("last-event-id", id.parse().map_err(|_| bad("lastEventId"))?);
                }
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

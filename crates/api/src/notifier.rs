//! Sending notifications: every committed entity change is matched against the tenant's
//! subscriptions, and matching subscriptions are notified over HTTP or MQTT; subscriptions with a
//! `timeInterval` are notified periodically instead.
//!
//! Matching runs after commit, from the store's change feed, with compiled matchers indexed by
//! entity type (`haskap_notify::matcher`). For tenants with subscriptions the store also logs each
//! change in the same commit; a change is acknowledged only once every notification it owes is
//! delivered or given up (after the retry horizon), so notifications owed when the broker stops,
//! even by kill -9, are sent after the restart (at least once).
//!
//! No stored value can panic a task: durations are converted with checked conversions and
//! clamped (validation refuses them out of range; a value stored before it did is clamped with a
//! warning). The long-lived tasks (dispatcher, acknowledger, periodic sender) run under
//! [`supervise`], which logs a panic and restarts the task; a panic while delivering one
//! notification fails that notification only. A periodic subscription has at most one
//! notification in flight: while one is still being sent (retrying a slow or dead endpoint), the
//! ones that fall due are skipped and counted (`Stats::periodic_skipped`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use haskap_model::entity::Entity;
use haskap_model::jsonld::ActiveContext;
use haskap_model::render::{Format, RenderOptions, render_entity};
use haskap_model::validate::{format_micros, now_micros};
use haskap_notify::matcher::{Index, Matcher};
use haskap_notify::subscription::{
    CONTEXT_KEY, FORBIDDEN_HEADERS, MAX_SECONDS, is_header_name, is_header_value, status,
};
use haskap_store::ChangeEvent;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::AppState;
use crate::supervise::supervise;

/// Delivery counters of one subscription.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Notifications delivered.
    pub times_sent: u64,
    /// Notifications that could not be delivered.
    pub times_failed: u64,
    /// When the last notification was attempted (micros).
    pub last_notification: Option<i64>,
    /// When the last one was delivered.
    pub last_success: Option<i64>,
    /// When the last one failed.
    pub last_failure: Option<i64>,
    /// Periodic notifications skipped because the previous one was still being sent.
    pub periodic_skipped: u64,
}

/// Delivery counters by (tenant, subscription id).
#[derive(Default)]
pub struct Notifier {
    stats: Mutex<HashMap<(String, String), Stats>>,
    /// The periodic subscriptions with a notification being sent.
    periodic_in_flight: Mutex<HashSet<(String, String)>>,
}

impl Notifier {
    /// The counters of a subscription, if it ever notified.
    pub fn stats(&self, tenant: &str, id: &str) -> Option<Stats> {
        self.stats.lock().get(&(tenant.to_string(), id.to_string())).cloned()
    }

    /// Adds the counters to a rendered subscription.
    pub fn decorate(&self, tenant: &str, rendered: &mut Value) {
        let Some(id) = rendered.get("id").and_then(Value::as_str) else { return };
        let Some(st) = self.stats(tenant, id) else { return };
        let Some(Value::Object(n)) = rendered.get_mut("notification") else { return };
        n.insert("timesSent".into(), json!(st.times_sent));
        if st.times_failed > 0 {
            n.insert("timesFailed".into(), json!(st.times_failed));
        }
        let stamp = |t: Option<i64>| t.map(format_micros);
        for (k, v) in [
            ("lastNotification", stamp(st.last_notification)),
            ("lastSuccess", stamp(st.last_success)),
            ("lastFailure", stamp(st.last_failure)),
        ] {
            if let Some(v) = v {
                n.insert(k.into(), json!(v));
            }
        }
        let failing = st.last_failure > st.last_success;
        n.insert("status".into(), json!(if failing { "failed" } else { "ok" }));
        if failing && rendered.get("status") == Some(&json!("active")) {
            rendered["status"] = json!("failed");
        }
    }

    /// Records that a notification is being sent (`timesSent`, `lastNotification`), before its
    /// outcome is known.
    fn attempt(&self, tenant: &str, id: &str, at: i64) {
        let mut all = self.stats.lock();
        let st = all.entry((tenant.to_string(), id.to_string())).or_default();
        st.times_sent += 1;
        st.last_notification = Some(at);
    }

    /// Whether a periodic notification of `key` is being sent; if not, marks one as being sent.
    /// Counts a skipped notification when one is.
    fn start_periodic(&self, key: &(String, String)) -> bool {
        if self.periodic_in_flight.lock().insert(key.clone()) {
            return true;
        }
        self.stats.lock().entry(key.clone()).or_default().periodic_skipped += 1;
        false
    }

    fn record(&self, tenant: &str, id: &str, ok: bool, at: i64) {
        let mut all = self.stats.lock();
        let st = all.entry((tenant.to_string(), id.to_string())).or_default();
        if ok {
            st.last_success = Some(at);
        } else {
            st.times_failed += 1;
            st.last_failure = Some(at);
        }
    }
}

/// A periodic notification being sent: while it lives, no other is started for its subscription.
/// Dropping it (when the send ends, or unwinds) lets the next one go.
struct InFlight {
    app: AppState,
    key: (String, String),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.app.notifier.periodic_in_flight.lock().remove(&self.key);
    }
}

/// A stored `timeInterval` or `throttling` (seconds) as a duration, clamped to between `min` and
/// [`MAX_SECONDS`]; `None` if it is not a number. The flag tells whether it had to be clamped:
/// validation refuses such values, so only one stored before it did can be.
fn stored_seconds(v: Option<&Value>, min: f64) -> Option<(Duration, bool)> {
    let n = v?.as_f64()?;
    let clamped = if n.is_nan() { min } else { n.clamp(min, MAX_SECONDS) };
    let d = Duration::try_from_secs_f64(clamped).unwrap_or(Duration::from_secs(MAX_SECONDS as u64));
    Some((d, clamped != n && !(n > 0.0 && n < min)))
}

/// Most notifications waiting for one subscription; beyond it new ones are dropped (and counted
/// as failed), so a dead receiver costs bounded memory.
const QUEUE: usize = 10_000;

/// One notification waiting in a subscription's queue, with the change it is owed for.
struct Pending {
    sub: Arc<Value>,
    ev: ChangeEvent,
}

/// Which logged changes still owe notifications; what is before the first that does is
/// acknowledged to the store, so that a restart resends exactly what was not delivered.
#[derive(Default)]
struct Tracker {
    outstanding: Mutex<std::collections::BTreeMap<u64, usize>>,
    acknowledged: Mutex<u64>,
}

impl Tracker {
    fn owe(&self, seq: u64, n: usize) {
        *self.outstanding.lock().entry(seq).or_default() += n;
    }
    fn done(&self, seq: u64) {
        let mut o = self.outstanding.lock();
        if let Some(n) = o.get_mut(&seq) {
            *n = n.saturating_sub(1);
        }
    }
    /// The highest sequence number up to which nothing is owed, if it moved.
    fn advance(&self) -> Option<u64> {
        let mut o = self.outstanding.lock();
        let mut upto = None;
        while let Some((&seq, &n)) = o.iter().next() {
            if n > 0 {
                break;
            }
            upto = Some(seq);
            o.remove(&seq);
        }
        let mut acked = self.acknowledged.lock();
        match upto {
            Some(u) if u > *acked => {
                *acked = u;
                Some(u)
            }
            _ => None,
        }
    }
}

/// Starts matching and delivering for the life of the process: first the changes whose
/// notifications were still owed when the broker stopped, then every new commit. Each
/// subscription has its own queue and worker: its notifications go out in commit order, and a
/// slow or dead receiver holds back nobody else.
pub fn spawn(app: AppState) {
    let tracker = Arc::new(Tracker::default());
    let (acker, store) = (tracker.clone(), app.store.clone());
    supervise("notification acknowledger", move || acknowledger(acker.clone(), store.clone()));
    let periodic_app = app.clone();
    supervise("periodic notifications", move || periodic(periodic_app.clone()));
    supervise("notification dispatcher", move || {
        // The feed is taken before the owed changes are read, so that no change falls between.
        let rx = app.store.changes();
        dispatcher(app.clone(), tracker.clone(), rx)
    });
}

/// Acknowledges to the store, every 200 ms, the logged changes that owe nothing more.
async fn acknowledger(tracker: Arc<Tracker>, store: haskap_store::Store) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(seq) = tracker.advance() {
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || store.acknowledge(seq)).await;
        }
    }
}

/// Dispatches the changes whose notifications are still owed (after a stop, or after this task
/// failed and was restarted), then every change of `rx`.
async fn dispatcher(
    app: AppState,
    tracker: Arc<Tracker>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Arc<Vec<ChangeEvent>>>,
) {
    let store = app.store.clone();
    let owed = match tokio::task::spawn_blocking(move || store.unacknowledged()).await {
        Ok(Ok(owed)) => owed,
        failed => {
            let error = failed.map_or_else(|e| e.to_string(), |r| r.err().map(|e| e.to_string()).unwrap_or_default());
            tracing::error!(%error, "owed notifications could not be read");
            Vec::new()
        }
    };
    let mut queues: HashMap<(String, String), tokio::sync::mpsc::Sender<Pending>> = HashMap::new();
    let mut registries = HashMap::new();
    let replayed = owed.last().and_then(|e| e.seq).unwrap_or(0);
    if !owed.is_empty() {
        tracing::info!(changes = owed.len(), "resending notifications owed before the last stop");
    }
    for ev in owed {
        dispatch(&app, &tracker, &mut queues, &mut registries, ev).await;
    }
    while let Some(events) = rx.recv().await {
        for ev in events.iter().filter(|e| e.seq.is_none_or(|s| s > replayed)) {
            dispatch(&app, &tracker, &mut queues, &mut registries, ev.clone()).await;
        }
    }
}

/// Sends the notifications of subscriptions with a `timeInterval`: every entity they select, each
/// time their interval has passed. At most one is in flight per subscription: one that falls due
/// while the previous one is still being sent is skipped (and counted).
async fn periodic(app: AppState) {
    let mut last: HashMap<(String, String), tokio::time::Instant> = HashMap::new();
    // Subscriptions already warned about: a clamped interval, skipped notifications.
    let mut clamped: HashSet<(String, String)> = HashSet::new();
    let mut skipping: HashSet<(String, String)> = HashSet::new();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = now_micros();
        let subs: Vec<(String, Arc<Value>)> = app.store.read(|s| {
            s.tenants
                .iter()
                .flat_map(|(t, ten)| ten.subscriptions.values().map(move |v| (t.clone(), v.clone())))
                .filter(|(_, v)| v.get("timeInterval").is_some() && status(v, now) == "active")
                .collect()
        });
        let live: HashSet<(&str, &str)> =
            subs.iter().filter_map(|(t, v)| Some((t.as_str(), v.get("id")?.as_str()?))).collect();
        let gone = |k: &(String, String)| !live.contains(&(k.0.as_str(), k.1.as_str()));
        last.retain(|k, _| !gone(k));
        clamped.retain(|k| !gone(k));
        skipping.retain(|k| !gone(k));
        for (tenant, sub) in subs {
            let Some(id) = sub.get("id").and_then(Value::as_str).map(str::to_string) else { continue };
            let key = (tenant.clone(), id);
            let (every, was_clamped) =
                stored_seconds(sub.get("timeInterval"), 0.1).unwrap_or((Duration::from_secs(60), true));
            if was_clamped && clamped.insert(key.clone()) {
                tracing::warn!(subscription = %key.1, interval = ?sub.get("timeInterval"), "stored timeInterval out of range; clamped");
            }
            if last.get(&key).is_some_and(|t| t.elapsed() < every) {
                continue;
            }
            last.insert(key.clone(), tokio::time::Instant::now());
            if !app.notifier.start_periodic(&key) {
                if skipping.insert(key.clone()) {
                    tracing::warn!(subscription = %key.1, "periodic notification skipped: the previous one is still being sent");
                }
                continue;
            }
            skipping.remove(&key);
            let guard = InFlight { app: app.clone(), key };
            let ctx = context(&app, &tenant, &sub).await;
            let opts = render_options(&sub);
            let matcher = Matcher::compile(&sub, &ctx);
            let data: Vec<Value> = app.store.read(|s| {
                let Some(t) = s.tenants.get(&tenant) else { return Vec::new() };
                t.iter()
                    .filter(|e| matcher.selects(e))
                    .take(1000)
                    .map(|e| {
                        let mut m = render_entity(&e, &ctx, &opts);
                        project(&sub, &mut m);
                        Value::Object(m)
                    })
                    .collect()
            });
            if !data.is_empty() {
                let app = app.clone();
                tokio::spawn(async move {
                    send(&app, &sub, &tenant, data).await;
                    drop(guard);
                });
            }
        }
    }
}

/// Matches one change against the tenant's subscriptions and queues what it owes. Only the
/// subscriptions that can select the entity's types are tried, with matchers compiled once per
/// subscription version (`registries`, rebuilt when the tenant's subscriptions change).
async fn dispatch(
    app: &AppState,
    tracker: &Arc<Tracker>,
    queues: &mut HashMap<(String, String), tokio::sync::mpsc::Sender<Pending>>,
    registries: &mut HashMap<String, (u64, Index)>,
    ev: ChangeEvent,
) {
    let version = registries.get(&ev.tenant).map(|(v, _)| *v);
    let owed = owed_by(app, registries, &ev).await;
    if registries.get(&ev.tenant).map(|(v, _)| *v) != version {
        // The tenant's subscriptions changed: the queues of deleted ones are dropped, and their
        // workers end once they have settled what is queued.
        let live: std::collections::HashSet<String> = app
            .store
            .read(|s| s.tenants.get(&ev.tenant).map(|t| t.subscriptions.keys().cloned().collect()))
            .unwrap_or_default();
        queues.retain(|(tenant, id), _| *tenant != ev.tenant || live.contains(id));
    }
    if let Some(seq) = ev.seq {
        tracker.owe(seq, owed.len());
    }
    for sub in owed {
        let Some(id) = sub.get("id").and_then(Value::as_str).map(str::to_string) else {
            // Owed but undeliverable: settled at once, or the change would never be acknowledged.
            if let Some(seq) = ev.seq {
                tracker.done(seq);
            }
            continue;
        };
        let key = (ev.tenant.clone(), id);
        let tx = queues.entry(key.clone()).or_insert_with(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
            tokio::spawn(worker(app.clone(), tracker.clone(), rx));
            tx
        });
        if tx.try_send(Pending { sub, ev: ev.clone() }).is_err() {
            tracing::warn!(subscription = %key.1, "notification queue full; notification dropped");
            app.notifier.record(&key.0, &key.1, false, now_micros());
            if let Some(seq) = ev.seq {
                tracker.done(seq);
            }
        }
    }
}

/// The subscriptions `ev` must be notified to.
async fn owed_by(app: &AppState, registries: &mut HashMap<String, (u64, Index)>, ev: &ChangeEvent) -> Vec<Arc<Value>> {
    let version = app.store.read(|s| s.tenants.get(&ev.tenant).map(|t| t.subscriptions_version));
    let (Some(version), Some(entity)) = (version, ev.new.as_deref().or(ev.old.as_deref())) else { return Vec::new() };
    if registries.get(&ev.tenant).is_none_or(|(v, _)| *v != version) {
        let index = registry(app, &ev.tenant, registries.remove(&ev.tenant).map(|(_, i)| i)).await;
        registries.insert(ev.tenant.clone(), (version, index));
    }
    let index = &registries[&ev.tenant].1;
    let mut types: Vec<&String> = ev.new.iter().chain(ev.old.iter()).flat_map(|e| e.types.iter()).collect();
    types.dedup();
    let now = now_micros();
    index
        .candidates(&entity.id, &types)
        .filter(|(_, m)| m.on_change(ev.old.as_deref(), ev.new.as_deref(), now).is_some())
        .map(|(sub, _)| sub.clone())
        .collect()
}

/// Most changes carried by one notification.
const BATCH: usize = 100;

/// Delivers one subscription's notifications in order, spacing them by its `throttling`. What
/// queued up while a notification was on its way goes out together, as one notification with
/// several entities, so a busy subscription keeps up with the writes.
async fn worker(app: AppState, tracker: Arc<Tracker>, mut rx: tokio::sync::mpsc::Receiver<Pending>) {
    let mut last: Option<tokio::time::Instant> = None;
    let mut carried: Option<Pending> = None;
    let mut warned = false;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        if let (Some((t, was_clamped)), Some(prev)) = (stored_seconds(first.sub.get("throttling"), 0.0), last) {
            if was_clamped && !std::mem::replace(&mut warned, true) {
                tracing::warn!(throttling = ?first.sub.get("throttling"), "stored throttling out of range; clamped");
            }
            tokio::time::sleep(t.saturating_sub(prev.elapsed())).await;
        }
        last = Some(tokio::time::Instant::now());
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                // A subscription updated meanwhile is notified in its new form, separately.
                Ok(p) if Arc::ptr_eq(&p.sub, &batch[0].sub) => batch.push(p),
                Ok(p) => {
                    carried = Some(p);
                    break;
                }
                Err(_) => break,
            }
        }
        let seqs: Vec<u64> = batch.iter().filter_map(|p| p.ev.seq).collect();
        // A subscription deleted meanwhile is owed nothing more.
        if exists(&app, &batch[0]) {
            // In a task of its own, so that a panic fails this notification only (and is logged).
            let tenant = batch[0].ev.tenant.clone();
            let id = batch[0].sub.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            let task_app = app.clone();
            if let Err(e) = tokio::spawn(async move { deliver(&task_app, &batch).await }).await {
                tracing::error!(subscription = %id, error = %e, "delivering a notification failed");
                app.notifier.record(&tenant, &id, false, now_micros());
            }
        }
        for seq in seqs {
            tracker.done(seq);
        }
    }
}

/// Whether the subscription a notification is queued for still exists.
fn exists(app: &AppState, p: &Pending) -> bool {
    let Some(id) = p.sub.get("id").and_then(Value::as_str) else { return false };
    app.store.read(|s| s.tenants.get(&p.ev.tenant).is_some_and(|t| t.subscriptions.contains_key(id)))
}

/// The matcher index of a tenant's subscriptions, reusing the matchers of `previous` for the
/// subscriptions that did not change.
async fn registry(app: &AppState, tenant: &str, previous: Option<Index>) -> Index {
    let subs: Vec<Arc<Value>> = app
        .store
        .read(|s| s.tenants.get(tenant).map(|t| t.subscriptions.values().cloned().collect()).unwrap_or_default());
    let previous = previous.unwrap_or_default();
    let mut entries = Vec::with_capacity(subs.len());
    for sub in subs {
        let matcher = match previous.reuse(&sub) {
            Some(m) => m,
            None => Arc::new(Matcher::compile(&sub, &*context(app, tenant, &sub).await)),
        };
        entries.push((sub, matcher));
    }
    Index::new(entries)
}

/// The @context member a subscription's notifications are in: its `jsonldContext` if it has
/// one, else the @context it was created with.
fn context_member(sub: &Value) -> Option<&Value> {
    sub.get("jsonldContext").or_else(|| sub.get(CONTEXT_KEY))
}

/// The @context a subscription's names and notifications are in ([`context_member`], resolved).
async fn context(app: &AppState, tenant: &str, sub: &Value) -> Arc<ActiveContext> {
    match context_member(sub) {
        Some(c) => app.contexts.resolve(tenant, c).await.unwrap_or_else(|_| app.contexts.core()),
        None => app.contexts.core(),
    }
}

/// Applies the subscription's `notification.pick` and `notification.omit` (member names as the
/// subscription wrote them) to a rendered entity; the id always stays.
fn project(sub: &Value, m: &mut serde_json::Map<String, Value>) {
    let names = |k: &str| -> Option<Vec<String>> {
        let list = sub.get("notification")?.get(k)?;
        Some(match list {
            Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Value::String(s) => s.split(',').map(|p| p.trim().to_string()).collect(),
            _ => Vec::new(),
        })
    };
    if let Some(pick) = names("pick") {
        m.retain(|k, _| k == "id" || pick.contains(k));
    }
    if let Some(omit) = names("omit") {
        m.retain(|k, _| k == "id" || !omit.contains(k));
    }
}

/// How a subscription wants entities rendered in its notifications.
fn render_options(sub: &Value) -> RenderOptions {
    let notification = sub.get("notification").cloned().unwrap_or(Value::Null);
    let format = match notification.get("format").and_then(Value::as_str) {
        Some("keyValues" | "simplified") => Format::KeyValues,
        Some("concise") => Format::Concise,
        _ => Format::Normalized,
    };
    let attrs = notification
        .get("attributes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect());
    let dataset_ids = sub
        .get("datasetId")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).map(|d| (d != "@none").then(|| d.to_string())).collect());
    let sys_attrs = notification.get("sysAttrs") == Some(&json!(true));
    RenderOptions { format, sys_attrs, attrs, dataset_ids, ..Default::default() }
}

/// Notifies a subscription of changes (all of the same subscription), in one notification.
async fn deliver(app: &AppState, batch: &[Pending]) {
    let Some(sub) = batch.first().map(|p| p.sub.clone()) else { return };
    let ctx = context(app, &batch[0].ev.tenant, &sub).await;
    let opts = render_options(&sub);
    let show = sub.get("notification").and_then(|n| n.get("showChanges")) == Some(&json!(true));
    let notification = sub.get("notification").cloned().unwrap_or(Value::Null);
    let view = crate::view::View::notification(
        opts.clone(),
        notification.get("join").and_then(Value::as_str),
        notification.get("joinLevel").and_then(Value::as_u64),
    );
    if view.joins() {
        // Linked entities joined, inline or flat, as a query would show them.
        let tenant = &batch[0].ev.tenant;
        let source = crate::view::Source { store: &app.store, tenant, ctx: &ctx };
        let current: Vec<Entity> = batch.iter().filter_map(|p| p.ev.new.as_deref().cloned()).collect();
        let mut data = view.render_all(&source, &current);
        data.extend(
            batch.iter().filter(|p| p.ev.new.is_none()).map(|p| deleted(p.ev.old.as_deref(), &ctx, &opts, show)),
        );
        return send(app, &sub, tenant, data).await;
    }
    let data = batch
        .iter()
        .map(|p| match &p.ev.new {
            Some(e) => {
                let mut m = render_entity(e, &ctx, &opts);
                // Notifications carry the entity's system attributes in every format.
                if opts.sys_attrs && opts.format == Format::KeyValues {
                    m.insert("createdAt".into(), json!(format_micros(e.created_at)));
                    m.insert("modifiedAt".into(), json!(format_micros(e.modified_at)));
                }
                if let Some(old) = p.ev.old.as_deref() {
                    mark_deleted(&mut m, old, e, &ctx, &opts);
                    if show && opts.format == Format::Normalized {
                        show_changes(&mut m, old, e, &ctx, &opts);
                    }
                }
                project(&sub, &mut m);
                Value::Object(m)
            }
            None => {
                let mut d = deleted(p.ev.old.as_deref(), &ctx, &opts, show);
                if let (Some(old), Value::Object(m), false) = (p.ev.old.as_deref(), &mut d, show) {
                    mark_deleted_with_entity(m, old, &sub, &ctx, &opts);
                }
                d
            }
        })
        .collect();
    send(app, &sub, &batch[0].ev.tenant, data).await;
}

/// Shows the attributes the change deleted, as `urn:ngsi-ld:null` (the standard's way of saying
/// "deleted" in a notification).
fn mark_deleted(
    m: &mut serde_json::Map<String, Value>,
    old: &Entity,
    new: &Entity,
    ctx: &ActiveContext,
    opts: &RenderOptions,
) {
    show_deleted(m, old.attrs.iter().filter(|(n, _)| !new.attrs.contains_key(*n)), ctx, opts);
}

/// Shows each of `gone` (attribute name, its instances before) as deleted.
fn show_deleted<'a>(
    m: &mut serde_json::Map<String, Value>,
    gone: impl Iterator<Item = (&'a String, &'a Vec<haskap_model::Attribute>)>,
    ctx: &ActiveContext,
    opts: &RenderOptions,
) {
    for (name, before) in gone {
        if opts.attrs.as_ref().is_some_and(|a| !a.contains(name)) {
            continue;
        }
        let Some(b) = before.first() else { continue };
        let shown = match opts.format {
            Format::KeyValues => json!(haskap_model::parse::NGSI_LD_NULL),
            _ => json!({"type": b.kind.name(), b.kind.value_key(): deleted_member(b.kind)}),
        };
        m.insert(ctx.compact(name), shown);
    }
}

/// For attributeDeleted subscriptions, shows the watched attributes (all, without a watch list) a
/// deleted entity had as deleted.
fn mark_deleted_with_entity(
    m: &mut serde_json::Map<String, Value>,
    old: &Entity,
    sub: &Value,
    ctx: &ActiveContext,
    opts: &RenderOptions,
) {
    let triggers = sub.get("notificationTrigger").and_then(Value::as_array);
    if !triggers.is_some_and(|t| t.iter().any(|x| x == "attributeDeleted")) {
        return;
    }
    let watched: Option<Vec<&str>> =
        sub.get("watchedAttributes").and_then(Value::as_array).map(|w| w.iter().filter_map(Value::as_str).collect());
    let gone = old.attrs.iter().filter(|(name, _)| watched.as_ref().is_none_or(|w| w.contains(&name.as_str())));
    show_deleted(m, gone, ctx, opts);
}

/// Adds the previous values (`previousValue`, `previousObject`, ...) of changed attributes to a
/// rendered entity, and shows deleted attributes as `urn:ngsi-ld:null` with their previous value.
fn show_changes(
    m: &mut serde_json::Map<String, Value>,
    old: &Entity,
    new: &Entity,
    ctx: &ActiveContext,
    opts: &RenderOptions,
) {
    for (name, before) in &old.attrs {
        if opts.attrs.as_ref().is_some_and(|a| !a.contains(name)) {
            continue;
        }
        let Some(b) = before.first() else { continue };
        let key = b.kind.value_key();
        let previous = previous_key(b.kind);
        let key_name = ctx.compact(name);
        match new.attrs.get(name).and_then(|a| a.first()) {
            None => {
                m.insert(
                    key_name,
                    json!({"type": b.kind.name(), key: deleted_member(b.kind), previous: previous_of(b, ctx)}),
                );
            }
            Some(a) if a.value != b.value => {
                if let Some(Value::Object(attr)) = m.get_mut(&key_name) {
                    attr.insert(previous, previous_of(b, ctx));
                }
            }
            _ => {}
        }
    }
}

/// What stands in a deleted attribute's value member: `urn:ngsi-ld:null` (in a language map for a
/// LanguageProperty).
fn deleted_member(kind: haskap_model::AttrKind) -> Value {
    let marker = haskap_model::parse::NGSI_LD_NULL;
    match kind {
        haskap_model::AttrKind::LanguageProperty => json!({"@none": marker}),
        _ => json!(marker),
    }
}

/// The member holding a previous value: `previousValue`, `previousObject`, `previousLanguageMap`...
fn previous_key(kind: haskap_model::AttrKind) -> String {
    let key = kind.value_key();
    format!("previous{}{}", key[..1].to_uppercase(), &key[1..])
}

/// An attribute's value as its previous value in a notification (vocabulary IRIs compacted).
fn previous_of(a: &haskap_model::Attribute, ctx: &ActiveContext) -> Value {
    match (&a.kind, &a.value) {
        (haskap_model::AttrKind::VocabProperty, Value::String(v)) => json!(ctx.compact(v)),
        (haskap_model::AttrKind::VocabProperty, Value::Array(vs)) => {
            vs.iter().map(|v| v.as_str().map_or(v.clone(), |v| json!(ctx.compact(v)))).collect()
        }
        (_, v) => v.clone(),
    }
}

/// POSTs a Notification with `data` to the subscription's endpoint, retrying up to the horizon,
/// and records the outcome.
async fn send(app: &AppState, sub: &Value, tenant: &str, data: Vec<Value>) {
    let Some(id) = sub.get("id").and_then(Value::as_str).map(str::to_string) else { return };
    let notification = sub.get("notification").cloned().unwrap_or(Value::Null);
    let endpoint = notification.get("endpoint").cloned().unwrap_or(Value::Null);
    let uri = endpoint.get("uri").and_then(Value::as_str).unwrap_or_default().to_string();
    let ld = endpoint.get("accept").and_then(Value::as_str) == Some("application/ld+json");
    let now = now_micros();
    app.notifier.attempt(tenant, &id, now);
    let context = context_member(sub).cloned();
    let context_url = match &context {
        Some(Value::String(u)) => u.clone(),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => a[0].as_str().unwrap_or_default().to_string(),
        _ => haskap_model::builtin::CORE_CONTEXT_URL.to_string(),
    };
    let mut body = json!({
        "id": haskap_model::validate::fresh_urn("Notification"),
        "type": "Notification",
        "subscriptionId": id,
        "notifiedAt": format_micros(now),
        "data": data,
    });
    if ld {
        // In JSON-LD, the notification and each entity in it carry the @context.
        let ctx = match &context {
            Some(Value::Array(a)) if a.len() == 1 => json!(context_url),
            Some(c) => c.clone(),
            None => json!(context_url),
        };
        for e in body["data"].as_array_mut().into_iter().flatten() {
            if let Value::Object(m) = e {
                m.insert("@context".into(), ctx.clone());
            }
        }
        body["@context"] = ctx;
    }
    let link = crate::response::context_link(&context_url);
    let ok = if uri.starts_with("mqtt://") || uri.starts_with("mqtts://") {
        let qos = endpoint
            .get("notifierInfo")
            .and_then(Value::as_array)
            .and_then(|i| i.iter().find(|kv| kv.get("key").and_then(Value::as_str) == Some("MQTT-QoS")))
            .and_then(|kv| kv.get("value").and_then(Value::as_str).and_then(|v| v.parse::<u8>().ok()))
            .unwrap_or(0);
        let mut metadata = json!({"Content-Type": if ld { "application/ld+json" } else { "application/json" }});
        if !ld {
            metadata["Link"] = json!(link);
        }
        let payload = json!({"metadata": metadata, "body": body}).to_string().into_bytes();
        with_retries(app, tenant, &id, || publish_mqtt(&uri, qos, payload.clone(), &app.mqtt_tls)).await
    } else if uri.starts_with("http://") || uri.starts_with("https://") {
        let body = body.to_string();
        let headers = receiver_headers(&id, &endpoint);
        with_retries(app, tenant, &id, || {
            let mut rb = app.http.post(&uri).timeout(Duration::from_secs(10)).body(body.clone());
            rb = if ld {
                rb.header("Content-Type", "application/ld+json")
            } else {
                rb.header("Content-Type", "application/json").header("Link", &link)
            };
            if !tenant.is_empty() {
                rb = rb.header("NGSILD-Tenant", tenant);
            }
            for (k, v) in &headers {
                rb = rb.header(k, v);
            }
            async move {
                match rb.send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("the receiver answered {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await
    } else {
        tracing::warn!(subscription = %id, %uri, "only http, https, mqtt and mqtts endpoints are supported");
        app.notifier.record(tenant, &id, false, now);
        false
    };
    if ok {
        app.notifier.record(tenant, &id, true, now);
    }
}

/// The headers `receiverInfo` adds to a notification. Validation refuses the framing and
/// hop-by-hop headers the HTTP client owns, and names and values that are not valid; a stored one
/// from before it did is left out, with a warning.
fn receiver_headers(id: &str, endpoint: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for info in endpoint.get("receiverInfo").and_then(Value::as_array).into_iter().flatten() {
        let (Some(k), Some(v)) = (info.get("key").and_then(Value::as_str), info.get("value").and_then(Value::as_str))
        else {
            continue;
        };
        if !is_header_name(k) || !is_header_value(v) || FORBIDDEN_HEADERS.iter().any(|f| f.eq_ignore_ascii_case(k)) {
            tracing::warn!(subscription = %id, header = %k, "receiverInfo header not allowed; left out");
            continue;
        }
        out.push((k.to_string(), v.to_string()));
    }
    out
}

/// Runs `attempt` until it succeeds, with exponential backoff (0.2 s doubling, at most 30 s
/// apart), giving up when the next try would fall beyond the notification horizon. Each failed
/// attempt is recorded at once (`lastFailure`, status `failed`), as the standard asks.
async fn with_retries<F, Fut>(app: &AppState, tenant: &str, subscription: &str, mut attempt: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let give_up = tokio::time::Instant::now() + app.config.notify_horizon;
    for n in 0u32.. {
        match attempt().await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(%subscription, error = %e, "notification not delivered");
                app.notifier.record(tenant, subscription, false, now_micros());
            }
        }
        let backoff = Duration::from_millis(200u64 << n.min(8)).min(Duration::from_secs(30));
        if tokio::time::Instant::now() + backoff > give_up {
            break;
        }
        tokio::time::sleep(backoff).await;
    }
    false
}

/// The TLS client settings of `mqtts://` notifications: the public roots (webpki) plus the
/// certificates of `ca_file` (PEM), if given.
pub fn mqtt_tls(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, haskap_model::NgsiError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |e: String| haskap_model::NgsiError::internal(format!("MQTT TLS settings: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        for cert in certs {
            roots.add(cert.map_err(|e| bad(format!("{}: {e}", path.display())))?).map_err(|e| bad(e.to_string()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Publishes one message to `mqtt[s]://[user:password@]host[:port]/topic` and waits until the broker
/// has it (PUBACK for QoS 1, PUBCOMP for QoS 2).
async fn publish_mqtt(uri: &str, qos: u8, payload: Vec<u8>, tls: &Arc<rustls::ClientConfig>) -> Result<(), String> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
    let (secure, rest) = match (uri.strip_prefix("mqtts://"), uri.strip_prefix("mqtt://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err("not an mqtt:// or mqtts:// URI".into()),
    };
    let (authority, topic) = rest.split_once('/').ok_or("the URI has no topic")?;
    let (creds, hostport) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| "bad port")?),
        None => (hostport, if secure { 8883 } else { 1883 }),
    };
    // A client id of its own: the broker disconnects an older client with the same id.
    static CLIENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut opts = MqttOptions::new(format!("haskap-{:x}-{n:x}", now_micros()), host, port);
    opts.set_keep_alive(Duration::from_secs(5));
    if secure {
        opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls.clone())));
    }
    if let Some((user, password)) = creds.and_then(|c| c.split_once(':')) {
        opts.set_credentials(user, password);
    }
    let level = match qos {
        2 => QoS::ExactlyOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::AtMostOnce,
    };
    let (client, mut events) = AsyncClient::new(opts, 10);
    client.publish(topic, level, false, payload).await.map_err(|e| e.to_string())?;
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(_))) if level == QoS::AtMostOnce => return Ok(()),
                Ok(Event::Incoming(Packet::PubAck(_))) if level == QoS::AtLeastOnce => return Ok(()),
                Ok(Event::Incoming(Packet::PubComp(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "the MQTT broker did not answer in time".to_string())?;
    let _ = client.disconnect().await;
    done
}

/// What a notification carries for a deleted entity: its id and type, and when.
fn deleted(old: Option<&Entity>, ctx: &ActiveContext, opts: &RenderOptions, show_changes: bool) -> Value {
    let Some(e) = old else { return Value::Null };
    let mut m = json!({"id": e.id, "type": haskap_model::render::render_types(&e.types, ctx), "deletedAt": format_micros(now_micros())});
    if opts.sys_attrs {
        m["createdAt"] = json!(format_micros(e.created_at));
        m["modifiedAt"] = json!(format_micros(e.modified_at));
    }
    if show_changes {
        // Every attribute it had, as deleted, with its previous value.
        for (name, instances) in &e.attrs {
            let Some(b) = instances.first() else { continue };
            if opts.attrs.as_ref().is_some_and(|a| !a.contains(name)) {
                continue;
            }
            let key = b.kind.value_key();
            let previous = previous_key(b.kind);
            m[ctx.compact(name)] =
                json!({"type": b.kind.name(), key: haskap_model::parse::NGSI_LD_NULL, previous: previous_of(b, ctx)});
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a stored `timeInterval` or `throttling` of 1e20 panicked the notifier
    /// (`Duration::from_secs_f64`); any stored value now gives a duration.
    #[test]
    fn stored_durations_never_panic() {
        let max = Duration::from_secs(MAX_SECONDS as u64);
        assert_eq!(stored_seconds(Some(&json!(1e20)), 0.1), Some((max, true)));
        assert_eq!(stored_seconds(Some(&json!(u64::MAX)), 0.0), Some((max, true)));
        assert_eq!(stored_seconds(Some(&json!(-5)), 0.1), Some((Duration::from_millis(100), true)));
        assert_eq!(stored_seconds(Some(&json!(0.05)), 0.1), Some((Duration::from_millis(100), false)));
        assert_eq!(stored_seconds(Some(&json!(2.5)), 0.1), Some((Duration::from_millis(2500), false)));
        assert_eq!(stored_seconds(Some(&json!("60")), 0.1), None);
        assert_eq!(stored_seconds(None, 0.1), None);
    }

    /// A stored `receiverInfo` from before validation refused framing headers does not reach the
    /// request.
    #[test]
    fn stored_forbidden_receiver_headers_are_left_out() {
        let endpoint = json!({"receiverInfo": [
            {"key": "X-Token", "value": "t"},
            {"key": "Content-Length", "value": "0"},
            {"key": "Bad Name", "value": "x"},
            {"key": "X-Split", "value": "a\r\nHost: x"},
        ]});
        assert_eq!(receiver_headers("s", &endpoint), vec![("X-Token".to_string(), "t".to_string())]);
    }
}

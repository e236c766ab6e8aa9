//! The single writer: gathers queued requests into a group, runs them in one [`Txn`], commits
//! the group durably, publishes it, then answers every request of the group.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use parking_lot::RwLockReadGuard;

use haskap_model::Entity;
use haskap_model::ops::Change;

use crate::disk::Put;
use crate::record::encode;
use crate::state::{Encoded, Keys, State};
use crate::{ChangeEvent, Shared, StoreError};

/// Called once the group is committed (or failed), to answer the request.
pub(crate) type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A request's work inside the writer.
pub(crate) type Job = Box<dyn FnOnce(&mut Txn<'_>) -> Finish + Send>;

/// A (tenant, id) pair.
type Key = (String, String);

/// A new version of an entity: decoded for later operations of the group, encoded for disk and
/// readers.
type Version = (Arc<Entity>, Encoded);

/// A transaction: the committed state plus the changes of the group so far.
pub struct Txn<'a> {
    state: RwLockReadGuard<'a, State>,
    /// Entity versions written by this group: `None` is a deletion.
    pending: HashMap<(String, String), Option<Version>>,
    /// Committed versions already decoded by `get`, so that the commit does not decode them again.
    originals: std::cell::RefCell<HashMap<Key, Option<Arc<Entity>>>>,
    /// The keys of `pending` in the order they were first written, so that entities get slots
    /// (and thus result order) in the order requests made them.
    order: Vec<(String, String)>,
    /// The first encoding failure of the group, which fails the whole group.
    failed: Option<StoreError>,
    /// Tenants created by this group, in order.
    new_tenants: Vec<String>,
    /// Subscriptions written by this group: `None` is a deletion.
    subscriptions: Vec<(Key, Option<Arc<serde_json::Value>>)>,
    /// Every change in the order it was made, so that each write is one change event, even when
    /// the group writes the same entity several times.
    steps: Vec<(Key, Option<Version>)>,
    pub(crate) stop: bool,
}

impl Txn<'_> {
    /// The entity as this transaction sees it.
    pub fn get(&self, tenant: &str, id: &str) -> Option<Arc<Entity>> {
        let key = (tenant.to_string(), id.to_string());
        if let Some(v) = self.pending.get(&key) {
            return v.as_ref().map(|(e, _)| e.clone());
        }
        if let Some(e) = self.originals.borrow().get(&key) {
            return e.clone();
        }
        let e = self.state.tenants.get(tenant)?.get(id);
        self.originals.borrow_mut().insert(key, e.clone());
        e
    }

    /// The subscription `id` of `tenant` as this transaction sees it.
    pub fn subscription(&self, tenant: &str, id: &str) -> Option<Arc<serde_json::Value>> {
        if let Some((_, v)) = self.subscriptions.iter().rev().find(|((t, i), _)| t == tenant && i == id) {
            return v.clone();
        }
        self.state.tenants.get(tenant)?.subscriptions.get(id).cloned()
    }

    /// Stores (or with `None` deletes) subscription `id` of `tenant`.
    pub fn put_subscription(&mut self, tenant: &str, id: &str, sub: Option<serde_json::Value>) {
        self.touch_tenant(tenant);
        self.subscriptions.push(((tenant.to_string(), id.to_string()), sub.map(Arc::new)));
    }

    fn touch_tenant(&mut self, tenant: &str) {
        if !self.state.tenants.contains_key(tenant) && !self.new_tenants.iter().any(|t| t == tenant) {
            self.new_tenants.push(tenant.to_string());
        }
    }

    /// Records a change to entity `id` of `tenant`; the tenant is created if new.
    pub fn apply(&mut self, tenant: &str, id: &str, change: Change) {
        let value = match change {
            Change::Unchanged => return,
            Change::Put(e) => match encode(&e) {
                Ok(bytes) => Some((Arc::new(e), bytes)),
                Err(err) => {
                    self.failed.get_or_insert(err);
                    return;
                }
            },
            Change::Delete => None,
        };
        self.touch_tenant(tenant);
        let key = (tenant.to_string(), id.to_string());
        // Make sure the committed version is known before it is shadowed, for the change events.
        if !self.pending.contains_key(&key) {
            self.get(tenant, id);
        }
        self.steps.push((key.clone(), value.clone()));
        if self.pending.insert(key.clone(), value).is_none() {
            self.order.push(key);
        }
    }
}

/// How often an unwritable store tries to become writable again.
const RETRY: Duration = Duration::from_secs(1);

/// The writer's loop: one group at a time until the store shuts down. While the store is not
/// [`Health::Ready`](crate::Health) it tries to recover every [`RETRY`] and refuses writes at once.
pub(crate) fn run(shared: Arc<Shared>, rx: Receiver<Job>, max_group: usize) {
    let mut last_attempt: Option<Instant> = None;
    loop {
        let first = match rx.recv_timeout(RETRY) {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let troubled = shared.engine_failed.load(std::sync::atomic::Ordering::Acquire)
            || *shared.health.borrow() != crate::Health::Ready;
        if troubled && last_attempt.is_none_or(|t| t.elapsed() >= RETRY) {
            last_attempt = Some(Instant::now());
            shared.recover();
        }
        let Some(first) = first else { continue };
        let mut jobs = vec![first];
        while jobs.len() < max_group {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if group(&shared, jobs, shared.refusal()) {
            break;
        }
    }
    if let Err(e) = shared.with_disk(|d| d.sync()) {
        tracing::error!(error = %e, "final sync failed");
    }
    tracing::info!("writer stopped");
}

/// Runs, commits and answers one group; `refused` fails it without committing. Returns whether
/// the store is to stop. A job that panics fails its group (its caller gets an error, the others
/// the group's); a panic after the jobs ran leaves memory in doubt, so the engine is marked failed
/// and the state is reloaded from disk before the next write.
fn group(shared: &Shared, jobs: Vec<Job>, refused: Option<String>) -> bool {
    let mut txn = Txn {
        state: shared.state.read(),
        pending: HashMap::new(),
        originals: Default::default(),
        order: Vec::new(),
        failed: refused.map(StoreError::Unavailable),
        new_tenants: Vec::new(),
        subscriptions: Vec::new(),
        steps: Vec::new(),
        stop: false,
    };
    let mut finishers: Vec<Finish> = Vec::with_capacity(jobs.len());
    for job in jobs {
        match std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut txn))) {
            Ok(finish) => finishers.push(finish),
            Err(_) => {
                tracing::error!("a write panicked; its group is rejected");
                txn.failed = Some(StoreError::Engine("a write of the same group failed unexpectedly".into()));
            }
        }
    }
    let stop = txn.stop;
    let committed = match std::panic::catch_unwind(AssertUnwindSafe(|| commit(shared, txn))) {
        Ok(committed) => committed,
        Err(_) => {
            shared.reload_needed.store(true, std::sync::atomic::Ordering::Release);
            shared.engine_failed.store(true, std::sync::atomic::Ordering::Release);
            shared.set_health(crate::Health::Unwritable("committing a group panicked".into()));
            Err(StoreError::Engine("committing the write failed unexpectedly".into()))
        }
    };
    match &committed {
        Err(StoreError::Unavailable(_)) => {}
        Err(e) => tracing::error!(error = %e, "commit failed; the group is rejected"),
        Ok(()) => {}
    }
    for finish in finishers {
        finish(committed.clone());
    }
    stop
}

/// Writes a group's transaction durably, publishes it to readers and listeners; on failure
/// nothing of the group is applied.
fn commit(shared: &Shared, txn: Txn<'_>) -> Result<(), StoreError> {
    let Txn { state: guard, mut pending, order, new_tenants, failed, subscriptions, originals, steps, .. } = txn;
    if let Some(e) = failed {
        return Err(e);
    }
    let originals = originals.into_inner();
    let pending: Vec<((String, String), Option<Version>)> =
        order.into_iter().map(|k| (k.clone(), pending.remove(&k).flatten())).collect();
    let mut puts: Vec<Put<'_>> = new_tenants.iter().map(|t| Put::Tenant(t)).collect();
    puts.extend(subscriptions.iter().map(|((tenant, id), v)| Put::Subscription {
        tenant,
        id,
        json: v.as_ref().map(|v| serde_json::to_vec(&**v).unwrap_or_default()),
    }));
    puts.extend(pending.iter().map(|((tenant, id), e)| Put::Entity {
        tenant,
        id,
        bytes: e.as_ref().map(|(_, b)| &**b),
    }));
    // Index keys before (from the committed version) and after.
    let mut keys: Vec<Option<(Option<Keys>, Option<Keys>)>> = Vec::with_capacity(pending.len());
    for ((tenant, id), new) in &pending {
        let old = originals.get(&(tenant.clone(), id.clone())).cloned().flatten();
        // `None`: the index entries stay as they are (the common update of values only).
        keys.push(match (&old, new) {
            (Some(o), Some((n, _))) if Keys::same(o, n) => None,
            _ => Some((old.as_deref().map(Keys::of), new.as_ref().map(|(e, _)| Keys::of(e)))),
        });
    }
    // One change event per write, for listeners; and, for tenants with subscriptions,
    // change-log records committed with the group so that notifications owed survive a crash.
    let listening = !shared.listeners.lock().is_empty();
    let mut events = Vec::new();
    let mut current: HashMap<&Key, (Option<Arc<Entity>>, Option<Encoded>)> = HashMap::new();
    for (key, new) in &steps {
        let (tenant, id) = key;
        let (old, old_bytes) = current.remove(key).unwrap_or_else(|| {
            let committed = guard.tenants.get(tenant).and_then(|t| t.encoded(id)).cloned();
            (originals.get(key).cloned().flatten(), committed)
        });
        let logged = guard.tenants.get(tenant).is_some_and(|t| !t.subscriptions.is_empty());
        let seq = logged.then(|| shared.next_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        if let Some(seq) = seq {
            let record = (tenant, id, old_bytes.as_deref().map(<[u8]>::to_vec), new.as_ref().map(|(_, b)| b.to_vec()));
            match rmp_serde::to_vec(&record) {
                Ok(record) => puts.push(Put::Log { seq, record }),
                Err(e) => tracing::error!(error = %e, "change-log record not encoded"),
            }
        }
        let new_entity = new.as_ref().map(|(e, _)| e.clone());
        if listening {
            events.push(ChangeEvent { seq, tenant: tenant.clone(), id: id.clone(), old, new: new_entity.clone() });
        }
        current.insert(key, (new_entity, new.as_ref().map(|(_, b)| b.clone())));
    }
    if let Err(e) = shared.with_disk(|d| d.commit(&puts)) {
        if let StoreError::Engine(why) = e {
            // Part of the group may reach the disk after all: it is undone when the engine is
            // reopened, so the group's callers can be told that nothing was written.
            shared.doubtful.lock().extend(puts.iter().map(crate::disk::Doubt::of));
            return Err(StoreError::Unavailable(format!("the storage engine failed: {why}")));
        }
        return Err(e);
    }
    drop(puts);
    drop(guard);
    let mut state = shared.state.write();
    for t in new_tenants {
        state.tenant_mut(&t);
    }
    for ((tenant, id), v) in subscriptions {
        let t = state.tenant_mut(&tenant);
        t.subscriptions_version += 1;
        match v {
            Some(v) => {
                t.subscriptions.insert(id, v);
            }
            None => {
                t.subscriptions.remove(&id);
            }
        }
    }
    for (((tenant, id), e), keys) in pending.into_iter().zip(keys) {
        let t = state.tenant_mut(&tenant);
        match (e, keys) {
            (Some((_, bytes)), None) => t.replace_bytes(&id, bytes),
            (Some((_, bytes)), Some((old, Some(new)))) => t.put(&id, bytes, &new, old.as_ref()),
            (_, Some((old, _))) => t.remove(&id, old.as_ref()),
            (None, None) => t.remove(&id, None),
        }
    }
    drop(state);
    if !events.is_empty() {
        let events = Arc::new(events);
        shared.listeners.lock().retain(|l| l.send(events.clone()).is_ok());
    }
    Ok(())
}

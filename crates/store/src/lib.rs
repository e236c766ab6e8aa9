//! The durable embedded store of Haskap.
//!
//! One writer, many readers. Every change goes through [`Store::write`]: the closure runs on the
//! single writer thread inside a [`Txn`] that sees the latest committed state plus the changes made
//! earlier in the same group. The writer gathers whatever requests are waiting into one group,
//! commits the group as one atomic fjall batch, makes the journal durable with one fsync, then
//! publishes the new state to readers and only then answers the callers. Thirty-two concurrent
//! writers cost one fsync, and readers never wait for the disk and never see uncommitted data.
//!
//! Reads are served from memory: every entity of every tenant is held in its compact encoded form,
//! so a retrieve is a map lookup and a decode. At start-up the state is loaded from fjall, whose journal recovery guarantees that
//! what was acknowledged is there and that no batch is half-applied.
//!
//! Invariant: the store never sees an @context or HTTP; entities arrive expanded.

mod column;
mod disk;
mod msgpack;
mod record;
mod state;
mod writer;

pub use record::{Extent, decode, decode_extent, decode_sparse, encode};
pub use state::{Encoded, Keys, State, Tenant};
pub use writer::Txn;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use haskap_model::Entity;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};

/// What can go wrong in the store: never the client's fault, since the API validates first.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine failed (I/O, full disk, ...). The store reopens it by itself.
    #[error("storage engine: {0}")]
    Engine(String),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The store is shutting down.
    #[error("the store is shut down")]
    Closed,
    /// A write the store cannot take (a key longer than the engine allows); nothing was written
    /// and later writes are not affected.
    #[error("{0}")]
    Refused(String),
    /// Writes cannot be made now (see [`Health::Unwritable`]); nothing was written.
    #[error("{0}; nothing was written, try again later")]
    Unavailable(String),
}

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> Self {
        StoreError::Engine(e.to_string())
    }
}

/// Whether the store takes writes (`/ready`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Writes are taken.
    Ready,
    /// Writes fail for now (a full disk, a failed storage engine). The writer retries every
    /// second, reopening the engine and reloading the state from disk if it failed, and is
    /// `Ready` again as soon as writes can succeed; writes meanwhile are refused at once.
    Unwritable(String),
    /// The write path cannot continue: the process must be restarted.
    Failed(String),
}

/// Tuning of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most requests committed together in one group.
    pub max_group: usize,
    /// Block cache of the engine, in bytes.
    pub cache_bytes: u64,
    /// Free disk space kept in reserve: below it, writes are refused (the engine keeps room to
    /// flush and compact) until space is freed.
    pub min_free_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { max_group: 4096, cache_bytes: 16 << 20, min_free_bytes: 64 << 20 }
    }
}

struct Shared {
    state: RwLock<State>,
    /// The storage engine; `None` only while the writer reopens it.
    disk: RwLock<Option<disk::Disk>>,
    dir: PathBuf,
    options: StoreOptions,
    /// The sequence number of the next change-log record.
    next_seq: AtomicU64,
    /// Who hears about committed entity changes (the notifier).
    listeners: Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Arc<Vec<ChangeEvent>>>>>,
    /// Whether writes can be made.
    health: tokio::sync::watch::Sender<Health>,
    /// The engine failed (it refuses every write from then on): the writer must reopen it.
    engine_failed: AtomicBool,
    /// Memory may not match what was committed (a panic while publishing a group): the state
    /// must be reloaded from disk when the engine is reopened.
    reload_needed: AtomicBool,
    /// What the groups whose commit failed tried to write: after the engine is reopened these
    /// records are made to match memory again (see [`Shared::reopen`]).
    doubtful: Mutex<Vec<disk::Doubt>>,
    /// Where the tenants of a (re)loaded state send their column build requests.
    builds: Mutex<mpsc::Sender<column::BuildRequest>>,
}

impl Shared {
    /// Runs `f` on the engine. An engine error marks it failed, for the writer to reopen.
    fn with_disk<T>(&self, f: impl FnOnce(&disk::Disk) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let guard = RwLockReadGuard::try_map(self.disk.read(), Option::as_ref)
            .map_err(|_| StoreError::Unavailable("the storage engine is being reopened".into()))?;
        let out = f(&guard);
        if let Err(StoreError::Engine(e)) = &out {
            self.engine_failed.store(true, Ordering::Release);
            self.set_health(Health::Unwritable(format!("the storage engine failed: {e}")));
        }
        out
    }

    /// Records the store's health, logging changes.
    fn set_health(&self, health: Health) {
        self.health.send_if_modified(|current| {
            if *current == health || matches!(current, Health::Failed(_)) {
                return false;
            }
            match &health {
                Health::Ready => tracing::info!("writes work again"),
                Health::Unwritable(why) => tracing::error!(reason = %why, "writes are refused until they can succeed"),
                Health::Failed(why) => tracing::error!(reason = %why, "the write path cannot continue"),
            }
            *current = health;
            true
        });
    }

    /// Why writes must be refused now, if they must: the store is not ready, or free disk space
    /// fell below the reserve.
    fn refusal(&self) -> Option<String> {
        if let Health::Unwritable(why) | Health::Failed(why) = &*self.health.borrow() {
            return Some(why.clone());
        }
        match self.with_disk(|d| d.free_bytes()) {
            Ok(free) if free < self.options.min_free_bytes => {
                let why = format!(
                    "the disk is almost full: {} MiB free, below the reserve of {} MiB",
                    free >> 20,
                    self.options.min_free_bytes >> 20
                );
                self.set_health(Health::Unwritable(why.clone()));
                Some(why)
            }
            _ => None,
        }
    }

    /// Makes the store writable again if it can be: reopens a failed engine (see
    /// [`Shared::reopen`]), then checks free space. A failure that retrying cannot mend marks the
    /// store [`Health::Failed`].
    fn recover(&self) {
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<(), StoreError> {
            if self.engine_failed.load(Ordering::Acquire) {
                self.reopen()?;
                self.engine_failed.store(false, Ordering::Release);
            }
            let free = self.with_disk(|d| d.free_bytes())?;
            if free < self.options.min_free_bytes {
                return Err(StoreError::Unavailable(format!(
                    "the disk is almost full: {} MiB free, below the reserve of {} MiB",
                    free >> 20,
                    self.options.min_free_bytes >> 20
                )));
            }
            Ok(())
        }));
        match attempt {
            Ok(Ok(())) => self.set_health(Health::Ready),
            Ok(Err(StoreError::Corrupt(e))) => self.set_health(Health::Failed(format!("corrupt stored data: {e}"))),
            Ok(Err(StoreError::Unavailable(why))) => self.set_health(Health::Unwritable(why)),
            Ok(Err(e)) => self.set_health(Health::Unwritable(e.to_string())),
            Err(_) => self.set_health(Health::Failed("recovering the storage engine panicked".into())),
        }
    }

    /// Closes the engine and opens it again, then makes disk and memory agree. Memory holds
    /// exactly the acknowledged writes, but a group whose commit failed may have reached the
    /// journal in full after all (the engine's buffered journal writer flushes what it holds when
    /// it is dropped): the records such groups touched are written again from memory, so a write
    /// that was answered with an error is not there. Only when memory itself is in doubt is the
    /// state reloaded from disk instead.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.disk.write();
        // The engine holds a lock file until it is dropped.
        drop(slot.take());
        // A store whose files are gone is not silently started anew: memory would then be the
        // only copy of its data.
        if !self.dir.join("engine").join("version").is_file() {
            return Err(StoreError::Corrupt(format!("the store's files in {} are gone", self.dir.display())));
        }
        let disk = disk::Disk::open(&self.dir, self.options.cache_bytes)?;
        disk.probe()?;
        if self.reload_needed.load(Ordering::Acquire) {
            let mut state = load_state(&disk, &self.builds.lock())?;
            let mut current = self.state.write();
            state.generation = current.generation + 1;
            for (name, t) in state.tenants.iter_mut() {
                // Matchers compiled for the old state are rebuilt.
                t.subscriptions_version = current.tenants.get(name).map_or(0, |old| old.subscriptions_version) + 1;
            }
            *current = state;
            self.reload_needed.store(false, Ordering::Release);
            tracing::info!("state reloaded from disk");
        } else {
            let doubtful = std::mem::take(&mut *self.doubtful.lock());
            let state = self.state.read();
            if let Err(e) = disk.repair(&doubtful, &state) {
                drop(state);
                self.doubtful.lock().extend(doubtful);
                return Err(e);
            }
        }
        self.next_seq.fetch_max(disk.next_seq()?, Ordering::AcqRel);
        *slot = Some(disk);
        tracing::info!("storage engine reopened");
        Ok(())
    }
}

/// Loads the committed state from `disk`, with the columns it had built before requested again.
fn load_state(disk: &disk::Disk, builds: &mpsc::Sender<column::BuildRequest>) -> Result<State, StoreError> {
    let started = std::time::Instant::now();
    let mut state = disk.load()?;
    tracing::info!(
        entities = state.entity_count(),
        tenants = state.tenants.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store loaded"
    );
    state.build_columns_with(builds.clone());
    for (key, _) in disk.scan_meta(COLUMN_PREFIX)? {
        if let Some((tenant, name)) = key[COLUMN_PREFIX.len()..].split_once('\0')
            && let Some(t) = state.tenants.get(tenant)
        {
            t.request_column(name);
        }
    }
    Ok(state)
}

/// A committed change of one entity, as listeners hear it after the commit.
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    /// The change-log sequence number, for changes in tenants with subscriptions (see
    /// [`Store::unacknowledged`] and [`Store::acknowledge`]).
    pub seq: Option<u64>,
    /// The tenant.
    pub tenant: String,
    /// The entity id.
    pub id: String,
    /// The entity before the change (`None`: it was created).
    pub old: Option<Arc<Entity>>,
    /// The entity after the change (`None`: it was deleted).
    pub new: Option<Arc<Entity>>,
}

/// A handle on the store; cheap to clone, shared by all request handlers.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<writer::Job>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Store {
    /// Opens (or creates) the store in `dir`, loading every entity into memory.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let disk = disk::Disk::open(dir, options.cache_bytes)?;
        let (builds, requests) = mpsc::channel();
        let state = load_state(&disk, &builds)?;
        let next_seq = AtomicU64::new(disk.next_seq()?);
        let max_group = options.max_group;
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            disk: RwLock::new(Some(disk)),
            dir: dir.to_path_buf(),
            options,
            next_seq,
            listeners: Mutex::new(Vec::new()),
            health: tokio::sync::watch::Sender::new(Health::Ready),
            engine_failed: AtomicBool::new(false),
            reload_needed: AtomicBool::new(false),
            doubtful: Mutex::new(Vec::new()),
            builds: Mutex::new(builds),
        });
        let builder_shared = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("haskap-columns".into())
            .spawn(move || build_columns(builder_shared, requests))
            .map_err(|e| StoreError::Engine(format!("cannot start the column builder thread: {e}")))?;
        let (jobs, rx) = mpsc::channel();
        let writer_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("haskap-writer".into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| writer::run(writer_shared.clone(), rx, max_group));
                if std::panic::catch_unwind(run).is_err() {
                    writer_shared.set_health(Health::Failed("the writer thread panicked".into()));
                }
            })
            .map_err(|e| StoreError::Engine(format!("cannot start the writer thread: {e}")))?;
        Ok(Store { shared, jobs, writer: Arc::new(Mutex::new(Some(handle))) })
    }

    /// Runs `f` on the writer inside a transaction and returns its result once the transaction's
    /// changes are durable and visible. If the commit fails, nothing of the group is applied; if
    /// the store is [`Health::Unwritable`], the write fails at once with
    /// [`StoreError::Unavailable`].
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: writer::Job = Box::new(move |txn: &mut Txn<'_>| {
            let out = f(txn);
            Box::new(move |committed: Result<(), StoreError>| {
                let _ = tx.send(committed.map(|()| out));
            }) as writer::Finish
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        // The writer drops a job without answering only when it panicked inside it.
        rx.await.map_err(|_| StoreError::Engine("the write failed unexpectedly; nothing was written".into()))?
    }

    /// Whether the store takes writes now.
    pub fn health(&self) -> Health {
        self.shared.health.borrow().clone()
    }

    /// Follows the store's health (the binary exits when it becomes [`Health::Failed`]).
    pub fn health_changes(&self) -> tokio::sync::watch::Receiver<Health> {
        self.shared.health.subscribe()
    }

    /// The committed entity `id` of `tenant`.
    pub fn get(&self, tenant: &str, id: &str) -> Option<Arc<Entity>> {
        self.shared.state.read().tenants.get(tenant)?.get(id)
    }

    /// Whether `tenant` exists (has ever been written to).
    pub fn tenant_exists(&self, tenant: &str) -> bool {
        self.shared.state.read().tenants.contains_key(tenant)
    }

    /// Runs `f` over the committed state: the read path for queries.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.shared.state.read())
    }

    /// A feed of committed entity changes, group by group, in commit order.
    pub fn changes(&self) -> tokio::sync::mpsc::UnboundedReceiver<Arc<Vec<ChangeEvent>>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.shared.listeners.lock().push(tx);
        rx
    }

    /// The logged changes not acknowledged yet (owed notifications after a restart), in order.
    pub fn unacknowledged(&self) -> Result<Vec<ChangeEvent>, StoreError> {
        let records = self.shared.with_disk(|d| d.log_after(d.log_cursor()?))?;
        let mut out = Vec::new();
        for (seq, bytes) in records {
            let (tenant, id, old, new): (String, String, Option<Vec<u8>>, Option<Vec<u8>>) =
                rmp_serde::from_slice(&bytes).map_err(|e| StoreError::Corrupt(format!("change-log record: {e}")))?;
            let old = old.map(|b| decode(&b)).transpose()?.map(Arc::new);
            let new = new.map(|b| decode(&b)).transpose()?.map(Arc::new);
            out.push(ChangeEvent { seq: Some(seq), tenant, id, old, new });
        }
        Ok(out)
    }

    /// Records durably that every logged change up to `seq` is dealt with.
    pub fn acknowledge(&self, seq: u64) -> Result<(), StoreError> {
        self.shared.with_disk(|d| d.ack_log(seq))
    }

    /// Stores a metadata record (e.g. a cached @context) durably. Keys longer than 16 KiB are
    /// refused ([`StoreError::Refused`]).
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.shared.with_disk(|d| d.put_meta(key, value))
    }

    /// Deletes a metadata record durably.
    pub fn delete_meta(&self, key: &str) -> Result<(), StoreError> {
        self.shared.with_disk(|d| d.delete_meta(key))
    }

    /// All metadata records whose key starts with `prefix`.
    pub fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.shared.with_disk(|d| d.scan_meta(prefix))
    }

    /// Stops the writer after the requests already queued, and makes everything durable.
    pub fn shutdown(&self) {
        let _ = self.jobs.send(Box::new(|txn: &mut Txn<'_>| {
            txn.stop = true;
            Box::new(|_| {}) as writer::Finish
        }));
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
    }
}

/// Metadata keys `column/TENANT\0ATTRIBUTE`: the columns built, to build again at start-up.
const COLUMN_PREFIX: &str = "column/";

/// Builds the columns tenants ask for, one at a time, a chunk of records per hold of the read
/// lock (see [`column`]), and remembers them for the next start. Ends when the store is gone.
fn build_columns(shared: std::sync::Weak<Shared>, requests: mpsc::Receiver<column::BuildRequest>) {
    for (tenant, name) in requests {
        let started = std::time::Instant::now();
        let mut column = column::Column::default();
        let mut from = 0;
        let mut generation = None;
        let built = loop {
            let Some(shared) = shared.upgrade() else { return };
            let state = shared.state.read();
            // A state reloaded meanwhile numbers its slots anew: the column is abandoned.
            if *generation.get_or_insert(state.generation) != state.generation {
                break false;
            }
            let Some(t) = state.tenants.get(&*tenant) else { break false };
            match t.fill_column(&name, &mut column, from) {
                Some(next) => from = next,
                None => {
                    t.install_column(&name, column);
                    break true;
                }
            }
        };
        let Some(shared) = shared.upgrade() else { return };
        if built {
            tracing::debug!(tenant = %tenant, attribute = %name, elapsed_ms = started.elapsed().as_millis() as u64, "column built");
            let key = format!("{COLUMN_PREFIX}{tenant}\0{name}");
            if shared.with_disk(|d| d.scan_meta(&key)).is_ok_and(|found| found.is_empty())
                && let Err(e) = shared.with_disk(|d| d.put_meta(&key, b""))
            {
                tracing::warn!(error = %e, "cannot remember a column for the next start");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haskap_model::ops::Change;
    use std::collections::BTreeMap;

    fn entity(id: &str, n: i64) -> Entity {
        Entity {
            id: id.into(),
            types: vec!["urn:T".into()],
            scope: None,
            created_at: n,
            modified_at: n,
            attrs: BTreeMap::new(),
        }
    }

    async fn put(store: &Store, tenant: &'static str, e: Entity) {
        store.write(move |txn| txn.apply(tenant, &e.id.clone(), Change::Put(e))).await.unwrap();
    }

    #[tokio::test]
    async fn writes_are_visible_durable_and_tenant_scoped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            put(&store, "", entity("urn:a", 1)).await;
            put(&store, "shiraoi", entity("urn:b", 2)).await;
            assert_eq!(store.get("", "urn:a").unwrap().created_at, 1);
            assert!(store.get("", "urn:b").is_none());
            assert!(store.tenant_exists("shiraoi"));
            assert!(!store.tenant_exists("atsuma"));
            store.write(|txn| txn.apply("", "urn:a", Change::Delete)).await.unwrap();
            store.shutdown();
        }
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert!(store.get("", "urn:a").is_none());
        assert_eq!(store.get("shiraoi", "urn:b").unwrap().created_at, 2);
        assert!(store.tenant_exists("shiraoi"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_share_groups_and_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(async move { put(&s, "", entity(&format!("urn:e:{i}"), i)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.read(|s| s.entity_count()), 64);
        // Within one transaction, a later operation sees an earlier one's change.
        let seen = store
            .write(|txn| {
                txn.apply("", "urn:x", Change::Put(entity("urn:x", 7)));
                txn.get("", "urn:x").map(|e| e.created_at)
            })
            .await
            .unwrap();
        assert_eq!(seen, Some(7));
    }

    /// A store written in data format 2 (attributes inline) is read and rewritten in format 3.
    #[tokio::test]
    async fn format_2_stores_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let e = |id: &str| {
            let mut e = entity(id, 3);
            e.attrs.insert(
                "urn:a".into(),
                vec![haskap_model::Attribute {
                    kind: haskap_model::entity::AttrKind::Property,
                    value: serde_json::json!(42),
                    dataset_id: None,
                    observed_at: None,
                    unit_code: None,
                    lang: None,
                    created_at: 3,
                    modified_at: 3,
                    sub: Default::default(),
                }],
            );
            e
        };
        {
            let disk = disk::Disk::open(dir.path(), 1 << 20).unwrap();
            disk.put_meta("format", b"2").unwrap();
            let old: Vec<Vec<u8>> =
                ["urn:a", "urn:b"].iter().map(|id| rmp_serde::to_vec_named(&e(id)).unwrap()).collect();
            disk.commit(&[
                disk::Put::Entity { tenant: "", id: "urn:a", bytes: Some(&old[0]) },
                disk::Put::Entity { tenant: "", id: "urn:b", bytes: Some(&old[1]) },
            ])
            .unwrap();
        }
        for _ in 0..2 {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            assert_eq!(*store.get("", "urn:a").unwrap(), e("urn:a"));
            assert_eq!(*store.get("", "urn:b").unwrap(), e("urn:b"));
            let current =
                store.read(|s| ["urn:a", "urn:b"].map(|id| record::is_current(s.tenants[""].encoded(id).unwrap())));
            assert_eq!(current, [true, true]);
            assert_eq!(store.scan_meta("format").unwrap(), vec![("format".to_string(), b"3".to_vec())]);
            store.shutdown();
        }
    }

    /// Regression (issue 19): an id longer than the engine's key limit panicked the writer and
    /// every later write failed with "the store is shut down".
    #[tokio::test]
    async fn an_overlong_key_fails_its_write_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let long = format!("urn:{}", "x".repeat(70_000));
        let e = entity(&long, 1);
        let err = store.write(move |txn| txn.apply("", &e.id.clone(), Change::Put(e))).await.unwrap_err();
        assert!(matches!(err, StoreError::Refused(_)), "{err}");
        assert!(store.get("", &long).is_none());
        assert!(matches!(store.put_meta(&long, b"x"), Err(StoreError::Refused(_))));
        put(&store, "", entity("urn:after", 2)).await;
        assert_eq!(store.health(), Health::Ready);
        store.shutdown();
        drop(store);
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert!(store.get("", "urn:after").is_some());
    }

    /// A write that panics fails its group, not the writer: later writes succeed.
    #[tokio::test]
    async fn a_panicking_write_fails_its_group_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let err = store
            .write(|txn| {
                txn.apply("", "urn:half", Change::Put(entity("urn:half", 1)));
                panic!("a bug in an operation")
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Engine(_)), "{err}");
        assert!(store.get("", "urn:half").is_none(), "nothing of the failed group is applied");
        put(&store, "", entity("urn:after", 2)).await;
        assert!(store.get("", "urn:after").is_some());
        assert_eq!(store.health(), Health::Ready);
    }

    /// Below the free-space reserve writes are refused at once, and taken again when space is
    /// back, without a restart.
    #[tokio::test]
    async fn writes_are_refused_below_the_free_space_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions { min_free_bytes: u64::MAX, ..StoreOptions::default() };
        let store = Store::open(dir.path(), options).unwrap();
        let e = entity("urn:a", 1);
        let err = store.write(move |txn| txn.apply("", "urn:a", Change::Put(e))).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(matches!(store.health(), Health::Unwritable(_)));
        assert!(store.get("", "urn:a").is_none());
    }

    /// A store whose files disappeared is not reopened empty: it is Failed, for a restart.
    #[tokio::test]
    async fn a_store_whose_files_are_gone_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        put(&store, "", entity("urn:a", 1)).await;
        let mut health = store.health_changes();
        std::fs::remove_dir_all(dir.path().join("engine")).unwrap();
        store.shared.engine_failed.store(true, Ordering::Release);
        store.shared.set_health(Health::Unwritable("test".into()));
        let failed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                if let Health::Failed(why) = &*health.borrow_and_update() {
                    return why.clone();
                }
                health.changed().await.unwrap();
            }
        })
        .await
        .expect("the store fails");
        assert!(failed.contains("gone"), "{failed}");
        let e = entity("urn:b", 2);
        let err = store.write(move |txn| txn.apply("", "urn:b", Change::Put(e))).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    }

    /// A failed engine is reopened and the state reloaded from disk; writes work again.
    #[tokio::test]
    async fn a_failed_engine_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        put(&store, "", entity("urn:a", 1)).await;
        store.shared.engine_failed.store(true, Ordering::Release);
        store.shared.set_health(Health::Unwritable("test".into()));
        for _ in 0..50 {
            if store.health() == Health::Ready {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(store.health(), Health::Ready);
        assert!(store.get("", "urn:a").is_some());
        put(&store, "", entity("urn:b", 2)).await;
        assert!(store.get("", "urn:b").is_some());
    }

    #[test]
    fn a_store_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let disk = disk::Disk::open(dir.path(), 1 << 20).unwrap();
            disk.put_meta("format", b"999").unwrap();
        }
        let err = Store::open(dir.path(), StoreOptions::default()).err().unwrap();
        assert!(err.to_string().contains("999"), "{err}");
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;
    use haskap_model::ops::Change;
    use haskap_query::filter::Filter;
    use haskap_query::geo::GeoQuery;

    fn at(id: &str, lon: f64, n: i64) -> Entity {
        let core =
            haskap_model::jsonld::ActiveContext::core(&serde_json::json!({"@context": {"@vocab": "urn:v:"}})).unwrap();
        let p = haskap_model::parse::Parser { ctx: &core, now: n, limits: Default::default() };
        p.entity(&serde_json::json!({"id": id, "type": "T", "n": n, "location": {"type": "Point", "coordinates": [lon, 42.0]}})).unwrap()
    }

    fn near(store: &Store, lon: f64) -> Vec<u32> {
        let q =
            GeoQuery::new("near;maxDistance==10", "Point", &serde_json::json!([lon, 42.0]), "urn:v:location".into())
                .unwrap();
        let f = Filter { geo: Some(q), ..Default::default() };
        store.read(|s| s.tenants[""].select(&f).0.iter().collect())
    }

    fn compile(q: &str) -> haskap_query::eval::Compiled {
        let expand = |t: &str| format!("urn:v:{t}");
        haskap_query::eval::compile(&haskap_query::q::parse(q).unwrap(), q, &expand).unwrap()
    }

    fn q_matches(store: &Store, q: &str) -> Vec<String> {
        let f = Filter { q: Some(compile(q)), ..Default::default() };
        store.read(|s| {
            let t = &s.tenants[""];
            let wanted = f.attributes();
            let matches = t.matcher(&f, &wanted);
            let mut ids: Vec<String> =
                t.select(&f).0.iter().filter(|s| matches(*s)).map(|s| t.entity_at(s).unwrap().id).collect();
            ids.sort();
            ids
        })
    }

    /// Columns built by a query follow every later write: updates, new entities, deletions, and
    /// values that need decoding.
    #[tokio::test]
    async fn columns_follow_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let put = |id: &'static str, n: serde_json::Value| {
            let mut e = at(id, 141.0, 1);
            e.attrs.get_mut("urn:v:n").unwrap()[0].value = n;
            let store = store.clone();
            async move { store.write(move |txn| txn.apply("", id, Change::Put(e))).await.unwrap() }
        };
        put("urn:a", 5.into()).await;
        put("urn:b", 50.into()).await;
        assert_eq!(q_matches(&store, "n>10"), ["urn:b"], "decided on records while the column is built");
        column_built(&store, "urn:v:n").await;
        assert_eq!(q_matches(&store, "n>10"), ["urn:b"]);
        put("urn:a", 20.into()).await;
        assert_eq!(q_matches(&store, "n>10"), ["urn:a", "urn:b"], "an update");
        put("urn:c", 30.into()).await;
        assert_eq!(q_matches(&store, "n>10"), ["urn:a", "urn:b", "urn:c"], "a new entity");
        store.write(|txn| txn.apply("", "urn:b", Change::Delete)).await.unwrap();
        assert_eq!(q_matches(&store, "n>10"), ["urn:a", "urn:c"], "a deletion");
        put("urn:d", serde_json::json!([1, 99])).await;
        assert_eq!(q_matches(&store, "n>10"), ["urn:a", "urn:c", "urn:d"], "an array is decided on the record");
        assert_eq!(q_matches(&store, "n==20|missing==1"), ["urn:a"], "an attribute no entity has");
        assert_eq!(q_matches(&store, "!n"), Vec::<String>::new());
        store.shutdown();
        drop(store);
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        column_built(&store, "urn:v:n").await; // no query asks: the store remembers it
        assert_eq!(q_matches(&store, "n>10"), ["urn:a", "urn:c", "urn:d"]);
    }

    /// Waits until the column of `name` is built, and checks it against the records.
    async fn column_built(store: &Store, name: &str) {
        for _ in 0..500 {
            match store.read(|s| s.tenants[""].column_is_true(name)) {
                Some(true) => return,
                Some(false) => panic!("column {name} disagrees with the records"),
                None => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        panic!("column {name} was never built");
    }

    /// A column is built a few records at a time, with writes in between; those made during the
    /// build are replayed into it, so that it ends up true to every record.
    #[test]
    fn writes_during_a_column_build_are_replayed() {
        let (builds, requests) = mpsc::channel();
        let mut state = State::default();
        state.build_columns_with(builds);
        let t = state.tenant_mut("");
        let put = |t: &mut Tenant, id: &str, n: i64| {
            let e = at(id, 141.0, n);
            let old = t.get(id).map(|old| Keys::of(&old));
            t.put(id, encode(&e).unwrap(), &Keys::of(&e), old.as_ref());
        };
        for i in 0..10 {
            put(t, &format!("urn:e{i}"), i);
        }
        let f = Filter { q: Some(compile("n>100")), ..Default::default() };
        let wanted = f.attributes();
        assert!(!(0..10).any(|s| t.matcher(&f, &wanted)(s)), "decided on the records before the column exists");
        let (tenant, name) = requests.try_recv().expect("the query asked for the column");
        assert_eq!((&*tenant, name.as_str()), ("", "urn:v:n"));
        let mut column = column::Column::default();
        let next = t.fill_column(&name, &mut column, 0).expect("three records per chunk in tests");
        put(t, "urn:e1", 101); // already in the column
        put(t, "urn:e8", 108); // not yet
        t.remove("urn:e2", t.get("urn:e2").map(|e| Keys::of(&e)).as_ref());
        put(t, "urn:e10", 110); // takes the freed slot
        let mut from = Some(next);
        while let Some(next) = from {
            from = t.fill_column(&name, &mut column, next);
        }
        t.install_column(&name, column);
        assert_eq!(t.column_is_true(&name), Some(true));
        let ids = |t: &Tenant| -> Vec<String> {
            let m = t.matcher(&f, &wanted);
            let mut v: Vec<String> = (0..11).filter(|s| m(*s)).map(|s| t.entity_at(s).unwrap().id).collect();
            v.sort();
            v
        };
        assert_eq!(ids(t), ["urn:e1", "urn:e10", "urn:e8"]);
    }

    /// Regression (issue 3 bench): updating an entity moved all its index entries, and R-tree
    /// removals among co-located entities cost O(n); only what changes moves now.
    #[tokio::test]
    async fn updates_move_only_changed_index_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        for (id, n) in [("urn:a", 1), ("urn:b", 2)] {
            let e = at(id, 141.0, n);
            store.write(move |txn| txn.apply("", id, Change::Put(e))).await.unwrap();
        }
        assert_eq!(near(&store, 141.0).len(), 2);
        let e = at("urn:a", 141.0, 3);
        store.write(move |txn| txn.apply("", "urn:a", Change::Put(e))).await.unwrap();
        assert_eq!(near(&store, 141.0).len(), 2, "an update that keeps the location keeps one entry");
        let e = at("urn:a", 142.0, 4);
        store.write(move |txn| txn.apply("", "urn:a", Change::Put(e))).await.unwrap();
        assert_eq!(near(&store, 141.0).len(), 1, "a move leaves the old place");
        assert_eq!(near(&store, 142.0).len(), 1, "and arrives at the new one");
    }
}

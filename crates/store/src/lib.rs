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

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use haskap_model::Entity;
use parking_lot::{Mutex, RwLock};

/// What can go wrong in the store: always an internal problem, never the client's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine failed (I/O, full disk, ...).
    #[error("storage engine: {0}")]
    Engine(String),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The store is shutting down.
    #[error("the store is shut down")]
    Closed,
}

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> Self {
        StoreError::Engine(e.to_string())
    }
}

/// Tuning of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most requests committed together in one group.
    pub max_group: usize,
    /// Block cache of the engine, in bytes.
    pub cache_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { max_group: 4096, cache_bytes: 16 << 20 }
    }
}

struct Shared {
    state: RwLock<State>,
    disk: disk::Disk,
    /// The sequence number of the next change-log record.
    next_seq: std::sync::atomic::AtomicU64,
    /// Who hears about committed entity changes (the notifier).
    listeners: Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Arc<Vec<ChangeEvent>>>>>,
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
        let started = std::time::Instant::now();
        let mut state = disk.load()?;
        tracing::info!(
            entities = state.entity_count(),
            tenants = state.tenants.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store loaded"
        );
        let next_seq = std::sync::atomic::AtomicU64::new(disk.next_seq()?);
        let (builds, requests) = mpsc::channel();
        state.build_columns_with(builds);
        // The columns queries needed before are rebuilt now rather than on their next query.
        for (key, _) in disk.scan_meta(COLUMN_PREFIX)? {
            if let Some((tenant, name)) = key[COLUMN_PREFIX.len()..].split_once('\0')
                && let Some(t) = state.tenants.get(tenant)
            {
                t.request_column(name);
            }
        }
        let shared = Arc::new(Shared { state: RwLock::new(state), disk, next_seq, listeners: Mutex::new(Vec::new()) });
        let builder_shared = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("haskap-columns".into())
            .spawn(move || build_columns(builder_shared, requests))
            .map_err(|e| StoreError::Engine(format!("cannot start the column builder thread: {e}")))?;
        let (jobs, rx) = mpsc::channel();
        let writer_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("haskap-writer".into())
            .spawn(move || writer::run(writer_shared, rx, options.max_group))
            .map_err(|e| StoreError::Engine(format!("cannot start the writer thread: {e}")))?;
        Ok(Store { shared, jobs, writer: Arc::new(Mutex::new(Some(handle))) })
    }

    /// Runs `f` on the writer inside a transaction and returns its result once the transaction's
    /// changes are durable and visible. If the commit fails, nothing of the group is applied.
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
        rx.await.map_err(|_| StoreError::Closed)?
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
        let cursor = self.shared.disk.log_cursor()?;
        let mut out = Vec::new();
        for (seq, bytes) in self.shared.disk.log_after(cursor)? {
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
        self.shared.disk.ack_log(seq)
    }

    /// Stores a metadata record (e.g. a cached @context) durably.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.shared.disk.put_meta(key, value)
    }

    /// Deletes a metadata record durably.
    pub fn delete_meta(&self, key: &str) -> Result<(), StoreError> {
        self.shared.disk.delete_meta(key)
    }

    /// All metadata records whose key starts with `prefix`.
    pub fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.shared.disk.scan_meta(prefix)
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
        let built = loop {
            let Some(shared) = shared.upgrade() else { return };
            let state = shared.state.read();
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
            if shared.disk.scan_meta(&key).is_ok_and(|found| found.is_empty())
                && let Err(e) = shared.disk.put_meta(&key, b"")
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

//! The on-disk side: fjall keyspaces and the encoding of keys and values.
//!
//! Layout (format version 3): keyspace `entities` maps `tenant 0x00 id` to the entity encoded as
//! MessagePack (the canonical form of `haskap_model::Entity`, see `record`); keyspace
//! `subscriptions` maps `tenant 0x00 id` to a subscription as JSON (expanded names); keyspace
//! `changes` is the
//! change log of tenants that have subscriptions (`seq` big-endian → the entity before and after,
//! trimmed once notified); keyspace `meta` holds `format`, `tenant/NAME`
//! markers and other small records such as cached @contexts.

use std::path::Path;
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::StoreError;
use crate::record::{decode, encode, is_current};
use crate::state::{Keys, State};

const FORMAT: &[u8] = b"3";
/// The previous format, whose entity records are rewritten when the store is loaded (format 3
/// only changed how an entity's attributes are laid out; format 2 records are still read).
const FORMAT_2: &[u8] = b"2";
/// Rewritten records committed together while migrating.
const MIGRATION_BATCH: usize = 10_000;
/// Largest memtable of the entities keyspace.
const MEMTABLE: u64 = 16 << 20;
/// Longest key the store writes. The engine's own limit is 65,535 bytes, and a longer key breaks
/// it for good (a panic, a corrupt journal entry), so every key is checked against this first;
/// the API's limits on ids and names are far below it.
pub(crate) const MAX_KEY: usize = 16 << 10;

/// Fails (changing nothing) when `key` is longer than [`MAX_KEY`].
fn check_key(key: &[u8]) -> Result<(), StoreError> {
    if key.len() > MAX_KEY {
        return Err(StoreError::Refused(format!(
            "a key of {} bytes is longer than the {MAX_KEY} bytes allowed",
            key.len()
        )));
    }
    Ok(())
}

pub(crate) struct Disk {
    dir: std::path::PathBuf,
    db: Database,
    entities: Keyspace,
    subscriptions: Keyspace,
    log: Keyspace,
    meta: Keyspace,
    /// The store is in format 2: [`Disk::load`] rewrites its records.
    migrate: bool,
}

/// One change of a committed group, as written to disk.
pub(crate) enum Put<'a> {
    Entity {
        tenant: &'a str,
        id: &'a str,
        bytes: Option<&'a [u8]>,
    },
    Tenant(&'a str),
    Subscription {
        tenant: &'a str,
        id: &'a str,
        json: Option<Vec<u8>>,
    },
    /// A record of the change log (see `Disk::log_after`).
    Log {
        seq: u64,
        record: Vec<u8>,
    },
}

/// A record a failed commit may or may not have written.
#[derive(Debug, Clone)]
pub(crate) enum Doubt {
    Entity(String, String),
    Tenant(String),
    Subscription(String, String),
    Log(u64),
}

impl Doubt {
    pub(crate) fn of(put: &Put<'_>) -> Doubt {
        match put {
            Put::Entity { tenant, id, .. } => Doubt::Entity(tenant.to_string(), id.to_string()),
            Put::Tenant(name) => Doubt::Tenant(name.to_string()),
            Put::Subscription { tenant, id, .. } => Doubt::Subscription(tenant.to_string(), id.to_string()),
            Put::Log { seq, .. } => Doubt::Log(*seq),
        }
    }
}

pub(crate) fn entity_key(tenant: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + 1 + id.len());
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

impl Disk {
    pub(crate) fn open(dir: &Path, cache_bytes: u64) -> Result<Disk, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Engine(format!("cannot create {}: {e}", dir.display())))?;
        let db = Database::builder(dir.join("engine")).manual_journal_persist(true).cache_size(cache_bytes).open()?;
        // Readers are served from memory, so the engine's own buffers are kept small.
        let entities = db.keyspace("entities", || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE))?;
        let subscriptions = db.keyspace("subscriptions", KeyspaceCreateOptions::default)?;
        let log = db.keyspace("changes", KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        let mut migrate = false;
        match meta.get("format")? {
            None => {
                meta.insert("format", FORMAT)?;
                db.persist(PersistMode::SyncAll)?;
            }
            Some(v) if &*v == FORMAT => {}
            Some(v) if &*v == FORMAT_2 => migrate = true,
            Some(v) => {
                return Err(StoreError::Corrupt(format!(
                    "data format {} is not supported by this version (expects {})",
                    String::from_utf8_lossy(&v),
                    String::from_utf8_lossy(FORMAT)
                )));
            }
        }
        Ok(Disk { dir: dir.to_path_buf(), db, entities, subscriptions, log, meta, migrate })
    }

    /// Reads every tenant and entity into memory.
    pub(crate) fn load(&self) -> Result<State, StoreError> {
        let mut state = State::default();
        state.tenant_mut("");
        for kv in self.meta.prefix("tenant/") {
            let (k, _) = kv.into_inner()?;
            let name = String::from_utf8_lossy(&k["tenant/".len()..]).into_owned();
            state.tenant_mut(&name);
        }
        for kv in self.subscriptions.iter() {
            let (k, v) = kv.into_inner()?;
            let split = k
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| StoreError::Corrupt("subscription key without tenant".into()))?;
            let tenant = std::str::from_utf8(&k[..split]).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let id = std::str::from_utf8(&k[split + 1..]).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let json =
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(format!("subscription record: {e}")))?;
            state.tenant_mut(tenant).subscriptions.insert(id.to_string(), Arc::new(json));
        }
        let mut rewrites = Vec::new();
        let mut migrated = 0usize;
        for kv in self.entities.iter() {
            let (k, mut v) = kv.into_inner()?;
            let split = k
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| StoreError::Corrupt("entity key without tenant".into()))?;
            let tenant = std::str::from_utf8(&k[..split]).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let id = std::str::from_utf8(&k[split + 1..]).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let entity = decode(&v)?;
            if self.migrate && !is_current(&v) {
                let bytes = encode(&entity)?;
                v = fjall::Slice::from(&*bytes);
                rewrites.push((k.to_vec(), bytes));
                if rewrites.len() == MIGRATION_BATCH {
                    migrated += self.rewrite(&mut rewrites)?;
                }
            }
            let t = state.tenant_mut(tenant);
            t.put(id, Arc::from(&*v), &Keys::of(&entity), None);
        }
        if self.migrate {
            migrated += self.rewrite(&mut rewrites)?;
            self.meta.insert("format", FORMAT)?;
            self.db.persist(PersistMode::SyncAll)?;
            tracing::info!(entities = migrated, "store migrated from data format 2 to 3");
        }
        Ok(state)
    }

    /// Writes rewritten entity records (a format migration) and empties `rewrites`. Records tell
    /// their format themselves, so a migration cut short is simply resumed at the next start.
    fn rewrite(&self, rewrites: &mut Vec<(Vec<u8>, crate::state::Encoded)>) -> Result<usize, StoreError> {
        let mut batch = self.db.batch();
        for (k, v) in rewrites.iter() {
            batch.insert(&self.entities, k.as_slice(), &**v);
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(std::mem::take(rewrites).len())
    }

    /// Writes a group atomically and makes it durable.
    pub(crate) fn commit(&self, puts: &[Put<'_>]) -> Result<(), StoreError> {
        if puts.is_empty() {
            return Ok(());
        }
        for p in puts {
            match p {
                Put::Entity { tenant, id, .. } | Put::Subscription { tenant, id, .. } => {
                    check_key(&entity_key(tenant, id))?
                }
                Put::Tenant(name) => check_key(name.as_bytes())?,
                Put::Log { .. } => {}
            }
        }
        let mut batch = self.db.batch();
        for p in puts {
            match p {
                Put::Entity { tenant, id, bytes: Some(b) } => batch.insert(&self.entities, entity_key(tenant, id), *b),
                Put::Entity { tenant, id, bytes: None } => batch.remove(&self.entities, entity_key(tenant, id)),
                Put::Tenant(name) => batch.insert(&self.meta, format!("tenant/{name}"), b"".as_slice()),
                Put::Subscription { tenant, id, json: Some(j) } => {
                    batch.insert(&self.subscriptions, entity_key(tenant, id), j.as_slice())
                }
                Put::Subscription { tenant, id, json: None } => {
                    batch.remove(&self.subscriptions, entity_key(tenant, id))
                }
                Put::Log { seq, record } => batch.insert(&self.log, seq.to_be_bytes(), record.as_slice()),
            }
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    pub(crate) fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_key(key.as_bytes())?;
        self.meta.insert(key, value)?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    pub(crate) fn delete_meta(&self, key: &str) -> Result<(), StoreError> {
        check_key(key.as_bytes())?;
        self.meta.remove(key)?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    pub(crate) fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.meta.prefix(prefix) {
            let (k, v) = kv.into_inner()?;
            out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    /// The change-log records after `seq`, in order.
    pub(crate) fn log_after(&self, seq: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.log.range((seq + 1).to_be_bytes()..) {
            let (k, v) = kv.into_inner()?;
            let key: [u8; 8] = k.as_ref().try_into().map_err(|_| StoreError::Corrupt("change-log key".into()))?;
            out.push((u64::from_be_bytes(key), v.to_vec()));
        }
        Ok(out)
    }

    /// The sequence number the next change-log record gets.
    pub(crate) fn next_seq(&self) -> Result<u64, StoreError> {
        let last = match self.log.last_key_value() {
            Some(kv) => {
                let k = kv.key()?;
                u64::from_be_bytes(k.as_ref().try_into().map_err(|_| StoreError::Corrupt("change-log key".into()))?)
            }
            None => self
                .meta
                .get("log/cursor")?
                .and_then(|v| v.as_ref().try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0),
        };
        Ok(last + 1)
    }

    /// Records that every change up to `seq` is dealt with, and forgets those records.
    pub(crate) fn ack_log(&self, seq: u64) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        batch.insert(&self.meta, "log/cursor", seq.to_be_bytes().as_slice());
        for kv in self.log.range(..=seq.to_be_bytes()) {
            let (k, _) = kv.into_inner()?;
            batch.remove(&self.log, k);
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    /// The last change-log record dealt with.
    pub(crate) fn log_cursor(&self) -> Result<u64, StoreError> {
        Ok(self.meta.get("log/cursor")?.and_then(|v| v.as_ref().try_into().ok()).map(u64::from_be_bytes).unwrap_or(0))
    }

    /// Makes the `doubtful` records what `state` (the acknowledged writes) says they are, in one
    /// durable batch: a change-log record of a failed group is removed.
    pub(crate) fn repair(&self, doubtful: &[Doubt], state: &State) -> Result<(), StoreError> {
        if doubtful.is_empty() {
            return Ok(());
        }
        let mut batch = self.db.batch();
        for doubt in doubtful {
            match doubt {
                Doubt::Entity(tenant, id) => {
                    let key = entity_key(tenant, id);
                    match state.tenants.get(tenant).and_then(|t| t.encoded(id)) {
                        Some(bytes) => batch.insert(&self.entities, key, &**bytes),
                        None => batch.remove(&self.entities, key),
                    }
                }
                Doubt::Tenant(name) => {
                    let key = format!("tenant/{name}");
                    if state.tenants.contains_key(name) {
                        batch.insert(&self.meta, key, b"".as_slice());
                    } else {
                        batch.remove(&self.meta, key);
                    }
                }
                Doubt::Subscription(tenant, id) => {
                    let key = entity_key(tenant, id);
                    match state.tenants.get(tenant).and_then(|t| t.subscriptions.get(id)) {
                        Some(json) => batch.insert(
                            &self.subscriptions,
                            key,
                            serde_json::to_vec(&**json).map_err(|e| StoreError::Engine(e.to_string()))?,
                        ),
                        None => batch.remove(&self.subscriptions, key),
                    }
                }
                Doubt::Log(seq) => batch.remove(&self.log, seq.to_be_bytes()),
            }
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncData)?;
        tracing::info!(records = doubtful.len(), "records of failed commits made to match memory");
        Ok(())
    }

    /// Bytes an unprivileged writer can still use on the file system of the store.
    pub(crate) fn free_bytes(&self) -> Result<u64, StoreError> {
        let path = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes())
            .map_err(|_| StoreError::Engine("the data directory's path has a NUL byte".into()))?;
        // SAFETY: `path` is a valid C string and `stat` a plain struct statvfs fills in.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
            return Err(StoreError::Engine(format!("statvfs: {}", std::io::Error::last_os_error())));
        }
        Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
    }

    /// Writes and syncs a small record, to learn whether the engine takes writes.
    pub(crate) fn probe(&self) -> Result<(), StoreError> {
        self.put_meta(
            "probe",
            &std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros()
                .to_be_bytes(),
        )
    }

    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}

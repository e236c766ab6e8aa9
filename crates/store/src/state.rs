//! The committed state readers see: every tenant's entities, in memory.
//!
//! Entities are kept encoded (the same bytes as on disk, about 1.2 KB for a typical entity)
//! rather than as a tree of structs (about 9 KB for the same entity): a million entities fit in a
//! couple of GB. Readers decode what they return.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use haskap_model::Entity;

use crate::StoreError;

/// An entity in its encoded form.
pub type Encoded = Arc<[u8]>;

/// All tenants. The default tenant is the empty string.
#[derive(Default)]
pub struct State {
    /// Tenants by name.
    pub tenants: HashMap<String, Tenant>,
}

/// One tenant: a separate keyspace no query crosses.
#[derive(Default)]
pub struct Tenant {
    /// Encoded entities by id, ordered by id: the stable order of paging.
    pub entities: BTreeMap<String, Encoded>,
}

impl State {
    /// How many entities all tenants hold together.
    pub fn entity_count(&self) -> usize {
        self.tenants.values().map(|t| t.entities.len()).sum()
    }
}

impl Tenant {
    /// The entity `id`, decoded.
    pub fn get(&self, id: &str) -> Option<Arc<Entity>> {
        self.entities.get(id).and_then(|b| decode(b).ok()).map(Arc::new)
    }

    /// Every entity in id order, decoded lazily.
    pub fn iter(&self) -> impl Iterator<Item = Entity> + '_ {
        self.entities.values().filter_map(|b| decode(b).ok())
    }
}

/// Encodes an entity for memory and disk: MessagePack with field names (smaller and faster to
/// write and read than JSON, and self-describing so that JSON values inside round-trip).
pub fn encode(e: &Entity) -> Result<Encoded, StoreError> {
    rmp_serde::to_vec_named(e).map(Into::into).map_err(|err| StoreError::Corrupt(err.to_string()))
}

/// Decodes an entity; a failure means stored data is corrupt.
pub fn decode(bytes: &[u8]) -> Result<Entity, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| {
        tracing::error!(error = %e, "undecodable entity record");
        StoreError::Corrupt(format!("entity record: {e}"))
    })
}

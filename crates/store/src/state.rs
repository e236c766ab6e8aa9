//! The committed state readers see: every tenant's entities, in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use haskap_model::Entity;

/// All tenants. The default tenant is the empty string.
#[derive(Default)]
pub struct State {
    /// Tenants by name.
    pub tenants: HashMap<String, Tenant>,
}

/// One tenant: a separate keyspace no query crosses.
#[derive(Default)]
pub struct Tenant {
    /// Entities by id, ordered by id: the stable order of paging.
    pub entities: BTreeMap<String, Arc<Entity>>,
}

impl State {
    /// How many entities all tenants hold together.
    pub fn entity_count(&self) -> usize {
        self.tenants.values().map(|t| t.entities.len()).sum()
    }
}

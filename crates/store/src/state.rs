//! The committed state readers see: every tenant's entities, in memory, with their indexes.
//!
//! Entities are kept encoded (the same bytes as on disk, about 1.2 KB for a typical entity)
//! rather than as a tree of structs (about 9 KB for the same entity): a million entities fit in a
//! couple of GB. Readers decode what they return.
//!
//! Each entity lives in a numbered slot; indexes are bitmaps of slots (by type, by attribute
//! present) and an R-tree of GeoProperty bounding boxes. A query intersects them and decodes
//! only candidates. Slot order (creation order, freed slots reused) is the order of results.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use haskap_model::Entity;
use haskap_model::entity::AttrKind;
use haskap_query::filter::Filter;
use haskap_query::types::TypeExpr;
use parking_lot::RwLock;
use roaring::RoaringBitmap;
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use serde_json::Value;

use crate::column::{BuildRequest, Cell, Column, Columns};
use crate::record::{Extent, decode, decode_extent, decode_sparse};

/// Most columns a tenant keeps; queries on further attributes decode candidates instead.
const MAX_COLUMNS: usize = 32;

/// How many records a column build reads per hold of the read lock (a few milliseconds).
pub(crate) const BUILD_CHUNK: usize = if cfg!(test) { 3 } else { 4096 };

/// An entity in its encoded form.
pub type Encoded = Arc<[u8]>;

/// A GeoProperty's bounding box in the R-tree, with its slot.
type GeoBox = GeomWithData<Rectangle<[f64; 2]>, u32>;

/// All tenants. The default tenant is the empty string.
#[derive(Default)]
pub struct State {
    /// Tenants by name.
    pub tenants: HashMap<String, Tenant>,
    /// Where tenants send column build requests (none: columns are never built).
    builder: Option<Sender<BuildRequest>>,
    /// Counts the reloads of the state from disk (a column built across one is abandoned).
    pub(crate) generation: u64,
}

/// One tenant: a separate keyspace no query crosses.
#[derive(Default)]
pub struct Tenant {
    name: Arc<str>,
    slots: Vec<Option<(Arc<str>, Encoded)>>,
    free: Vec<u32>,
    by_id: HashMap<Arc<str>, u32>,
    by_type: HashMap<String, RoaringBitmap>,
    by_attr: HashMap<String, RoaringBitmap>,
    geo: HashMap<String, RTree<GeoBox>>,
    live: RoaringBitmap,
    /// Columns of the attributes queries have needed, by expanded name (see [`crate::column`]).
    columns: RwLock<Columns>,
    builder: Option<Sender<BuildRequest>>,
    /// Subscriptions by id, in canonical JSON form (expanded names), ordered by id.
    pub subscriptions: std::collections::BTreeMap<String, Arc<Value>>,
    /// Counts the commits that changed [`Tenant::subscriptions`], so that what is derived from
    /// them (the notifier's matchers) is rebuilt only when they change.
    pub subscriptions_version: u64,
}

/// What an entity contributes to the indexes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keys {
    types: Vec<String>,
    attrs: Vec<String>,
    geo: Vec<(String, [f64; 4])>,
}

impl Keys {
    /// Whether two versions of an entity have the same index entries (types, attribute names,
    /// GeoProperty values), checked without building them.
    pub fn same(a: &Entity, b: &Entity) -> bool {
        a.types == b.types
            && a.attrs.len() == b.attrs.len()
            && a.attrs.iter().zip(&b.attrs).all(|((na, ia), (nb, ib))| na == nb && same_geo(ia, ib))
    }

    /// The index keys of `e`.
    pub fn of(e: &Entity) -> Keys {
        let mut geo = Vec::new();
        for (name, instances) in &e.attrs {
            for a in instances.iter().filter(|a| a.kind == AttrKind::GeoProperty) {
                if let Some(b) = bbox(&a.value) {
                    geo.push((name.clone(), b));
                }
            }
        }
        Keys { types: e.types.clone(), attrs: e.attrs.keys().cloned().collect(), geo }
    }
}

/// Whether two versions of an attribute have the same GeoProperty values.
fn same_geo(a: &[haskap_model::Attribute], b: &[haskap_model::Attribute]) -> bool {
    let geo = |i: &[haskap_model::Attribute]| i.iter().filter(|x| x.kind == AttrKind::GeoProperty).count();
    geo(a) == geo(b)
        && a.iter()
            .filter(|x| x.kind == AttrKind::GeoProperty)
            .zip(b.iter().filter(|x| x.kind == AttrKind::GeoProperty))
            .all(|(x, y)| x.value == y.value)
}

/// The lon/lat bounding box of a GeoJSON geometry.
fn bbox(geometry: &Value) -> Option<[f64; 4]> {
    fn walk(v: &Value, b: &mut [f64; 4]) {
        let Some(a) = v.as_array() else { return };
        if let (Some(x), Some(y)) = (a.first().and_then(Value::as_f64), a.get(1).and_then(Value::as_f64)) {
            b[0] = b[0].min(x);
            b[1] = b[1].min(y);
            b[2] = b[2].max(x);
            b[3] = b[3].max(y);
        } else {
            a.iter().for_each(|i| walk(i, b));
        }
    }
    let mut b = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
    walk(geometry.get("coordinates")?, &mut b);
    (b[0] <= b[2]).then_some(b)
}

fn geo_box(b: [f64; 4], slot: u32) -> GeoBox {
    GeomWithData::new(Rectangle::from_corners([b[0], b[1]], [b[2], b[3]]), slot)
}

impl State {
    /// How many entities all tenants hold together.
    pub fn entity_count(&self) -> usize {
        self.tenants.values().map(|t| t.by_id.len()).sum()
    }

    /// Tenant `name`, created empty if it does not exist yet.
    pub(crate) fn tenant_mut(&mut self, name: &str) -> &mut Tenant {
        if !self.tenants.contains_key(name) {
            let t = Tenant { name: name.into(), builder: self.builder.clone(), ..Default::default() };
            self.tenants.insert(name.to_string(), t);
        }
        self.tenants.get_mut(name).expect("inserted above")
    }

    /// Sends every tenant's column build requests to `builder` from now on.
    pub(crate) fn build_columns_with(&mut self, builder: Sender<BuildRequest>) {
        for t in self.tenants.values_mut() {
            t.builder = Some(builder.clone());
        }
        self.builder = Some(builder);
    }
}

impl Tenant {
    /// How many entities the tenant holds.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the tenant holds no entity.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The encoded entity `id`.
    pub fn encoded(&self, id: &str) -> Option<&Encoded> {
        self.record(*self.by_id.get(id)?)
    }

    /// The entity `id`, decoded.
    pub fn get(&self, id: &str) -> Option<Arc<Entity>> {
        self.encoded(id).and_then(|b| decode(b).ok()).map(Arc::new)
    }

    /// The entity in `slot` with only the attributes in `wanted` (see [`decode_sparse`]).
    pub fn sparse_at(&self, slot: u32, wanted: &[&str]) -> Option<Entity> {
        self.record(slot).and_then(|b| decode_sparse(b, wanted).ok())
    }

    /// The entity in `slot`, decoded.
    pub fn entity_at(&self, slot: u32) -> Option<Entity> {
        self.record(slot).and_then(|b| decode(b).ok())
    }

    /// The entity in `slot`, decoded as far as `extent` asks (see [`decode_extent`]).
    pub fn entity_in(&self, slot: u32, extent: &Extent<'_>) -> Option<Entity> {
        self.record(slot).and_then(|b| decode_extent(b, extent).ok())
    }

    /// The stored record in `slot`.
    fn record(&self, slot: u32) -> Option<&Encoded> {
        self.slots.get(slot as usize)?.as_ref().map(|(_, b)| b)
    }

    /// A test of whether the entity in a slot, a candidate of [`Tenant::select`], satisfies `f`.
    /// A plain `q` (see [`haskap_query::eval::Compiled::is_plain`]) is decided on the columns of
    /// its attributes; otherwise, and for entities whose cells say so, the entity is decoded with
    /// the attributes in `wanted` ([`Filter::attributes`]).
    pub fn matcher<'a>(&'a self, f: &'a Filter, wanted: &'a [&'a str]) -> impl Fn(u32) -> bool + 'a {
        let columns =
            f.q.as_ref()
                .filter(|q| f.is_index_exact_but_q() && q.is_plain())
                .and_then(|q| Some((q, self.columns(&q.attributes)?)));
        move |slot| {
            if let Some((q, columns)) = &columns
                && columns.iter().all(|c| *c.get(slot) != Cell::Decode)
            {
                return q.matches_values(&|i| columns[i].get(slot).value().ok().flatten());
            }
            self.sparse_at(slot, wanted).is_some_and(|e| f.matches(&e))
        }
    }

    /// The columns of attributes `names`, or None while one is not built yet (its build is then
    /// requested, unless the tenant already has [`MAX_COLUMNS`]). An attribute no entity has
    /// gets an empty column, not kept.
    fn columns(&self, names: &[String]) -> Option<Vec<Arc<Column>>> {
        let mut out = Vec::with_capacity(names.len());
        let mut missing = Vec::new();
        let columns = self.columns.read();
        for name in names {
            match columns.built.get(name) {
                Some(c) => out.push(c.clone()),
                None if self.by_attr.get(name).is_none_or(|b| b.is_empty()) => out.push(Arc::default()),
                None if !columns.building.contains_key(name) => missing.push(name),
                None => {}
            }
        }
        drop(columns);
        if out.len() == names.len() {
            return Some(out);
        }
        for name in missing {
            self.request_column(name);
        }
        None
    }

    /// Asks the column builder for the column of attribute `name`, unless it is built, being
    /// built, or the tenant has [`MAX_COLUMNS`] already.
    pub(crate) fn request_column(&self, name: &str) {
        let Some(builder) = &self.builder else { return };
        let mut columns = self.columns.write();
        if columns.len() < MAX_COLUMNS && !columns.built.contains_key(name) && !columns.building.contains_key(name) {
            columns.building.insert(name.to_string(), Vec::new());
            let _ = builder.send((self.name.clone(), name.to_string()));
        }
    }

    /// Fills `column` (of attribute `name`) for up to [`BUILD_CHUNK`] entities having the
    /// attribute, from slot `from` on; the slot to go on from, or None when the column is full.
    pub(crate) fn fill_column(&self, name: &str, column: &mut Column, from: u32) -> Option<u32> {
        let having = self.by_attr.get(name)?;
        for (i, slot) in having.range(from..).enumerate() {
            if i == BUILD_CHUNK {
                return Some(slot);
            }
            if let Some(record) = self.record(slot) {
                column.set(slot, Cell::of(record, name));
            }
        }
        None
    }

    /// Makes a built column of attribute `name` available to queries, after replaying the
    /// writes made while it was built.
    pub(crate) fn install_column(&self, name: &str, mut column: Column) {
        let mut columns = self.columns.write();
        let Some(written) = columns.building.remove(name) else { return };
        for slot in written {
            column.set(slot, self.record(slot).map_or(Cell::Absent, |r| Cell::of(r, name)));
        }
        columns.built.insert(name.to_string(), Arc::new(column));
    }

    /// Whether the column of attribute `name` is built (`None`: not yet) and holds the cell of
    /// every slot's current record (for tests).
    #[cfg(test)]
    pub(crate) fn column_is_true(&self, name: &str) -> Option<bool> {
        let columns = self.columns.read();
        let column = columns.built.get(name)?;
        Some(
            (0..self.slots.len() as u32 + 1)
                .all(|s| *column.get(s) == self.record(s).map_or(Cell::Absent, |r| Cell::of(r, name))),
        )
    }

    /// Brings the columns up to date with the record in `slot` (`None`: the slot was emptied).
    fn update_columns(&mut self, slot: u32) {
        let record = self.record(slot).cloned();
        let columns = self.columns.get_mut();
        for written in columns.building.values_mut() {
            written.push(slot);
        }
        for (name, column) in columns.built.iter_mut() {
            let cell = record.as_ref().map_or(Cell::Absent, |r| Cell::of(r, name));
            Arc::make_mut(column).set(slot, cell);
        }
    }

    /// Every entity in slot order, decoded lazily.
    pub fn iter(&self) -> impl Iterator<Item = Entity> + '_ {
        self.live.iter().filter_map(|s| self.entity_at(s))
    }

    /// Type names (expanded) with how many entities have each.
    pub fn type_counts(&self) -> impl Iterator<Item = (&str, u64)> {
        self.by_type.iter().map(|(t, b)| (t.as_str(), b.len())).filter(|(_, n)| *n > 0)
    }

    /// Attribute names (expanded) with how many entities have each.
    pub fn attr_counts(&self) -> impl Iterator<Item = (&str, u64)> {
        self.by_attr.iter().map(|(a, b)| (a.as_str(), b.len())).filter(|(_, n)| *n > 0)
    }

    /// The slots of entities of type `t`.
    pub fn of_type(&self, t: &str) -> Option<&RoaringBitmap> {
        self.by_type.get(t)
    }

    /// The slots of entities that have attribute `a`.
    pub fn of_attr(&self, a: &str) -> Option<&RoaringBitmap> {
        self.by_attr.get(a)
    }

    /// The candidates of a query: a superset of its answer, and whether it is exact.
    pub fn select(&self, f: &Filter) -> (RoaringBitmap, bool) {
        let mut set = match &f.ids {
            Some(ids) => ids.iter().filter_map(|id| self.by_id.get(id.as_str()).copied()).collect(),
            None => self.live.clone(),
        };
        if let Some(t) = &f.types {
            set &= self.types(t);
        }
        if let Some(attrs) = &f.attrs {
            let mut any = RoaringBitmap::new();
            for a in attrs {
                if let Some(b) = self.by_attr.get(a) {
                    any |= b;
                }
            }
            set &= any;
        }
        if let Some(q) = &f.q {
            // Every attribute a query needs in all of its branches must be present.
            if let Some(required) = q.required_attribute() {
                set &= self.by_attr.get(required).cloned().unwrap_or_default();
            }
        }
        if let Some(g) = &f.geo {
            if let Some(e) = g.envelope() {
                let tree = self.geo.get(&g.property);
                let env = AABB::from_corners([e[0], e[1]], [e[2], e[3]]);
                let mut near: RoaringBitmap =
                    tree.into_iter().flat_map(|t| t.locate_in_envelope_intersecting(&env)).map(|b| b.data).collect();
                // Boxes straddling the antimeridian: also look on the other side.
                if e[0] < -180.0 || e[2] > 180.0 {
                    let shifted =
                        if e[0] < -180.0 { [e[0] + 360.0, e[2] + 360.0] } else { [e[0] - 360.0, e[2] - 360.0] };
                    let env = AABB::from_corners([shifted[0], e[1]], [shifted[1], e[3]]);
                    near.extend(tree.into_iter().flat_map(|t| t.locate_in_envelope_intersecting(&env)).map(|b| b.data));
                }
                set &= near;
            } else {
                set &= self.by_attr.get(&g.property).cloned().unwrap_or_default();
            }
        }
        (set, f.is_index_exact())
    }

    /// The points of GeoProperty `property` within `envelope` (`[min lon, min lat, max lon, max
    /// lat]`) of the entities in `among`, by slot, straight from the index. None when one of those
    /// geometries is not a point or the envelope crosses the antimeridian: then the geometries
    /// themselves must be read.
    pub fn points_within(
        &self,
        property: &str,
        envelope: [f64; 4],
        among: &RoaringBitmap,
    ) -> Option<Vec<(u32, [f64; 2])>> {
        if envelope[0] < -180.0 || envelope[2] > 180.0 {
            return None;
        }
        let Some(tree) = self.geo.get(property) else { return Some(Vec::new()) };
        let env = AABB::from_corners([envelope[0], envelope[1]], [envelope[2], envelope[3]]);
        let mut out = Vec::new();
        for b in tree.locate_in_envelope_intersecting(&env).filter(|b| among.contains(b.data)) {
            let (lo, hi) = (b.geom().lower(), b.geom().upper());
            if lo != hi {
                return None;
            }
            out.push((b.data, lo));
        }
        Some(out)
    }

    fn types(&self, t: &TypeExpr) -> RoaringBitmap {
        match t {
            TypeExpr::Is(name) => self.by_type.get(name).cloned().unwrap_or_default(),
            TypeExpr::And(v) => {
                let mut it = v.iter().map(|e| self.types(e));
                let first = it.next().unwrap_or_default();
                it.fold(first, |acc, b| acc & b)
            }
            TypeExpr::Or(v) => v.iter().fold(RoaringBitmap::new(), |acc, e| acc | self.types(e)),
        }
    }

    /// Stores `bytes` as entity `id`, moving its index entries from `old` to `new`.
    pub(crate) fn put(&mut self, id: &str, bytes: Encoded, new: &Keys, old: Option<&Keys>) {
        let slot = match self.by_id.get(id) {
            Some(&s) => {
                if let Some(old) = old {
                    // Only what changed moves: R-tree removals are costly where many entities
                    // share a location.
                    let gone = Keys {
                        types: old.types.iter().filter(|t| !new.types.contains(t)).cloned().collect(),
                        attrs: old.attrs.iter().filter(|a| !new.attrs.contains(a)).cloned().collect(),
                        geo: old.geo.iter().filter(|g| !new.geo.contains(g)).cloned().collect(),
                    };
                    self.unindex(s, &gone);
                }
                if let Some(e) = self.slots[s as usize].as_mut() {
                    e.1 = bytes;
                }
                s
            }
            None => {
                let key: Arc<str> = Arc::from(id);
                let s = match self.free.pop() {
                    Some(s) => {
                        self.slots[s as usize] = Some((key.clone(), bytes));
                        s
                    }
                    None => {
                        self.slots.push(Some((key.clone(), bytes)));
                        (self.slots.len() - 1) as u32
                    }
                };
                self.by_id.insert(key, s);
                self.live.insert(s);
                s
            }
        };
        for t in &new.types {
            self.by_type.entry(t.clone()).or_default().insert(slot);
        }
        for a in &new.attrs {
            self.by_attr.entry(a.clone()).or_default().insert(slot);
        }
        for (name, b) in &new.geo {
            if old.is_none_or(|o| !o.geo.contains(&(name.clone(), *b))) {
                self.geo.entry(name.clone()).or_default().insert(geo_box(*b, slot));
            }
        }
        self.update_columns(slot);
    }

    /// Replaces the stored bytes of entity `id`, whose index entries do not change.
    pub(crate) fn replace_bytes(&mut self, id: &str, bytes: Encoded) {
        if let Some(&s) = self.by_id.get(id)
            && let Some(e) = self.slots[s as usize].as_mut()
        {
            e.1 = bytes;
            self.update_columns(s);
        }
    }

    /// Removes entity `id`, whose index entries are `old`.
    pub(crate) fn remove(&mut self, id: &str, old: Option<&Keys>) {
        let Some(slot) = self.by_id.remove(id) else { return };
        if let Some(old) = old {
            self.unindex(slot, old);
        }
        self.slots[slot as usize] = None;
        self.live.remove(slot);
        self.free.push(slot);
        self.update_columns(slot);
    }

    fn unindex(&mut self, slot: u32, old: &Keys) {
        for t in &old.types {
            if let Some(b) = self.by_type.get_mut(t) {
                b.remove(slot);
            }
        }
        for a in &old.attrs {
            if let Some(b) = self.by_attr.get_mut(a) {
                b.remove(slot);
            }
        }
        for (name, b) in &old.geo {
            if let Some(tree) = self.geo.get_mut(name) {
                tree.remove(&geo_box(*b, slot));
            }
        }
    }
}

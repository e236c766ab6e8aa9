//! Columns: the value of one attribute for every entity of a tenant, by slot, in one contiguous
//! vector, so that `q` is decided for hundreds of candidates without reading their records.
//!
//! A tenant builds the column of an attribute the first time a query needs it and keeps it up to
//! date on every write from then on. A cell holds a single plain value (a number, a string, a
//! boolean or null); an entity whose attribute holds anything else (several instances, an array,
//! a compound value, a vocabulary IRI) gets [`Cell::Decode`] and is decided on its decoded
//! record instead, so that every answer is the one the full evaluator gives.
//!
//! Builds run off the query path, on the store's column builder thread, a chunk of slots at a
//! time under the read lock: neither queries nor writes wait for a build (a million entities take
//! about a second). Until a column is built, queries decide on decoded records as they would
//! without columns; writes made during a build are replayed when it is installed.

use std::collections::HashMap;
use std::sync::Arc;

use haskap_query::eval::Plain;

use crate::record::{instances_of, plain_instances};

/// The value of one attribute of one entity.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    /// The entity does not have the attribute (or it has no value).
    Absent,
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    Str(Box<str>),
    /// Anything else: decide on the decoded entity.
    Decode,
}

impl Cell {
    /// The cell of attribute `name` (expanded) of a stored entity.
    pub(crate) fn of(record: &[u8], name: &str) -> Cell {
        let Ok(found) = instances_of(record, name) else { return Cell::Decode };
        let Some(instances) = found else { return Cell::Absent };
        match plain_instances(instances) {
            Some(p) if p.vocab => Cell::Decode,
            Some(p) => match p.values.as_slice() {
                [] => Cell::Absent,
                [Plain::Null] => Cell::Null,
                [Plain::Bool(b)] => Cell::Bool(*b),
                [Plain::Number(n)] => Cell::Number(*n),
                [Plain::Str(s)] => Cell::Str((*s).into()),
                _ => Cell::Decode,
            },
            None => Cell::Decode,
        }
    }

    /// The value, `Ok(None)` when absent, `Err(())` when the entity must be decoded.
    pub(crate) fn value(&self) -> Result<Option<Plain<'_>>, ()> {
        Ok(Some(match self {
            Cell::Absent => return Ok(None),
            Cell::Null => Plain::Null,
            Cell::Bool(b) => Plain::Bool(*b),
            Cell::Number(n) => Plain::Number(*n),
            Cell::Str(s) => Plain::Str(s),
            Cell::Decode => return Err(()),
        }))
    }
}

/// One attribute's cells by slot; slots past the end are [`Cell::Absent`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Column {
    cells: Vec<Cell>,
}

impl Column {
    /// The cell of `slot`.
    pub(crate) fn get(&self, slot: u32) -> &Cell {
        self.cells.get(slot as usize).unwrap_or(&Cell::Absent)
    }

    /// Sets the cell of `slot`.
    pub(crate) fn set(&mut self, slot: u32, cell: Cell) {
        let i = slot as usize;
        if i >= self.cells.len() {
            if cell == Cell::Absent {
                return;
            }
            self.cells.resize(i + 1, Cell::Absent);
        }
        self.cells[i] = cell;
    }
}

/// A request to build the column of an attribute (expanded name) of a tenant.
pub(crate) type BuildRequest = (Arc<str>, String);

/// A tenant's columns: those built and those being built.
#[derive(Debug, Default)]
pub(crate) struct Columns {
    /// Built columns, kept up to date by the writer.
    pub(crate) built: HashMap<String, Arc<Column>>,
    /// Columns being built, each with the slots written since its build began.
    pub(crate) building: HashMap<String, Vec<u32>>,
}

impl Columns {
    /// How many columns are built or being built.
    pub(crate) fn len(&self) -> usize {
        self.built.len() + self.building.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_hold_single_plain_values_only() {
        let core = haskap_model::jsonld::ActiveContext::core(&json!({"@context": {"@vocab": "urn:v:"}})).unwrap();
        let p = haskap_model::parse::Parser { ctx: &core, now: 7, limits: Default::default() };
        let e = p
            .entity(&json!({"id": "urn:x:1", "type": "T", "n": 3, "s": "on", "b": false, "r": {"type": "Relationship", "object": "urn:x:2"},
                "list": [1, 2], "multi": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "urn:d:1"}],
                "o": {"type": "Property", "value": {"k": 1}}, "v": {"type": "VocabProperty", "vocab": "x"}}))
            .unwrap();
        let record = crate::record::encode(&e).unwrap();
        let cell = |n: &str| Cell::of(&record, &format!("urn:v:{n}"));
        assert_eq!(cell("n"), Cell::Number(3.0));
        assert_eq!(cell("s"), Cell::Str("on".into()));
        assert_eq!(cell("b"), Cell::Bool(false));
        assert_eq!(cell("r"), Cell::Str("urn:x:2".into()));
        assert_eq!(cell("missing"), Cell::Absent);
        for n in ["list", "multi", "o", "v"] {
            assert_eq!(cell(n), Cell::Decode, "{n}");
        }
        let mut c = Column::default();
        c.set(3, cell("n"));
        assert_eq!((c.get(0), c.get(3), c.get(99)), (&Cell::Absent, &Cell::Number(3.0), &Cell::Absent));
        c.set(50, Cell::Absent);
        assert_eq!(c.cells.len(), 4, "absent cells past the end take no room");
    }
}

//! The NGSI-LD information model of Haskap: entities and attributes in canonical (expanded) form,
//! JSON-LD term expansion and compaction, parsing and validation of what clients send, rendering
//! of what they get back, and the entity operations as pure functions.
//!
//! The key decision: entities are stored expanded (full IRIs for names and types), so clients
//! using different @contexts see the same data. Everything here is synchronous and free of I/O;
//! fetching remote contexts and HTTP belong to the api crate.
//!
//! ```
//! use haskap_model::{jsonld::ActiveContext, parse::{Parser, Limits}, render::*};
//! let core = ActiveContext::core(&serde_json::json!({"@context": {
//!     "@vocab": "https://uri.etsi.org/ngsi-ld/default-context/"}})).unwrap();
//! let parser = Parser { ctx: &core, now: 0, limits: Limits::default() };
//! let e = parser.entity(&serde_json::json!({
//!     "id": "urn:ngsi-ld:Shelter:1", "type": "Shelter", "capacity": 120})).unwrap();
//! let out = render_entity(&e, &core, &RenderOptions { format: Format::KeyValues, ..Default::default() });
//! assert_eq!(out["capacity"], 120);
//! ```

pub mod builtin;
pub mod entity;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod jsonld;
pub mod ops;
pub mod parse;
pub mod render;
pub mod validate;

pub use entity::{AttrKind, Attribute, Attrs, Entity};
pub use error::{ErrorKind, NgsiError};

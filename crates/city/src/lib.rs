//! Haskap's city services, on top of the NGSI-LD API:
//!
//! - [`import`]: the Digital Agency's municipal standard open datasets (CSV) into NGSI-LD entities;
//! - [`demo`]: the Tomakomai demo dataset (sample data);
//! - [`broker`]: writing entities to any NGSI-LD broker idempotently (both of the above use it);
//! - [`dashboard`]: the city dashboard's embedded assets and routes.
//!
//! The entities use the Haskap city vocabulary (`docs/city-vocabulary.md`), whose @context is
//! built into the binary ([`haskap_model::builtin::CITY_CONTEXT_URL`]).

pub mod broker;
pub mod dashboard;
pub mod demo;
pub mod entity;
pub mod import;

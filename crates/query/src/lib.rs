//! The query languages of NGSI-LD: `q`, `scopeQ`, entity type expressions and geo-queries,
//! each a parser to an AST plus an evaluator over the canonical entity of haskap-model.
//!
//! Parsers never panic and report errors with positions; evaluators are pure. Names in queries
//! are expanded with the request's @context by the caller before evaluation ([`q::Expr`] keeps
//! them as written so that errors can quote them).
//!
//! Invariant: query knows nothing of storage or HTTP.

pub mod eval;
pub mod filter;
#[cfg(test)]
mod fuzz;
pub mod geo;
pub mod order;
pub mod projection;
pub mod q;
pub mod types;

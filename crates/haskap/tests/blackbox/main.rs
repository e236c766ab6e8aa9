//! Black-box tests: each starts the real `haskap` binary on a free port with a temporary data
//! directory and talks HTTP to it.

#![allow(unreachable_pub, missing_docs)]

mod batch;
mod bounded;
mod city;
mod contexts;
mod corpus;
mod crash;
mod disk;
mod entities;
mod errors;
mod hardening;
mod lifecycle;
mod query;
mod subscriptions;
mod tenants;
mod util;

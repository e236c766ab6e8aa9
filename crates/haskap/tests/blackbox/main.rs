//! Black-box tests: each starts the real `haskap` binary on a free port with a temporary data
//! directory and talks HTTP to it.

#![allow(unreachable_pub, missing_docs)]

mod batch;
mod city;
mod contexts;
mod crash;
mod entities;
mod errors;
mod lifecycle;
mod query;
mod subscriptions;
mod tenants;
mod util;

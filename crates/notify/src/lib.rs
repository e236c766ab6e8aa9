//! Subscriptions and notifications.
//!
//! Today: the subscription model ([`subscription`]): validation of what clients send, the
//! canonical (expanded) form the store keeps, and rendering back with a client's @context.
//! Matching after commit, the durable outbox and delivery (HTTP, MQTT, a live stream) build on it.
//!
//! Invariant: notify has no HTTP types; delivery will sit behind a transport trait.

pub mod matcher;
pub mod subscription;

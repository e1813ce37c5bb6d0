//! An io_uring connection gateway for chat and IM systems.
//!
//! Thread-per-core shards on monoio hold WebSocket and raw TCP connections,
//! authenticate them with the backend's JWTs, keep them alive with heartbeats
//! on a per-shard timing wheel, and route messages to users and rooms across
//! shards through lock-free inboxes. A control side (admin HTTP, signals)
//! talks to the shards only by message.
//!
//! This crate must never: block a shard thread, share shard state across
//! threads behind a lock on the per-message path, panic on client input, or
//! let one client's input grow memory without bound.
#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod clock;
pub mod config;
pub mod control;
pub mod mesh;
pub mod metrics;
pub mod node;
pub mod outbound;
pub mod session;
mod shard;
pub mod store;
pub mod sys;
pub mod wheel;

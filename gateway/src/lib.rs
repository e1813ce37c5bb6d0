//! An io_uring connection gateway for chat and IM systems.
//!
//! The data plane: thread-per-core shards on monoio (`shard`) drive one
//! sans-IO `session` per WebSocket or raw TCP connection (handshake, JWT
//! auth, heartbeats and token expiry, QoS 1 window and resume, the closing
//! state machine), keep one timing wheel each (`wheel`), and route messages
//! to users and rooms across shards through lock-free queues (`mesh`); the
//! QoS 1 inboxes live in a `store` (in process or Redis). The control plane
//! (`control`: node lifecycle, admin HTTP, metrics) talks to the shards only
//! by message. `cluster` joins nodes: a registry in Redis, interest tables
//! and bus envelopes; the links are `relay`'s state machines, driven by the
//! shards. `clock` is the one clock; `proto` (another crate) holds every
//! parser of network bytes.
//!
//! Layers, from the bottom. A module imports only modules of its own layer
//! or below, and no two modules import each other, directly or around a
//! circle (`tests/layers.rs` reads this list and checks every `crate::`
//! path of every file against it):
//!
//! 0. base: clock, wheel, sys, stats, rate, redis_client, heap, hot, outbound, grants, tls13
//! 1. settings: config, auth, admission
//! 2. protocol: session, store, cluster
//! 3. queues: mesh
//! 4. routing: router
//! 5. services: backend, shard
//! 6. composition: control
//!
//! This crate must never: block a shard thread, share shard state across
//! threads behind a lock on the per-message path, panic on client input, or
//! let one client's input grow memory without bound.
#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub(crate) mod admission;
pub mod auth;
pub(crate) mod backend;
pub(crate) mod clock;
pub(crate) mod cluster;
pub mod config;
pub mod control;
pub(crate) mod grants;
pub mod heap;
pub(crate) mod hot;
pub(crate) mod mesh;
pub(crate) mod outbound;
pub(crate) mod rate;
pub(crate) mod redis_client;
pub(crate) mod router;
pub(crate) mod session;
mod shard;
pub(crate) mod stats;
pub(crate) mod store;
pub(crate) mod sys;
pub mod tls13;
pub(crate) mod wheel;

//! The node-to-node bus links as sans-IO state machines, in the shape of
//! quinn-proto: every method takes the current time (`now`) and received
//! bytes, and hands back bytes to write, events, and the next instant it
//! wants to be woken at.
//!
//! Data flows one way per link: the dialer's [`Link`] (one per peer node,
//! living across TCP reconnects) sends numbered batches of opaque envelopes;
//! the acceptor's [`Inbound`] (one per accepted TCP connection) delivers
//! them exactly once, in order, with the help of [`Seen`], the dedupe state
//! the acceptor keeps across connections, and acknowledges them
//! cumulatively. Each node shard dials every peer, so both directions exist
//! as two links. The wire format is [`proto::bus`].
//!
//! This crate must never open a socket, read a clock, spawn a thread or
//! block: the caller (a monoio shard in `gateway/`) owns the TCP stream and
//! the timers, and passes `now` in. That keeps every behaviour here
//! deterministic and testable on simulated time (see `tests/`).
//!
//! Modules:
//! - [`config`]: [`Config`] and [`Identity`];
//! - [`auth`]: the cluster [`Secrets`] and the proofs of the handshake;
//! - [`link`]: the dialer ([`Link`]);
//! - [`inbound`]: the acceptor ([`Inbound`]);
//! - [`seen`]: [`Seen`], what the acceptor already received per peer shard;
//! - [`stats`]: per-link counters.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod auth;
mod backoff;
pub mod config;
pub mod inbound;
pub mod link;
mod queue;
pub mod seen;
pub mod stats;
mod timer;

pub use auth::Secrets;
pub use config::{Config, Identity};
pub use inbound::{Inbound, InboundEvent};
pub use link::{Link, LinkEvent, LinkState, PeerInfo, SendError};
pub use seen::{Seen, SeenEntry};
pub use stats::{InboundStats, LinkStats};

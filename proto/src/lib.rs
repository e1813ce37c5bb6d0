//! The gateway's wire: the client protocol schema (prost + canonical JSON) and
//! sans-IO codecs for every byte that arrives from the network.
//!
//! Nothing here touches a socket, a clock or a thread. Every parser returns
//! "need more bytes", a value, or a typed error, checks every length against a
//! maximum before it allocates, and never panics on input: each one has a
//! cargo-fuzz target in `fuzz/`.
//!
//! Modules, from the socket up:
//! - [`frame`]: u32 big-endian length-prefixed frames (raw TCP port);
//! - [`handshake`]: the HTTP/1.1 WebSocket upgrade, both sides;
//! - [`ws`]: RFC 6455 frames, unmasked in place, and message reassembly;
//! - [`codec`]: frame payloads in protobuf or canonical protobuf JSON;
//! - [`bus`]: the node-to-node bus (handshake, batches of envelopes, acks).
#![warn(missing_docs)]

pub mod bus;
pub mod codec;
pub mod frame;
pub mod handshake;
pub mod ws;

/// Generated client protocol types (`im.gateway.v1`).
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/im.gateway.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/im.gateway.v1.serde.rs"));
}

/// Generated bus envelope types (`im.gateway.bus.v1`): what one node tells
/// another inside a bus batch (`bus`).
#[allow(missing_docs, clippy::all)]
pub mod bus_v1 {
    include!(concat!(env!("OUT_DIR"), "/im.gateway.bus.v1.rs"));
}

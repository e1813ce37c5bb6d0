//! `HELLO` and `WELCOME`: the handshake that opens every bus connection.
//!
//! The dialer sends `HELLO` first (`version: u16, shard: u16, shards: u16,
//! incarnation: u64, node_id`); the acceptor answers `WELCOME` (`version: u16,
//! incarnation: u64, received: u64, node_id`), where `received` is the
//! highest batch number it already holds from this dialer (same node id,
//! shard and incarnation), 0 if none. A node id is a `u8` length (1..=64)
//! followed by that many UTF-8 bytes.
//!
//! The parser reads the version-1 layout whatever the version says;
//! comparing versions is the link's business, not the codec's.

use super::{encode_header, BusError, Kind, Limits, Malformed, Reader};

/// Hard maximum of a node id's length: its prefix is one byte, and we keep
/// well below that.
pub(crate) const MAX_NODE_ID: usize = 64;

/// The dialer's introduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    /// Bus protocol version the dialer speaks.
    pub version: u16,
    /// The dialing shard.
    pub shard: u16,
    /// How many shards the dialing node runs.
    pub shards: u16,
    /// The dialing node's incarnation (changes at every process start).
    pub incarnation: u64,
    /// The dialing node's id.
    pub node_id: &'a str,
}

/// The acceptor's answer to a [`Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome<'a> {
    /// Bus protocol version the acceptor speaks.
    pub version: u16,
    /// The accepting node's incarnation.
    pub incarnation: u64,
    /// Highest batch number already received from this dialer, 0 if none.
    pub received: u64,
    /// The accepting node's id.
    pub node_id: &'a str,
}

impl<'a> Hello<'a> {
    /// Decodes a `HELLO` body.
    pub(crate) fn load(body: &'a [u8], limits: &Limits) -> Result<Hello<'a>, BusError> {
        let mut r = Reader::new(Kind::Hello, body);
        let hello = Hello {
            version: r.u16()?,
            shard: r.u16()?,
            shards: r.u16()?,
            incarnation: r.u64()?,
            node_id: node_id(&mut r, limits)?,
        };
        r.finish()?;
        Ok(hello)
    }
}

impl<'a> Welcome<'a> {
    /// Decodes a `WELCOME` body.
    pub(crate) fn load(body: &'a [u8], limits: &Limits) -> Result<Welcome<'a>, BusError> {
        let mut r = Reader::new(Kind::Welcome, body);
        let welcome = Welcome {
            version: r.u16()?,
            incarnation: r.u64()?,
            received: r.u64()?,
            node_id: node_id(&mut r, limits)?,
        };
        r.finish()?;
        Ok(welcome)
    }
}

fn node_id<'a>(r: &mut Reader<'a>, limits: &Limits) -> Result<&'a str, BusError> {
    let len = usize::from(r.u8()?);
    let max = limits.max_node_id.min(MAX_NODE_ID);
    if len == 0 || len > max {
        return Err(r.err(Malformed::NodeIdLength { len, max }));
    }
    let bytes = r.bytes(len)?;
    std::str::from_utf8(bytes).map_err(|_| r.err(Malformed::NodeIdUtf8))
}

fn put_node_id(node_id: &str, out: &mut Vec<u8>) {
    let len = node_id.len();
    assert!(
        (1..=MAX_NODE_ID).contains(&len),
        "bus node id must be 1..=64 bytes, got {len}"
    );
    out.push(len as u8);
    out.extend_from_slice(node_id.as_bytes());
}

/// Appends a `HELLO` frame to `out`.
///
/// # Panics
/// If the node id is empty or longer than 64 bytes (a configuration the
/// gateway validates at startup).
pub fn encode_hello(hello: &Hello<'_>, out: &mut Vec<u8>) {
    let body_len = 2 + 2 + 2 + 8 + 1 + hello.node_id.len();
    out.reserve(super::HEADER_LEN + body_len);
    encode_header(Kind::Hello, body_len, out);
    out.extend_from_slice(&hello.version.to_be_bytes());
    out.extend_from_slice(&hello.shard.to_be_bytes());
    out.extend_from_slice(&hello.shards.to_be_bytes());
    out.extend_from_slice(&hello.incarnation.to_be_bytes());
    put_node_id(hello.node_id, out);
}

/// Appends a `WELCOME` frame to `out`.
///
/// # Panics
/// If the node id is empty or longer than 64 bytes.
pub fn encode_welcome(welcome: &Welcome<'_>, out: &mut Vec<u8>) {
    let body_len = 2 + 8 + 8 + 1 + welcome.node_id.len();
    out.reserve(super::HEADER_LEN + body_len);
    encode_header(Kind::Welcome, body_len, out);
    out.extend_from_slice(&welcome.version.to_be_bytes());
    out.extend_from_slice(&welcome.incarnation.to_be_bytes());
    out.extend_from_slice(&welcome.received.to_be_bytes());
    put_node_id(welcome.node_id, out);
}

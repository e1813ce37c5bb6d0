//! The node-to-node bus wire: the framing of one TCP stream between two
//! gateway nodes, as pure functions (no IO, no clock).
//!
//! Every frame is an 8-byte header followed by its body:
//!
//! ```text
//! magic: u8 = 0xB5 | kind: u8 | flags: u8 = 0 | reserved: u8 = 0 | body_len: u32 BE
//! ```
//!
//! Kinds and bodies (numbers big-endian):
//! - [`Kind::Hello`] (dialer to acceptor): see [`Hello`];
//! - [`Kind::Welcome`] (acceptor to dialer): see [`Welcome`];
//! - [`Kind::Batch`]: `seq: u64, count: u32`, then `count` envelopes, each
//!   `len: u32` + bytes (opaque to the bus), see [`Batch`] and [`BatchWriter`];
//! - [`Kind::Ack`]: `seq: u64`, cumulative (every batch `<= seq` received);
//! - [`Kind::Ping`]: empty; an `ACK` is the answer;
//! - [`Kind::Auth`]: the challenge-response of a cluster with a secret,
//!   between `HELLO` and `WELCOME`, see [`Auth`].
//!
//! Invariants:
//! - [`parse`] never panics on input and never slices past a checked bound.
//! - The body length is checked against [`Limits::max_body`] as soon as the
//!   header is complete ([`peek_header`]), before anyone buffers the body.
//! - A frame is returned only once its whole body is present and valid: a
//!   `BATCH`'s count and every envelope length must add up to `body_len`
//!   exactly, with nothing trailing.
//! - `flags` and `reserved` must be 0: nothing is negotiated yet.

mod auth;
mod batch;
mod control;
mod error;
mod hello;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;

pub use auth::{encode_auth, Auth, MAX_PROOFS, NONCE_LEN, PROOF_LEN};
pub use batch::{Batch, BatchWriter, Envelopes, BATCH_PREFIX_LEN, ENVELOPE_PREFIX_LEN};
pub use control::{encode_ack, encode_ping};
pub use error::{BusError, Malformed};
pub use hello::{encode_hello, encode_welcome, Hello, Welcome};

/// The first byte of every frame.
pub const MAGIC: u8 = 0xB5;

/// Length of the fixed frame header.
pub const HEADER_LEN: usize = 8;

/// The bus protocol version this code speaks, sent in `HELLO` and `WELCOME`.
pub const VERSION: u16 = 1;

/// The kind byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `1`: the dialer introduces itself.
    Hello,
    /// `2`: the acceptor answers a `HELLO`.
    Welcome,
    /// `3`: a numbered batch of envelopes.
    Batch,
    /// `4`: a cumulative acknowledgement.
    Ack,
    /// `5`: a keep-alive, answered by an `ACK`.
    Ping,
    /// `6`: a nonce and proofs of the cluster secret.
    Auth,
}

impl Kind {
    /// The kind byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            Kind::Hello => 1,
            Kind::Welcome => 2,
            Kind::Batch => 3,
            Kind::Ack => 4,
            Kind::Ping => 5,
            Kind::Auth => 6,
        }
    }

    /// The kind of a kind byte, `None` for an unknown one.
    pub fn from_u8(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Batch,
            4 => Kind::Ack,
            5 => Kind::Ping,
            6 => Kind::Auth,
            _ => return None,
        })
    }
}

/// Maxima checked by the parser before it slices anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame body accepted (default 1 MiB).
    pub max_body: usize,
    /// Most envelopes in one batch (default 65 536).
    pub max_envelopes: usize,
    /// Longest node id in bytes (default and hard maximum 64; at least 1).
    pub max_node_id: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 1 << 20,
            max_envelopes: 1 << 16,
            max_node_id: hello::MAX_NODE_ID,
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The frame's kind.
    pub kind: Kind,
    /// Length of the body that follows the header.
    pub body_len: usize,
}

impl Header {
    /// Header plus body: the bytes the whole frame takes.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len
    }
}

/// One parsed frame, borrowing from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A `HELLO`.
    Hello(Hello<'a>),
    /// A `WELCOME`.
    Welcome(Welcome<'a>),
    /// A `BATCH`, already validated.
    Batch(Batch<'a>),
    /// An `ACK` of every batch up to and including this number.
    Ack(u64),
    /// A `PING`.
    Ping,
    /// An `AUTH`.
    Auth(Auth<'a>),
}

impl Frame<'_> {
    /// The frame's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Frame::Hello(_) => Kind::Hello,
            Frame::Welcome(_) => Kind::Welcome,
            Frame::Batch(_) => Kind::Batch,
            Frame::Ack(_) => Kind::Ack,
            Frame::Ping => Kind::Ping,
            Frame::Auth(_) => Kind::Auth,
        }
    }

    /// Appends this frame's encoding to `out`.
    ///
    /// # Panics
    /// As the encoder of its kind (a node id longer than 64 bytes).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Hello(h) => encode_hello(h, out),
            Frame::Welcome(w) => encode_welcome(w, out),
            Frame::Batch(b) => b.encode(out),
            Frame::Ack(seq) => encode_ack(*seq, out),
            Frame::Ping => encode_ping(out),
            Frame::Auth(a) => encode_auth(a.nonce, a.proofs, out),
        }
    }
}

/// Decodes the header at the front of `buf` and checks it against `limits`.
///
/// Returns `Ok(None)` when fewer than [`HEADER_LEN`] bytes are present. The
/// body length is checked here, so a caller may use
/// [`Header::frame_len`] to know how much to buffer before calling [`parse`].
pub fn peek_header(buf: &[u8], limits: &Limits) -> Result<Option<Header>, BusError> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        // Fail fast on a bad first byte, before waiting for the rest.
        return match buf.first() {
            Some(&m) if m != MAGIC => Err(BusError::BadMagic(m)),
            _ => Ok(None),
        };
    };
    if head[0] != MAGIC {
        return Err(BusError::BadMagic(head[0]));
    }
    let kind = Kind::from_u8(head[1]).ok_or(BusError::UnknownKind(head[1]))?;
    if head[2] != 0 || head[3] != 0 {
        return Err(BusError::NonzeroFlags {
            flags: head[2],
            reserved: head[3],
        });
    }
    let declared = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let body_len = usize::try_from(declared).unwrap_or(usize::MAX);
    if body_len > limits.max_body {
        return Err(BusError::BodyTooLarge {
            size: body_len,
            max: limits.max_body,
        });
    }
    if body_len > usize::MAX - HEADER_LEN {
        return Err(BusError::BodyTooLarge {
            size: body_len,
            max: limits.max_body,
        });
    }
    Ok(Some(Header { kind, body_len }))
}

/// Parses one frame from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, or `Ok(Some((frame,
/// consumed)))` where `consumed` is the number of bytes to drop from the front
/// of `buf`. Errors are the peer's fault and leave the stream unusable.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Option<(Frame<'a>, usize)>, BusError> {
    let Some(header) = peek_header(buf, limits)? else {
        return Ok(None);
    };
    let end = header.frame_len();
    let Some(body) = buf.get(HEADER_LEN..end) else {
        return Ok(None);
    };
    let frame = match header.kind {
        Kind::Hello => Frame::Hello(Hello::load(body, limits)?),
        Kind::Welcome => Frame::Welcome(Welcome::load(body, limits)?),
        Kind::Batch => Frame::Batch(Batch::load(body, limits)?),
        Kind::Ack => Frame::Ack(control::load_ack(body)?),
        Kind::Ping => {
            control::load_ping(body)?;
            Frame::Ping
        }
        Kind::Auth => Frame::Auth(Auth::load(body)?),
    };
    Ok(Some((frame, end)))
}

/// Appends a header announcing a body of `body_len` bytes.
///
/// # Panics
/// If `body_len` does not fit a `u32` (a bug of the caller).
pub(crate) fn encode_header(kind: Kind, body_len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&[MAGIC, kind.to_u8(), 0, 0]);
    out.extend_from_slice(&body_len_u32(body_len).to_be_bytes());
}

/// A body length as its wire `u32`.
///
/// # Panics
/// If it does not fit: a caller's bug, bodies are bounded far below 4 GiB.
pub(crate) fn body_len_u32(body_len: usize) -> u32 {
    u32::try_from(body_len).expect("bus frame body must fit a u32")
}

/// A cursor over a body that reads big-endian fields, failing with
/// [`Malformed::Truncated`] when the body ends early.
pub(crate) struct Reader<'a> {
    pub(crate) rest: &'a [u8],
    pub(crate) kind: Kind,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(kind: Kind, body: &'a [u8]) -> Reader<'a> {
        Reader { rest: body, kind }
    }

    pub(crate) fn err(&self, what: Malformed) -> BusError {
        BusError::Malformed {
            kind: self.kind,
            what,
        }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], BusError> {
        if n > self.rest.len() {
            return Err(self.err(Malformed::Truncated));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], BusError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, BusError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, BusError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, BusError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, BusError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Fails with [`Malformed::Trailing`] if anything is left.
    pub(crate) fn finish(self) -> Result<(), BusError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.err(Malformed::Trailing(self.rest.len())))
        }
    }
}

//! Why a bus frame was rejected. Every variant is the peer's fault and leaves
//! the stream unusable: the connection must be closed (a retry on a new
//! connection makes sense only if the peer was restarted with a fix).

use super::Kind;

/// A bus frame the peer should not have sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The first byte of a frame is not [`super::MAGIC`]: not a bus stream,
    /// or framing was lost.
    #[error("bad magic byte {0:#04x}")]
    BadMagic(u8),
    /// The kind byte names no frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// `flags` or `reserved` is not 0.
    #[error("nonzero header flags {flags:#04x} / reserved {reserved:#04x}")]
    NonzeroFlags {
        /// The flags byte.
        flags: u8,
        /// The reserved byte.
        reserved: u8,
    },
    /// The header announces a body longer than [`super::Limits::max_body`].
    #[error("frame body of {size} bytes exceeds the maximum of {max}")]
    BodyTooLarge {
        /// The announced body length.
        size: usize,
        /// The allowed maximum.
        max: usize,
    },
    /// The body does not match its kind's layout.
    #[error("malformed {kind:?} body: {what}")]
    Malformed {
        /// The frame's kind.
        kind: Kind,
        /// What was wrong.
        what: Malformed,
    },
}

/// What was wrong with a frame body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The body ends before a field does.
    #[error("truncated")]
    Truncated,
    /// Bytes are left after the last field (or the last envelope).
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// The node id is empty or longer than the limit.
    #[error("node id of {len} bytes (allowed 1..={max})")]
    NodeIdLength {
        /// Its declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The node id is not UTF-8.
    #[error("node id is not UTF-8")]
    NodeIdUtf8,
    /// A batch declares more envelopes than the limit.
    #[error("{count} envelopes (max {max})")]
    TooManyEnvelopes {
        /// The declared count.
        count: u32,
        /// The limit.
        max: usize,
    },
    /// A batch declares more envelopes than its body could hold.
    #[error("{count} envelopes cannot fit in {bytes} bytes")]
    CountExceedsBody {
        /// The declared count.
        count: u32,
        /// Bytes after the count field.
        bytes: usize,
    },
    /// An `AUTH` declares more proofs than allowed.
    #[error("{0} proofs (max 4)")]
    TooManyProofs(usize),
    /// An envelope's length runs past the end of the body.
    #[error("envelope {index} of {len} bytes runs past the body")]
    EnvelopeOverrun {
        /// Its index in the batch.
        index: u32,
        /// Its declared length.
        len: u32,
    },
}

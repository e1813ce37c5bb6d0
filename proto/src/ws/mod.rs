//! RFC 6455 WebSocket framing, sans IO: decode frame heads and unmask payloads
//! in place ([`decode_frame`]), reassemble fragmented messages and validate
//! control frames ([`Assembler`]), and encode frames ([`encode_frame`],
//! [`encode_close`]).
//!
//! We do not use tungstenite's `WebSocket`: it keeps a 4 KiB read buffer per
//! connection, and the gateway's idle connections must hold no buffer at all.
//!
//! permessage-deflate (RFC 7692) is the one extension: negotiated in
//! [`extensions`], RSV1 checked by [`decode_frame_ext`] and the
//! [`Assembler`], messages compressed and inflated in [`deflate`].
//!
//! Invariants:
//! - RSV2 and RSV3 are always 0; RSV1 only with permessage-deflate, on the
//!   first frame of a data message.
//! - Every length is checked against the caller's maximum as soon as it is
//!   known, before the caller waits for (or buffers) the payload.
//! - Nothing here panics on input or slices past a checked bound.
//! - Text payloads are not UTF-8 validated here (the JSON decoder does it);
//!   close reasons are.

mod assemble;
mod decode;
pub mod deflate;
mod encode;
pub mod extensions;

pub use assemble::{Assembler, Event};
pub use decode::{apply_mask, decode_frame, decode_frame_ext};
pub use encode::{encode_close, encode_frame, encode_header, header_len};

/// Largest payload of a control frame (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode (RFC 6455 section 5.2); reserved opcodes are rejected by
/// the decoder and have no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// `0x0`: a continuation fragment of a data message.
    Continuation,
    /// `0x1`: the first (or only) frame of a UTF-8 text message.
    Text,
    /// `0x2`: the first (or only) frame of a binary message.
    Binary,
    /// `0x8`: connection close (control).
    Close,
    /// `0x9`: ping (control).
    Ping,
    /// `0xA`: pong (control).
    Pong,
}

impl Opcode {
    /// Parses the 4-bit opcode; `None` for the reserved values.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// Which end of the connection is decoding: it fixes the masking rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We are the server: frames come from clients and MUST be masked.
    Server,
    /// We are the client: frames come from the server and MUST NOT be masked.
    Client,
}

/// A decoded frame header. The payload is
/// `buf[header_len..header_len + payload_len]`, already unmasked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// Whether this is the final fragment of a message.
    pub fin: bool,
    /// RSV1: the message is compressed (permessage-deflate only).
    pub rsv1: bool,
    /// The frame's opcode.
    pub opcode: Opcode,
    /// Bytes of header (including any masking key) before the payload.
    pub header_len: usize,
    /// Bytes of payload after the header.
    pub payload_len: usize,
}

impl FrameHead {
    /// Header plus payload: how many bytes to drop from the read buffer.
    pub fn frame_len(&self) -> usize {
        self.header_len.saturating_add(self.payload_len)
    }
}

/// Why a WebSocket frame or message was rejected. Every variant is the peer's
/// fault and fatal: answer with a close frame carrying [`WsError::close_code`]
/// and drop the connection; retrying the same bytes cannot succeed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WsError {
    /// A frame or reassembled message is longer than allowed.
    #[error("message of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The announced (or accumulated) length.
        size: u64,
        /// The maximum the caller allows.
        max: usize,
    },
    /// A client sent an unmasked frame (RFC 6455 section 5.1).
    #[error("client frame is not masked")]
    UnmaskedClientFrame,
    /// A server sent a masked frame (RFC 6455 section 5.1).
    #[error("server frame is masked")]
    MaskedServerFrame,
    /// An RSV bit is set that no negotiated extension allows (RSV1 without
    /// permessage-deflate, or on a control frame or a continuation).
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// A compressed message that does not inflate (RFC 7692 section 8.1).
    #[error("compressed message does not inflate")]
    BadCompressed,
    /// The opcode is one of the reserved values.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame without the FIN bit.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(usize),
    /// The most significant bit of a 64-bit payload length is set.
    #[error("64-bit payload length has its most significant bit set")]
    BadLength,
    /// A continuation without a started message, or a new data frame while a
    /// fragmented message is in progress.
    #[error("unexpected continuation or interleaved data frame")]
    BadContinuation,
    /// A close frame with a 1-byte payload (a code needs 2).
    #[error("close frame payload of 1 byte")]
    BadClosePayload,
    /// A close code that may not be sent on the wire (RFC 6455 section 7.4).
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A close reason that is not valid UTF-8.
    #[error("close reason is not valid UTF-8")]
    InvalidUtf8,
}

impl WsError {
    /// The close code to send back (RFC 6455 section 7.4.1): 1009 (message too
    /// big) for [`WsError::TooLarge`], 1007 (invalid payload data) for
    /// [`WsError::InvalidUtf8`] and [`WsError::BadCompressed`], 1002
    /// (protocol error) otherwise.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => close_code::TOO_BIG,
            Self::InvalidUtf8 | Self::BadCompressed => close_code::INVALID_PAYLOAD,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

/// Close codes used by the gateway (RFC 6455 section 7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (server shutdown, draining).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A data type the endpoint cannot accept.
    pub const UNSUPPORTED: u16 = 1003;
    /// Payload data inconsistent with the message type (e.g. bad UTF-8).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message that violates the endpoint's policy.
    pub const POLICY: u16 = 1008;
    /// A message too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// An unexpected condition on the server.
    pub const INTERNAL: u16 = 1011;
    /// The server is restarting.
    pub const SERVICE_RESTART: u16 = 1012;
    /// Try again later (overload).
    pub const TRY_AGAIN_LATER: u16 = 1013;

    /// Whether `code` may appear in a close frame: 1000-1003, 1007-1014
    /// (registered), 3000-4999 (libraries, frameworks and applications).
    /// 1004-1006 and 1015 are reserved or must never be sent.
    pub fn is_valid(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

#[cfg(test)]
mod tests;

//! Payload encodings of the two WebSocket subprotocols: protobuf in binary
//! messages (`im.gateway.v1+proto`, also used on the raw TCP port) and the
//! canonical protobuf JSON mapping in text messages (`im.gateway.v1+json`,
//! through the pbjson serde impls).
//!
//! Invariants:
//! - Decoders never panic; they return a [`DecodeError`] for bytes that are
//!   not one frame of the encoding (the gateway answers `BAD_FRAME`).
//! - Encoders cannot fail: a protobuf enum field holding a value unknown to
//!   this schema (possible when relaying a newer peer's frame) is written to
//!   JSON as its number, as the proto3 JSON mapping prescribes (pbjson alone
//!   would refuse it).
//! - A JSON object with an unknown key is a decode error, while an unknown
//!   protobuf field is skipped: an unknown frame member therefore decodes to
//!   `frame: None` in protobuf and to an error in JSON.

mod enums;

use crate::v1;

/// Subprotocol name of protobuf frames in binary messages.
pub const SUBPROTOCOL_PROTO: &str = "im.gateway.v1+proto";
/// Subprotocol name of canonical protobuf JSON frames in text messages.
pub const SUBPROTOCOL_JSON: &str = "im.gateway.v1+json";

/// How frames are encoded on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Protobuf binary encoding, in binary WebSocket messages.
    Proto,
    /// Canonical protobuf JSON mapping, in text WebSocket messages.
    Json,
}

impl Encoding {
    /// The subprotocol name announcing this encoding.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Self::Proto => SUBPROTOCOL_PROTO,
            Self::Json => SUBPROTOCOL_JSON,
        }
    }

    /// The encoding a subprotocol name announces, if it is one of ours
    /// (exact, case-sensitive match as RFC 6455 requires).
    pub fn from_subprotocol(name: &str) -> Option<Self> {
        match name {
            SUBPROTOCOL_PROTO => Some(Self::Proto),
            SUBPROTOCOL_JSON => Some(Self::Json),
            _ => None,
        }
    }

    /// Whether frames travel in text (JSON) rather than binary messages.
    pub fn is_text(self) -> bool {
        self == Self::Json
    }
}

/// The first of the client's `offered` subprotocols (in its order of
/// preference) that we speak, with its encoding.
pub fn negotiate<S: AsRef<str>>(offered: &[S]) -> Option<(Encoding, &str)> {
    offered.iter().find_map(|p| {
        let p = p.as_ref();
        Encoding::from_subprotocol(p).map(|e| (e, p))
    })
}

/// Why a frame payload did not decode. The peer's fault; answer `BAD_FRAME`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a valid protobuf encoding of the frame message.
    #[error("bad protobuf frame: {0}")]
    Proto(#[from] prost::DecodeError),
    /// Not a valid canonical JSON encoding of the frame message.
    #[error("bad JSON frame: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decodes a frame sent by a client.
pub fn decode_client(enc: Encoding, bytes: &[u8]) -> Result<v1::ClientFrame, DecodeError> {
    decode(enc, bytes)
}

/// Decodes a frame sent by the server.
pub fn decode_server(enc: Encoding, bytes: &[u8]) -> Result<v1::ServerFrame, DecodeError> {
    decode(enc, bytes)
}

/// Appends the encoding of a frame for a client to `out`.
pub fn encode_server(enc: Encoding, frame: &v1::ServerFrame, out: &mut Vec<u8>) {
    match enc {
        Encoding::Proto => encode_proto(frame, out),
        Encoding::Json => enums::encode_json(frame, out),
    }
}

/// Appends the encoding of a frame for the server to `out`.
pub fn encode_client(enc: Encoding, frame: &v1::ClientFrame, out: &mut Vec<u8>) {
    match enc {
        Encoding::Proto => encode_proto(frame, out),
        Encoding::Json => enums::encode_json(frame, out),
    }
}

fn decode<M>(enc: Encoding, bytes: &[u8]) -> Result<M, DecodeError>
where
    M: prost::Message + Default + serde::de::DeserializeOwned,
{
    Ok(match enc {
        Encoding::Proto => M::decode(bytes)?,
        Encoding::Json => serde_json::from_slice(bytes)?,
    })
}

fn encode_proto(frame: &impl prost::Message, out: &mut Vec<u8>) {
    out.reserve(frame.encoded_len());
    // A Vec grows on demand, so encoding into it cannot run out of capacity.
    let res = frame.encode(out);
    debug_assert!(res.is_ok(), "protobuf encoding into a Vec failed");
}

#[cfg(test)]
mod tests;

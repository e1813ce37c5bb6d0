//! Server frames ready for the wire, encoded once and shared.
//!
//! A room broadcast reaches thousands of connections on several shards; the
//! frame is encoded at most once per wire format (WebSocket binary, WebSocket
//! JSON, raw TCP) by whichever shard needs that format first, and every member
//! copies the same bytes into its pending output. Nothing is re-encoded per
//! member.
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use proto::codec::{self, Encoding};
use proto::v1::ServerFrame;
use proto::ws::{self, Opcode};

/// How a connection frames its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// WebSocket, binary messages of protobuf (`im.gateway.v1+proto`).
    WsProto,
    /// WebSocket, text messages of protobuf JSON (`im.gateway.v1+json`).
    WsJson,
    /// Raw TCP, u32 big-endian length-prefixed protobuf.
    Tcp,
}

impl Wire {
    /// Transport label used in metrics and presence.
    pub fn transport(self) -> &'static str {
        match self {
            Wire::WsProto | Wire::WsJson => "ws",
            Wire::Tcp => "tcp",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The WebSocket wire carrying `enc` (the negotiated subprotocol).
    pub fn websocket(enc: Encoding) -> Wire {
        match enc {
            Encoding::Proto => Wire::WsProto,
            Encoding::Json => Wire::WsJson,
        }
    }

    /// How this wire encodes frames, and the WebSocket opcode of a message
    /// (text for JSON; raw TCP frames are protobuf).
    pub fn encoding(self) -> (Encoding, Opcode) {
        match self {
            Wire::WsJson => (Encoding::Json, Opcode::Text),
            Wire::WsProto | Wire::Tcp => (Encoding::Proto, Opcode::Binary),
        }
    }

    /// Appends `frame`, framed for this wire, to `out`.
    pub fn encode(self, frame: &ServerFrame, out: &mut Vec<u8>) {
        match self {
            Wire::Tcp => {
                let start = out.len();
                proto::frame::encode_header(0, out);
                codec::encode_server(Encoding::Proto, frame, out);
                let len = (out.len() - start - proto::frame::HEADER_LEN) as u32;
                out[start..start + proto::frame::HEADER_LEN].copy_from_slice(&len.to_be_bytes());
            }
            Wire::WsProto | Wire::WsJson => {
                let (enc, op) = self.encoding();
                let mut payload = Vec::new();
                codec::encode_server(enc, frame, &mut payload);
                ws::encode_header(true, op, payload.len(), None, out);
                out.extend_from_slice(&payload);
            }
        }
    }
}

/// One server frame shared by every recipient, with lazily encoded bytes.
#[derive(Debug)]
pub struct Outbound {
    frame: ServerFrame,
    wires: [OnceLock<Bytes>; 3],
}

impl Outbound {
    /// Wraps a frame for sharing across shards.
    pub fn new(frame: ServerFrame) -> Arc<Self> {
        Arc::new(Outbound {
            frame,
            wires: Default::default(),
        })
    }

    /// The frame's bytes for `wire`, encoded on first use.
    pub fn bytes(&self, wire: Wire) -> &[u8] {
        self.wires[wire.index()].get_or_init(|| {
            let mut out = Vec::new();
            wire.encode(&self.frame, &mut out);
            Bytes::from(out)
        })
    }

    /// The frame itself.
    pub fn frame(&self) -> &ServerFrame {
        &self.frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{server_frame::Frame, Pong};

    fn pong() -> ServerFrame {
        ServerFrame {
            frame: Some(Frame::Pong(Pong { nonce: 7 })),
        }
    }

    #[test]
    fn tcp_frame_is_length_prefixed_protobuf() {
        let out = Outbound::new(pong());
        let bytes = out.bytes(Wire::Tcp);
        let (used, payload) = proto::frame::decode(bytes, 1024).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        let back = codec::decode_server(Encoding::Proto, payload).unwrap();
        assert_eq!(back, pong());
    }

    #[test]
    fn ws_json_frame_is_a_text_message() {
        let out = Outbound::new(pong());
        let mut bytes = out.bytes(Wire::WsJson).to_vec();
        let head = ws::decode_frame(&mut bytes, ws::Role::Client, 1024)
            .unwrap()
            .unwrap();
        assert_eq!(head.opcode, Opcode::Text);
        let body = &bytes[head.header_len..head.header_len + head.payload_len];
        assert_eq!(
            std::str::from_utf8(body).unwrap(),
            r#"{"pong":{"nonce":"7"}}"#
        );
    }

    #[test]
    fn each_wire_is_encoded_once() {
        let out = Outbound::new(pong());
        let a = out.bytes(Wire::WsProto).as_ptr();
        let b = out.bytes(Wire::WsProto).as_ptr();
        assert_eq!(a, b);
    }
}

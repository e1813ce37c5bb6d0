//! Server frames ready for the wire, encoded once and shared.
//!
//! A room broadcast reaches thousands of connections on several shards; the
//! frame is encoded at most once per wire format (WebSocket binary, WebSocket
//! JSON, raw TCP) by whichever shard needs that format first, and every member
//! copies the same bytes into its pending output. Nothing is re-encoded per
//! member. The same holds for compression (permessage-deflate): a
//! compressed wire's bytes are the plain wire's frame compressed once, by
//! the first shard's [`Compressor`] that needs them.
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
    /// `WsProto` with permessage-deflate negotiated.
    WsProtoDeflate,
    /// `WsJson` with permessage-deflate negotiated.
    WsJsonDeflate,
    /// The fallback transport's stream: Server-Sent Events, each frame one
    /// event of protobuf JSON (`id:` its seq when it has one).
    Sse,
}

/// How many wires there are.
const WIRES: usize = 6;

impl Wire {
    /// Transport label used in metrics and presence.
    pub fn transport(self) -> &'static str {
        match self {
            Wire::Tcp => "tcp",
            Wire::Sse => "sse",
            _ => "ws",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The WebSocket wire carrying `enc` (the negotiated subprotocol),
    /// compressed when permessage-deflate was negotiated.
    pub fn websocket(enc: Encoding, deflate: bool) -> Wire {
        match (enc, deflate) {
            (Encoding::Proto, false) => Wire::WsProto,
            (Encoding::Json, false) => Wire::WsJson,
            (Encoding::Proto, true) => Wire::WsProtoDeflate,
            (Encoding::Json, true) => Wire::WsJsonDeflate,
        }
    }

    /// True for a WebSocket wire with permessage-deflate.
    pub fn deflate(self) -> bool {
        matches!(self, Wire::WsProtoDeflate | Wire::WsJsonDeflate)
    }

    /// The same wire without compression.
    pub fn plain(self) -> Wire {
        match self {
            Wire::WsProtoDeflate => Wire::WsProto,
            Wire::WsJsonDeflate => Wire::WsJson,
            w => w,
        }
    }

    /// How this wire encodes frames, and the WebSocket opcode of a message
    /// (text for JSON; raw TCP frames are protobuf).
    pub fn encoding(self) -> (Encoding, Opcode) {
        match self {
            Wire::WsJson | Wire::WsJsonDeflate | Wire::Sse => (Encoding::Json, Opcode::Text),
            Wire::WsProto | Wire::WsProtoDeflate | Wire::Tcp => (Encoding::Proto, Opcode::Binary),
        }
    }

    /// Appends `frame`, framed for this wire, to `out`, uncompressed (what
    /// a compressed wire may always carry too; see [`Compressor::encode`]).
    pub fn encode(self, frame: &ServerFrame, out: &mut Vec<u8>) {
        match self {
            Wire::Tcp => {
                let start = out.len();
                proto::frame::encode_header(0, out);
                codec::encode_server(Encoding::Proto, frame, out);
                let len = (out.len() - start - proto::frame::HEADER_LEN) as u32;
                out[start..start + proto::frame::HEADER_LEN].copy_from_slice(&len.to_be_bytes());
            }
            Wire::Sse => {
                // Compact JSON has no newline: one `data:` line.
                if let Some(proto::v1::server_frame::Frame::Deliver(d)) = &frame.frame {
                    if d.seq > 0 {
                        out.extend_from_slice(format!("id: {}\n", d.seq).as_bytes());
                    }
                }
                out.extend_from_slice(b"data: ");
                codec::encode_server(Encoding::Json, frame, out);
                out.extend_from_slice(b"\n\n");
            }
            _ => {
                let (enc, op) = self.encoding();
                let mut payload = Vec::new();
                codec::encode_server(enc, frame, &mut payload);
                ws::encode_header(true, op, payload.len(), None, out);
                out.extend_from_slice(&payload);
            }
        }
    }
}

/// A shard's compressor for the compressed wires: messages of at least
/// `min_bytes` are deflated at `level` (one zlib context, reset per
/// message, made on first use).
#[derive(Debug)]
pub struct Compressor {
    level: u32,
    min_bytes: usize,
    deflater: Option<Box<ws::deflate::Deflater>>,
}

impl Default for Compressor {
    fn default() -> Self {
        Compressor::new(6, 128)
    }
}

impl Compressor {
    /// A compressor at zlib `level` for messages of `min_bytes` or more.
    pub fn new(level: u32, min_bytes: usize) -> Self {
        Compressor {
            level,
            min_bytes,
            deflater: None,
        }
    }

    /// Appends `frame` for `wire` to `out`: compressed when the wire is
    /// and it makes the message smaller.
    pub fn encode(&mut self, wire: Wire, frame: &ServerFrame, out: &mut Vec<u8>) {
        if !wire.deflate() {
            return wire.encode(frame, out);
        }
        let mut plain = Vec::new();
        wire.encode(frame, &mut plain);
        match self.compress(&plain) {
            Some(z) => out.extend_from_slice(&z),
            None => out.extend_from_slice(&plain),
        }
    }

    /// `plain` (one unmasked, final WebSocket data frame) compressed, or
    /// `None` when it is short or does not shrink.
    fn compress(&mut self, plain: &[u8]) -> Option<Vec<u8>> {
        let (&b0, &b1) = (plain.first()?, plain.get(1)?);
        let header = match b1 & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let payload = plain.get(header..)?;
        if payload.len() < self.min_bytes.max(1) {
            return None;
        }
        let opcode = Opcode::from_u8(b0 & 0x0f)?;
        let level = self.level;
        let deflater = self
            .deflater
            .get_or_insert_with(|| Box::new(ws::deflate::Deflater::new(level)));
        let mut out = Vec::with_capacity(payload.len() / 2 + 16);
        deflater.frame(opcode, payload, &mut out).then_some(out)
    }
}

/// One server frame shared by every recipient, with lazily encoded bytes.
#[derive(Debug)]
pub struct Outbound {
    frame: ServerFrame,
    wires: [OnceLock<Bytes>; WIRES],
}

impl Outbound {
    /// Wraps a frame for sharing across shards.
    pub fn new(frame: ServerFrame) -> Arc<Self> {
        Arc::new(Outbound {
            frame,
            wires: Default::default(),
        })
    }

    /// The frame's bytes for `wire`, encoded (and for a compressed wire,
    /// compressed by `z`) on first use.
    pub fn bytes(&self, wire: Wire, z: &mut Compressor) -> &[u8] {
        self.shared(wire, z)
    }

    fn shared(&self, wire: Wire, z: &mut Compressor) -> &Bytes {
        let slot = &self.wires[wire.index()];
        if let Some(b) = slot.get() {
            return b;
        }
        let bytes = if wire.deflate() {
            let plain = self.shared(wire.plain(), z);
            match z.compress(plain) {
                Some(compressed) => Bytes::from(compressed),
                None => plain.clone(),
            }
        } else {
            let mut out = Vec::new();
            wire.encode(&self.frame, &mut out);
            Bytes::from(out)
        };
        slot.get_or_init(|| bytes)
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
        let bytes = out.bytes(Wire::Tcp, &mut Compressor::default());
        let (used, payload) = proto::frame::decode(bytes, 1024).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        let back = codec::decode_server(Encoding::Proto, payload).unwrap();
        assert_eq!(back, pong());
    }

    #[test]
    fn ws_json_frame_is_a_text_message() {
        let out = Outbound::new(pong());
        let mut bytes = out.bytes(Wire::WsJson, &mut Compressor::default()).to_vec();
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
        let z = &mut Compressor::default();
        let out = Outbound::new(pong());
        let a = out.bytes(Wire::WsProto, z).as_ptr();
        let b = out.bytes(Wire::WsProto, z).as_ptr();
        assert_eq!(a, b);
        // A short frame on a compressed wire is the plain one, shared.
        assert_eq!(out.bytes(Wire::WsProtoDeflate, z).as_ptr(), a);
    }

    #[test]
    fn a_long_frame_is_compressed_once_per_wire() {
        use proto::v1::Deliver;
        let z = &mut Compressor::default();
        let chat = r#"{"text":"see you at the station at eight, bring the tickets"}"#;
        let out = Outbound::new(ServerFrame {
            frame: Some(Frame::Deliver(Deliver {
                from: "alice".into(),
                room: "chat:lobby".into(),
                payload: chat.repeat(4).into_bytes().into(),
                ..Deliver::default()
            })),
        });
        let plain = out.bytes(Wire::WsJson, z).len();
        let mut bytes = out.bytes(Wire::WsJsonDeflate, z).to_vec();
        // (JSON carries the payload as base64: less to gain than on text.)
        assert!(bytes.len() * 3 < plain * 2, "{} vs {plain}", bytes.len());
        // Compressed once: any shard's compressor gets the same bytes.
        let first = out.bytes(Wire::WsJsonDeflate, z).as_ptr();
        let other = out.bytes(Wire::WsJsonDeflate, &mut Compressor::default());
        assert_eq!(other.as_ptr(), first);
        let head = ws::decode_frame_ext(&mut bytes, ws::Role::Client, 1 << 16, true)
            .unwrap()
            .unwrap();
        assert!(head.rsv1);
        let mut inflated = Vec::new();
        ws::deflate::Inflater::new()
            .message(&[], &bytes[head.header_len..], 1 << 16, &mut inflated)
            .unwrap();
        let frame = codec::decode_server(Encoding::Json, &inflated).unwrap();
        assert_eq!(&frame, out.frame());
    }
}

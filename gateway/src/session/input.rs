//! Bytes in: split into frames by the sans-IO codecs of `proto` (the HTTP
//! upgrade, WebSocket frames and fragments, length-prefixed TCP frames) and
//! handed to the protocol.
//!
//! The driver reads into a shared scratch buffer and lends it here; a session
//! keeps bytes of its own only while a frame is incomplete, so an idle one
//! holds none. Every parser checks its length prefix against the limit
//! before anything is buffered, so a pending frame never grows past the
//! frame limit plus a header (or the handshake limit).
use proto::codec::Encoding;
use proto::v1::ErrorCode;
use proto::ws::{self, Assembler, Event, Role};

use super::sse::Plain;
use super::{Ctx, Phase, Session};
use crate::outbound::Wire;

/// A fatal protocol error: the client gets this code and the connection
/// closes (with this WebSocket close code, for a WebSocket protocol error:
/// RFC 6455 section 7.4.1).
pub(super) struct Fatal(pub ErrorCode, pub String, pub Option<u16>);

impl Fatal {
    /// An error of the client protocol (closed with 1008 on WebSocket).
    pub(super) fn app(code: ErrorCode, why: String) -> Fatal {
        Fatal(code, why, None)
    }
}

/// Read state that outlives one read: a partial frame, and a fragmented
/// WebSocket message in progress. Boxed into the session only while
/// something is incomplete.
pub(super) struct Partial {
    pub(super) buf: Vec<u8>,
    pub(super) ws: Option<Assembler>,
}

impl Partial {
    /// Bytes held for an incomplete frame or message.
    #[cfg(test)]
    pub(super) fn buffered(&self) -> usize {
        self.buf.len() + self.ws.as_ref().map_or(0, Assembler::buffered)
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty() && !self.ws.as_ref().is_some_and(Assembler::in_progress)
    }
}

impl Session {
    /// Bytes arrived from the client: every complete frame is processed;
    /// an incomplete one is kept (copied) until the rest arrives. Bytes that
    /// arrive while closing are discarded. Only complete frames count as
    /// liveness: a client trickling an incomplete frame is closed at its
    /// heartbeat deadline.
    pub(crate) fn handle_bytes(&mut self, cx: &mut Ctx, bytes: &mut [u8]) {
        if self.phase >= Phase::Closing {
            return;
        }
        let max = cx.env.limits.max_frame_bytes;
        let mut st = match self.partial.take() {
            Some(p) => *p,
            None => Partial {
                buf: Vec::new(),
                ws: (!matches!(self.wire, Wire::Tcp | Wire::Sse)).then(|| Assembler::new(max)),
            },
        };
        let result = if st.buf.is_empty() {
            let (used, result) = self.process(cx, &mut st.ws, bytes);
            if self.phase < Phase::Closing {
                st.buf.extend_from_slice(&bytes[used..]);
            }
            result
        } else {
            st.buf.extend_from_slice(bytes);
            let mut buf = std::mem::take(&mut st.buf);
            let (used, result) = self.process(cx, &mut st.ws, &mut buf);
            buf.drain(..used);
            // A completed frame releases its buffer.
            st.buf = if buf.is_empty() { Vec::new() } else { buf };
            result
        };
        if let Err(Fatal(code, msg, ws_code)) = result {
            self.fail_with(cx, code, &msg, ws_code);
        }
        if self.phase < Phase::Closing && !st.is_empty() {
            self.partial = Some(Box::new(st));
        }
    }

    /// Processes every complete frame at the front of `buf`; returns how
    /// many bytes were used.
    fn process(
        &mut self,
        cx: &mut Ctx,
        ws: &mut Option<Assembler>,
        buf: &mut [u8],
    ) -> (usize, Result<(), Fatal>) {
        // Before authentication, frames are small (an Auth frame): an
        // unauthenticated client cannot make the node hold a large one.
        let max = match self.phase {
            Phase::Auth => cx
                .env
                .limits
                .max_frame_bytes
                .min(cx.env.limits.max_preauth_frame_bytes),
            _ => cx.env.limits.max_frame_bytes,
        };
        let mut pos = 0;
        let result = loop {
            match self.phase {
                Phase::Closing | Phase::Closed => break Ok(()),
                // A POST waiting for its stream's session: nothing more.
                Phase::Upgrade if cx.fx.posts.contains_key(&self.id) => {
                    pos = buf.len();
                    break Ok(());
                }
                Phase::Upgrade => {
                    use proto::handshake::HandshakeError as E;
                    let max_head = cx.env.limits.max_handshake_bytes;
                    match proto::handshake::parse_request(&buf[pos..], max_head) {
                        Ok(Some((used, req))) => {
                            pos += used;
                            self.on_upgrade(cx, req);
                        }
                        Ok(None) => break Ok(()),
                        Err(e @ (E::MissingUpgrade | E::MethodNotAllowed)) => {
                            match self.on_plain(cx, &buf[pos..]) {
                                Plain::Done(used) => pos += used,
                                Plain::More => break Ok(()),
                                Plain::NotOurs => {
                                    if !self.answer_plain(cx, &buf[pos..], max_head) {
                                        self.reject_upgrade(cx, e.status(), &e.to_string());
                                    }
                                    break Ok(());
                                }
                            }
                        }
                        Err(e) => {
                            self.reject_upgrade(cx, e.status(), &e.to_string());
                            break Ok(());
                        }
                    }
                }
                // An SSE stream: the client sends by POST, nothing here.
                Phase::Auth | Phase::Open if self.wire == Wire::Sse => {
                    pos = buf.len();
                    break Ok(());
                }
                Phase::Auth | Phase::Open => {
                    let was_open = self.phase == Phase::Open;
                    let step = match ws {
                        Some(asm) => self.ws_step(cx, asm, &mut buf[pos..], max),
                        None => self.tcp_step(cx, &buf[pos..], max),
                    };
                    match step {
                        Ok(Some(used)) => {
                            pos += used;
                            if was_open && self.phase == Phase::Open {
                                // A complete frame: the client is alive.
                                // (A later deadline is re-armed lazily.)
                                self.stamp = cx.now;
                                if let Err(e) = self.frame_rate(cx) {
                                    break Err(e);
                                }
                            }
                        }
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
            }
        };
        (pos, result)
    }

    /// `limits.max_frames_per_sec`: a client flooding frames (a token
    /// bucket, burst twice the rate) is closed with RATE_LIMITED.
    pub(super) fn frame_rate(&mut self, cx: &mut Ctx) -> Result<(), Fatal> {
        let rate = cx.env.limits.max_frames_per_sec;
        if rate == 0 {
            return Ok(());
        }
        let now = cx.now;
        let bucket = cx
            .fx
            .frame_buckets
            .entry(self.id)
            .or_insert_with(|| crate::rate::Bucket::new(rate, now));
        match bucket.take(rate, now) {
            Ok(()) => Ok(()),
            Err(_) => Err(Fatal::app(
                ErrorCode::RateLimited,
                format!("more than {rate} frames a second"),
            )),
        }
    }

    fn tcp_step(&mut self, cx: &mut Ctx, buf: &[u8], max: usize) -> Result<Option<usize>, Fatal> {
        match proto::frame::decode(buf, max) {
            Ok(Some((used, payload))) => {
                self.on_payload(cx, Encoding::Proto, payload)?;
                Ok(Some(used))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Fatal::app(ErrorCode::FrameTooLarge, e.to_string())),
        }
    }

    fn ws_step(
        &mut self,
        cx: &mut Ctx,
        asm: &mut Assembler,
        buf: &mut [u8],
        max: usize,
    ) -> Result<Option<usize>, Fatal> {
        let head = match ws::decode_frame_ext(buf, Role::Server, max, self.wire.deflate()) {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(None),
            Err(e) => return Err(ws_fatal(e)),
        };
        let used = head.header_len + head.payload_len;
        let payload = &buf[head.header_len..used];
        match asm.push(head, payload).map_err(ws_fatal)? {
            None | Some(Event::Pong(_)) => {}
            Some(Event::Data {
                text,
                compressed: false,
                payload,
            }) => self.on_message(cx, text, &payload)?,
            Some(Event::Data {
                text,
                compressed: true,
                payload,
            }) => {
                // Inflated in a pooled buffer, under the frame limit.
                let mut buf = cx.fx.pool.take();
                let inflated =
                    cx.fx
                        .inflate
                        .message(self.id, self.inflate_bits, &payload, max, &mut buf);
                let result = match inflated {
                    Ok(()) => self.on_message(cx, text, &buf),
                    Err(e) => Err(ws_fatal(e)),
                };
                cx.fx.pool.put(buf);
                result?;
            }
            Some(Event::Ping(data)) => {
                let mut frame = Vec::with_capacity(data.len() + 2);
                ws::encode_frame(ws::Opcode::Pong, data, None, &mut frame);
                self.queue(cx, &frame);
            }
            Some(Event::Close { .. }) => self.close(cx),
        }
        Ok(Some(used))
    }
}

impl Session {
    /// One whole WebSocket data message (inflated if it was compressed).
    fn on_message(&mut self, cx: &mut Ctx, text: bool, payload: &[u8]) -> Result<(), Fatal> {
        // RFC 6455 section 8.1: a text message is UTF-8 (checked on the
        // whole message, so also across fragments).
        if text && std::str::from_utf8(payload).is_err() {
            return Err(ws_fatal(proto::ws::WsError::InvalidUtf8));
        }
        let enc = if text {
            Encoding::Json
        } else {
            Encoding::Proto
        };
        self.on_payload(cx, enc, payload)
    }
}

/// A WebSocket protocol error as the error frame the client gets.
fn ws_fatal(e: proto::ws::WsError) -> Fatal {
    let code = if e.close_code() == 1009 {
        ErrorCode::FrameTooLarge
    } else {
        ErrorCode::BadFrame
    };
    Fatal(code, e.to_string(), Some(e.close_code()))
}

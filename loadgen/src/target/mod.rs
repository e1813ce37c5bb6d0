//! The servers under test, as sans-IO client sessions: what a connection
//! sends first, what it answers, and the events it reports (ready, delivery,
//! pong). No sockets here: the worker moves the bytes.
//!
//! - `gateway`: WebSocket `/ws` (binary protobuf or JSON subprotocol, token in
//!   `Authorization: Bearer`) or the raw TCP port (length-prefixed frames,
//!   `Auth` first); rooms joined with `JoinRoom`.
//! - `nchan`: WebSocket subscriber on `/sub/<channel>`; ready on `101`.
//! - `nats`: NATS protocol over WebSocket: `CONNECT`, `SUB`, then `PING`;
//!   ready on the `PONG` (the subscription is registered by then).
mod gateway;
mod nats;
pub mod sse;
mod ws;

use std::sync::Arc;

pub use gateway::Encoder;

use crate::token::Minter;

/// Which server is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// This project's gateway.
    Gateway,
    /// nginx with the nchan module.
    Nchan,
    /// nats-server with its WebSocket listener.
    Nats,
}

impl Target {
    /// Lowercase name used in result directories.
    pub fn name(self) -> &'static str {
        match self {
            Target::Gateway => "gateway",
            Target::Nchan => "nchan",
            Target::Nats => "nats",
        }
    }
}

/// How a gateway client frames its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Wire {
    /// WebSocket, binary protobuf subprotocol.
    Ws,
    /// WebSocket, JSON subprotocol.
    WsJson,
    /// Raw TCP, u32 length-prefixed protobuf.
    Tcp,
    /// The fallback: an SSE stream down (`GET /sse`), JSON frames POSTed
    /// up on connections of their own (`sse`).
    Sse,
}

/// Everything a session needs to know about its server, shared by all
/// connections of a run.
pub struct Spec {
    /// The server kind.
    pub target: Target,
    /// Gateway framing (ignored by the peers).
    pub wire: Wire,
    /// Gateway QoS 1 for direct sends (receivers ack every delivery).
    pub qos1: bool,
    /// Token minter (gateway only).
    pub minter: Option<Minter>,
    /// Largest message accepted from the server.
    pub max_message: usize,
    /// TLS to the gateway's client ports (`--tls-ca`).
    pub tls: Option<crate::tls::Client>,
    /// Offer permessage-deflate (`--deflate`, gateway WebSocket only).
    pub deflate: bool,
}

/// Why a connection failed; the key it is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// The server answered the upgrade with another status.
    Status(u16),
    /// The server sent bytes that do not parse.
    Protocol(String),
    /// The server sent a fatal error frame (gateway error code, or a nats
    /// `-ERR`).
    ServerError(String),
    /// The server said go away (gateway `GoAway` or a WebSocket close).
    Closed(String),
}

impl Fail {
    /// The failure-cause key of the summary.
    pub fn cause(&self) -> String {
        match self {
            Fail::Status(s) => format!("http_{s}"),
            Fail::Protocol(_) => "protocol".into(),
            Fail::ServerError(e) => format!("server_error_{e}"),
            Fail::Closed(why) => format!("closed_{why}"),
        }
    }
}

/// What the server told a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Authenticated and subscribed: the connection counts as held.
    Ready,
    /// A message body delivered to this connection, and its QoS 1 seq (0
    /// at QoS 0 and on the peers).
    Delivery(&'a [u8], u64),
    /// A QoS 0 room message on the gateway (the soak counts these apart
    /// from its numbered direct messages; elsewhere it is a `Delivery`).
    RoomDelivery(&'a [u8]),
    /// A send the server accepted, by the `client_msg_id` it was sent with.
    Accepted(&'a str),
    /// An answer to a heartbeat, with the nonce it echoes (the gateway's
    /// `Pong`; `None` where the answer carries none: WebSocket pongs, nats).
    Pong(Option<u64>),
    /// A non-fatal error frame (counted, the connection stays).
    Warning(String),
    /// A send the server refused with this code (e.g. 503 OVERLOADED): never
    /// accepted, so no delivery is owed for it.
    Rejected(i32),
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Upgrade,
    Auth,
    Join,
    NatsInfo,
    Subscribe,
    Open,
}

/// One connection's protocol state. Small: an idle session holds no heap.
pub struct Session {
    spec: Arc<Spec>,
    phase: Phase,
    /// Room (gateway), channel (nchan) or subject (nats) to subscribe to.
    room: Option<Box<str>>,
    asm: proto::ws::Assembler,
    /// nats: a protocol line split across WebSocket messages.
    partial: Vec<u8>,
    /// SSE: the path to post frames to (from the stream's first event).
    post: Option<std::rc::Rc<str>>,
}

impl Session {
    /// A session for `user` subscribing to `room`; appends its first bytes
    /// to `out`. `last_seq` is the highest QoS 1 seq the user has had (the
    /// gateway's replay starts after it, as the README asks clients to do
    /// on every reconnect).
    pub fn start(
        spec: Arc<Spec>,
        user: &str,
        room: Option<&str>,
        last_seq: u64,
        out: &mut Vec<u8>,
    ) -> anyhow::Result<Self> {
        let max = spec.max_message;
        let mut s = Session {
            phase: Phase::Upgrade,
            room: room
                .or((spec.target == Target::Nats).then_some(user))
                .map(Into::into),
            asm: proto::ws::Assembler::new(max),
            partial: Vec::new(),
            post: None,
            spec,
        };
        match s.spec.target {
            Target::Gateway => gateway::start(&mut s, user, last_seq, out)?,
            Target::Nchan => {
                let chan = s.room.as_deref().unwrap_or(user);
                out.extend(ws::request(&format!("/sub/{chan}"), None, None));
            }
            Target::Nats => out.extend(ws::request("/", None, None)),
        }
        Ok(s)
    }

    /// SSE: the path to POST frames to, once the stream named it.
    pub fn post_path(&self) -> Option<&std::rc::Rc<str>> {
        self.post.as_ref()
    }

    /// Feeds bytes from the server. Returns how many were consumed (the rest
    /// is an incomplete frame to keep); replies go to `out`.
    pub fn feed(
        &mut self,
        buf: &mut [u8],
        out: &mut Vec<u8>,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<usize, Fail> {
        let mut used = 0;
        if self.phase == Phase::Upgrade {
            let head = match self.spec.wire {
                Wire::Sse => sse::response(buf)?,
                _ => ws::response(buf)?,
            };
            let Some(n) = head else {
                return Ok(0);
            };
            used = n;
            self.after_upgrade(out, on);
        }
        let rest = buf.get_mut(used..).unwrap_or_default();
        if self.spec.target == Target::Gateway && self.spec.wire == Wire::Tcp {
            return Ok(used + gateway::feed_tcp(self, rest, out, on)?);
        }
        if self.spec.wire == Wire::Sse {
            return Ok(used + sse::feed(self, rest, out, on)?);
        }
        let mut asm = std::mem::take(&mut self.asm);
        let res = ws::messages(
            rest,
            &mut asm,
            self.spec.max_message,
            self.spec.deflate,
            out,
            &mut |msg, out| match msg {
                Some(msg) => self.on_message(msg, out, on),
                None => {
                    on(Event::Pong(None));
                    Ok(())
                }
            },
        );
        self.asm = asm;
        Ok(used + res?)
    }

    fn after_upgrade(&mut self, out: &mut Vec<u8>, on: &mut dyn FnMut(Event<'_>)) {
        self.phase = match self.spec.target {
            Target::Gateway => Phase::Auth,
            Target::Nats => Phase::NatsInfo,
            Target::Nchan => {
                on(Event::Ready);
                Phase::Open
            }
        };
        let _ = out;
    }

    fn on_message(
        &mut self,
        msg: &[u8],
        out: &mut Vec<u8>,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), Fail> {
        match self.spec.target {
            Target::Gateway => gateway::on_message(self, msg, out, on),
            Target::Nchan => {
                on(Event::Delivery(msg, 0));
                Ok(())
            }
            Target::Nats => nats::on_bytes(self, msg, out, on),
        }
    }
}

/// A heartbeat for this target, appended to `out`; the gateway echoes
/// `nonce` in its `Pong` (the loadgen sends its send time in microseconds).
pub fn heartbeat(spec: &Spec, nonce: u64, out: &mut Vec<u8>) {
    match spec.target {
        Target::Gateway => gateway::ping(spec.wire, nonce, out),
        Target::Nchan => ws::frame(proto::ws::Opcode::Ping, b"hb", out),
        Target::Nats => ws::frame(proto::ws::Opcode::Binary, b"PING\r\n", out),
    }
}

/// A publish of `body` to `subject` sent on a subscriber-style connection
/// (nats `PUB` over WebSocket), appended to `out`.
pub fn nats_pub(subject: &str, body: &[u8], out: &mut Vec<u8>) {
    let mut msg = format!("PUB {subject} {}\r\n", body.len()).into_bytes();
    msg.extend_from_slice(body);
    msg.extend_from_slice(b"\r\n");
    ws::frame(proto::ws::Opcode::Binary, &msg, out);
}

#[cfg(test)]
mod tests;

//! Sessions on simulated time: scripted client bytes in, server frames,
//! routes and deadlines out. No socket, no sleep: `Harness::advance` jumps
//! the clock from deadline to deadline (quinn's `Pair::step`), and the test
//! plays the router (it reads routes and feeds deliveries back).
mod close;
mod conformance;
mod deflate;
mod handover;
mod handshake;
mod limits;
mod liveness;
mod qos;
mod resume;
mod rooms;
mod sse;

use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::codec::{self, Encoding};
use proto::v1::{client_frame, server_frame::Frame, ClientFrame, ErrorCode, ServerFrame};
use proto::ws::{self, Opcode, Role};

use super::{Ctx, Delivery, Effects, Env, Phase, Route, Session, Transport};
use crate::auth::{KeySource, Verifier};
use crate::clock::Clock;
use crate::config::{Limits, QosConfig};
use crate::outbound::Wire;
use crate::stats::ShardStats;

const SECRET: &[u8] = b"session-test-secret";
/// Unix time at the harness's start (ms).
const T0_UNIX_MS: u64 = 1_800_000_000_000;

/// One session, its shard's environment, and a simulated clock.
pub(super) struct Harness {
    pub env: Env,
    pub fx: Effects,
    pub now: Instant,
    pub s: Session,
    /// Server bytes not yet decoded into frames.
    pending: Vec<u8>,
}

impl Harness {
    pub(super) fn new(transport: Transport) -> Harness {
        Harness::with(transport, Limits::default(), QosConfig::default())
    }

    pub(super) fn with(transport: Transport, limits: Limits, qos: QosConfig) -> Harness {
        let now = Instant::now();
        let env = Env {
            limits,
            qos,
            verifier: crate::auth::Keys::new(
                Verifier::new(KeySource::Secret(SECRET.to_vec())).unwrap(),
            ),
            clock: Clock::anchored(now, T0_UNIX_MS),
            node_id: "test-node".into(),
            shard: 0,
            stats: Arc::new(ShardStats::default()),
            id_prefix: "test-node-0-0".into(),
            no_device: Arc::from(""),
            http: None,
            rooms_claim: Default::default(),
            origins: Arc::from(Vec::<String>::new()),
            rate_per_conn: 0,
            rate_per_room: 0,
            backend: false,
            hook: false,
            rooms: Arc::new(crate::config::RoomsConfig {
                history: vec!["h*".into()],
                ..Default::default()
            }),
            compression: true,
            post_key: Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"test")),
        };
        let s = Session::new(transport, 7, now, &env);
        Harness {
            env,
            fx: Effects::default(),
            now,
            s,
            pending: Vec::new(),
        }
    }

    /// Runs `f` on the session with a context at the current time.
    pub(super) fn call<R>(&mut self, f: impl FnOnce(&mut Session, &mut Ctx) -> R) -> R {
        let mut cx = Ctx {
            now: self.now,
            env: &self.env,
            fx: &mut self.fx,
        };
        f(&mut self.s, &mut cx)
    }

    /// The client sends raw bytes.
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        let mut b = bytes.to_vec();
        self.call(|s, cx| s.handle_bytes(cx, &mut b));
    }

    /// The client sends one frame, framed for the session's wire.
    pub(super) fn send(&mut self, frame: client_frame::Frame) {
        let bytes = client_bytes(self.s.wire(), frame);
        self.feed(&bytes);
    }

    /// Delivers something routed to the session.
    pub(super) fn deliver(&mut self, d: Delivery) {
        self.call(|s, cx| s.handle_routed(cx, d));
    }

    /// Moves the clock by `by`, firing every deadline on the way, in order.
    pub(super) fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.s.poll_timeout(&self.env).filter(|at| *at <= until) {
            self.now = self.now.max(at);
            self.call(|s, cx| s.handle_timeout(cx));
            if self.s.poll_timeout(&self.env) == Some(at) {
                break; // nothing moved: would loop forever
            }
        }
        self.now = until;
    }

    /// What the session wants written, taken as if the socket took it all.
    pub(super) fn output(&mut self) -> Vec<u8> {
        let out = self.s.output().to_vec();
        let n = out.len();
        self.s.transmitted(n, &mut self.fx.pool);
        out
    }

    /// The server frames written so far (WebSocket control frames and the
    /// HTTP response are skipped; see `raw_ws`).
    pub(super) fn frames(&mut self) -> Vec<ServerFrame> {
        let out = self.output();
        self.pending.extend_from_slice(&out);
        decode_server(self.s.wire(), &mut self.pending)
    }

    /// Routes the session asked for since the last call.
    pub(super) fn routes(&mut self) -> Vec<Route> {
        std::mem::take(&mut self.fx.routes)
    }

    /// An authenticated session for `alice` on `phone`, its AuthOk and
    /// first Read route consumed.
    pub(super) fn open(transport: Transport) -> Harness {
        let mut h = Harness::new(transport);
        h.authenticate("alice", "phone", 3600);
        h
    }

    /// Authenticates (upgrade with a bearer token, or an Auth frame).
    pub(super) fn authenticate(&mut self, user: &str, device: &str, ttl_secs: u64) {
        let token = self.token(user, Some(device), ttl_secs);
        if self.s.phase() == Phase::Upgrade {
            self.feed(upgrade(&[("Authorization", &format!("Bearer {token}"))], "/ws").as_bytes());
            let head = self.s.output();
            assert!(
                head.starts_with(b"HTTP/1.1 101"),
                "{}",
                String::from_utf8_lossy(head)
            );
        } else {
            self.send(auth_frame(&token, ""));
        }
        assert!(matches!(
            self.frames()[..],
            [ServerFrame {
                frame: Some(Frame::AuthOk(_))
            }]
        ));
        assert!(matches!(
            self.routes()[..],
            [
                Route::Online { .. },
                Route::Event(crate::session::Event::Connected),
                Route::Read { .. }
            ]
        ));
    }

    /// A token for `user`, expiring `ttl_secs` from now on the session's clock.
    pub(super) fn token(&self, user: &str, device: Option<&str>, ttl_secs: u64) -> String {
        let exp = self.env.clock.unix_secs(self.now) + ttl_secs;
        token_at(user, device, exp)
    }
}

/// An HS256 token with an explicit `exp` (Unix seconds).
pub(super) fn token_at(user: &str, device: Option<&str>, exp: u64) -> String {
    let mut claims = serde_json::json!({ "sub": user, "exp": exp });
    if let Some(d) = device {
        claims["device"] = d.into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// A WebSocket upgrade request with extra headers.
pub(super) fn upgrade(headers: &[(&str, &str)], target: &str) -> String {
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

pub(super) fn auth_frame(token: &str, device: &str) -> client_frame::Frame {
    client_frame::Frame::Auth(proto::v1::Auth {
        token: token.into(),
        device: device.into(),
        last_seq: 0,
        rooms: Vec::new(),
    })
}

/// A client frame as the client would put it on `wire` (masked on WebSocket).
pub(super) fn client_bytes(wire: Wire, frame: client_frame::Frame) -> Vec<u8> {
    let frame = ClientFrame { frame: Some(frame) };
    let mut out = Vec::new();
    match wire {
        Wire::Tcp => {
            let mut payload = Vec::new();
            codec::encode_client(Encoding::Proto, &frame, &mut payload);
            proto::frame::encode(&payload, &mut out);
        }
        _ => {
            let (enc, op) = wire.encoding();
            let mut payload = Vec::new();
            codec::encode_client(enc, &frame, &mut payload);
            ws::encode_frame(op, &payload, Some([1, 2, 3, 4]), &mut out);
        }
    }
    out
}

/// Decodes every complete server frame at the front of `buf` (and drops
/// an HTTP response head and WebSocket control frames).
fn decode_server(wire: Wire, buf: &mut Vec<u8>) -> Vec<ServerFrame> {
    if buf.starts_with(b"HTTP/1.1") {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
        }
    }
    let mut frames = Vec::new();
    loop {
        let (used, frame) = match wire {
            Wire::Tcp => match proto::frame::decode(buf, 1 << 24).unwrap() {
                Some((used, payload)) => {
                    (used, codec::decode_server(Encoding::Proto, payload).ok())
                }
                None => break,
            },
            _ => match ws::decode_frame_ext(buf, Role::Client, 1 << 24, wire.deflate()).unwrap() {
                Some(head) => {
                    let used = head.header_len + head.payload_len;
                    let mut body = &buf[head.header_len..used];
                    let mut inflated = Vec::new();
                    if head.rsv1 {
                        ws::deflate::Inflater::new()
                            .message(&[], body, 1 << 24, &mut inflated)
                            .unwrap();
                        body = &inflated;
                    }
                    let frame = match head.opcode {
                        Opcode::Binary => codec::decode_server(Encoding::Proto, body).ok(),
                        Opcode::Text => codec::decode_server(Encoding::Json, body).ok(),
                        _ => None,
                    };
                    (used, frame)
                }
                None => break,
            },
        };
        buf.drain(..used);
        frames.extend(frame);
    }
    frames
}

/// The WebSocket close code at the end of `bytes`, if any.
pub(super) fn ws_close_code(mut bytes: Vec<u8>) -> Option<u16> {
    let mut code = None;
    while let Ok(Some(head)) = ws::decode_frame_ext(&mut bytes, Role::Client, 1 << 24, true) {
        let used = head.header_len + head.payload_len;
        if head.opcode == Opcode::Close && head.payload_len >= 2 {
            code = Some(u16::from_be_bytes([
                bytes[head.header_len],
                bytes[head.header_len + 1],
            ]));
        }
        bytes.drain(..used);
    }
    code
}

/// The error code of an error frame.
pub(super) fn error_code(f: &ServerFrame) -> Option<(ErrorCode, bool)> {
    match &f.frame {
        Some(Frame::Error(e)) => Some((e.code(), e.fatal)),
        _ => None,
    }
}

#[test]
fn session_stays_compact() {
    // With the driver's fd, flags and wheel key, what an idle connection
    // costs in its slab entry: a field that grows it should be deliberate.
    let size = std::mem::size_of::<Session>();
    assert!(size <= 136, "Session grew to {size} bytes");
}

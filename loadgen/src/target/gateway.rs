//! The gateway's client protocol: WebSocket (protobuf or JSON subprotocol)
//! or raw TCP length-prefixed frames.
use proto::codec::{self, Encoding};
use proto::v1::{
    client_frame, send, server_frame, Ack, Auth, ClientFrame, JoinRoom, Ping, Qos, Send,
};
use proto::ws::Opcode;

use super::{ws, Event, Fail, Phase, Session, Wire};

/// Largest raw TCP frame accepted from the server.
const MAX_TCP_FRAME: usize = 1 << 20;

fn encoding(wire: Wire) -> Encoding {
    match wire {
        Wire::WsJson | Wire::Sse => Encoding::Json,
        Wire::Ws | Wire::Tcp => Encoding::Proto,
    }
}

/// Appends `frame` framed for `wire`.
fn put(wire: Wire, frame: &ClientFrame, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(64);
    codec::encode_client(encoding(wire), frame, &mut body);
    match wire {
        Wire::Tcp => proto::frame::encode(&body, out),
        Wire::Ws => ws::frame(Opcode::Binary, &body, out),
        Wire::WsJson => ws::frame(Opcode::Text, &body, out),
        // One line of a POST body.
        Wire::Sse => {
            out.extend_from_slice(&body);
            out.push(b'\n');
        }
    }
}

pub(super) fn start(
    s: &mut Session,
    user: &str,
    last_seq: u64,
    out: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let minter = s
        .spec
        .minter
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the gateway target needs --jwt-secret"))?;
    let token = minter.mint(user)?;
    match s.spec.wire {
        Wire::Tcp => {
            s.phase = Phase::Auth;
            let auth = client_frame::Frame::Auth(Auth {
                token,
                device: String::new(),
                last_seq,
                rooms: Vec::new(),
            });
            put(Wire::Tcp, &ClientFrame { frame: Some(auth) }, out);
        }
        Wire::Sse => out.extend(super::sse::request(&token, last_seq)),
        wire => {
            let proto = encoding(wire).subprotocol();
            let path = match last_seq {
                0 => "/ws".to_owned(),
                n => format!("/ws?last_seq={n}"),
            };
            let mut req = ws::request(&path, Some(proto), Some(&token));
            if s.spec.deflate {
                ws::offer_deflate(&mut req);
            }
            out.extend(req);
        }
    }
    Ok(())
}

/// Decodes length-prefixed frames from `buf`; returns the bytes consumed.
pub(super) fn feed_tcp(
    s: &mut Session,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<usize, Fail> {
    let mut used = 0;
    loop {
        let rest = buf.get(used..).unwrap_or_default();
        match proto::frame::decode(rest, MAX_TCP_FRAME) {
            Ok(Some((n, body))) => {
                on_message(s, body, out, on)?;
                used += n;
            }
            Ok(None) => return Ok(used),
            Err(e) => return Err(Fail::Protocol(e.to_string())),
        }
    }
}

pub(super) fn on_message(
    s: &mut Session,
    msg: &[u8],
    out: &mut Vec<u8>,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<(), Fail> {
    use server_frame::Frame as F;
    let frame = codec::decode_server(encoding(s.spec.wire), msg)
        .map_err(|e| Fail::Protocol(e.to_string()))?;
    match frame.frame {
        Some(F::AuthOk(_)) if s.phase == Phase::Auth => match s.room.as_deref() {
            Some(room) => {
                s.phase = Phase::Join;
                let join = client_frame::Frame::Join(JoinRoom {
                    room: room.into(),
                    ..JoinRoom::default()
                });
                put(s.spec.wire, &ClientFrame { frame: Some(join) }, out);
            }
            None => {
                s.phase = Phase::Open;
                on(Event::Ready);
            }
        },
        Some(F::Joined(_)) if s.phase == Phase::Join => {
            s.phase = Phase::Open;
            on(Event::Ready);
        }
        Some(F::Deliver(d)) => {
            // A message in the user's inbox (seq > 0) is acked; one of a
            // room's history (seq 0, an offset) is not in any inbox.
            if d.qos == Qos::AtLeastOnce as i32 && d.seq > 0 {
                let ack = client_frame::Frame::Ack(Ack { seq: d.seq });
                put(s.spec.wire, &ClientFrame { frame: Some(ack) }, out);
                on(Event::Delivery(&d.payload, d.seq))
            } else if !d.room.is_empty() {
                on(Event::RoomDelivery(&d.payload))
            } else {
                on(Event::Delivery(&d.payload, 0))
            }
        }
        Some(F::Pong(p)) => on(Event::Pong(Some(p.nonce))),
        Some(F::Error(e)) if e.fatal => return Err(Fail::ServerError(e.code.to_string())),
        Some(F::Error(e)) => on(Event::Warning(format!("error_{}", e.code))),
        Some(F::GoAway(g)) => return Err(Fail::Closed(format!("goaway_{}", g.reason))),
        Some(F::SendResult(r)) if !r.accepted => on(Event::Rejected(r.code)),
        Some(F::SendResult(r)) => on(Event::Accepted(&r.client_msg_id)),
        Some(F::Left(_)) => {}
        // QoS 1 gap notices: counted, the QoS 0 scenarios never expect one.
        Some(F::Gap(_)) => on(Event::Warning("gap".into())),
        Some(other) => return Err(Fail::Protocol(format!("unexpected frame {other:?}"))),
        None => return Err(Fail::Protocol("empty server frame".into())),
    }
    Ok(())
}

/// Appends a `Ping` frame.
pub(super) fn ping(wire: Wire, nonce: u64, out: &mut Vec<u8>) {
    let ping = client_frame::Frame::Ping(Ping { nonce });
    put(wire, &ClientFrame { frame: Some(ping) }, out);
}

/// Encodes `Send` frames for one wire (direct messages between users), at
/// QoS 1 when the second field is true.
pub struct Encoder(pub Wire, pub bool);

impl Encoder {
    /// Appends a send of `body` to user `to`, with `id` as its
    /// `client_msg_id` (the send result names it).
    pub fn to_user(&self, to: &str, id: Option<u64>, body: &[u8], out: &mut Vec<u8>) {
        let id = id.map(|i| i.to_string()).unwrap_or_default();
        self.send(send::To::User(to.into()), id, body, out);
    }

    fn send(&self, to: send::To, client_msg_id: String, body: &[u8], out: &mut Vec<u8>) {
        let send = Send {
            to: Some(to),
            client_msg_id,
            qos: if self.1 { Qos::AtLeastOnce as i32 } else { 0 },
            payload: bytes::Bytes::copy_from_slice(body),
        };
        put(
            self.0,
            &ClientFrame {
                frame: Some(client_frame::Frame::Send(send)),
            },
            out,
        );
    }
}

//! Scripted server bytes through the sessions: no sockets.
use std::sync::Arc;

use proto::codec::{self, Encoding};
use proto::handshake;
use proto::v1::{server_frame::Frame, AuthOk, Deliver, RoomJoined, ServerFrame};
use proto::ws::{self, Opcode};

use super::*;

fn spec(target: Target, wire: Wire) -> Arc<Spec> {
    Arc::new(Spec {
        target,
        wire,
        qos1: false,
        minter: Some(Minter::new("s", 60)),
        max_message: 1 << 16,
        deflate: false,
        tls: None,
    })
}

fn switching(protocol: Option<&str>) -> Vec<u8> {
    handshake::response_switching(
        &handshake::accept_key("bG9hZGdlbi1sb2FkZ2VuIQ=="),
        protocol,
        None,
    )
}

fn server_frame(f: Frame, out: &mut Vec<u8>) {
    let mut body = Vec::new();
    codec::encode_server(Encoding::Proto, &ServerFrame { frame: Some(f) }, &mut body);
    ws::encode_frame(Opcode::Binary, &body, None, out);
}

fn feed_all(s: &mut Session, mut bytes: Vec<u8>) -> (Vec<String>, Vec<u8>) {
    let mut events = Vec::new();
    let mut out = Vec::new();
    let used = s
        .feed(&mut bytes, &mut out, &mut |e| events.push(format!("{e:?}")))
        .unwrap();
    assert_eq!(used, bytes.len());
    (events, out)
}

#[test]
fn gateway_ws_joins_room_then_delivers() {
    let mut out = Vec::new();
    let mut s = Session::start(
        spec(Target::Gateway, Wire::Ws),
        "u1",
        Some("r"),
        0,
        &mut out,
    )
    .unwrap();
    assert!(out.starts_with(b"GET /ws HTTP/1.1\r\n"));
    let mut bytes = switching(Some("im.gateway.v1+proto"));
    server_frame(Frame::AuthOk(AuthOk::default()), &mut bytes);
    let (events, out) = feed_all(&mut s, bytes);
    assert!(events.is_empty());
    assert!(!out.is_empty(), "a JoinRoom is sent after AuthOk");
    let mut bytes = Vec::new();
    server_frame(
        Frame::Joined(RoomJoined {
            room: "r".into(),
            ..RoomJoined::default()
        }),
        &mut bytes,
    );
    server_frame(
        Frame::Deliver(Deliver {
            payload: bytes::Bytes::from_static(b"hi"),
            ..Default::default()
        }),
        &mut bytes,
    );
    let (events, _) = feed_all(&mut s, bytes);
    assert_eq!(
        events,
        vec!["Ready".to_string(), "Delivery([104, 105], 0)".to_string()]
    );
}

#[test]
fn gateway_refusal_and_garbage_are_failures_not_panics() {
    let mut out = Vec::new();
    let mut s = Session::start(spec(Target::Gateway, Wire::Ws), "u1", None, 0, &mut out).unwrap();
    let mut bytes = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_vec();
    assert_eq!(
        s.feed(&mut bytes, &mut out, &mut |_| {}),
        Err(Fail::Status(401))
    );
    let mut s = Session::start(spec(Target::Gateway, Wire::Tcp), "u1", None, 0, &mut out).unwrap();
    let mut bytes = vec![0xff; 16];
    assert!(matches!(
        s.feed(&mut bytes, &mut out, &mut |_| {}),
        Err(Fail::Protocol(_))
    ));
}

#[test]
fn nats_subscribes_and_parses_split_messages() {
    let mut out = Vec::new();
    let mut s = Session::start(
        spec(Target::Nats, Wire::Ws),
        "u1",
        Some("room0"),
        0,
        &mut out,
    )
    .unwrap();
    let mut bytes = switching(None);
    ws::encode_frame(Opcode::Text, b"INFO {}\r\n", None, &mut bytes);
    let (events, out) = feed_all(&mut s, bytes);
    assert!(events.is_empty());
    assert!(!out.is_empty(), "CONNECT/SUB/PING are sent after INFO");
    let mut bytes = Vec::new();
    ws::encode_frame(
        Opcode::Text,
        b"PONG\r\nMSG room0 1 5\r\nhel",
        None,
        &mut bytes,
    );
    ws::encode_frame(Opcode::Text, b"lo\r\nPING\r\n", None, &mut bytes);
    let (events, out) = feed_all(&mut s, bytes);
    assert_eq!(
        events,
        vec![
            "Ready".to_string(),
            "Delivery([104, 101, 108, 108, 111], 0)".to_string()
        ]
    );
    assert!(!out.is_empty(), "PING is answered");
}

//! One test per row of the README's limits table that the session enforces
//! (the reads-per-turn row is the driver's, the tracked-devices row the
//! in-process store's; each is tested there).
use bytes::Bytes;
use proto::v1::{
    client_frame, send, server_frame::Frame, ErrorCode, JoinRoom as Join, Qos, Send, SendResult,
};

use super::*;
use crate::outbound::Outbound;

fn send_to_user(user: &str, client_msg_id: &str) -> client_frame::Frame {
    client_frame::Frame::Send(Send {
        to: Some(send::To::User(user.into())),
        client_msg_id: client_msg_id.into(),
        qos: Qos::AtMostOnce as i32,
        payload: Bytes::from_static(b"hi"),
    })
}

fn send_result(frames: &[ServerFrame]) -> &SendResult {
    match frames {
        [ServerFrame {
            frame: Some(Frame::SendResult(r)),
        }] => r,
        other => panic!("expected one SendResult, got {other:?}"),
    }
}

#[test]
fn max_frame_bytes_on_tcp_is_frame_too_large() {
    let mut h = Harness::open(Transport::Tcp);
    let len = h.env.limits.max_frame_bytes as u32 + 1;
    h.feed(&len.to_be_bytes());
    let frames = h.frames();
    assert_eq!(
        error_code(&frames[0]),
        Some((ErrorCode::FrameTooLarge, true))
    );
    assert!(h.s.is_closing());
}

#[test]
fn max_frame_bytes_on_websocket_closes_with_1009() {
    let mut h = Harness::open(Transport::WebSocket);
    let mut head = Vec::new();
    let len = h.env.limits.max_frame_bytes + 1;
    proto::ws::encode_header(true, Opcode::Binary, len, Some([1, 2, 3, 4]), &mut head);
    h.feed(&head);
    let out = h.output();
    assert_eq!(ws_close_code(out.clone()), Some(1009));
    h.pending = out;
    let frames = h.frames();
    assert_eq!(
        error_code(&frames[0]),
        Some((ErrorCode::FrameTooLarge, true))
    );
}

#[test]
fn send_queue_bytes_is_the_slow_consumer_close() {
    let mut h = Harness::open(Transport::Tcp);
    let cap = h.env.limits.send_queue_bytes;
    let mut m = crate::store::Stored::for_test("bob", "x", 1);
    m.payload = vec![b'x'; 10_000].into();
    let msg = Outbound::new(m.to_frame(Qos::AtMostOnce));
    let mut queued = 0;
    while !h.s.is_closing() {
        h.deliver(Delivery::Live(&msg));
        queued += 1;
        assert!(queued < 1000);
    }
    assert!(
        h.s.output().len() <= cap + 64,
        "the error frame may pass the cap, nothing else"
    );
    // Nothing is queued after the error.
    h.deliver(Delivery::Live(&msg));
    let frames = h.frames();
    let last = frames.last().unwrap();
    assert_eq!(error_code(last), Some((ErrorCode::SlowConsumer, true)));
    assert_eq!(
        frames.len(),
        queued,
        "every delivery but the last, then the error"
    );
    assert_eq!(
        h.env
            .stats
            .slow_consumer_closes
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn max_rooms_per_conn_is_too_many_rooms_not_fatal() {
    let mut h = Harness::open(Transport::Tcp);
    let max = h.env.limits.max_rooms_per_conn;
    for i in 0..=max {
        h.send(client_frame::Frame::Join(Join {
            room: format!("r{i}"),
            ..Join::default()
        }));
    }
    let frames = h.frames();
    assert_eq!(frames.len(), max + 1);
    assert!(frames[..max]
        .iter()
        .all(|f| matches!(f.frame, Some(Frame::Joined(_)))));
    assert_eq!(
        error_code(&frames[max]),
        Some((ErrorCode::TooManyRooms, false))
    );
    assert_eq!(h.s.rooms().len(), max);
    assert_eq!(h.s.phase(), Phase::Open);
    // Joining a room already joined is not a new room.
    h.send(client_frame::Frame::Join(Join {
        room: "r0".into(),
        ..Join::default()
    }));
    assert!(matches!(h.frames()[0].frame, Some(Frame::Joined(_))));
}

#[test]
fn max_name_bytes_for_room_target_and_client_msg_id() {
    let mut h = Harness::open(Transport::Tcp);
    let long = "x".repeat(h.env.limits.max_name_bytes + 1);
    h.send(client_frame::Frame::Join(Join {
        room: long.clone(),
        ..Join::default()
    }));
    assert_eq!(
        error_code(&h.frames()[0]),
        Some((ErrorCode::InvalidArgument, false))
    );
    h.send(send_to_user(&long, "1"));
    let frames = h.frames();
    let r = send_result(&frames);
    assert!(!r.accepted);
    assert_eq!(r.code, ErrorCode::InvalidArgument as i32);
    h.send(send_to_user("bob", &long));
    let frames = h.frames();
    assert_eq!(send_result(&frames).code, ErrorCode::InvalidArgument as i32);
    assert!(h.routes().is_empty(), "nothing routed");
    // At the limit is fine.
    let ok = "x".repeat(h.env.limits.max_name_bytes);
    h.send(send_to_user(&ok, &ok));
    assert!(send_result(&h.frames()).accepted);
}

#[test]
fn max_name_bytes_for_the_device_is_fatal_at_auth() {
    let mut h = Harness::new(Transport::Tcp);
    let long = "d".repeat(h.env.limits.max_name_bytes + 1);
    let token = h.token("alice", None, 60);
    h.send(auth_frame(&token, &long));
    let frames = h.frames();
    assert_eq!(
        error_code(&frames[0]),
        Some((ErrorCode::InvalidArgument, true))
    );
    assert!(h.s.is_closing());
}

#[test]
fn bad_bytes_and_unknown_frames_are_fatal() {
    let mut h = Harness::open(Transport::Tcp);
    proto_frame(&mut h, &[0xff, 0xff, 0xff]);
    assert_eq!(
        error_code(&h.frames()[0]),
        Some((ErrorCode::BadFrame, true))
    );
    let mut h = Harness::open(Transport::Tcp);
    proto_frame(&mut h, &[]); // a ClientFrame with no frame set
    assert_eq!(
        error_code(&h.frames()[0]),
        Some((ErrorCode::UnknownFrame, true))
    );
}

fn proto_frame(h: &mut Harness, payload: &[u8]) {
    let mut bytes = Vec::new();
    proto::frame::encode(payload, &mut bytes);
    h.feed(&bytes);
}

#[test]
fn sends_are_refused_overloaded_while_the_mesh_is_backed_up() {
    let mut h = Harness::open(Transport::Tcp);
    h.fx.overloaded = true;
    h.send(send_to_user("bob", "1"));
    let frames = h.frames();
    assert_eq!(send_result(&frames).code, ErrorCode::Overloaded as i32);
    assert!(h.routes().is_empty());
}

#[test]
fn a_send_to_the_backend_is_unavailable_without_a_stream() {
    let mut h = Harness::open(Transport::Tcp);
    h.send(client_frame::Frame::Send(Send {
        to: Some(send::To::Backend(proto::v1::Backend::default())),
        client_msg_id: "1".into(),
        qos: 0,
        payload: Bytes::new(),
    }));
    let frames = h.frames();
    assert_eq!(send_result(&frames).code, ErrorCode::Unavailable as i32);
}

/// A small deterministic generator (xorshift): the same streams every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn hostile_byte_streams_never_panic_nor_buffer_past_the_limits() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..400 {
        let transport = if round % 2 == 0 {
            Transport::Tcp
        } else {
            Transport::WebSocket
        };
        let mut h = Harness::new(transport);
        // A valid start (upgrade, auth, a few frames), then mutations and
        // noise, fed in random chunk sizes.
        let token = h.token("alice", Some("phone"), 60);
        let mut stream = Vec::new();
        let wire = match transport {
            Transport::Tcp => Wire::Tcp,
            Transport::WebSocket => {
                stream.extend(upgrade(&[], "/ws").into_bytes());
                Wire::WsProto
            }
        };
        stream.extend(client_bytes(wire, auth_frame(&token, "")));
        for _ in 0..rng.below(8) {
            stream.extend(client_bytes(wire, send_to_user("bob", "1")));
        }
        for _ in 0..rng.below(16) {
            let at = rng.below(stream.len() as u64) as usize;
            stream[at] = rng.next() as u8;
        }
        for _ in 0..rng.below(256) {
            stream.push(rng.next() as u8);
        }
        let mut at = 0;
        while at < stream.len() && !h.s.is_closing() {
            let n = (1 + rng.below(64) as usize).min(stream.len() - at);
            h.feed(&stream[at..at + n]);
            at += n;
            let pending = h.s.partial.as_ref().map_or(0, |p| p.buffered());
            let limits = &h.env.limits;
            // A fragmented message so far, plus one incomplete frame (or
            // the upgrade head) with its header.
            let bound = limits.max_frame_bytes
                + limits.max_frame_bytes.max(limits.max_handshake_bytes)
                + 14;
            assert!(pending <= bound, "round {round}: {pending} bytes buffered");
            assert!(h.s.output().len() <= limits.send_queue_bytes + 1024);
            h.output();
            h.routes();
        }
        h.advance(Duration::from_secs(120));
        assert!(h.s.is_closing(), "round {round}: every connection ends");
    }
}

#[test]
fn every_frame_is_processed_exactly_once_whatever_the_chunking() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for transport in [Transport::Tcp, Transport::WebSocket] {
        for _ in 0..50 {
            let mut h = Harness::new(transport);
            h.authenticate("alice", "phone", 3600);
            let wire = h.s.wire();
            let mut stream = Vec::new();
            for i in 0..200 {
                let f = client_frame::Frame::Send(Send {
                    to: Some(send::To::User("bob".into())),
                    client_msg_id: i.to_string(),
                    qos: Qos::AtLeastOnce as i32,
                    payload: Bytes::from(vec![b'x'; rng.below(3000) as usize]),
                });
                stream.extend(client_bytes(wire, f));
            }
            let mut at = 0;
            let mut ids = Vec::new();
            while at < stream.len() {
                let n = (1 + rng.below(9000) as usize).min(stream.len() - at);
                h.feed(&stream[at..at + n]);
                at += n;
                for r in h.routes() {
                    if let Route::Append { client_msg_id, .. } = r {
                        ids.push(client_msg_id);
                    }
                }
            }
            let want: Vec<String> = (0..200).map(|i: u32| i.to_string()).collect();
            assert_eq!(ids, want);
        }
    }
}

//! permessage-deflate on a session: the offer answered, long frames sent
//! compressed once, compressed client messages inflated (with and without
//! the client's context), and every hostile input closed with the RFC's
//! code: a deflate bomb 1009, RSV1 where it may not be 1002, corrupt data
//! 1007.
use flate2::{Compress, Compression, FlushCompress};
use proto::v1::{client_frame, server_frame::Frame, Ping};

use super::*;
use crate::outbound::Outbound;

const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// A session upgraded with `offer`, authenticated; returns the 101 head.
fn upgraded(offer: &str, compression: bool) -> (Harness, String) {
    let mut h = Harness::new(Transport::WebSocket);
    h.env.compression = compression;
    let token = h.token("alice", Some("phone"), 3600);
    let bearer = format!("Bearer {token}");
    let req = upgrade(
        &[
            ("Authorization", &bearer),
            ("Sec-WebSocket-Extensions", offer),
        ],
        "/ws",
    );
    h.feed(req.as_bytes());
    let out = h.output();
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(out[..end].to_vec()).unwrap();
    h.pending = out[end..].to_vec();
    assert!(matches!(
        h.frames()[..],
        [ServerFrame {
            frame: Some(Frame::AuthOk(_))
        }]
    ));
    h.routes();
    (h, head)
}

/// Raw deflate of `data`, sync-flushed, tail removed (as a client sends).
fn deflate(z: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let start = z.total_in() as usize;
    loop {
        let used = z.total_in() as usize - start;
        z.compress_vec(&data[used..], &mut out, FlushCompress::Sync)
            .unwrap();
        if out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    out.truncate(out.len() - 4);
    out
}

/// A masked frame with RSV1 set (first byte `b0`) carrying `body`.
fn masked(b0: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ws::encode_frame(Opcode::Binary, body, Some([9, 8, 7, 6]), &mut out);
    out[0] = b0;
    out
}

fn ping(nonce: u64) -> Vec<u8> {
    let frame = ClientFrame {
        frame: Some(client_frame::Frame::Ping(Ping { nonce })),
    };
    let mut payload = Vec::new();
    codec::encode_client(Encoding::Proto, &frame, &mut payload);
    payload
}

const ROOM: &str = "lobby-of-the-long-room-name-that-a-client-repeats";

fn join() -> Vec<u8> {
    let frame = ClientFrame {
        frame: Some(client_frame::Frame::Join(proto::v1::JoinRoom {
            room: ROOM.into(),
            ..Default::default()
        })),
    };
    let mut payload = Vec::new();
    codec::encode_client(Encoding::Proto, &frame, &mut payload);
    payload
}

fn joined(h: &mut Harness) -> usize {
    h.frames()
        .into_iter()
        .filter(|f| matches!(&f.frame, Some(Frame::Joined(j)) if j.room == ROOM))
        .count()
}

fn pongs(h: &mut Harness) -> Vec<u64> {
    h.frames()
        .into_iter()
        .filter_map(|f| match f.frame {
            Some(Frame::Pong(p)) => Some(p.nonce),
            _ => None,
        })
        .collect()
}

#[test]
fn an_offer_is_answered_and_long_frames_go_compressed() {
    let (mut h, head) = upgraded(OFFER, true);
    assert!(
        head.contains(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_max_window_bits=9\r\n"
        ),
        "{head}"
    );
    assert_eq!(h.s.wire(), Wire::WsProtoDeflate);
    let text = "meet at the station at eight and bring the tickets please ".repeat(10);
    let msg = Outbound::new(ServerFrame {
        frame: Some(Frame::Deliver(proto::v1::Deliver {
            from: "bob".into(),
            payload: text.clone().into_bytes().into(),
            ..Default::default()
        })),
    });
    h.deliver(Delivery::Live(&msg));
    let out = h.output();
    assert_eq!(out[0] & 0x40, 0x40, "RSV1: compressed");
    assert!(
        out.len() * 4 < text.len(),
        "{} bytes for {}",
        out.len(),
        text.len()
    );
    h.pending = out;
    assert_eq!(h.frames(), [msg.frame().clone()]);
    // A short answer goes as it is.
    h.feed(&client_bytes(
        h.s.wire(),
        client_frame::Frame::Ping(Ping { nonce: 3 }),
    ));
    let out = h.output();
    assert_eq!(out[0] & 0x40, 0, "RSV1 clear");
}

#[test]
fn no_extension_when_turned_off_or_declined() {
    for (offer, on) in [
        (OFFER, false),
        ("permessage-deflate; server_max_window_bits=10", true),
    ] {
        let (h, head) = upgraded(offer, on);
        assert!(!head.contains("Sec-WebSocket-Extensions"), "{head}");
        assert_eq!(h.s.wire(), Wire::WsProto);
    }
}

#[test]
fn a_client_that_resets_its_context_costs_nothing_between_messages() {
    let offer = "permessage-deflate; client_no_context_takeover";
    let (mut h, head) = upgraded(offer, true);
    assert!(head.contains("client_no_context_takeover"), "{head}");
    for nonce in [1, 2] {
        let mut z = Compress::new(Compression::default(), false);
        h.feed(&masked(0xC2, &deflate(&mut z, &ping(nonce))));
        assert_eq!(pongs(&mut h), [nonce]);
    }
    assert_eq!(h.fx.inflate.windows(), 0);
}

#[test]
fn a_client_that_keeps_its_context_is_followed_and_moves_with_a_handover() {
    let (mut h, _) = upgraded(OFFER, true);
    // The client's compressor, with the window the server agreed to.
    let mut z = Compress::new_with_window_bits(Compression::default(), false, 9);
    let first = deflate(&mut z, &join());
    h.feed(&masked(0xC2, &first));
    assert_eq!(joined(&mut h), 1);
    // The same message again is a back-reference into the window.
    let again = deflate(&mut z, &join());
    assert!(again.len() * 3 < first.len(), "{again:?} vs {first:?}");
    h.feed(&masked(0xC2, &again));
    assert_eq!(joined(&mut h), 1);
    assert_eq!(h.fx.inflate.windows(), 1);
    // Handed over with its window, the next reference still inflates.
    let mut st = h.s.export(h.now, None);
    st.inflate_window = h.fx.inflate.window(h.s.id()).unwrap().to_vec();
    let bytes = prost::Message::encode_to_vec(&st);
    let mut st: crate::session::SessionState = prost::Message::decode(&bytes[..]).unwrap();
    let window = std::mem::take(&mut st.inflate_window);
    let (s, _) = Session::import(st, h.now, &h.env).unwrap();
    h.fx = Effects::default();
    h.fx.inflate.set_window(s.id(), window);
    h.s = s;
    h.feed(&masked(0xC2, &deflate(&mut z, &join())));
    assert_eq!(joined(&mut h), 1);
    // Closed, it is forgotten.
    h.fx.forget(h.s.id());
    assert_eq!(h.fx.inflate.windows(), 0);
}

#[test]
fn a_fragmented_compressed_message_is_inflated_whole() {
    let (mut h, _) = upgraded(OFFER, true);
    let mut z = Compress::new(Compression::default(), false);
    let body = deflate(&mut z, &ping(5));
    let (a, b) = body.split_at(body.len() / 2);
    h.feed(&masked(0x42, a));
    assert!(pongs(&mut h).is_empty());
    h.feed(&masked(0x80, b));
    assert_eq!(pongs(&mut h), [5]);
}

#[test]
fn hostile_compressed_input_closes_with_the_rfc_codes() {
    let bomb = {
        let mut z = Compress::new(Compression::best(), false);
        deflate(&mut z, &vec![0u8; 8 << 20])
    };
    let continuation_rsv1 = {
        let mut z = Compress::new(Compression::default(), false);
        let body = deflate(&mut z, &ping(5));
        let mut two = masked(0x42, &body[..2]);
        two.extend(masked(0xC0, &body[2..]));
        two
    };
    let cases: [(&str, Vec<u8>, u16, ErrorCode); 5] = [
        (
            "a deflate bomb",
            masked(0xC2, &bomb),
            1009,
            ErrorCode::FrameTooLarge,
        ),
        (
            "RSV1 on a ping",
            masked(0xC9, b""),
            1002,
            ErrorCode::BadFrame,
        ),
        (
            "RSV1 on a continuation",
            continuation_rsv1,
            1002,
            ErrorCode::BadFrame,
        ),
        ("RSV2", masked(0xA2, b"x"), 1002, ErrorCode::BadFrame),
        (
            "corrupt data",
            masked(0xC2, &[0xff; 8]),
            1007,
            ErrorCode::BadFrame,
        ),
    ];
    for (what, bytes, close, code) in cases {
        let (mut h, _) = upgraded(OFFER, true);
        h.feed(&bytes);
        let out = h.output();
        assert_eq!(ws_close_code(out.clone()), Some(close), "{what}");
        h.pending = out;
        assert_eq!(error_code(&h.frames()[0]), Some((code, true)), "{what}");
    }
    // RSV1 without the extension.
    let (mut h, _) = upgraded("x-unknown", true);
    let mut z = Compress::new(Compression::default(), false);
    h.feed(&masked(0xC2, &deflate(&mut z, &ping(1))));
    assert_eq!(ws_close_code(h.output()), Some(1002));
}

//! Bad input from a client: each gets a stable, fatal error code and a close,
//! and never disturbs the shard that held the connection.

mod common;

use common::*;
use std::net::TcpStream;

driver_tests!(
    oversize_ws_message,
    oversize_tcp_frame,
    frame_at_the_limit_is_fine,
    garbage_bytes,
    bad_json_text,
    unknown_frame_member,
    frame_before_auth,
);

/// The `--max-frame-bytes` every gateway in this file runs with.
const MAX_FRAME: usize = 1024;

fn start(driver: Driver) -> Gateway {
    Gateway::start(driver, &["--max-frame-bytes", &MAX_FRAME.to_string()])
}

/// Asserts the next frame is a fatal `code` error and the connection ends;
/// with a WebSocket close code `ws_close` when given (a close frame must
/// come, carrying it).
#[track_caller]
fn assert_fatal(c: &mut Client, code: ErrorCode, ws_close: Option<u16>) {
    assert_error(&c.error(), code, true);
    let close = c.expect_closed();
    if let Some(want) = ws_close {
        assert_eq!(close, Some(want), "WebSocket close code");
    }
}

fn oversize_ws_message(driver: Driver) {
    let gw = start(driver);
    let mut c = gw.connect(WS, "alice", "phone");
    c.send(&to_user("alice", "big", &vec![7u8; 4 * MAX_FRAME]));
    assert_fatal(&mut c, ErrorCode::FrameTooLarge, Some(1009));
    gw.assert_shards_serve();
}

fn oversize_tcp_frame(driver: Driver) {
    let gw = start(driver);
    // Refused on the 4-byte header alone: the body is never sent.
    let mut c = gw.connect(TCP, "alice", "laptop");
    c.send_raw_tcp(&(1u32 << 20).to_be_bytes());
    assert_fatal(&mut c, ErrorCode::FrameTooLarge, None);
    // Also as the very first frame, before Auth.
    let mut c = Client::from_tcp(TcpStream::connect(gw.tcp).unwrap());
    c.send_raw_tcp(&u32::MAX.to_be_bytes());
    assert_fatal(&mut c, ErrorCode::FrameTooLarge, None);
    gw.assert_shards_serve();
}

fn frame_at_the_limit_is_fine(driver: Driver) {
    let gw = start(driver);
    for t in [WS, TCP] {
        let mut c = gw.connect(t, "bob", "phone");
        // 900 payload bytes plus the Send's fields stay under 1024 bytes.
        let f = to_user("bob", "fits", &[1u8; 900]);
        assert!(encode_client(&f, Encoding::Proto).len() <= MAX_FRAME);
        c.send(&f);
        assert!(c.result_for("fits").accepted);
        assert_eq!(c.any_deliver().payload.len(), 900);
    }
}

fn garbage_bytes(driver: Driver) {
    let gw = start(driver);
    // Field 2 (ping) announces 16 bytes and carries one: not protobuf.
    let garbage = [0x12, 0x10, 0x08];
    for t in [WS, TCP] {
        let mut c = gw.connect(t, "carol", "phone");
        c.send_bytes(&garbage);
        assert_fatal(&mut c, ErrorCode::BadFrame, None);
    }
    gw.assert_shards_serve();
    gw.wait_metric("gateway_errors_total{code=\"BAD_FRAME\"}", |v| v >= 2.0);
}

fn bad_json_text(driver: Driver) {
    let gw = start(driver);
    let mut c = gw.connect(WS_JSON, "dave", "web");
    c.send_text("{\"ping\": {\"nonce\": ");
    assert_fatal(&mut c, ErrorCode::BadFrame, None);
    let mut c = gw.connect(WS_JSON, "dave", "web");
    c.send_text("{\"ping\": {\"nonce\": \"not a number\"}}");
    assert_fatal(&mut c, ErrorCode::BadFrame, None);
    gw.assert_shards_serve();
}

fn unknown_frame_member(driver: Driver) {
    let gw = start(driver);
    for t in [WS, TCP] {
        let mut c = gw.connect(t, "erin", "phone");
        c.send_bytes(&UNKNOWN_MEMBER);
        assert_fatal(&mut c, ErrorCode::UnknownFrame, None);
    }
    let mut c = gw.connect(WS_JSON, "erin", "web");
    c.send_text("{}");
    assert_fatal(&mut c, ErrorCode::UnknownFrame, None);
    gw.assert_shards_serve();
}

fn frame_before_auth(driver: Driver) {
    let gw = start(driver);
    let (ws, _) = upgrade(gw.ws, "/ws", &[]).expect("upgrade");
    let tcp = Client::from_tcp(TcpStream::connect(gw.tcp).unwrap());
    for mut c in [Client::from_ws(ws, Encoding::Proto), tcp] {
        c.send(&ping(1));
        assert_fatal(&mut c, ErrorCode::NotAuthenticated, None);
    }
    let (ws, _) = upgrade(gw.ws, "/ws", &[]).expect("upgrade");
    let mut c = Client::from_ws(ws, Encoding::Proto);
    c.send(&to_user("alice", "sneaky", b"hi"));
    assert_fatal(&mut c, ErrorCode::NotAuthenticated, None);
    gw.assert_shards_serve();
}

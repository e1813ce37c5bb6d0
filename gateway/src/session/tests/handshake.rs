//! Getting authenticated: the token in each of its three places, both
//! subprotocols, raw TCP, and the refusals.
use proto::v1::{client_frame, server_frame::Frame, ErrorCode, Ping};

use super::*;

fn auth_ok(frames: &[ServerFrame]) -> &proto::v1::AuthOk {
    match frames {
        [ServerFrame {
            frame: Some(Frame::AuthOk(ok)),
        }] => ok,
        other => panic!("expected one AuthOk, got {other:?}"),
    }
}

#[test]
fn token_in_the_authorization_header() {
    let mut h = Harness::new(Transport::WebSocket);
    let token = h.token("alice", Some("phone"), 60);
    h.feed(upgrade(&[("Authorization", &format!("Bearer {token}"))], "/ws").as_bytes());
    assert!(h
        .s
        .output()
        .starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    let frames = h.frames();
    let ok = auth_ok(&frames);
    assert_eq!((ok.user.as_str(), ok.device.as_str()), ("alice", "phone"));
    assert_eq!(ok.conn_id, 7);
    assert_eq!(h.s.phase(), Phase::Open);
    match &h.routes()[..] {
        [Route::Online { user, device, wire }, Route::Event(crate::session::Event::Connected), Route::Read { after: None, .. }] =>
        {
            assert_eq!(
                (&**user, &**device, *wire),
                ("alice", "phone", Wire::WsProto)
            );
        }
        other => panic!("unexpected routes {other:?}"),
    }
}

#[test]
fn token_in_the_query() {
    let mut h = Harness::new(Transport::WebSocket);
    let token = h.token("bob", None, 60);
    let proto = [("Sec-WebSocket-Protocol", "im.gateway.v1+json")];
    h.feed(upgrade(&proto, &format!("/ws?token={token}")).as_bytes());
    let head = String::from_utf8_lossy(h.s.output()).into_owned();
    assert!(
        head.contains("Sec-WebSocket-Protocol: im.gateway.v1+json\r\n"),
        "{head}"
    );
    assert_eq!(h.s.wire(), Wire::WsJson);
    assert_eq!(auth_ok(&h.frames()).user, "bob");
}

#[test]
fn token_in_the_first_frame() {
    let mut h = Harness::new(Transport::WebSocket);
    h.feed(upgrade(&[], "/ws").as_bytes());
    assert!(h.output().starts_with(b"HTTP/1.1 101"));
    assert_eq!(h.s.phase(), Phase::Auth);
    let token = h.token("carol", None, 60);
    h.send(auth_frame(&token, "tablet"));
    let frames = h.frames();
    let ok = auth_ok(&frames);
    assert_eq!((ok.user.as_str(), ok.device.as_str()), ("carol", "tablet"));
}

#[test]
fn raw_tcp_authenticates_with_its_first_frame_split_anywhere() {
    let mut h = Harness::new(Transport::Tcp);
    let token = h.token("dave", None, 60);
    let bytes = client_bytes(Wire::Tcp, auth_frame(&token, ""));
    // One byte at a time: the partial frame is kept between reads.
    for b in &bytes {
        assert_eq!(h.s.phase(), Phase::Auth);
        h.feed(std::slice::from_ref(b));
    }
    assert_eq!(auth_ok(&h.frames()).user, "dave");
}

#[test]
fn upgrade_and_first_frames_in_one_read() {
    let mut h = Harness::new(Transport::WebSocket);
    let token = h.token("erin", None, 60);
    let mut bytes = upgrade(&[], "/ws").into_bytes();
    bytes.extend(client_bytes(Wire::WsProto, auth_frame(&token, "")));
    bytes.extend(client_bytes(
        Wire::WsProto,
        client_frame::Frame::Ping(Ping { nonce: 5 }),
    ));
    h.feed(&bytes);
    let frames = h.frames();
    assert!(matches!(frames[0].frame, Some(Frame::AuthOk(_))));
    assert!(matches!(
        frames[1].frame,
        Some(Frame::Pong(proto::v1::Pong { nonce: 5 }))
    ));
}

#[test]
fn a_bad_token_at_upgrade_is_http_401_with_the_reason() {
    let mut h = Harness::new(Transport::WebSocket);
    let expired = token_at("alice", None, h.env.clock.unix_secs(h.now));
    h.feed(upgrade(&[("Authorization", &format!("Bearer {expired}"))], "/ws").as_bytes());
    let out = String::from_utf8(h.output()).unwrap();
    assert!(out.starts_with("HTTP/1.1 401 "), "{out}");
    assert!(out.ends_with("\r\n\r\ntoken expired\n"), "{out}");
    assert!(h.s.is_closing());
}

#[test]
fn unknown_path_and_subprotocol_are_refused() {
    let mut h = Harness::new(Transport::WebSocket);
    h.feed(upgrade(&[], "/chat").as_bytes());
    assert!(h.output().starts_with(b"HTTP/1.1 404 "));
    let mut h = Harness::new(Transport::WebSocket);
    h.feed(upgrade(&[("Sec-WebSocket-Protocol", "mqtt")], "/ws").as_bytes());
    assert!(h.output().starts_with(b"HTTP/1.1 400 "));
    assert!(h.s.is_closing());
}

#[test]
fn a_frame_before_auth_closes_with_not_authenticated() {
    let mut h = Harness::new(Transport::Tcp);
    h.send(client_frame::Frame::Ping(Ping { nonce: 1 }));
    let frames = h.frames();
    assert_eq!(
        error_code(&frames[0]),
        Some((ErrorCode::NotAuthenticated, true))
    );
    assert!(h.s.is_closing());
}

#[test]
fn a_bad_token_in_the_auth_frame_closes_with_unauthenticated() {
    let mut h = Harness::new(Transport::Tcp);
    h.send(auth_frame("not.a.jwt", ""));
    let frames = h.frames();
    assert_eq!(
        error_code(&frames[0]),
        Some((ErrorCode::Unauthenticated, true))
    );
    assert!(h.s.is_closing());
}

#[test]
fn a_second_auth_is_refused_but_not_fatal() {
    let mut h = Harness::open(Transport::Tcp);
    let token = h.token("alice", None, 60);
    h.send(auth_frame(&token, ""));
    let frames = h.frames();
    assert_eq!(
        error_code(&frames[0]),
        Some((ErrorCode::AlreadyAuthenticated, false))
    );
    assert_eq!(h.s.phase(), Phase::Open);
}

//! Deadlines on simulated time: handshake, heartbeat (and traffic pushing it
//! out), token expiry to the millisecond.
use proto::v1::{client_frame, server_frame::Frame, ErrorCode, GoAwayReason, Ping};

use super::*;

const MS: Duration = Duration::from_millis(1);

fn go_away(frames: &[ServerFrame]) -> Option<GoAwayReason> {
    frames.iter().find_map(|f| match &f.frame {
        Some(Frame::GoAway(g)) => Some(g.reason()),
        _ => None,
    })
}

fn ping(h: &mut Harness, nonce: u64) {
    h.send(client_frame::Frame::Ping(Ping { nonce }));
}

#[test]
fn no_auth_frame_in_time_is_auth_timeout() {
    let mut h = Harness::new(Transport::Tcp);
    let limit = Duration::from_millis(h.env.limits.handshake_timeout_ms);
    h.advance(limit - MS);
    assert_eq!(h.s.phase(), Phase::Auth);
    assert!(h.frames().is_empty());
    h.advance(MS);
    let frames = h.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(error_code(&frames[0]), Some((ErrorCode::AuthTimeout, true)));
    assert!(h.s.is_closing());
}

#[test]
fn no_upgrade_request_in_time_is_http_408() {
    let mut h = Harness::new(Transport::WebSocket);
    h.feed(b"GET /ws HTTP/1.1\r\n"); // a stalled head
    h.advance(Duration::from_millis(h.env.limits.handshake_timeout_ms));
    let out = String::from_utf8(h.output()).unwrap();
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    assert!(h.s.is_closing());
}

#[test]
fn the_handshake_deadline_covers_upgrade_and_auth_frame() {
    let mut h = Harness::new(Transport::WebSocket);
    h.advance(Duration::from_secs(6));
    h.feed(upgrade(&[], "/ws").as_bytes());
    assert!(h.output().starts_with(b"HTTP/1.1 101"));
    // Counted from accept, not from the upgrade: 4 s left, not 10.
    h.advance(Duration::from_secs(4));
    let frames = h.frames();
    assert_eq!(error_code(&frames[0]), Some((ErrorCode::AuthTimeout, true)));
}

#[test]
fn silence_for_the_heartbeat_timeout_is_a_go_away() {
    let mut h = Harness::open(Transport::Tcp);
    let timeout = Duration::from_millis(h.env.limits.heartbeat_timeout_ms);
    h.advance(timeout - MS);
    assert_eq!(h.s.phase(), Phase::Open);
    h.advance(MS);
    assert_eq!(go_away(&h.frames()), Some(GoAwayReason::HeartbeatTimeout));
    assert!(h.s.is_closing());
}

#[test]
fn traffic_pushes_the_heartbeat_deadline_out() {
    let mut h = Harness::open(Transport::Tcp);
    let timeout = Duration::from_millis(h.env.limits.heartbeat_timeout_ms);
    let first = h.s.poll_timeout(&h.env).unwrap();
    h.s.take_timeout_moved();
    h.advance(timeout - Duration::from_secs(10));
    ping(&mut h, 1);
    // Later deadline: the driver is not asked to re-arm (lazy), the old
    // deadline fires and finds nothing due.
    assert!(!h.s.take_timeout_moved());
    h.advance(Duration::from_secs(10));
    assert_eq!(h.s.phase(), Phase::Open, "closed at the old deadline");
    assert!(h.s.poll_timeout(&h.env).unwrap() > first);
    h.advance(timeout - Duration::from_secs(10) - MS);
    assert_eq!(h.s.phase(), Phase::Open);
    h.advance(MS);
    assert_eq!(go_away(&h.frames()), Some(GoAwayReason::HeartbeatTimeout));
}

#[test]
fn an_expiring_token_goes_away_at_exp_to_the_millisecond() {
    let mut h = Harness::new(Transport::Tcp);
    // Authenticate 400 ms into a second: `exp` (whole seconds) falls 600 ms
    // before now + ttl; the go-away must come at `exp`, not a second late.
    h.now += Duration::from_millis(400);
    let exp = h.env.clock.unix_secs(h.now) + 5;
    h.send(auth_frame(&token_at("alice", None, exp), ""));
    h.frames();
    let at_exp = h.env.clock.instant_of(exp * 1000).unwrap();
    assert_eq!(h.s.poll_timeout(&h.env), Some(at_exp));
    h.advance(at_exp - h.now - MS);
    assert_eq!(h.s.phase(), Phase::Open);
    h.advance(MS);
    assert_eq!(go_away(&h.frames()), Some(GoAwayReason::TokenExpired));
    assert!(h.s.is_closing());
}

#[test]
fn a_token_that_never_expires_has_no_expiry_deadline() {
    let mut h = Harness::new(Transport::Tcp);
    h.send(auth_frame(&token_at("alice", None, u64::MAX / 2), ""));
    assert!(matches!(h.frames()[0].frame, Some(Frame::AuthOk(_))));
    let heartbeat = h.now + Duration::from_millis(h.env.limits.heartbeat_timeout_ms);
    assert_eq!(h.s.poll_timeout(&h.env), Some(heartbeat));
}

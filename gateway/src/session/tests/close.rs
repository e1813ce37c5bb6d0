//! The closing state machine: last frame, WebSocket close, our FIN, the
//! client's FIN or the linger deadline; kick and drain.
use proto::v1::{client_frame, server_frame::Frame, GoAwayReason, Ping};

use super::*;
use crate::session::timer::LINGER;

fn go_away(frames: &[ServerFrame]) -> Option<(GoAwayReason, u32)> {
    frames.iter().find_map(|f| match &f.frame {
        Some(Frame::GoAway(g)) => Some((g.reason(), g.reconnect_after_ms)),
        _ => None,
    })
}

#[test]
fn a_client_close_is_answered_then_fin_then_closed_on_its_fin() {
    let mut h = Harness::open(Transport::WebSocket);
    let mut close = Vec::new();
    proto::ws::encode_close(1000, "bye", Some([9, 9, 9, 9]), &mut close);
    h.feed(&close);
    assert!(h.s.is_closing());
    assert!(!h.s.wants_fin(), "output first");
    assert_eq!(ws_close_code(h.output()), Some(1000));
    assert!(h.s.wants_fin());
    h.s.fin_sent();
    assert!(!h.s.wants_fin());
    assert!(!h.s.is_closed(), "lingers for the client's FIN");
    // Bytes after the close are discarded.
    h.send(client_frame::Frame::Ping(Ping { nonce: 1 }));
    assert!(h.s.output().is_empty());
    h.call(|s, cx| s.handle_eof(cx));
    assert!(h.s.is_closed());
}

#[test]
fn a_closing_connection_is_closed_at_the_linger_deadline() {
    let mut h = Harness::open(Transport::Tcp);
    h.call(|s, cx| s.close(cx));
    h.output();
    h.s.fin_sent();
    h.advance(LINGER - Duration::from_millis(1));
    assert!(!h.s.is_closed());
    h.advance(Duration::from_millis(1));
    assert!(h.s.is_closed());
}

#[test]
fn eof_first_then_our_fin_closes() {
    let mut h = Harness::open(Transport::WebSocket);
    h.call(|s, cx| s.handle_eof(cx));
    assert!(h.s.is_closing() && !h.s.is_closed());
    assert_eq!(ws_close_code(h.output()), Some(1000));
    assert!(h.s.wants_fin());
    h.s.fin_sent();
    assert!(h.s.is_closed());
}

#[test]
fn a_write_error_drops_the_output_and_closes() {
    let mut h = Harness::open(Transport::Tcp);
    h.send(client_frame::Frame::Ping(Ping { nonce: 1 }));
    assert!(!h.s.output().is_empty());
    h.call(|s, cx| s.handle_write_error(cx));
    assert!(h.s.output().is_empty());
    assert!(h.s.wants_fin());
    h.s.fin_sent();
    assert!(h.s.is_closed());
}

#[test]
fn a_kick_is_a_go_away_and_close_1001() {
    let mut h = Harness::open(Transport::WebSocket);
    h.call(|s, cx| s.kick(cx));
    let out = h.output();
    assert_eq!(ws_close_code(out.clone()), Some(1001));
    h.pending = out;
    assert_eq!(go_away(&h.frames()), Some((GoAwayReason::Kicked, 0)));
    assert!(h.s.is_closing());
}

#[test]
fn drain_asks_open_clients_to_reconnect_and_lets_the_others_finish_their_handshake() {
    let mut h = Harness::open(Transport::Tcp);
    assert!(h.call(|s, cx| s.drain(cx, 1500, "")));
    assert_eq!(go_away(&h.frames()), Some((GoAwayReason::Draining, 1500)));
    assert_eq!(h.s.phase(), Phase::Open, "the client leaves by itself");
    let mut h = Harness::new(Transport::Tcp);
    assert!(!h.call(|s, cx| s.drain(cx, 1500, "")));
    assert_eq!(h.s.phase(), Phase::Auth, "the driver drains it once open");
    assert!(h.output().is_empty());
}

//! A session exported by one process and imported by another carries on as
//! if nothing happened: the partial frame completes, the QoS 1 window is
//! retransmitted on its old schedule and acknowledged, the rooms and user
//! are kept, pending output is still written.
use proto::v1::{client_frame, server_frame::Frame, Ping};

use super::qos::{ack, acks, delivered, replay};
use super::*;
use crate::session::SessionState;

/// Moves the harness's session through the wire encoding to a new "process"
/// that takes it `later` after the export (the driver imports it at the
/// export's time, the transit measured on the wall clock, so its deadlines
/// stay where they were).
fn hand_over(h: &mut Harness, later: Duration) {
    let st = h.s.export(h.now, None);
    let bytes = prost::Message::encode_to_vec(&st);
    let st: SessionState = prost::Message::decode(&bytes[..]).unwrap();
    let (s, grants) = Session::import(st, h.now, &h.env).unwrap();
    h.now += later;
    assert!(grants.is_none());
    h.s = s;
}

#[test]
fn a_partial_frame_completes_after_the_handover() {
    for wire in [Transport::Tcp, Transport::WebSocket] {
        let mut h = Harness::open(wire);
        let bytes = client_bytes(h.s.wire(), client_frame::Frame::Ping(Ping { nonce: 9 }));
        let (head, tail) = bytes.split_at(3);
        h.feed(head);
        assert!(h.frames().is_empty());
        hand_over(&mut h, Duration::from_millis(5));
        h.feed(tail);
        let pong = h.frames();
        assert!(
            matches!(pong[..], [ServerFrame { frame: Some(Frame::Pong(ref p)) }] if p.nonce == 9),
            "{pong:?}"
        );
    }
}

#[test]
fn the_qos1_window_moves_and_is_retransmitted_then_acked() {
    let mut h = Harness::open(Transport::Tcp);
    h.deliver(replay(1..=3, 3));
    assert_eq!(delivered(&mut h), [1, 2, 3]);
    ack(&mut h, 1);
    assert_eq!(acks(&h.routes()), [1]);
    // Half the retransmit timeout passes in the old process, the handover
    // takes a little, the rest in the new one.
    let base = Duration::from_millis(h.env.qos.retransmit_ms);
    h.advance(base / 2);
    hand_over(&mut h, Duration::from_millis(10));
    h.advance(base / 2 - Duration::from_millis(11));
    assert!(delivered(&mut h).is_empty(), "not before its time");
    h.advance(Duration::from_millis(2));
    assert_eq!(delivered(&mut h), [2, 3], "the unacked rest, in order");
    ack(&mut h, 3);
    assert_eq!(acks(&h.routes()), [3]);
    h.advance(Duration::from_secs(60));
    assert!(delivered(&mut h).is_empty());
}

#[test]
fn user_rooms_and_unwritten_output_move() {
    let mut h = Harness::open(Transport::WebSocket);
    h.s.rooms = vec![Arc::from("r1"), Arc::from("r2")].into();
    h.call(|s, cx| s.drain(cx, 100, ""));
    let queued = h.s.output().to_vec();
    assert!(!queued.is_empty());
    hand_over(&mut h, Duration::ZERO);
    assert_eq!(h.s.output(), &queued[..]);
    assert_eq!(h.s.user().map(|u| &**u), Some("alice"));
    assert_eq!(h.s.device().as_ref(), "phone");
    assert_eq!(h.s.rooms().len(), 2);
    assert_eq!(h.s.phase(), Phase::Open);
}

#[test]
fn a_closing_session_does_not_move_and_bad_state_is_refused() {
    let mut h = Harness::open(Transport::Tcp);
    assert!(h.s.movable());
    h.call(|s, cx| s.kick(cx));
    assert!(!h.s.movable());
    let mut st = Harness::open(Transport::Tcp).s.export(h.now, None);
    st.wire = 9;
    assert!(Session::import(st, h.now, &h.env).is_err());
    let mut st = Harness::open(Transport::Tcp).s.export(h.now, None);
    st.qos = Some(crate::session::handover::QosWire {
        inflight_seqs: vec![1],
        inflight: vec![vec![0xff, 0xff]],
        ..Default::default()
    });
    assert!(Session::import(st, h.now, &h.env).is_err());
}

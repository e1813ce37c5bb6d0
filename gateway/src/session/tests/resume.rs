//! QoS 1 resume points: a Resume that comes after the replay landed (the
//! usual case: a client sends it right after AuthOk) sends nothing twice.
use proto::v1::{client_frame, Resume};

use super::qos::{ack, acks, delivered, live, reads, replay};
use super::*;
use crate::store::Replay;

/// A client that gave its point at auth (`last_seq`) and, as the README
/// asks, also sends `resume` and `ack` right after AuthOk: the replay
/// usually lands before they do (they are a round trip late).
fn auth_at(h: &mut Harness, last_seq: u64) {
    let token = h.token("alice", Some("phone"), 3600);
    h.send(client_frame::Frame::Auth(proto::v1::Auth {
        token,
        device: String::new(),
        last_seq,
        rooms: Vec::new(),
    }));
    h.frames();
    assert_eq!(reads(&h.routes()), [(last_seq > 0).then_some(last_seq)]);
}

/// An empty replay read after `after`: nothing stored past it.
fn nothing_after(after: u64) -> Delivery<'static> {
    Delivery::Replay(Ok(Replay {
        last_seq: after,
        from: after,
        ..Replay::default()
    }))
}

#[test]
fn a_resume_after_the_replay_landed_sends_nothing_again() {
    // The reconnect of the JS stress run: `last_seq=64` in the connect
    // URL, then `resume{64}` and `ack{64}` after AuthOk, which arrive
    // once 65..=131 were already sent on this connection.
    let mut h = Harness::new(Transport::Tcp);
    auth_at(&mut h, 64);
    h.deliver(replay(65..=131, 131));
    assert_eq!(delivered(&mut h), (65..=131).collect::<Vec<_>>());
    h.send(client_frame::Frame::Resume(Resume { last_seq: 64 }));
    ack(&mut h, 64);
    // The store answers whatever read that asked for (the inbox holds
    // 65..=131).
    let routes = h.routes();
    assert_eq!(acks(&routes), [64]);
    let asked = reads(&routes);
    for after in &asked {
        let after = after.unwrap_or(0);
        h.deliver(match after {
            131 => nothing_after(131),
            a => replay(a + 1..=131, 131),
        });
    }
    assert_eq!(delivered(&mut h), [0u64; 0], "sent twice on one connection");
    // Read on after what this connection sent, not from the client's point.
    assert_eq!(asked, [Some(131)]);
    // Live messages go on from where the connection is, and what is in
    // flight is retransmitted only until acked.
    live(&mut h, 132);
    assert_eq!(delivered(&mut h), [132]);
    ack(&mut h, 132);
    assert_eq!(acks(&h.routes()), [132]);
    h.advance(Duration::from_secs(60));
    assert!(delivered(&mut h).is_empty());
}

#[test]
fn a_late_resume_within_what_the_replay_sent_reads_on_after_it() {
    // No point at auth: the replay is read from the stored cursor (50),
    // and the client, which has up to 64, says so a round trip later.
    let mut h = Harness::open(Transport::Tcp);
    h.deliver(replay(51..=131, 131));
    assert_eq!(delivered(&mut h), (51..=131).collect::<Vec<_>>());
    h.send(client_frame::Frame::Resume(Resume { last_seq: 64 }));
    assert_eq!(reads(&h.routes()), [Some(131)]);
    // Stored meanwhile: in the read-on, once.
    live(&mut h, 132);
    h.deliver(replay(132..=132, 132));
    assert_eq!(delivered(&mut h), [132]);
    // What the client said it has is not retransmitted; the rest is.
    let at = h.s.poll_timeout(&h.env).unwrap();
    h.advance(at - h.now);
    assert_eq!(delivered(&mut h), (65..=132).collect::<Vec<_>>());
}

#[test]
fn a_late_resume_while_lagging_waits_for_the_window() {
    // The window is full and more waits in the inbox: a Resume within what
    // was sent reads nothing again; acks read on as before.
    let mut h = Harness::open(Transport::Tcp);
    h.deliver(replay(1..=256, 400));
    assert_eq!(delivered(&mut h).len(), 256);
    assert!(reads(&h.routes()).is_empty());
    h.send(client_frame::Frame::Resume(Resume { last_seq: 10 }));
    assert!(reads(&h.routes()).is_empty());
    assert!(delivered(&mut h).is_empty());
    ack(&mut h, 200);
    assert_eq!(reads(&h.routes()), [Some(256)]);
    h.deliver(replay(257..=400, 400));
    assert_eq!(delivered(&mut h), (257..=400).collect::<Vec<_>>());
}

#[test]
fn a_late_resume_outside_what_the_replay_sent_reads_from_it() {
    // Below where the replay started (the store's guess for a device it
    // had stopped tracking): what lies between may be gone, and only a
    // read from the client's point can tell (a gap).
    let mut h = Harness::open(Transport::Tcp);
    h.deliver(replay(7..=8, 8));
    assert_eq!(delivered(&mut h), [7, 8]);
    h.send(client_frame::Frame::Resume(Resume { last_seq: 3 }));
    assert_eq!(reads(&h.routes()), [Some(3)]);
    // Past what was sent (the client has more than this connection gave
    // it): read from its point.
    let mut h = Harness::open(Transport::Tcp);
    h.deliver(replay(1..=8, 8));
    assert_eq!(delivered(&mut h).len(), 8);
    h.send(client_frame::Frame::Resume(Resume { last_seq: 12 }));
    assert_eq!(reads(&h.routes()), [Some(12)]);
    h.deliver(replay(13..=20, 20));
    assert_eq!(delivered(&mut h), (13..=20).collect::<Vec<_>>());
}

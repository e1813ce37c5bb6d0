//! Protocol errors seen by the dialer (wrong node id, wrong version,
//! garbage, acks of batches never sent, WELCOME twice) end the connection
//! with one `Down`, and the link reconnects. Scripted IO: the test plays the
//! acceptor by hand.

use std::time::{Duration, Instant};

use proto::bus::{self, Welcome};
use relay::{Config, Link, LinkEvent, LinkState};

use crate::pair::{envelope, identity, Pair};

fn welcome(version: u16, node_id: &str, received: u64) -> Vec<u8> {
    let mut out = Vec::new();
    bus::encode_welcome(
        &Welcome {
            version,
            incarnation: 9,
            received,
            node_id,
        },
        &mut out,
    );
    out
}

/// A link through `transport_up`, its HELLO taken.
fn handshaking(now: Instant) -> Link {
    let mut link = Link::new(
        identity("a", 1),
        Some("b".to_owned()),
        Config::default(),
        3,
        now,
    );
    assert!(link.poll_connect(now));
    assert!(!link.poll_connect(now), "true once");
    assert_eq!(link.state(), LinkState::Connecting);
    assert!(
        link.poll_transmit(now).is_none(),
        "nothing before transport_up"
    );
    link.transport_up(now);
    assert_eq!(link.state(), LinkState::Handshaking);
    let hello = link.poll_transmit(now).unwrap();
    let Some((bus::Frame::Hello(h), _)) = bus::parse(&hello, &Default::default()).unwrap() else {
        panic!("not a HELLO");
    };
    assert_eq!(
        (h.node_id, h.incarnation, h.version),
        ("a", 1, bus::VERSION)
    );
    link
}

/// Feeds `bytes` to a handshaking link and checks it goes down with a
/// reason containing `why`, then reconnects after a backoff.
fn fails_with(mut link: Link, now: Instant, bytes: &[u8], why: &str) {
    link.handle_bytes(now, bytes);
    assert!(link.wants_close());
    let reasons: Vec<LinkEvent> = std::iter::from_fn(|| link.poll_event()).collect();
    let [.., LinkEvent::Down { reason }] = &reasons[..] else {
        panic!("{reasons:?}");
    };
    assert!(reason.contains(why), "{reason:?} lacks {why:?}");
    assert!(link.poll_transmit(now).is_none());
    link.handle_bytes(now, &welcome(1, "b", 0));
    assert!(link.poll_event().is_none(), "ignored after the error");
    link.transport_down(now);
    assert!(link.poll_event().is_none(), "one Down per connection");
    assert_eq!(link.state(), LinkState::Idle);
    assert_eq!(link.stats().downs, 1);
    assert!(!link.poll_connect(now), "backing off");
    let retry = link.poll_timeout().unwrap();
    assert!(retry > now && retry <= now + Duration::from_secs(2));
    link.handle_timeout(retry);
    assert!(link.poll_connect(retry));
}

#[test]
fn wrong_node_id() {
    let now = Instant::now();
    fails_with(handshaking(now), now, &welcome(1, "c", 0), "expected \"b\"");
}

#[test]
fn wrong_version() {
    let now = Instant::now();
    fails_with(handshaking(now), now, &welcome(2, "b", 0), "version 2");
}

#[test]
fn garbage() {
    let now = Instant::now();
    fails_with(handshaking(now), now, b"GET / HTTP/1.1\r\n", "bad magic");
    let mut flags = welcome(1, "b", 0);
    flags[2] = 1;
    fails_with(handshaking(now), now, &flags, "flags");
}

#[test]
fn welcome_claims_batches_never_sent() {
    let now = Instant::now();
    fails_with(handshaking(now), now, &welcome(1, "b", 1), "never sent");
}

#[test]
fn ack_before_welcome() {
    let now = Instant::now();
    let mut ack = Vec::new();
    bus::encode_ack(0, &mut ack);
    fails_with(handshaking(now), now, &ack, "before WELCOME");
}

#[test]
fn ack_beyond_what_was_sent_and_welcome_twice() {
    let now = Instant::now();
    let mut link = handshaking(now);
    link.send(now, &envelope(0, 8)).unwrap();
    link.flush(now);
    link.handle_bytes(now, &welcome(1, "b", 0));
    assert_eq!(link.state(), LinkState::Up);
    assert!(matches!(link.poll_event(), Some(LinkEvent::Up { .. })));
    assert!(link.poll_transmit(now).is_some());
    let mut ack = Vec::new();
    bus::encode_ack(1, &mut ack);
    // Split across calls: the first byte alone waits.
    link.handle_bytes(now, &ack[..1]);
    link.handle_bytes(now, &ack[1..]);
    assert!(link.is_empty() && !link.wants_close());
    ack.clear();
    bus::encode_ack(2, &mut ack);
    fails_with(link, now, &ack, "beyond");

    let mut link = handshaking(now);
    link.handle_bytes(now, &welcome(1, "b", 0));
    link.poll_event();
    fails_with(link, now, &welcome(1, "b", 0), "WELCOME twice");
}

#[test]
fn batch_from_the_acceptor_is_unexpected() {
    let now = Instant::now();
    let mut link = handshaking(now);
    link.handle_bytes(now, &welcome(1, "b", 0));
    link.poll_event();
    let batch = bus::BatchWriter::new(1).finish();
    fails_with(link, now, &batch, "unexpected Batch");
}

/// In a pair: the wrong peer answers, the link goes down, backs off and
/// tries again, never getting up.
#[test]
fn wrong_peer_reconnects_with_backoff() {
    let mut p = Pair::with(Config::default(), Some("c"), 5);
    p.drive_until(Duration::from_secs(10), |p| p.link.stats().downs >= 3);
    assert!(p.ups().is_empty());
    assert!(p.downs().iter().all(|r| r.contains("expected \"c\"")));
    let gaps: Vec<Duration> = p.connects.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(50)),
        "{gaps:?}"
    );
}

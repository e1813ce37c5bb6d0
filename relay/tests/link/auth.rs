//! The cluster secret on simulated time: nodes with a secret link and carry
//! envelopes; a dialer without it, with another one, or replaying a
//! recorded handshake is refused before a single envelope is delivered
//! (and counted); an acceptor without it is refused by a dialer with one;
//! a node in a rotation (new and old secret) links with either.

use std::time::{Duration, Instant};

use proto::bus::{self, Frame, Hello, Limits};
use relay::{Config, Inbound, InboundEvent, Secrets, Seen};

use crate::pair::{envelope, identity, Pair};

fn with(secrets: &[&[u8]]) -> Config {
    Config {
        secrets: Secrets::new(secrets),
        ..Config::default()
    }
}

const OLD: &[u8] = b"an old cluster secret of 32 bytes or more";
const NEW: &[u8] = b"the new cluster secret, also 32 bytes or more";

/// A dialer with `dialer` and an acceptor with `acceptor` (their secrets).
fn pair(dialer: &[&[u8]], acceptor: &[&[u8]]) -> Pair {
    let mut p = Pair::new(with(dialer));
    p.config = with(acceptor);
    p
}

#[test]
fn nodes_with_the_secret_link_and_carry_envelopes() {
    let mut p = pair(&[OLD], &[OLD]);
    p.drive_until(Duration::from_secs(1), Pair::is_up);
    // Connect, then HELLO + AUTH, AUTH, AUTH, WELCOME: two round trips.
    assert_eq!(p.now - p.start, p.latency * 5);
    for i in 0..10 {
        p.link.send(p.now, &envelope(i, 8)).unwrap();
    }
    p.drive_until(Duration::from_secs(1), |p| p.delivered.len() == 10);
    assert_eq!(p.link.stats().auth_failures, 0);
}

#[test]
fn a_dialer_without_the_secret_is_refused_and_delivers_nothing() {
    // No secret: it never answers the challenge (the acceptor waits for
    // its AUTH; the dialer for a WELCOME that never comes).
    let mut p = pair(&[], &[OLD]);
    p.link.send(p.now, &envelope(0, 8)).unwrap();
    p.run_for(Duration::from_secs(10));
    assert!(p.ups().is_empty(), "{:?}", p.downs());
    assert!(p.delivered.is_empty());
    // Another secret: neither side can prove to the other; the dialer
    // checks first (the acceptor proves first) and refuses.
    let mut p = pair(&[NEW], &[OLD]);
    p.link.send(p.now, &envelope(0, 8)).unwrap();
    p.run_for(Duration::from_secs(10));
    assert!(p.ups().is_empty(), "{:?}", p.downs());
    assert!(p.delivered.is_empty());
    assert!(p.link.stats().auth_failures >= 1);
    assert!(
        p.downs().iter().all(|d| d.contains("cluster secret")),
        "{:?}",
        p.downs()
    );
}

#[test]
fn an_acceptor_without_the_secret_is_refused_by_the_dialer() {
    let mut p = pair(&[OLD], &[]);
    p.link.send(p.now, &envelope(0, 8)).unwrap();
    p.run_for(Duration::from_secs(5));
    assert!(p.ups().is_empty(), "{:?}", p.downs());
    assert!(p.delivered.is_empty());
    assert!(p.link.stats().auth_failures >= 1);
    assert!(
        p.downs().iter().any(|d| d.contains("cluster secret")),
        "{:?}",
        p.downs()
    );
}

#[test]
fn in_a_rotation_old_and_new_secrets_both_link() {
    for (dialer, acceptor) in [
        (&[NEW, OLD][..], &[OLD][..]),
        (&[OLD][..], &[NEW, OLD][..]),
        (&[NEW][..], &[NEW, OLD][..]),
    ] {
        let mut p = pair(dialer, acceptor);
        p.drive_until(Duration::from_secs(1), Pair::is_up);
        p.link.send(p.now, &envelope(7, 8)).unwrap();
        p.drive_until(Duration::from_secs(1), |p| p.delivered.len() == 1);
    }
}

/// Every frame a fresh acceptor with `OLD` writes for `input`, and whether
/// it delivered anything or refused.
fn replay(input: &[u8]) -> (Vec<bus::Kind>, usize, u64) {
    let now = Instant::now();
    let mut i = Inbound::new(identity("b", 200), with(&[OLD]), now);
    let mut seen = Seen::new();
    i.handle_bytes(now, input, &mut seen);
    let mut kinds = Vec::new();
    while let Some(bytes) = i.poll_transmit() {
        let mut rest = &bytes[..];
        while let Some((frame, used)) = bus::parse(rest, &Limits::default()).unwrap() {
            kinds.push(frame.kind());
            rest = &rest[used..];
        }
    }
    let mut delivered = 0;
    while let Some(ev) = i.poll_event() {
        if matches!(ev, InboundEvent::Envelope(_)) {
            delivered += 1;
        }
    }
    (kinds, delivered, i.stats().auth_failures)
}

#[test]
fn a_recorded_handshake_replayed_is_refused_before_any_envelope() {
    // Record everything a real dialer with the secret wrote on a good
    // connection: HELLO, AUTH (nonce), AUTH (proofs), then a batch.
    let mut p = pair(&[OLD], &[OLD]);
    p.drive_until(Duration::from_secs(1), Pair::is_up);
    p.link.send(p.now, &envelope(1, 8)).unwrap();
    p.drive_until(Duration::from_secs(1), |p| p.delivered.len() == 1);
    let recorded = p.recorded_client_bytes();
    let auths = bus_kinds(&recorded)
        .iter()
        .filter(|k| **k == bus::Kind::Auth)
        .count();
    assert_eq!(auths, 2, "the dialer's nonce, then its proofs");
    // Played back to a new acceptor: its nonce is new, so the recorded
    // proofs are for another challenge.
    let (written, delivered, failures) = replay(&recorded);
    assert!(!written.contains(&bus::Kind::Welcome), "{written:?}");
    assert_eq!((delivered, failures), (0, 1));
}

#[test]
fn a_frame_instead_of_auth_or_no_auth_in_time_is_refused() {
    let mut hello = Vec::new();
    bus::encode_hello(
        &Hello {
            version: bus::VERSION,
            shard: 0,
            shards: 1,
            incarnation: 1,
            node_id: "intruder",
        },
        &mut hello,
    );
    let mut batch = bus::BatchWriter::new(1);
    batch.push(b"forged");
    let mut input = hello.clone();
    input.extend_from_slice(&batch.finish());
    let (written, delivered, failures) = replay(&input);
    assert!(written.is_empty());
    assert_eq!((delivered, failures), (0, 1));
    // HELLO alone, then silence: refused at the hello deadline.
    let now = Instant::now();
    let mut i = Inbound::new(identity("b", 200), with(&[OLD]), now);
    i.handle_bytes(now, &hello, &mut Seen::new());
    i.handle_timeout(now + Duration::from_secs(10));
    assert!(i.wants_close());
    assert_eq!(i.stats().auth_failures, 1);
}

fn bus_kinds(bytes: &[u8]) -> Vec<bus::Kind> {
    let mut rest = bytes;
    let mut out = Vec::new();
    while let Some((frame, used)) = bus::parse(rest, &Limits::default()).unwrap() {
        if let Frame::Batch(_) | Frame::Hello(_) | Frame::Auth(_) | Frame::Ping = frame {
            out.push(frame.kind());
        }
        rest = &rest[used..];
    }
    out
}

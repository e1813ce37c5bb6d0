//! The record layer against rustls, in memory: a rustls client and server
//! finish a handshake, the server's keys are taken out, and from then on
//! the client (rustls) and the record layer must understand each other
//! both ways, for each TLS 1.3 suite, with the bytes cut at random places.
use std::io::{Read, Write};
use std::sync::Arc;

use rustls::crypto::ring::cipher_suite;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConnection, ServerConnection, SupportedCipherSuite};

use super::*;

const CERT: &[u8] = include_bytes!("shard/testdata/localhost-cert.pem");
const KEY: &[u8] = include_bytes!("shard/testdata/localhost-key.pem");

const SUITES: [(SupportedCipherSuite, Suite); 3] = [
    (cipher_suite::TLS13_AES_128_GCM_SHA256, Suite::Aes128Gcm),
    (cipher_suite::TLS13_AES_256_GCM_SHA384, Suite::Aes256Gcm),
    (
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        Suite::Chacha20Poly1305,
    ),
];

fn transfer(from: &mut dyn FnMut(&mut Vec<u8>) -> bool, to: &mut dyn FnMut(&[u8])) {
    let mut wire = Vec::new();
    while from(&mut wire) {}
    if !wire.is_empty() {
        to(&wire);
    }
}

/// A finished handshake on `suite`: the client, and the server's record
/// layer (its keys taken out of rustls).
fn pair(suite: SupportedCipherSuite) -> (ClientConnection, RecordLayer) {
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![suite],
        ..rustls::crypto::ring::default_provider()
    });
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(CERT)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key)
        .unwrap();
    server.enable_secret_extraction = true;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs[0].clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut c = ClientConnection::new(Arc::new(client), "localhost".try_into().unwrap()).unwrap();
    let mut s = ServerConnection::new(Arc::new(server)).unwrap();
    while c.is_handshaking() || s.is_handshaking() || s.wants_write() {
        transfer(
            &mut |w| c.wants_write() && c.write_tls(w).unwrap() > 0,
            &mut |b| {
                s.read_tls(&mut &b[..]).unwrap();
                s.process_new_packets().unwrap();
            },
        );
        transfer(
            &mut |w| s.wants_write() && s.write_tls(w).unwrap() > 0,
            &mut |b| {
                c.read_tls(&mut &b[..]).unwrap();
                c.process_new_packets().unwrap();
            },
        );
    }
    #[allow(deprecated)]
    let secrets = s.dangerous_extract_secrets().unwrap();
    let rx = from_rustls(secrets.rx.0, secrets.rx.1).unwrap();
    let tx = from_rustls(secrets.tx.0, secrets.tx.1).unwrap();
    (c, RecordLayer::new(rx, tx).unwrap())
}

/// What the client has to send, as bytes.
fn wire_of(c: &mut ClientConnection) -> Vec<u8> {
    let mut wire = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut wire).unwrap();
    }
    wire
}

/// Feeds `wire` to `layer` in random pieces; the plaintext and whether a
/// close_notify came.
fn open_in_pieces(
    layer: &mut RecordLayer,
    wire: &[u8],
    rng: &mut fastrand::Rng,
) -> (Vec<u8>, bool) {
    let (mut incoming, mut plain, mut closed) = (Vec::new(), Vec::new(), false);
    let mut rest = wire;
    while !rest.is_empty() {
        let n = rng.usize(1..=rest.len().min(9000));
        incoming.extend_from_slice(&rest[..n]);
        closed |= layer.open(&mut incoming, &mut plain).unwrap();
        rest = &rest[n..];
    }
    assert!(incoming.is_empty(), "every whole record is taken");
    (plain, closed)
}

/// Hands `wire` to the client; what it reads.
fn client_reads(c: &mut ClientConnection, wire: &[u8]) -> Vec<u8> {
    let mut rest = wire;
    let mut out = Vec::new();
    while !rest.is_empty() {
        c.read_tls(&mut rest).unwrap();
        c.process_new_packets().unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match c.reader().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    out
}

#[test]
fn both_ways_with_rustls_on_every_suite() {
    let mut rng = fastrand::Rng::with_seed(7);
    for (rustls_suite, suite) in SUITES {
        let (mut client, mut layer) = pair(rustls_suite);
        assert_eq!(layer.keys().0.suite, suite);
        for round in 0..20 {
            // Client to server: writes of many sizes, records of up to 16 KiB.
            let data: Vec<u8> = (0..rng.usize(0..40_000)).map(|_| rng.u8(..)).collect();
            client.writer().write_all(&data).unwrap();
            let wire = wire_of(&mut client);
            let (plain, closed) = open_in_pieces(&mut layer, &wire, &mut rng);
            assert_eq!(plain, data, "{suite:?} round {round}");
            assert!(!closed);
            // Server to client.
            let data: Vec<u8> = (0..rng.usize(0..40_000)).map(|_| rng.u8(..)).collect();
            let mut wire = Vec::new();
            layer.seal(&data, &mut wire).unwrap();
            assert_eq!(
                client_reads(&mut client, &wire),
                data,
                "{suite:?} round {round}"
            );
        }
        // close_notify both ways.
        client.send_close_notify();
        let wire = wire_of(&mut client);
        let (_, closed) = open_in_pieces(&mut layer, &wire, &mut rng);
        assert!(closed, "{suite:?}: the client's close_notify");
        let mut wire = Vec::new();
        layer.seal_alert(0, &mut wire).unwrap();
        let mut rest = &wire[..];
        client.read_tls(&mut rest).unwrap();
        let state = client.process_new_packets().unwrap();
        assert!(state.peer_has_closed(), "{suite:?}: ours reached rustls");
    }
}

#[test]
fn a_tampered_record_does_not_open() {
    let (mut client, mut layer) = pair(SUITES[0].0);
    client.writer().write_all(b"hello").unwrap();
    let mut wire = wire_of(&mut client);
    let last = wire.len() - 1;
    wire[last] ^= 1;
    let mut plain = Vec::new();
    assert_eq!(layer.open(&mut wire, &mut plain), Err(Error::BadRecord));
    assert_eq!(Error::BadRecord.alert(), Some(20));
    assert!(plain.is_empty());
}

#[test]
fn a_key_update_is_refused_not_followed() {
    let (mut client, mut layer) = pair(SUITES[2].0);
    client.refresh_traffic_keys().unwrap();
    client.writer().write_all(b"after the update").unwrap();
    let mut wire = wire_of(&mut client);
    let mut plain = Vec::new();
    assert_eq!(layer.open(&mut wire, &mut plain), Err(Error::KeyUpdate));
    assert_eq!(Error::KeyUpdate.alert(), None);
}

#[test]
fn hostile_records_are_errors_never_panics() {
    let (_, mut layer) = pair(SUITES[1].0);
    let mut plain = Vec::new();
    // Too long.
    let mut big = vec![23, 3, 3, 0x48, 0x01];
    assert_eq!(layer.open(&mut big, &mut plain), Err(Error::Overflow));
    // A plaintext handshake record after the handshake.
    let mut hs = vec![22, 3, 3, 0, 1, 0];
    assert_eq!(layer.open(&mut hs, &mut plain), Err(Error::Unexpected(22)));
    // Too short to hold a tag.
    let mut short = vec![23, 3, 3, 0, 1, 0];
    assert_eq!(layer.open(&mut short, &mut plain), Err(Error::BadRecord));
    // Incomplete: waits.
    let mut part = vec![23, 3, 3, 0, 40, 1, 2];
    assert_eq!(layer.open(&mut part, &mut plain), Ok(false));
    assert_eq!(part.len(), 7);
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..2000 {
        let mut junk: Vec<u8> = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect();
        let _ = layer.open(&mut junk, &mut plain);
    }
}

#[test]
fn keys_of_the_wrong_length_are_refused() {
    let keys = |n| Keys {
        suite: Suite::Aes128Gcm,
        key: vec![0; n],
        iv: [0; 12],
        seq: 0,
    };
    assert!(RecordLayer::new(keys(16), keys(16)).is_ok());
    assert!(matches!(
        RecordLayer::new(keys(15), keys(16)),
        Err(Error::BadKey)
    ));
}

/// Two layers facing each other: what one seals the other opens.
fn facing(suite: Suite) -> (RecordLayer, RecordLayer) {
    let len = if suite == Suite::Aes128Gcm { 16 } else { 32 };
    let k = |b: u8| Keys {
        suite,
        key: vec![b; len],
        iv: [b; 12],
        seq: 0,
    };
    (
        RecordLayer::new(k(2), k(1)).unwrap(),
        RecordLayer::new(k(1), k(2)).unwrap(),
    )
}

#[test]
fn closure_alerts_and_malformed_ones() {
    let (mut a, mut b) = facing(Suite::Aes128Gcm);
    let mut plain = Vec::new();
    // user_canceled is followed by a close_notify: ignored itself.
    let mut wire = Vec::new();
    a.seal_record(ALERT, &[1, USER_CANCELED], &mut wire)
        .unwrap();
    a.seal(b"still read", &mut wire).unwrap();
    assert_eq!(b.open(&mut wire, &mut plain), Ok(false));
    assert_eq!(plain, b"still read");
    // An alert of 3 bytes: decode_error.
    let mut wire = Vec::new();
    a.seal_record(ALERT, &[2, 40, 0], &mut wire).unwrap();
    assert_eq!(b.open(&mut wire, &mut plain), Err(Error::Decode));
    assert_eq!(Error::Decode.alert(), Some(50));
    // Any other alert, whatever its level, is the peer's error.
    let (mut a, mut b) = facing(Suite::Aes128Gcm);
    let mut wire = Vec::new();
    a.seal_record(ALERT, &[1, 40], &mut wire).unwrap();
    assert_eq!(b.open(&mut wire, &mut plain), Err(Error::PeerAlert(40)));
    // Padding counts against the limit: 2^14 of content and 1 byte of
    // padding is one byte too many.
    let (mut a, mut b) = facing(Suite::Chacha20Poly1305);
    let mut inner = vec![7u8; MAX_PLAIN];
    inner.push(APPLICATION_DATA);
    let mut wire = Vec::new();
    a.seal_record(0, &inner, &mut wire).unwrap();
    assert_eq!(b.open(&mut wire, &mut plain), Err(Error::Overflow));
}

#[test]
fn nothing_is_sent_after_an_alert_and_gcm_keys_stop_at_their_limit() {
    let (mut a, _) = facing(Suite::Aes256Gcm);
    let mut wire = Vec::new();
    a.seal_alert(0, &mut wire).unwrap();
    assert_eq!(a.seal(b"late", &mut wire), Err(Error::Closed));
    // A record-layer error seals its alert once, then nothing.
    let (mut a, _) = facing(Suite::Aes256Gcm);
    let mut wire = Vec::new();
    a.seal_error(Error::KeyUpdate, &mut wire);
    assert!(!wire.is_empty(), "a close_notify for a key update");
    let n = wire.len();
    a.seal_error(Error::BadRecord, &mut wire);
    assert_eq!(wire.len(), n, "no second alert");
    // 2^24 records under one AES-GCM key, then no more application data
    // (a goodbye still goes).
    let (mut a, mut b) = facing(Suite::Aes128Gcm);
    a.tx.keys.seq = GCM_RECORDS;
    b.rx.keys.seq = GCM_RECORDS;
    let mut wire = Vec::new();
    assert_eq!(a.seal(b"one too many", &mut wire), Err(Error::Exhausted));
    a.seal_error(Error::Exhausted, &mut wire);
    let mut plain = Vec::new();
    assert_eq!(b.open(&mut wire, &mut plain), Ok(true), "a close_notify");
    // ChaCha20-Poly1305 has no such limit here.
    let (mut a, _) = facing(Suite::Chacha20Poly1305);
    a.tx.keys.seq = GCM_RECORDS;
    assert!(a.seal(b"fine", &mut Vec::new()).is_ok());
}

//! The TLS glue without sockets: a rustls client and a shard's `Conn`
//! shuttle bytes in memory, cut at random places, through the handshake,
//! data both ways (frames of many records), close_notify and a failure's
//! alert. The certificate is a self-signed test one for `localhost`
//! (`testdata/`, valid for a century).
use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::UnbufferedServerConnection;
use rustls::ClientConnection;

use super::tls::Conn;

const CERT: &[u8] = include_bytes!("testdata/localhost-cert.pem");
const KEY: &[u8] = include_bytes!("testdata/localhost-key.pem");

fn pair() -> (ClientConnection, Conn) {
    pair_with(false)
}

/// `pair`, with the server's keys extractable (as the node configures it).
fn pair_with(extractable: bool) -> (ClientConnection, Conn) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(CERT)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key)
        .unwrap();
    server.enable_secret_extraction = extractable;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs[0].clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = ClientConnection::new(Arc::new(client), "localhost".try_into().unwrap()).unwrap();
    let server = Conn::new(UnbufferedServerConnection::new(Arc::new(server)).unwrap());
    (client, server)
}

/// Hands what the client has to send to the server in pieces of random
/// size; returns the plaintext the server got.
fn client_to_server(c: &mut ClientConnection, s: &mut Conn, rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut wire = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut wire).unwrap();
    }
    let mut plain = Vec::new();
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let n = rng.usize(1..=rest.len().min(7000));
        s.incoming.extend_from_slice(&rest[..n]);
        s.input(&mut plain).unwrap();
        rest = &rest[n..];
    }
    plain
}

/// Moves what the server enciphered to the client; returns its plaintext.
fn server_to_client(s: &mut Conn, c: &mut ClientConnection) -> Vec<u8> {
    let wire = std::mem::take(&mut s.outgoing);
    let mut rest = &wire[s.sent..];
    s.sent = 0;
    let mut plain = Vec::new();
    while !rest.is_empty() {
        c.read_tls(&mut rest).unwrap();
        c.process_new_packets().unwrap();
        match c.reader().read_to_end(&mut plain) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
        }
    }
    plain
}

fn handshake(c: &mut ClientConnection, s: &mut Conn, rng: &mut fastrand::Rng) {
    for _ in 0..4 {
        assert!(client_to_server(c, s, rng).is_empty());
        server_to_client(s, c);
    }
    assert!(!c.is_handshaking());
}

/// Enciphers all of `data` on the server the way `tls_flush` does.
fn encipher_all(s: &mut Conn, data: &[u8], fin: bool) {
    let mut sent = 0;
    loop {
        let rest = &data[sent..];
        if rest.is_empty() && (!fin || s.closing) {
            return;
        }
        match s.encipher(rest, fin).unwrap() {
            Some(n) => sent += n,
            None => panic!("cannot encipher after the handshake"),
        }
    }
}

#[test]
fn data_both_ways_in_random_pieces() {
    for seed in 0..20 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (mut c, mut s) = pair();
        handshake(&mut c, &mut s, &mut rng);
        // Idle: the server holds no buffer.
        assert_eq!(s.incoming.capacity(), 0, "seed {seed}");
        let up: Vec<u8> = (0..rng.usize(1..100_000)).map(|_| rng.u8(..)).collect();
        let mut got = Vec::new();
        for piece in up.chunks(30_000) {
            c.writer().write_all(piece).unwrap();
            got.extend(client_to_server(&mut c, &mut s, &mut rng));
        }
        assert!(got == up, "seed {seed}");
        assert!(s.incoming.is_empty(), "seed {seed}");
        let down: Vec<u8> = (0..rng.usize(1..100_000)).map(|_| rng.u8(..)).collect();
        encipher_all(&mut s, &down, false);
        assert!(server_to_client(&mut s, &mut c) == down, "seed {seed}");
    }
}

#[test]
fn close_notify_reaches_the_client() {
    let mut rng = fastrand::Rng::with_seed(7);
    let (mut c, mut s) = pair();
    handshake(&mut c, &mut s, &mut rng);
    encipher_all(&mut s, b"bye", true);
    assert_eq!(server_to_client(&mut s, &mut c), b"bye");
    let mut buf = [0u8; 8];
    assert_eq!(c.reader().read(&mut buf).unwrap(), 0, "clean EOF");
}

#[test]
fn garbage_fails_with_an_alert() {
    let (_, mut s) = pair();
    s.incoming
        .extend_from_slice(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(s.input(&mut Vec::new()).is_err());
    s.alert();
    // An alert record: content type 21.
    assert_eq!(s.outgoing.first(), Some(&21), "{:?}", s.outgoing);
}

/// An upgrade's move (`tls_move::move_out`) of a live connection: the keys
/// leave rustls with a partial record read and a record not yet written,
/// and the same rustls client goes on talking to the record layer both
/// ways, then to a copy of it made from the exported keys (the new
/// process), to the close_notify.
#[test]
fn a_moved_connection_goes_on_with_the_same_client() {
    use super::tls::Engine;
    use super::tls_move::move_out;
    for seed in 0..10 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (mut c, mut s) = pair_with(true);
        handshake(&mut c, &mut s, &mut rng);
        c.writer().write_all(b"before").unwrap();
        assert_eq!(client_to_server(&mut c, &mut s, &mut rng), b"before");
        // Output enciphered by rustls and not yet written.
        encipher_all(&mut s, b"queued by rustls, ", false);
        // Bytes of the client in flight: a partial record is read.
        let up: Vec<u8> = (0..rng.usize(1..40_000)).map(|_| rng.u8(..)).collect();
        c.writer().write_all(&up).unwrap();
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        let cut = rng.usize(1..wire.len());
        let mut got = Vec::new();
        s.incoming.extend_from_slice(&wire[..cut]);
        s.input(&mut got).unwrap();
        assert!(
            move_out(&mut s).unwrap(),
            "seed {seed}: a TLS 1.3 connection moves"
        );
        assert!(matches!(s.engine, Engine::Moved(_)));
        assert!(move_out(&mut s).unwrap(), "moving again is a no-op");
        // The new process: the same keys, buffers and unsent records.
        let Engine::Moved(record) = &s.engine else {
            unreachable!()
        };
        let (rx, tx) = record.keys();
        let copy = crate::tls13::RecordLayer::new(rx.clone(), tx.clone()).unwrap();
        let mut moved = Conn {
            engine: Engine::Moved(Box::new(copy)),
            incoming: std::mem::take(&mut s.incoming),
            outgoing: s.outgoing[s.sent..].to_vec(),
            sent: 0,
            closing: false,
            failed: false,
        };
        moved.incoming.extend_from_slice(&wire[cut..]);
        moved.input(&mut got).unwrap();
        assert!(got == up, "seed {seed}: the client's bytes across the move");
        encipher_all(&mut moved, b"and from the new process", true);
        let down = server_to_client(&mut moved, &mut c);
        assert_eq!(down, b"queued by rustls, and from the new process");
        let mut buf = [0u8; 8];
        assert_eq!(c.reader().read(&mut buf).unwrap(), 0, "clean EOF");
    }
}

#[test]
fn tls12_and_mid_handshake_connections_stay_with_rustls() {
    use super::tls::Engine;
    use super::tls_move::move_out;
    let (_, mut s) = pair_with(true);
    assert_eq!(move_out(&mut s), Ok(false), "mid-handshake");
    assert!(matches!(s.engine, Engine::Rustls(_)));
}

/// Part of a handshake message, then a record of another type: rustls
/// refuses it, and collecting its alert must not panic (it once did when
/// handed an empty buffer while inside a partial handshake message).
#[test]
fn a_partial_handshake_message_then_an_alert_record_fails_cleanly() {
    let (mut c, mut s) = pair();
    let mut hello = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut hello).unwrap();
    }
    // A handshake record holding the first 10 bytes of the ClientHello.
    let mut wire = vec![22, 3, 1, 0, 10];
    wire.extend_from_slice(&hello[5..15]);
    // Then an alert record.
    wire.extend_from_slice(&[21, 3, 3, 0, 2, 1, 0]);
    s.incoming.extend_from_slice(&wire);
    assert!(s.input(&mut Vec::new()).is_err());
    s.alert();
    s.alert();
    // What the flusher does next: nothing more through rustls.
    s.incoming.clear();
    s.failed = true;
    assert_eq!(s.encipher(b"a close frame", true), Err(()));
}

//! TLS on the client ports (`--tls-cert`, `--tls-key`): a raw TCP client
//! and a WebSocket client over TLS authenticate and get answers, on both
//! drivers; plaintext is refused on a TLS port; SIGHUP rotates the
//! certificate for new connections while open ones carry on; a client that
//! breaks off inside a handshake message closes only its own connection.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use common::*;
use proto::codec::Encoding;

driver_tests!(
    tcp_and_websocket_over_tls,
    sighup_rotates_the_certificate,
    large_messages_through_a_full_socket,
    a_broken_handshake_closes_only_its_connection
);

/// Reads one length-prefixed server frame.
fn read_tcp_frame(s: &mut Tls) -> proto::v1::ServerFrame {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    proto::codec::decode_server(Encoding::Proto, &body).unwrap()
}

fn tcp_and_websocket_over_tls(driver: Driver) {
    let (gw, cert) = tls_gateway(driver, "both", &[]);
    // Raw TCP over TLS: Auth, then a ping.
    let mut s = connect_tls(gw.tcp, &cert);
    for f in [auth(&user_token("tls", "d"), ""), ping(7)] {
        s.write_all(&length_prefixed(&encode_client(&f, Encoding::Proto)))
            .unwrap();
    }
    use proto::v1::server_frame::Frame as F;
    assert!(matches!(read_tcp_frame(&mut s).frame, Some(F::AuthOk(_))));
    assert!(matches!(read_tcp_frame(&mut s).frame, Some(F::Pong(p)) if p.nonce == 7));

    // WebSocket over TLS (wss): the upgrade, then AuthOk in a binary frame.
    let mut w = connect_tls(gw.ws, &cert);
    write!(
        w,
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {}\r\n\r\n",
        user_token("wss", "d")
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let auth_ok = loop {
        let n = match w.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.unwrap(),
        };
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|x| x == b"\r\n\r\n") {
            if buf.starts_with(b"HTTP/1.1 101") {
                let mut rest = buf[end + 4..].to_vec();
                if let Ok(Some(head)) =
                    proto::ws::decode_frame(&mut rest, proto::ws::Role::Client, 1 << 20)
                {
                    let body = &rest[head.header_len..head.header_len + head.payload_len];
                    break proto::codec::decode_server(Encoding::Proto, body).unwrap();
                }
            } else {
                panic!("{}", String::from_utf8_lossy(&buf));
            }
        }
    };
    assert!(matches!(auth_ok.frame, Some(F::AuthOk(a)) if a.user == "wss"));

    // Plaintext on a TLS port gets nothing but a close.
    let mut plain = TcpStream::connect(gw.tcp).unwrap();
    plain.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    plain
        .write_all(&length_prefixed(&encode_client(&ping(1), Encoding::Proto)))
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        got.is_empty() || got[0] == 0x15,
        "a TLS alert at most: {got:?}"
    );
    // And the node still serves TLS clients after it.
    let mut s = connect_tls(gw.tcp, &cert);
    s.write_all(&length_prefixed(&encode_client(
        &auth(&user_token("again", "d"), ""),
        Encoding::Proto,
    )))
    .unwrap();
    assert!(matches!(read_tcp_frame(&mut s).frame, Some(F::AuthOk(_))));
}

/// Authenticates as `user` over raw TCP on `s` and checks a ping's answer.
fn auth_and_ping(s: &mut Tls, user: &str, nonce: u64) {
    use proto::v1::server_frame::Frame as F;
    for f in [auth(&user_token(user, "d"), ""), ping(nonce)] {
        s.write_all(&length_prefixed(&encode_client(&f, Encoding::Proto)))
            .unwrap();
    }
    assert!(matches!(read_tcp_frame(s).frame, Some(F::AuthOk(_))));
    assert!(matches!(read_tcp_frame(s).frame, Some(F::Pong(p)) if p.nonce == nonce));
}

/// Whether a client trusting only `cert` completes a TLS handshake.
fn handshake_ok(addr: std::net::SocketAddr, cert: &PathBuf) -> bool {
    let mut s = connect_tls(addr, cert);
    s.conn.complete_io(&mut s.sock).is_ok()
}

fn write_tls_config(path: &std::path::Path, tls: Option<(&PathBuf, &PathBuf)>) {
    let text = match tls {
        Some((cert, key)) => format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            cert.to_str().unwrap(),
            key.to_str().unwrap()
        ),
        None => String::new(),
    };
    std::fs::write(path, text).unwrap();
}

fn sighup_rotates_the_certificate(driver: Driver) {
    let (cert_a, key_a) = cert(&format!("{}-a", driver.name()));
    let (cert_b, key_b) = cert(&format!("{}-b", driver.name()));
    let config = cert_a.with_file_name("gateway.toml");
    write_tls_config(&config, Some((&cert_a, &key_a)));
    let gw = Gateway::start(driver, &["--config", config.to_str().unwrap()]);
    let mut live = connect_tls(gw.tcp, &cert_a);
    auth_and_ping(&mut live, "live", 1);
    assert!(!handshake_ok(gw.tcp, &cert_b), "B is not served yet");

    write_tls_config(&config, Some((&cert_b, &key_b)));
    gw.signal(libc::SIGHUP);
    gw.wait_log("reloaded", 1);
    assert!(
        !handshake_ok(gw.tcp, &cert_a),
        "A is retired for new connections"
    );
    assert!(handshake_ok(gw.ws, &cert_b), "wss serves B");
    let mut fresh = connect_tls(gw.tcp, &cert_b);
    auth_and_ping(&mut fresh, "fresh", 2);
    // The open connection keeps its session (and its certificate).
    live.write_all(&length_prefixed(&encode_client(&ping(3), Encoding::Proto)))
        .unwrap();
    use proto::v1::server_frame::Frame as F;
    assert!(matches!(read_tcp_frame(&mut live).frame, Some(F::Pong(p)) if p.nonce == 3));

    // A key file that is gone: refused, B stays in force.
    let gone = cert_b.with_file_name("missing-key.pem");
    write_tls_config(&config, Some((&cert_b, &gone)));
    gw.signal(libc::SIGHUP);
    gw.wait_log("reload refused", 1);
    assert!(handshake_ok(gw.tcp, &cert_b));
    // Turning TLS off takes a restart: refused, and said so.
    write_tls_config(&config, None);
    let r = gw.post("/reload", "");
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        r.json()["error"].as_str().unwrap().contains("restart"),
        "{r:?}"
    );
    assert!(handshake_ok(gw.ws, &cert_b));
}

/// Frames of many TLS records each, both ways, to a receiver that reads
/// nothing until 6 MB are on their way: the gateway's socket fills (records
/// wait, enciphered a record at a time), and then everything arrives
/// intact and in order.
fn large_messages_through_a_full_socket(driver: Driver) {
    use proto::v1::server_frame::Frame as F;
    let (gw, cert) = tls_gateway(
        driver,
        "large",
        &[
            "--max-frame-bytes",
            "262144",
            "--send-queue-bytes",
            "16777216",
        ],
    );
    let (mut a, mut b) = (connect_tls(gw.tcp, &cert), connect_tls(gw.tcp, &cert));
    auth_and_ping(&mut a, "big-a", 1);
    auth_and_ping(&mut b, "big-b", 2);
    let body = |i: u32| -> Vec<u8> {
        (0..200_000u32)
            .map(|j| (j.wrapping_mul(31) ^ i) as u8)
            .collect()
    };
    const N: u32 = 30;
    for i in 0..N {
        let f = to_user("big-b", &format!("m{i}"), &body(i));
        a.write_all(&length_prefixed(&encode_client(&f, Encoding::Proto)))
            .unwrap();
    }
    a.write_all(&length_prefixed(&encode_client(&ping(3), Encoding::Proto)))
        .unwrap();
    // A's pong comes after the gateway routed all of A's sends.
    let mut results = 0;
    loop {
        match read_tcp_frame(&mut a).frame {
            Some(F::SendResult(r)) => {
                assert!(r.accepted, "{r:?}");
                results += 1;
            }
            Some(F::Pong(p)) if p.nonce == 3 => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(results, N);
    for i in 0..N {
        match read_tcp_frame(&mut b).frame {
            Some(F::Deliver(d)) => assert!(d.payload[..] == body(i)[..], "message {i} differs"),
            other => panic!("message {i}: {other:?}"),
        }
    }
}

/// Part of a ClientHello, then an alert record (a handshake message may not
/// be interleaved with other records): the connection is refused and closed,
/// and the node serves on (collecting rustls' answer once panicked here).
fn a_broken_handshake_closes_only_its_connection(driver: Driver) {
    // One shard: the broken connection and the good one share it.
    let (gw, cert) = tls_gateway(driver, "broken", &["--shards", "1"]);
    let mut ok = connect_tls(gw.tcp, &cert);
    auth_and_ping(&mut ok, "alice", 1);
    for addr in [gw.tcp, gw.ws] {
        let mut raw = TcpStream::connect(addr).unwrap();
        raw.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        // A handshake record with 10 bytes of a ClientHello, then an alert.
        let mut wire = vec![22, 3, 1, 0, 10, 1, 0, 1, 0, 3, 3, 0, 0, 0, 0];
        wire.extend_from_slice(&[21, 3, 3, 0, 2, 1, 0]);
        raw.write_all(&wire).unwrap();
        let mut rest = Vec::new();
        let _ = raw.read_to_end(&mut rest);
    }
    // The first connection is still served.
    ok.write_all(&length_prefixed(&encode_client(&ping(2), Encoding::Proto)))
        .unwrap();
    let pong = read_tcp_frame(&mut ok).frame;
    assert!(
        matches!(pong, Some(proto::v1::server_frame::Frame::Pong(ref p)) if p.nonce == 2),
        "{pong:?}"
    );
    let mut again = connect_tls(gw.tcp, &cert);
    auth_and_ping(&mut again, "bob", 3);
}

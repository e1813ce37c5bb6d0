//! TLS on the client ports (`--tls-cert`, `--tls-key`): a raw TCP client
//! and a WebSocket client over TLS authenticate and get answers, on both
//! drivers; plaintext is refused on a TLS port.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use common::*;
use proto::codec::Encoding;

driver_tests!(tcp_and_websocket_over_tls);

/// A self-signed certificate for `localhost` (openssl), in a fresh dir.
fn cert(tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("gateway-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");
    (cert, key)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect_tls(addr: std::net::SocketAddr, cert: &PathBuf) -> Tls {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Reads one length-prefixed server frame.
fn read_tcp_frame(s: &mut Tls) -> proto::v1::ServerFrame {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    proto::codec::decode_server(Encoding::Proto, &body).unwrap()
}

fn tcp_and_websocket_over_tls(driver: Driver) {
    let (cert, key) = cert(driver.name());
    let gw = Gateway::start(
        driver,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
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
        let n = w.read(&mut chunk).unwrap();
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

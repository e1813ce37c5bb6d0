//! TLS helpers: a self-signed certificate made by `openssl`, and a rustls
//! client that trusts only it.
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use super::{Driver, Gateway, IO_TIMEOUT};

/// A self-signed certificate for `localhost` and `127.0.0.1` (openssl), in
/// a fresh dir.
pub fn cert(tag: &str) -> (PathBuf, PathBuf) {
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
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
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

/// A blocking TLS client stream.
pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS client to `addr` trusting `cert` only; the handshake happens on
/// its first read or write (or `conn.complete_io`).
pub fn connect_tls(addr: std::net::SocketAddr, cert: &PathBuf) -> Tls {
    connect_tls_version(addr, cert, None)
}

/// `connect_tls`, offering only `version` (TLS 1.2 or 1.3) when given.
pub fn connect_tls_version(
    addr: std::net::SocketAddr,
    cert: &PathBuf,
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> Tls {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider);
    let builder = match version {
        Some(v) => builder.with_protocol_versions(&[v]),
        None => builder.with_safe_default_protocol_versions(),
    };
    let cfg = builder
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// A gateway with TLS on both client ports and a certificate of its own
/// (`tag`, with the driver's name, keeps parallel tests' files apart);
/// `extra` flags follow. Returns the certificate clients should trust.
pub fn tls_gateway(driver: Driver, tag: &str, extra: &[&str]) -> (Gateway, PathBuf) {
    let (cert, key) = cert(&format!("{tag}-{}", driver.name()));
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend(extra);
    (Gateway::start(driver, &args), cert)
}

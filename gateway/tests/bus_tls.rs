//! TLS on the bus (`cluster.tls_*`), against real nodes on loopback with
//! certificates from a test CA (openssl): two nodes carry interest and
//! messages over TLS 1.3 with both certificates checked; a node whose
//! certificate another CA signed, and a node without TLS, reach the
//! registry but no link: refused and counted as bus authentication
//! failures, and nothing they say is delivered; one name for the cluster
//! (`tls_server_name`) instead of the peers' IP addresses; the bus port
//! speaks TLS 1.3 with its ALPN and refuses a client without a certificate.

#[allow(unused_macros)] // io_uring only: the bus is not driver-specific
mod common;

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const SECRET: &str = "a cluster secret of at least thirty-two bytes";

/// A CA, and node certificates it signs; in a fresh directory.
struct Pki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("gateway-bus-tls-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut args = vec!["req", "-x509", "-days", "1", "-subj", "/CN=test cluster CA"];
        args.extend(ec);
        args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        args.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(&dir, &args);
        std::fs::write(dir.join("secret"), format!("{SECRET}\n")).unwrap();
        Pki { dir }
    }

    /// A node certificate for `san` (`IP:127.0.0.1`, `DNS:name`).
    fn node(&self, name: &str, san: &str) -> [String; 2] {
        let (key, csr, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let mut req = vec!["req", "-new", "-subj", "/CN=gateway node"];
        req.extend([
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ]);
        req.extend(["-keyout", &key, "-out", &csr]);
        openssl(&self.dir, &req);
        let ext = format!("{name}.ext");
        let text = format!(
            "basicConstraints=critical,CA:FALSE\nsubjectAltName={san}\n\
             extendedKeyUsage=serverAuth,clientAuth\n"
        );
        std::fs::write(self.dir.join(&ext), text).unwrap();
        let sign = [
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ];
        openssl(&self.dir, &sign);
        [self.path(&cert), self.path(&key)]
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// The flags of a node with `cert` from this CA (or `ca`'s).
    fn flags(&self, [cert, key]: &[String; 2], ca: &Pki) -> Vec<String> {
        [
            "--bus-tls-cert",
            cert,
            "--bus-tls-key",
            key,
            "--bus-tls-ca",
            &ca.path("ca.pem"),
            "--cluster-secret-file",
            &self.path("secret"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// A TLS client of the bus port at `addr`, trusting the CA of `pki`, with
/// `cert` as its client certificate (or none).
fn bus_client(
    addr: std::net::SocketAddr,
    pki: &Pki,
    cert: Option<&[String; 2]>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match cert {
        Some([c, k]) => {
            let chain = CertificateDer::pem_file_iter(c)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(k).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"gateway-bus/1".to_vec()];
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[track_caller]
fn direct(from: &mut Client, to: &mut Client, user: &str, id: &str) {
    from.send(&to_user(user, id, id.as_bytes()));
    let r = from.result_for(id);
    assert!(r.accepted, "{r:?}");
    assert_eq!(&to.deliver().payload[..], id.as_bytes());
}

/// Two nodes over TLS carry messages both ways; a node with a certificate
/// of another CA, and one without TLS, get no link: counted, not heard.
#[test]
fn uring_the_bus_speaks_tls_only_with_certificates_of_the_cluster_ca() {
    let pki = Pki::new("ca");
    let rogue = Pki::new("rogue");
    let (a_cert, b_cert) = (pki.node("a", "IP:127.0.0.1"), pki.node("b", "IP:127.0.0.1"));
    let (fa, fb) = (pki.flags(&a_cert, &pki), pki.flags(&b_cert, &pki));
    let mut c = Cluster::start(Driver::Uring, &[&strs(&fa), &strs(&fb)]);
    let (mut alice, mut bob) = {
        let (a, b) = (&c.nodes[0], &c.nodes[1]);
        let alice = a.connect(WS, "alice", "phone");
        let bob = b.connect(TCP, "bob", "phone");
        wait_user_known(a, "bob", &[b]);
        wait_user_known(b, "alice", &[a]);
        (alice, bob)
    };
    direct(&mut alice, &mut bob, "bob", "over-tls-1");
    direct(&mut bob, &mut alice, "alice", "over-tls-2");

    // The bus port speaks TLS 1.3 with ALPN gateway-bus/1, and asks for a
    // certificate: a client with one of the CA completes the handshake, a
    // client without one is refused.
    let bus = c.nodes[0].bus[0];
    let mut ok = bus_client(bus, &pki, Some(&a_cert));
    ok.conn
        .complete_io(&mut ok.sock)
        .expect("a handshake with a node certificate");
    assert_eq!(ok.conn.alpn_protocol(), Some(&b"gateway-bus/1"[..]));
    assert_eq!(
        ok.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let mut anon = bus_client(bus, &pki, None);
    let refused = anon.conn.complete_io(&mut anon.sock).and_then(|_| {
        // TLS 1.3: the server's refusal of the missing certificate comes
        // after the client's handshake is done, on the first read.
        let mut b = [0u8; 1];
        anon.read(&mut b).map(drop)
    });
    assert!(
        refused.is_err(),
        "a client without a certificate is refused"
    );

    // A node whose certificate another CA signed (it trusts our CA, so
    // only our side refuses it), and a node with no TLS at all.
    let mallory_cert = rogue.node("m", "IP:127.0.0.1");
    let fm = rogue.flags(&mallory_cert, &pki);
    let secret = pki.path("secret");
    let plain = ["--cluster-secret-file", secret.as_str()];
    c.add(Driver::Uring, &strs(&fm));
    c.add(Driver::Uring, &plain);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    a.wait_metric("gateway_bus_auth_failures_total", |n| n >= 2.0);
    b.wait_metric("gateway_bus_auth_failures_total", |n| n >= 2.0);
    let mut eve = c.nodes[2].connect(TCP, "eve", "phone");
    let mut plain_user = c.nodes[3].connect(TCP, "pat", "phone");
    // Nothing from them reaches alice, and the pair still talks: what
    // alice gets next is bob's message.
    for (sender, id) in [(&mut eve, "from-rogue"), (&mut plain_user, "from-plain")] {
        sender.send(&to_user("alice", id, id.as_bytes()));
        let _ = sender.result_for(id);
    }
    direct(&mut bob, &mut alice, "alice", "still-over-tls");
    assert!(alice.take_stashed().is_empty());
}

/// One name for the cluster: certificates that carry only `DNS:gateway-bus`
/// pass when every node checks that name.
#[test]
fn uring_one_server_name_for_the_whole_cluster() {
    let pki = Pki::new("named");
    let (a_cert, b_cert) = (
        pki.node("a", "DNS:gateway-bus"),
        pki.node("b", "DNS:gateway-bus"),
    );
    let name = ["--bus-tls-server-name", "gateway-bus"].map(String::from);
    let mut fa = pki.flags(&a_cert, &pki);
    let mut fb = pki.flags(&b_cert, &pki);
    fa.extend(name.clone());
    fb.extend(name);
    let c = Cluster::start(Driver::Uring, &[&strs(&fa), &strs(&fb)]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let mut alice = a.connect(WS, "alice", "phone");
    let mut bob = b.connect(TCP, "bob", "phone");
    wait_user_known(a, "bob", &[b]);
    direct(&mut alice, &mut bob, "bob", "named-1");
    let failures = metric(&a.metrics(), "gateway_bus_auth_failures_total");
    assert_eq!(failures, Some(0.0), "no link was refused");
}

/// A node whose bus TLS files do not fit does not start: one line says why.
#[test]
fn a_bus_tls_misconfiguration_stops_the_start_with_one_line() {
    let pki = Pki::new("bad");
    let cert = pki.node("a", "IP:127.0.0.1");
    let out = run_cli(&["--bus-tls-cert", &cert[0], "--bus-tls-key", &cert[1]]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls_ca_file"), "{err}");
}

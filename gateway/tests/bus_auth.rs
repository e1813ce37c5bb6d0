//! Nodes that trust only each other: with a cluster secret the bus links
//! prove it both ways before a single envelope is accepted. Against real
//! nodes on loopback: two nodes with the secret carry messages; a dialer
//! that proves the secret (the `relay` crate's own link, as a node dials)
//! is delivered; a peer without it, and a recorded handshake played back,
//! are refused before anything is delivered and counted; a node whose bus
//! listens beyond loopback without a secret does not start.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use prost::Message;

driver_tests!(only_peers_that_prove_the_secret_are_heard);
use proto::bus_v1::{envelope, Envelope, ToName};

const SECRET: &str = "a cluster secret of at least thirty-two bytes";

fn secret_file(driver: Driver) -> std::path::PathBuf {
    let name = format!(
        "gateway-bus-secret-{}-{}",
        std::process::id(),
        driver.name()
    );
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    path
}

/// A bus envelope with a live message for `user`.
fn envelope_to(user: &str, payload: &[u8]) -> Vec<u8> {
    let frame = proto::v1::ServerFrame {
        frame: Some(proto::v1::server_frame::Frame::Deliver(
            proto::v1::Deliver {
                msg_id: "forged".into(),
                payload: bytes::Bytes::copy_from_slice(payload),
                ..Default::default()
            },
        )),
    };
    Envelope {
        kind: Some(envelope::Kind::ToUser(ToName {
            name: user.into(),
            frame: frame.encode_to_vec().into(),
            epoch: 0,
        })),
    }
    .encode_to_vec()
}

/// Dials `addr` as a node with `secret` would (a `relay::Link`), sends one
/// envelope and waits for its ack; returns every byte it wrote.
fn dial_with(addr: SocketAddr, secret: &str, envelope: &[u8]) -> Vec<u8> {
    try_dial_with(addr, secret, envelope).unwrap_or_else(|e| panic!("{e}"))
}

/// `dial_with`, or why the node would not have it.
fn try_dial_with(addr: SocketAddr, secret: &str, envelope: &[u8]) -> Result<Vec<u8>, String> {
    let config = relay::Config {
        secrets: relay::Secrets::new(&[secret]),
        ..relay::Config::default()
    };
    let me = relay::Identity {
        node_id: "outsider".into(),
        incarnation: 1,
        shard: 0,
        shards: 1,
    };
    let mut link = relay::Link::new(me, None, config, 1, Instant::now());
    assert!(link.poll_connect(Instant::now()));
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    link.transport_up(Instant::now());
    let (mut recorded, mut sent) = (Vec::new(), false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no ack: {:?}", link.state());
        let now = Instant::now();
        while let Some(b) = link.poll_transmit(now) {
            tcp.write_all(&b).unwrap();
            recorded.extend_from_slice(&b);
        }
        if link.state() == relay::LinkState::Up && !sent {
            link.send(now, envelope).unwrap();
            link.flush(now);
            sent = true;
            continue;
        }
        if sent && link.is_empty() {
            return Ok(recorded);
        }
        if link.wants_close() {
            return Err(format!("refused: {:?}", link.poll_event()));
        }
        let mut buf = [0u8; 4096];
        match tcp.read(&mut buf) {
            Ok(0) => return Err(format!("the node closed the link: {:?}", link.poll_event())),
            Ok(n) => link.handle_bytes(Instant::now(), &buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("bus read: {e}"),
        }
        link.handle_timeout(Instant::now());
    }
}

/// Writes `bytes` to a new connection to `addr` and waits until the node
/// closes it.
fn closed_after(addr: SocketAddr, bytes: &[u8]) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(bytes).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue, // the node's challenge, before it closes
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the node did not close the connection: {e}"),
        }
    }
}

#[track_caller]
fn hears(c: &mut Client, payload: &[u8]) {
    let d = c.deliver();
    assert_eq!(&d.payload[..], payload, "{d:?}");
}

fn only_peers_that_prove_the_secret_are_heard(driver: Driver) {
    let file = secret_file(driver);
    let flags = ["--cluster-secret-file", file.to_str().unwrap()];
    let c = Cluster::start(driver, &[&flags, &flags]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    // The two nodes link and carry a message.
    let mut alice = b.connect(TCP, "alice", "phone");
    let mut bob = a.connect(WS, "bob", "desk");
    wait_user_known(a, "alice", &[b]);
    bob.send(&to_user("alice", "m1", b"across"));
    assert!(bob.result_for("m1").accepted);
    hears(&mut alice, b"across");

    // A dialer that proves the secret is heard.
    let recorded = dial_with(b.bus[0], SECRET, &envelope_to("alice", b"with the secret"));
    hears(&mut alice, b"with the secret");

    // One without it (a HELLO, then a batch) and the recording played
    // back are closed before a single envelope is delivered.
    let mut hello = Vec::new();
    proto::bus::encode_hello(
        &proto::bus::Hello {
            version: proto::bus::VERSION,
            shard: 0,
            shards: 1,
            incarnation: 2,
            node_id: "intruder",
        },
        &mut hello,
    );
    let mut batch = proto::bus::BatchWriter::new(1);
    batch.push(&envelope_to("alice", b"forged"));
    hello.extend_from_slice(&batch.finish());
    closed_after(b.bus[0], &hello);
    closed_after(b.bus[1], &recorded);
    b.wait_metric("gateway_bus_auth_failures_total", |n| n >= 2.0);
    // Nothing forged arrived: the next frame is the next real message.
    bob.send(&to_user("alice", "m2", b"still only us"));
    assert!(bob.result_for("m2").accepted);
    hears(&mut alice, b"still only us");
    std::fs::remove_file(file).ok();
}

#[test]
fn a_bus_beyond_loopback_needs_a_secret_and_a_short_one_is_refused() {
    let base = [
        "--redis",
        "redis://127.0.0.1:1/",
        "--jwt-secret",
        "x",
        "--bus-listen",
        "0.0.0.0:0",
        "--bus-advertise",
        "127.0.0.1",
    ];
    let out = run_cli(&base);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a config error: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cluster.bus_listen") && stderr.contains("secret"),
        "{stderr}"
    );
    let short = std::env::temp_dir().join(format!("gateway-short-secret-{}", std::process::id()));
    std::fs::write(&short, "too short").unwrap();
    let mut args = base.to_vec();
    args.extend(["--cluster-secret-file", short.to_str().unwrap()]);
    let out = run_cli(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a config error: {stderr}");
    assert!(
        stderr.contains("cluster.secret") && stderr.contains("32 bytes"),
        "{stderr}"
    );
    std::fs::remove_file(short).ok();
}

/// A rotation by reload: the new secret (with the old one still accepted)
/// is in force for new links once `POST /reload` answers.
#[test]
fn uring_a_new_secret_is_in_force_after_a_reload() {
    const NEW: &str = "the new cluster secret, at least thirty-two bytes";
    let dir = std::env::temp_dir().join(format!("gateway-rotate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    let write = |secret: &str, previous: &[&str]| {
        std::fs::write(dir.join("secret"), secret).unwrap();
        let previous: Vec<String> = previous.iter().map(|p| format!("{p:?}")).collect();
        let toml = format!(
            "[cluster]\nsecret_file = \"secret\"\nprevious_secrets = [{}]\n",
            previous.join(", ")
        );
        std::fs::write(&config, toml).unwrap();
    };
    write(SECRET, &[]);
    let c = Cluster::start(Driver::Uring, &[&["--config", config.to_str().unwrap()]]);
    let gw = &c.nodes[0];
    let mut alice = gw.connect(TCP, "alice", "phone");
    assert!(try_dial_with(gw.bus[0], NEW, &envelope_to("alice", b"too early")).is_err());
    write(NEW, &[SECRET]);
    assert_eq!(gw.post("/reload", "").status, 200);
    dial_with(gw.bus[0], NEW, &envelope_to("alice", b"new"));
    hears(&mut alice, b"new");
    dial_with(
        gw.bus[1],
        SECRET,
        &envelope_to("alice", b"old, still accepted"),
    );
    hears(&mut alice, b"old, still accepted");
    std::fs::remove_dir_all(dir).ok();
}

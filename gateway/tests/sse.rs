//! The fallback transport over real sockets, as the README tells a client
//! to use it: an SSE stream (`GET /sse`) down and `POST`s of JSON frames
//! up, each POST on a connection of its own (so on either shard). An SSE
//! client chats with a raw TCP one both ways; QoS 1 over SSE is acked by
//! POST and resumed after a reconnect with `Last-Event-ID`; a wrong key,
//! another node's session, a body over the limit, a bad token and a closed
//! stream are refused with their statuses; a fatal frame closes the stream;
//! a stream moves with an upgrade, its POST key with it; all of it over TLS
//! too (https, as a fallback in production is served).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use proto::codec::Encoding;

driver_tests!(
    an_sse_client_chats_with_a_tcp_client,
    the_fallback_works_over_tls,
    qos1_over_sse_is_acked_and_resumed,
    bad_requests_get_their_statuses,
    an_sse_stream_moves_with_an_upgrade,
);

/// A client connection: plain TCP or TLS.
trait Io: Read + Write {}
impl<T: Read + Write> Io for T {}

/// A new connection to the client port (TLS when `cert` is given).
fn dial(gw: &Gateway, cert: Option<&std::path::PathBuf>) -> Box<dyn Io> {
    match cert {
        Some(cert) => Box::new(connect_tls(gw.ws, cert)),
        None => {
            let s = TcpStream::connect(gw.ws).unwrap();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            Box::new(s)
        }
    }
}

/// One SSE stream: the socket and what was read of it.
struct Stream {
    s: Box<dyn Io>,
    /// TLS: the certificate to trust (POSTs dial with it too).
    cert: Option<std::path::PathBuf>,
    buf: Vec<u8>,
    /// The path to post to (from the `session` event).
    post: String,
}

/// One event: its `id` (if any) and its data.
#[derive(Debug)]
struct Ev {
    id: Option<u64>,
    event: Option<String>,
    data: serde_json::Value,
}

impl Stream {
    /// Opens `GET target` with `headers`; the head must be 200.
    fn open(gw: &Gateway, target: &str, headers: &str) -> Stream {
        Stream::open_on(gw, None, target, headers)
    }

    /// `open`, over TLS when `cert` is given.
    fn open_on(
        gw: &Gateway,
        cert: Option<&std::path::PathBuf>,
        target: &str,
        headers: &str,
    ) -> Stream {
        let mut s = dial(gw, cert);
        write!(s, "GET {target} HTTP/1.1\r\nHost: gw\r\n{headers}\r\n").unwrap();
        let mut st = Stream {
            s,
            cert: cert.cloned(),
            buf: Vec::new(),
            post: String::new(),
        };
        let head = st.head();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: text/event-stream\r\n"),
            "{head}"
        );
        let first = st.next();
        assert_eq!(first.event.as_deref(), Some("session"), "{first:?}");
        st.post = first.data["post"].as_str().unwrap().to_owned();
        st
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        loop {
            match self.s.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) => panic!("read within {IO_TIMEOUT:?}: {e}"),
            }
        }
    }

    fn head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..end + 4].to_vec()).unwrap();
                self.buf.drain(..end + 4);
                return head;
            }
            assert!(self.fill(), "closed before the head");
        }
    }

    /// The next event, or `None` once the stream ended.
    fn try_next(&mut self) -> Option<Ev> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let text = String::from_utf8(self.buf[..end].to_vec()).unwrap();
                self.buf.drain(..end + 2);
                let mut ev = Ev {
                    id: None,
                    event: None,
                    data: serde_json::Value::Null,
                };
                for line in text.lines() {
                    match line.split_once(": ") {
                        Some(("id", v)) => ev.id = Some(v.parse().unwrap()),
                        Some(("event", v)) => ev.event = Some(v.to_owned()),
                        Some(("data", v)) => ev.data = serde_json::from_str(v).unwrap(),
                        _ => panic!("unexpected line {line:?}"),
                    }
                }
                return Some(ev);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    fn next(&mut self) -> Ev {
        self.try_next().expect("an event before the stream ended")
    }

    /// The next event with a `key` frame (`deliver`, `authOk`, ...).
    fn next_of(&mut self, key: &str) -> Ev {
        loop {
            let ev = self.next();
            if ev.data.get(key).is_some() {
                return ev;
            }
        }
    }

    /// POSTs `frames` (JSON, one per line) to this stream; the status.
    fn post(&self, gw: &Gateway, frames: &[serde_json::Value]) -> u16 {
        let body: String = frames.iter().map(|f| format!("{f}\n")).collect();
        post_on(dial(gw, self.cert.as_ref()), &self.post, &body)
    }
}

/// A `POST path` with `body` on a new connection; its status.
fn post(gw: &Gateway, path: &str, body: &str) -> u16 {
    post_on(dial(gw, None), path, body)
}

/// A `POST path` with `body` on `s`; the status of its answer.
fn post_on(mut s: Box<dyn Io>, path: &str, body: &str) -> u16 {
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The status line is enough (a TLS peer's close need not be clean).
    let mut out = Vec::new();
    let mut chunk = [0u8; 1024];
    while out.len() < 12 {
        match s.read(&mut chunk) {
            // A signal came (EINTR): read again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&out)
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn an_sse_client_chats_with_a_tcp_client(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut alice = Stream::open(
        &gw,
        &format!("/sse?token={}", user_token("alice", "web")),
        "",
    );
    assert_eq!(alice.next().data["authOk"]["user"], "alice");
    let mut bob = gw.connect(TCP, "bob", "d");
    bob.join("r");
    // Each POST on a connection of its own: in order, each answered 204
    // once taken.
    let join = serde_json::json!({"join": {"room": "r"}});
    assert_eq!(alice.post(&gw, &[join]), 204);
    assert_eq!(alice.next_of("joined").data["joined"]["room"], "r");
    wait_room_members(&gw, "r", 2);
    for i in 0..6 {
        let text = format!("from alice {i}");
        let send = serde_json::json!({"send": {"room": "r", "clientMsgId": i.to_string(),
            "payload": b64(text.as_bytes())}});
        let ping = serde_json::json!({"ping": {"nonce": (100 + i).to_string()}});
        assert_eq!(alice.post(&gw, &[send, ping]), 204);
        let d = loop {
            let d = bob.any_deliver();
            if d.from == "alice" {
                break d;
            }
        };
        assert_eq!(d.payload, text.as_bytes(), "in order");
        let r = alice.next_of("sendResult");
        assert_eq!(r.data["sendResult"]["accepted"], true);
    }
    bob.take_stashed();
    bob.send(&to_room("r", "b1", b"from bob"));
    let d = loop {
        let ev = alice.next_of("deliver");
        if ev.data["deliver"]["from"] == "bob" {
            break ev;
        }
    };
    assert_eq!(d.data["deliver"]["payload"], b64(b"from bob"));
    assert_eq!(d.id, None, "a QoS 0 message has no id");
    gw.assert_shards_serve();
}

fn qos1_over_sse_is_acked_and_resumed(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let token = user_token("carol", "web");
    let mut carol = Stream::open(&gw, &format!("/sse?token={token}"), "");
    carol.next_of("authOk");
    let mut dave = gw.connect(TCP, "dave", "d");
    for i in 1..=3 {
        dave.send(&qos1_to_user(
            "carol",
            &format!("m{i}"),
            format!("q{i}").as_bytes(),
        ));
        assert!(dave.result_for(&format!("m{i}")).accepted);
    }
    let mut seqs = Vec::new();
    for _ in 1..=3 {
        let ev = carol.next_of("deliver");
        let seq: u64 = ev.data["deliver"]["seq"].as_str().unwrap().parse().unwrap();
        assert_eq!(ev.id, Some(seq), "the event id is the seq");
        seqs.push(seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let ack = serde_json::json!({"ack": {"seq": seqs[1].to_string()}});
    assert_eq!(carol.post(&gw, &[ack]), 204);
    // The acks are taken before the answer: a ping after it is answered
    // after anything the ack caused.
    let ping = serde_json::json!({"ping": {"nonce": "1"}});
    assert_eq!(carol.post(&gw, &[ping]), 204);
    carol.next_of("pong");
    drop(carol);
    dave.send(&qos1_to_user("carol", "m4", b"q4"));
    assert!(dave.result_for("m4").accepted);
    // Back, with the last id it saw as EventSource sends it.
    let mut carol = Stream::open(
        &gw,
        &format!("/sse?token={token}"),
        &format!("Last-Event-ID: {}\r\n", seqs[1]),
    );
    carol.next_of("authOk");
    let mut got = Vec::new();
    while got.len() < 2 {
        let ev = carol.next_of("deliver");
        got.push(String::from_utf8(base64_of(&ev.data["deliver"]["payload"])).unwrap());
    }
    assert_eq!(got, ["q3", "q4"], "after the resume point, nothing twice");
}

fn base64_of(v: &serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

fn bad_requests_get_their_statuses(driver: Driver) {
    let gw = Gateway::start(driver, &["--max-frame-bytes", "4096"]);
    // A bad token: 401, no stream.
    let mut s = TcpStream::connect(gw.ws).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"GET /sse?token=nope HTTP/1.1\r\nHost: gw\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 401 "), "{out}");

    // No token: the first posted frame must be `auth`.
    let mut erin = Stream::open(&gw, "/sse", "");
    let auth = encode_client(&auth(&user_token("erin", "w"), ""), Encoding::Json);
    let auth: serde_json::Value = serde_json::from_slice(&auth).unwrap();
    assert_eq!(erin.post(&gw, &[auth]), 204);
    assert_eq!(erin.next().data["authOk"]["user"], "erin");

    let (base, key) = erin.post.rsplit_once('/').unwrap();
    let other = if key.starts_with('0') { "1" } else { "0" };
    let wrong = format!("{base}/{other}{}", &key[1..]);
    let ping = "{\"ping\":{}}\n";
    assert_eq!(post(&gw, &wrong, ping), 404, "a wrong key");
    let parts: Vec<&str> = erin.post.split('/').collect();
    let elsewhere = format!("/sse/another-node/{}/{}", parts[3], parts[4]);
    assert_eq!(post(&gw, &elsewhere, ping), 421, "another node's session");
    let big = format!("{{\"ping\":{{\"nonce\":\"{}\"}}}}\n", "1".repeat(5000));
    assert_eq!(post(&gw, &erin.post, &big), 413);

    // A frame that is not one: the stream gets a fatal error and ends.
    assert_eq!(post(&gw, &erin.post, "{\"no such frame\n"), 204);
    let err = erin.next_of("error");
    assert_eq!(err.data["error"]["fatal"], true);
    assert!(erin.try_next().is_none(), "the stream ended");
    // Its session is gone: posts to it are 404.
    let deadline = Instant::now() + IO_TIMEOUT;
    while post(&gw, &erin.post, ping) != 404 {
        assert!(Instant::now() < deadline, "still taking posts");
        std::thread::sleep(Duration::from_millis(20));
    }
    gw.assert_shards_serve();
}

fn an_sse_stream_moves_with_an_upgrade(driver: Driver) {
    let reap = Reap::default();
    let gw = Gateway::start(driver, &[]);
    let mut frank = Stream::open(&gw, &format!("/sse?token={}", user_token("frank", "w")), "");
    frank.next_of("authOk");
    let join = serde_json::json!({"join": {"room": "moved"}});
    assert_eq!(frank.post(&gw, &[join]), 204);
    frank.next_of("joined");
    let old = gw.pid();
    let new = upgrade_node(&gw, &reap);
    assert_ne!(new, old);
    // The same stream, the same path, now served by the new process.
    let ping = serde_json::json!({"ping": {"nonce": "77"}});
    assert_eq!(frank.post(&gw, &[ping]), 204);
    assert_eq!(frank.next_of("pong").data["pong"]["nonce"], "77");
    push(&gw, r#""room": "moved""#, "after the upgrade", 0);
    let d = frank.next_of("deliver");
    assert_eq!(d.data["deliver"]["room"], "moved");
}

fn the_fallback_works_over_tls(driver: Driver) {
    let (gw, cert) = tls_gateway(driver, "sse", &[]);
    let token = user_token("gina", "w");
    let mut gina = Stream::open_on(&gw, Some(&cert), &format!("/sse?token={token}"), "");
    assert_eq!(gina.next().data["authOk"]["user"], "gina");
    let join = serde_json::json!({"join": {"room": "tls"}});
    let ping = serde_json::json!({"ping": {"nonce": "5"}});
    assert_eq!(gina.post(&gw, &[join, ping]), 204);
    gina.next_of("joined");
    assert_eq!(gina.next_of("pong").data["pong"]["nonce"], "5");
    push(&gw, r#""room": "tls""#, "over https", 0);
    assert_eq!(gina.next_of("deliver").data["deliver"]["room"], "tls");
}

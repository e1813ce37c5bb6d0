//! Who may use the admin API, and how it serves: the bearer token, the Host
//! and Origin checks, JSON-only state changes, keep-alive, chunked bodies,
//! a slow client beside a fast one, and the refusal to start exposed
//! without a token.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

const TOKEN: &str = "admin-test-token-0123456789";

/// A response: status, lower-cased head lines, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: Vec<String>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}:");
        self.head
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::trim)
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the admin port");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Reads one response (with a `Content-Length`) off `s`, leaving the
/// connection usable for the next.
fn read_answer(s: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        // read_exact retries EINTR; EOF here is a closed connection.
        if let Err(e) = s.read_exact(&mut byte) {
            panic!("{e} mid-head: {:?}", String::from_utf8_lossy(&raw));
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).expect("ASCII head");
    let mut lines = head.trim_end().split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let head: Vec<String> = lines.map(|l| l.to_ascii_lowercase()).collect();
    let length: usize = match head.iter().find_map(|l| l.strip_prefix("content-length:")) {
        Some(v) => v.trim().parse().expect("a Content-Length number"),
        None if status == 204 => 0,
        None => panic!("no Content-Length in {head:?}"),
    };
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).expect("read the response body");
    Answer {
        status,
        head,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

/// Sends `headers` (one per line, without the request line) and `body`.
fn send(gw: &Gateway, method: &str, path: &str, headers: &[&str], body: &str) -> Answer {
    let mut s = connect(gw.admin);
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    read_answer(&mut s)
}

fn host(gw: &Gateway) -> String {
    format!("Host: {}", gw.admin)
}

driver_tests!(
    cross_origin_push_is_refused,
    token_is_required_when_configured,
    wrong_host_is_refused,
    state_changes_need_json,
    keep_alive_serves_several_requests,
    slow_client_does_not_delay_another,
    chunked_push_body_works,
    exposed_admin_without_token_does_not_start,
);

fn cross_origin_push_is_refused(driver: Driver) {
    let config = std::env::temp_dir().join(format!(
        "gateway-admin-origins-{}-{}.toml",
        std::process::id(),
        driver.name()
    ));
    std::fs::write(
        &config,
        "[admin]\norigins = [\"https://ops.example.com\"]\n",
    )
    .unwrap();
    let gw = Gateway::start(driver, &["--config", config.to_str().unwrap()]);
    std::fs::remove_file(&config).unwrap();
    let mut alice = gw.connect(TCP, "alice", "phone");
    let push = |origin: &str, text: &str| {
        let body = format!(r#"{{"user":"alice","text":"{text}"}}"#);
        let o = format!("Origin: {origin}");
        let headers = [host(&gw), o, "Content-Type: application/json".into()];
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        send(&gw, "POST", "/push", &headers, &body)
    };
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        let r = push(origin, "evil");
        assert_eq!(r.status, 403, "{origin}: {r:?}");
        assert!(r.body.contains("Origin not allowed"), "{r:?}");
        assert_eq!(r.header("access-control-allow-origin"), None, "{r:?}");
    }
    // A listed origin may push, and is told so (CORS).
    let r = push("https://ops.example.com", "good");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://ops.example.com")
    );
    // The refused pushes delivered nothing: the first delivery is the good one.
    assert_eq!(&alice.deliver().payload[..], b"good");
    // Its preflight is answered; another origin's is not.
    let pre = |origin: &str| {
        let o = format!("Origin: {origin}");
        let headers = [
            &host(&gw),
            o.as_str(),
            "Access-Control-Request-Method: POST",
        ];
        send(&gw, "OPTIONS", "/push", &headers, "")
    };
    let r = pre("https://ops.example.com");
    assert_eq!(r.status, 204, "{r:?}");
    assert!(r.header("access-control-allow-headers").is_some(), "{r:?}");
    assert_eq!(pre("https://evil.example").status, 403);
}

fn token_is_required_when_configured(driver: Driver) {
    let gw = Gateway::start(driver, &["--admin-token", TOKEN]);
    let h = host(&gw);
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let r = send(&gw, "GET", "/metrics", &[&h], "");
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("bearer"), "{r:?}");
    let wrong = format!("Authorization: Bearer {TOKEN}x");
    assert_eq!(send(&gw, "GET", "/metrics", &[&h, &wrong], "").status, 401);
    let basic = "Authorization: Basic YWRtaW46YWRtaW4=";
    assert_eq!(send(&gw, "GET", "/metrics", &[&h, basic], "").status, 401);
    let r = send(&gw, "GET", "/metrics", &[&h, &bearer], "");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        metric(&r.body, "gateway_frames_in_total").is_some(),
        "{r:?}"
    );
    // Unknown paths and state changes are behind the token too.
    assert_eq!(send(&gw, "GET", "/nope", &[&h], "").status, 401);
    assert_eq!(send(&gw, "POST", "/drain", &[&h], "").status, 401);
    // Health needs none (probes), and the node is not draining.
    let r = send(&gw, "GET", "/healthz", &[&h], "");
    assert_eq!((r.status, r.body.trim()), (200, "ok"), "{r:?}");
    let r = send(&gw, "POST", "/kick/nobody", &[&h, &bearer], "");
    assert_eq!((r.status, r.body.trim()), (200, r#"{"kicked":0}"#), "{r:?}");
}

fn wrong_host_is_refused(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let port = gw.admin.port();
    for bad in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("localhost:{}", port.wrapping_add(1)),
    ] {
        let r = send(&gw, "GET", "/metrics", &[&format!("Host: {bad}")], "");
        assert_eq!(r.status, 403, "{bad}: {r:?}");
        assert!(r.body.contains("Host not allowed"), "{r:?}");
    }
    let r = send(
        &gw,
        "GET",
        "/healthz",
        &[&format!("Host: rebound.example:{port}")],
        "",
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = send(&gw, "GET", "/metrics", &[], "");
    assert_eq!(r.status, 400, "no Host: {r:?}");
    for ok in [format!("localhost:{port}"), gw.admin.to_string()] {
        let r = send(&gw, "GET", "/metrics", &[&format!("Host: {ok}")], "");
        assert_eq!(r.status, 200, "{ok}: {r:?}");
    }
}

fn state_changes_need_json(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut alice = gw.connect(TCP, "alice", "phone");
    let h = host(&gw);
    let body = r#"{"user":"alice","text":"plain"}"#;
    for ct in [
        Some("Content-Type: text/plain"),
        Some("Content-Type: application/x-www-form-urlencoded"),
        None,
    ] {
        let headers: Vec<&str> = [Some(h.as_str()), ct].into_iter().flatten().collect();
        let r = send(&gw, "POST", "/push", &headers, body);
        assert_eq!(r.status, 415, "{ct:?}: {r:?}");
    }
    let form = "Content-Type: application/x-www-form-urlencoded";
    assert_eq!(send(&gw, "POST", "/drain", &[&h, form], "a=b").status, 415);
    assert_eq!(send(&gw, "POST", "/drain", &[&h], "x").status, 415);
    assert_eq!(
        send(&gw, "POST", "/kick/alice", &[&h, form], "").status,
        415
    );
    // None of them drained the node or kicked alice.
    assert_eq!(send(&gw, "GET", "/healthz", &[&h], "").status, 200);
    let json = "Content-Type: application/json; charset=utf-8";
    let r = send(
        &gw,
        "POST",
        "/push",
        &[&h, json],
        r#"{"user":"alice","text":"json"}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(&alice.deliver().payload[..], b"json");
}

fn keep_alive_serves_several_requests(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut s = connect(gw.admin);
    let h = host(&gw);
    let body = r#"{"user":"nobody","text":"x"}"#;
    let requests = [
        format!("GET /healthz HTTP/1.1\r\n{h}\r\n\r\n"),
        format!("GET /metrics HTTP/1.1\r\n{h}\r\n\r\n"),
        format!(
            "POST /push HTTP/1.1\r\n{h}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        format!("GET /presence/nobody HTTP/1.1\r\n{h}\r\n\r\n"),
    ];
    for (i, req) in requests.iter().enumerate() {
        s.write_all(req.as_bytes()).unwrap();
        let r = read_answer(&mut s);
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_ne!(r.header("connection"), Some("close"), "{r:?}");
    }
    // Pipelined: two requests in one write, two answers in order.
    let two = format!("{}{}", requests[0], requests[3]);
    s.write_all(two.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut s).body.trim(), "ok");
    let r = read_answer(&mut s);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(v["user"], "nobody", "{r:?}");
}

fn slow_client_does_not_delay_another(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let req = format!("GET /metrics HTTP/1.1\r\n{}\r\n\r\n", host(&gw));
    let hurry = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = mpsc::channel();
    let slow = {
        let (hurry, finished) = (hurry.clone(), finished.clone());
        let mut s = connect(gw.admin);
        std::thread::spawn(move || {
            let bytes = req.as_bytes();
            let mut sent = 0;
            while sent < bytes.len() && !hurry.load(Ordering::SeqCst) {
                s.write_all(&bytes[sent..=sent]).unwrap();
                sent += 1;
                if sent == 3 {
                    started_tx.send(()).unwrap();
                }
                // The slow client's pace is the point of the test.
                std::thread::sleep(Duration::from_millis(200));
            }
            s.write_all(&bytes[sent..]).unwrap();
            finished.store(true, Ordering::SeqCst);
            read_answer(&mut s)
        })
    };
    started
        .recv_timeout(IO_TIMEOUT)
        .expect("the slow client started");
    let r = send(&gw, "GET", "/healthz", &[&host(&gw)], "");
    assert_eq!((r.status, r.body.trim()), (200, "ok"), "{r:?}");
    assert!(
        !finished.load(Ordering::SeqCst),
        "healthz was answered only after the slow client's whole request"
    );
    hurry.store(true, Ordering::SeqCst);
    let r = slow.join().expect("the slow client");
    assert_eq!(r.status, 200, "{r:?}");
}

fn chunked_push_body_works(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut alice = gw.connect(TCP, "alice", "phone");
    let mut s = connect(gw.admin);
    let parts = [r#"{"user":"al"#, r#"ice","text":"#, r#""chunked"}"#];
    let mut req = format!(
        "POST /push HTTP/1.1\r\n{}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        host(&gw)
    );
    for p in parts {
        req.push_str(&format!("{:x}\r\n{p}\r\n", p.len()));
    }
    req.push_str("0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let r = read_answer(&mut s);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains(r#""accepted":true"#), "{r:?}");
    assert_eq!(&alice.deliver().payload[..], b"chunked");
}

fn exposed_admin_without_token_does_not_start(driver: Driver) {
    let out = run_cli(&[
        "--admin-listen",
        "0.0.0.0:0",
        "--ws-listen",
        "127.0.0.1:0",
        "--tcp-listen",
        "127.0.0.1:0",
        "--driver",
        driver.name(),
        "--jwt-secret",
        SECRET,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{:?}: {stderr}", out.status);
    assert!(out.stdout.is_empty(), "a ready line? {:?}", out.stdout);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr:?}");
    assert!(
        lines[0].contains("admin_listen") && lines[0].contains("admin.token"),
        "{stderr:?}"
    );
}

/// `GATEWAY_ADMIN_TOKEN` is read like `--admin-token`: a too-short one is
/// refused by validation, naming the key and never the value.
#[test]
fn admin_token_from_the_environment() {
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["token", "--user", "u", "--jwt-secret", SECRET])
        .env("GATEWAY_ADMIN_TOKEN", "short")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the gateway binary");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(IO_TIMEOUT)
        .expect("gateway token finished")
        .expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("admin.token"), "{stderr}");
    assert!(!stderr.contains("short"), "{stderr}");
}

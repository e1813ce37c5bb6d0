//! A minimal HTTP/1.1 client for the admin port (one request per connection,
//! `Connection: close`) and a Prometheus text reader.

use super::{Gateway, IO_TIMEOUT};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON; panics with the body when it is not JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: body {:?}", self.body))
    }
}

/// Sends one request and reads the whole response.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
    let mut s = TcpStream::connect(addr).expect("connect to the admin port");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let body = body.unwrap_or("");
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{content_type}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .expect("write the admin request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the admin response");
    parse_response(&raw).unwrap_or_else(|| {
        panic!(
            "bad HTTP response to {method} {path}: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let text = std::str::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()?
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Some(HttpResponse { status, body })
}

fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        s = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// The value of one series, e.g. `gateway_errors_total{code="BAD_FRAME"}`
/// or `gateway_frames_in_total` (which sums every label set of the name).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = key.split('{').next().unwrap_or(key);
        if key == series || (!series.contains('{') && name == series) {
            let v: f64 = value.parse().ok()?;
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

impl Gateway {
    pub fn get(&self, path: &str) -> HttpResponse {
        http(self.admin, "GET", path, None)
    }

    pub fn post(&self, path: &str, body: &str) -> HttpResponse {
        http(self.admin, "POST", path, Some(body))
    }

    /// The `/metrics` text.
    #[track_caller]
    pub fn metrics(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "{r:?}");
        r.body
    }

    /// Polls `/metrics` until `series` satisfies `ok`, with a hard deadline.
    #[track_caller]
    pub fn wait_metric(&self, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let text = self.metrics();
            match metric(&text, series) {
                Some(v) if ok(v) => return v,
                last if Instant::now() > deadline => {
                    panic!("{series} never reached the expected value (last {last:?})")
                }
                // Polling an HTTP endpoint for a condition: a short pause.
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// Reads one HTTP request from `s` (a test's own server, e.g. a backend
/// hook): its body once the head and `Content-Length` bytes are in; `None`
/// if the connection ends first.
pub fn read_request_body(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.unwrap_or(0),
        };
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Some(body[..len].to_owned());
            }
        }
    }
}

//! A minimal blocking HTTP/1.1 client for publishers and scrapes: one
//! request at a time, keep-alive when the server allows it, bodies by
//! `Content-Length` or to end of stream.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};

/// Largest response head or body accepted.
const MAX_RESPONSE: usize = 16 << 20;

/// A connection to one server, reopened when the server closes it.
pub struct Client {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    timeout: Duration,
}

impl Client {
    /// A client for `addr` (connects on first use) that waits up to 60 s
    /// for an answer.
    pub fn new(addr: SocketAddr) -> Self {
        Client::with_timeout(addr, Duration::from_secs(60))
    }

    /// A client for `addr` that waits up to `timeout` for an answer.
    pub fn with_timeout(addr: SocketAddr, timeout: Duration) -> Self {
        Client {
            addr,
            stream: None,
            timeout,
        }
    }

    /// Sends a request and returns the status and body. Retries once on a
    /// kept-alive connection the server had closed.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let reused = self.stream.is_some();
        match self.try_request(method, path, body) {
            Ok(r) => Ok(r),
            Err(_) if reused => {
                self.stream = None;
                self.try_request(method, path, body)
            }
            Err(e) => Err(e),
        }
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
                .with_context(|| format!("connecting to {}", self.addr))?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let Some(stream) = self.stream.as_mut() else {
            bail!("no stream")
        };
        // JSON bodies say so (the gateway's admin API refuses other types);
        // GATEWAY_ADMIN_TOKEN, when set, is sent as the admin bearer token.
        let content_type = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/json\r\n"
        };
        let auth = std::env::var("GATEWAY_ADMIN_TOKEN")
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{content_type}{auth}Content-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        stream.write_all(&req)?;
        let (status, body, keep) = read_response(stream)?;
        if !keep {
            self.stream = None;
        }
        Ok((status, body))
    }
}

fn read_response(stream: &mut TcpStream) -> anyhow::Result<(u16, Vec<u8>, bool)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = res.parse(&buf)? {
            let status = res.code.unwrap_or(0);
            let header = |name: &str| {
                res.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(|v| v.trim().to_ascii_lowercase())
            };
            let close = header("connection").is_some_and(|v| v == "close");
            let len = header("content-length").and_then(|v| v.parse::<usize>().ok());
            if header("transfer-encoding").is_some() {
                bail!("chunked responses are not supported");
            }
            let mut body = buf.split_off(head);
            match len {
                Some(len) if len <= MAX_RESPONSE => {
                    while body.len() < len {
                        let n = stream.read(&mut chunk)?;
                        if n == 0 {
                            bail!("connection closed mid-body");
                        }
                        body.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    }
                    body.truncate(len);
                    return Ok((status, body, !close));
                }
                Some(_) => bail!("response body too large"),
                None => {
                    stream.take(MAX_RESPONSE as u64).read_to_end(&mut body)?;
                    return Ok((status, body, false));
                }
            }
        }
        if buf.len() > 64 * 1024 {
            bail!("response head too large");
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            bail!("connection closed before the response head");
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

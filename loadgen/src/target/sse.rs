//! The gateway's fallback transport, client side: the SSE stream
//! (`GET /sse`) is the connection; frames the session writes (`out`: JSON
//! lines) are POSTed by the worker on connections of their own to the path
//! the stream's first event names (`Session::post_path`).
use proto::handshake;

use super::{gateway, Event, Fail, Session};

/// Largest response head accepted.
const MAX_HEAD: usize = 8192;

/// The stream's request: the token and resume point in the query.
pub fn request(token: &str, last_seq: u64) -> Vec<u8> {
    let seq = match last_seq {
        0 => String::new(),
        n => format!("&last_seq={n}"),
    };
    format!("GET /sse?token={token}{seq} HTTP/1.1\r\nHost: loadgen\r\n\r\n").into_bytes()
}

/// A POST of `body` (JSON frames, one per line) to `path`.
pub fn post_request(path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: loadgen\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The status of a complete response head at the front of `buf`.
pub fn status(buf: &[u8]) -> Result<Option<(usize, u16)>, Fail> {
    match handshake::parse_response(buf, MAX_HEAD) {
        Ok(Some((len, status, _, _))) => Ok(Some((len, status))),
        Ok(None) => Ok(None),
        Err(e) => Err(Fail::Protocol(e.to_string())),
    }
}

/// Checks the stream's response head: `Ok(Some(head_len))` after a 200.
pub fn response(buf: &[u8]) -> Result<Option<usize>, Fail> {
    match status(buf)? {
        Some((len, 200)) => Ok(Some(len)),
        Some((_, s)) => Err(Fail::Status(s)),
        None => Ok(None),
    }
}

/// Every complete event at the front of `buf`; returns the bytes used.
pub(super) fn feed(
    s: &mut Session,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<usize, Fail> {
    let mut used = 0;
    while let Some(end) = buf
        .get(used..)
        .and_then(|rest| rest.windows(2).position(|w| w == b"\n\n"))
    {
        let event = &buf[used..used + end];
        used += end + 2;
        let mut session = false;
        for line in event.split(|&b| b == b'\n') {
            if line == b"event: session" {
                session = true;
            } else if let Some(data) = line.strip_prefix(b"data: ") {
                if session {
                    let v: serde_json::Value = serde_json::from_slice(data)
                        .map_err(|e| Fail::Protocol(format!("session event: {e}")))?;
                    let path = v["post"]
                        .as_str()
                        .ok_or(Fail::Protocol("no post path".into()))?;
                    s.post = Some(path.into());
                } else {
                    gateway::on_message(s, data, out, on)?;
                }
            }
        }
    }
    Ok(used)
}

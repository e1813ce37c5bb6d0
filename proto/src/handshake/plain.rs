//! Plain HTTP on the client port: a `GET` without `Upgrade` (the routing
//! endpoint, `GET /route`), answered with one response and a close; and
//! the fallback transport's requests ([`parse_plain`]): the SSE stream
//! (`GET /sse`, answered with [`response_sse`]) and the `POST`s of client
//! frames (answered with [`response_status`]).

use super::server::{query_param, reason_phrase};
use super::{bearer, complete, has_token, header, window, HandshakeError, MAX_HEADERS};

/// A plain HTTP/1.1 request head (no upgrade) with what the fallback
/// transport reads from it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlainRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The percent-decoded `token` query parameter.
    pub query_token: Option<String>,
    /// The token of an `Authorization: Bearer` header.
    pub bearer: Option<String>,
    /// The `last_seq` query parameter, else the `Last-Event-ID` header (an
    /// EventSource's own reconnect), else 0.
    pub last_seq: u64,
    /// The `Origin` header.
    pub origin: Option<String>,
    /// The `Content-Length` (0 when absent).
    pub content_length: usize,
    /// `Transfer-Encoding` was given (a chunked body: not accepted).
    pub chunked: bool,
}

/// Parses a plain (non-upgrade) request head at the front of `buf`,
/// looking at no more than `max_len` bytes: `Ok(None)` while incomplete,
/// else the head's length and the request. The body, if any, follows.
pub fn parse_plain(
    buf: &[u8],
    max_len: usize,
) -> Result<Option<(usize, PlainRequest)>, HandshakeError> {
    let window = window(buf, max_len);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Some(head_len) = complete(req.parse(window), window.len(), max_len)? else {
        return Ok(None);
    };
    if req.version != Some(1) {
        return Err(HandshakeError::BadHttpVersion);
    }
    let target = req.path.unwrap_or_default();
    if !target.starts_with('/') {
        return Err(HandshakeError::BadTarget);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = req.headers;
    let number = |v: &str| {
        let v = v.trim();
        match v.bytes().all(|b| b.is_ascii_digit()) {
            true => v.parse::<u64>().map_err(|_| HandshakeError::BadQuery),
            false => Err(HandshakeError::BadQuery),
        }
    };
    let last_seq = match (
        query_param(query, "last_seq")?,
        header(headers, "last-event-id")?,
    ) {
        (Some(v), _) => number(&v)?,
        (None, Some(v)) if !v.is_empty() => number(v)?,
        _ => 0,
    };
    let content_length = match header(headers, "content-length")? {
        Some(v) => usize::try_from(number(v)?).map_err(|_| HandshakeError::BadQuery)?,
        None => 0,
    };
    let bearer = bearer(headers)?;
    Ok(Some((
        head_len,
        PlainRequest {
            method: req.method.unwrap_or_default().to_owned(),
            path: path.to_owned(),
            query_token: query_param(query, "token")?,
            bearer,
            last_seq,
            origin: header(headers, "origin")?.map(str::to_owned),
            content_length,
            chunked: header(headers, "transfer-encoding")?.is_some(),
        },
    )))
}

/// The head of an SSE stream (`text/event-stream`, no length: the stream
/// ends when the connection closes), with `Access-Control-Allow-Origin`
/// when given.
pub fn response_sse(allow_origin: Option<&str>) -> Vec<u8> {
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\n\
         Content-Type: text/event-stream\r\n\
         Cache-Control: no-cache, no-store\r\n\
         X-Accel-Buffering: no\r\n\
         Connection: close\r\n",
    );
    cors(&mut out, allow_origin);
    out.push_str("\r\n");
    out.into_bytes()
}

/// A complete response with `status`, a `text/plain` body (none for 204)
/// and `Access-Control-Allow-Origin` when given; the connection closes
/// after it.
pub fn response_status(status: u16, allow_origin: Option<&str>, body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    if status != 204 {
        out.push_str(&format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    out.push_str("Cache-Control: no-store\r\nConnection: close\r\n");
    cors(&mut out, allow_origin);
    out.push_str("\r\n");
    if status != 204 {
        out.push_str(body);
    }
    out.into_bytes()
}

fn cors(out: &mut String, allow_origin: Option<&str>) {
    if let Some(o) = allow_origin {
        out.push_str("Access-Control-Allow-Origin: ");
        out.push_str(o);
        out.push_str("\r\n");
        if o != "*" {
            // The answer depends on the request's Origin.
            out.push_str("Vary: Origin\r\n");
        }
    }
}

/// The request target (path and query) of a complete `GET` request at the
/// front of `buf` that asks for no upgrade; `None` for anything else (an
/// upgrade, another method, an incomplete or malformed head), which the
/// upgrade parser then answers.
pub fn plain_get_target(buf: &[u8], max_len: usize) -> Option<String> {
    let window = window(buf, max_len);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    complete(req.parse(window), window.len(), max_len).ok()??;
    if req.method != Some("GET") || req.version != Some(1) {
        return None;
    }
    if has_token(req.headers, "upgrade", "websocket") {
        return None;
    }
    let target = req.path?;
    target.starts_with('/').then(|| target.to_owned())
}

/// A complete response with a JSON body; the connection closes after it.
pub fn response_json(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\n\
         Content-Type: application/json\r\n\
         Content-Length: {}\r\n\
         Cache-Control: no-store\r\n\
         Connection: close\r\n\r\n{body}",
        reason_phrase(status),
        body.len(),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_get_is_recognised_and_an_upgrade_is_not() {
        let get = b"GET /route?user=a HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            plain_get_target(get, 8192).as_deref(),
            Some("/route?user=a")
        );
        let up =
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(plain_get_target(up, 8192), None);
        assert_eq!(
            plain_get_target(b"GET /route HTTP/1.1\r\n", 8192),
            None,
            "incomplete"
        );
        assert_eq!(
            plain_get_target(b"POST /route HTTP/1.1\r\n\r\n", 8192),
            None
        );
        let r = String::from_utf8(response_json(200, "{}")).unwrap();
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n{}"),
            "{r}"
        );
        let post = b"POST /sse/n/1/k?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\
                     Origin: https://a\r\n\r\n{\"ping\":{}}\n";
        let (n, req) = parse_plain(post, 8192).unwrap().unwrap();
        assert_eq!(&post[n..], b"{\"ping\":{}}\n");
        assert_eq!(
            (req.method.as_str(), req.path.as_str(), req.content_length),
            ("POST", "/sse/n/1/k", 12)
        );
        assert_eq!(req.origin.as_deref(), Some("https://a"));
        let get = b"GET /sse?token=a%2Eb HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 41\r\n\r\n";
        let (_, req) = parse_plain(get, 8192).unwrap().unwrap();
        assert_eq!(
            (req.query_token.as_deref(), req.last_seq),
            (Some("a.b"), 41)
        );
        let both = b"GET /sse?last_seq=7 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 41\r\n\r\n";
        assert_eq!(parse_plain(both, 8192).unwrap().unwrap().1.last_seq, 7);
        let bad = b"GET /sse HTTP/1.1\r\nHost: x\r\nLast-Event-ID: x\r\n\r\n";
        assert!(parse_plain(bad, 8192).is_err());
        assert_eq!(parse_plain(b"GET /sse HTTP/1.1\r\n", 8192), Ok(None));
        let r = String::from_utf8(response_status(204, Some("*"), "")).unwrap();
        assert!(r.starts_with("HTTP/1.1 204 No Content\r\n"), "{r}");
        assert!(r.contains("Access-Control-Allow-Origin: *\r\n") && r.ends_with("\r\n\r\n"));
        let r = String::from_utf8(response_sse(None)).unwrap();
        assert!(r.contains("Content-Type: text/event-stream\r\n") && !r.contains("Length"));
    }
}

//! The server side of the handshake: parse and validate the client's upgrade
//! request, and write the `101 Switching Protocols` or error response.
//!
//! Invariants: a request is accepted only if it is `GET` over HTTP/1.1 with an
//! origin-form target, a `Host`, `Upgrade: websocket`, `Connection: upgrade`, a
//! `Sec-WebSocket-Key` that is the base64 of 16 bytes, and
//! `Sec-WebSocket-Version: 13`. Authentication is not checked here, only
//! extracted (query `token` or `Authorization: Bearer`).

use base64::Engine as _;

use super::{bearer, complete, has_token, header, window, HandshakeError, MAX_HEADERS};

/// A validated WebSocket upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The request path, without the query string.
    pub path: String,
    /// The percent-decoded value of the first `token` query parameter.
    pub query_token: Option<String>,
    /// The token of an `Authorization: Bearer <token>` header (scheme matched
    /// case-insensitively).
    pub bearer: Option<String>,
    /// The `Sec-WebSocket-Key` (trimmed), to answer with
    /// [`accept_key`](super::accept_key).
    pub key: String,
    /// The offered subprotocols, in the client's order of preference, from
    /// every `Sec-WebSocket-Protocol` header (comma-split, trimmed, non-empty).
    pub protocols: Vec<String>,
    /// Always true for a returned request: a version other than 13 is the
    /// error [`HandshakeError::BadVersion`]. Kept for API stability.
    pub version_ok: bool,
    /// The `Origin` header (browsers send it; checked against an allowlist
    /// against cross-site WebSocket hijacking).
    pub origin: Option<String>,
    /// The `last_seq` query parameter: the highest QoS 1 seq the client
    /// has (a resume point given with the upgrade). 0 when absent.
    pub last_seq: u64,
    /// The permessage-deflate agreement the server can make from the
    /// client's `Sec-WebSocket-Extensions` offers (RFC 7692), if any offer
    /// is acceptable; whether to use it is the server's choice.
    pub deflate: Option<crate::ws::extensions::Deflate>,
}

/// Parses the upgrade request at the front of `buf`, looking at no more than
/// `max_len` bytes.
///
/// Returns `Ok(None)` while the head is incomplete and could still complete
/// within `max_len`, or `Ok(Some((head_len, request)))`. Bytes after
/// `head_len` are the client's first WebSocket frames.
pub fn parse_request(
    buf: &[u8],
    max_len: usize,
) -> Result<Option<(usize, UpgradeRequest)>, HandshakeError> {
    let window = window(buf, max_len);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Some(head_len) = complete(req.parse(window), window.len(), max_len)? else {
        return Ok(None);
    };
    if req.method != Some("GET") {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if req.version != Some(1) {
        return Err(HandshakeError::BadHttpVersion);
    }
    let target = req.path.unwrap_or_default();
    if !target.starts_with('/') {
        return Err(HandshakeError::BadTarget);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query_token = query_param(query, "token")?;
    let last_seq = match query_param(query, "last_seq")? {
        Some(v) => v.parse().map_err(|_| HandshakeError::BadQuery)?,
        None => 0,
    };

    let headers = req.headers;
    if !has_token(headers, "upgrade", "websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !has_token(headers, "connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    if header(headers, "host")?.is_none_or(|h| h.trim().is_empty()) {
        return Err(HandshakeError::MissingHost);
    }
    let key = header(headers, "sec-websocket-key")?.ok_or(HandshakeError::MissingKey)?;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(nonce) if nonce.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }
    if header(headers, "sec-websocket-version")? != Some("13") {
        return Err(HandshakeError::BadVersion);
    }
    let bearer = bearer(headers)?;
    let origin = header(headers, "origin")?.map(|o| o.trim().to_owned());
    let mut protocols = Vec::new();
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
    {
        let v = std::str::from_utf8(h.value)
            .map_err(|_| HandshakeError::BadHeaderValue("sec-websocket-protocol"))?;
        protocols.extend(
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        );
    }
    let deflate = crate::ws::extensions::negotiate_deflate(
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
            .filter_map(|h| std::str::from_utf8(h.value).ok()),
    );
    Ok(Some((
        head_len,
        UpgradeRequest {
            deflate,
            path: path.to_owned(),
            query_token,
            bearer,
            key: key.to_owned(),
            protocols,
            version_ok: true,
            origin,
            last_seq,
        },
    )))
}

/// The percent-decoded value of the first `name` parameter of a query string.
pub(super) fn query_param(query: &str, name: &str) -> Result<Option<String>, HandshakeError> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return percent_decode(v).map(Some);
        }
    }
    Ok(None)
}

/// Decodes `%XX` escapes (`+` is left as is); the result must be UTF-8.
/// The one percent-decoder of the project (query tokens, admin paths).
pub fn percent_decode(s: &str) -> Result<String, HandshakeError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|&c| hex(c));
            let lo = bytes.get(i + 2).and_then(|&c| hex(c));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(HandshakeError::BadQuery);
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| HandshakeError::BadQuery)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The `101 Switching Protocols` response, with the chosen subprotocol and
/// the accepted extensions (a `Sec-WebSocket-Extensions` value) if any.
pub fn response_switching(
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(p) = protocol {
        out.push_str("Sec-WebSocket-Protocol: ");
        out.push_str(p);
        out.push_str("\r\n");
    }
    if let Some(e) = extensions {
        out.push_str("Sec-WebSocket-Extensions: ");
        out.push_str(e);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// An error response that closes the connection, with `reason` and a newline
/// as its `text/plain` body. 426 carries `Sec-WebSocket-Version: 13` and 405
/// `Allow: GET`.
pub fn response_error(status: u16, reason: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n",
        reason_phrase(status),
        reason.len() + 1,
    );
    match status {
        426 => out.push_str("Sec-WebSocket-Version: 13\r\n"),
        405 => out.push_str("Allow: GET\r\n"),
        _ => {}
    }
    out.push_str("\r\n");
    out.push_str(reason);
    out.push('\n');
    out.into_bytes()
}

/// The standard reason phrase of an HTTP status the gateway sends.
pub fn reason_phrase(status: u16) -> &'static str {
    #[allow(clippy::match_overlapping_arm)] // Specific phrases first, then by class.
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        400..=499 => "Client Error",
        500..=599 => "Server Error",
        _ => "Unknown",
    }
}

//! The client side of the handshake, for tests and the load generator: write
//! the upgrade request and parse the server's response head.
//!
//! Invariants: a `101` response is accepted only with `Upgrade: websocket` and
//! `Connection: upgrade`; checking `Sec-WebSocket-Accept` against
//! [`accept_key`](super::accept_key) of the key sent is the caller's job (it
//! alone knows the key).

use base64::Engine as _;

use super::{complete, has_token, header, window, HandshakeError, MAX_HEADERS};

/// A `Sec-WebSocket-Key` from 16 random bytes (the caller's randomness).
pub fn client_key(nonce: [u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(nonce)
}

/// The upgrade request for `ws://host/path_and_query`, offering `protocols`
/// in order of preference and optionally an `Authorization: Bearer` token.
pub fn client_request(
    host: &str,
    path_and_query: &str,
    key: &str,
    protocols: &[&str],
    bearer: Option<&str>,
) -> Vec<u8> {
    let mut out = format!(
        "GET {path_and_query} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n"
    );
    if !protocols.is_empty() {
        out.push_str("Sec-WebSocket-Protocol: ");
        out.push_str(&protocols.join(", "));
        out.push_str("\r\n");
    }
    if let Some(token) = bearer {
        out.push_str("Authorization: Bearer ");
        out.push_str(token);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Parses the response head at the front of `buf`, looking at no more than
/// `max_len` bytes.
///
/// Returns `Ok(None)` while incomplete, or
/// `Ok(Some((head_len, status, protocol, accept)))` with the
/// `Sec-WebSocket-Protocol` and `Sec-WebSocket-Accept` values if present.
/// After a `101`, the bytes after `head_len` are WebSocket frames; after any
/// other status they are the response body.
#[allow(clippy::type_complexity)]
pub fn parse_response(
    buf: &[u8],
    max_len: usize,
) -> Result<Option<(usize, u16, Option<String>, Option<String>)>, HandshakeError> {
    let window = window(buf, max_len);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let Some(head_len) = complete(res.parse(window), window.len(), max_len)? else {
        return Ok(None);
    };
    if res.version != Some(1) {
        return Err(HandshakeError::BadHttpVersion);
    }
    let status = res.code.unwrap_or_default();
    let headers = res.headers;
    if status == 101 {
        if !has_token(headers, "upgrade", "websocket") {
            return Err(HandshakeError::MissingUpgrade);
        }
        if !has_token(headers, "connection", "upgrade") {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
    }
    let protocol = header(headers, "sec-websocket-protocol")?.map(str::to_owned);
    let accept = header(headers, "sec-websocket-accept")?.map(str::to_owned);
    Ok(Some((head_len, status, protocol, accept)))
}

//! The WebSocket opening handshake (RFC 6455 section 4) over HTTP/1.1, sans
//! IO: parse a client's upgrade request ([`parse_request`]) and write the
//! server's answer ([`response_switching`], [`response_error`]); and the
//! client side ([`client_request`], [`parse_response`]) for tests and the load
//! generator.
//!
//! Invariants:
//! - A parser looks at no more than `max_len` bytes and answers "need more
//!   bytes" only while the head could still complete within `max_len`.
//! - At most [`MAX_HEADERS`] headers; header values we use must be UTF-8.
//! - Every rejection maps to one HTTP status ([`HandshakeError::status`]).

mod client;
mod plain;
mod server;

pub use client::{client_key, client_request, parse_response};
pub use plain::{
    parse_plain, plain_get_target, response_json, response_sse, response_status, PlainRequest,
};
pub use server::{
    parse_request, percent_decode, reason_phrase, response_error, response_switching,
    UpgradeRequest,
};

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// Most headers accepted in a request or response head.
pub const MAX_HEADERS: usize = 32;

/// The GUID appended to the key before hashing (RFC 6455 section 1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a handshake was rejected. Every variant is the client's (or, for
/// [`parse_response`], the server's) fault; retrying the same bytes cannot
/// succeed. [`HandshakeError::status`] is the HTTP status to answer with.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// The head did not complete within the allowed length.
    #[error("HTTP head exceeds {max} bytes")]
    TooLarge {
        /// The maximum head length.
        max: usize,
    },
    /// More than [`MAX_HEADERS`] headers.
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    /// The bytes are not an HTTP/1.x head.
    #[error("malformed HTTP head: {0}")]
    Malformed(httparse::Error),
    /// Not HTTP/1.1.
    #[error("HTTP version must be 1.1")]
    BadHttpVersion,
    /// The method is not GET.
    #[error("method must be GET")]
    MethodNotAllowed,
    /// The request target is not an origin-form path (`/...`).
    #[error("request target must start with '/'")]
    BadTarget,
    /// The query string has a malformed percent-escape or is not UTF-8.
    #[error("malformed query string")]
    BadQuery,
    /// A header we need is not valid UTF-8.
    #[error("header {0} is not valid UTF-8")]
    BadHeaderValue(&'static str),
    /// No `Upgrade: websocket` header.
    #[error("missing 'Upgrade: websocket'")]
    MissingUpgrade,
    /// No `Connection: upgrade` header.
    #[error("missing 'Connection: upgrade'")]
    MissingConnectionUpgrade,
    /// No `Host` header (RFC 6455 section 4.2.1, and RFC 7230 section 5.4).
    #[error("missing Host header")]
    MissingHost,
    /// No `Sec-WebSocket-Key` header.
    #[error("missing Sec-WebSocket-Key")]
    MissingKey,
    /// `Sec-WebSocket-Key` is not the base64 of 16 bytes.
    #[error("Sec-WebSocket-Key is not the base64 of 16 bytes")]
    BadKey,
    /// `Sec-WebSocket-Version` is missing or not 13.
    #[error("Sec-WebSocket-Version must be 13")]
    BadVersion,
}

impl HandshakeError {
    /// The HTTP status to answer with: 431 for oversized heads, 405 for the
    /// method, 426 (with `Sec-WebSocket-Version: 13`) for the version, 400
    /// otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } | Self::TooManyHeaders => 431,
            Self::MethodNotAllowed => 405,
            Self::BadVersion => 426,
            _ => 400,
        }
    }
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`:
/// base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The part of `buf` a parser may look at: its first `max_len` bytes.
fn window(buf: &[u8], max_len: usize) -> &[u8] {
    buf.get(..max_len).unwrap_or(buf)
}

/// Maps httparse's answer on a [`window`] of `window_len` bytes to the head
/// length, "need more bytes" (`None`), or an error: a head still partial
/// after `max_len` bytes is [`HandshakeError::TooLarge`].
fn complete(
    res: Result<httparse::Status<usize>, httparse::Error>,
    window_len: usize,
    max_len: usize,
) -> Result<Option<usize>, HandshakeError> {
    match res {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if window_len >= max_len => {
            Err(HandshakeError::TooLarge { max: max_len })
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HandshakeError::TooManyHeaders),
        Err(e) => Err(HandshakeError::Malformed(e)),
    }
}

/// Whether a comma-separated header token list contains `token`
/// (case-insensitive).
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The token of an `Authorization: Bearer <token>` header (the scheme
/// matched case-insensitively), if there is one.
fn bearer(headers: &[httparse::Header<'_>]) -> Result<Option<String>, HandshakeError> {
    Ok(match header(headers, "authorization")? {
        Some(v) => match v.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                Some(token.trim().to_owned()).filter(|t| !t.is_empty())
            }
            _ => None,
        },
        None => None,
    })
}

/// The first header called `name`, trimmed; an error if it is not UTF-8.
fn header<'h>(
    headers: &[httparse::Header<'h>],
    name: &'static str,
) -> Result<Option<&'h str>, HandshakeError> {
    match headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)) {
        None => Ok(None),
        Some(h) => std::str::from_utf8(h.value)
            .map(|v| Some(v.trim()))
            .map_err(|_| HandshakeError::BadHeaderValue(name)),
    }
}

#[cfg(test)]
mod tests;

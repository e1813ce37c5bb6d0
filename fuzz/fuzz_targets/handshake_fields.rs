//! The upgrade request the client builder writes, parsed by the server's
//! `parse_request` within the server's `max_handshake_bytes`: every field
//! the server acts on (`bearer`, `query_token`, `protocols`, `key`, `path`)
//! comes back exactly as the client put it.
#![no_main]

use gateway::config::Config;
use libfuzzer_sys::fuzz_target;
use proto::handshake::{client_key, client_request, parse_request};

/// Bytes of a JWT (base64url and dots).
fn token_char(b: u8) -> char {
    const SET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    SET[usize::from(b) % SET.len()] as char
}

/// Bytes of a subprotocol name (an RFC 7230 token without separators).
fn protocol_char(b: u8) -> char {
    const SET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789.+-";
    SET[usize::from(b) % SET.len()] as char
}

fuzz_target!(|data: &[u8]| {
    let max = Config::default().limits.max_handshake_bytes;
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if rest.len() < 16 {
        return;
    }
    let (nonce, rest) = rest.split_at(16);
    let key = client_key(nonce.try_into().unwrap());
    // `rest` = token bytes, then 0xff-separated protocol names.
    let mut parts = rest.split(|&b| b == 0xff);
    let token: String = parts
        .next()
        .unwrap_or_default()
        .iter()
        .map(|&b| token_char(b))
        .collect();
    let protocols: Vec<String> = parts
        .filter(|p| !p.is_empty())
        .map(|p| p.iter().map(|&b| protocol_char(b)).collect())
        .collect();
    if token.is_empty() {
        return;
    }
    let offered: Vec<&str> = protocols.iter().map(String::as_str).collect();
    let (in_query, in_header) = (flags & 1 != 0, flags & 2 != 0);
    let target = if in_query {
        format!("/ws?token={token}")
    } else {
        "/ws".to_owned()
    };
    let bearer = in_header.then_some(token.as_str());
    let req = client_request("127.0.0.1:8080", &target, &key, &offered, bearer);
    match parse_request(&req, max) {
        Ok(Some((n, r))) => {
            assert_eq!(n, req.len());
            assert_eq!(r.path, "/ws");
            assert_eq!(r.key, key);
            assert_eq!(r.protocols, protocols);
            assert_eq!(r.bearer.as_deref(), bearer);
            assert_eq!(r.query_token.as_deref(), in_query.then_some(token.as_str()));
        }
        Ok(None) => panic!("a complete request of {} bytes is incomplete", req.len()),
        Err(e) => assert!(req.len() > max, "{} bytes refused: {e:?}", req.len()),
    }
});

//! Plain HTTP on the client port: a `GET` without `Upgrade` (the routing
//! endpoint, `GET /route`), answered with one response and a close.

use super::server::reason_phrase;
use super::{complete, has_token, window, MAX_HEADERS};

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
    }
}

//! Tests of the handshake: RFC 6455 example, every split point, limits and
//! each rejection's status.

use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn request(extra: &str) -> String {
    format!(
        "GET /ws?x=1&token=a%2Eb%20c HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n\
         Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn parse(req: &str) -> Result<Option<(usize, UpgradeRequest)>, HandshakeError> {
    parse_request(req.as_bytes(), 4096)
}

#[test]
fn rfc_accept_key() {
    assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn parses_a_full_request() {
    let req = request(
        "Sec-WebSocket-Protocol: im.gateway.v1+json , chat\r\n\
         sec-websocket-protocol: im.gateway.v1+proto\r\nAuthorization: bEaReR  abc.def \r\n",
    );
    let (n, up) = parse(&req).unwrap().unwrap();
    assert_eq!(n, req.len());
    assert_eq!(
        up,
        UpgradeRequest {
            path: "/ws".into(),
            query_token: Some("a.b c".into()),
            bearer: Some("abc.def".into()),
            key: KEY.into(),
            protocols: vec![
                "im.gateway.v1+json".into(),
                "chat".into(),
                "im.gateway.v1+proto".into()
            ],
            version_ok: true,
            origin: None,
            last_seq: 0,
            deflate: None,
        }
    );
}

#[test]
fn extension_offers_across_headers_are_negotiated() {
    let req = request(
        "Sec-WebSocket-Extensions: x-unknown, permessage-deflate; server_max_window_bits=10\r\n\
         sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n",
    );
    let (_, up) = parse(&req).unwrap().unwrap();
    let d = up.deflate.unwrap();
    assert_eq!(d.client_window_bits, Some(9));
    // A bad offer is declined, never a failed upgrade.
    let req = request("Sec-WebSocket-Extensions: permessage-deflate; bogus\r\n");
    assert_eq!(parse(&req).unwrap().unwrap().1.deflate, None);
    let resp = response_switching("x", None, Some(&d.response()));
    let text = String::from_utf8(resp).unwrap();
    assert!(text.contains(
        "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
         client_max_window_bits=9\r\n"
    ));
}

#[test]
fn need_more_at_every_split_and_trailing_frames_kept() {
    let req = request("");
    let mut with_frame = req.clone().into_bytes();
    with_frame.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
    for cut in 0..req.len() {
        assert_eq!(
            parse_request(&with_frame[..cut], 4096),
            Ok(None),
            "cut {cut}"
        );
    }
    let (n, up) = parse_request(&with_frame, 4096).unwrap().unwrap();
    assert_eq!(n, req.len());
    assert_eq!((up.query_token, up.bearer), (Some("a.b c".into()), None));
}

#[test]
fn head_limit() {
    let req = request("");
    let max = req.len();
    assert!(parse_request(req.as_bytes(), max).unwrap().is_some());
    let err = parse_request(req.as_bytes(), max - 1).unwrap_err();
    assert_eq!(err, HandshakeError::TooLarge { max: max - 1 });
    assert_eq!(err.status(), 431);
    assert_eq!(parse_request(&req.as_bytes()[..max - 2], max - 1), Ok(None));
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let err = parse(&request(&many)).unwrap_err();
    assert_eq!(
        (err.clone(), err.status()),
        (HandshakeError::TooManyHeaders, 431)
    );
}

#[test]
fn rejections_and_statuses() {
    let ok = request("");
    let cases: [(String, HandshakeError, u16); 10] = [
        (
            ok.replacen("GET", "POST", 1),
            HandshakeError::MethodNotAllowed,
            405,
        ),
        (
            ok.replace("HTTP/1.1", "HTTP/1.0"),
            HandshakeError::BadHttpVersion,
            400,
        ),
        (
            ok.replace("Version: 13", "Version: 8"),
            HandshakeError::BadVersion,
            426,
        ),
        (
            ok.replace("Upgrade: websocket", "Upgrade: h2c"),
            HandshakeError::MissingUpgrade,
            400,
        ),
        (
            ok.replace("keep-alive, Upgrade", "keep-alive"),
            HandshakeError::MissingConnectionUpgrade,
            400,
        ),
        (
            ok.replace("Sec-WebSocket-Key", "X-Key"),
            HandshakeError::MissingKey,
            400,
        ),
        (
            ok.replace("Host:", "X-Host:"),
            HandshakeError::MissingHost,
            400,
        ),
        (ok.replace(KEY, "c2hvcnQ="), HandshakeError::BadKey, 400),
        (
            ok.replace("token=a%2E", "token=a%zz"),
            HandshakeError::BadQuery,
            400,
        ),
        (ok.replace("/ws?", "ws?"), HandshakeError::BadTarget, 400),
    ];
    for (req, err, status) in cases {
        assert_eq!(parse(&req), Err(err.clone()), "{req}");
        assert_eq!(err.status(), status);
    }
    assert!(matches!(
        parse("GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
        Err(HandshakeError::Malformed(_))
    ));
    assert!(matches!(
        parse("\x16\x03\x01\x02\0"),
        Err(HandshakeError::Malformed(_))
    ));
    let missing_version = ok.replace("Sec-WebSocket-Version: 13\r\n", "");
    assert_eq!(parse(&missing_version), Err(HandshakeError::BadVersion));
}

#[test]
fn non_bearer_authorization_is_ignored() {
    let (_, up) = parse(&request("Authorization: Basic Zm9vOmJhcg==\r\n"))
        .unwrap()
        .unwrap();
    assert_eq!(up.bearer, None);
    let (_, up) = parse(&request("").replace("?x=1&token=a%2Eb%20c", ""))
        .unwrap()
        .unwrap();
    assert_eq!((up.path.as_str(), up.query_token), ("/ws", None));
}

#[test]
fn switching_response_roundtrips_through_the_client_parser() {
    let resp = response_switching(&accept_key(KEY), Some("im.gateway.v1+proto"), None);
    let text = std::str::from_utf8(&resp).unwrap();
    assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(text.ends_with("\r\n\r\n"));
    for cut in 0..resp.len() {
        assert_eq!(parse_response(&resp[..cut], 1024), Ok(None));
    }
    let parsed = parse_response(&resp, 1024).unwrap().unwrap();
    assert_eq!(
        parsed,
        (
            resp.len(),
            101,
            Some("im.gateway.v1+proto".into()),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into())
        )
    );
    let bare = response_switching("x", None, None);
    assert_eq!(parse_response(&bare, 1024).unwrap().unwrap().2, None);
    let bad = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(
        parse_response(bad, 1024),
        Err(HandshakeError::MissingUpgrade)
    );
}

#[test]
fn error_responses() {
    let resp = response_error(401, "bad token");
    let text = String::from_utf8(resp.clone()).unwrap();
    assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
    assert!(text.contains("Content-Length: 10\r\n"));
    assert!(text.contains("Connection: close\r\n"));
    assert!(text.ends_with("\r\n\r\nbad token\n"));
    let (n, status, _, _) = parse_response(&resp, 1024).unwrap().unwrap();
    assert_eq!((status, resp.len() - n), (401, 10));
    let upgrade = String::from_utf8(response_error(426, "v")).unwrap();
    assert!(upgrade.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    assert!(upgrade.contains("Sec-WebSocket-Version: 13\r\n"));
    assert!(String::from_utf8(response_error(431, ""))
        .unwrap()
        .contains("431 Request Header"));
    assert_eq!(reason_phrase(418), "Client Error");
}

#[test]
fn client_request_is_accepted_by_the_server_parser() {
    let key = client_key(*b"0123456789abcdef");
    let req = client_request(
        "gw:8080",
        "/ws?token=t",
        &key,
        &["im.gateway.v1+proto", "im.gateway.v1+json"],
        Some("jwt"),
    );
    let (n, up) = parse_request(&req, 4096).unwrap().unwrap();
    assert_eq!(n, req.len());
    assert_eq!(up.key, key);
    assert_eq!(up.protocols, ["im.gateway.v1+proto", "im.gateway.v1+json"]);
    assert_eq!(
        (up.query_token.as_deref(), up.bearer.as_deref()),
        (Some("t"), Some("jwt"))
    );
    let plain = client_request("gw", "/", &key, &[], None);
    let (_, up) = parse_request(&plain, 4096).unwrap().unwrap();
    assert!(up.protocols.is_empty() && up.bearer.is_none());
}

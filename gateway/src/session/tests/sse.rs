//! The fallback transport on a session: the stream's head and session
//! event, frames posted to it taken as WebSocket messages are, and a POST's
//! session handing its body on and answering once told.
use super::*;

/// The POST key of connection `id` (the harness's secret).
fn key(id: u64) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"test");
    let tag = ring::hmac::sign(&k, &id.to_be_bytes());
    tag.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn get(h: &mut Harness, target: &str) -> String {
    h.feed(format!("GET {target} HTTP/1.1\r\nHost: gw\r\nOrigin: https://a\r\n\r\n").as_bytes());
    text(&h.output())
}

#[test]
fn a_stream_opens_with_its_post_path_then_frames_as_events() {
    let mut h = Harness::new(Transport::WebSocket);
    let token = h.token("alice", None, 3600);
    let out = get(&mut h, &format!("/sse?token={token}&last_seq=4"));
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("Access-Control-Allow-Origin: *\r\n"), "{out}");
    let post = format!("/sse/test-node/7/{}", key(7));
    assert!(out.contains(&format!(
        "event: session\ndata: {{\"post\":\"{post}\"}}\n\n"
    )));
    assert!(
        out.contains("\ndata: {\"authOk\":{\"user\":\"alice\""),
        "{out}"
    );
    assert_eq!(h.s.wire(), Wire::Sse);
    let routes = h.routes();
    assert!(matches!(routes[0], Route::SseOpened));
    assert!(matches!(
        routes.last(),
        Some(Route::Read { after: Some(4), .. })
    ));
    // What the client writes on the stream's own connection is ignored.
    h.feed(b"anything");
    assert!(h.output().is_empty() && !h.s.is_closing());
}

#[test]
fn posted_frames_are_taken_in_order_and_a_bad_one_is_fatal() {
    let mut h = Harness::new(Transport::WebSocket);
    get(&mut h, "/sse");
    assert_eq!(h.s.phase(), Phase::Auth);
    let auth = format!(
        "{{\"auth\":{{\"token\":\"{}\"}}}}\n\n{{\"ping\":{{\"nonce\":\"3\"}}}}\r\n",
        h.token("bob", None, 3600)
    );
    let status = h.call(|s, cx| s.handle_post(cx, auth.as_bytes()));
    assert_eq!(status, 204);
    let out = text(&h.output());
    let auth_ok = out.find("\"authOk\"").unwrap();
    assert!(
        auth_ok < out.find("{\"pong\":{\"nonce\":\"3\"}}").unwrap(),
        "{out}"
    );
    let status = h.call(|s, cx| s.handle_post(cx, b"{\"nope\":1}\n{\"ping\":{}}"));
    assert_eq!(status, 204);
    let out = text(&h.output());
    assert!(
        out.contains("\"fatal\":true") && !out.contains("pong"),
        "{out}"
    );
    assert!(h.s.is_closing());
    assert_eq!(h.call(|s, cx| s.handle_post(cx, b"{\"ping\":{}}")), 404);
    // A WebSocket session takes no posts.
    let mut ws = Harness::open(Transport::WebSocket);
    assert_eq!(ws.call(|s, cx| s.handle_post(cx, b"{\"ping\":{}}")), 404);
}

#[test]
fn a_post_hands_its_body_on_and_answers_when_told() {
    let mut h = Harness::new(Transport::WebSocket);
    let body = "{\"ping\":{}}\n";
    let req = format!(
        "POST /sse/test-node/99/{} HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{body}",
        key(99),
        body.len()
    );
    let (head, tail) = req.split_at(req.len() - 4);
    h.feed(head.as_bytes());
    assert!(h.routes().is_empty(), "waits for the whole body");
    h.feed(tail.as_bytes());
    match &h.routes()[..] {
        [Route::SsePost {
            conn_id: 99,
            body: b,
        }] => assert_eq!(b, body.as_bytes()),
        other => panic!("{other:?}"),
    }
    h.feed(b"more bytes are ignored");
    assert!(h.output().is_empty());
    h.deliver(Delivery::PostDone(204));
    let out = text(&h.output());
    assert!(out.starts_with("HTTP/1.1 204 No Content\r\n"), "{out}");
    assert!(h.s.is_closing());
}

#[test]
fn misdirected_oversized_and_malformed_posts_are_refused() {
    let big = Limits::default().max_frame_bytes + 1;
    let (k1, wrong) = (key(1), key(2));
    for (req, status) in [
        (
            format!("POST /sse/other-node/1/{k1} HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            "421",
        ),
        (
            format!("POST /sse/test-node/1/{k1} HTTP/1.1\r\nContent-Length: {big}\r\n\r\n"),
            "413",
        ),
        (
            "POST /sse/test-node/x/y HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_owned(),
            "404",
        ),
        (
            format!("POST /sse/test-node/1/{k1} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "411",
        ),
        // A wrong key: refused from the head, its body never waited for.
        (
            format!("POST /sse/test-node/1/{wrong} HTTP/1.1\r\nContent-Length: 60000\r\n\r\n"),
            "404",
        ),
        ("GET /sse?token=bad HTTP/1.1\r\n\r\n".to_owned(), "401"),
    ] {
        let mut h = Harness::new(Transport::WebSocket);
        h.feed(req.as_bytes());
        let out = text(&h.output());
        assert!(
            out.starts_with(&format!("HTTP/1.1 {status} ")),
            "{req}: {out}"
        );
        assert!(h.routes().is_empty() && h.s.is_closing(), "{req}");
    }
}

#[test]
fn before_auth_a_posted_frame_is_small() {
    let mut h = Harness::new(Transport::WebSocket);
    get(&mut h, "/sse");
    let big = format!("{{\"ping\":{{\"nonce\":\"{}\"}}}}", "1".repeat(5000));
    assert_eq!(h.call(|s, cx| s.handle_post(cx, big.as_bytes())), 204);
    let out = text(&h.output());
    assert!(out.contains("FRAME_TOO_LARGE"), "{out}");
    assert!(h.s.is_closing());
}

#[test]
fn a_post_waiting_for_its_answer_is_not_timed_out() {
    let mut h = Harness::new(Transport::WebSocket);
    let body = "{\"ping\":{}}\n";
    let req = format!(
        "POST /sse/test-node/5/{} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        key(5),
        body.len()
    );
    h.feed(req.as_bytes());
    assert_eq!(h.routes().len(), 1);
    h.advance(Duration::from_millis(3 * h.env.limits.handshake_timeout_ms));
    assert!(h.output().is_empty() && !h.s.is_closing(), "no 408");
    h.deliver(Delivery::PostDone(204));
    assert!(text(&h.output()).starts_with("HTTP/1.1 204 "));
}

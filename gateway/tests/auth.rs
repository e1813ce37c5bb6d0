//! Authentication: the three places a WebSocket client may put its token, the
//! raw TCP Auth frame, the JSON subprotocol's wire format, rejections (HTTP
//! 401 at the upgrade, UNAUTHENTICATED after it) and `gateway token`.

mod common;

use common::*;
use serde_json::{json, Value};
use std::net::TcpStream;
use tungstenite::{Message, WebSocket};

driver_tests!(
    bearer_header,
    query_parameter,
    first_frame_ws,
    first_frame_tcp,
    json_wire_format,
    bad_tokens_at_upgrade_are_401,
    bad_token_in_first_frame,
    cli_token_is_accepted,
    far_future_expiry_keeps_the_shard_alive,
);

fn header(resp: &tungstenite::handshake::client::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn bearer_header(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let exp = now_secs() + 3600;
    let t = token_with(
        SECRET,
        &json!({"sub": "alice", "device": "phone", "exp": exp}),
    );
    let bearer = format!("Bearer {t}");
    let (ws, resp) = upgrade(gw.ws, "/ws", &[("authorization", &bearer)]).expect("upgrade");
    assert_eq!(resp.status(), 101);
    assert_eq!(
        header(&resp, "sec-websocket-protocol"),
        None,
        "none was offered"
    );
    // No subprotocol: binary proto frames.
    let mut c = Client::from_ws(ws, Encoding::Proto);
    let a = c.auth_ok();
    gw.check_auth(&a, "alice", "phone");
    assert_eq!(a.expires_at, exp);
    c.ping(7);
    let other = gw.connect(WS, "alice", "phone");
    assert_ne!(other.auth.conn_id, a.conn_id, "connection ids are unique");
}

fn query_parameter(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let target = format!("/ws?token={}", user_token("bob", "browser"));
    let offer = [("sec-websocket-protocol", SUBPROTOCOL_PROTO)];
    let (ws, resp) = upgrade(gw.ws, &target, &offer).expect("upgrade");
    assert_eq!(
        header(&resp, "sec-websocket-protocol").as_deref(),
        Some(SUBPROTOCOL_PROTO)
    );
    let mut c = Client::from_ws(ws, Encoding::Proto);
    gw.check_auth(&c.auth_ok(), "bob", "browser");
    c.ping(u64::MAX);
}

fn first_frame_ws(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let (ws, _) = upgrade(gw.ws, "/ws", &[]).expect("upgrade");
    let mut c = Client::from_ws(ws, Encoding::Proto);
    // Auth.device overrides the token's device claim.
    c.send(&auth(&user_token("carol", "claimed"), "override"));
    gw.check_auth(&c.auth_ok(), "carol", "override");
    c.ping(1);
}

fn first_frame_tcp(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut c = Client::from_tcp(TcpStream::connect(gw.tcp).unwrap());
    let t = token("dave", None, std::time::Duration::from_secs(60));
    c.send(&auth(&t, "laptop"));
    gw.check_auth(&c.auth_ok(), "dave", "laptop");
    c.ping(2);
}

/// A token that (almost) never expires must not overflow the expiry timer and
/// take its shard down: every shard keeps serving after such connections.
fn far_future_expiry_keeps_the_shard_alive(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let claims = serde_json::json!({ "sub": "eve", "exp": 10_000_000_000_000_000_000u64 });
    let t = token_with(SECRET, &claims);
    let mut clients = Vec::new();
    for shard in 0..gw.shards {
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        let mut c = loop {
            assert!(
                std::time::Instant::now() < deadline,
                "never got a connection on shard {shard}"
            );
            let mut c = Client::from_tcp(TcpStream::connect(gw.tcp).unwrap());
            c.send(&auth(&t, ""));
            let ok = c.auth_ok();
            if ok.shard == shard {
                break c;
            }
        };
        c.ping(u64::from(shard));
        clients.push(c);
    }
    gw.assert_shards_serve();
}

fn read_json(ws: &mut WebSocket<Socket>) -> Value {
    loop {
        match ws.read().expect("read a JSON frame") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON frame"),
            Message::Binary(b) => panic!("binary message on the JSON subprotocol: {b:?}"),
            _ => continue,
        }
    }
}

/// Hand-written JSON frames prove the canonical protobuf JSON mapping:
/// camelCase names, uint64 as strings, bytes as base64.
fn json_wire_format(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let offer = [("sec-websocket-protocol", SUBPROTOCOL_JSON)];
    let (mut ws, resp) = upgrade(gw.ws, "/ws", &offer).expect("upgrade");
    assert_eq!(
        header(&resp, "sec-websocket-protocol").as_deref(),
        Some(SUBPROTOCOL_JSON)
    );
    let exp = now_secs() + 3600;
    let t = token_with(SECRET, &json!({"sub": "erin", "exp": exp}));
    let send = |ws: &mut WebSocket<Socket>, v: Value| {
        ws.send(Message::text(v.to_string()))
            .expect("send a JSON frame")
    };
    send(&mut ws, json!({"auth": {"token": t, "device": "web"}}));
    let ok = read_json(&mut ws);
    assert_eq!(ok["authOk"]["user"], "erin", "{ok}");
    assert_eq!(ok["authOk"]["device"], "web", "{ok}");
    assert_eq!(ok["authOk"]["expiresAt"], exp.to_string(), "{ok}");
    assert!(
        ok["authOk"]["heartbeatMs"].as_u64().unwrap_or(0) > 0,
        "{ok}"
    );

    send(&mut ws, json!({"ping": {"nonce": "18446744073709551615"}}));
    assert_eq!(
        read_json(&mut ws),
        json!({"pong": {"nonce": "18446744073709551615"}})
    );

    send(
        &mut ws,
        json!({"send": {"user": "erin", "clientMsgId": "m1", "payload": "aGk="}}),
    );
    let (mut result, mut deliver) = (Value::Null, Value::Null);
    for _ in 0..2 {
        let v = read_json(&mut ws);
        if v.get("sendResult").is_some() {
            result = v["sendResult"].clone();
        } else {
            deliver = v["deliver"].clone();
        }
    }
    assert_eq!(result["clientMsgId"], "m1", "{result}");
    assert_eq!(result["accepted"], true, "{result}");
    assert!(
        result["msgId"].as_str().is_some_and(|s| !s.is_empty()),
        "{result}"
    );
    assert_eq!(deliver["from"], "erin", "{deliver}");
    assert_eq!(deliver["payload"], "aGk=", "{deliver}");
    assert_eq!(deliver["msgId"], result["msgId"], "{deliver}");
}

fn bad_tokens_at_upgrade_are_401(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let hour_ago = now_secs() - 3600;
    let in_hour = now_secs() + 3600;
    // Each with the stable reason the 401 body carries.
    let bad = [
        (
            token_with("another-secret", &json!({"sub": "mallory", "exp": in_hour})),
            "bad signature",
        ),
        (
            token_with(SECRET, &json!({"sub": "mallory", "exp": hour_ago})),
            "token expired",
        ),
        (
            token_with(SECRET, &json!({"exp": in_hour})),
            "missing sub claim",
        ),
        (
            token_with(SECRET, &json!({"sub": "mallory"})),
            "missing exp claim",
        ),
        ("not.a.jwt".to_owned(), "malformed token"),
    ];
    for (t, reason) in &bad {
        let bearer = format!("Bearer {t}");
        let by_header = upgrade(gw.ws, "/ws", &[("authorization", &bearer)]);
        let by_query = upgrade(gw.ws, &format!("/ws?token={t}"), &[]);
        for attempt in [by_header, by_query] {
            match attempt.map_err(|e| *e) {
                Err(tungstenite::Error::Http(resp)) => {
                    assert_eq!(resp.status(), 401, "token {t}");
                    let body = resp.body().clone().unwrap_or_default();
                    let body = String::from_utf8_lossy(&body);
                    assert_eq!(body, format!("{reason}\n"), "401 body for token {t}");
                }
                Err(e) => panic!("token {t}: expected HTTP 401, got {e}"),
                Ok(_) => panic!("token {t} was accepted"),
            }
        }
    }
    gw.assert_shards_serve();
}

fn bad_token_in_first_frame(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let t = token_with(
        "another-secret",
        &json!({"sub": "mallory", "exp": now_secs() + 60}),
    );
    let (ws, _) = upgrade(gw.ws, "/ws", &[]).expect("upgrade");
    let tcp = Client::from_tcp(TcpStream::connect(gw.tcp).unwrap());
    for mut c in [Client::from_ws(ws, Encoding::Proto), tcp] {
        c.send(&auth(&t, ""));
        assert_error(&c.error(), ErrorCode::Unauthenticated, true);
        c.expect_closed();
    }
    gw.assert_shards_serve();
}

fn cli_token_is_accepted(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let args = [
        "token", "--user", "frank", "--device", "tablet", "--ttl", "1h",
    ];
    let before = now_secs();
    let out = run_cli(&[&args[..], &["--jwt-secret", SECRET]].concat());
    let after = now_secs();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one token line: {stdout:?}");
    let mut c = Client::from_tcp(TcpStream::connect(gw.tcp).unwrap());
    c.send(&auth(lines[0].trim(), ""));
    let a = c.auth_ok();
    gw.check_auth(&a, "frank", "tablet");
    assert!(
        (before + 3600..=after + 3600).contains(&a.expires_at),
        "ttl 1h minted between {before} and {after}: {a:?}"
    );
}

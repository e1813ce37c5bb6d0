//! SIGHUP reloads the JWT key from the config file without stopping the
//! node: new connections need the new key, a live one stays; an invalid new
//! config is refused and the old key kept. The admin token rotates the
//! same way, from `admin.token_file`.

mod common;

use common::*;

driver_tests!(sighup_rotates_the_jwt_key, sighup_rotates_the_admin_token);

fn write_config(path: &std::path::Path, secret: &str) {
    std::fs::write(path, format!("[auth]\njwt_secret = \"{secret}\"\n")).unwrap();
}

fn token_for(secret: &str, user: &str) -> String {
    token_with(
        secret,
        &serde_json::json!({"sub": user, "exp": now_secs() + 600}),
    )
}

/// The HTTP status of an upgrade with `token` (101: accepted).
fn upgrade_status(gw: &Gateway, token: &str) -> u16 {
    status_of(
        gw.ws,
        &format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
    )
}

/// Sends `request` to `addr` and returns the status of the answer.
fn status_of(addr: std::net::SocketAddr, request: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

fn sighup_rotates_the_jwt_key(driver: Driver) {
    let dir = std::env::temp_dir().join(format!(
        "gateway-reload-{}-{}",
        std::process::id(),
        driver.name()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.toml");
    write_config(&path, "old-secret");
    let gw = Gateway::start_keyless(driver, &["--config", path.to_str().unwrap()]);
    let mut live = gw.connect_with(WS, &token_for("old-secret", "ann"), "ann", "");
    assert_eq!(upgrade_status(&gw, &token_for("new-secret", "x")), 401);

    write_config(&path, "new-secret");
    gw.signal(libc::SIGHUP);
    gw.wait_log("reloaded", 1);
    assert_eq!(
        upgrade_status(&gw, &token_for("old-secret", "x")),
        401,
        "old tokens refused"
    );
    assert_eq!(
        upgrade_status(&gw, &token_for("new-secret", "x")),
        101,
        "new ones accepted"
    );
    live.ping(1);

    // An invalid config is refused; the key in force stays (by signal,
    // and by the admin API, which says why).
    std::fs::write(&path, "[auth\n").unwrap();
    gw.signal(libc::SIGHUP);
    gw.wait_log("reload refused", 1);
    let r = gw.post("/reload", "");
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.json()["reloaded"], false);
    assert_eq!(upgrade_status(&gw, &token_for("new-secret", "y")), 101);
    live.ping(2);
    write_config(&path, "third-secret");
    assert_eq!(gw.post("/reload", "").status, 200);
    assert_eq!(upgrade_status(&gw, &token_for("third-secret", "z")), 101);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A JWKS file: tokens are verified by the key their `kid` names, and a
/// reload picks up a rotated set (the retired key refused, the new one
/// accepted).
#[test]
fn uring_a_jwks_rotates_keys_by_kid() {
    use base64::Engine as _;
    let b64 = |s: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let dir = std::env::temp_dir().join(format!("gateway-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let set = dir.join("keys.json");
    let write_set = |kids: &[(&str, &[u8])]| {
        let keys: Vec<_> = kids
            .iter()
            .map(|(kid, k)| serde_json::json!({"kty": "oct", "kid": kid, "k": b64(k)}))
            .collect();
        std::fs::write(&set, serde_json::json!({ "keys": keys }).to_string()).unwrap();
    };
    let signed = |kid: &str, secret: &[u8]| {
        let h = jsonwebtoken::Header {
            kid: Some(kid.into()),
            ..Default::default()
        };
        let claims = serde_json::json!({"sub": "k", "exp": now_secs() + 600});
        jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
    };
    write_set(&[("k1", b"one"), ("k2", b"two")]);
    let gw = Gateway::start_keyless(Driver::Uring, &["--jwks-file", set.to_str().unwrap()]);
    assert_eq!(upgrade_status(&gw, &signed("k1", b"one")), 101);
    assert_eq!(upgrade_status(&gw, &signed("k2", b"two")), 101);
    assert_eq!(upgrade_status(&gw, &signed("k2", b"one")), 401);
    write_set(&[("k2", b"two"), ("k3", b"three")]);
    assert_eq!(gw.post("/reload", "").status, 200);
    assert_eq!(upgrade_status(&gw, &signed("k1", b"one")), 401, "retired");
    assert_eq!(upgrade_status(&gw, &signed("k3", b"three")), 101, "added");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The status of `GET /metrics` with `Authorization: Bearer <token>`.
fn metrics_status(gw: &Gateway, token: &str) -> u16 {
    status_of(
        gw.admin,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n",
            gw.admin.port()
        ),
    )
}

fn sighup_rotates_the_admin_token(driver: Driver) {
    let dir = std::env::temp_dir().join(format!(
        "gateway-reload-token-{}-{}",
        std::process::id(),
        driver.name()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (config, file) = (dir.join("gateway.toml"), dir.join("admin-token"));
    std::fs::write(&config, "[admin]\ntoken_file = \"admin-token\"\n").unwrap();
    let (old, new) = ("old-admin-token-0123456789", "new-admin-token-0123456789");
    std::fs::write(&file, format!("{old}\n")).unwrap();
    let gw = Gateway::start(driver, &["--config", config.to_str().unwrap()]);
    assert_eq!(metrics_status(&gw, old), 200);
    assert_eq!(metrics_status(&gw, new), 401);

    std::fs::write(&file, format!("{new}\n")).unwrap();
    gw.signal(libc::SIGHUP);
    gw.wait_log("reloaded", 1);
    assert_eq!(metrics_status(&gw, old), 401, "the old token is retired");
    assert_eq!(metrics_status(&gw, new), 200, "the new one is in force");

    // A token that breaks the rules (too short): refused, the new one stays.
    std::fs::write(&file, "short\n").unwrap();
    gw.signal(libc::SIGHUP);
    gw.wait_log("reload refused", 1);
    assert_eq!(metrics_status(&gw, new), 200);
    assert_eq!(metrics_status(&gw, "short"), 401);
    let _ = std::fs::remove_dir_all(&dir);
}

//! RFC 6455 and the read path's abuse limits over real sockets (the full
//! table of violations is a session unit test: `session::tests::conformance`):
//! an upgrade without `Host` is 400; a protocol violation closes with 1002
//! and text that is not UTF-8 with 1007, on both drivers; a first frame
//! over the pre-auth limit is refused from its header.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;

driver_tests!(
    only_listed_browser_origins_may_upgrade,
    an_upgrade_without_host_is_400,
    violations_close_with_their_codes,
    a_first_frame_over_the_preauth_limit_is_refused,
);

fn an_upgrade_without_host_is_400(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut s = TcpStream::connect(gw.ws).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert!(out.contains("missing Host header"), "{out}");
}

/// The HTTP status of an upgrade with `Origin: origin` (none when `None`).
fn upgrade_with_origin(gw: &Gateway, origin: Option<&str>) -> u16 {
    let mut s = TcpStream::connect(gw.ws).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /ws?token={} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n",
        user_token("o", "d")
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

fn only_listed_browser_origins_may_upgrade(driver: Driver) {
    let dir = std::env::temp_dir().join(format!(
        "gateway-origins-{}-{}",
        std::process::id(),
        driver.name()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("g.toml");
    std::fs::write(&path, "[auth]\norigins = [\"https://chat.example.com\"]\n").unwrap();
    let gw = Gateway::start(driver, &["--config", path.to_str().unwrap()]);
    assert_eq!(
        upgrade_with_origin(&gw, Some("https://chat.example.com")),
        101
    );
    assert_eq!(upgrade_with_origin(&gw, Some("https://evil.example")), 403);
    assert_eq!(upgrade_with_origin(&gw, None), 101, "apps send no Origin");
    // Without a list, any origin.
    let open = Gateway::start(driver, &[]);
    assert_eq!(
        upgrade_with_origin(&open, Some("https://evil.example")),
        101
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An authenticated raw WebSocket on `subprotocol`, its AuthOk read.
fn raw_ws(gw: &Gateway, subprotocol: &str) -> TcpStream {
    let mut s = TcpStream::connect(gw.ws).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let token = user_token("raw", "d");
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {subprotocol}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    s
}

/// Reads until the server's close frame; its code.
fn close_code(s: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk) {
            // A signal came (EINTR): read again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.unwrap_or(0),
        };
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if buf.starts_with(b"HTTP/1.1") {
                buf.drain(..end + 4);
            }
        }
        while let Ok(Some(head)) =
            proto::ws::decode_frame(&mut buf, proto::ws::Role::Client, 1 << 20)
        {
            let used = head.header_len + head.payload_len;
            if head.opcode == proto::ws::Opcode::Close && head.payload_len >= 2 {
                return Some(u16::from_be_bytes([
                    buf[head.header_len],
                    buf[head.header_len + 1],
                ]));
            }
            buf.drain(..used);
        }
    }
}

fn violations_close_with_their_codes(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    for subprotocol in ["im.gateway.v1+proto", "im.gateway.v1+json"] {
        // An unmasked client frame: protocol error.
        let mut s = raw_ws(&gw, subprotocol);
        s.write_all(&[0x82, 0x01, 0x00]).unwrap();
        assert_eq!(close_code(&mut s), Some(1002), "{subprotocol}");
        // Text that is not UTF-8: invalid payload data.
        let mut s = raw_ws(&gw, subprotocol);
        s.write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28]).unwrap();
        assert_eq!(close_code(&mut s), Some(1007), "{subprotocol}");
        // RSV1 with no extension negotiated.
        let mut s = raw_ws(&gw, subprotocol);
        s.write_all(&[0xC2, 0x80, 0, 0, 0, 0]).unwrap();
        assert_eq!(close_code(&mut s), Some(1002), "{subprotocol}");
    }
    gw.assert_shards_serve();
}

fn a_first_frame_over_the_preauth_limit_is_refused(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut c = Client::from_tcp(TcpStream::connect(gw.tcp).unwrap());
    c.send_raw_tcp(&4097u32.to_be_bytes());
    assert_error(&c.error(), ErrorCode::FrameTooLarge, true);
    assert_eq!(c.expect_closed(), None);
    // The same frame size after Auth is fine.
    let mut c = gw.connect(TCP, "big", "d");
    let f = to_user("big", "b1", &[1u8; 4200]);
    c.send(&f);
    assert!(c.result_for("b1").accepted);
    assert_eq!(c.any_deliver().payload.len(), 4200);
}

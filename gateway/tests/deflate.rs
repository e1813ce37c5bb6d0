//! permessage-deflate (RFC 7692) with clients the project did not write and
//! over raw sockets: Python's `websockets` negotiates it (and keeps its
//! context across messages, in the 9-bit window the gateway grants) and
//! long messages cross both ways byte-exact with a client that has none;
//! a bare offer (Firefox's, OkHttp's) is told to reset its context; declined,
//! it still chats. On the wire a long frame comes with RSV1 and
//! inflates to the message; a deflate bomb closes with 1009, RSV1 on a
//! control frame with 1002, and a malformed offer is an upgrade without
//! the extension. (Node's `ws` and Chromium: `clients/js/test`,
//! `scripts/test-browser.sh`; every hostile input on the session:
//! `session::tests::deflate`.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;
use proto::v1::server_frame::Frame;
use proto::ws::{self, Opcode, Role};

driver_tests!(
    python_websockets_compresses_both_ways,
    long_frames_carry_rsv1_and_hostile_input_closes,
);

/// Joins a room, reads three messages, sends three long ones, and prints
/// the negotiated extension and every frame it got, one JSON per line.
const PY_CLIENT: &str = r#"
import asyncio, base64, json, sys
async def main(url, token, mode, room):
    import websockets
    kw = {"deflate": {}, "plain": {"compression": None}}.get(mode)
    if mode == "bare":  # what Firefox and OkHttp offer: no window parameter
        from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
        kw = {"extensions": [ClientPerMessageDeflateFactory(client_max_window_bits=None)]}
    async with websockets.connect(url, subprotocols=["im.gateway.v1+json"],
                                  extra_headers={"Authorization": "Bearer " + token},
                                  open_timeout=10, **kw) as ws:
        ext = ws.response_headers.get("Sec-WebSocket-Extensions")
        print(json.dumps({"extensions": ext}), flush=True)
        recv = lambda: asyncio.wait_for(ws.recv(), 10)
        print(await recv(), flush=True)
        await ws.send(json.dumps({"join": {"room": room}}))
        print(await recv(), flush=True)
        for _ in range(3):
            print(await recv(), flush=True)
        text = b"the quick brown fox jumps over the lazy dog, again and again. " * 40
        for i in range(3):
            payload = base64.b64encode(text + str(i).encode()).decode()
            await ws.send(json.dumps({"send": {"room": room, "clientMsgId": str(i),
                                               "payload": payload}}))
        results = 0
        while results < 3:
            line = await recv()
            print(line, flush=True)
            results += "sendResult" in line
asyncio.run(main(*sys.argv[1:]))
"#;

fn python() -> String {
    for py in std::env::var("PYTHON")
        .into_iter()
        .chain(["python3".to_owned(), "/usr/bin/python3".to_owned()])
    {
        let ok = Command::new(&py)
            .args(["-c", "import websockets"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return py;
        }
    }
    panic!("no Python 3 with `websockets`: apt-get install python3-websockets");
}

fn long_text(i: usize) -> Vec<u8> {
    let mut t = b"see you at the station at eight, bring the tickets and the map. ".repeat(30);
    t.extend_from_slice(i.to_string().as_bytes());
    t
}

fn python_websockets_compresses_both_ways(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    for (mode, want) in [
        (
            "deflate",
            serde_json::json!(
                "permessage-deflate; server_no_context_takeover; client_max_window_bits=9"
            ),
        ),
        (
            "bare",
            serde_json::json!(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
            ),
        ),
        ("plain", serde_json::Value::Null),
    ] {
        let room = format!("z-{mode}");
        let mut rx = gw.connect(TCP, "rx", mode);
        rx.join(&room);
        let url = format!("ws://{}/ws", gw.ws);
        let token = user_token("py", mode);
        let r = room.clone();
        let child = std::thread::spawn(move || {
            run_within(
                Command::new(python()).args(["-c", PY_CLIENT, &url, &token, mode, &r]),
                Duration::from_secs(40),
            )
        });
        wait_room_members(&gw, &room, 2);
        for i in 0..3 {
            rx.send(&to_room(&room, &format!("r{i}"), &long_text(i)));
            assert!(rx.result_for(&format!("r{i}")).accepted);
        }
        for i in 0..3 {
            // (Its own messages come back to the sender, a member too.)
            let d = loop {
                let d = rx.any_deliver();
                if d.from == "py" {
                    break d;
                }
            };
            let mut want =
                b"the quick brown fox jumps over the lazy dog, again and again. ".repeat(40);
            want.extend_from_slice(i.to_string().as_bytes());
            assert_eq!(d.payload, want, "{mode}: message {i} byte-exact, in order");
        }
        let out = child.join().unwrap();
        assert!(out.status.success(), "{mode}: {out:?}\n{}", gw.stderr());
        let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["extensions"], want, "{mode}");
        assert_eq!(lines[1]["authOk"]["user"], "py");
        let got: Vec<Vec<u8>> = lines
            .iter()
            .filter_map(|l| l["deliver"]["payload"].as_str())
            .map(base64_decode)
            .filter(|p| p.starts_with(b"see you"))
            .collect();
        assert_eq!(got, (0..3).map(long_text).collect::<Vec<_>>(), "{mode}");
        rx.take_stashed();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// A raw, authenticated JSON WebSocket that offers `offer`; the 101 head.
fn raw(gw: &Gateway, user: &str, offer: &str) -> (TcpStream, String, Vec<u8>) {
    let mut s = TcpStream::connect(gw.ws).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: im.gateway.v1+json\r\nSec-WebSocket-Extensions: {offer}\r\n\
         Authorization: Bearer {}\r\n\r\n",
        user_token(user, "d")
    )
    .unwrap();
    let mut buf = Vec::new();
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        read_more(&mut s, &mut buf);
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    buf.drain(..end);
    (s, head, buf)
}

fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 8192];
    let n = loop {
        match s.read(&mut chunk) {
            // A signal came (EINTR: another test's child exited): again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => break r.expect("read within the timeout"),
        }
    };
    assert!(n > 0, "closed early");
    buf.extend_from_slice(&chunk[..n]);
}

/// The next server frame: its head and payload (inflated when RSV1).
fn next_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> (ws::FrameHead, Vec<u8>) {
    loop {
        if let Some(head) = ws::decode_frame_ext(buf, Role::Client, 1 << 20, true).unwrap() {
            let body = buf[head.header_len..head.frame_len()].to_vec();
            buf.drain(..head.frame_len());
            if !head.rsv1 {
                return (head, body);
            }
            let mut out = Vec::new();
            ws::deflate::Inflater::new()
                .message(&[], &body, 1 << 20, &mut out)
                .unwrap();
            return (head, out);
        }
        read_more(s, buf);
    }
}

/// A masked client frame, first byte `b0`.
fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ws::encode_frame(Opcode::Text, payload, Some([3, 1, 4, 1]), &mut out);
    out[0] = b0;
    out
}

fn close_code(s: &mut TcpStream, buf: &mut Vec<u8>) -> u16 {
    loop {
        let (head, body) = next_frame(s, buf);
        if head.opcode == Opcode::Close {
            return u16::from_be_bytes([body[0], body[1]]);
        }
    }
}

fn long_frames_carry_rsv1_and_hostile_input_closes(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let offer = "permessage-deflate; client_no_context_takeover";
    let (mut s, head, mut buf) = raw(&gw, "raw", offer);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover\r\n"
        ),
        "{head}"
    );
    let (_, auth_ok) = next_frame(&mut s, &mut buf);
    assert!(String::from_utf8_lossy(&auth_ok).contains("authOk"));
    s.write_all(&masked(0x81, br#"{"ping":{"nonce":"1"}}"#))
        .unwrap();
    let (h, pong) = next_frame(&mut s, &mut buf);
    assert!(String::from_utf8_lossy(&pong).contains("pong"));
    assert!(
        !h.rsv1,
        "a short frame (under compression.min_bytes) goes uncompressed"
    );
    s.write_all(&masked(0x81, br#"{"join":{"room":"w"}}"#))
        .unwrap();
    let _joined = next_frame(&mut s, &mut buf);
    let mut tx = gw.connect(TCP, "tx", "d");
    tx.send(&to_room("w", "1", &long_text(7)));
    assert!(tx.result_for("1").accepted);
    let (h, body) = next_frame(&mut s, &mut buf);
    assert!(h.rsv1, "a long frame goes compressed");
    assert!(
        h.payload_len * 3 < body.len(),
        "{} -> {}",
        h.payload_len,
        body.len()
    );
    let f = decode_server(&body, proto::codec::Encoding::Json).unwrap();
    assert!(matches!(f.frame, Some(Frame::Deliver(d)) if d.payload == long_text(7)));

    // A deflate bomb: 8 MiB of zeros in a few KiB; closed at the frame limit.
    let mut z = flate2::Compress::new(flate2::Compression::best(), false);
    let mut bomb = Vec::with_capacity(64 << 10);
    z.compress_vec(&vec![0u8; 8 << 20], &mut bomb, flate2::FlushCompress::Sync)
        .unwrap();
    s.write_all(&masked(0xC1, &bomb[..bomb.len() - 4])).unwrap();
    assert_eq!(close_code(&mut s, &mut buf), 1009);

    // RSV1 on a ping, with the extension negotiated: 1002.
    let (mut s, _, mut buf) = raw(&gw, "raw2", offer);
    s.write_all(&masked(0xC9, b"")).unwrap();
    assert_eq!(close_code(&mut s, &mut buf), 1002);

    // A malformed offer: the upgrade goes on without the extension.
    let (mut s, head, mut buf) = raw(&gw, "raw3", "permessage-deflate; client_max_window_bits=99");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(!head.contains("Sec-WebSocket-Extensions"), "{head}");
    let (_, auth_ok) = next_frame(&mut s, &mut buf);
    assert!(String::from_utf8_lossy(&auth_ok).contains("authOk"));
    gw.assert_shards_serve();
}

//! TLS with clients the project did not write: `openssl s_client` speaks
//! the raw TCP protocol over TLS, and Python's `websockets` (with an `ssl`
//! context trusting the test certificate) speaks wss with the JSON
//! subprotocol, as the README tells clients to. Both on both drivers.
//! Needs `openssl` and Python 3 with `websockets` (Debian
//! `python3-websockets`; `scripts/test.sh` installs both).

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use proto::codec::Encoding;

driver_tests!(openssl_s_client_over_tcp, python_websockets_over_wss);

fn openssl_s_client_over_tcp(driver: Driver) {
    let (gw, cert) = tls_gateway(driver, "ossl", &[]);
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-servername"])
        .arg("localhost")
        .arg("-connect")
        .arg(gw.tcp.to_string())
        .arg("-CAfile")
        .arg(&cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl");
    let mut stdin = child.stdin.take().unwrap();
    for f in [auth(&user_token("ossl", "d"), ""), ping(41)] {
        stdin
            .write_all(&length_prefixed(&encode_client(&f, Encoding::Proto)))
            .unwrap();
    }
    stdin.flush().unwrap();
    // Read two frames from s_client's stdout on a thread, with a deadline.
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut frames = Vec::new();
        for _ in 0..2 {
            let mut len = [0u8; 4];
            if out.read_exact(&mut len).is_err() {
                break;
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            if out.read_exact(&mut body).is_err() {
                break;
            }
            frames.push(proto::codec::decode_server(Encoding::Proto, &body).unwrap());
        }
        let _ = tx.send(frames);
    });
    let frames = rx
        .recv_timeout(IO_TIMEOUT)
        .expect("two frames from s_client");
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    use proto::v1::server_frame::Frame as F;
    assert_eq!(frames.len(), 2, "{frames:?}\n{}", gw.stderr());
    assert!(matches!(&frames[0].frame, Some(F::AuthOk(a)) if a.user == "ossl"));
    assert!(matches!(&frames[1].frame, Some(F::Pong(p)) if p.nonce == 41));
}

/// A Python 3 that has `websockets`: `$PYTHON`, else `python3`, else
/// Debian's `/usr/bin/python3` (which `python3-websockets` serves).
fn python() -> String {
    let candidates = std::env::var("PYTHON")
        .into_iter()
        .chain(["python3".to_owned(), "/usr/bin/python3".to_owned()]);
    for py in candidates {
        let ok = Command::new(&py)
            .args(["-c", "import websockets"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return py;
        }
    }
    panic!(
        "no Python 3 with `websockets`: apt-get install python3-websockets (scripts/test.sh does)"
    );
}

/// Connects over wss with the JSON subprotocol and the token in the
/// `Authorization` header, pings, and prints the two answers.
const WSS_CLIENT: &str = r#"
import asyncio, json, ssl, sys
async def main(url, cafile, token):
    ctx = ssl.create_default_context(cafile=cafile)
    import websockets
    async with websockets.connect(url, ssl=ctx, subprotocols=["im.gateway.v1+json"],
                                  extra_headers={"Authorization": "Bearer " + token},
                                  open_timeout=10) as ws:
        print(await asyncio.wait_for(ws.recv(), 10), flush=True)
        await ws.send(json.dumps({"ping": {"nonce": "42"}}))
        print(await asyncio.wait_for(ws.recv(), 10), flush=True)
asyncio.run(main(*sys.argv[1:]))
"#;

/// The whole Python run: an interpreter start and `websockets` import on
/// a loaded machine, the client's own 10 s waits, and some.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(30);

fn python_websockets_over_wss(driver: Driver) {
    let (gw, cert) = tls_gateway(driver, "py", &[]);
    let url = format!("wss://localhost:{}/ws", gw.ws.port());
    let out = run_within(
        Command::new(python())
            .args(["-c", WSS_CLIENT, &url])
            .arg(&cert)
            .arg(user_token("py", "d")),
        PYTHON_TIMEOUT,
    );
    assert!(out.status.success(), "{out:?}\n{}", gw.stderr());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["authOk"]["user"], "py", "{text}");
    assert_eq!(lines[1]["pong"]["nonce"], "42", "{text}");
}

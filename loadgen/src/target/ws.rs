//! The client side of RFC 6455 on top of `proto::handshake` and `proto::ws`:
//! the upgrade request, the response check, masked frames, and splitting a
//! read buffer into messages.
use proto::handshake;
use proto::ws::{self, Event as WsEvent, Opcode, Role};

use super::Fail;

/// Largest response head accepted.
const MAX_HEAD: usize = 8192;
/// The key every connection sends: the server cannot tell, and the accept
/// value is then computed once.
const KEY: &str = "bG9hZGdlbi1sb2FkZ2VuIQ==";

/// The upgrade request for `path` (host header `loadgen`).
pub fn request(path: &str, protocol: Option<&str>, bearer: Option<&str>) -> Vec<u8> {
    let protocols: Vec<&str> = protocol.into_iter().collect();
    handshake::client_request("loadgen", path, KEY, &protocols, bearer)
}

/// Checks the response head at the front of `buf`: `Ok(None)` while
/// incomplete, `Ok(Some(head_len))` after a valid `101`.
pub fn response(buf: &[u8]) -> Result<Option<usize>, Fail> {
    let parsed =
        handshake::parse_response(buf, MAX_HEAD).map_err(|e| Fail::Protocol(e.to_string()))?;
    let Some((len, status, _protocol, accept)) = parsed else {
        return Ok(None);
    };
    if status != 101 {
        return Err(Fail::Status(status));
    }
    if accept.as_deref() != Some(expected_accept()) {
        return Err(Fail::Protocol("bad Sec-WebSocket-Accept".into()));
    }
    Ok(Some(len))
}

fn expected_accept() -> &'static str {
    static ACCEPT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ACCEPT.get_or_init(|| handshake::accept_key(KEY))
}

/// Appends a masked, unfragmented frame.
pub fn frame(opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
    let key = fastrand::u32(..).to_ne_bytes();
    ws::encode_frame(opcode, payload, Some(key), out);
}

/// What [`messages`] calls with each data message (`None` for a pong) and
/// the output buffer for replies.
pub type OnData<'a> = dyn FnMut(Option<&[u8]>, &mut Vec<u8>) -> Result<(), Fail> + 'a;

/// Decodes every complete frame of `buf`, answering pings, and hands each
/// complete data message to `on_data` (and each pong, as `None`). Returns
/// the bytes consumed.
pub fn messages(
    buf: &mut [u8],
    asm: &mut ws::Assembler,
    max: usize,
    out: &mut Vec<u8>,
    on_data: &mut OnData<'_>,
) -> Result<usize, Fail> {
    let mut used = 0;
    loop {
        let rest = buf.get_mut(used..).unwrap_or_default();
        let head = match ws::decode_frame(rest, Role::Client, max) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(used),
            Err(e) => return Err(Fail::Protocol(e.to_string())),
        };
        let payload = rest
            .get(head.header_len..head.frame_len())
            .unwrap_or_default();
        match asm.push(head, payload) {
            Ok(None) => {}
            Ok(Some(WsEvent::Data { payload, .. })) => on_data(Some(&payload), out)?,
            Ok(Some(WsEvent::Ping(p))) => frame(Opcode::Pong, p, out),
            Ok(Some(WsEvent::Pong(_))) => on_data(None, out)?,
            Ok(Some(WsEvent::Close { code, .. })) => {
                let code = code.map_or("none".into(), |c| c.to_string());
                return Err(Fail::Closed(format!("ws_{code}")));
            }
            Err(e) => return Err(Fail::Protocol(e.to_string())),
        }
        used += head.frame_len();
    }
}

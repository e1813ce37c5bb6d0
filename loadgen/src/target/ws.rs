//! The client side of RFC 6455 on top of `proto::handshake` and `proto::ws`:
//! the upgrade request, the response check, masked frames, and splitting a
//! read buffer into messages.
use proto::handshake;
use proto::ws::{self, Event as WsEvent, Opcode, Role};

use super::Fail;

thread_local! {
    /// This worker's inflater and its output (`--deflate`).
    static INFLATE: std::cell::RefCell<(ws::deflate::Inflater, Vec<u8>)> =
        std::cell::RefCell::new((ws::deflate::Inflater::new(), Vec::new()));
}

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

/// Adds a permessage-deflate offer (the client resets its context per
/// message, so the server keeps none for it) to an upgrade request.
pub fn offer_deflate(request: &mut Vec<u8>) {
    let offer = b"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n";
    let end = request.len().saturating_sub(2);
    request.splice(end..end, offer.iter().copied());
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
    deflate: bool,
    out: &mut Vec<u8>,
    on_data: &mut OnData<'_>,
) -> Result<usize, Fail> {
    let mut used = 0;
    loop {
        let rest = buf.get_mut(used..).unwrap_or_default();
        let head = match ws::decode_frame_ext(rest, Role::Client, max, deflate) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(used),
            Err(e) => return Err(Fail::Protocol(e.to_string())),
        };
        let payload = rest
            .get(head.header_len..head.frame_len())
            .unwrap_or_default();
        match asm.push(head, payload) {
            Ok(None) => {}
            Ok(Some(WsEvent::Data {
                compressed: false,
                payload,
                ..
            })) => on_data(Some(&payload), out)?,
            Ok(Some(WsEvent::Data { payload, .. })) => INFLATE.with_borrow_mut(|(z, buf)| {
                buf.clear();
                z.message(&[], &payload, max, buf)
                    .map_err(|e| Fail::Protocol(e.to_string()))?;
                on_data(Some(buf), out)
            })?,
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

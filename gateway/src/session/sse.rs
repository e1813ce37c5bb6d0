//! The fallback transport, for clients whose network breaks WebSocket
//! upgrades: a Server-Sent Events stream down, `POST`s up, on the client
//! port. The session is the same `Session`; only how bytes come and go
//! differs.
//!
//! - `GET /sse` (token in `?token=` or `Authorization: Bearer`, optional;
//!   resume point in `?last_seq=` or `Last-Event-ID`) opens the stream
//!   (`Wire::Sse`): first an `event: session` naming the path to post to,
//!   `/sse/<node>/<conn id>/<key>` (the key: the connection id signed with
//!   the node's secret, HMAC-SHA256 cut to 128 bits: the session's
//!   capability, which any shard checks from the request head, so a POST
//!   with a wrong key is refused before its body is read), then every
//!   server frame as one event of protobuf JSON.
//!   Without a token the first frame posted must be `auth`.
//! - `POST /sse/<node>/<conn id>/<key>`, on a connection of its own (any
//!   shard): client frames of protobuf JSON, one per line. The POST's
//!   session hands them to the stream's session (`Route::SsePost`, through
//!   the shard that holds it), which takes them in order as if they had
//!   come in WebSocket messages (liveness, frame rate, the same limits), and
//!   answers `204` only then, so a client that posts one request at a time
//!   keeps its order. `404`: no such session (gone, or a wrong key);
//!   `421`: another node's session (behind a load balancer the fallback
//!   needs sticky sessions); `413`: a body over `limits.max_frame_bytes`.
//! - Cross-origin pages: `Access-Control-Allow-Origin` is `*` without an
//!   `auth.origins` list, else the request's listed origin (an unlisted
//!   one is refused 403). A `text/plain` POST needs no preflight.
use proto::codec::Encoding;
use proto::handshake::{self, PlainRequest};

use super::input::Fatal;
use super::{Ctx, Phase, Route, Session};
use crate::outbound::Wire;

/// What a plain HTTP request on the client port came to.
pub(super) enum Plain {
    /// Handled: this many bytes of the buffer were used.
    Done(usize),
    /// Not complete yet.
    More,
    /// Not a fallback request: answer it as before.
    NotOurs,
}

impl Session {
    /// A plain (non-upgrade) request at the front of `buf`.
    pub(super) fn on_plain(&mut self, cx: &mut Ctx, buf: &[u8]) -> Plain {
        let max_head = cx.env.limits.max_handshake_bytes;
        let (head_len, req) = match handshake::parse_plain(buf, max_head) {
            Ok(Some(r)) => r,
            Ok(None) => return Plain::More,
            Err(_) => return Plain::NotOurs,
        };
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/sse") => {
                self.sse_open(cx, req);
                Plain::Done(head_len)
            }
            ("POST", path) if path.starts_with("/sse/") => {
                let end = head_len.saturating_add(req.content_length);
                let Ok(allow) = Self::allow_origin(cx, req.origin.as_deref()) else {
                    self.answer(cx, 403, None, "origin not allowed");
                    return Plain::Done(buf.len());
                };
                // Everything that can be refused from the head is, before
                // a byte of the body is held.
                let target = match self.post_target(cx, path) {
                    Ok(id) => id,
                    Err((status, why)) => {
                        self.answer(cx, status, allow.as_deref(), &why);
                        return Plain::Done(buf.len());
                    }
                };
                if req.chunked {
                    self.answer(cx, 411, allow.as_deref(), "a POST needs a Content-Length");
                } else if req.content_length > cx.env.limits.max_frame_bytes {
                    let why = "body over limits.max_frame_bytes";
                    self.answer(cx, 413, allow.as_deref(), why);
                } else if buf.len() < end {
                    return Plain::More;
                } else {
                    cx.fx.posts.insert(self.id, allow);
                    cx.fx.routes.push(Route::SsePost {
                        conn_id: target,
                        body: buf[head_len..end].to_vec(),
                    });
                }
                Plain::Done(end.min(buf.len()))
            }
            _ => Plain::NotOurs,
        }
    }

    /// `Access-Control-Allow-Origin` for a request from `origin`: `Err`
    /// when it is not allowed.
    fn allow_origin(cx: &Ctx, origin: Option<&str>) -> Result<Option<String>, ()> {
        match origin {
            None => Ok(None),
            Some(_) if cx.env.origins.is_empty() => Ok(Some("*".to_owned())),
            Some(o) if cx.env.origins.iter().any(|a| a.eq_ignore_ascii_case(o)) => {
                Ok(Some(o.to_owned()))
            }
            Some(_) => Err(()),
        }
    }

    /// One response, then the connection closes.
    fn answer(&mut self, cx: &mut Ctx, status: u16, allow: Option<&str>, why: &str) {
        let mut body = why.to_owned();
        if !body.is_empty() {
            body.push('\n');
        }
        self.queue(cx, &handshake::response_status(status, allow, &body));
        self.close(cx);
    }

    /// `GET /sse`: the stream opens.
    fn sse_open(&mut self, cx: &mut Ctx, req: PlainRequest) {
        let Ok(allow) = Self::allow_origin(cx, req.origin.as_deref()) else {
            return self.reject_upgrade(cx, 403, "origin not allowed");
        };
        let token = req.bearer.as_deref().or(req.query_token.as_deref());
        let claims = match token {
            Some(t) => match cx.env.verifier.verify_at(t, cx.env.clock.unix_secs(cx.now)) {
                Ok(c) => Some(c),
                Err(e) => {
                    cx.env.stats.error(proto::v1::ErrorCode::Unauthenticated);
                    return self.answer(cx, 401, allow.as_deref(), e.reason());
                }
            },
            None => None,
        };
        self.wire = Wire::Sse;
        self.phase = Phase::Auth;
        self.queue(cx, &handshake::response_sse(allow.as_deref()));
        cx.fx.routes.push(Route::SseOpened);
        let event = format!(
            "event: session\ndata: {{\"post\":\"/sse/{}/{}/{:032x}\"}}\n\n",
            cx.env.node_id,
            self.id,
            post_key(cx, self.id)
        );
        self.queue(cx, event.as_bytes());
        if let Some(claims) = claims {
            self.authenticate(cx, claims, "", req.last_seq);
        }
    }

    /// The stream a `POST /sse/<node>/<conn id>/<key>` is for, or the
    /// status and reason to refuse it with: 404 for a malformed path or a
    /// key that does not check, 421 for another node's session.
    fn post_target(&self, cx: &Ctx, path: &str) -> Result<u64, (u16, String)> {
        let not_found = || (404, "no such session".to_owned());
        let mut parts = path["/sse/".len()..].split('/');
        let (node, id, key) = (parts.next(), parts.next(), parts.next());
        let target = id
            .filter(|i| is_digits(i))
            .and_then(|i| i.parse::<u64>().ok());
        let key = key
            .filter(|k| k.len() == 32 && k.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|k| u128::from_str_radix(k, 16).ok());
        let (Some(node), Some(target), Some(key), None) = (node, target, key, parts.next()) else {
            return Err(not_found());
        };
        if node != cx.env.node_id {
            return Err((421, format!("the session is on node {node}")));
        }
        // Compared in constant time: nothing of the key leaks by timing.
        let want = post_key(cx, target).to_be_bytes();
        let diff = want
            .iter()
            .zip(key.to_be_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(not_found());
        }
        Ok(target)
    }

    /// The stream's session took a POST (or did not: `status`).
    pub(super) fn post_done(&mut self, cx: &mut Ctx, status: u16) {
        let Some(allow) = cx.fx.posts.remove(&self.id) else {
            return;
        };
        let why = match status {
            204 => "",
            404 => "no such session",
            _ => "refused",
        };
        self.answer(cx, status, allow.as_deref(), why);
    }

    /// Client frames posted to this stream, one per line: taken as if they
    /// had come in WebSocket messages. The POST's status: 204, or 404 when
    /// this is no open stream.
    pub(crate) fn handle_post(&mut self, cx: &mut Ctx, body: &[u8]) -> u16 {
        if self.wire != Wire::Sse || !matches!(self.phase, Phase::Auth | Phase::Open) {
            return 404;
        }
        let limits = &cx.env.limits;
        let preauth = limits.max_frame_bytes.min(limits.max_preauth_frame_bytes);
        for line in body.split(|&b| b == b'\n') {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            if self.phase >= Phase::Closing {
                break;
            }
            let was_open = self.phase == Phase::Open;
            let mut step = if !was_open && line.len() > preauth {
                // Before authentication, frames are small (an Auth frame).
                let why = format!("a frame of {} bytes before auth", line.len());
                Err(Fatal::app(proto::v1::ErrorCode::FrameTooLarge, why))
            } else {
                self.on_payload(cx, Encoding::Json, line)
            };
            if step.is_ok() && was_open && self.phase == Phase::Open {
                // A complete frame: the client is alive.
                self.stamp = cx.now;
                step = self.frame_rate(cx);
            }
            if let Err(Fatal(code, why, _)) = step {
                self.fail(cx, code, &why);
            }
        }
        204
    }
}

/// The key of the stream `conn_id`: its id signed with the node's secret.
fn post_key(cx: &Ctx, conn_id: u64) -> u128 {
    let tag = ring::hmac::sign(&cx.env.post_key, &conn_id.to_be_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&tag.as_ref()[..16]);
    u128::from_be_bytes(first)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

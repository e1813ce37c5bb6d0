//! The fallback transport, for clients whose network breaks WebSocket
//! upgrades: a Server-Sent Events stream down, `POST`s up, on the client
//! port. The session is the same `Session`; only how bytes come and go
//! differs.
//!
//! - `GET /sse` (token in `?token=` or `Authorization: Bearer`, optional;
//!   resume point in `?last_seq=` or `Last-Event-ID`) opens the stream
//!   (`Wire::Sse`): first an `event: session` naming the path to post to,
//!   `/sse/<node>/<conn id>/<key>` (the key: 128 random bits, the session's
//!   capability), then every server frame as one event of protobuf JSON.
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
                if req.chunked {
                    self.answer(cx, 411, None, "a POST needs a Content-Length");
                } else if req.content_length > cx.env.limits.max_frame_bytes {
                    self.answer(cx, 413, None, "body over limits.max_frame_bytes");
                } else if buf.len() < end {
                    return Plain::More;
                } else {
                    self.sse_post(cx, &req, &buf[head_len..end]);
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
        let key = (cx.env.random)();
        cx.fx.routes.push(Route::SseOpened { key });
        let event = format!(
            "event: session\ndata: {{\"post\":\"/sse/{}/{}/{key:032x}\"}}\n\n",
            cx.env.node_id, self.id
        );
        self.queue(cx, event.as_bytes());
        if let Some(claims) = claims {
            self.authenticate(cx, claims, "", req.last_seq);
        }
    }

    /// `POST /sse/...` with its whole body: handed to the stream's session.
    fn sse_post(&mut self, cx: &mut Ctx, req: &PlainRequest, body: &[u8]) {
        let Ok(allow) = Self::allow_origin(cx, req.origin.as_deref()) else {
            return self.answer(cx, 403, None, "origin not allowed");
        };
        let mut parts = req.path["/sse/".len()..].split('/');
        let (node, id, key) = (parts.next(), parts.next(), parts.next());
        let target = id.and_then(|i| i.parse::<u64>().ok());
        let key = key.and_then(|k| u128::from_str_radix(k, 16).ok());
        let (Some(node), Some(target), Some(key), None) = (node, target, key, parts.next()) else {
            return self.answer(cx, 404, allow.as_deref(), "no such session");
        };
        if node != cx.env.node_id {
            let why = format!("the session is on node {node}");
            return self.answer(cx, 421, allow.as_deref(), &why);
        }
        cx.fx.posts.insert(self.id, allow);
        cx.fx.routes.push(Route::SsePost {
            conn_id: target,
            key,
            body: body.to_vec(),
        });
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
        for line in body.split(|&b| b == b'\n') {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            if self.phase >= Phase::Closing {
                break;
            }
            let was_open = self.phase == Phase::Open;
            let mut step = self.on_payload(cx, Encoding::Json, line);
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

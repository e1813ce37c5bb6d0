//! Getting to an authenticated session: the HTTP upgrade (token in the
//! `Authorization` header or the `token` query parameter), or the first
//! `Auth` frame (WebSocket without a token, and raw TCP).
use std::sync::Arc;
use std::time::Duration;

use proto::codec::{self, Encoding};
use proto::handshake::{self, UpgradeRequest};
use proto::v1::{
    client_frame, server_frame::Frame, AuthOk, ClientFrame, ErrorCode, Refreshed, ServerFrame,
};

use super::input::Fatal;
use super::{Ctx, Phase, Route, Session};
use crate::auth::Claims;
use crate::outbound::Wire;
use crate::stats::ShardStats;

/// Token lifetimes beyond this (ten years) count as "never expires".
const MAX_EXPIRY: Duration = Duration::from_secs(10 * 365 * 86_400);

impl Session {
    /// Answers a failed upgrade with an HTTP status and closes.
    pub(super) fn reject_upgrade(&mut self, cx: &mut Ctx, status: u16, reason: &str) {
        tracing::debug!(
            shard = cx.env.shard,
            conn = self.id,
            status,
            "upgrade refused: {reason}"
        );
        let response = handshake::response_error(status, reason);
        self.queue(cx, &response);
        self.close(cx);
    }

    /// A plain `GET` the node answers on the client port (`/route`): one
    /// JSON response, then the connection closes. False when `buf` holds no
    /// such request (the upgrade error is answered instead).
    pub(super) fn answer_plain(&mut self, cx: &mut Ctx, buf: &[u8], max: usize) -> bool {
        let Some(hook) = cx.env.http.clone() else {
            return false;
        };
        let Some(target) = handshake::plain_get_target(buf, max) else {
            return false;
        };
        let Some((status, body)) = hook(&target) else {
            return false;
        };
        let response = handshake::response_json(status, &body);
        self.queue(cx, &response);
        self.close(cx);
        true
    }

    /// A complete upgrade request arrived.
    pub(super) fn on_upgrade(&mut self, cx: &mut Ctx, req: UpgradeRequest) {
        if req.path != "/ws" {
            return self.reject_upgrade(cx, 404, "no such endpoint: use /ws");
        }
        // A browser page from another site (cross-site WebSocket hijacking):
        // only listed origins, when a list is configured.
        let origins = &cx.env.origins;
        if let Some(o) = req.origin.as_deref().filter(|_| !origins.is_empty()) {
            if !origins
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(o))
            {
                return self.reject_upgrade(cx, 403, "origin not allowed");
            }
        }
        // None offered means binary protobuf.
        let (enc, protocol) = if req.protocols.is_empty() {
            (Encoding::Proto, None)
        } else {
            match codec::negotiate(&req.protocols) {
                Some((enc, p)) => (enc, Some(p)),
                None => return self.reject_upgrade(cx, 400, "unsupported subprotocol"),
            }
        };
        // permessage-deflate when offered acceptably and not turned off.
        let deflate = req.deflate.filter(|_| cx.env.compression);
        let wire = Wire::websocket(enc, deflate.is_some());
        let token = req.bearer.as_deref().or(req.query_token.as_deref());
        let claims = match token {
            Some(t) => match cx.env.verifier.verify_at(t, cx.env.clock.unix_secs(cx.now)) {
                Ok(claims) => Some(claims),
                Err(e) => {
                    cx.env.stats.error(ErrorCode::Unauthenticated);
                    return self.reject_upgrade(cx, 401, e.reason());
                }
            },
            None => None,
        };
        let accept = handshake::accept_key(&req.key);
        let extensions = deflate.map(|d| d.response());
        let response = handshake::response_switching(&accept, protocol, extensions.as_deref());
        self.wire = wire;
        self.inflate_bits = deflate.and_then(|d| d.client_window_bits).unwrap_or(0);
        self.phase = Phase::Auth;
        self.queue(cx, &response);
        if let Some(claims) = claims {
            self.authenticate(cx, claims, "", req.last_seq);
        }
    }

    /// One client frame's bytes arrived.
    pub(super) fn on_payload(
        &mut self,
        cx: &mut Ctx,
        enc: Encoding,
        bytes: &[u8],
    ) -> Result<(), Fatal> {
        ShardStats::inc(&cx.env.stats.frames_in);
        let frame: ClientFrame = codec::decode_client(enc, bytes)
            .map_err(|e| Fatal::app(ErrorCode::BadFrame, e.to_string()))?;
        let Some(frame) = frame.frame else {
            return Err(Fatal::app(
                ErrorCode::UnknownFrame,
                "unknown frame type".into(),
            ));
        };
        match (self.phase, frame) {
            (Phase::Auth, client_frame::Frame::Auth(auth)) => {
                let now_unix = cx.env.clock.unix_secs(cx.now);
                match cx.env.verifier.verify_at(&auth.token, now_unix) {
                    Ok(claims) => {
                        self.authenticate(cx, claims, &auth.device, auth.last_seq);
                        // The reconnect in one step: the rooms, each from
                        // its position, answered as Join frames are.
                        for join in auth.rooms {
                            if self.phase != Phase::Open {
                                break;
                            }
                            self.on_join(cx, join);
                        }
                        Ok(())
                    }
                    Err(e) => Err(Fatal::app(ErrorCode::Unauthenticated, e.reason().into())),
                }
            }
            (Phase::Auth, _) => Err(Fatal::app(
                ErrorCode::NotAuthenticated,
                "send Auth first".into(),
            )),
            (Phase::Open, frame) => {
                self.on_frame(cx, frame);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Opens the session; `last_seq` is the client's resume point (0: none).
    pub(super) fn authenticate(
        &mut self,
        cx: &mut Ctx,
        claims: Claims,
        device: &str,
        last_seq: u64,
    ) {
        let env = cx.env;
        let device: Arc<str> = match claims.device.as_deref() {
            _ if !device.is_empty() => Arc::from(device),
            Some(d) if !d.is_empty() => Arc::from(d),
            _ => env.no_device.clone(),
        };
        if !super::frames::valid_name(&device, env.limits.max_name_bytes) && !device.is_empty() {
            return self.fail(
                cx,
                ErrorCode::InvalidArgument,
                "device name too long or with control characters",
            );
        }
        let user: Arc<str> = Arc::from(claims.user.as_str());
        env.stats
            .handshake(cx.now.saturating_duration_since(self.stamp));
        self.phase = Phase::Open;
        self.user = Some(user.clone());
        self.device = device.clone();
        self.stamp = cx.now;
        self.timeout_moved = true;
        self.expires_at = expiry(cx, claims.exp);
        cx.fx.set_grants(self.id, claims.rooms.clone());
        cx.fx.routes.push(Route::Online {
            user: user.clone(),
            device: device.clone(),
            wire: self.wire,
        });
        cx.fx.routes.push(Route::Event(super::Event::Connected));
        let ok = AuthOk {
            user: user.to_string(),
            device: device.to_string(),
            conn_id: self.id,
            expires_at: claims.exp,
            heartbeat_ms: env.limits.heartbeat_interval_ms,
            node: env.node_id.clone(),
            shard: u32::from(env.shard),
        };
        self.send_frame(
            cx,
            &ServerFrame {
                frame: Some(Frame::AuthOk(ok)),
            },
        );
        // Offline messages and anything unacknowledged, before live ones
        // (after the client's resume point when it gave one).
        self.known = last_seq;
        self.qos_sync(cx, (last_seq > 0).then_some(last_seq));
    }
}

impl Session {
    /// A `Refresh` frame: a new token for the same user moves the
    /// connection's expiry (and its grants) to the new token's.
    pub(super) fn on_refresh(&mut self, cx: &mut Ctx, token: &str) {
        let claims = match cx
            .env
            .verifier
            .verify_at(token, cx.env.clock.unix_secs(cx.now))
        {
            Ok(c) => c,
            Err(e) => {
                cx.env.stats.error(ErrorCode::Unauthenticated);
                let err = super::error_frame(ErrorCode::Unauthenticated, e.reason(), false);
                return self.send_frame(cx, &err);
            }
        };
        if self.user.as_deref() != Some(claims.user.as_str()) {
            cx.env.stats.error(ErrorCode::Forbidden);
            let why = "a refreshed token must be for the same user";
            return self.send_frame(cx, &super::error_frame(ErrorCode::Forbidden, why, false));
        }
        self.expires_at = expiry(cx, claims.exp);
        self.timeout_moved = true;
        cx.fx.set_grants(self.id, claims.rooms.clone());
        cx.fx
            .routes
            .push(Route::Event(super::Event::Refreshed { exp: claims.exp }));
        let ok = Refreshed {
            expires_at: claims.exp,
        };
        self.send_frame(
            cx,
            &ServerFrame {
                frame: Some(Frame::Refreshed(ok)),
            },
        );
    }
}

/// A token's `exp` as the session keeps it: Unix seconds, or 0 for a token
/// that says it never expires (`exp` further than ten years, or past what
/// fits in u32 Unix seconds): no expiry deadline then.
fn expiry(cx: &Ctx, exp: u64) -> u32 {
    let far = cx.env.clock.unix_ms(cx.now) + MAX_EXPIRY.as_millis() as u64;
    if exp.saturating_mul(1000) > far {
        0
    } else {
        u32::try_from(exp.max(1)).unwrap_or(0)
    }
}

//! The client protocol on one connection: upgrade, authentication, and the
//! frames of an authenticated session.
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::codec::{self, Encoding, SUBPROTOCOL_JSON, SUBPROTOCOL_PROTO};
use proto::handshake::{self, UpgradeRequest};
use proto::v1::{
    client_frame, server_frame::Frame, AuthOk, ClientFrame, ErrorCode, Pong, ServerFrame,
};
use proto::ws::Opcode;

use super::reader::Fatal;
use super::tables::ConnKey;
use super::timers::TimerKind;
use super::{error_frame, Phase, Shard};
use crate::auth::Claims;
use crate::mesh::{PresenceEntry, ShardMsg};
use crate::metrics::ShardStats;
use crate::outbound::Wire;

/// Token lifetimes beyond this (ten years) count as "never expires".
const MAX_EXPIRY_SECS: u64 = 10 * 365 * 86_400;
impl Shard {
    pub(super) fn phase(&self, key: ConnKey) -> Option<Phase> {
        self.conns.borrow().get(key).map(|c| c.phase)
    }

    /// Records liveness (any bytes count as a heartbeat).
    pub(super) fn touch(&self, key: ConnKey) {
        let now = self.now.get();
        if let Some(c) = self.conns.borrow_mut().get_mut(key) {
            // Before authentication the stamp is the accept time.
            if c.phase == Phase::Open {
                c.stamp = now;
            }
        }
    }

    /// Sends a fatal error and closes.
    pub(super) fn fail(&self, key: ConnKey, code: ErrorCode, message: &str) {
        tracing::debug!(shard = self.id, key, ?code, "closing connection: {message}");
        self.stats.error(code);
        self.close(key, Some(&error_frame(code, message, true)));
    }

    /// Answers a failed upgrade with an HTTP status and closes.
    pub(super) fn reject_upgrade(&self, key: ConnKey, status: u16, reason: &str) {
        tracing::debug!(shard = self.id, key, status, "upgrade refused: {reason}");
        let mut conns = self.conns.borrow_mut();
        if let Some(c) = conns.get_mut(key) {
            let response = handshake::response_error(status, reason);
            self.queue_bytes(key, c, &response);
            self.close_locked(key, c, None);
        }
    }

    /// Answers a WebSocket ping.
    pub(super) fn ws_pong(&self, key: ConnKey, data: &[u8]) {
        let mut frame = Vec::with_capacity(data.len() + 2);
        proto::ws::encode_frame(Opcode::Pong, data, None, &mut frame);
        if let Some(c) = self.conns.borrow_mut().get_mut(key) {
            self.queue_bytes(key, c, &frame);
        }
    }

    /// A complete upgrade request arrived.
    pub(super) fn on_upgrade(&self, key: ConnKey, req: UpgradeRequest) {
        if req.path != "/ws" {
            return self.reject_upgrade(key, 404, "no such endpoint: use /ws");
        }
        let (wire, protocol) = match pick_subprotocol(&req.protocols) {
            Some(p) => p,
            None => return self.reject_upgrade(key, 400, "unsupported subprotocol"),
        };
        let token = req.bearer.or(req.query_token);
        let claims = match &token {
            Some(t) => match self.node.verifier.verify(t) {
                Ok(claims) => Some(claims),
                Err(e) => {
                    self.stats.error(ErrorCode::Unauthenticated);
                    return self.reject_upgrade(key, 401, e.reason());
                }
            },
            None => None,
        };
        let accept = handshake::accept_key(&req.key);
        let response = handshake::response_switching(&accept, protocol);
        if let Some(c) = self.conns.borrow_mut().get_mut(key) {
            c.wire = wire;
            c.phase = Phase::Auth;
            self.queue_bytes(key, c, &response);
        }
        if let Some(claims) = claims {
            self.authenticate(key, claims, "");
        }
    }

    /// One client frame's bytes arrived.
    pub(super) fn on_payload(
        &self,
        key: ConnKey,
        enc: Encoding,
        bytes: &[u8],
    ) -> Result<(), Fatal> {
        ShardStats::inc(&self.stats.frames_in);
        let frame: ClientFrame = codec::decode_client(enc, bytes)
            .map_err(|e| Fatal(ErrorCode::BadFrame, e.to_string()))?;
        let Some(frame) = frame.frame else {
            return Err(Fatal(ErrorCode::UnknownFrame, "unknown frame type".into()));
        };
        match (self.phase(key), frame) {
            (Some(Phase::Auth), client_frame::Frame::Auth(auth)) => {
                match self.node.verifier.verify(&auth.token) {
                    Ok(claims) => {
                        self.authenticate(key, claims, &auth.device);
                        Ok(())
                    }
                    Err(e) => Err(Fatal(ErrorCode::Unauthenticated, e.reason().into())),
                }
            }
            (Some(Phase::Auth), _) => {
                Err(Fatal(ErrorCode::NotAuthenticated, "send Auth first".into()))
            }
            (Some(Phase::Open), frame) => {
                self.on_frame(key, frame);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn authenticate(&self, key: ConnKey, claims: Claims, device: &str) {
        let limits = &self.node.config.limits;
        let device: Arc<str> = match claims.device.as_deref() {
            _ if !device.is_empty() => Arc::from(device),
            Some(d) if !d.is_empty() => Arc::from(d),
            _ => self.no_device.clone(),
        };
        if device.len() > limits.max_name_bytes {
            self.fail(key, ErrorCode::InvalidArgument, "device name too long");
            return;
        }
        let user: Arc<str> = Arc::from(claims.user.as_str());
        let now = Instant::now();
        // A token may say it never expires (`exp` far away): no expiry timer
        // then, rather than an Instant overflow.
        let expires_in = claims.exp.saturating_sub(unix_secs());
        let expires_at =
            (expires_in <= MAX_EXPIRY_SECS).then(|| now + Duration::from_secs(expires_in));
        let heartbeat = now + Duration::from_millis(limits.heartbeat_timeout_ms);
        let (conn_id, wire) = {
            let mut conns = self.conns.borrow_mut();
            let Some(c) = conns.get_mut(key) else { return };
            c.phase = Phase::Open;
            c.user = Some(user.clone());
            c.device = device.clone();
            self.stats.handshake(now.saturating_duration_since(c.stamp));
            c.stamp = now;
            // exp fits u32 until 2106; beyond (or far away) counts as never.
            c.expires_at = expires_at
                .and_then(|_| u32::try_from(claims.exp.max(1)).ok())
                .unwrap_or(0);
            // One timer watches both heartbeat and token expiry.
            self.cancel(c.liveness.take());
            let at = expires_at.map_or(heartbeat, |e| e.min(heartbeat));
            c.liveness = Some(self.schedule(key, c.id, TimerKind::Liveness, at));
            (c.id, c.wire)
        };
        self.tables.borrow_mut().add_user(&user, key);
        let entry = PresenceEntry {
            shard: self.id as u16,
            conn_id,
            device: device.clone(),
            wire,
        };
        self.send_to(
            self.node.mesh.owner(&user),
            ShardMsg::Online {
                user: user.clone(),
                entry,
            },
        );
        let ok = AuthOk {
            user: user.to_string(),
            device: device.to_string(),
            conn_id,
            expires_at: claims.exp,
            heartbeat_ms: limits.heartbeat_interval_ms,
            node: self.node.config.node_id.clone(),
            shard: self.id as u32,
        };
        self.send_frame(
            key,
            &ServerFrame {
                frame: Some(Frame::AuthOk(ok)),
            },
        );
        // Offline messages and anything unacknowledged, before live ones.
        self.qos_sync(key, None);
    }

    fn on_frame(&self, key: ConnKey, frame: client_frame::Frame) {
        use client_frame::Frame as F;
        match frame {
            F::Ping(p) => self.send_frame(
                key,
                &ServerFrame {
                    frame: Some(Frame::Pong(Pong { nonce: p.nonce })),
                },
            ),
            F::Send(send) => self.on_send(key, send),
            F::Join(j) => self.on_join(key, j.room),
            F::Leave(l) => self.on_leave(key, l.room),
            F::Ack(a) => self.qos_ack(key, a.seq),
            F::Resume(r) => self.qos_resume(key, r.last_seq),
            F::Auth(_) => {
                self.stats.error(ErrorCode::AlreadyAuthenticated);
                self.send_frame(
                    key,
                    &error_frame(
                        ErrorCode::AlreadyAuthenticated,
                        "already authenticated",
                        false,
                    ),
                );
            }
        }
    }
}

/// Chooses the first subprotocol we speak; none offered means binary protobuf.
fn pick_subprotocol(offered: &[String]) -> Option<(Wire, Option<&'static str>)> {
    if offered.is_empty() {
        return Some((Wire::WsProto, None));
    }
    offered.iter().find_map(|p| match p.as_str() {
        SUBPROTOCOL_PROTO => Some((Wire::WsProto, Some(SUBPROTOCOL_PROTO))),
        SUBPROTOCOL_JSON => Some((Wire::WsJson, Some(SUBPROTOCOL_JSON))),
        _ => None,
    })
}

/// Seconds since the Unix epoch.
pub(super) fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch.
pub(super) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

//! The frames of an authenticated session: ping, sends, joins and leaves,
//! acks and resumes. Sends are validated here and handed to the router as
//! routes; the session answers each with a `SendResult` (a QoS 1 send to a
//! user is answered when the user's owner has stored it).
use std::sync::Arc;

use proto::v1::{
    client_frame, send, server_frame::Frame, ErrorCode, Pong, Qos, RoomJoined, RoomLeft, Send,
    SendResult, ServerFrame,
};

use super::route::Action;
use super::{error_frame, Ctx, Event, Route, Session};
use crate::grants::RoomsClaim;
use crate::rate::Bucket;
use crate::store::rooms::parse_epoch;
use crate::store::{RoomPos, RoomRange};

/// Why a send was refused: its code, the text, and a retry hint in ms.
type Refusal = (ErrorCode, &'static str, u32);

fn refusal(code: ErrorCode, why: &'static str) -> Refusal {
    (code, why, 0)
}

/// A user, room or device name: 1 to `max` bytes, no control characters.
pub(super) fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty() && name.len() <= max && !name.chars().any(char::is_control)
}
use crate::outbound::Outbound;
use crate::store::Stored;

impl Session {
    pub(super) fn on_frame(&mut self, cx: &mut Ctx, frame: client_frame::Frame) {
        use client_frame::Frame as F;
        match frame {
            F::Ping(p) => self.send_frame(
                cx,
                &ServerFrame {
                    frame: Some(Frame::Pong(Pong { nonce: p.nonce })),
                },
            ),
            F::Send(send) => self.on_send(cx, send),
            F::Join(j) => self.on_join(cx, j),
            F::Leave(l) => self.on_leave(cx, l.room),
            F::Ack(a) => self.qos_ack(cx, a.seq),
            F::Resume(r) => self.qos_resume(cx, r.last_seq),
            F::Auth(_) => self.refuse(cx, ErrorCode::AlreadyAuthenticated, "already authenticated"),
            F::Refresh(r) => self.on_refresh(cx, &r.token),
        }
    }

    /// A non-fatal error frame.
    fn refuse(&mut self, cx: &mut Ctx, code: ErrorCode, why: &str) {
        cx.env.stats.error(code);
        self.send_frame(cx, &error_frame(code, why, false));
    }

    fn on_send(&mut self, cx: &mut Ctx, send: Send) {
        self.send_checked(cx, send, false);
    }

    /// A send, once the backend's hook allowed it (`authorized`) or when
    /// no hook is asked.
    fn send_checked(&mut self, cx: &mut Ctx, send: Send, authorized: bool) {
        let client_msg_id = send.client_msg_id.clone();
        let outcome = match self.route_send(cx, send, authorized) {
            Ok(Some(msg_id)) => Ok(msg_id),
            // QoS 1 to a user, or to the backend: answered once stored.
            Ok(None) => return,
            Err(refusal) => {
                cx.env.stats.error(refusal.0);
                Err(refusal)
            }
        };
        self.send_result(cx, client_msg_id, outcome);
    }

    /// The connection's own rate (`backend.rate_per_conn`), and the room's
    /// (`backend.rate_per_room`, this shard's share of it).
    fn over_rate(&mut self, cx: &mut Ctx, room: Option<&Arc<str>>) -> Option<u32> {
        let (now, env) = (cx.now, cx.env);
        let mut wait = None;
        if env.rate_per_conn > 0 {
            let rate = env.rate_per_conn;
            let b = cx
                .fx
                .buckets
                .entry(self.id)
                .or_insert_with(|| Bucket::new(rate, now));
            wait = b.take(rate, now).err();
        }
        if let (None, Some(room), true) = (wait, room, env.rate_per_room > 0) {
            let rate = env.rate_per_room;
            cx.fx.prune_room_buckets(rate, now);
            let b = cx
                .fx
                .room_buckets
                .entry(room.clone())
                .or_insert_with(|| Bucket::new(rate, now));
            wait = b.take(rate, now).err();
        }
        wait.map(|w| u32::try_from(w.as_millis()).unwrap_or(u32::MAX).max(1))
    }

    /// May this connection use `room` (join, or publish)?
    pub(super) fn room_allowed(&self, cx: &Ctx, room: &str, publish: bool) -> bool {
        match (cx.env.rooms_claim, cx.fx.grants.get(&self.id)) {
            (RoomsClaim::Ignore, _) => true,
            (_, Some(g)) if publish => g.may_publish(room),
            (_, Some(g)) => g.may_join(room),
            (RoomsClaim::Require, None) => false,
            (RoomsClaim::Enforce, None) => true,
        }
    }

    /// Routes a client's send. `Ok(Some(id))`: handed on, answer now.
    /// `Ok(None)`: answered later (QoS 1 to a user once its owner stored
    /// it, to the backend once appended, to a room once the hook allowed).
    fn route_send(
        &mut self,
        cx: &mut Ctx,
        mut send: Send,
        authorized: bool,
    ) -> Result<Option<String>, Refusal> {
        let max_name = cx.env.limits.max_name_bytes;
        let qos1 = send.qos() == Qos::AtLeastOnce;
        let backend = matches!(send.to, Some(send::To::Backend(_)));
        let (name, is_room) = match send.to {
            None => {
                return Err(refusal(
                    ErrorCode::InvalidArgument,
                    "send needs a user, room or backend",
                ))
            }
            Some(send::To::Backend(_)) if !cx.env.backend => {
                return Err(refusal(
                    ErrorCode::Unavailable,
                    "no backend stream is configured",
                ))
            }
            Some(send::To::Backend(_)) => (String::new(), false),
            Some(send::To::User(u)) => (u, false),
            Some(send::To::Room(r)) => (r, true),
        };
        if !backend && (name.is_empty() || name.len() > max_name) {
            return Err(refusal(
                ErrorCode::InvalidArgument,
                "target name empty or too long",
            ));
        }
        if send.client_msg_id.len() > max_name {
            return Err(refusal(
                ErrorCode::InvalidArgument,
                "client_msg_id too long",
            ));
        }
        if is_room && !self.room_allowed(cx, &name, true) {
            return Err(refusal(
                ErrorCode::Forbidden,
                "the token does not allow publishing to this room",
            ));
        }
        if cx.fx.overloaded {
            return Err(refusal(
                ErrorCode::Overloaded,
                "node overloaded: retry later",
            ));
        }
        let name: Arc<str> = Arc::from(name);
        if is_room && cx.env.hook && !authorized {
            // Answered once the backend's hook has decided.
            let room = name.clone();
            send.to = Some(send::To::Room(room.to_string()));
            let send = Some(Box::new(send));
            cx.fx.routes.push(Route::Authorize {
                action: Action::Publish,
                room,
                send,
            });
            return Ok(None);
        }
        if let Some(ms) = self.over_rate(cx, is_room.then_some(&name)) {
            return Err((
                ErrorCode::RateLimited,
                "over the send rate: retry later",
                ms,
            ));
        }
        let msg_id = cx.fx.message_id(cx.env);
        if backend {
            cx.fx.routes.push(Route::ToBackend {
                client_msg_id: send.client_msg_id,
                msg_id,
                qos1,
                payload: send.payload,
            });
            return Ok(None);
        }
        let stored = Stored {
            seq: 0,
            msg_id: msg_id.clone(),
            from: self.user.as_deref().unwrap_or_default().to_owned(),
            room: if is_room {
                name.to_string()
            } else {
                String::new()
            },
            payload: send.payload,
            timestamp_ms: cx.env.clock.unix_ms(cx.now),
        };
        if qos1 && is_room && cx.env.rooms.keeps_history(&name) {
            // Stored once in the room's history; answered once it is.
            cx.fx.routes.push(Route::RoomAppend {
                room: name,
                msg: Box::new(stored),
                client_msg_id: send.client_msg_id,
            });
            return Ok(None);
        }
        if qos1 && !is_room {
            cx.fx.routes.push(Route::Append {
                user: name,
                msg: Box::new(stored),
                client_msg_id: send.client_msg_id,
            });
            return Ok(None);
        }
        let qos = if qos1 {
            Qos::AtLeastOnce
        } else {
            Qos::AtMostOnce
        };
        let msg = Outbound::new(stored.to_frame(qos));
        cx.fx.routes.push(if is_room {
            Route::ToRoom { room: name, msg }
        } else {
            Route::ToUser { user: name, msg }
        });
        Ok(Some(msg_id))
    }

    fn send_result(
        &mut self,
        cx: &mut Ctx,
        client_msg_id: String,
        outcome: Result<String, Refusal>,
    ) {
        let result = match outcome {
            Ok(msg_id) => SendResult {
                client_msg_id,
                accepted: true,
                code: 0,
                message: String::new(),
                msg_id,
                retry_after_ms: 0,
            },
            Err((code, why, retry_after_ms)) => SendResult {
                client_msg_id,
                accepted: false,
                code: code as i32,
                message: why.to_owned(),
                msg_id: String::new(),
                retry_after_ms,
            },
        };
        self.send_frame(
            cx,
            &ServerFrame {
                frame: Some(Frame::SendResult(result)),
            },
        );
    }

    pub(super) fn on_join(&mut self, cx: &mut Ctx, join: proto::v1::JoinRoom) {
        let room = join.room;
        let limits = &cx.env.limits;
        if !valid_name(&room, limits.max_name_bytes) {
            return self.refuse(
                cx,
                ErrorCode::InvalidArgument,
                "room name empty, too long or with control characters",
            );
        }
        if !self.room_allowed(cx, &room, false) {
            return self.refuse(
                cx,
                ErrorCode::Forbidden,
                "the token does not allow joining this room",
            );
        }
        let room: Arc<str> = Arc::from(room);
        if cx.env.rooms.keeps_history(&room) {
            let range = match join.since {
                Some(p) => RoomRange::After(RoomPos {
                    epoch: parse_epoch(&p.epoch).unwrap_or(0),
                    offset: p.offset,
                }),
                None => RoomRange::Last((join.recent as usize).min(cx.env.rooms.history_size)),
            };
            self.ask_history(cx, &room, range);
        }
        if cx.env.hook && !self.rooms.contains(&room) {
            // Joined once the backend's hook has decided.
            cx.fx.routes.push(Route::Authorize {
                action: Action::Join,
                room,
                send: None,
            });
            return;
        }
        self.join_now(cx, room);
    }

    /// The backend's hook decided on a join or a publish.
    pub(super) fn on_authorized(
        &mut self,
        cx: &mut Ctx,
        action: Action,
        room: Arc<str>,
        allow: bool,
        send: Option<Box<Send>>,
    ) {
        if self.phase != super::Phase::Open {
            return;
        }
        match (action, allow, send) {
            (Action::Join, true, _) => self.join_now(cx, room),
            (Action::Join, false, _) => {
                self.forget_room(cx, &room);
                self.refuse(
                    cx,
                    ErrorCode::Forbidden,
                    "the backend does not allow joining this room",
                )
            }
            (Action::Publish, true, Some(send)) => self.send_checked(cx, *send, true),
            (Action::Publish, false, Some(send)) => {
                cx.env.stats.error(ErrorCode::Forbidden);
                let why = "the backend does not allow publishing to this room";
                self.send_result(
                    cx,
                    send.client_msg_id,
                    Err(refusal(ErrorCode::Forbidden, why)),
                );
            }
            (Action::Publish, _, None) => {}
        }
    }

    fn join_now(&mut self, cx: &mut Ctx, room: Arc<str>) {
        let limits = &cx.env.limits;
        if !self.rooms.contains(&room) {
            if self.rooms.len() >= limits.max_rooms_per_conn {
                self.forget_room(cx, &room);
                return self.refuse(
                    cx,
                    ErrorCode::TooManyRooms,
                    "too many rooms on this connection",
                );
            }
            // A boxed slice (16 B, no capacity word): joins are rare.
            let mut rooms = std::mem::take(&mut self.rooms).into_vec();
            rooms.push(room.clone());
            self.rooms = rooms.into_boxed_slice();
            cx.fx.routes.push(Route::Joined(room.clone()));
            cx.fx.routes.push(Route::Event(Event::Joined(room.clone())));
        }
        if cx.env.rooms.keeps_history(&room) {
            // Answered once the room's history was read.
            return self.join_history(cx, &room);
        }
        self.send_frame(
            cx,
            &ServerFrame {
                frame: Some(Frame::Joined(RoomJoined {
                    room: room.to_string(),
                    ..RoomJoined::default()
                })),
            },
        );
    }

    fn on_leave(&mut self, cx: &mut Ctx, room: String) {
        if let Some(i) = self.rooms.iter().position(|r| **r == *room) {
            let mut rooms = std::mem::take(&mut self.rooms).into_vec();
            let left = rooms.remove(i);
            self.rooms = rooms.into_boxed_slice();
            self.forget_room(cx, &left);
            cx.fx.routes.push(Route::Event(Event::Left(left.clone())));
            cx.fx.routes.push(Route::Left(left));
        }
        self.send_frame(
            cx,
            &ServerFrame {
                frame: Some(Frame::Left(RoomLeft { room })),
            },
        );
    }
}

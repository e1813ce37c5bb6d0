//! The frames of an authenticated session: ping, sends, joins and leaves,
//! acks and resumes. Sends are validated here and handed to the router as
//! routes; the session answers each with a `SendResult` (a QoS 1 send to a
//! user is answered when the user's owner has stored it).
use std::sync::Arc;

use proto::v1::{
    client_frame, send, server_frame::Frame, ErrorCode, Pong, Qos, RoomJoined, RoomLeft, Send,
    SendResult, ServerFrame,
};

use super::{error_frame, Ctx, Route, Session};
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
            F::Join(j) => self.on_join(cx, j.room),
            F::Leave(l) => self.on_leave(cx, l.room),
            F::Ack(a) => self.qos_ack(cx, a.seq),
            F::Resume(r) => self.qos_resume(cx, r.last_seq),
            F::Auth(_) => self.refuse(cx, ErrorCode::AlreadyAuthenticated, "already authenticated"),
        }
    }

    /// A non-fatal error frame.
    fn refuse(&mut self, cx: &mut Ctx, code: ErrorCode, why: &str) {
        cx.env.stats.error(code);
        self.send_frame(cx, &error_frame(code, why, false));
    }

    fn on_send(&mut self, cx: &mut Ctx, send: Send) {
        let client_msg_id = send.client_msg_id.clone();
        let outcome = match self.route_send(cx, send) {
            Ok(Some(msg_id)) => Ok(msg_id),
            // QoS 1 to a user: answered once the owner has stored it.
            Ok(None) => return,
            Err((code, why)) => {
                cx.env.stats.error(code);
                Err((code, why))
            }
        };
        self.send_result(cx, client_msg_id, outcome);
    }

    /// Routes a client's send. `Ok(Some(id))`: handed on, answer now.
    /// `Ok(None)`: QoS 1 to a user, answered by the user's owner when stored.
    fn route_send(
        &mut self,
        cx: &mut Ctx,
        send: Send,
    ) -> Result<Option<String>, (ErrorCode, &'static str)> {
        let max_name = cx.env.limits.max_name_bytes;
        let qos1 = send.qos() == Qos::AtLeastOnce;
        let (name, is_room) = match send.to {
            None => {
                return Err((
                    ErrorCode::InvalidArgument,
                    "send needs a user, room or backend",
                ))
            }
            Some(send::To::Backend(_)) => {
                return Err((ErrorCode::Unavailable, "no backend stream is configured"))
            }
            Some(send::To::User(u)) => (u, false),
            Some(send::To::Room(r)) => (r, true),
        };
        if name.is_empty() || name.len() > max_name {
            return Err((ErrorCode::InvalidArgument, "target name empty or too long"));
        }
        if send.client_msg_id.len() > max_name {
            return Err((ErrorCode::InvalidArgument, "client_msg_id too long"));
        }
        if cx.fx.overloaded {
            return Err((ErrorCode::Overloaded, "node overloaded: retry later"));
        }
        let msg_id = cx.fx.message_id(cx.env);
        let name: Arc<str> = Arc::from(name);
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
        outcome: Result<String, (ErrorCode, &str)>,
    ) {
        let result = match outcome {
            Ok(msg_id) => SendResult {
                client_msg_id,
                accepted: true,
                code: 0,
                message: String::new(),
                msg_id,
            },
            Err((code, why)) => SendResult {
                client_msg_id,
                accepted: false,
                code: code as i32,
                message: why.to_owned(),
                msg_id: String::new(),
            },
        };
        self.send_frame(
            cx,
            &ServerFrame {
                frame: Some(Frame::SendResult(result)),
            },
        );
    }

    fn on_join(&mut self, cx: &mut Ctx, room: String) {
        let limits = &cx.env.limits;
        if room.is_empty() || room.len() > limits.max_name_bytes {
            return self.refuse(
                cx,
                ErrorCode::InvalidArgument,
                "room name empty or too long",
            );
        }
        let room: Arc<str> = Arc::from(room);
        if !self.rooms.contains(&room) {
            if self.rooms.len() >= limits.max_rooms_per_conn {
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
        }
        self.send_frame(
            cx,
            &ServerFrame {
                frame: Some(Frame::Joined(RoomJoined {
                    room: room.to_string(),
                })),
            },
        );
    }

    fn on_leave(&mut self, cx: &mut Ctx, room: String) {
        if let Some(i) = self.rooms.iter().position(|r| **r == *room) {
            let mut rooms = std::mem::take(&mut self.rooms).into_vec();
            let left = rooms.remove(i);
            self.rooms = rooms.into_boxed_slice();
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

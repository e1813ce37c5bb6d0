//! A session's sends, joins and leaves: validated here, routed through the
//! owner shards of the names involved.
use std::sync::Arc;

use proto::v1::{
    send, server_frame::Frame, ErrorCode, Qos, RoomJoined, RoomLeft, Send, SendResult, ServerFrame,
};

use super::tables::ConnKey;
use super::{error_frame, Shard};
use crate::inbox::{ReplyTo, Stored};
use crate::mesh::ShardMsg;
use crate::outbound::Outbound;

impl Shard {
    pub(super) fn on_send(&self, key: ConnKey, send: Send) {
        let client_msg_id = send.client_msg_id.clone();
        match self.route_send(key, send) {
            Ok(Some(msg_id)) => self.send_result(key, client_msg_id, Ok(msg_id)),
            // QoS 1 to a user: the owner answers once the message is stored.
            Ok(None) => {}
            Err((code, why)) => {
                self.stats.error(code);
                self.send_result(key, client_msg_id, Err((code, why)))
            }
        }
    }

    /// Routes a client's send. `Ok(Some(id))`: handed on, answer now.
    /// `Ok(None)`: QoS 1 to a user, answered by the user's owner when stored.
    fn route_send(
        &self,
        key: ConnKey,
        send: Send,
    ) -> Result<Option<String>, (ErrorCode, &'static str)> {
        let max_name = self.node.config.limits.max_name_bytes;
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
        if self.outbox.overloaded() {
            return Err((ErrorCode::Overloaded, "node overloaded: retry later"));
        }
        let (from, conn_id) = {
            let conns = self.conns.borrow();
            let c = conns.get(key);
            (c.and_then(|c| c.user.clone()), c.map_or(0, |c| c.id))
        };
        let msg_id = self.message_id();
        let name: Arc<str> = Arc::from(name);
        let owner = self.node.mesh.owner(&name);
        let stored = Stored {
            seq: 0,
            msg_id: msg_id.clone(),
            from: from.as_deref().unwrap_or_default().to_owned(),
            room: if is_room {
                name.to_string()
            } else {
                String::new()
            },
            payload: send.payload,
            timestamp_ms: super::session::unix_millis(),
        };
        if qos1 && !is_room {
            let reply = Some(ReplyTo {
                shard: self.id as u16,
                key,
                conn_id,
            });
            let client_msg_id = send.client_msg_id;
            self.send_to(
                owner,
                ShardMsg::Qos1Append {
                    user: name,
                    msg: Box::new(stored),
                    client_msg_id,
                    reply,
                },
            );
            return Ok(None);
        }
        let qos = if qos1 {
            Qos::AtLeastOnce
        } else {
            Qos::AtMostOnce
        };
        let msg = Outbound::new(stored.to_frame(qos));
        let routed = if is_room {
            ShardMsg::ToRoom { room: name, msg }
        } else {
            ShardMsg::ToUser { user: name, msg }
        };
        self.send_to(owner, routed);
        Ok(Some(msg_id))
    }

    fn send_result(
        &self,
        key: ConnKey,
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
            key,
            &ServerFrame {
                frame: Some(Frame::SendResult(result)),
            },
        );
    }

    pub(super) fn on_join(&self, key: ConnKey, room: String) {
        let limits = &self.node.config.limits;
        if room.is_empty() || room.len() > limits.max_name_bytes {
            self.stats.error(ErrorCode::InvalidArgument);
            return self.send_frame(
                key,
                &error_frame(
                    ErrorCode::InvalidArgument,
                    "room name empty or too long",
                    false,
                ),
            );
        }
        let room: Arc<str> = Arc::from(room);
        let added = {
            let mut conns = self.conns.borrow_mut();
            let Some(c) = conns.get_mut(key) else { return };
            if c.rooms.contains(&room) {
                false
            } else if c.rooms.len() >= limits.max_rooms_per_conn {
                drop(conns);
                self.stats.error(ErrorCode::TooManyRooms);
                return self.send_frame(
                    key,
                    &error_frame(
                        ErrorCode::TooManyRooms,
                        "too many rooms on this connection",
                        false,
                    ),
                );
            } else {
                // A boxed slice (16 B, no capacity word): joins are rare.
                let mut rooms = std::mem::take(&mut c.rooms).into_vec();
                rooms.push(room.clone());
                c.rooms = rooms.into_boxed_slice();
                true
            }
        };
        if added && self.tables.borrow_mut().join(&room, key) {
            let owner = self.node.mesh.owner(&room);
            self.send_to(
                owner,
                ShardMsg::Interest {
                    room: room.clone(),
                    shard: self.id as u16,
                    on: true,
                },
            );
        }
        self.send_frame(
            key,
            &ServerFrame {
                frame: Some(Frame::Joined(RoomJoined {
                    room: room.to_string(),
                })),
            },
        );
    }

    pub(super) fn on_leave(&self, key: ConnKey, room: String) {
        let removed = {
            let mut conns = self.conns.borrow_mut();
            let Some(c) = conns.get_mut(key) else { return };
            let before = c.rooms.len();
            let mut rooms = std::mem::take(&mut c.rooms).into_vec();
            rooms.retain(|r| **r != *room);
            c.rooms = rooms.into_boxed_slice();
            before != c.rooms.len()
        };
        if removed {
            self.leave_room(key, &room);
        }
        self.send_frame(
            key,
            &ServerFrame {
                frame: Some(Frame::Left(RoomLeft { room })),
            },
        );
    }

    /// Drops a local membership; withdraws interest when it was the last.
    pub(super) fn leave_room(&self, key: ConnKey, room: &str) {
        if self.tables.borrow_mut().leave(room, key) {
            let owner = self.node.mesh.owner(room);
            self.send_to(
                owner,
                ShardMsg::Interest {
                    room: Arc::from(room),
                    shard: self.id as u16,
                    on: false,
                },
            );
        }
    }
}

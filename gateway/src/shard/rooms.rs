//! A session's sends, joins and leaves: validated here, routed through the
//! owner shards of the names involved.
use std::sync::Arc;

use proto::v1::{
    send, server_frame::Frame, Deliver, ErrorCode, Qos, RoomJoined, RoomLeft, Send, SendResult,
    ServerFrame,
};

use super::tables::ConnKey;
use super::{error_frame, Shard};
use crate::mesh::ShardMsg;
use crate::outbound::Outbound;

impl Shard {
    pub(super) fn on_send(&self, key: ConnKey, send: Send) {
        let client_msg_id = send.client_msg_id.clone();
        match self.route_send(key, send) {
            Ok(msg_id) => self.send_result(key, client_msg_id, Ok(msg_id)),
            Err((code, why)) => {
                self.stats.error(code);
                self.send_result(key, client_msg_id, Err((code, why)))
            }
        }
    }

    fn route_send(&self, key: ConnKey, send: Send) -> Result<String, (ErrorCode, &'static str)> {
        let max_name = self.node.config.limits.max_name_bytes;
        if send.qos() == Qos::AtLeastOnce {
            return Err((
                ErrorCode::Unavailable,
                "QoS 1 is not available on this node yet",
            ));
        }
        let target = match send.to {
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
        if target.0.is_empty() || target.0.len() > max_name {
            return Err((ErrorCode::InvalidArgument, "target name empty or too long"));
        }
        if self.outbox.overloaded() {
            return Err((ErrorCode::Overloaded, "node overloaded: retry later"));
        }
        let from = self.conns.borrow().get(key).and_then(|c| c.user.clone());
        let msg_id = self.message_id();
        let name: Arc<str> = Arc::from(target.0);
        let deliver = Deliver {
            seq: 0,
            msg_id: msg_id.clone(),
            from: from.as_deref().unwrap_or_default().to_owned(),
            room: if target.1 {
                name.to_string()
            } else {
                String::new()
            },
            qos: Qos::AtMostOnce as i32,
            payload: send.payload,
            timestamp_ms: super::session::unix_millis(),
        };
        let msg = Outbound::new(ServerFrame {
            frame: Some(Frame::Deliver(deliver)),
        });
        let owner = self.node.mesh.owner(&name);
        let routed = if target.1 {
            ShardMsg::ToRoom { room: name, msg }
        } else {
            ShardMsg::ToUser { user: name, msg }
        };
        self.send_to(owner, routed);
        Ok(msg_id)
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
                c.rooms.push(room.clone());
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
            c.rooms.retain(|r| **r != *room);
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

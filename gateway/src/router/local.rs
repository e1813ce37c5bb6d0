//! What this shard's sessions ask the router (`session::Route`), a
//! connection's rooms and user when it closes, the appends a QoS 1 room
//! message makes for its local members, and drain redirects.
use std::sync::Arc;

use proto::v1::server_frame::Frame;

use super::tables::ConnKey;
use super::Router;
use crate::cluster::route;
use crate::mesh::{DataMsg, PresenceEntry, Redirect};
use crate::outbound::{Outbound, Wire};
use crate::session::Route;
use crate::store::ReplyTo;

impl Router {
    /// A route of the session of connection `from`. Gives back the routes
    /// the router does not carry out (to the backend services).
    pub(crate) fn route(&mut self, from: ReplyTo, route: Route) -> Option<Route> {
        match route {
            Route::Online { user, device, wire } => {
                self.tables.add_user(&user, from.key);
                let entry = PresenceEntry {
                    shard: self.me,
                    conn_id: from.conn_id,
                    device,
                    wire,
                };
                let to = self.owner(&user);
                match &mut self.held_online {
                    Some(held) => held.push(to, (user, entry)),
                    None => self.send(to, DataMsg::Online { user, entry }),
                }
            }
            Route::Joined(room) => {
                if self.tables.join(&room, from.key) {
                    let (to, shard) = (self.owner(&room), self.me);
                    self.send(
                        to,
                        DataMsg::Interest {
                            room,
                            shard,
                            on: true,
                        },
                    );
                }
            }
            Route::Left(room) => self.leave(from.key, &room),
            Route::ToUser { user, msg } => {
                self.send(self.owner(&user), DataMsg::ToUser { user, msg })
            }
            Route::ToRoom { room, msg } => {
                self.send(self.owner(&room), DataMsg::ToRoom { room, msg })
            }
            Route::Append {
                user,
                msg,
                client_msg_id,
            } => {
                let to = self.owner(&user);
                let reply = Some(from);
                let append = DataMsg::Qos1Append {
                    user,
                    msg,
                    client_msg_id,
                    reply,
                };
                self.send(to, append);
            }
            Route::Read {
                user,
                device,
                after,
                max,
            } => {
                let to = self.owner(&user);
                let conn = from;
                self.send(
                    to,
                    DataMsg::Qos1Read {
                        user,
                        device,
                        after,
                        max,
                        conn,
                    },
                );
            }
            Route::RoomAppend {
                room,
                msg,
                client_msg_id,
            } => {
                let to = self.owner(&room);
                let append = crate::store::RoomAppend {
                    room,
                    msg: *msg,
                    qos1: true,
                    client_msg_id,
                    reply: Some(from),
                };
                self.send(to, DataMsg::RoomAppend(Box::new(append)));
            }
            Route::RoomRead { room, range } => {
                let to = self.owner(&room);
                self.send(
                    to,
                    DataMsg::RoomRead {
                        room,
                        range,
                        conn: from,
                    },
                );
            }
            Route::Ack { user, device, seq } => {
                self.send(self.owner(&user), DataMsg::Qos1Ack { user, device, seq })
            }
            other @ (Route::ToBackend { .. }
            | Route::Event(_)
            | Route::Authorize { .. }
            | Route::SseOpened
            | Route::SsePost { .. }) => return Some(other),
        }
        None
    }

    /// Drops a local membership; withdraws interest when it was the last.
    pub(crate) fn leave(&mut self, key: ConnKey, room: &Arc<str>) {
        if self.tables.leave(room, key) {
            let shard = self.me;
            let room = room.clone();
            self.send(
                self.owner(&room),
                DataMsg::Interest {
                    room,
                    shard,
                    on: false,
                },
            );
        }
    }

    /// A connection of `user` (id `conn_id`, at `key`) closed; its rooms
    /// are left with `leave` first.
    pub(crate) fn closed(&mut self, key: ConnKey, user: &Arc<str>, conn_id: u64) {
        self.tables.remove_user(user, key);
        let shard = self.me;
        let to = self.owner(user);
        // Its `Online` still held (an upgrade's import takes it back): it
        // never goes, so no `Offline` either (`held`).
        if let Some(held) = &mut self.held_online {
            if held.drop_conn(conn_id) {
                return;
            }
        }
        let msg = DataMsg::Offline {
            user: user.clone(),
            shard,
            conn_id,
        };
        self.send(to, msg);
    }

    /// The appends a QoS 1 room message makes: one per distinct user among
    /// `users` (this shard's members of the room), each to the user's
    /// owner. The message id dedupes the copies other shards store for the
    /// same user.
    pub(crate) fn store_for(&mut self, mut users: Vec<Arc<str>>, msg: &Outbound) {
        let Some(Frame::Deliver(d)) = msg.frame().frame.as_ref() else {
            return;
        };
        users.sort_unstable();
        users.dedup();
        for user in users {
            let stored = crate::store::Stored {
                seq: 0,
                ..crate::store::Stored::from_deliver(d)
            };
            let append = DataMsg::Qos1Append {
                client_msg_id: format!("room:{}", d.msg_id),
                msg: Box::new(stored),
                reply: None,
                user: user.clone(),
            };
            self.send(self.owner(&user), append);
        }
    }

    /// Where a draining shard sends a client of `user` on `wire`: the
    /// address of the node `redirect` picks (never this one), or "" when
    /// there is none (the client reconnects where it came from).
    pub(crate) fn redirect(
        &mut self,
        redirect: &Redirect,
        user: Option<&str>,
        wire: Wire,
    ) -> String {
        let turn = self.redirect_turn;
        self.redirect_turn = turn.wrapping_add(1);
        match route::pick(redirect.policy, &redirect.nodes, user, None, turn) {
            Some(n) if wire == Wire::Tcp => n.tcp.clone(),
            Some(n) => format!("ws://{}/ws", n.ws),
            None => String::new(),
        }
    }
}

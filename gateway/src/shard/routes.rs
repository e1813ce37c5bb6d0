//! What sessions ask of the router (`session::Route`), turned into table
//! updates and mesh messages to the owner shards of the names involved.
use std::sync::Arc;

use super::tables::ConnKey;
use super::Shard;
use crate::mesh::{DataMsg, PresenceEntry};
use crate::session::Route;
use crate::store::ReplyTo;

impl Shard {
    /// Carries out one route of the session at `key` (id `conn_id`).
    pub(super) fn apply_route(&self, key: ConnKey, conn_id: u64, route: Route) {
        let me = ReplyTo {
            shard: self.id as u16,
            key,
            conn_id,
        };
        let mesh = &self.deps.mesh;
        match route {
            Route::Online { user, device, wire } => {
                self.tables.borrow_mut().add_user(&user, key);
                let entry = PresenceEntry {
                    shard: self.id as u16,
                    conn_id,
                    device,
                    wire,
                };
                self.send_to(mesh.owner(&user), DataMsg::Online { user, entry });
            }
            Route::Joined(room) => {
                if self.tables.borrow_mut().join(&room, key) {
                    let owner = mesh.owner(&room);
                    let shard = self.id as u16;
                    self.send_to(
                        owner,
                        DataMsg::Interest {
                            room,
                            shard,
                            on: true,
                        },
                    );
                }
            }
            Route::Left(room) => self.leave_room(key, &room),
            Route::ToUser { user, msg } => {
                self.send_to(mesh.owner(&user), DataMsg::ToUser { user, msg })
            }
            Route::ToRoom { room, msg } => {
                self.send_to(mesh.owner(&room), DataMsg::ToRoom { room, msg })
            }
            Route::Append {
                user,
                msg,
                client_msg_id,
            } => {
                let owner = mesh.owner(&user);
                let reply = Some(me);
                let append = DataMsg::Qos1Append {
                    user,
                    msg,
                    client_msg_id,
                    reply,
                };
                self.send_to(owner, append);
            }
            Route::Read {
                user,
                device,
                after,
                max,
            } => {
                let owner = mesh.owner(&user);
                let read = DataMsg::Qos1Read {
                    user,
                    device,
                    after,
                    max,
                    conn: me,
                };
                self.send_to(owner, read);
            }
            r @ (Route::ToBackend { .. } | Route::Event(_)) => self.backend_route(key, me, r),
            Route::Authorize { action, room, send } => self.authorize(key, me, action, room, send),
            Route::Ack { user, device, seq } => {
                let owner = mesh.owner(&user);
                self.send_to(owner, DataMsg::Qos1Ack { user, device, seq });
            }
        }
    }

    /// Drops a local membership; withdraws interest when it was the last.
    pub(super) fn leave_room(&self, key: ConnKey, room: &str) {
        if self.tables.borrow_mut().leave(room, key) {
            let owner = self.deps.mesh.owner(room);
            self.send_to(
                owner,
                DataMsg::Interest {
                    room: Arc::from(room),
                    shard: self.id as u16,
                    on: false,
                },
            );
        }
    }
}

//! The shard's router: drains its mesh queue, routes what it owns and
//! hands what is local to the sessions.
use std::rc::Rc;
use std::sync::Arc;

use proto::v1::{server_frame::Frame, Qos};

use super::tables::ConnKey;
use super::wake::yield_now;
use super::Shard;
use crate::mesh::{Command, DataMsg, ShardMsg};
use crate::outbound::Outbound;
use crate::session::{Ctx, Delivery};
use crate::store::Stored;
use crate::sys;

/// Messages handled before letting connections run.
const BATCH: usize = 1024;

impl Shard {
    /// Drains the shard's queue, then sleeps on its eventfd until woken.
    pub(super) async fn router_task(self: Rc<Self>) {
        let mesh = &self.node.mesh;
        let efd = mesh.eventfd(self.id);
        let waiter = match super::wake::readiness(efd) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(shard = self.id, "cannot poll the shard's eventfd: {e}");
                return;
            }
        };
        loop {
            self.tick_clock();
            let mut handled = 0;
            while let Some(msg) = mesh.pop(self.id) {
                self.handle(msg);
                handled += 1;
                if handled % BATCH == 0 {
                    self.flush_store();
                    yield_now().await;
                }
            }
            // One pipeline per round for a remote inbox store.
            self.flush_store();
            if !mesh.park(self.id) {
                continue;
            }
            if waiter.readable(false).await.is_err() {
                tracing::error!(shard = self.id, "eventfd poll failed");
                return;
            }
            sys::eventfd_drain(efd);
        }
    }

    fn handle(&self, msg: ShardMsg) {
        match msg {
            ShardMsg::Data(m) => self.handle_data(m),
            ShardMsg::Command(c) => self.handle_command(c),
        }
    }

    fn handle_data(&self, msg: DataMsg) {
        match msg {
            DataMsg::ToUser { user, msg } => {
                let shards = self.tables.borrow().user_shards(&user);
                for s in shards {
                    let (user, msg) = (user.clone(), msg.clone());
                    self.send_to(s as usize, DataMsg::UserLocal { user, msg });
                }
            }
            DataMsg::UserLocal { user, msg } => {
                let tables = self.tables.borrow();
                self.deliver_live(tables.user_conns(&user).iter().copied(), &msg);
            }
            DataMsg::ToRoom { room, msg } => {
                let shards = self.tables.borrow().room_shards(&room).to_vec();
                for s in shards {
                    let (room, msg) = (room.clone(), msg.clone());
                    self.send_to(s as usize, DataMsg::RoomLocal { room, msg });
                }
            }
            DataMsg::RoomLocal { room, msg } => self.fan_out(&room, &msg),
            DataMsg::Online { user, entry } => self.tables.borrow_mut().online(user, entry),
            DataMsg::Offline {
                user,
                shard,
                conn_id,
            } => self.tables.borrow_mut().offline(&user, shard, conn_id),
            DataMsg::Interest { room, shard, on } => {
                self.tables.borrow_mut().interest(room, shard, on)
            }
            DataMsg::Qos1Append {
                user,
                msg,
                client_msg_id,
                reply,
            } => self.owner_append(user, *msg, client_msg_id, reply),
            DataMsg::Qos1Deliver { user, seq, msg } => {
                let keys = self.tables.borrow().user_conns(&user).to_vec();
                for key in keys {
                    let stored = Delivery::Stored { seq, msg: &msg };
                    self.drive(key, |s, cx| s.handle_routed(cx, stored));
                }
            }
            DataMsg::Qos1Ack { user, device, seq } => self.owner_ack(user, device, seq),
            DataMsg::Qos1Read {
                user,
                device,
                after,
                max,
                conn,
            } => self.owner_read(user, device, after, max, conn),
            DataMsg::Qos1Replay { conn, replay } => {
                let replay = Delivery::Replay(replay);
                self.drive_if(conn.key, Some(conn.conn_id), |s, cx| {
                    s.handle_routed(cx, replay)
                });
            }
            DataMsg::SendDone { reply, result } => {
                let result = Delivery::SendResult(*result);
                self.drive_if(reply.key, Some(reply.conn_id), |s, cx| {
                    s.handle_routed(cx, result)
                });
            }
            DataMsg::StoreReady => self.drain_store(),
        }
    }

    fn handle_command(&self, cmd: Command) {
        match cmd {
            Command::Presence { user, reply } => {
                let entries = self.tables.borrow().presence(&user).to_vec();
                let _ = reply.try_send(entries);
            }
            Command::Kick { user, reply } => {
                let (count, shards) = {
                    let t = self.tables.borrow();
                    (t.presence(&user).len(), t.user_shards(&user))
                };
                for s in shards {
                    self.send_to(s as usize, Command::KickLocal { user: user.clone() });
                }
                if let Some(reply) = reply {
                    let _ = reply.try_send(count);
                }
            }
            Command::KickLocal { user } => {
                let keys = self.tables.borrow().user_conns(&user).to_vec();
                for key in keys {
                    self.drive(key, |s, cx| s.kick(cx));
                }
            }
            Command::Drain => self.start_drain(),
        }
    }

    /// Delivers to every local member of `room`. A QoS 1 room message is
    /// stored in each local member's inbox instead (once per user: the
    /// message id dedupes the copies other shards store for the same user).
    fn fan_out(&self, room: &Arc<str>, msg: &Outbound) {
        let Some(Frame::Deliver(d)) = msg.frame().frame.as_ref() else {
            return;
        };
        if d.qos() != Qos::AtLeastOnce {
            let tables = self.tables.borrow();
            self.deliver_live(tables.room_members(room), msg);
            return;
        }
        let mut users: Vec<Arc<str>> = {
            let tables = self.tables.borrow();
            let conns = self.conns.borrow();
            tables
                .room_members(room)
                .filter_map(|k| conns.get(k).and_then(|c| c.session.user().cloned()))
                .collect()
        };
        users.sort_unstable();
        users.dedup();
        for user in users {
            let stored = Stored {
                seq: 0,
                msg_id: d.msg_id.clone(),
                from: d.from.clone(),
                room: d.room.clone(),
                payload: d.payload.clone(),
                timestamp_ms: d.timestamp_ms,
            };
            let client_msg_id = format!("room:{}", d.msg_id);
            let owner = self.node.mesh.owner(&user);
            self.send_to(
                owner,
                DataMsg::Qos1Append {
                    user,
                    msg: Box::new(stored),
                    client_msg_id,
                    reply: None,
                },
            );
        }
    }

    /// Hands a live frame to each of `keys` (room fan-out, a user's
    /// connections): one borrow of the slab for all of them. A live
    /// delivery never routes anything and never removes a connection (a
    /// slow consumer starts closing), so the sessions are settled in place.
    fn deliver_live(&self, keys: impl Iterator<Item = ConnKey>, msg: &Outbound) {
        let mut conns = self.conns.borrow_mut();
        let mut fx = self.fx.borrow_mut();
        let mut cx = Ctx {
            now: self.now.get(),
            env: &self.env,
            fx: &mut fx,
        };
        for key in keys {
            if let Some(c) = conns.get_mut(key) {
                c.session.handle_routed(&mut cx, Delivery::Live(msg));
                self.settle(key, c);
            }
        }
        debug_assert!(cx.fx.routes.is_empty(), "a live delivery routed something");
    }

    /// Stops accepting and asks every client to go away; the shard exits when
    /// its last connection closes or the drain deadline passes.
    pub(super) fn start_drain(&self) {
        if self.draining.is_set() {
            return;
        }
        self.draining.set();
        let reconnect_after_ms = self.node.config.drain.reconnect_after_ms;
        let keys: Vec<usize> = self.conns.borrow().iter().map(|(k, _)| k).collect();
        for key in keys {
            self.drive(key, |s, cx| s.drain(cx, reconnect_after_ms));
        }
        self.check_done();
    }

    /// Marks the shard done when it is draining and holds no connection.
    pub(super) fn check_done(&self) {
        if self.draining.is_set() && self.conn_count() == 0 {
            self.done.set();
        }
    }
}

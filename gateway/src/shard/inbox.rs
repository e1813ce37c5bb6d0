//! The shard's side of the mesh: drains its inbox, routes what it owns and
//! delivers what is local.
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;

use proto::v1::GoAwayReason;

use super::signal::yield_now;
use super::{go_away_frame, Phase, Shard};
use crate::mesh::ShardMsg;
use crate::outbound::Outbound;
use crate::sys;

/// Messages handled before letting connections run.
const BATCH: usize = 1024;

impl Shard {
    /// Drains the inbox, then sleeps on the shard's eventfd until woken.
    pub(super) async fn inbox_task(self: Rc<Self>) {
        let mesh = &self.node.mesh;
        let efd = mesh.eventfd(self.id);
        // Poll a duplicate so that monoio owns (and may close) only its copy.
        let waiter = match sys::dup(efd).and_then(|fd| {
            // SAFETY: fd is a fresh duplicate owned by nobody else; the
            // std TcpStream is only a carrier for readiness polling.
            let std = unsafe { std::net::TcpStream::from_raw_fd(fd.into_raw_fd()) };
            monoio::net::TcpStream::from_std(std)
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(shard = self.id, "cannot poll the shard's eventfd: {e}");
                return;
            }
        };
        loop {
            let mut handled = 0;
            while let Some(msg) = mesh.pop(self.id) {
                self.handle(msg);
                handled += 1;
                if handled % BATCH == 0 {
                    yield_now().await;
                }
            }
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
            ShardMsg::ToUser { user, msg } => {
                let shards = self.tables.borrow().user_shards(&user);
                for s in shards {
                    let (user, msg) = (user.clone(), msg.clone());
                    self.send_to(s as usize, ShardMsg::UserLocal { user, msg });
                }
            }
            ShardMsg::UserLocal { user, msg } => {
                let keys = self.tables.borrow().user_conns(&user).to_vec();
                for key in keys {
                    self.deliver(key, &msg);
                }
            }
            ShardMsg::ToRoom { room, msg } => {
                let shards = self.tables.borrow().room_shards(&room).to_vec();
                for s in shards {
                    let (room, msg) = (room.clone(), msg.clone());
                    self.send_to(s as usize, ShardMsg::RoomLocal { room, msg });
                }
            }
            ShardMsg::RoomLocal { room, msg } => self.fan_out(&room, &msg),
            ShardMsg::Online { user, entry } => self.tables.borrow_mut().online(user, entry),
            ShardMsg::Offline {
                user,
                shard,
                conn_id,
            } => self.tables.borrow_mut().offline(&user, shard, conn_id),
            ShardMsg::Interest { room, shard, on } => {
                self.tables.borrow_mut().interest(room, shard, on)
            }
            ShardMsg::Presence { user, reply } => {
                let entries = self.tables.borrow().presence(&user).to_vec();
                let _ = reply.try_send(entries);
            }
            ShardMsg::Kick { user, reply } => {
                let (count, shards) = {
                    let t = self.tables.borrow();
                    (t.presence(&user).len(), t.user_shards(&user))
                };
                for s in shards {
                    self.send_to(s as usize, ShardMsg::KickLocal { user: user.clone() });
                }
                if let Some(reply) = reply {
                    let _ = reply.try_send(count);
                }
            }
            ShardMsg::KickLocal { user } => {
                let keys = self.tables.borrow().user_conns(&user).to_vec();
                let bye = go_away_frame(GoAwayReason::Kicked, "kicked by an operator", 0);
                for key in keys {
                    self.close(key, Some(&bye));
                }
            }
            ShardMsg::Drain => self.start_drain(),
        }
    }

    /// Delivers to every local member of `room`.
    fn fan_out(&self, room: &Arc<str>, msg: &Outbound) {
        let tables = self.tables.borrow();
        for key in tables.room_members(room) {
            self.deliver(key, msg);
        }
    }

    /// Stops accepting and asks every client to go away; the shard exits when
    /// its last connection closes or the drain deadline passes.
    pub(super) fn start_drain(&self) {
        if self.draining.is_set() {
            return;
        }
        self.draining.set();
        let limits = &self.node.config.drain;
        let bye = go_away_frame(
            GoAwayReason::Draining,
            "node draining: reconnect",
            limits.reconnect_after_ms,
        );
        let keys: Vec<usize> = self.conns.borrow().iter().map(|(k, _)| k).collect();
        for key in keys {
            let phase = self.conns.borrow().get(key).map(|c| c.phase);
            match phase {
                Some(Phase::Open) => {
                    self.send_frame(key, &bye);
                    self.stats.go_away(GoAwayReason::Draining);
                }
                Some(Phase::Upgrade | Phase::Auth) => self.close(key, None),
                _ => {}
            }
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

//! The shard's queues: drains its mesh queue and its backend replies,
//! feeding routing messages to the router (`crate::router`) and the rest to
//! the sessions and the QoS 1 owner side.
use std::rc::Rc;

use super::wake::{waited, yield_now, Turns};
use super::Shard;
use crate::cluster::envelope;
use crate::cluster::remote::Kind;
use crate::mesh::{Command, DataMsg, Presence, Redirect, Reply, ShardMsg};
use crate::outbound::Outbound;
use crate::router::tables::ConnKey;
use crate::session::{Ctx, Delivery};
use crate::sys;

/// Messages handled before letting connections run.
const BATCH: usize = 1024;

impl Shard {
    /// Drains the shard's queue, then sleeps on its eventfd until woken.
    pub(super) async fn router_task(self: Rc<Self>) {
        let mesh = &self.deps.mesh;
        let efd = mesh.eventfd(self.id);
        let waiter = match super::wake::readiness(efd) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(shard = self.id, "cannot poll the shard's eventfd: {e}");
                return;
            }
        };
        let turns = Turns::default();
        loop {
            self.tick_clock();
            let mut handled = 0;
            while let Some(msg) = mesh.pop(self.id) {
                self.handle(msg);
                handled += 1;
                if handled % BATCH == 0 {
                    // Replies are not starved by a queue that never empties.
                    while let Some(reply) = mesh.pop_reply(self.id) {
                        self.handle_reply(reply);
                    }
                    self.flush_store();
                    yield_now().await;
                }
            }
            while let Some(reply) = mesh.pop_reply(self.id) {
                self.handle_reply(reply);
            }
            // One pipeline per round for a remote inbox store.
            self.flush_store();
            if !mesh.park(self.id) {
                continue;
            }
            let (ready, did_wait) = waited(waiter.readable(false)).await;
            if ready.is_err() {
                tracing::error!(shard = self.id, "eventfd poll failed");
                return;
            }
            sys::eventfd_drain(efd);
            // Other shards writing without pause keep the eventfd readable
            // (see `Turns`).
            turns.after_wait(did_wait).await;
        }
    }

    fn handle(self: &Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Data(m) => self.handle_data(m),
            ShardMsg::Command(c) => self.handle_command(c),
            ShardMsg::Peer(m) => self.handle_peer(m),
        }
    }

    fn handle_data(&self, msg: DataMsg) {
        let now = self.now.get();
        let rest = self.router.borrow_mut().handle(now, msg);
        self.run_actions();
        let Some(msg) = rest else { return };
        match msg {
            DataMsg::Qos1Replay { conn, replay } => {
                let replay = Delivery::Replay(replay);
                self.drive_if(conn.key, Some(conn.conn_id), |s, cx| {
                    s.handle_routed(cx, replay)
                });
            }
            DataMsg::SendDone { reply, result } => {
                self.handle_reply(Reply::SendDone { reply, result })
            }
            DataMsg::RoomHistory {
                conn,
                room,
                range,
                result,
            } => {
                let history = Delivery::RoomHistory {
                    room,
                    range,
                    result,
                };
                self.drive_if(conn.key, Some(conn.conn_id), |s, cx| {
                    s.handle_routed(cx, history)
                });
            }
            DataMsg::StoreReady => self.drain_store(),
            DataMsg::SsePost {
                conn_id,
                body,
                reply,
            } => {
                let status = self.sse_take(conn_id, &body);
                self.sse_posted(reply, status);
            }
            DataMsg::SsePosted { reply, status } => self.sse_posted(reply, status),
            // Decided by the router.
            DataMsg::ToUser { .. }
            | DataMsg::UserLocal { .. }
            | DataMsg::ToRoom { .. }
            | DataMsg::RoomLocal { .. }
            | DataMsg::Online { .. }
            | DataMsg::OnlineMany(_)
            | DataMsg::Offline { .. }
            | DataMsg::Interest { .. }
            | DataMsg::Qos1Deliver { .. }
            | DataMsg::Qos1Append { .. }
            | DataMsg::Qos1Ack { .. }
            | DataMsg::Qos1Read { .. }
            | DataMsg::RoomAppend(_)
            | DataMsg::RoomRead { .. } => {}
        }
    }

    /// A backend service's answer (or a QoS 1 send's outcome from its
    /// owner shard) for one connection.
    fn handle_reply(&self, reply: Reply) {
        self.replies_out
            .set(self.replies_out.get().saturating_sub(1));
        let (to, delivery) = match reply {
            Reply::SendDone { reply, result } => (reply, Delivery::SendResult(*result)),
            Reply::Authorized {
                reply,
                action,
                room,
                allow,
                send,
            } => {
                let decided = Delivery::Authorized {
                    action,
                    room,
                    allow,
                    send,
                };
                (reply, decided)
            }
        };
        self.drive_if(to.key, Some(to.conn_id), |s, cx| {
            s.handle_routed(cx, delivery)
        });
    }

    fn handle_command(self: &Rc<Self>, cmd: Command) {
        match cmd {
            Command::Presence { user, reply } => {
                let local = self.router.borrow().tables().presence(&user).to_vec();
                let nodes = self.remote_nodes(Kind::User, &user).into_vec();
                let _ = reply.try_send(Presence { local, nodes });
            }
            Command::RoomNodes { room, reply } => {
                let _ = reply.try_send(self.remote_nodes(Kind::Room, &room).into_vec());
            }
            Command::RoomMembers { room, reply } => {
                let count = self.router.borrow().tables().room_members(&room).count();
                let _ = reply.try_send(count);
            }
            Command::Kick { user, reply } => {
                let (count, shards) = {
                    let r = self.router.borrow();
                    let t = r.tables();
                    (t.presence(&user).len(), t.user_shards(&user))
                };
                for s in shards {
                    self.send_to(s as usize, Command::KickLocal { user: user.clone() });
                }
                for node in self.remote_nodes(Kind::User, &user) {
                    self.bus_send(&node, &envelope::kick(&user));
                }
                if let Some(reply) = reply {
                    let _ = reply.try_send(count);
                }
            }
            Command::KickLocal { user } => {
                let keys = self.router.borrow().tables().user_conns(&user).to_vec();
                for key in keys {
                    self.drive(key, |s, cx| s.kick(cx));
                }
            }
            Command::Drain(redirect) => self.start_drain(redirect),
            Command::Accept => {
                self.gate.open();
                self.start_accepting();
            }
            Command::Prepass {
                reply,
                sets,
                sessions,
                unlisted,
            } => {
                monoio::spawn(self.clone().prepass(sets, sessions, unlisted, reply));
            }
            Command::Freeze(reply) => {
                self.freeze();
                monoio::spawn(self.clone().settle_then_answer(reply));
            }
            Command::Export(reply) => {
                let _ = reply.send(self.export().map_err(|e| e.to_string()));
            }
            Command::Forget => self.forget(),
            Command::Thaw => self.thaw(),
            Command::Import(import) => {
                let _ = import.done.send(self.import(&import.ahead));
            }
            Command::Peers(peers) => self.on_peers(peers),
            Command::Reload(r) => {
                self.env.verifier.replace(r.verifier);
                if r.tls.is_some() {
                    *self.tls_config.borrow_mut() = r.tls;
                }
                self.set_bus_secrets(&r.bus_secrets);
                self.set_bus_tls(r.bus_tls);
                let _ = r.done.try_send(());
            }
        }
    }

    /// Hands a live frame to each of `keys` (room fan-out, a user's
    /// connections): one borrow of the slab for all of them. A live
    /// delivery never routes anything and never removes a connection (a
    /// slow consumer starts closing), so the sessions are settled in place.
    pub(super) fn deliver_live(
        &self,
        keys: impl Iterator<Item = ConnKey>,
        msg: &std::sync::Arc<Outbound>,
    ) {
        let mut conns = self.conns.borrow_mut();
        let mut fx = self.fx.borrow_mut();
        let mut cx = Ctx {
            now: self.now.get(),
            env: &self.env,
            fx: &mut fx,
        };
        for key in keys {
            if let Some(c) = conns.get_mut(key) {
                c.session_mut().handle_routed(&mut cx, Delivery::Live(msg));
                self.settle(key, c);
            }
        }
        debug_assert!(cx.fx.routes.is_empty(), "a live delivery routed something");
    }

    /// Stops accepting and asks every client to go away, each told the
    /// node `/route` would name for it (`redirect`, never this node); the
    /// shard exits when its last connection closes or the drain deadline
    /// passes.
    pub(super) fn start_drain(&self, redirect: Redirect) {
        if self.draining.is_set() {
            return;
        }
        self.draining.set();
        self.stop_accepting();
        let keys: Vec<usize> = self.conns.borrow().iter().map(|(k, _)| k).collect();
        for key in keys {
            self.drain_conn(key, &redirect);
        }
        *self.drain_redirect.borrow_mut() = Some(redirect);
        self.check_done();
    }

    /// Sends one connection its go-away (if it is open yet).
    pub(super) fn drain_conn(&self, key: ConnKey, redirect: &Redirect) {
        let to = {
            let conns = self.conns.borrow();
            let Some(c) = conns.get(key) else { return };
            let user = c.session().user().map(|u| &**u);
            let wire = c.session().wire();
            self.router.borrow_mut().redirect(redirect, user, wire)
        };
        let after = match redirect.spread_ms {
            0 => redirect.reconnect_after_ms,
            spread => redirect
                .reconnect_after_ms
                .saturating_add(fastrand::u32(0..=spread)),
        };
        self.drive(key, |s, cx| s.drain(cx, after, &to));
    }

    /// Marks the shard done when it is draining and holds no connection.
    pub(super) fn check_done(&self) {
        if self.draining.is_set() && self.conn_count() == 0 {
            self.done.set();
        }
    }
}

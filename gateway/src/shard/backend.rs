//! The shard's side of the upstream streams: a session's send to the
//! backend and its lifecycle events become entries for this shard's
//! writer (`backend::upstream`), with who sent them.
use bytes::Bytes;
use proto::v1::{ErrorCode, SendResult};

use super::Shard;
use crate::backend::upstream::{Fields, Op};
use crate::mesh::Reply;
use crate::router::tables::ConnKey;
use crate::session::{Event, Route};
use crate::store::ReplyTo;

impl Shard {
    /// Asks the backend's hook whether the connection at `key` may join or
    /// publish to `room` (no hook: allowed at once).
    pub(super) fn authorize(
        &self,
        key: ConnKey,
        me: ReplyTo,
        action: crate::session::Action,
        room: std::sync::Arc<str>,
        send: Option<Box<proto::v1::Send>>,
    ) {
        let who = {
            let conns = self.conns.borrow();
            conns
                .get(key)
                .and_then(|c| Some((c.session().user()?.clone(), c.session().device().clone())))
        };
        let Some((user, device)) = who else { return };
        // One `Reply::Authorized` comes back for it (see `handover`).
        self.replies_out.set(self.replies_out.get() + 1);
        match &self.deps.hook {
            Some(hook) => hook.ask(crate::backend::hook::Ask {
                action,
                user,
                device,
                room,
                reply: me,
                send,
            }),
            None => {
                let msg = Reply::Authorized {
                    reply: me,
                    action,
                    room,
                    allow: true,
                    send,
                };
                self.deps.mesh.reply(me.shard as usize, msg);
            }
        }
    }

    /// Carries out a `ToBackend` or `Event` route of the connection at `key`.
    pub(super) fn backend_route(&self, key: ConnKey, me: ReplyTo, route: Route) {
        let Some(up) = &self.upstream else { return };
        let (user, device) = {
            let conns = self.conns.borrow();
            match conns
                .get(key)
                .and_then(|c| Some((c.session().user()?.clone(), c.session().device().clone())))
            {
                Some(ud) => ud,
                None => return,
            }
        };
        let mut fields: Fields = vec![
            ("user", Bytes::from(user.to_string())),
            ("device", Bytes::from(device.to_string())),
            ("node", Bytes::from(self.deps.node_id.clone())),
            ("conn", Bytes::from(me.conn_id.to_string())),
        ];
        let ts = Bytes::from(self.deps.clock.unix_ms(self.now.get()).to_string());
        let op = match route {
            Route::ToBackend {
                client_msg_id,
                msg_id,
                qos1,
                payload,
            } => {
                fields.extend([
                    ("client_msg_id", Bytes::from(client_msg_id.clone())),
                    ("msg_id", Bytes::from(msg_id.clone())),
                    ("ts", ts),
                    ("qos", Bytes::from_static(if qos1 { b"1" } else { b"0" })),
                    ("payload", payload),
                ]);
                let dedupe = (qos1 && !client_msg_id.is_empty())
                    .then(|| (user.to_string(), client_msg_id.clone()));
                Op::Send {
                    fields,
                    dedupe,
                    msg_id,
                    client_msg_id,
                    reply: me,
                }
            }
            Route::Event(e) => {
                if !self.deps.backend.events {
                    return;
                }
                let (kind, extra) = match e {
                    Event::Connected => ("connect", None),
                    Event::Joined(r) => ("join", Some(("room", r.to_string()))),
                    Event::Left(r) => ("leave", Some(("room", r.to_string()))),
                    Event::Refreshed { exp } => ("refresh", Some(("exp", exp.to_string()))),
                };
                fields.insert(0, ("type", Bytes::from_static(kind.as_bytes())));
                fields.push(("ts", ts));
                fields.extend(extra.map(|(k, v)| (k, Bytes::from(v))));
                Op::Event(fields)
            }
            _ => return,
        };
        if matches!(op, Op::Send { .. }) {
            // One `Reply::SendDone` comes back for it (see `handover`).
            self.replies_out.set(self.replies_out.get() + 1);
        }
        if let Err(op) = up.submit(op) {
            self.upstream_full(*op);
        }
    }

    /// A connection closed: its disconnect event, with the reason.
    pub(super) fn disconnect_event(&self, user: &str, device: &str, conn_id: u64, reason: String) {
        let Some(up) = &self.upstream else { return };
        if !self.deps.backend.events {
            return;
        }
        let ts = self.deps.clock.unix_ms(self.now.get()).to_string();
        let fields: Fields = vec![
            ("type", Bytes::from_static(b"disconnect")),
            ("user", Bytes::from(user.to_owned())),
            ("device", Bytes::from(device.to_owned())),
            ("node", Bytes::from(self.deps.node_id.clone())),
            ("conn", Bytes::from(conn_id.to_string())),
            ("ts", Bytes::from(ts)),
            ("reason", Bytes::from(reason)),
        ];
        if let Err(op) = up.submit(Op::Event(fields)) {
            self.upstream_full(*op);
        }
    }

    /// The writer's queue is full: a send is refused (the client retries),
    /// an event is dropped and counted.
    fn upstream_full(&self, op: Op) {
        match op {
            Op::Send {
                client_msg_id,
                reply,
                ..
            } => {
                self.stats.error(ErrorCode::Overloaded);
                let result = SendResult {
                    client_msg_id,
                    code: ErrorCode::Overloaded as i32,
                    message: "backend stream writer is behind: retry".into(),
                    retry_after_ms: 100,
                    ..Default::default()
                };
                let done = Reply::SendDone {
                    reply,
                    result: Box::new(result),
                };
                self.deps.mesh.reply(reply.shard as usize, done);
            }
            Op::Event(_) => {
                crate::stats::ShardStats::inc(&self.stats.events_dropped);
            }
        }
    }
}

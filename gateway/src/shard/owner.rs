//! The owner's side of QoS 1: the inboxes of the users this shard owns.
//!
//! Appends, acks and reads go to the shard's `Store` in arrival order; their
//! completions come back in the same order (at once for the in-process store,
//! a pipeline later for Redis) and are routed from here: stored messages to
//! the shards holding the user, results to the sender, replays to the
//! connection that asked. Appends with no sender to tell that the store
//! refuses are kept and submitted again (`retry`).
use std::sync::Arc;

use proto::v1::{ErrorCode, Qos, SendResult};

use super::retry::Pending;
use super::Shard;
use crate::cluster::envelope;
use crate::cluster::remote::Kind;
use crate::mesh::DataMsg;
use crate::outbound::Outbound;
use crate::stats::ShardStats;
use crate::store::{Done, Op, ReplyTo, StoreErrorKind, Stored, WhenFull};

impl Shard {
    /// Stores a QoS 1 message for `user` (this shard owns the user).
    pub(super) fn owner_append(
        &self,
        user: Arc<str>,
        msg: Stored,
        client_msg_id: String,
        reply: Option<ReplyTo>,
    ) {
        // Appends without a sender to tell (room fan-out, admin push) were
        // accepted upstream: never refused here, kept in arrival order.
        if reply.is_none() {
            let now = self.now.get();
            let arrived = self
                .append_retry
                .borrow_mut()
                .arrive(user, msg, client_msg_id, now);
            match arrived {
                Some(p) => self.submit_pending(p, false),
                None => {
                    let over = self.append_retry.borrow_mut().trim();
                    if let Some(p) = over {
                        self.give_up(&p, "the retry queue is full");
                    }
                }
            }
            return;
        }
        if self.pending_appends.get() >= self.deps.qos.max_pending_appends {
            if let Some(r) = reply {
                self.stats.error(ErrorCode::Overloaded);
                let result = rejected(
                    client_msg_id,
                    ErrorCode::Overloaded,
                    "inbox store is behind: retry later",
                );
                self.send_to(
                    r.shard as usize,
                    DataMsg::SendDone {
                        reply: r,
                        result: Box::new(result),
                    },
                );
            }
            return;
        }
        self.submit_append(user, msg, client_msg_id, reply);
    }

    fn submit_pending(&self, p: Pending, from_queue: bool) {
        self.append_retry.borrow_mut().submitted(&p, from_queue);
        self.submit_append(p.user, p.msg, p.client_msg_id, None);
    }

    fn submit_append(
        &self,
        user: Arc<str>,
        msg: Stored,
        client_msg_id: String,
        reply: Option<ReplyTo>,
    ) {
        let mut online: Vec<Arc<str>> = self
            .router
            .borrow()
            .tables()
            .presence(&user)
            .iter()
            .map(|e| e.device.clone())
            .collect();
        online.sort_unstable();
        online.dedup();
        self.pending_appends.set(self.pending_appends.get() + 1);
        self.store_started.borrow_mut().push_back(self.now.get());
        // A sender can retry a refusal; a room member or an admin push cannot.
        let when_full = match reply {
            Some(_) => self.deps.qos.direct_when_full,
            None => WhenFull::DropOldest,
        };
        self.store.borrow_mut().submit(Op::Append {
            user,
            msg,
            client_msg_id,
            online,
            reply,
            when_full,
        });
        self.drain_store();
    }

    fn give_up(&self, p: &Pending, why: &str) {
        ShardStats::inc(&self.stats.qos_append_dropped);
        tracing::error!(
            shard = self.id,
            user = %p.user,
            msg_id = %p.msg.msg_id,
            "QoS 1 message given up: {why}"
        );
    }

    /// Submits again the sender-less appends the store refused, once due
    /// (called every timer tick).
    pub(super) fn retry_appends(&self, now: std::time::Instant) {
        let (due, too_old) = self.append_retry.borrow_mut().take_due(now);
        for p in &too_old {
            self.give_up(p, "a retry could no longer be deduped");
        }
        if due.is_empty() {
            return;
        }
        for p in due {
            ShardStats::inc(&self.stats.qos_append_retries);
            self.submit_pending(p, true);
        }
        self.flush_store();
    }

    /// Passes an acknowledgement to the store.
    pub(super) fn owner_ack(&self, user: Arc<str>, device: Arc<str>, seq: u64) {
        self.store
            .borrow_mut()
            .submit(Op::Ack { user, device, seq });
        self.drain_store();
    }

    /// Reads a user's inbox for a connection.
    pub(super) fn owner_read(
        &self,
        user: Arc<str>,
        device: Arc<str>,
        after: Option<u64>,
        max: usize,
        conn: ReplyTo,
    ) {
        ShardStats::inc(&self.stats.qos_resumes);
        self.store.borrow_mut().submit(Op::Read {
            user,
            device,
            after,
            max,
            conn,
        });
        self.drain_store();
    }

    /// Sends what this round submitted to the store (one batch).
    pub(super) fn flush_store(&self) {
        self.store.borrow_mut().flush();
    }

    /// Routes every completed store operation, in order.
    pub(super) fn drain_store(&self) {
        let mut done = std::mem::take(&mut *self.store_done.borrow_mut());
        self.store.borrow_mut().completed(&mut done);
        for d in done.drain(..) {
            self.on_store_done(d);
        }
        *self.store_done.borrow_mut() = done;
        let (msgs, bytes) = self.store.borrow().held();
        self.stats.set_inbox(msgs, bytes);
    }

    fn on_store_done(&self, done: Done) {
        match done {
            Done::Appended {
                user,
                result,
                duplicate,
                client_msg_id,
                reply,
                unstored,
            } => {
                self.pending_appends
                    .set(self.pending_appends.get().saturating_sub(1));
                if let Some(started) = self.store_started.borrow_mut().pop_front() {
                    self.stats
                        .store_latency(self.now.get().saturating_duration_since(started));
                }
                if reply.is_none() {
                    // Only what may succeed later is kept: a refusal for
                    // good (script error, wrong type) would fail the same
                    // way for the whole dedupe window.
                    let refused = match (&result, unstored) {
                        (Err(e), Some(msg)) if e.retryable() => {
                            Some((user.clone(), *msg, client_msg_id.clone()))
                        }
                        _ => None,
                    };
                    let kept = refused.is_some();
                    let now = self.now.get();
                    let over = self.append_retry.borrow_mut().completed(refused, now);
                    if let Some(p) = over {
                        self.give_up(&p, "refused for the whole dedupe window");
                    }
                    if let Err(e) = &result {
                        // Kept for a retry: nobody to answer.
                        ShardStats::inc(&self.stats.qos_store_errors);
                        if kept {
                            tracing::debug!(shard = self.id, %user, "QoS 1 append refused, will retry: {e}");
                        } else {
                            ShardStats::inc(&self.stats.qos_append_dropped);
                            tracing::error!(shard = self.id, %user, "QoS 1 message not stored (not retryable): {e}");
                        }
                        return;
                    }
                }
                let result = match result {
                    Ok(stored) => {
                        if duplicate {
                            ShardStats::inc(&self.stats.qos_dedupe_hits);
                        } else {
                            ShardStats::inc(&self.stats.qos_appends);
                        }
                        // Also for a retry: the first attempt may have been
                        // stored without being routed (its result was lost);
                        // holders drop a sequence they already sent.
                        self.route_stored(&user, &stored);
                        SendResult {
                            client_msg_id,
                            accepted: true,
                            code: 0,
                            message: String::new(),
                            msg_id: stored.msg_id,
                            retry_after_ms: 0,
                        }
                    }
                    Err(e) if e.kind == StoreErrorKind::Full => {
                        ShardStats::inc(&self.stats.qos_inbox_full);
                        self.stats.error(ErrorCode::InboxFull);
                        rejected(client_msg_id, ErrorCode::InboxFull, &e.to_string())
                    }
                    Err(e) => {
                        ShardStats::inc(&self.stats.qos_store_errors);
                        self.stats.error(ErrorCode::Unavailable);
                        rejected(client_msg_id, ErrorCode::Unavailable, &e.to_string())
                    }
                };
                if let Some(r) = reply {
                    self.send_to(
                        r.shard as usize,
                        DataMsg::SendDone {
                            reply: r,
                            result: Box::new(result),
                        },
                    );
                }
            }
            Done::Read { result, conn, .. } => {
                if result.is_err() {
                    ShardStats::inc(&self.stats.qos_store_errors);
                }
                self.send_to(
                    conn.shard as usize,
                    DataMsg::Qos1Replay {
                        conn,
                        replay: result,
                    },
                );
            }
        }
    }

    /// Sends a newly stored message to every shard holding the user.
    /// Peers interested in the user get one envelope each: the inbox is
    /// shared, so a peer's holders see the same sequence.
    fn route_stored(&self, user: &Arc<str>, stored: &Stored) {
        let shards = self.router.borrow().tables().user_shards(user);
        let nodes = self.remote_nodes(Kind::User, user);
        if shards.is_empty() && !self.has_peers() {
            return;
        }
        let frame = stored.to_frame(Qos::AtLeastOnce);
        if self.has_peers() {
            let bytes = envelope::frame_bytes(&frame);
            self.remember_stored(user, stored.seq, &bytes);
            if !nodes.is_empty() {
                let env = envelope::stored(user, stored.seq, bytes);
                for node in nodes {
                    self.bus_send(&node, &env);
                }
            }
        }
        let msg = Outbound::new(frame);
        for s in shards {
            let m = DataMsg::Qos1Deliver {
                user: user.clone(),
                seq: stored.seq,
                msg: msg.clone(),
            };
            self.send_to(s as usize, m);
        }
    }
}

/// A rejected send's result.
pub(super) fn rejected(client_msg_id: String, code: ErrorCode, why: &str) -> SendResult {
    SendResult {
        client_msg_id,
        accepted: false,
        code: code as i32,
        message: why.to_owned(),
        msg_id: String::new(),
        retry_after_ms: 0,
    }
}

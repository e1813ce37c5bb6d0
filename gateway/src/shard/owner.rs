//! The owner's side of QoS 1: the inboxes of the users this shard owns.
//!
//! Appends, acks and reads go to the shard's `Store` in arrival order; their
//! completions come back in the same order (at once for the in-process store,
//! a pipeline later for Redis) and are routed from here: stored messages to
//! the shards holding the user, results to the sender, replays to the
//! connection that asked. Appends with no sender to tell that the store
//! refuses are kept and submitted again (`retry`).
use std::sync::Arc;
use std::time::Instant;

use proto::v1::{ErrorCode, Qos, SendResult};

use super::retry::{self, Pending};
use super::Shard;
use crate::inbox::{Done, Op, ReplyTo, Stored};
use crate::mesh::ShardMsg;
use crate::metrics::ShardStats;
use crate::outbound::Outbound;

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
        // already accepted upstream: they are never refused here.
        if reply.is_some() && self.pending_appends.get() >= self.node.config.qos.max_pending_appends
        {
            if let Some(r) = reply {
                self.stats.error(ErrorCode::Overloaded);
                let result = rejected(
                    client_msg_id,
                    ErrorCode::Overloaded,
                    "inbox store is behind: retry later",
                );
                self.send_to(
                    r.shard as usize,
                    ShardMsg::SendDone {
                        reply: r,
                        result: Box::new(result),
                    },
                );
            }
            return;
        }
        if reply.is_none() && self.append_retry.borrow().is_waiting() {
            // Behind the refused ones, in arrival order.
            let p = Pending {
                user,
                msg,
                client_msg_id,
            };
            self.queue_retry(p, false);
            return;
        }
        self.submit_append(user, msg, client_msg_id, reply);
    }

    fn submit_append(
        &self,
        user: Arc<str>,
        msg: Stored,
        client_msg_id: String,
        reply: Option<ReplyTo>,
    ) {
        let mut online: Vec<Arc<str>> = self
            .tables
            .borrow()
            .presence(&user)
            .iter()
            .map(|e| e.device.clone())
            .collect();
        online.sort_unstable();
        online.dedup();
        self.pending_appends.set(self.pending_appends.get() + 1);
        self.store_started.borrow_mut().push_back(Instant::now());
        self.store.borrow_mut().submit(Op::Append {
            user,
            msg,
            client_msg_id,
            online,
            reply,
        });
        self.drain_store();
    }

    fn queue_retry(&self, p: Pending, failed: bool) {
        let now = self.now.get();
        if let Some(lost) = self.append_retry.borrow_mut().push(p, failed, now) {
            ShardStats::inc(&self.stats.qos_append_dropped);
            tracing::error!(
                shard = self.id,
                user = %lost.user,
                msg_id = %lost.msg.msg_id,
                "QoS 1 message given up: the store has been failing and {} more wait",
                retry::MAX_QUEUED
            );
        }
    }

    /// Submits again the sender-less appends the store refused, once due
    /// (called every timer tick).
    pub(super) fn retry_appends(&self, now: std::time::Instant) {
        let due = self.append_retry.borrow_mut().take_due(now);
        if due.is_empty() {
            return;
        }
        for p in due {
            ShardStats::inc(&self.stats.qos_append_retries);
            self.submit_append(p.user, p.msg, p.client_msg_id, None);
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
                    self.stats.store_latency(started.elapsed());
                }
                let result = match result {
                    Ok(stored) => {
                        self.append_retry.borrow_mut().succeeded();
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
                        }
                    }
                    Err(e) => {
                        ShardStats::inc(&self.stats.qos_store_errors);
                        match (reply, unstored) {
                            (None, Some(msg)) => {
                                // Accepted upstream: keep it and try again.
                                tracing::debug!(shard = self.id, %user, "QoS 1 append refused, will retry: {e}");
                                let p = Pending {
                                    user,
                                    msg: *msg,
                                    client_msg_id,
                                };
                                self.queue_retry(p, true);
                                return;
                            }
                            _ => {
                                self.stats.error(ErrorCode::Unavailable);
                                rejected(client_msg_id, ErrorCode::Unavailable, &e.to_string())
                            }
                        }
                    }
                };
                if let Some(r) = reply {
                    self.send_to(
                        r.shard as usize,
                        ShardMsg::SendDone {
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
                    ShardMsg::Qos1Replay {
                        conn,
                        replay: result,
                    },
                );
            }
        }
    }

    /// Sends a newly stored message to every shard holding the user.
    fn route_stored(&self, user: &Arc<str>, stored: &Stored) {
        let shards = self.tables.borrow().user_shards(user);
        if shards.is_empty() {
            return;
        }
        let msg = Outbound::new(stored.to_frame(Qos::AtLeastOnce));
        for s in shards {
            let m = ShardMsg::Qos1Deliver {
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
    }
}

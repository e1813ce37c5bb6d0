//! The owner's side of QoS 1: the inboxes of the users this shard owns, as
//! router decisions.
//!
//! Appends, acks and reads become `Action::Store` requests in arrival
//! order; the driver submits them to the shard's `Store` and feeds the
//! completions back (`Router::stored`) in the same order (at once for the
//! in-process store, a pipeline later for Redis). From a completion the
//! router routes stored messages to the shards holding the user (and one
//! envelope per interested peer), results to the sender, replays to the
//! connection that asked. Sender-less appends the store refuses are kept
//! and asked for again (`retry`, on `Router::on_tick`).
use std::sync::Arc;
use std::time::Instant;

use proto::v1::{ErrorCode, Qos, SendResult};

use super::retry::Pending;
use super::{Action, Router};
use crate::cluster::envelope;
use crate::cluster::remote::Kind;
use crate::config::WhenFull;
use crate::mesh::DataMsg;
use crate::outbound::Outbound;
use crate::stats::ShardStats;
use crate::store::{Done, Op, ReplyTo, StoreErrorKind, Stored};

impl Router {
    /// Stores a QoS 1 message for `user` (this shard owns the user).
    pub(super) fn owner_append(
        &mut self,
        now: Instant,
        user: Arc<str>,
        msg: Stored,
        client_msg_id: String,
        reply: Option<ReplyTo>,
    ) {
        // Appends without a sender to tell (room fan-out, admin push) were
        // accepted upstream: never refused here, kept in arrival order.
        let Some(r) = reply else {
            match self.owner.retry.arrive(user, msg, client_msg_id, now) {
                Some(p) => self.submit_pending(now, p, false),
                None => {
                    if let Some(p) = self.owner.retry.trim() {
                        self.give_up(&p, "the retry queue is full");
                    }
                }
            }
            return;
        };
        if self.owner.pending_appends >= self.owner.max_pending_appends {
            self.stats.error(ErrorCode::Overloaded);
            let why = "inbox store is behind: retry later";
            let result = rejected(client_msg_id, ErrorCode::Overloaded, why);
            self.send_done(r, result);
            return;
        }
        self.submit_append(now, user, msg, client_msg_id, reply);
    }

    fn submit_pending(&mut self, now: Instant, p: Pending, from_queue: bool) {
        self.owner.retry.submitted(&p, from_queue);
        self.submit_append(now, p.user, p.msg, p.client_msg_id, None);
    }

    fn submit_append(
        &mut self,
        now: Instant,
        user: Arc<str>,
        msg: Stored,
        client_msg_id: String,
        reply: Option<ReplyTo>,
    ) {
        let mut online: Vec<Arc<str>> = self
            .tables
            .presence(&user)
            .iter()
            .map(|e| e.device.clone())
            .collect();
        online.sort_unstable();
        online.dedup();
        self.owner.pending_appends += 1;
        self.owner.store_started.push_back(now);
        // A sender can retry a refusal; a room member or an admin push cannot.
        let when_full = match reply {
            Some(_) => self.owner.direct_when_full,
            None => WhenFull::DropOldest,
        };
        self.out.push(Action::Store(Op::Append {
            user,
            msg,
            client_msg_id,
            online,
            reply,
            when_full,
        }));
    }

    fn give_up(&self, p: &Pending, why: &str) {
        ShardStats::inc(&self.stats.qos_append_dropped);
        tracing::error!(
            shard = self.me,
            user = %p.user,
            msg_id = %p.msg.msg_id,
            "QoS 1 message given up: {why}"
        );
    }

    /// Time passed: asks again for the sender-less appends the store
    /// refused, once due, and forgets recent messages past their window.
    /// The driver flushes the store after carrying this out.
    pub(crate) fn on_tick(&mut self, now: Instant) {
        self.owner.recent.prune(now);
        self.rooms_tick(now);
        let (due, too_old) = self.owner.retry.take_due(now);
        for p in &too_old {
            self.give_up(p, "a retry could no longer be deduped");
        }
        for p in due {
            ShardStats::inc(&self.stats.qos_append_retries);
            self.submit_pending(now, p, true);
        }
    }

    /// What the node stops with: sender-less appends not stored (given up)
    /// and not yet answered by the store.
    pub(crate) fn unsettled(&self) -> (usize, usize) {
        self.owner.retry.unsettled()
    }

    /// A completed store operation, in submission order.
    pub(crate) fn stored(&mut self, now: Instant, done: Done) {
        match done {
            Done::Appended {
                user,
                result,
                duplicate,
                client_msg_id,
                reply,
                unstored,
            } => {
                self.owner.pending_appends = self.owner.pending_appends.saturating_sub(1);
                if let Some(started) = self.owner.store_started.pop_front() {
                    self.stats
                        .store_latency(now.saturating_duration_since(started));
                }
                if reply.is_none()
                    && !self.senderless_done(now, &user, &result, &client_msg_id, unstored)
                {
                    return;
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
                        self.route_stored(now, &user, &stored);
                        accepted(client_msg_id, stored.msg_id)
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
                    self.send_done(r, result);
                }
            }
            Done::Read { result, conn, .. } => {
                if result.is_err() {
                    ShardStats::inc(&self.stats.qos_store_errors);
                }
                let replay = DataMsg::Qos1Replay {
                    conn,
                    replay: result,
                };
                self.send(conn.shard as usize, replay);
            }
            Done::RoomAppended(a) => self.room_appended(now, *a),
            Done::RoomRead {
                room,
                range,
                result,
                reader,
            } => self.room_history(now, room, range, result, reader),
        }
    }

    /// A sender-less append's outcome: a refusal that may succeed later is
    /// kept for a retry. True when the message was stored (route it).
    fn senderless_done(
        &mut self,
        now: Instant,
        user: &Arc<str>,
        result: &Result<Stored, crate::store::StoreError>,
        client_msg_id: &str,
        unstored: Option<Box<Stored>>,
    ) -> bool {
        // Only what may succeed later is kept: a refusal for good (script
        // error, wrong type) would fail the same way for the whole dedupe
        // window.
        let refused = match (result, unstored) {
            (Err(e), Some(msg)) if e.retryable() => {
                Some((user.clone(), *msg, client_msg_id.to_owned()))
            }
            _ => None,
        };
        let kept = refused.is_some();
        if let Some(p) = self.owner.retry.completed(refused, now) {
            self.give_up(&p, "refused for the whole dedupe window");
        }
        let Err(e) = result else { return true };
        // Kept for a retry, or lost: nobody to answer.
        ShardStats::inc(&self.stats.qos_store_errors);
        if kept {
            tracing::debug!(shard = self.me, %user, "QoS 1 append refused, will retry: {e}");
        } else {
            ShardStats::inc(&self.stats.qos_append_dropped);
            tracing::error!(shard = self.me, %user, "QoS 1 message not stored (not retryable): {e}");
        }
        false
    }

    /// Sends a newly stored message to every shard holding the user.
    /// Peers interested in the user get one envelope each: the inbox is
    /// shared, so a peer's holders see the same sequence.
    fn route_stored(&mut self, now: Instant, user: &Arc<str>, stored: &Stored) {
        let shards = self.tables.user_shards(user);
        if shards.is_empty() && !self.peered {
            return;
        }
        let frame = stored.to_frame(Qos::AtLeastOnce);
        if self.peered {
            let bytes = envelope::frame_bytes(&frame);
            self.owner.recent.remember(now, user, stored.seq, &bytes);
            let nodes = self.remote.nodes(Kind::User, user);
            if !nodes.is_empty() {
                let env = envelope::stored(user, stored.seq, bytes);
                self.out.push(Action::Bus(nodes, env));
            }
        }
        let msg = Outbound::new(frame);
        for s in shards {
            let m = DataMsg::Qos1Deliver {
                user: user.clone(),
                seq: stored.seq,
                msg: msg.clone(),
            };
            self.send(s as usize, m);
        }
    }

    /// `node` just became interested in `user`: the user's last message
    /// stored here, if recent, goes to it again (see `recent`).
    pub(super) fn resend_recent(&mut self, now: Instant, user: &str, node: Arc<str>) {
        if let Some((seq, frame)) = self.owner.recent.get(now, user) {
            let env = envelope::stored(user, seq, frame);
            self.out.push(Action::Bus(smallvec::smallvec![node], env));
        }
    }

    /// The outcome to the sender's shard, through its data queue: behind
    /// the stored message's delivery when the sender holds the user too.
    fn send_done(&mut self, to: ReplyTo, result: SendResult) {
        let done = DataMsg::SendDone {
            reply: to,
            result: Box::new(result),
        };
        self.send(to.shard as usize, done);
    }
}

fn accepted(client_msg_id: String, msg_id: String) -> SendResult {
    SendResult {
        client_msg_id,
        accepted: true,
        msg_id,
        ..SendResult::default()
    }
}

/// A rejected send's result.
pub(crate) fn rejected(client_msg_id: String, code: ErrorCode, why: &str) -> SendResult {
    SendResult {
        client_msg_id,
        accepted: false,
        code: code as i32,
        message: why.to_owned(),
        msg_id: String::new(),
        retry_after_ms: 0,
    }
}

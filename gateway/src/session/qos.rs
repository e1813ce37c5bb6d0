//! The holder's side of QoS 1: what the connection has been sent, what it
//! has acknowledged, retransmits, and resume.
//!
//! After authentication (or a Resume frame, or when it fell behind its
//! window) the session is *syncing*: it asks the user's owner to read the
//! inbox after its resume point (`Route::Read`) and ignores live QoS 1
//! deliveries until the replay arrives. The owner answers in the same FIFO
//! order in which it routes live messages, so everything live that was
//! ignored is in the replay and everything after it is newer: no loss, no
//! reordering.
//!
//! What the client says while a replay is pending is kept, not dropped: a
//! Resume raises `known` (the client has everything up to it; a replay that
//! starts past it is read again from it, see `resumed`) and an Ack
//! goes to the owner at once and is applied to the window when the replay
//! lands (`replay`). The replay skips what
//! the client already has (`seq <= known`), so a store cursor that fell
//! behind (acks lost in an outage, a connection cut before it acked) never
//! fills the window with duplicates that nobody will ack again. Duplicates
//! are still possible (a retransmit the client already had) and carry the
//! same `seq` and `msg_id` for the client to drop.
//!
//! A Resume that comes after the replay landed (the usual case: it is a
//! round trip late) restarts the session only when the client is owed
//! something this connection has not already sent it (`qos_resume`):
//! what went out after the client's point is on its way, in order.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::backoff::Backoff;
use super::{Ctx, Env, Phase, Route, Session};
use crate::outbound::Outbound;
use crate::stats::ShardStats;

/// QoS 1 state of a session with messages in flight or a replay pending.
pub(super) struct QosState {
    /// Highest sequence sent to this connection, or known to be held by it.
    pub(super) delivered: u64,
    /// Where what this connection was sent starts: everything in
    /// `(floor, delivered]` was sent on it, announced gone (a gap), or is
    /// held by the client (`seq <= known`). A Resume at or past it that is
    /// not past `delivered` tells nothing this connection is not already
    /// carrying to the client (`qos_resume`).
    pub(super) floor: u64,
    /// Highest cumulative ack forwarded to the owner.
    pub(super) acked: u64,
    /// An ack that arrived while a replay was pending: applied when it lands.
    pub(super) pending_ack: u64,
    /// Sent and not yet acknowledged, in order.
    pub(super) inflight: VecDeque<(u64, Arc<Outbound>)>,
    pub(super) backoff: Backoff,
    /// The retransmit deadline (`backoff.deadline()`) is wanted.
    pub(super) armed: bool,
    /// Messages were left in the inbox (window full): read again when it frees.
    pub(super) lagging: bool,
    /// The last read failed: the retransmit timer reads again. (While a
    /// read is outstanding the timer never starts a second one.)
    pub(super) read_failed: bool,
    /// The highest stored sequence announced while a replay was pending.
    /// From this node's owner it is in the replay (same FIFO order); from a
    /// peer node it may have been stored after the read: when the replay
    /// ends below it, the inbox is read again.
    pub(super) announced: u64,
    /// A Resume came while the read was out. If the replay starts past
    /// what the client says it has (the store's guess for a device it had
    /// stopped tracking), it is read again from the client's point.
    pub(super) resumed: bool,
}

impl QosState {
    /// When the retransmit timer wants to run.
    pub(super) fn deadline(&self) -> Option<std::time::Instant> {
        self.armed.then(|| self.backoff.deadline())
    }
}

impl Session {
    /// The QoS 1 state, created on first use.
    pub(super) fn qos_state(&mut self, cx: &Ctx) -> &mut QosState {
        let known = self.known;
        self.qos.get_or_insert_with(|| {
            let qos = &cx.env.qos;
            Box::new(QosState {
                delivered: known,
                floor: known,
                acked: 0,
                pending_ack: 0,
                inflight: VecDeque::new(),
                backoff: Backoff::new(
                    Duration::from_millis(qos.retransmit_ms),
                    Duration::from_millis(qos.retransmit_max_ms),
                    cx.now,
                ),
                armed: false,
                lagging: false,
                read_failed: false,
                announced: 0,
                resumed: false,
            })
        })
    }

    /// True while the pending output leaves room for QoS 1 traffic: replays
    /// and retransmits stop at half the send-queue cap, so a backlog never
    /// trips the slow-consumer close of a client that reads.
    pub(super) fn qos_room(&self, env: &Env) -> bool {
        self.out.len() < env.limits.send_queue_bytes / 2
    }

    /// Makes sure the retransmit timer runs (it also resumes a lagging read).
    pub(super) fn qos_arm(&mut self) {
        if let Some(q) = self.qos.as_mut() {
            if !q.armed {
                q.armed = true;
                self.timeout_moved = true;
            }
        }
    }

    /// Asks the owner for what this connection has not acknowledged.
    pub(super) fn qos_sync(&mut self, cx: &mut Ctx, after: Option<u64>) {
        let Some(user) = self.user.clone() else {
            return;
        };
        self.syncing = true;
        if let Some(q) = self.qos.as_mut() {
            q.read_failed = false;
        }
        let inflight = self.qos.as_ref().map_or(0, |q| q.inflight.len());
        let max = cx.env.qos.inflight_window.saturating_sub(inflight).max(1);
        cx.fx.routes.push(Route::Read {
            user,
            device: self.device.clone(),
            after,
            max,
        });
    }

    /// A stored message for the session's user arrived from its owner.
    pub(super) fn qos_deliver(&mut self, cx: &mut Ctx, seq: u64, msg: &Arc<Outbound>) {
        if self.phase != Phase::Open {
            return;
        }
        if self.syncing {
            let q = self.qos_state(cx);
            q.announced = q.announced.max(seq);
            return;
        }
        let delivered = self.qos.as_ref().map_or(self.known, |q| q.delivered);
        if seq <= delivered {
            return;
        }
        let window = cx.env.qos.inflight_window;
        let room = self.qos_room(cx.env);
        let q = self.qos_state(cx);
        let full = q.inflight.len() >= window || !room;
        if q.lagging || seq != delivered + 1 || full {
            // Left in the inbox; read in order once the window frees.
            q.lagging = true;
            self.qos_arm();
            if !full && seq != delivered + 1 {
                self.qos_sync(cx, Some(delivered));
            }
            return;
        }
        self.qos_send(cx, seq, msg.clone());
    }

    pub(super) fn qos_send(&mut self, cx: &mut Ctx, seq: u64, msg: Arc<Outbound>) {
        if self.phase != Phase::Open || !self.queue_shared(cx, &msg) {
            return;
        }
        ShardStats::inc(&cx.env.stats.deliveries);
        let now = cx.now;
        let q = self.qos_state(cx);
        q.delivered = seq;
        if q.inflight.is_empty() {
            q.backoff.progress(now);
        }
        q.inflight.push_back((seq, msg));
        self.qos_arm();
    }

    /// A cumulative Ack frame from the client. Only an ack that moves past
    /// what was already forwarded (clamped to what was sent) reaches the
    /// owner: repeated or invented acks cost nothing beyond this check.
    ///
    /// While a replay is pending, what was sent is not known yet: the ack
    /// goes to the owner at once (the store clamps it to what exists), so a
    /// read for another connection of the device, which may follow it at
    /// any moment, sees it; it is applied to the window when the replay
    /// lands.
    pub(super) fn qos_ack(&mut self, cx: &mut Ctx, seq: u64) {
        if self.syncing {
            let q = self.qos_state(cx);
            q.pending_ack = q.pending_ack.max(seq);
            if seq > q.acked {
                self.forward_ack(cx, seq);
            }
            return;
        }
        if self.apply_ack(cx, seq) {
            let window = cx.env.qos.inflight_window;
            if let Some(q) = self.qos.as_ref() {
                if q.lagging && q.inflight.len() <= window / 2 {
                    let after = q.delivered;
                    self.qos_sync(cx, Some(after));
                }
            }
        }
    }

    /// Applies a cumulative ack; true when it moved the window.
    pub(super) fn apply_ack(&mut self, cx: &mut Ctx, seq: u64) -> bool {
        let now = cx.now;
        let Some(q) = self.qos.as_mut() else {
            return false;
        };
        let seq = seq.min(q.delivered);
        let before = q.inflight.len();
        while q.inflight.front().is_some_and(|(s, _)| *s <= seq) {
            q.inflight.pop_front();
        }
        let popped = q.inflight.len() != before;
        if popped {
            q.backoff.progress(now);
        }
        if seq > q.acked {
            q.backoff.progress(now);
            self.forward_ack(cx, seq);
            return true;
        }
        popped
    }

    pub(super) fn forward_ack(&mut self, cx: &mut Ctx, seq: u64) {
        let Some(user) = self.user.clone() else {
            return;
        };
        if let Some(q) = self.qos.as_mut() {
            q.acked = seq;
        }
        self.known = self.known.max(seq);
        cx.fx.routes.push(Route::Ack {
            user,
            device: self.device.clone(),
            seq,
        });
    }

    /// A Resume frame: the client has everything up to `last_seq`. While a
    /// replay is pending it is kept (the replay skips what the client has).
    ///
    /// Once a replay has landed, a Resume usually comes a round trip after
    /// it (a client sends it right after AuthOk, even when it gave the same
    /// point with the connection). When everything after `last_seq` up to
    /// what was sent already went out on this connection (`floor`), it is
    /// on its way, in order: the client's point only retires what it has
    /// from the window (never retransmitted), and the inbox is read on
    /// after what was sent, not from the client's point, which would send
    /// all of it twice. Otherwise (below `floor`: what lies between may be
    /// gone, which only a read from its point can tell; past what was
    /// sent: the client has more than this connection gave it) the session
    /// restarts from it.
    pub(super) fn qos_resume(&mut self, cx: &mut Ctx, last_seq: u64) {
        if self.syncing {
            self.known = self.known.max(last_seq);
            self.qos_state(cx).resumed = true;
            return;
        }
        let (now, window, room) = (cx.now, cx.env.qos.inflight_window, self.qos_room(cx.env));
        if let Some(q) = self.qos.as_mut() {
            if (q.floor..=q.delivered).contains(&last_seq) {
                let before = q.inflight.len();
                while q.inflight.front().is_some_and(|(s, _)| *s <= last_seq) {
                    q.inflight.pop_front();
                }
                if q.inflight.len() != before {
                    q.backoff.progress(now);
                }
                self.known = self.known.max(last_seq);
                // A lagging session reads on once its window half-frees
                // (acks, or this); otherwise read on if the window has room.
                let read_on = if q.lagging {
                    q.inflight.len() <= window / 2 && room
                } else {
                    q.inflight.len() < window
                };
                if read_on {
                    let after = q.delivered;
                    self.qos_sync(cx, Some(after));
                }
                return;
            }
        }
        self.known = last_seq;
        if let Some(q) = self.qos.as_mut() {
            q.inflight.clear();
            q.delivered = last_seq;
            q.floor = last_seq;
            q.acked = q.acked.min(last_seq);
            q.lagging = false;
        }
        self.qos_sync(cx, Some(last_seq));
    }

    /// The retransmit timer fired: resend what is still unacknowledged (in
    /// order, within the byte budget), or retry a failed read, or resume a
    /// read that waited for room.
    pub(super) fn qos_timer(&mut self, cx: &mut Ctx) {
        let (syncing, room, known) = (self.syncing, self.qos_room(cx.env), self.known);
        let now = cx.now;
        let Some(q) = self.qos.as_mut() else { return };
        q.armed = false;
        if q.inflight.is_empty() {
            let read = if syncing && q.read_failed {
                // Again from what the client has (its resume point, acks).
                let has = known.max(q.delivered);
                Some((has > 0).then_some(has))
            } else if !syncing && q.lagging && room {
                Some(Some(q.delivered))
            } else {
                None
            };
            if q.lagging && !room {
                self.qos_arm();
            }
            if let Some(after) = read {
                self.qos_sync(cx, after);
            }
            return;
        }
        if q.backoff.fire(now) {
            let resend: Vec<Arc<Outbound>> = q.inflight.iter().map(|(_, m)| m.clone()).collect();
            let mut sent = 0;
            for m in resend {
                if !self.qos_room(cx.env) {
                    break;
                }
                if !self.queue_shared(cx, &m) {
                    return;
                }
                sent += 1;
            }
            ShardStats::add(&cx.env.stats.qos_retransmits, sent);
        }
        self.qos_arm();
    }
}

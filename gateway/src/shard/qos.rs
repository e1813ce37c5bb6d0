//! The holder's side of QoS 1: what each connection has been sent, what it
//! has acknowledged, retransmits, and resume.
//!
//! Per connection, in order: after authentication (or a Resume frame, or
//! when it fell behind its window) the connection is *syncing*: it asks the
//! user's owner to read the inbox after its resume point and ignores live
//! QoS 1 deliveries until the replay arrives. The owner answers in the same
//! FIFO order in which it routes live messages, so everything live that was
//! ignored is in the replay and everything after the replay is newer: no
//! loss, no reordering. Duplicates (a retransmit the client already had) are
//! possible and carry the same `seq` and `msg_id` for the client to drop.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::{server_frame::Frame, ErrorCode, Gap, Qos, ServerFrame};

use super::backoff::Backoff;
use super::tables::ConnKey;
use super::timers::TimerKind;
use super::{error_frame, Conn, Phase, Shard};
use crate::inbox::{Replay, ReplyTo, StoreError};
use crate::mesh::ShardMsg;
use crate::metrics::ShardStats;
use crate::outbound::Outbound;
use crate::wheel::TimerKey;

/// QoS 1 state of a connection that has received QoS 1 messages.
pub(crate) struct QosState {
    /// Highest sequence sent to this connection.
    delivered: u64,
    /// Highest cumulative ack forwarded to the owner.
    acked: u64,
    /// Sent and not yet acknowledged, in order.
    inflight: VecDeque<(u64, Arc<Outbound>)>,
    backoff: Backoff,
    timer: Option<TimerKey>,
    /// Messages were left in the inbox (window full): read again when it frees.
    lagging: bool,
}

impl QosState {
    fn new(backoff: Backoff, delivered: u64) -> Box<QosState> {
        Box::new(QosState {
            delivered,
            acked: 0,
            inflight: VecDeque::new(),
            backoff,
            timer: None,
            lagging: false,
        })
    }
}

impl Shard {
    fn backoff(&self) -> Backoff {
        let qos = &self.node.config.qos;
        let (base, max) = (qos.retransmit_ms, qos.retransmit_max_ms);
        Backoff::new(
            Duration::from_millis(base),
            Duration::from_millis(max),
            self.now.get(),
        )
    }

    /// Asks the owner for what this connection has not acknowledged.
    pub(super) fn qos_sync(&self, key: ConnKey, after: Option<u64>) {
        let window = self.node.config.qos.inflight_window;
        let ask = {
            let mut conns = self.conns.borrow_mut();
            let Some(c) = conns.get_mut(key) else { return };
            let Some(user) = c.user.clone() else { return };
            c.syncing = true;
            let inflight = c.qos.as_ref().map_or(0, |q| q.inflight.len());
            let conn = ReplyTo {
                shard: self.id as u16,
                key,
                conn_id: c.id,
            };
            (
                user,
                c.device.clone(),
                conn,
                window.saturating_sub(inflight).max(1),
            )
        };
        let (user, device, conn, max) = ask;
        let owner = self.node.mesh.owner(&user);
        self.send_to(
            owner,
            ShardMsg::Qos1Read {
                user,
                device,
                after,
                max,
                conn,
            },
        );
    }

    /// A stored message for `user` arrived from its owner.
    pub(super) fn qos_deliver(&self, user: &str, seq: u64, msg: &Arc<Outbound>) {
        let keys = self.tables.borrow().user_conns(user).to_vec();
        let mut resync = Vec::new();
        for key in keys {
            let mut conns = self.conns.borrow_mut();
            let Some(c) = conns.get_mut(key) else {
                continue;
            };
            if c.phase != Phase::Open || c.syncing {
                continue;
            }
            let window = self.node.config.qos.inflight_window;
            let q = c
                .qos
                .get_or_insert_with(|| QosState::new(self.backoff(), c.qos_base));
            if seq <= q.delivered {
                continue;
            }
            let full = q.inflight.len() >= window || !self.qos_room(c);
            let Some(q) = c.qos.as_mut() else { continue };
            if q.lagging || seq != q.delivered + 1 || full {
                // Left in the inbox; read in order once the window frees.
                q.lagging = true;
                if !full && seq != q.delivered + 1 {
                    resync.push((key, q.delivered));
                }
                self.qos_arm(key, c);
                continue;
            }
            self.qos_send(key, c, seq, msg.clone());
        }
        for (key, after) in resync {
            self.qos_sync(key, Some(after));
        }
    }

    /// True while the connection's pending output leaves room for QoS 1
    /// traffic: replays and retransmits stop at half the send-queue cap, so a
    /// backlog never trips the slow-consumer close of a client that reads.
    fn qos_room(&self, c: &Conn) -> bool {
        c.out.len() < self.node.config.limits.send_queue_bytes / 2
    }

    /// Makes sure the retransmit timer runs (it also resumes a lagging read).
    fn qos_arm(&self, key: ConnKey, c: &mut Conn) {
        let id = c.id;
        let Some(q) = c.qos.as_mut() else { return };
        if q.timer.is_none() {
            let at = q.backoff.deadline().max(self.now.get());
            let timer = super::timers::Timer::new(key, id, TimerKind::Retransmit);
            q.timer = Some(self.wheel.borrow_mut().insert(at, timer));
        }
    }

    fn qos_send(&self, key: ConnKey, c: &mut Conn, seq: u64, msg: Arc<Outbound>) {
        if c.phase != Phase::Open {
            return;
        }
        let bytes_ok = self.queue_bytes(key, c, msg.bytes(c.wire));
        let Some(q) = c.qos.as_mut() else { return };
        if !bytes_ok {
            return;
        }
        ShardStats::inc(&self.stats.deliveries);
        q.delivered = seq;
        if q.inflight.is_empty() {
            q.backoff.progress(self.now.get());
        }
        q.inflight.push_back((seq, msg));
        if q.timer.is_none() {
            let at = q.backoff.deadline();
            q.timer = Some(self.wheel.borrow_mut().insert(
                at,
                super::timers::Timer::new(key, c.id, TimerKind::Retransmit),
            ));
        }
    }

    /// The owner's answer to `qos_sync`.
    pub(super) fn qos_replay(&self, conn: ReplyTo, replay: Result<Replay, StoreError>) {
        let key = conn.key;
        let replay = match replay {
            Ok(r) => r,
            Err(e) => {
                // Stay syncing; the retransmit timer asks again.
                tracing::debug!(shard = self.id, "inbox read failed: {e}");
                let mut conns = self.conns.borrow_mut();
                if let Some(c) = conns.get_mut(key).filter(|c| c.id == conn.conn_id) {
                    let err = error_frame(
                        ErrorCode::Unavailable,
                        "message store unavailable: retrying",
                        false,
                    );
                    self.send_frame_locked(key, c, &err);
                    let q = c
                        .qos
                        .get_or_insert_with(|| QosState::new(self.backoff(), c.qos_base));
                    if q.timer.is_none() {
                        let at = q.backoff.deadline().max(self.now.get());
                        q.timer = Some(self.wheel.borrow_mut().insert(
                            at,
                            super::timers::Timer::new(key, c.id, TimerKind::Retransmit),
                        ));
                    }
                }
                return;
            }
        };
        let mut conns = self.conns.borrow_mut();
        let Some(c) = conns.get_mut(key).filter(|c| c.id == conn.conn_id) else {
            return;
        };
        c.syncing = false;
        if c.phase != Phase::Open {
            return;
        }
        if replay.msgs.is_empty()
            && replay.gap.is_none()
            && c.qos.as_ref().is_none_or(|q| q.inflight.is_empty())
        {
            // Nothing owed: remember where the inbox stands, hold no state.
            if let Some(t) = c.qos.as_mut().and_then(|q| q.timer.take()) {
                self.wheel.borrow_mut().cancel(t);
            }
            c.qos = None;
            c.qos_base = c.qos_base.max(replay.last_seq);
            return;
        }
        if let Some((from_seq, first_available)) = replay.gap {
            ShardStats::inc(&self.stats.qos_gaps);
            let gap = ServerFrame {
                frame: Some(Frame::Gap(Gap {
                    from_seq,
                    first_available,
                })),
            };
            self.send_frame_locked(key, c, &gap);
        }
        let window = self.node.config.qos.inflight_window;
        let q = c
            .qos
            .get_or_insert_with(|| QosState::new(self.backoff(), c.qos_base));
        q.lagging = false;
        // The replay holds everything up to `last_seq` unless the read's
        // `max` cut it short. Judge by its content, not by comparing its
        // length with the window now: acks that arrived since the read was
        // asked for free more room than the read was allowed to fill.
        let mut complete = replay.msgs.last().is_none_or(|m| m.seq >= replay.last_seq);
        for m in replay.msgs {
            if !self.qos_room(c) {
                // The rest stays in the inbox until acks make room.
                complete = false;
                break;
            }
            if c.qos.as_ref().is_none_or(|q| m.seq <= q.delivered) {
                continue;
            }
            self.qos_send(key, c, m.seq, Outbound::new(m.to_frame(Qos::AtLeastOnce)));
        }
        let mut more = None;
        let room = self.qos_room(c);
        if let Some(q) = c.qos.as_mut() {
            if complete {
                q.delivered = q.delivered.max(replay.last_seq);
            } else {
                q.lagging = true;
                // Acks resume reading once the window half-frees; with that
                // much room already (e.g. the replay was all duplicates),
                // no ack may come: read on now. With the output half full,
                // wait: acks or the retransmit timer resume it.
                if q.inflight.len() <= window / 2 && room {
                    more = Some(q.delivered);
                }
            }
        }
        if more.is_none() && !complete {
            self.qos_arm(key, c);
        }
        drop(conns);
        if let Some(after) = more {
            self.qos_sync(key, Some(after));
        }
    }

    /// A cumulative Ack frame from the client. Only an ack that moves past
    /// what was already forwarded (clamped to what was sent) reaches the
    /// owner: repeated or invented acks cost nothing beyond this check.
    pub(super) fn qos_ack(&self, key: ConnKey, seq: u64) {
        let window = self.node.config.qos.inflight_window;
        let (forward, resync) = {
            let mut conns = self.conns.borrow_mut();
            let Some(c) = conns.get_mut(key) else { return };
            let (Some(user), syncing) = (c.user.clone(), c.syncing) else {
                return;
            };
            let Some(q) = c.qos.as_mut() else { return };
            let seq = seq.min(q.delivered);
            if seq <= q.acked {
                return;
            }
            q.acked = seq;
            while q.inflight.front().is_some_and(|(s, _)| *s <= seq) {
                q.inflight.pop_front();
            }
            q.backoff.progress(self.now.get());
            let resync =
                (q.lagging && !syncing && q.inflight.len() <= window / 2).then_some(q.delivered);
            let owner = self.node.mesh.owner(&user);
            (
                (
                    owner,
                    ShardMsg::Qos1Ack {
                        user,
                        device: c.device.clone(),
                        seq,
                    },
                ),
                resync,
            )
        };
        self.send_to(forward.0, forward.1);
        if let Some(after) = resync {
            self.qos_sync(key, Some(after));
        }
    }

    /// A Resume frame: the client has everything up to `last_seq`. Ignored
    /// while a replay is pending (one inbox read per connection at a time).
    pub(super) fn qos_resume(&self, key: ConnKey, last_seq: u64) {
        if let Some(c) = self.conns.borrow_mut().get_mut(key) {
            if c.syncing {
                return;
            }
            c.qos_base = last_seq;
            if let Some(q) = c.qos.as_mut() {
                q.inflight.clear();
                q.delivered = last_seq;
                q.acked = q.acked.min(last_seq);
                q.lagging = false;
            }
        }
        self.qos_sync(key, Some(last_seq));
    }

    /// The retransmit timer of a connection fired: resend what is still
    /// unacknowledged (in order, within the byte budget), or retry a failed
    /// read, or resume a read that waited for room.
    pub(super) fn qos_timer(&self, key: ConnKey, now: Instant) {
        let mut conns = self.conns.borrow_mut();
        let Some(c) = conns.get_mut(key) else { return };
        let (syncing, room) = (c.syncing, self.qos_room(c));
        let Some(q) = c.qos.as_mut() else { return };
        q.timer = None;
        if q.inflight.is_empty() {
            let read = if syncing {
                Some(None)
            } else if q.lagging && room {
                Some(Some(q.delivered))
            } else {
                None
            };
            if q.lagging && !room {
                self.qos_arm(key, c);
            }
            drop(conns);
            if let Some(after) = read {
                self.qos_sync(key, after);
            }
            return;
        }
        if q.backoff.fire(now) {
            let resend: Vec<Arc<Outbound>> = q.inflight.iter().map(|(_, m)| m.clone()).collect();
            let mut sent = 0;
            for m in resend {
                if !self.qos_room(c) {
                    break;
                }
                if !self.queue_bytes(key, c, m.bytes(c.wire)) {
                    return;
                }
                sent += 1;
            }
            ShardStats::add(&self.stats.qos_retransmits, sent);
        }
        self.qos_arm(key, c);
    }

    /// Cancels a closing connection's retransmit timer.
    pub(super) fn qos_forget(&self, c: &mut Conn) {
        if let Some(q) = c.qos.as_mut() {
            if let Some(t) = q.timer.take() {
                self.wheel.borrow_mut().cancel(t);
            }
        }
    }
}

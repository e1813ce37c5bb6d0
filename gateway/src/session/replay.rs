//! A replay landing: the owner's answer to `Route::Read` (see `qos` for the
//! ordering argument). What the client said while it was read (its resume
//! point, its acks) is applied here; what it already has is skipped; what
//! it will never get is announced with a gap before the rest.
use proto::v1::{server_frame::Frame, ErrorCode, Gap, Qos, ServerFrame};

use super::{error_frame, Ctx, Phase, Session};
use crate::outbound::Outbound;
use crate::stats::ShardStats;
use crate::store::{Replay, StoreError};

impl Session {
    /// The owner's answer to `qos_sync`. A message announced meanwhile
    /// that the replay does not reach (stored on a peer node after the
    /// read) is read next, so none waits for a later one.
    pub(super) fn qos_replay(&mut self, cx: &mut Ctx, replay: Result<Replay, StoreError>) {
        if let (Ok(r), Some(q)) = (&replay, self.qos.as_mut()) {
            // Read before the client's Resume arrived, from further on than
            // it has: what lies between may be gone (freed while the device
            // was not tracked), which only a read from its point can tell.
            if std::mem::take(&mut q.resumed) && r.from > self.known && self.phase == Phase::Open {
                let after = self.known;
                self.qos_sync(cx, Some(after));
                return;
            }
        }
        let last = replay.as_ref().map_or(0, |r| r.last_seq);
        let announced = match (&replay, self.qos.as_mut()) {
            (Ok(_), Some(q)) => std::mem::take(&mut q.announced),
            _ => 0,
        };
        self.land_replay(cx, replay);
        if announced > last && self.phase == Phase::Open && !self.syncing {
            let after = self.qos.as_ref().map_or(self.known, |q| q.delivered);
            if announced > after {
                self.qos_sync(cx, Some(after));
            }
        }
    }

    fn land_replay(&mut self, cx: &mut Ctx, replay: Result<Replay, StoreError>) {
        let replay = match replay {
            Ok(r) => r,
            Err(e) => {
                // Stay syncing; the retransmit timer asks again, backing off.
                tracing::debug!(
                    shard = cx.env.shard,
                    conn = self.id,
                    "inbox read failed: {e}"
                );
                if self.phase == Phase::Open {
                    let err = error_frame(
                        ErrorCode::Unavailable,
                        "message store unavailable: retrying",
                        false,
                    );
                    self.send_frame(cx, &err);
                    let now = cx.now;
                    let q = self.qos_state(cx);
                    q.backoff.fire(now);
                    q.read_failed = true;
                    self.qos_arm();
                }
                return;
            }
        };
        self.syncing = false;
        if self.phase != Phase::Open {
            return;
        }
        // What the client said it has, up to what exists.
        let held = self.known.min(replay.last_seq);
        let gap = replay.gap;
        if replay.msgs.is_empty()
            && gap.is_none()
            && self.qos.as_ref().is_none_or(|q| q.inflight.is_empty())
        {
            // Nothing owed: pass on a pending ack, hold no state.
            if let Some(q) = self.qos.take() {
                let ack = q.pending_ack.min(replay.last_seq);
                if ack > q.acked {
                    self.forward_ack(cx, ack);
                }
            }
            self.known = self.known.max(replay.last_seq);
            return;
        }
        if let Some((from_seq, first_available)) = gap {
            ShardStats::inc(&cx.env.stats.qos_gaps);
            let gap = ServerFrame {
                frame: Some(Frame::Gap(Gap {
                    room: String::new(),
                    epoch: String::new(),
                    from_seq,
                    first_available,
                })),
            };
            self.send_frame(cx, &gap);
        }
        let q = self.qos_state(cx);
        q.lagging = false;
        let has = q.delivered.max(held);
        if replay.from > has {
            // Read from further on than this connection had sent (the
            // stored cursor, or the store's guess for a device it had
            // stopped tracking): what it sends starts there.
            q.floor = replay.from;
        }
        q.delivered = has;
        // The replay holds everything up to `last_seq` unless the read's
        // `max` cut it short. Judge by its content, not by comparing its
        // length with the window now: acks that arrived since the read was
        // asked for free more room than the read was allowed to fill.
        let mut complete = replay.msgs.last().is_none_or(|m| m.seq >= replay.last_seq);
        for m in replay.msgs {
            if self.qos.as_ref().is_none_or(|q| m.seq <= q.delivered) {
                // The client has it already.
                continue;
            }
            if !self.qos_room(cx.env) {
                // The rest stays in the inbox until acks make room.
                complete = false;
                break;
            }
            self.qos_send(cx, m.seq, Outbound::new(m.to_frame(Qos::AtLeastOnce)));
        }
        if self.phase != Phase::Open {
            return;
        }
        let pending = self
            .qos
            .as_mut()
            .map_or(0, |q| std::mem::take(&mut q.pending_ack));
        if pending > 0 {
            self.apply_ack(cx, pending);
        }
        let window = cx.env.qos.inflight_window;
        let room = self.qos_room(cx.env);
        let Some(q) = self.qos.as_mut() else { return };
        if complete {
            q.delivered = q.delivered.max(replay.last_seq);
            return;
        }
        q.lagging = true;
        // Acks resume reading once the window half-frees; with that much
        // room already (e.g. the replay was all duplicates), no ack may
        // come: read on now. With the output half full, wait: acks or the
        // retransmit timer resume it.
        if q.inflight.len() <= window / 2 && room {
            let after = q.delivered;
            self.qos_sync(cx, Some(after));
        } else {
            self.qos_arm();
        }
    }
}

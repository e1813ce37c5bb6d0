//! Every timer a shard runs, in one enum, driven by one ticker task over the
//! shard's timing wheel: no per-connection OS timer or sleeping task.
use std::rc::Rc;
use std::time::{Duration, Instant};

use proto::v1::{ErrorCode, GoAwayReason};

use super::tables::ConnKey;

/// How often a shard returns freed memory to the OS.
const COLLECT_PERIOD: Duration = Duration::from_secs(2);
use super::{error_frame, go_away_frame, Phase, Shard};

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// Upgrade plus authentication must finish by then.
    Handshake,
    /// Close if nothing arrived for the heartbeat timeout.
    Heartbeat,
    /// The token's `exp`: go away.
    TokenExpiry,
    /// QoS 1: retransmit unacknowledged messages, or retry a failed read.
    Retransmit,
}

/// A timer of one connection; `conn_id` guards against slab key reuse.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer {
    key: ConnKey,
    conn_id: u64,
    kind: TimerKind,
}

impl Timer {
    /// A timer of connection `conn_id` at slab `key`.
    pub(crate) fn new(key: ConnKey, conn_id: u64, kind: TimerKind) -> Timer {
        Timer { key, conn_id, kind }
    }
}

impl Shard {
    /// Schedules a timer for a connection.
    pub(super) fn schedule(
        &self,
        key: ConnKey,
        conn_id: u64,
        kind: TimerKind,
        at: Instant,
    ) -> crate::wheel::TimerKey {
        self.wheel
            .borrow_mut()
            .insert(at, Timer { key, conn_id, kind })
    }

    /// Cancels a timer (a fired or unknown key is a no-op).
    pub(super) fn cancel(&self, key: Option<crate::wheel::TimerKey>) {
        if let Some(k) = key {
            self.wheel.borrow_mut().cancel(k);
        }
    }

    /// Advances the wheel every tick and acts on what expired.
    pub(super) async fn ticker_task(self: Rc<Self>) {
        let tick = Duration::from_millis(self.node.config.timer_tick_ms.max(1));
        let mut expired = Vec::new();
        let collect_every = (COLLECT_PERIOD.as_millis() / tick.as_millis().max(1)).max(1) as u64;
        let mut ticks = 0u64;
        loop {
            monoio::time::sleep(tick).await;
            ticks += 1;
            if ticks.is_multiple_of(collect_every) {
                // Hand memory freed after a burst (fan-out, mass disconnect)
                // back to the OS instead of keeping it in this thread's heap.
                self.trim_pool();
                // SAFETY: mi_collect only walks the calling thread's heap.
                unsafe { libmimalloc_sys::mi_collect(true) };
            }
            let now = Instant::now();
            self.now.set(now);
            // Collects store completions whose wake-up found the inbox full.
            self.drain_store();
            self.wheel.borrow_mut().advance(now, &mut expired);
            for timer in expired.drain(..) {
                self.fire(timer, now);
            }
        }
    }

    fn fire(&self, t: Timer, now: Instant) {
        if t.kind == TimerKind::Retransmit {
            let current = self
                .conns
                .borrow()
                .get(t.key)
                .is_some_and(|c| c.id == t.conn_id);
            if current {
                self.qos_timer(t.key, now);
            }
            return;
        }
        let limits = &self.node.config.limits;
        let action = {
            let mut conns = self.conns.borrow_mut();
            let Some(c) = conns.get_mut(t.key).filter(|c| c.id == t.conn_id) else {
                return;
            };
            match t.kind {
                TimerKind::Handshake => {
                    c.liveness = None;
                    (c.phase != Phase::Open && c.phase != Phase::Closing).then_some(t.kind)
                }
                TimerKind::Heartbeat => {
                    let due = c.last_seen + Duration::from_millis(limits.heartbeat_timeout_ms);
                    if due <= now {
                        c.liveness = None;
                        Some(t.kind)
                    } else {
                        c.liveness = Some(self.wheel.borrow_mut().insert(due, t));
                        None
                    }
                }
                TimerKind::TokenExpiry => {
                    c.expiry = None;
                    Some(t.kind)
                }
                TimerKind::Retransmit => None,
            }
        };
        let last = match action {
            None => return,
            Some(TimerKind::Handshake) if self.phase(t.key) == Some(Phase::Upgrade) => {
                self.reject_upgrade(t.key, 408, "no upgrade request in time");
                return;
            }
            Some(TimerKind::Handshake) => {
                self.stats.error(ErrorCode::AuthTimeout);
                error_frame(ErrorCode::AuthTimeout, "not authenticated in time", true)
            }
            Some(TimerKind::Heartbeat) => go_away_frame(
                GoAwayReason::HeartbeatTimeout,
                "no heartbeat within the timeout",
                0,
            ),
            Some(TimerKind::Retransmit) => return,
            Some(TimerKind::TokenExpiry) => go_away_frame(
                GoAwayReason::TokenExpired,
                "token expired: renew and reconnect",
                0,
            ),
        };
        self.close(t.key, Some(&last));
    }
}

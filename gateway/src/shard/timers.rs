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
    /// Authenticated: go away when nothing arrived for the heartbeat timeout
    /// or when the token expires, whichever is first.
    Liveness,
    /// QoS 1: retransmit unacknowledged messages, or retry a failed read.
    Retransmit,
    /// Closing: remove the connection if the client has not closed by then.
    Linger,
}

/// A timer of one connection; `conn_id` guards against slab key reuse.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer {
    /// The slab key, narrowed: a wheel entry per connection is worth 8 B.
    key: u32,
    conn_id: u64,
    kind: TimerKind,
}

impl Timer {
    /// A timer of connection `conn_id` at slab `key`.
    pub(crate) fn new(key: ConnKey, conn_id: u64, kind: TimerKind) -> Timer {
        Timer {
            key: key as u32,
            conn_id,
            kind,
        }
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
        self.wheel.borrow_mut().insert(
            at,
            Timer {
                key: key as u32,
                conn_id,
                kind,
            },
        )
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
            self.retry_appends(now);
            self.wheel.borrow_mut().advance(now, &mut expired);
            for timer in expired.drain(..) {
                self.fire(timer, now);
            }
        }
    }

    fn fire(&self, t: Timer, now: Instant) {
        let key = t.key as ConnKey;
        if self
            .conns
            .borrow()
            .get(key)
            .is_none_or(|c| c.id != t.conn_id)
        {
            return;
        }
        match t.kind {
            TimerKind::Retransmit => self.qos_timer(key, now),
            TimerKind::Linger => self.remove_conn(key),
            TimerKind::Handshake => self.handshake_expired(key),
            TimerKind::Liveness => self.liveness_due(t, now),
        }
    }

    fn handshake_expired(&self, key: ConnKey) {
        let phase = {
            let mut conns = self.conns.borrow_mut();
            let Some(c) = conns.get_mut(key).filter(|c| c.phase != Phase::Closing) else {
                // Closed in the same tick: its liveness slot holds the linger.
                return;
            };
            c.liveness = None;
            c.phase
        };
        match phase {
            Phase::Upgrade => self.reject_upgrade(key, 408, "no upgrade request in time"),
            Phase::Auth => {
                self.stats.error(ErrorCode::AuthTimeout);
                let err = error_frame(ErrorCode::AuthTimeout, "not authenticated in time", true);
                self.close(key, Some(&err));
            }
            Phase::Open | Phase::Closing => {}
        }
    }

    /// Token expiry first, then the heartbeat deadline; re-armed at the
    /// earlier of the two while neither has passed.
    fn liveness_due(&self, t: Timer, now: Instant) {
        let timeout = Duration::from_millis(self.node.config.limits.heartbeat_timeout_ms);
        let last = {
            let mut conns = self.conns.borrow_mut();
            let Some(c) = conns
                .get_mut(t.key as ConnKey)
                .filter(|c| c.phase == Phase::Open)
            else {
                // Closed in the same tick: its liveness slot holds the linger.
                return;
            };
            c.liveness = None;
            let heartbeat_due = c.stamp + timeout;
            let expires_in = match c.expires_at {
                0 => None,
                exp => Some(u64::from(exp).saturating_sub(super::session::unix_secs())),
            };
            if expires_in == Some(0) {
                go_away_frame(
                    GoAwayReason::TokenExpired,
                    "token expired: renew and reconnect",
                    0,
                )
            } else if heartbeat_due <= now {
                go_away_frame(
                    GoAwayReason::HeartbeatTimeout,
                    "no heartbeat within the timeout",
                    0,
                )
            } else {
                let expiry = expires_in.map(|s| now + Duration::from_secs(s));
                let at = expiry.map_or(heartbeat_due, |e| e.min(heartbeat_due));
                c.liveness = Some(self.wheel.borrow_mut().insert(at, t));
                return;
            }
        };
        self.close(t.key as ConnKey, Some(&last));
    }
}

//! Every deadline of a session, in one enum (quinn's `connection/timer.rs`).
//!
//! The session keeps no timer handle: its deadlines are computed from its
//! state (`stamp`, token expiry, the retransmit backoff). The driver keeps
//! one wheel entry per connection at `poll_timeout` and calls
//! `handle_timeout` when it fires; a deadline that moved later (traffic
//! pushed the heartbeat deadline out) is simply re-armed then, so traffic
//! never touches the wheel.
use std::time::{Duration, Instant};

use proto::v1::{ErrorCode, GoAwayReason};

use super::{go_away_frame, Ctx, Env, Phase, Session};

/// How long a closing connection may take to flush and see the client close.
pub(super) const LINGER: Duration = Duration::from_secs(2);

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Upgrade plus authentication must finish by then.
    Handshake,
    /// The token's `exp`.
    TokenExpiry,
    /// Nothing arrived for the heartbeat timeout.
    Heartbeat,
    /// QoS 1: retransmit unacknowledged messages, or retry a failed read.
    Retransmit,
    /// Closing: give up on the client's FIN.
    Linger,
}

impl Timer {
    /// In the order they are handled when several are due at once.
    const ALL: [Timer; 5] = [
        Timer::Handshake,
        Timer::TokenExpiry,
        Timer::Heartbeat,
        Timer::Retransmit,
        Timer::Linger,
    ];
}

impl Session {
    /// When `timer` is due, if it runs.
    pub(crate) fn deadline(&self, env: &Env, timer: Timer) -> Option<Instant> {
        let limits = &env.limits;
        match (timer, self.phase) {
            (Timer::Handshake, Phase::Upgrade | Phase::Auth) => {
                Some(self.stamp + Duration::from_millis(limits.handshake_timeout_ms))
            }
            (Timer::TokenExpiry, Phase::Open) if self.expires_at != 0 => {
                env.clock.instant_of(u64::from(self.expires_at) * 1000)
            }
            (Timer::Heartbeat, Phase::Open) => {
                Some(self.stamp + Duration::from_millis(limits.heartbeat_timeout_ms))
            }
            (Timer::Retransmit, Phase::Open) => self.qos.as_ref().and_then(|q| q.deadline()),
            (Timer::Linger, Phase::Closing) => Some(self.stamp + LINGER),
            _ => None,
        }
    }

    /// The earliest deadline, if any.
    pub(crate) fn poll_timeout(&self, env: &Env) -> Option<Instant> {
        Timer::ALL
            .iter()
            .filter_map(|t| self.deadline(env, *t))
            .min()
    }

    /// Whether a deadline that the peer's bytes could move (the handshake,
    /// the heartbeat) has passed at `now`. The driver then reads what
    /// waits on the socket before `handle_timeout`, so a shard that was
    /// busy (a connect storm on a saturated box) never times out a peer
    /// whose bytes it simply had not read yet.
    pub(crate) fn silence_due(&self, env: &Env, now: Instant) -> bool {
        [Timer::Handshake, Timer::Heartbeat]
            .into_iter()
            .any(|t| self.deadline(env, t).is_some_and(|at| at <= now))
    }

    /// Acts on every deadline that has passed at `cx.now`.
    pub(crate) fn handle_timeout(&mut self, cx: &mut Ctx) {
        for timer in Timer::ALL {
            if self.deadline(cx.env, timer).is_some_and(|at| at <= cx.now) {
                self.on_timer(cx, timer);
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx, timer: Timer) {
        match timer {
            // A fallback POST handed on: its frames may be taken yet, so it
            // waits for the answer (which always comes) rather than be
            // told 408 and sent again (twice).
            Timer::Handshake
                if self.phase == Phase::Upgrade && cx.fx.posts.contains_key(&self.id) =>
            {
                self.stamp = cx.now;
            }
            Timer::Handshake if self.phase == Phase::Upgrade => {
                self.reject_upgrade(cx, 408, "no upgrade request in time")
            }
            Timer::Handshake => self.fail(cx, ErrorCode::AuthTimeout, "not authenticated in time"),
            Timer::TokenExpiry => {
                let bye = go_away_frame(
                    GoAwayReason::TokenExpired,
                    "token expired: renew and reconnect",
                    0,
                );
                self.close_with(cx, Some(&bye));
            }
            Timer::Heartbeat => {
                let bye = go_away_frame(
                    GoAwayReason::HeartbeatTimeout,
                    "no heartbeat within the timeout",
                    0,
                );
                self.close_with(cx, Some(&bye));
            }
            Timer::Retransmit => self.qos_timer(cx),
            Timer::Linger => self.phase = Phase::Closed,
        }
    }
}

//! Every timer of a [`crate::Link`], listed once, and the table that holds
//! their deadlines.
//!
//! Invariant: a timer that fired is stopped or re-armed in the future by its
//! handler, so `poll_timeout` never keeps answering an instant in the past.

use std::time::Instant;

/// A timer of the dialer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Idle: the next connect attempt is due.
    Connect,
    /// Connecting or handshaking: the `WELCOME` must have arrived.
    Hello,
    /// Up: nothing was sent for `heartbeat`; send a `PING`.
    Heartbeat,
    /// Up: nothing was received for `idle_timeout`; the link is down.
    Idle,
    /// The open batch must be closed (any state).
    Flush,
}

impl Timer {
    /// Every timer, in the order `handle_timeout` checks them.
    pub(crate) const ALL: [Timer; 5] = [
        Timer::Flush,
        Timer::Connect,
        Timer::Hello,
        Timer::Idle,
        Timer::Heartbeat,
    ];

    fn index(self) -> usize {
        match self {
            Timer::Connect => 0,
            Timer::Hello => 1,
            Timer::Heartbeat => 2,
            Timer::Idle => 3,
            Timer::Flush => 4,
        }
    }
}

/// The deadline of every timer, `None` when stopped.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; 5],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    /// Whether `timer` is armed and due at `now`.
    pub(crate) fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
}

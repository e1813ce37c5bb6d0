//! QoS 1 appends that have no sender to tell (a room broadcast's copy for
//! one member, an admin push) and that the store refused, e.g. during a
//! Redis outage. They were accepted upstream, so they are kept and submitted
//! again, in order, with backoff, rather than lost.
//!
//! While any wait here, new sender-less appends queue behind them, so one
//! owner shard submits them in the order they arrived. Appends submitted
//! before a failure was known may still be stored ahead of the failed ones
//! (a batch that fails, then the next that succeeds after a reconnect):
//! those messages get later sequence numbers than they would have, which
//! every client sees consistently; nothing is lost or duplicated (a retry
//! carries the first attempt's client message id, so the store dedupes it).
//!
//! Bounded: past [`MAX_QUEUED`] the oldest is given up, logged and counted.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::inbox::Stored;

/// Appends kept per owner shard while the store is failing.
pub(super) const MAX_QUEUED: usize = 65_536;
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(2);

/// One append to submit again.
pub(super) struct Pending {
    pub user: Arc<str>,
    pub msg: Stored,
    pub client_msg_id: String,
}

/// The queue of refused sender-less appends and when to try them next.
pub(super) struct AppendRetry {
    queue: VecDeque<Pending>,
    delay: Duration,
    due: Option<Instant>,
}

impl Default for AppendRetry {
    fn default() -> Self {
        AppendRetry {
            queue: VecDeque::new(),
            delay: FIRST_DELAY,
            due: None,
        }
    }
}

impl AppendRetry {
    /// True while appends wait here (new ones must queue behind them).
    pub(super) fn is_waiting(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Queues an append; a refused one (`failed`) arms the next attempt.
    /// Returns the append given up to stay within the bound, if any.
    pub(super) fn push(&mut self, p: Pending, failed: bool, now: Instant) -> Option<Pending> {
        self.queue.push_back(p);
        if failed && self.due.is_none() {
            self.due = Some(now + self.delay);
            self.delay = (self.delay * 2).min(MAX_DELAY);
        }
        if self.queue.len() > MAX_QUEUED {
            return self.queue.pop_front();
        }
        None
    }

    /// The store took an append: the next failure starts over at the first
    /// delay.
    pub(super) fn succeeded(&mut self) {
        self.delay = FIRST_DELAY;
    }

    /// Everything queued, in order, when its attempt is due.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Pending> {
        match self.due {
            Some(at) if at <= now => {
                self.due = None;
                self.queue.drain(..).collect()
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(n: u64) -> Pending {
        Pending {
            user: Arc::from("u"),
            msg: Stored {
                seq: 0,
                msg_id: n.to_string(),
                from: String::new(),
                room: String::new(),
                payload: Vec::new().into(),
                timestamp_ms: 0,
            },
            client_msg_id: format!("room:{n}"),
        }
    }

    fn ids(v: &[Pending]) -> Vec<&str> {
        v.iter().map(|p| p.msg.msg_id.as_str()).collect()
    }

    #[test]
    fn retries_in_order_after_a_doubling_delay() {
        let t0 = Instant::now();
        let mut r = AppendRetry::default();
        assert!(r.push(pending(1), true, t0).is_none());
        // Queued behind, not a new failure: the attempt time stays.
        r.push(pending(2), false, t0 + Duration::from_millis(50));
        assert!(r.take_due(t0 + Duration::from_millis(99)).is_empty());
        assert_eq!(ids(&r.take_due(t0 + FIRST_DELAY)), ["1", "2"]);
        assert!(!r.is_waiting());
        // Failing again waits twice as long, then resets on success.
        let t1 = t0 + Duration::from_secs(1);
        r.push(pending(3), true, t1);
        assert!(r.take_due(t1 + FIRST_DELAY).is_empty());
        assert_eq!(ids(&r.take_due(t1 + FIRST_DELAY * 2)), ["3"]);
        r.succeeded();
        r.push(pending(4), true, t1);
        assert_eq!(ids(&r.take_due(t1 + FIRST_DELAY)), ["4"]);
    }

    #[test]
    fn the_delay_stops_growing_and_the_queue_is_bounded() {
        let t0 = Instant::now();
        let mut r = AppendRetry::default();
        for _ in 0..10 {
            r.push(pending(0), true, t0);
            r.take_due(t0 + Duration::from_secs(60));
        }
        r.push(pending(0), true, t0);
        assert!(r
            .take_due(t0 + MAX_DELAY - Duration::from_millis(1))
            .is_empty());
        assert_eq!(r.take_due(t0 + MAX_DELAY).len(), 1);

        for n in 0..MAX_QUEUED as u64 {
            assert!(r.push(pending(n), false, t0).is_none());
        }
        let given_up = r
            .push(pending(u64::MAX), false, t0)
            .expect("over the bound");
        assert_eq!(given_up.msg.msg_id, "0");
    }
}

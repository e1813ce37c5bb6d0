//! QoS 1 appends that have no sender to tell (a room broadcast's copy for
//! one member, an admin push) and that the store refused, e.g. during a
//! Redis outage. They were accepted upstream, so they are kept and submitted
//! again with backoff rather than lost.
//!
//! Order: every sender-less append gets an arrival number on its owner
//! shard. A refused one goes back into the queue at its arrival position;
//! while anything is queued, or queued appends are at the store, new arrivals
//! queue behind them; and the queue is resubmitted only once the store has
//! answered everything of ours it held. So the owner stores them in arrival
//! order, except that appends already at the store when an earlier one fails
//! may be stored ahead of it: those get later sequence numbers than their
//! arrival would give, which every client sees the same way. Nothing is
//! duplicated: a retry carries the first attempt's client message id, which
//! the store dedupes for `give_up_after` (the Redis dedupe window), and an
//! append that could not be retried well inside that window is given up
//! rather than risk a second copy.
//!
//! Bounded: past [`MAX_QUEUED`] the oldest is given up. Given-up appends are
//! logged and counted (`gateway_qos_append_dropped_total`).
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::Stored;

/// Appends kept per owner shard while the store is failing.
pub(super) const MAX_QUEUED: usize = 65_536;
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(2);
/// A retry must reach the store this long before the dedupe window of the
/// first attempt ends: the retry delay plus the store's own I/O timeout.
const DEDUPE_MARGIN: Duration = Duration::from_secs(7);

/// One sender-less append.
pub(super) struct Pending {
    pub user: Arc<str>,
    pub msg: Stored,
    pub client_msg_id: String,
    order: u64,
    first_tried: Instant,
}

/// What the store holds of ours: arrival number, first attempt, and whether
/// it came from the queue.
struct AtStore {
    order: u64,
    first_tried: Instant,
    from_queue: bool,
}

/// The queue of refused sender-less appends and when to try them next.
pub(super) struct AppendRetry {
    /// Refused appends and those waiting behind them, by arrival number.
    queue: VecDeque<Pending>,
    /// Sender-less appends at the store, in submission order.
    at_store: VecDeque<AtStore>,
    /// How many of `at_store` came from the queue.
    queued_at_store: usize,
    next_order: u64,
    delay: Duration,
    due: Option<Instant>,
    give_up_after: Duration,
}

impl AppendRetry {
    pub(super) fn new(give_up_after: Duration) -> AppendRetry {
        AppendRetry {
            queue: VecDeque::new(),
            at_store: VecDeque::new(),
            queued_at_store: 0,
            next_order: 0,
            delay: FIRST_DELAY,
            due: None,
            give_up_after,
        }
    }

    /// A new sender-less append: `Some` to submit now, or `None` when it
    /// waits behind earlier ones.
    pub(super) fn arrive(
        &mut self,
        user: Arc<str>,
        msg: Stored,
        client_msg_id: String,
        now: Instant,
    ) -> Option<Pending> {
        let p = Pending {
            user,
            msg,
            client_msg_id,
            order: self.next_order,
            first_tried: now,
        };
        self.next_order += 1;
        if self.queue.is_empty() && self.queued_at_store == 0 {
            return Some(p);
        }
        self.queue.push_back(p);
        None
    }

    /// `p` is being submitted to the store.
    pub(super) fn submitted(&mut self, p: &Pending, from_queue: bool) {
        self.queued_at_store += usize::from(from_queue);
        self.at_store.push_back(AtStore {
            order: p.order,
            first_tried: p.first_tried,
            from_queue,
        });
    }

    /// The store answered the oldest sender-less append: `refused` carries it
    /// back when it was not stored. Returns an append given up, if any.
    pub(super) fn completed(
        &mut self,
        refused: Option<(Arc<str>, Stored, String)>,
        now: Instant,
    ) -> Option<Pending> {
        // Every sender-less completion has its submission recorded; were one
        // missing, the refused append is given up (logged), not lost quietly.
        let Some(done) = self.at_store.pop_front() else {
            debug_assert!(false, "a sender-less completion without its submission");
            return refused.map(|(user, msg, client_msg_id)| Pending {
                user,
                msg,
                client_msg_id,
                order: self.next_order,
                first_tried: now,
            });
        };
        self.queued_at_store -= usize::from(done.from_queue);
        let mut given_up = None;
        match refused {
            None => self.delay = FIRST_DELAY,
            Some((user, msg, client_msg_id)) => {
                let p = Pending {
                    user,
                    msg,
                    client_msg_id,
                    order: done.order,
                    first_tried: done.first_tried,
                };
                if now.saturating_duration_since(p.first_tried) >= self.give_up_after {
                    given_up = Some(p);
                } else {
                    let at = self.queue.partition_point(|q| q.order < p.order);
                    self.queue.insert(at, p);
                    if self.due.is_none() {
                        self.due = Some(now + self.delay);
                        self.delay = (self.delay * 2).min(MAX_DELAY);
                    }
                }
            }
        }
        // Arrivals queued behind appends that have all been stored go out
        // at the next tick.
        if self.queued_at_store == 0 && !self.queue.is_empty() && self.due.is_none() {
            self.due = Some(now);
        }
        given_up
    }

    /// Everything queued, in order, when its attempt is due and nothing of
    /// ours is still at the store (an append there may yet be refused and
    /// belong before these). Split into what to submit and what is given up:
    /// appends too old for a retry to land inside the first attempt's dedupe
    /// window.
    pub(super) fn take_due(&mut self, now: Instant) -> (Vec<Pending>, Vec<Pending>) {
        match self.due {
            Some(at) if at <= now && self.at_store.is_empty() => {
                self.due = None;
                let oldest = self.give_up_after.saturating_sub(DEDUPE_MARGIN);
                self.queue
                    .drain(..)
                    .partition(|p| now.saturating_duration_since(p.first_tried) < oldest)
            }
            _ => (Vec::new(), Vec::new()),
        }
    }

    /// The oldest waiting append, when more than [`MAX_QUEUED`] wait.
    pub(super) fn trim(&mut self) -> Option<Pending> {
        (self.queue.len() > MAX_QUEUED)
            .then(|| self.queue.pop_front())
            .flatten()
    }

    /// Appends waiting here, and ours at the store with no answer yet (what
    /// is given up or unknown when the shard stops).
    pub(super) fn unsettled(&self) -> (usize, usize) {
        (self.queue.len(), self.at_store.len())
    }
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;

//! The last QoS 1 message stored for each user a shard owns, for a few
//! seconds: the answer to a race between a device connecting on a peer and
//! a message stored here.
//!
//! A device that connects on node B reads its inbox (resume); B's interest
//! in the user reaches this node a moment later. A message stored here in
//! between is in the inbox but was neither in B's read nor sent to B. So
//! when a peer announces interest in a user, the user's last message stored
//! here within [`WINDOW`] is sent to it again: B's sessions drop it when
//! they have it, deliver it when it is the next one, and read the inbox in
//! order when it shows a gap. Kept only on a cluster, bounded in time and
//! in entries.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How long a stored message is remembered.
pub(super) const WINDOW: Duration = Duration::from_secs(5);
/// Users remembered at most (past it, new ones are not remembered).
pub(super) const MAX_USERS: usize = 100_000;

/// The last stored message of each user: when, its sequence, its frame.
#[derive(Default)]
pub(super) struct Recent {
    users: HashMap<Arc<str>, (Instant, u64, Bytes)>,
    pruned: Option<Instant>,
}

impl Recent {
    /// Remembers `user`'s newest stored message.
    pub(super) fn remember(&mut self, now: Instant, user: &Arc<str>, seq: u64, frame: &Bytes) {
        if self.users.len() >= MAX_USERS && !self.users.contains_key(user) {
            return;
        }
        self.users.insert(user.clone(), (now, seq, frame.clone()));
    }

    /// `user`'s last stored message, if within the window.
    pub(super) fn get(&self, now: Instant, user: &str) -> Option<(u64, Bytes)> {
        let (at, seq, frame) = self.users.get(user)?;
        (now.saturating_duration_since(*at) <= WINDOW).then(|| (*seq, frame.clone()))
    }

    /// Forgets what is older than the window (a walk at most once per
    /// window, however often it is called).
    pub(super) fn prune(&mut self, now: Instant) {
        if self
            .pruned
            .is_some_and(|at| now.saturating_duration_since(at) < WINDOW)
        {
            return;
        }
        self.pruned = Some(now);
        self.users
            .retain(|_, (at, _, _)| now.saturating_duration_since(*at) <= WINDOW);
    }

    /// Users remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.users.len()
    }
}

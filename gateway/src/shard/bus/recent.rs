//! The last QoS 1 message stored for each user this shard owns, for a few
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
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cluster::envelope;
use crate::shard::Shard;

/// How long a stored message is remembered.
const WINDOW: Duration = Duration::from_secs(5);
/// Users remembered at most (past it, new ones are not remembered).
const MAX_USERS: usize = 100_000;

/// The last stored message of a user: when, its sequence, its frame.
pub(super) type Recent = std::collections::HashMap<Arc<str>, (Instant, u64, Bytes)>;

impl Shard {
    /// Remembers `user`'s newest stored message (on a cluster only).
    pub(in crate::shard) fn remember_stored(&self, user: &Arc<str>, seq: u64, frame: &Bytes) {
        if self.bus.links.borrow().is_empty() {
            return;
        }
        let mut recent = self.bus.recent.borrow_mut();
        if recent.len() >= MAX_USERS && !recent.contains_key(user) {
            return;
        }
        let now = self.now.get();
        recent.insert(user.clone(), (now, seq, frame.clone()));
    }

    /// A peer now wants `user`: send it the last message stored for the
    /// user here, if it is recent.
    pub(in crate::shard) fn resend_recent(&self, user: &str, node: &str) {
        let entry = self.bus.recent.borrow().get(user).cloned();
        if let Some((at, seq, frame)) = entry {
            if self.now.get().saturating_duration_since(at) <= WINDOW {
                self.bus_send(node, &envelope::stored(user, seq, frame));
            }
        }
    }

    /// Forgets what is older than the window (every few seconds).
    pub(in crate::shard) fn prune_recent(&self) {
        let now = self.now.get();
        self.bus
            .recent
            .borrow_mut()
            .retain(|_, (at, _, _)| now.saturating_duration_since(*at) <= WINDOW);
    }
}

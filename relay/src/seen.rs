//! [`Seen`]: what an acceptor node already received from each peer shard,
//! kept across that peer's TCP connections so a resend after a reconnect is
//! delivered once.
//!
//! Invariants:
//! - One entry per (node id, shard): a new incarnation of the peer replaces
//!   the old entry (its batch numbers start again from 1), so the map holds
//!   at most one entry per peer shard ever seen; [`Seen::forget`] drops a
//!   node that left the cluster.
//! - `received` only grows within an incarnation: batches are accepted in
//!   order, so everything `<= received` was delivered.
//! - Peers are trusted cluster members: nothing bounds how many distinct
//!   node ids may say `HELLO`.

use std::collections::HashMap;

/// What was received from one peer shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenEntry {
    /// The peer's incarnation this applies to.
    pub incarnation: u64,
    /// Highest batch received (and delivered) from it, 0 if none.
    pub received: u64,
}

/// The acceptor's dedupe state, per (node id, shard). Owned by one shard.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    nodes: HashMap<String, Vec<(u16, SeenEntry)>>,
}

impl Seen {
    /// Nothing seen yet.
    pub fn new() -> Seen {
        Seen::default()
    }

    /// What was received from `node_id`'s `shard`, if anything.
    pub fn get(&self, node_id: &str, shard: u16) -> Option<SeenEntry> {
        let shards = self.nodes.get(node_id)?;
        shards.iter().find(|(s, _)| *s == shard).map(|(_, e)| *e)
    }

    /// Sets what was received from `node_id`'s `shard` (replacing any entry,
    /// of any incarnation).
    pub fn record(&mut self, node_id: &str, shard: u16, incarnation: u64, received: u64) {
        let entry = SeenEntry {
            incarnation,
            received,
        };
        let shards = match self.nodes.get_mut(node_id) {
            Some(shards) => shards,
            None => self.nodes.entry(node_id.to_owned()).or_default(),
        };
        match shards.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, e)) => *e = entry,
            None => shards.push((shard, entry)),
        }
    }

    /// Drops every entry of `node_id` (it left the cluster). Its live
    /// connections close at their next batch.
    pub fn forget(&mut self, node_id: &str) {
        self.nodes.remove(node_id);
    }

    /// How many (node id, shard) entries are held.
    pub fn len(&self) -> usize {
        self.nodes.values().map(Vec::len).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_replaces_and_forget_removes() {
        let mut seen = Seen::new();
        assert!(seen.is_empty());
        seen.record("a", 0, 1, 5);
        seen.record("a", 1, 1, 7);
        seen.record("b", 0, 9, 2);
        assert_eq!(seen.len(), 3);
        seen.record("a", 0, 2, 0);
        assert_eq!(seen.len(), 3);
        assert_eq!(
            seen.get("a", 0),
            Some(SeenEntry {
                incarnation: 2,
                received: 0
            })
        );
        assert_eq!(
            seen.get("a", 1),
            Some(SeenEntry {
                incarnation: 1,
                received: 7
            })
        );
        assert_eq!(seen.get("a", 2), None);
        seen.forget("a");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen.get("a", 1), None);
        assert_eq!(seen.get("b", 0).map(|e| e.received), Some(2));
    }
}

//! The `Online`s an upgrade's import holds for their owners
//! (`Router::hold_online`): a million single messages through the shards'
//! queues were a fifth of the freeze, so each owner gets its users in one
//! message at the end.
//!
//! An import may take back a connection whose `Online` it holds (its
//! session came ahead and then changed user or rooms, or did not move after
//! all): that `Online` is dropped, not followed by an `Offline` that would
//! reach the owner first. Finding it is by connection id, through an index
//! built at the first such take-back (most imports take none back, and
//! then pay nothing for it).
use std::collections::HashMap;

use crate::mesh::Online;

type Index = HashMap<u64, (usize, usize), foldhash::fast::RandomState>;

pub(crate) struct HeldOnline {
    /// By owner shard, in the order routed; a dropped one leaves `None`.
    to: Vec<Vec<Option<Online>>>,
    /// Where each held connection's `Online` is (owner, place), by id.
    index: Option<Index>,
}

impl HeldOnline {
    pub(crate) fn new(shards: usize) -> HeldOnline {
        HeldOnline {
            to: vec![Vec::new(); shards],
            index: None,
        }
    }

    /// Holds `online` for owner `to`.
    pub(crate) fn push(&mut self, to: usize, online: Online) {
        let list = &mut self.to[to];
        if let Some(index) = &mut self.index {
            index.insert(online.1.conn_id, (to, list.len()));
        }
        list.push(Some(online));
    }

    /// Drops the held `Online` of connection `conn_id`; false if none is
    /// held for it.
    pub(crate) fn drop_conn(&mut self, conn_id: u64) -> bool {
        let to = &self.to;
        let index = self.index.get_or_insert_with(|| {
            let mut index = Index::default();
            for (owner, list) in to.iter().enumerate() {
                for (at, held) in list.iter().enumerate() {
                    if let Some((_, entry)) = held {
                        index.insert(entry.conn_id, (owner, at));
                    }
                }
            }
            index
        });
        match index.remove(&conn_id) {
            Some((owner, at)) => {
                self.to[owner][at] = None;
                true
            }
            None => false,
        }
    }

    /// What is still held, by owner shard (empty ones left out).
    pub(crate) fn into_batches(self) -> impl Iterator<Item = (usize, Vec<Online>)> {
        self.to
            .into_iter()
            .enumerate()
            .map(|(to, list)| (to, list.into_iter().flatten().collect::<Vec<_>>()))
            .filter(|(_, list)| !list.is_empty())
    }
}

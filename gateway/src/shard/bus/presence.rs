//! The owner shard's side of cluster presence (`crate::cluster::presence`):
//! users whose connections changed are marked, and once per timer tick
//! their new values go to the writer as one batch.
use std::sync::Arc;

use crate::shard::Shard;

impl Shard {
    /// A connection of `user` (owned here) came or went.
    pub(in crate::shard) fn mark_presence(&self, user: &Arc<str>) {
        if self.deps.presence.is_some() {
            self.bus.presence_dirty.borrow_mut().insert(user.clone());
        }
    }

    /// Hands the writer the new value of every marked user (each tick).
    pub(in crate::shard) fn flush_presence(&self) {
        let Some(presence) = &self.deps.presence else {
            return;
        };
        let dirty = std::mem::take(&mut *self.bus.presence_dirty.borrow_mut());
        if dirty.is_empty() {
            return;
        }
        let tables = self.tables.borrow();
        let batch = dirty
            .into_iter()
            .map(|user| {
                let entries = tables.presence(&user);
                let value = (!entries.is_empty()).then(|| {
                    let conns: Vec<serde_json::Value> = entries
                        .iter()
                        .map(|e| {
                            serde_json::json!({
                                "conn_id": e.conn_id,
                                "shard": e.shard,
                                "device": &*e.device,
                                "transport": e.wire.transport(),
                            })
                        })
                        .collect();
                    serde_json::Value::Array(conns).to_string()
                });
                (user, value)
            })
            .collect();
        presence.submit(batch);
    }
}

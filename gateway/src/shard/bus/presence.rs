//! The owner shard's side of cluster presence (`crate::cluster::presence`):
//! the router marks users whose connections changed, and once per tick
//! their new values go to the writer as one batch.
use crate::shard::Shard;

impl Shard {
    /// Hands the writer the new value of every marked user (each tick).
    pub(in crate::shard) fn flush_presence(&self) {
        let Some(presence) = &self.deps.presence else {
            return;
        };
        let dirty = self.router.borrow_mut().take_presence_dirty();
        if dirty.is_empty() {
            return;
        }
        let router = self.router.borrow();
        let tables = router.tables();
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

//! What arrives over the bus, routed on this node: each envelope goes to
//! the shard that owns its name here, which delivers it to its local
//! shards only. A `Reset` goes to every shard (each owns some names).
use std::sync::Arc;

use crate::cluster::envelope::{self, PeerMsg};

use crate::shard::Shard;
use crate::stats::ShardStats;

impl Shard {
    /// An envelope from peer `node`'s shard `shard`.
    pub(super) fn on_envelope(&self, node: &Arc<str>, shard: u16, bytes: &[u8]) {
        let msg = match envelope::decode(bytes, node, shard) {
            Ok(m) => m,
            Err(e) => {
                ShardStats::inc(&self.stats.bus_bad_envelopes);
                tracing::debug!(shard = self.id, peer = %node, "bus: {e}");
                return;
            }
        };
        self.router.borrow_mut().arrived(msg);
        self.run_actions();
    }

    /// A bus message at the shard named in its doc.
    pub(in crate::shard) fn handle_peer(&self, msg: PeerMsg) {
        let now = self.now.get();
        self.router.borrow_mut().handle_peer(now, msg);
        self.run_actions();
    }
}

//! What a session gets from its driver besides bytes: the shard's
//! environment (limits, verifier, clock), the effects it writes to (routes,
//! the buffer pool, message ids), and the context of one call.
use std::sync::Arc;
use std::time::Instant;

use crate::auth::Verifier;
use crate::clock::Clock;
use crate::config::{Limits, QosConfig};
use crate::control::metrics::ShardStats;

use super::Route;

/// First allocation of a write buffer (it grows as frames queue up).
const BUF_INITIAL: usize = 512;
/// Write buffers kept for reuse, and the largest one kept.
const POOL_BUFFERS: usize = 1024;
const POOL_BUF_MAX: usize = 16 * 1024;

/// What every session of a shard reads and never changes.
pub struct Env {
    /// Per-connection limits.
    pub limits: Limits,
    /// QoS 1 settings.
    pub qos: QosConfig,
    /// Verifies client tokens.
    pub verifier: Verifier,
    /// Maps `now` to Unix time.
    pub clock: Clock,
    /// This node's id (in `AuthOk`).
    pub node_id: String,
    /// This shard's index (in `AuthOk`).
    pub shard: u16,
    /// Counters the session updates.
    pub stats: Arc<ShardStats>,
    /// Prefix of the message ids this shard makes (node, boot, shard).
    pub id_prefix: String,
    /// The device name of connections that name none (shared).
    pub no_device: Arc<str>,
    /// Answers plain `GET`s on the client port (`/route`): the request
    /// target to a status and a JSON body, or `None` for a target it does
    /// not serve (the upgrade error is answered). None: upgrades only.
    pub http: Option<HttpHook>,
}

/// See [`Env::http`].
pub type HttpHook = Arc<dyn Fn(&str) -> Option<(u16, String)> + Send + Sync>;

/// What sessions produce for their driver, and what they draw on: one per
/// shard, lent to each call through `Ctx`.
#[derive(Default)]
pub struct Effects {
    /// Messages for the router, in order, from the session just called.
    pub routes: Vec<Route>,
    /// Write buffers for reuse.
    pub pool: BufPool,
    /// Client sends are refused with `OVERLOADED` while set (the driver's
    /// mesh backlog is over its bound).
    pub overloaded: bool,
    next_msg: u64,
}

impl Effects {
    /// A new message id, unique on the node and across restarts.
    pub(super) fn message_id(&mut self, env: &Env) -> String {
        self.next_msg += 1;
        format!("{}-{}", env.id_prefix, self.next_msg)
    }
}

/// One call's context: the time, the shard's environment, its effects.
pub struct Ctx<'a> {
    /// Now, as the driver read it.
    pub now: Instant,
    /// The shard's environment.
    pub env: &'a Env,
    /// Where the session's routes go and its buffers come from.
    pub fx: &'a mut Effects,
}

/// Write buffers kept for reuse by one shard.
#[derive(Default)]
pub struct BufPool(Vec<Vec<u8>>);

impl BufPool {
    /// A buffer, reused when one is kept.
    pub fn take(&mut self) -> Vec<u8> {
        self.0
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_INITIAL))
    }

    /// Keeps a buffer for reuse (small ones only, up to a count).
    pub fn put(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > POOL_BUF_MAX || self.0.len() >= POOL_BUFFERS {
            return;
        }
        buf.clear();
        self.0.push(buf);
    }

    /// Frees every kept buffer. Keeping even a few pins the allocator pages
    /// they sit in, scattered over the heap by a burst: 10k-subscriber
    /// fan-out, RSS 5 s after the burst was 34 MiB keeping 64 and 19 MiB
    /// (the level before the burst) keeping none.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

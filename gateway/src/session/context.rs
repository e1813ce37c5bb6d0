//! What a session gets from its driver besides bytes: the shard's
//! environment (limits, verifier, clock), the effects it writes to (routes,
//! the buffer pool, message ids), and the context of one call.
use std::sync::Arc;
use std::time::Instant;

use crate::auth::Keys;
use crate::clock::Clock;
use crate::config::{Limits, QosConfig};
use crate::stats::ShardStats;

use super::Route;

/// First allocation of a write buffer (it grows as frames queue up).
const BUF_INITIAL: usize = 512;
/// Write buffers kept for reuse, and the largest one kept.
const POOL_BUFFERS: usize = 1024;
const POOL_BUF_MAX: usize = 16 * 1024;

/// What every session of a shard reads and never changes.
pub(crate) struct Env {
    /// Per-connection limits.
    pub limits: Limits,
    /// QoS 1 settings.
    pub qos: QosConfig,
    /// Verifies client tokens.
    pub verifier: Keys,
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
    /// `auth.origins`: browser origins allowed to open a WebSocket (empty:
    /// any).
    pub origins: Arc<[String]>,
    /// How `rooms` claims are enforced.
    pub rooms_claim: crate::grants::RoomsClaim,
    /// `backend.rate_per_conn` (0: none).
    pub rate_per_conn: u32,
    /// This shard's share of `backend.rate_per_room` (0: none).
    pub rate_per_room: u32,
    /// True when sends to the backend go to a stream (Redis configured).
    pub backend: bool,
    /// True when joins and room publishes are asked of the backend's hook.
    pub hook: bool,
    /// `[rooms]`: which rooms keep history.
    pub rooms: Arc<crate::config::RoomsConfig>,
    /// `[compression]`: whether permessage-deflate is accepted.
    pub compression: bool,
    /// Signs an SSE stream's connection id into the key its POSTs carry
    /// (the node's secret: any shard checks a key, before reading a body).
    pub post_key: Arc<ring::hmac::Key>,
    /// Answers plain `GET`s on the client port (`/route`): the request
    /// target to a status and a JSON body, or `None` for a target it does
    /// not serve (the upgrade error is answered). None: upgrades only.
    pub http: Option<HttpHook>,
}

/// See [`Env::http`].
pub(crate) type HttpHook = Arc<dyn Fn(&str) -> Option<(u16, String)> + Send + Sync>;

/// What sessions produce for their driver, and what they draw on: one per
/// shard, lent to each call through `Ctx`.
#[derive(Default)]
pub(crate) struct Effects {
    /// Messages for the router, in order, from the session just called.
    pub routes: Vec<Route>,
    /// Write buffers for reuse.
    pub pool: BufPool,
    /// Client sends are refused with `OVERLOADED` while set (the driver's
    /// mesh backlog is over its bound).
    pub overloaded: bool,
    /// Room permissions of the connections whose token carried a `rooms`
    /// claim, by connection id (kept here, not in every session: most
    /// connections have none, and a session stays small).
    pub grants: std::collections::HashMap<u64, Arc<crate::grants::Grants>>,
    /// Send rate of the connections under `backend.rate_per_conn`, by id.
    pub buckets: std::collections::HashMap<u64, crate::rate::Bucket>,
    /// Inbound frame rate of each connection (`limits.max_frames_per_sec`).
    pub frame_buckets: std::collections::HashMap<u64, crate::rate::Bucket>,
    /// This shard's share of each room's `backend.rate_per_room`.
    pub room_buckets: std::collections::HashMap<Arc<str>, crate::rate::Bucket>,
    /// The positions in rooms with history, by connection id (`rooms`).
    pub room_cursors: std::collections::HashMap<u64, super::rooms::RoomCursors>,
    /// Compresses frames for the compressed wires (one per shard).
    pub compressor: crate::outbound::Compressor,
    /// Inflates compressed client messages (one per shard).
    pub inflate: super::inflate::Inflate,
    /// The POSTs of the SSE transport waiting for their stream's session,
    /// by connection id, with the `Access-Control-Allow-Origin` to answer.
    pub posts: std::collections::HashMap<u64, Option<String>>,
    /// `room_buckets`' size after it was last pruned.
    room_buckets_kept: usize,
    next_msg: u64,
}

impl Effects {
    /// Effects whose compressed wires use `compressor`.
    pub(crate) fn with_compressor(compressor: crate::outbound::Compressor) -> Effects {
        Effects {
            compressor,
            ..Effects::default()
        }
    }

    /// Sets (or clears) the room permissions of connection `id`.
    pub(crate) fn set_grants(&mut self, id: u64, grants: Option<Arc<crate::grants::Grants>>) {
        match grants {
            Some(g) => {
                self.grants.insert(id, g);
            }
            None => {
                self.grants.remove(&id);
            }
        }
    }

    /// Forgets connection `id` (closed).
    pub(crate) fn forget(&mut self, id: u64) {
        self.grants.remove(&id);
        self.buckets.remove(&id);
        self.frame_buckets.remove(&id);
        self.room_cursors.remove(&id);
        self.inflate.forget(id);
        self.posts.remove(&id);
    }

    /// Forgets the room buckets that are full again (as a new one would
    /// be) once the map has doubled since the last time: rooms come and go,
    /// and each one published to must not stay for ever. Amortized O(1).
    pub(super) fn prune_room_buckets(&mut self, rate: u32, now: std::time::Instant) {
        if self.room_buckets.len() < (2 * self.room_buckets_kept).max(1024) {
            return;
        }
        self.room_buckets.retain(|_, b| !b.is_full(rate, now));
        self.room_buckets.shrink_to_fit();
        self.room_buckets_kept = self.room_buckets.len();
    }

    /// A new message id, unique on the node and across restarts.
    pub(super) fn message_id(&mut self, env: &Env) -> String {
        self.next_msg += 1;
        format!("{}-{}", env.id_prefix, self.next_msg)
    }
}

/// One call's context: the time, the shard's environment, its effects.
pub(crate) struct Ctx<'a> {
    /// Now, as the driver read it.
    pub now: Instant,
    /// The shard's environment.
    pub env: &'a Env,
    /// Where the session's routes go and its buffers come from.
    pub fx: &'a mut Effects,
}

/// Write buffers kept for reuse by one shard.
#[derive(Default)]
pub(crate) struct BufPool(Vec<Vec<u8>>);

impl BufPool {
    /// A buffer, reused when one is kept.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.0
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_INITIAL))
    }

    /// Keeps a buffer for reuse (small ones only, up to a count).
    pub(crate) fn put(&mut self, mut buf: Vec<u8>) {
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
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::Bucket;
    use std::time::{Duration, Instant};

    #[test]
    fn room_buckets_of_rooms_gone_quiet_are_forgotten() {
        let mut fx = Effects::default();
        let t0 = Instant::now();
        for i in 0..1023 {
            let mut b = Bucket::new(5, t0);
            b.take(5, t0).unwrap();
            fx.room_buckets.insert(format!("old-{i}").into(), b);
        }
        // Below the first bound nothing is looked at.
        fx.prune_room_buckets(5, t0 + Duration::from_secs(60));
        assert_eq!(fx.room_buckets.len(), 1023);
        let now = t0 + Duration::from_secs(60);
        let mut busy = Bucket::new(5, now);
        busy.take(5, now).unwrap();
        fx.room_buckets.insert("busy".into(), busy);
        fx.prune_room_buckets(5, now);
        // The quiet ones are full again: gone; the one just used stays.
        assert_eq!(
            fx.room_buckets.keys().collect::<Vec<_>>(),
            [&Arc::from("busy")]
        );
    }
}

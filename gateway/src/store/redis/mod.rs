//! The Redis inbox store: sequence numbers, messages and device cursors in
//! Redis, shared by every node and surviving gateway restarts.
//!
//! One `RedisStore` per shard. It owns one thread (`redis-store-N`) with one
//! synchronous connection. `submit` only queues the operation on a channel
//! (it never blocks the shard); the thread waits for the first operation,
//! takes every one already queued (up to [`MAX_BATCH`]) and sends them as ONE
//! pipeline of Lua script calls (its appends and acks grouped into few
//! calls, `inbox`): one round trip per batch, not per message.
//! The replies become `Done` values in submission order (an ack produces
//! none, as in the memory store); then the thread calls `notify` once and the
//! shard collects them with `completed`.
//!
//! Invariants:
//! - Operations are never lost, reordered or completed twice: every submitted
//!   append and read completes exactly once, in submission order, with the
//!   stored result or a `StoreError`.
//! - Each operation runs atomically on the keys of one user, which share a
//!   Redis Cluster hash tag (layout in `keys`); a call of `inbox.lua` runs
//!   several operations in order, as one atomic step. The semantics match
//!   `MemoryStore` (its tests are mirrored here against a real Redis), with
//!   time-based bounds: dedupe records expire after `dedupe_window`, a user's
//!   inbox, cursors and drop mark after `retention` without appends. Sequence
//!   counters never expire, so sequences never restart. Messages lost to
//!   expiry or to the per-user bound are reported as a gap, never a hole.
//! - When Redis is down, every operation of a batch that cannot run completes
//!   with `Err` (in order) at once, so the shard is never stalled; the thread
//!   reconnects with capped exponential backoff (100 ms .. 5 s) and logs one
//!   warning per outage. An append whose batch failed mid-flight may still
//!   have been stored: a retry with the same client message id is answered
//!   from the dedupe record, so the sender's retry does not duplicate it.
//! - Dropping the store closes the channel; the thread finishes what was
//!   already queued and exits, and the drop waits for it.
mod coalesce;
mod inbox;

mod keys;
pub(crate) use keys::presence_key;
mod room_scripts;
mod scripts;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
mod worker;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::{Done, Op, Store, StoreError, StoreErrorKind};
use worker::{Link, Worker};

/// Most operations sent to Redis in one pipeline.
pub(crate) const MAX_BATCH: usize = 512;

/// Bounds and naming of the Redis store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedisLimits {
    /// Messages kept per user; appending past it drops the oldest (a gap).
    pub per_user: usize,
    /// A user's inbox, cursors and drop mark expire this long after the
    /// last append (refreshed by every append). Sequence counters stay.
    pub retention: Duration,
    /// How long a (sender, client message id) is remembered for dedupe.
    pub dedupe_window: Duration,
    /// First part of every key (`{prefix}:{<user>}:...`); no braces.
    pub key_prefix: String,
    /// Messages kept per room with history.
    pub room_size: usize,
    /// The user, password and CA to reach Redis with.
    pub access: crate::config::RedisAccess,
    /// A room's history (and its epoch) expires this long after its last
    /// append or read.
    pub room_age: Duration,
}

impl Default for RedisLimits {
    fn default() -> RedisLimits {
        RedisLimits {
            per_user: 10_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            dedupe_window: Duration::from_secs(600),
            key_prefix: "im".to_owned(),
            room_size: 100,
            access: crate::config::RedisAccess::default(),
            room_age: Duration::from_secs(300),
        }
    }
}

/// Counters of one store. Not in `/metrics` yet (nothing reads
/// `RedisStore::stats` outside tests): kept until they are exported.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RedisStats {
    /// Pipelines sent (round trips), script loads excluded.
    pub batches: u64,
    /// Operations submitted to Redis.
    pub ops: u64,
    /// Operations (acks included) that completed with an error.
    pub failed_ops: u64,
    /// Times the store lost Redis.
    pub outages: u64,
    /// Total time spent waiting for pipeline replies, microseconds.
    pub busy_us: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    ops: AtomicU64,
    failed_ops: AtomicU64,
    outages: AtomicU64,
    busy_us: AtomicU64,
    /// Submissions (`flush`es) carried out, their completions sent.
    finished: AtomicU64,
}

/// An inbox store in Redis for the users one shard owns.
pub(crate) struct RedisStore {
    ops: Option<Sender<Vec<Op>>>,
    /// Operations submitted this round, sent on `flush`.
    pending: Vec<Op>,
    /// Submissions (`flush`es) sent to the thread.
    sent: u64,
    done: Receiver<Done>,
    /// Completions of operations the thread could not take (it is gone).
    orphaned: Vec<Done>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl RedisStore {
    /// Connects to Redis at `url` (`redis://host:port/db`), loads the scripts
    /// and starts the store's thread for `shard`. `notify` is called on that
    /// thread after each batch of completions; it should wake the shard,
    /// which then calls `completed`.
    ///
    /// Fails when the URL is invalid, the key prefix has a brace, or Redis
    /// cannot be reached now: a misconfigured store fails at startup. Later
    /// outages are survived.
    pub(crate) fn start(
        url: &str,
        shard: usize,
        limits: RedisLimits,
        notify: Box<dyn Fn() + Send>,
    ) -> Result<RedisStore, StoreError> {
        if limits.key_prefix.contains(['{', '}']) {
            return Err(StoreError::new(
                StoreErrorKind::Config,
                format!(
                    "redis key prefix {:?} must not contain braces",
                    limits.key_prefix
                ),
            ));
        }
        let (ops_tx, ops_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let counters = Arc::new(Counters::default());
        let link = Link {
            ops: ops_rx,
            done: done_tx,
            notify,
            counters: counters.clone(),
        };
        let worker = Worker::connect(url, shard, &limits, link)?;
        let thread = std::thread::Builder::new()
            .name(format!("redis-store-{shard}"))
            .spawn(move || worker.run())
            .map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Config,
                    format!("spawning the redis store thread: {e}"),
                )
            })?;
        Ok(RedisStore {
            ops: Some(ops_tx),
            pending: Vec::new(),
            sent: 0,
            done: done_rx,
            orphaned: Vec::new(),
            thread: Some(thread),
            counters,
        })
    }

    /// The store's counters so far.
    #[allow(dead_code)]
    pub(crate) fn stats(&self) -> RedisStats {
        let c = &self.counters;
        RedisStats {
            batches: c.batches.load(Ordering::Relaxed),
            ops: c.ops.load(Ordering::Relaxed),
            failed_ops: c.failed_ops.load(Ordering::Relaxed),
            outages: c.outages.load(Ordering::Relaxed),
            busy_us: c.busy_us.load(Ordering::Relaxed),
        }
    }
}

impl Store for RedisStore {
    fn submit(&mut self, op: Op) {
        self.pending.push(op);
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut self.pending);
        let Some(tx) = &self.ops else { return };
        self.sent += 1;
        if let Err(crossbeam_channel::SendError(ops)) = tx.send(ops) {
            self.sent -= 1;
            // The thread is gone (it only ends when the channel closes, so
            // this is a bug): the operations still complete, as errors.
            let err = StoreError::new(StoreErrorKind::Unexpected, "redis store thread has stopped");
            for op in ops {
                self.orphaned.extend(scripts::fail(op, &err));
            }
        }
    }

    fn completed(&mut self, out: &mut Vec<Done>) {
        out.extend(self.done.try_iter());
        out.append(&mut self.orphaned);
    }

    fn close(&mut self) {
        self.flush();
        // The worker ends once the channel is closed and drained.
        self.ops = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn held(&self) -> (usize, usize) {
        (0, 0)
    }

    fn idle(&self) -> bool {
        self.pending.is_empty() && self.counters.finished.load(Ordering::Acquire) == self.sent
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.close();
    }
}

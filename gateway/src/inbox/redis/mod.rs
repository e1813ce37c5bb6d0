//! The Redis inbox store: sequence numbers, messages and device cursors in
//! Redis, shared by every node and surviving gateway restarts.
//!
//! One `RedisStore` per shard. It owns one thread (`redis-store-N`) with one
//! synchronous connection. `submit` only queues the operation on a channel
//! (it never blocks the shard); the thread waits for the first operation,
//! takes every one already queued (up to [`MAX_BATCH`]) and sends them as ONE
//! pipeline of Lua script calls: one round trip per batch, not per message.
//! The replies become `Done` values in submission order (an ack produces
//! none, as in the memory store); then the thread calls `notify` once and the
//! shard collects them with `completed`.
//!
//! Invariants:
//! - Operations are never lost, reordered or completed twice: every submitted
//!   append and read completes exactly once, in submission order, with the
//!   stored result or a `StoreError`.
//! - Each operation is one atomic script on the keys of one user, which share
//!   a Redis Cluster hash tag (layout in `keys`). The semantics match
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
mod keys;
mod scripts;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::Value;

use super::{Done, Op, Store, StoreError};
use scripts::{Params, Scripts};

/// Most operations sent to Redis in one pipeline.
pub const MAX_BATCH: usize = 512;
/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one pipeline's write or reply may take before the connection is
/// considered broken.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// First and largest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connection idle this long is checked with a PING before a batch uses
/// it, so a connection Redis (or a proxy) closed meanwhile fails a PING,
/// not a batch.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Bounds and naming of the Redis store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisLimits {
    /// Messages kept per user; appending past it drops the oldest (a gap).
    pub per_user: usize,
    /// A user's inbox, cursors and drop mark expire this long after the
    /// last append (refreshed by every append). Sequence counters stay.
    pub retention: Duration,
    /// How long a (sender, client message id) is remembered for dedupe.
    pub dedupe_window: Duration,
    /// First part of every key (`{prefix}:{<user>}:...`); no braces.
    pub key_prefix: String,
}

impl Default for RedisLimits {
    fn default() -> RedisLimits {
        RedisLimits {
            per_user: 10_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            dedupe_window: Duration::from_secs(600),
            key_prefix: "im".to_owned(),
        }
    }
}

/// Counters of one store, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisStats {
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
}

/// An inbox store in Redis for the users one shard owns.
pub struct RedisStore {
    ops: Option<Sender<Op>>,
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
    pub fn start(
        url: &str,
        shard: usize,
        limits: RedisLimits,
        notify: Box<dyn Fn() + Send>,
    ) -> Result<RedisStore, StoreError> {
        if limits.key_prefix.contains(['{', '}']) {
            return Err(StoreError(format!(
                "redis key prefix {:?} must not contain braces",
                limits.key_prefix
            )));
        }
        let client = redis::Client::open(url).map_err(|e| StoreError(format!("redis url: {e}")))?;
        let scripts = Scripts::new();
        let conn = connect(&client, &scripts)?;
        let (ops_tx, ops_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            shard,
            client,
            params: Params::new(&limits),
            scripts,
            conn: Some(conn),
            last_used: Instant::now(),
            down: false,
            backoff: BACKOFF_MIN,
            next_attempt: Instant::now(),
            ops: ops_rx,
            done: done_tx,
            notify,
            counters: counters.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("redis-store-{shard}"))
            .spawn(move || worker.run())
            .map_err(|e| StoreError(format!("spawning the redis store thread: {e}")))?;
        Ok(RedisStore {
            ops: Some(ops_tx),
            done: done_rx,
            orphaned: Vec::new(),
            thread: Some(thread),
            counters,
        })
    }

    /// The store's counters so far.
    pub fn stats(&self) -> RedisStats {
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
        let Some(tx) = &self.ops else { return };
        if let Err(crossbeam_channel::SendError(op)) = tx.send(op) {
            // The thread is gone (it only ends when the channel closes, so
            // this is a bug): the operation still completes, as an error.
            let err = StoreError("redis store thread has stopped".into());
            self.orphaned.extend(scripts::fail(op, &err));
        }
    }

    fn completed(&mut self, out: &mut Vec<Done>) {
        out.extend(self.done.try_iter());
        out.append(&mut self.orphaned);
    }

    fn held(&self) -> (usize, usize) {
        (0, 0)
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.ops = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens a connection with timeouts and loads the scripts.
fn connect(client: &redis::Client, scripts: &Scripts) -> Result<redis::Connection, StoreError> {
    let err = |e: redis::RedisError| StoreError(format!("redis: {e}"));
    let mut conn = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(err)?;
    conn.set_read_timeout(Some(IO_TIMEOUT)).map_err(err)?;
    conn.set_write_timeout(Some(IO_TIMEOUT)).map_err(err)?;
    scripts.load(&mut conn)?;
    Ok(conn)
}

/// The store's thread: batches, Redis connection, reconnection.
struct Worker {
    shard: usize,
    client: redis::Client,
    params: Params,
    scripts: Scripts,
    /// `None` while Redis is unreachable.
    conn: Option<redis::Connection>,
    /// When the connection last answered.
    last_used: Instant,
    /// Redis was lost and the outage was logged.
    down: bool,
    /// Wait before the attempt after the next one.
    backoff: Duration,
    /// No reconnection attempt before this.
    next_attempt: Instant,
    ops: Receiver<Op>,
    done: Sender<Done>,
    notify: Box<dyn Fn() + Send>,
    counters: Arc<Counters>,
}

impl Worker {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let first = if self.conn.is_none() {
                // While Redis is away, reconnect on schedule even when idle.
                match self.ops.recv_deadline(self.next_attempt) {
                    Ok(op) => op,
                    Err(RecvTimeoutError::Timeout) => {
                        let _ = self.ensure_connected();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match self.ops.recv() {
                    Ok(op) => op,
                    Err(_) => return,
                }
            };
            batch.push(first);
            batch.extend(self.ops.try_iter().take(MAX_BATCH - 1));
            let replies = self.execute(&batch);
            for (op, reply) in batch.drain(..).zip(replies) {
                if reply.is_err() {
                    self.counters.failed_ops.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(done) = scripts::complete(op, reply) {
                    // The receiver lives as long as the store, which joins
                    // this thread before dropping it.
                    let _ = self.done.send(done);
                }
            }
            (self.notify)();
        }
    }

    /// One reply per operation of `batch`, in order.
    fn execute(&mut self, batch: &[Op]) -> Vec<Result<Value, StoreError>> {
        self.counters
            .ops
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let replies = self.ensure_connected().and_then(|()| self.pipeline(batch));
        match replies {
            Ok(replies) => {
                let replies: Vec<_> = replies.into_iter().map(scripts::reply_result).collect();
                if let Some(Err(e)) = replies.iter().find(|r| r.is_err()) {
                    let n = replies.iter().filter(|r| r.is_err()).count();
                    tracing::warn!(shard = self.shard, failed = n, error = %e, "redis refused inbox operations");
                }
                replies
            }
            Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Runs `batch` as one pipeline. When Redis lost the scripts (SCRIPT
    /// FLUSH), the operations from the first NOSCRIPT on did not run: the
    /// scripts are loaded again and that suffix runs once more, in order.
    fn pipeline(&mut self, batch: &[Op]) -> Result<Vec<Value>, StoreError> {
        let mut replies = self.query(batch)?;
        if let Some(i) = replies.iter().position(scripts::is_noscript) {
            let loaded = match self.conn.as_mut() {
                Some(conn) => self.scripts.load(conn),
                None => Err(StoreError("redis: not connected".into())),
            };
            if let Err(e) = loaded {
                self.lost(&e);
                return Err(e);
            }
            let rest = self.query(&batch[i..])?;
            replies.truncate(i);
            replies.extend(rest);
        }
        Ok(replies)
    }

    /// One round trip: the batch's invocations, one reply each.
    fn query(&mut self, batch: &[Op]) -> Result<Vec<Value>, StoreError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(StoreError("redis: not connected".into()));
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for op in batch {
            scripts::add(&mut pipe, &self.scripts, &self.params, op);
        }
        let start = Instant::now();
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        let result = pipe.query::<Vec<Value>>(conn);
        self.last_used = Instant::now();
        self.counters
            .busy_us
            .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
        let replies = result.map_err(|e| StoreError(format!("redis: {e}")));
        match replies {
            Ok(r) if r.len() == batch.len() => Ok(r),
            Ok(r) => {
                let e = StoreError(format!(
                    "redis: {} replies to {} commands",
                    r.len(),
                    batch.len()
                ));
                self.lost(&e);
                Err(e)
            }
            Err(e) => {
                // The stream may be out of step: never reuse the connection.
                self.lost(&e);
                Err(e)
            }
        }
    }

    /// Connects unless connected or a reconnection is not due yet.
    fn ensure_connected(&mut self) -> Result<(), StoreError> {
        if let Some(conn) = self.conn.as_mut() {
            if self.last_used.elapsed() < IDLE_CHECK
                || redis::cmd("PING").query::<Value>(conn).is_ok()
            {
                return Ok(());
            }
            // Closed while idle: reconnect now, no operation was sent.
            tracing::debug!(
                shard = self.shard,
                "redis connection closed while idle; reconnecting"
            );
            self.conn = None;
            self.next_attempt = Instant::now();
        }
        if Instant::now() < self.next_attempt {
            return Err(StoreError("redis unavailable (reconnecting)".into()));
        }
        match connect(&self.client, &self.scripts) {
            Ok(conn) => {
                self.conn = Some(conn);
                self.last_used = Instant::now();
                self.backoff = BACKOFF_MIN;
                if self.down {
                    self.down = false;
                    tracing::info!(shard = self.shard, "redis inbox store reconnected");
                }
                Ok(())
            }
            Err(e) => {
                self.lost(&e);
                Err(e)
            }
        }
    }

    /// Drops the connection and schedules the next attempt; logs the first
    /// failure of an outage only.
    fn lost(&mut self, e: &StoreError) {
        self.conn = None;
        if !self.down {
            self.down = true;
            self.counters.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(shard = self.shard, error = %e, "redis inbox store unavailable; inbox operations fail until it is back");
        }
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

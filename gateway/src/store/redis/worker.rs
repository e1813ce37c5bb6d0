//! The store's thread: takes queued operations in batches, runs each batch
//! as one pipeline on its connection, completes the operations in order,
//! and reconnects with capped exponential backoff when Redis is lost.
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::Value;

use super::coalesce::coalesce_acks;
use super::inbox;
use super::scripts::{self, Params, Scripts};
use super::{Counters, RedisLimits, MAX_BATCH};
use crate::redis_client::{Client, Conn};
use crate::store::{Done, Op, StoreError, StoreErrorKind};

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
/// At most one warning this often about operations Redis refused (OOM,
/// script errors): refusals can repeat on every batch.
const REFUSAL_WARN_EVERY: Duration = Duration::from_secs(10);
/// How soon refused acks are sent again when no other operation comes.
const ACK_RETRY: Duration = Duration::from_millis(200);
/// Devices whose refused ack is kept for a retry; past it, further refused
/// acks are dropped (logged): the device's stored cursor then lags, which a
/// client's `resume` after its next reconnect makes up for.
const MAX_RETRY_ACKS: usize = 65_536;

/// Opens a connection with timeouts and loads the scripts.
fn connect(client: &Client, scripts: &Scripts) -> Result<Conn, StoreError> {
    let mut conn = client
        .connect(CONNECT_TIMEOUT, IO_TIMEOUT)
        .map_err(|e| from_redis(&e))?;
    scripts.load(&mut conn)?;
    Ok(conn)
}

/// The store's thread: batches, Redis connection, reconnection.
pub(super) struct Worker {
    shard: usize,
    client: Client,
    params: Params,
    scripts: Scripts,
    /// `None` while Redis is unreachable.
    conn: Option<Conn>,
    /// When the connection last answered.
    last_used: Instant,
    /// Redis was lost and the outage was logged.
    down: bool,
    /// Wait before the attempt after the next one.
    backoff: Duration,
    /// No reconnection attempt before this.
    next_attempt: Instant,
    /// When refused operations were last logged.
    refusal_warned: Option<Instant>,
    /// Acks Redis refused for now (unreachable, busy), the highest per
    /// device, sent again ahead of the next batch. An ack is cumulative and
    /// the script keeps the maximum, so a late one is safe; a dropped one
    /// would leave the device's cursor behind what it has.
    retry_acks: HashMap<(Arc<str>, Arc<str>), u64>,
    link: Link,
}

/// What connects the thread to its `RedisStore`.
pub(super) struct Link {
    /// Submitted operations.
    pub(super) ops: Receiver<Vec<Op>>,
    /// Completions, in submission order.
    pub(super) done: Sender<Done>,
    /// Called after each batch of completions.
    pub(super) notify: Box<dyn Fn() + Send>,
    /// Shared with the store, for `stats`.
    pub(super) counters: Arc<Counters>,
}

impl Worker {
    /// Opens the client and the first connection (with the scripts loaded).
    pub(super) fn connect(
        url: &str,
        shard: usize,
        limits: &RedisLimits,
        link: Link,
    ) -> Result<Worker, StoreError> {
        let client = Client::open(url, &limits.access, IO_TIMEOUT)
            .map_err(|e| StoreError::new(StoreErrorKind::Config, format!("redis url: {e}")))?;
        let scripts = Scripts::new();
        let conn = connect(&client, &scripts)?;
        Ok(Worker {
            shard,
            client,
            params: Params::new(limits),
            scripts,
            conn: Some(conn),
            last_used: Instant::now(),
            down: false,
            backoff: BACKOFF_MIN,
            next_attempt: Instant::now(),
            refusal_warned: None,
            retry_acks: HashMap::new(),
            link,
        })
    }

    pub(super) fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            // Submissions (channel messages) taken this round.
            let mut taken = 0u64;
            let first = if self.conn.is_none() || !self.retry_acks.is_empty() {
                // While Redis is away, reconnect on schedule even when idle;
                // refused acks are sent again even when nothing else comes.
                let at = if self.conn.is_none() {
                    self.next_attempt
                } else {
                    Instant::now() + ACK_RETRY
                };
                match self.link.ops.recv_deadline(at) {
                    Ok(op) => {
                        taken += 1;
                        op
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        if self.ensure_connected().is_err() || self.retry_acks.is_empty() {
                            continue;
                        }
                        Vec::new()
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match self.link.ops.recv() {
                    Ok(op) => {
                        taken += 1;
                        op
                    }
                    Err(_) => return,
                }
            };
            // Older acks first: coalescing keeps the highest per device.
            batch.extend(
                self.retry_acks
                    .drain()
                    .map(|((user, device), seq)| Op::Ack { user, device, seq }),
            );
            batch.extend(first);
            while batch.len() < MAX_BATCH {
                match self.link.ops.try_recv() {
                    Ok(more) => {
                        taken += 1;
                        batch.extend(more);
                    }
                    Err(_) => break,
                }
            }
            coalesce_acks(&mut batch);
            let replies = self.execute(&batch);
            for (op, reply) in batch.drain(..).zip(replies) {
                if let Err(e) = &reply {
                    self.link
                        .counters
                        .failed_ops
                        .fetch_add(1, Ordering::Relaxed);
                    if let (Op::Ack { user, device, seq }, true) = (&op, e.retryable()) {
                        self.keep_ack(user, device, *seq);
                    }
                }
                if let Some(done) = scripts::complete(op, reply) {
                    // The receiver lives as long as the store, which joins
                    // this thread before dropping it.
                    let _ = self.link.done.send(done);
                }
            }
            // After their completions are sent: see `RedisStore::idle`.
            self.link
                .counters
                .finished
                .fetch_add(taken, Ordering::Relaxed);
            (self.link.notify)();
        }
    }

    /// One reply per operation of `batch`, in order.
    fn execute(&mut self, batch: &[Op]) -> Vec<Result<Value, StoreError>> {
        self.link
            .counters
            .ops
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let replies = self.ensure_connected().and_then(|()| self.pipeline(batch));
        match replies {
            Ok(replies) => {
                let due = self
                    .refusal_warned
                    .is_none_or(|t| t.elapsed() >= REFUSAL_WARN_EVERY);
                if let (true, Some(Err(e))) = (due, replies.iter().find(|r| r.is_err())) {
                    let n = replies.iter().filter(|r| r.is_err()).count();
                    tracing::warn!(shard = self.shard, failed = n, error = %e, "redis refused inbox operations");
                    self.refusal_warned = Some(Instant::now());
                }
                replies
            }
            Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Runs `batch` as one pipeline (`inbox::plan`). When Redis lost the
    /// scripts (SCRIPT FLUSH), the calls answered NOSCRIPT did not run: the
    /// scripts are loaded again and those calls run once more, in order.
    fn pipeline(&mut self, batch: &[Op]) -> Result<Vec<Result<Value, StoreError>>, StoreError> {
        let calls = inbox::plan(batch, self.client.is_cluster());
        let mut replies = self.query(batch, calls.iter())?;
        let again: Vec<usize> = (0..calls.len())
            .filter(|&c| scripts::is_noscript(&replies[c]))
            .collect();
        if !again.is_empty() {
            let loaded = match self.conn.as_mut() {
                Some(conn) => self.scripts.load(conn),
                None => Err(not_connected()),
            };
            if let Err(e) = loaded {
                self.lost(&e);
                return Err(e);
            }
            let rest = self.query(batch, again.iter().map(|&c| &calls[c]))?;
            for (c, reply) in again.into_iter().zip(rest) {
                replies[c] = reply;
            }
        }
        Ok(inbox::spread(&calls, replies, batch.len()))
    }

    /// One round trip: the calls' commands, one reply each.
    fn query<'a>(
        &mut self,
        batch: &[Op],
        calls: impl Iterator<Item = &'a inbox::Call>,
    ) -> Result<Vec<Value>, StoreError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(not_connected());
        };
        let cmds: Vec<_> = calls
            .map(|call| call.cmd(&self.scripts, &self.params, batch))
            .collect();
        let sent = cmds.len();
        let start = Instant::now();
        self.link.counters.batches.fetch_add(1, Ordering::Relaxed);
        let result = conn.pipeline(cmds);
        self.last_used = Instant::now();
        self.link
            .counters
            .busy_us
            .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
        let replies = result.map_err(|e| from_redis(&e));
        match replies {
            Ok(r) if r.len() == sent => Ok(r),
            Ok(r) => {
                let e = StoreError::new(
                    StoreErrorKind::Unexpected,
                    format!("redis: {} replies to {} commands", r.len(), sent),
                );
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
                || conn.query::<Value>(&redis::cmd("PING")).is_ok()
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
            return Err(StoreError::new(
                StoreErrorKind::Unreachable,
                "redis unavailable (reconnecting)",
            ));
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

    /// Keeps a refused ack to send again (the highest per device).
    fn keep_ack(&mut self, user: &Arc<str>, device: &Arc<str>, seq: u64) {
        let key = (user.clone(), device.clone());
        if let Some(kept) = self.retry_acks.get_mut(&key) {
            *kept = (*kept).max(seq);
        } else if self.retry_acks.len() < MAX_RETRY_ACKS {
            self.retry_acks.insert(key, seq);
        } else {
            tracing::warn!(shard = self.shard, %user, seq, "refused ack dropped: too many waiting");
        }
    }

    /// Drops the connection and schedules the next attempt; logs the first
    /// failure of an outage only.
    fn lost(&mut self, e: &StoreError) {
        self.conn = None;
        if !self.down {
            self.down = true;
            self.link.counters.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(shard = self.shard, error = %e, "redis inbox store unavailable; inbox operations fail until it is back");
        }
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

fn not_connected() -> StoreError {
    StoreError::new(StoreErrorKind::Unreachable, "redis: not connected")
}

/// A client-side Redis error: IO and timeouts are "unreachable"; a server
/// error is classified by its code; anything else is unexpected.
pub(super) fn from_redis(e: &redis::RedisError) -> StoreError {
    let kind = if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
    {
        StoreErrorKind::Unreachable
    } else if let Some(code) = e.code() {
        StoreError::kind_of_code(code)
    } else {
        StoreErrorKind::Unexpected
    };
    StoreError::new(kind, format!("redis: {e}"))
}

//! Cross-shard messaging: one bounded lock-free queue per shard.
//!
//! Every shard owns a queue (a crossbeam `ArrayQueue`) that any thread may
//! push to. A shard that finds its queue empty marks itself parked and sleeps
//! on its eventfd; the first push after that pays one eventfd write, later
//! pushes see the shard awake and pay nothing: one wake-up per batch.
//!
//! The eventfds are created by the main thread before any shard unshares its
//! fd table, so each one has the same number in every table (monoio's own
//! cross-thread waker writes a raw fd number and would hit the wrong file).
//!
//! Names (users, rooms) are owned by one shard each, chosen by hash: the owner
//! keeps the node-wide presence of a user and the set of shards interested in
//! a room. Routing through the owner's FIFO queue keeps per-sender order.
//!
//! (The per-user QoS 1 inboxes are something else: `crate::store`.)
use std::hash::{Hash, Hasher};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::{ArrayQueue, SegQueue};

use crate::sys;

mod msg;
pub(crate) use msg::*;

/// The shard (of `shards`) that owns `name`: the same on every thread and
/// for the life of the process.
pub(crate) fn owner(name: &str, shards: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

struct Queue {
    ring: ArrayQueue<ShardMsg>,
    replies: SegQueue<Reply>,
    parked: AtomicBool,
    eventfd: OwnedFd,
}

/// The queues of every shard of this node.
pub struct Mesh {
    queues: Vec<Queue>,
}

impl Mesh {
    /// Creates `shards` queues of `capacity` messages each. Must be called
    /// before any shard thread unshares its fd table.
    pub fn new(shards: usize, capacity: usize) -> std::io::Result<Mesh> {
        let queues = (0..shards)
            .map(|_| {
                Ok(Queue {
                    ring: ArrayQueue::new(capacity.max(1)),
                    replies: SegQueue::new(),
                    parked: AtomicBool::new(false),
                    eventfd: sys::eventfd()?,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Mesh { queues })
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// True when there are no shards (never, for a running node).
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// The shard that owns `name` (a user or a room).
    pub fn owner(&self, name: &str) -> usize {
        owner(name, self.queues.len())
    }

    /// Pushes without waiting; gives the message back when the queue is full.
    pub fn try_push(&self, to: usize, msg: ShardMsg) -> Result<(), ShardMsg> {
        let q = &self.queues[to];
        q.ring.push(msg)?;
        self.wake(q);
        Ok(())
    }

    /// Hands a backend service's reply to shard `to`: never blocks, never
    /// fails (see `Reply` for what bounds the queue).
    pub fn reply(&self, to: usize, reply: Reply) {
        let q = &self.queues[to];
        q.replies.push(reply);
        self.wake(q);
    }

    fn wake(&self, q: &Queue) {
        if q.parked.load(Ordering::Acquire) && q.parked.swap(false, Ordering::AcqRel) {
            sys::eventfd_signal(q.eventfd.as_raw_fd());
        }
    }

    /// Pushes from a thread that may block (the control thread), retrying a
    /// full queue until `timeout`. Gives the message back on timeout.
    pub fn push_blocking(
        &self,
        to: usize,
        msg: ShardMsg,
        timeout: Duration,
    ) -> Result<(), ShardMsg> {
        let deadline = Instant::now() + timeout;
        let mut msg = msg;
        loop {
            match self.try_push(to, msg) {
                Ok(()) => return Ok(()),
                Err(back) if Instant::now() >= deadline => return Err(back),
                Err(back) => {
                    msg = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }

    /// Takes the next message of shard `me`'s queue.
    pub fn pop(&self, me: usize) -> Option<ShardMsg> {
        self.queues[me].ring.pop()
    }

    /// Takes the next backend reply for shard `me`.
    pub fn pop_reply(&self, me: usize) -> Option<Reply> {
        self.queues[me].replies.pop()
    }

    /// True when shard `me`'s queues hold nothing.
    pub fn is_idle(&self, me: usize) -> bool {
        let q = &self.queues[me];
        q.ring.is_empty() && q.replies.is_empty()
    }

    /// Marks shard `me` as about to sleep. Returns false when a message
    /// arrived in the meantime (the caller must not sleep then).
    pub fn park(&self, me: usize) -> bool {
        let q = &self.queues[me];
        q.parked.store(true, Ordering::SeqCst);
        if q.ring.is_empty() && q.replies.is_empty() {
            return true;
        }
        q.parked.store(false, Ordering::SeqCst);
        false
    }

    /// The eventfd that wakes shard `me` (the same number in every table).
    pub fn eventfd(&self, me: usize) -> RawFd {
        self.queues[me].eventfd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests;

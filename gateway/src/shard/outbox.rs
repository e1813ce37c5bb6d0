//! Messages this shard sends to other shards' queues (the mesh).
//!
//! A push to a full queue never blocks the shard (two shards waiting on each
//! other's full queues would deadlock): the message waits in a per-destination
//! backlog, in order, and the outbox task retries. While a destination has a
//! backlog every new message to it joins the backlog, so order per destination
//! is kept. Client sends are refused with OVERLOADED while the backlog is over
//! its bound; messages already accepted are never dropped.
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use super::wake::Notify;
use super::Shard;
use crate::mesh::ShardMsg;
use crate::stats::ShardStats;

/// Backlogged messages above which client sends are refused.
const OVERLOAD_BACKLOG: usize = 65_536;

pub(super) struct Outbox {
    backlog: RefCell<Vec<VecDeque<ShardMsg>>>,
    queued: Cell<usize>,
    wake: Notify,
}

impl Outbox {
    pub(super) fn new(shards: usize) -> Outbox {
        Outbox {
            backlog: RefCell::new((0..shards).map(|_| VecDeque::new()).collect()),
            queued: Cell::new(0),
            wake: Notify::default(),
        }
    }

    /// True when nothing waits for another shard's queue.
    pub(super) fn is_idle(&self) -> bool {
        self.queued.get() == 0
    }

    /// True when client sends should be refused.
    pub(super) fn overloaded(&self) -> bool {
        self.queued.get() > OVERLOAD_BACKLOG
    }
}

impl Shard {
    /// Sends a message to shard `to` (possibly this one), in order.
    pub(super) fn send_to(&self, to: usize, msg: impl Into<ShardMsg>) {
        let msg = msg.into();
        let mut backlog = self.outbox.backlog.borrow_mut();
        let queue = &mut backlog[to];
        let msg = if queue.is_empty() {
            match self.deps.mesh.try_push(to, msg) {
                Ok(()) => return,
                Err(msg) => msg,
            }
        } else {
            msg
        };
        ShardStats::inc(&self.stats.mesh_backlogged);
        queue.push_back(msg);
        self.outbox.queued.set(self.outbox.queued.get() + 1);
        self.outbox.wake.notify();
    }

    /// Moves backlogged messages into queues as they free up.
    pub(super) async fn outbox_task(self: Rc<Self>) {
        loop {
            self.outbox.wake.notified().await;
            while self.outbox.queued.get() > 0 {
                self.push_backlog();
                if self.outbox.queued.get() > 0 {
                    monoio::time::sleep(Duration::from_micros(100)).await;
                }
            }
        }
    }

    fn push_backlog(&self) {
        let mut backlog = self.outbox.backlog.borrow_mut();
        for (to, queue) in backlog.iter_mut().enumerate() {
            while let Some(msg) = queue.pop_front() {
                if let Err(msg) = self.deps.mesh.try_push(to, msg) {
                    queue.push_front(msg);
                    break;
                }
                self.outbox.queued.set(self.outbox.queued.get() - 1);
            }
        }
    }
}

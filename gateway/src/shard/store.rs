//! Opens the QoS 1 store a shard uses for the users it owns.
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deps::Deps;
use crate::mesh::DataMsg;
use crate::store::memory::{MemoryLimits, MemoryStore, RoomLimits};
use crate::store::redis::{RedisLimits, RedisStore};
use crate::store::{Store, StoreError};

/// The in-process store, or Redis when the config names one.
pub(super) fn open(deps: &Arc<Deps>, shard: usize) -> Result<Box<dyn Store>, StoreError> {
    let qos = &deps.qos;
    if let Some(url) = &deps.redis {
        let limits = RedisLimits {
            per_user: qos.inbox_per_user,
            retention: qos.retention(),
            dedupe_window: Duration::from_secs(qos.dedupe_secs),
            room_size: deps.rooms.history_size,
            access: deps.redis_access.clone(),
            room_age: Duration::from_secs(deps.rooms.history_secs),
            ..RedisLimits::default()
        };
        // Completions wake the shard through its inbox; if the inbox is full
        // the shard still collects them on its next timer tick.
        let mesh = deps.mesh.clone();
        let notify = Box::new(move || {
            let _ = mesh.try_push(shard, DataMsg::StoreReady.into());
        });
        return Ok(Box::new(RedisStore::start(url, shard, limits, notify)?));
    }
    let limits = MemoryLimits {
        per_user: qos.inbox_per_user,
        total_bytes: qos.inbox_total_bytes,
        retention: qos.retention(),
        dedupe_window: qos.dedupe_window,
    };
    let node_clock = deps.clock;
    let clock = Box::new(move || node_clock.unix_ms(Instant::now()));
    let rooms = RoomLimits {
        size: deps.rooms.history_size,
        age_ms: deps.rooms.history_secs.saturating_mul(1000),
        total_bytes: deps.rooms.history_total_bytes,
    };
    let seed = deps.incarnation ^ ((shard as u64) << 48);
    Ok(Box::new(
        MemoryStore::new(limits, clock).with_rooms(rooms, seed),
    ))
}

impl super::Shard {
    /// Sends what this round submitted to the store (one batch), and
    /// publishes what the in-process store holds (once per round, not per
    /// operation).
    pub(super) fn flush_store(&self) {
        self.store.borrow_mut().flush();
        let (msgs, bytes) = self.store.borrow().held();
        self.stats.set_inbox(msgs, bytes);
    }

    /// Hands every completed store operation to the router, in order
    /// (its actions are carried out by the caller's `run_actions`).
    pub(super) fn collect_store(&self) {
        let mut done = std::mem::take(&mut *self.store_done.borrow_mut());
        self.store.borrow_mut().completed(&mut done);
        if !done.is_empty() {
            let now = self.now.get();
            let mut router = self.router.borrow_mut();
            for d in done.drain(..) {
                router.stored(now, d);
            }
        }
        *self.store_done.borrow_mut() = done;
    }

    /// Collects completions and carries out what they route.
    pub(super) fn drain_store(&self) {
        self.collect_store();
        self.run_actions();
    }
}

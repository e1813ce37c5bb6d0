//! The shard's timing wheel and its ticker: one wheel entry per connection,
//! at its session's next deadline (`Session::poll_timeout`); no
//! per-connection OS timer or sleeping task.
//!
//! What a deadline is for (handshake, heartbeat, token expiry, retransmit,
//! linger) is the session's business (`session::timer`); the wheel only
//! says "this connection's deadline has come".
use std::rc::Rc;
use std::time::Duration;

use super::Shard;
use crate::router::tables::ConnKey;
use crate::wheel::TimerKey;

/// How often a shard returns freed memory to the OS.
const COLLECT_PERIOD: Duration = Duration::from_secs(2);

/// A connection's wheel entry; `conn_id` guards against slab key reuse.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer {
    /// The slab key, narrowed: a wheel entry per connection is worth 8 B.
    key: u32,
    conn_id: u64,
}

impl Timer {
    /// The entry of connection `conn_id` at slab `key`.
    pub(crate) fn new(key: ConnKey, conn_id: u64) -> Timer {
        Timer {
            key: key as u32,
            conn_id,
        }
    }
}

impl Shard {
    /// Advances the wheel every tick and acts on what expired.
    pub(super) async fn ticker_task(self: Rc<Self>) {
        let tick = Duration::from_millis(self.deps.timer_tick_ms.max(1));
        let mut expired = Vec::new();
        let collect_every = (COLLECT_PERIOD.as_millis() / tick.as_millis().max(1)).max(1) as u64;
        let mut ticks = 0u64;
        loop {
            monoio::time::sleep(tick).await;
            ticks += 1;
            if ticks.is_multiple_of(collect_every) {
                // Hand memory freed after a burst (fan-out, mass disconnect)
                // back to the OS instead of keeping it in this thread's heap.
                self.fx.borrow_mut().pool.clear();
                // SAFETY: mi_collect only walks the calling thread's heap.
                unsafe { libmimalloc_sys::mi_collect(true) };
                self.publish_bus_stats();
            }
            let now = self.tick_clock();
            self.flush_presence();
            // Collects store completions whose wake-up found the queue full.
            self.drain_store();
            self.router.borrow_mut().on_tick(now);
            self.run_actions();
            self.flush_store();
            if self.gate.is_closed() {
                // An upgrade moves the connections: their deadlines move
                // with them (as remaining time), none acts here meanwhile.
                continue;
            }
            self.wheel.borrow_mut().advance(now, &mut expired);
            for timer in expired.drain(..) {
                self.fire(timer);
            }
        }
    }

    /// A connection's deadline came: the session acts on it, and the entry
    /// is placed again at its next deadline (`settle`, since it is unset).
    /// A deadline about the peer's silence first reads what the peer sent
    /// (see `Session::silence_due`).
    fn fire(&self, t: Timer) {
        let key = t.key as ConnKey;
        let silence = {
            let mut conns = self.conns.borrow_mut();
            match conns.get_mut(key) {
                Some(c) if c.session().id() == t.conn_id => {
                    c.timer = TimerKey::NONE;
                    c.session().silence_due(&self.env, self.now.get())
                }
                _ => return,
            }
        };
        if silence {
            self.on_input(key, t.conn_id as u32);
        }
        self.drive_if(key, Some(t.conn_id), |s, cx| s.handle_timeout(cx));
    }
}

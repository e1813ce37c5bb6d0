//! Epoll sets an upgrade hands over whole (`handover_early`).
//!
//! Adding a million descriptors to a new epoll set was most of what taking
//! connections over cost the new process (`epoll_ctl`: 84% of its CPU while
//! the descriptors came ahead at a million connections, the kernel's slab
//! pages for the entries a quarter of it). But an epoll set is a kernel
//! object with a descriptor of its own, and its entries watch the sockets,
//! not their numbers: the old shard sends its set (and any set it adopted
//! itself), and the new shard polls each beside its own, with a task of its
//! own (`adopted_task`; not nested in its own set, where adding a set makes
//! the kernel walk every entry of it for loops, 17% of the freeze measured).
//! Every connection stays registered where it was, under
//! the old process's token (the old slab key and the low half of the id);
//! the new shard maps each set's keys to its own (`Adopted::keys`), and the
//! id check that drops a stale event for a reused key does the same here.
//! Nothing is added or removed for a connection that moves.
//!
//! The sets are shared until the commit: the old shard polls them while it
//! serves, the new one only once its gate opens (the old one is frozen by
//! then), and at the commit the old shard puts what stays (TLS 1.2, closing
//! connections) in a fresh set of its own (`leave_sets`) and never polls a
//! set it gave away again. A set's entry for a socket goes when the socket's
//! last descriptor closes, in whichever process; until then a connection
//! closed here leaves an entry whose events the key map drops. A set with no
//! connection left in this shard is not handed on (`places`).
//!
//! Edge-triggered, registered once, for the connection's life (`poller`),
//! so a set changes hands without a single `epoll_ctl` on a connection.
//! What an edge already reported and the old shard left unread (its `again`
//! list, input held back by backpressure) is named in the export, and read
//! once the gate opens (`ConnBatch::reread`).
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::poller::{token, untoken, EVENTS};
use super::wake::{runtime_turn, waited, Turns};
use super::Shard;
use crate::router::tables::ConnKey;
use crate::sys;

/// Most sets a shard holds: beyond, an upgrade registers each descriptor
/// in the new set instead (one record carries them, with its own set).
pub(super) const MAX_SETS: usize = 0xf0;
/// Keys in a set's tokens run below the listeners' keys (`accept`).
const MAX_KEY: usize = 0xffff_ff00;

/// Where a connection is registered: its set (an index into the sets
/// handed over) and the key in its token there.
pub(super) type Place = (u32, u32);

/// No connection at this key of the set.
const NONE: (u32, u32) = (u32::MAX, 0);

/// An epoll set another process's shard handed over.
pub(super) struct Adopted {
    epfd: OwnedFd,
    /// By the slab key in the set's tokens: this shard's key and the low
    /// half of its connection's id.
    keys: Vec<(u32, u32)>,
}

impl Adopted {
    pub(super) fn new(epfd: OwnedFd) -> Adopted {
        Adopted {
            epfd,
            keys: Vec::new(),
        }
    }

    /// Records that the connection under `token_key` in this set is at
    /// `key` here.
    pub(super) fn place(&mut self, token_key: u32, key: ConnKey, id: u64) -> Result<(), String> {
        let at = token_key as usize;
        if at >= MAX_KEY || key >= MAX_KEY {
            return Err(format!(
                "key {token_key} of a handed-over set is out of range"
            ));
        }
        if self.keys.len() <= at {
            self.keys.resize(at + 1, NONE);
        }
        if self.keys[at] != NONE {
            return Err(format!("key {token_key} of a handed-over set came twice"));
        }
        self.keys[at] = (key as u32, id as u32);
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.keys.iter().all(|k| *k == NONE)
    }
}

impl Shard {
    /// Old process: the sets to hand over (this shard's own first, then
    /// those it adopted), and where each connection is registered: its set
    /// (an index into them) and the key in its token, by slab key. None
    /// when there are too many sets to send in one record.
    pub(super) fn places(&self) -> Option<(Vec<RawFd>, Vec<Place>)> {
        let adopted = self.poller.adopted.borrow();
        if adopted.len() + 1 > MAX_SETS {
            return None;
        }
        let conns = self.conns.borrow();
        let mut places: Vec<Place> = (0..conns.capacity()).map(|k| (0, k as u32)).collect();
        for (i, set) in adopted.iter().enumerate() {
            for (token_key, &(key, id)) in set.keys.iter().enumerate() {
                let live = conns.get(key as usize).map(|c| c.session().id() as u32) == Some(id);
                if (key, id) != NONE && live {
                    places[key as usize] = (i as u32 + 1, token_key as u32);
                }
            }
        }
        let mut sets = vec![self.poller_fd()];
        sets.extend(adopted.iter().map(|a| a.epfd.as_raw_fd()));
        Some((sets, places))
    }

    /// New process, at the end of the import: polls each set that came
    /// with connections (once the gate opens); drops the others.
    pub(super) fn watch_sets(self: &std::rc::Rc<Self>, sets: Vec<Adopted>) -> Result<(), String> {
        for set in sets.into_iter().filter(|s| !s.is_empty()) {
            let index = {
                let mut adopted = self.poller.adopted.borrow_mut();
                if adopted.len() >= MAX_SETS {
                    return Err("too many handed-over epoll sets".into());
                }
                adopted.push(set);
                adopted.len() - 1
            };
            monoio::spawn(self.clone().adopted_task(index));
        }
        Ok(())
    }

    /// Waits for readiness of adopted set `index` and dispatches it, while
    /// this shard serves the set (as `poll_task` its own).
    async fn adopted_task(self: std::rc::Rc<Self>, index: usize) {
        let epfd = self.poller.adopted.borrow()[index].epfd.as_raw_fd();
        let Some((waiter, generation)) = self.waiter(epfd) else {
            return;
        };
        let turns = Turns::default();
        while self.round(generation).await {
            if self.poll_adopted(index) == EVENTS {
                runtime_turn().await;
                continue;
            }
            let (ready, did_wait) = waited(waiter.readable(false)).await;
            if ready.is_err() {
                tracing::error!(shard = self.id, "a handed-over epoll set's poll failed");
                return;
            }
            turns.after_wait(did_wait).await;
        }
    }

    /// Dispatches the ready events of adopted set `index` under this
    /// shard's keys; returns how many it collected.
    fn poll_adopted(&self, index: usize) -> usize {
        let epfd = self.poller.adopted.borrow()[index].epfd.as_raw_fd();
        let mut events = std::mem::take(&mut *self.poller.adopted_events.borrow_mut());
        events.resize(EVENTS, libc::epoll_event { events: 0, u64: 0 });
        let n = sys::epoll_poll(epfd, &mut events);
        for ev in &events[..n] {
            let (token_key, id) = untoken(ev.u64);
            let key = self.poller.adopted.borrow()[index]
                .keys
                .get(token_key)
                .filter(|k| k.1 == id && **k != NONE)
                .map(|k| k.0 as ConnKey);
            // Not here: a connection that stayed in the old process, or
            // one closed here whose socket lives on there for now.
            if let Some(key) = key {
                self.on_event(key, id, ev.events);
            }
        }
        *self.poller.adopted_events.borrow_mut() = events;
        n
    }

    /// Old process, at the commit, when its sets went to the new process:
    /// what stays here (not moved: TLS 1.2, closing connections) moves to
    /// a fresh set, and the poller serves that one from now on. The sets
    /// themselves live on in the new process.
    pub(super) fn leave_sets(self: &std::rc::Rc<Self>) {
        let fresh = match sys::epoll_create() {
            Ok(fd) => fd,
            Err(e) => {
                // Without a set, what stays ends at the drain's deadline.
                tracing::error!(shard = self.id, "cannot create an epoll set: {e}");
                return;
            }
        };
        for (key, c) in self.conns.borrow().iter() {
            if let Err(e) = sys::epoll_add(fresh.as_raw_fd(), c.fd, token(key, c.session().id())) {
                tracing::warn!(shard = self.id, "cannot watch a connection that stays: {e}");
            }
        }
        // The tasks polling the sets given away end when they next wake.
        self.poller.adopted.borrow_mut().clear();
        self.poller.replace(fresh);
        monoio::spawn(self.clone().poll_task());
    }
}

//! Sessions ahead of the freeze, beside their descriptors
//! (`handover_early`).
//!
//! At a million connections the freeze was the sessions: each old shard
//! encoding its share and each new one decoding it, building its entries,
//! its users' table and its rooms (0.85-1.5 s on two cores, every client
//! paused for all of it). When the new binary takes them
//! (`Accept { sessions }`), each old shard sends every plain connection's
//! session with its descriptor while it still serves, and the new shard
//! adopts it there and then: entry, deadline, grants, users and rooms
//! (their `Online`s held for the owners as in any import). At the freeze
//! only what changed since moves:
//!
//! - Every borrow of a session to change it marks its connection
//!   (`Conn::session_mut`), and sending it ahead clears the mark: a session
//!   that went ahead unmarked is the same now, and the export does not
//!   send it. When the new binary keeps what it is not told about
//!   (`Accept { unlisted }`), such a session is not named at all, unless
//!   its input is to be read again (`ConnBatch::kept`); else each one is
//!   named by id. Naming a million ids cost both sides a hash lookup
//!   each inside the freeze, a third of it at a million connections.
//!   Marking on the borrow, not on a change,
//!   errs only towards sending again; the type system sees to it that no
//!   change escapes it. What the shard keeps of a connection by id
//!   (grants, room positions, the inflate window) changes only inside the
//!   session's own calls, under the same borrow.
//! - A marked one goes whole, as before, and replaces the state that came
//!   ahead: its routes stay when its user, device, wire and rooms are the
//!   same (a ping, a heartbeat, a delivery: nearly every change), or are
//!   taken back and given again (`unroute`; a held `Online` is dropped,
//!   not followed by an `Offline` that would reach the owner first).
//! - One that came ahead and does not move (closed, closing, or kept by
//!   the old process meanwhile) is taken back whole (`unadopt`) at the
//!   end, with no event: the old process tells what happened to it. With
//!   `unlisted` the old shard names those in its last record
//!   ([`EndAhead::gone`]: the ids it sent ahead with their sessions and
//!   did not export); else they are the ones in neither list.
//!
//! Sessions over [`super::handover_early`]'s bound (a long send queue, a
//! big QoS 1 window) go at the freeze, as before; so do TLS connections.
use std::time::{Duration, Instant};

use super::handover_import::Placed;
use super::Shard;
use crate::router::tables::ConnKey;
use crate::session::SessionState;

/// Most connections an import sizes its tables for ahead.
const RESERVE_MAX: usize = 1 << 22;

/// The body of an old shard's last record (`handover::END`; empty from a
/// binary before `Accept { unlisted }`, and without it).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct EndAhead {
    /// Every session that came ahead and is named nowhere moved unchanged.
    #[prost(bool, tag = "1")]
    pub(super) unlisted: bool,
    /// Sessions that came ahead and do not move (closed, closing or kept
    /// by the old process since), by id.
    #[prost(uint64, repeated, tag = "2")]
    pub(super) gone: Vec<u64>,
}

impl Shard {
    /// This process's instant for a record written at `unix_ms` by the
    /// other process (both clocks are this host's): deadlines count the
    /// time in transit.
    pub(super) fn exported_at(&self, unix_ms: u64) -> Instant {
        let now = self.tick_clock();
        let transit = self.deps.clock.unix_ms(now).saturating_sub(unix_ms);
        now.checked_sub(Duration::from_millis(transit))
            .unwrap_or(now)
    }

    /// New process: room for the `n` connections the old shard sends ahead
    /// (at most a bound: the number comes from the other process), and
    /// with `sessions` for their timers and users too.
    pub(super) fn reserve_ahead(&self, n: usize, sessions: bool) {
        let n = n.min(RESERVE_MAX);
        self.conns.borrow_mut().reserve(n);
        let mut early = self.early.borrow_mut();
        early.staged.reserve(n);
        if sessions {
            self.wheel.borrow_mut().reserve(n);
            self.router.borrow_mut().reserve(n);
        }
    }

    /// New process: adopts the sessions that came ahead with descriptors
    /// `ids` (already at their entries), `sessions[i]` for `ids[at[i]]`.
    pub(super) fn adopt_ahead(
        &self,
        ids: &[u64],
        sessions: Vec<SessionState>,
        at: &[u32],
        unix_ms: u64,
    ) -> Result<(), String> {
        if sessions.len() != at.len() {
            return Err(format!(
                "{} sessions came ahead for {} places",
                sessions.len(),
                at.len()
            ));
        }
        let then = self.exported_at(unix_ms);
        for (st, &i) in sessions.into_iter().zip(at) {
            let id = st.id;
            if ids.get(i as usize) != Some(&id) {
                return Err(format!("session {id} came ahead without its descriptor"));
            }
            let key = match self.early.borrow().staged.get(&id) {
                Some(&(key, false)) => key,
                _ => return Err(format!("session {id} came ahead twice")),
            };
            // Still among the staged ones, its session in place.
            self.take_session(st, then, Placed::Early(key), None)?;
            let mut early = self.early.borrow_mut();
            if let Some(staged) = early.staged.get_mut(&id) {
                staged.1 = true;
            }
            early.adopted += 1;
        }
        Ok(())
    }

    /// New process, at the freeze: the connections whose sessions came
    /// ahead and did not change (`kept`: all of them, or with `unlisted`
    /// only those to read again), and of those the ones to read again
    /// (`reread`, places in `kept`).
    pub(super) fn keep_ahead(&self, kept: &[u64], reread: &[u32]) -> Result<(), String> {
        let mut keys = Vec::with_capacity(kept.len());
        for &id in kept {
            match self.take_early(id) {
                Some((key, true)) => keys.push(key),
                _ => return Err(format!("session {id} kept but did not come ahead")),
            }
        }
        for &i in reread {
            let Some(&key) = keys.get(i as usize) else {
                return Err("a kept session to read again that did not come".into());
            };
            self.read_again(key, kept[i as usize]);
        }
        Ok(())
    }

    /// New process: takes back what the router was told of the session at
    /// `key` (its rooms, its user), without a word to the backend.
    pub(super) fn unroute(&self, key: ConnKey) {
        let (id, user, rooms) = {
            let conns = self.conns.borrow();
            let s = conns[key].session();
            (s.id(), s.user().cloned(), s.rooms().to_vec())
        };
        {
            let mut router = self.router.borrow_mut();
            for room in &rooms {
                router.leave(key, room);
            }
            if let Some(user) = &user {
                router.closed(key, user, id);
            }
        }
        self.run_actions();
    }

    /// New process: takes back everything adopting the session at `key`
    /// did (routes, what is kept by id, the deadline, the gauge); the
    /// entry and its descriptor stay for the caller.
    pub(super) fn unadopt(&self, key: ConnKey) {
        self.unroute(key);
        let (id, tcp, timer) = {
            let mut conns = self.conns.borrow_mut();
            let c = &mut conns[key];
            let timer = std::mem::replace(&mut c.timer, crate::wheel::TimerKey::NONE);
            let tcp = c.session().wire() == crate::outbound::Wire::Tcp;
            (c.session().id(), tcp, timer)
        };
        self.wheel.borrow_mut().cancel(timer);
        self.fx.borrow_mut().forget(id);
        self.sse_forget(id);
        self.gauge(tcp, -1);
    }
}

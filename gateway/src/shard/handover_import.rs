//! The new process's side of moving a shard's connections (the old
//! process's side and the records are `handover`): read this shard's
//! records from its channel and take over what they carry.
use std::os::fd::{IntoRawFd, OwnedFd};
use std::time::Duration;

use prost::Message;

use super::handover::{
    ConnBatch, AHEAD, CONNS, EARLY, END, MAX_RECORD, RECORD_TIMEOUT, SETS, STORE,
};
use super::handover_ahead::EndAhead;
use super::{Conn, Shard};
use crate::session::{RoomCursors, Route, Session};
use crate::sys;

impl Shard {
    /// Reads the old process's records for this shard and takes over what
    /// they carry; returns how many connections.
    pub(super) fn import(
        self: &std::rc::Rc<Self>,
        ahead: &crossbeam_channel::Sender<usize>,
    ) -> Result<usize, String> {
        self.router.borrow_mut().hold_online();
        let taken = self.import_records(ahead);
        let released = std::time::Instant::now();
        self.router.borrow_mut().release_online();
        self.run_actions();
        tracing::debug!(
            shard = self.id,
            ms = released.elapsed().as_millis() as u64,
            "upgrade: users handed to their owners"
        );
        taken
    }

    fn import_records(
        self: &std::rc::Rc<Self>,
        ahead: &crossbeam_channel::Sender<usize>,
    ) -> Result<usize, String> {
        let pipe = self.take_pipe()?;
        let mut count = 0;
        // The freeze's share of this shard: from its first session to the end.
        let (mut first, mut busy) = (None, Duration::ZERO);
        loop {
            let (bytes, fds) = match sys::recv_record(&pipe, MAX_RECORD, RECORD_TIMEOUT) {
                Ok(Some(r)) => r,
                Ok(None) => return Err("the handover channel closed".into()),
                Err(e) => return Err(format!("handover channel: {e}")),
            };
            match bytes.split_first() {
                Some((&SETS, _)) => self.import_sets(fds)?,
                Some((&EARLY, body)) => self.import_early(body, fds)?,
                Some((&AHEAD, _)) => {
                    let (n, adopted) = self.early_count();
                    // The users of those whose sessions did not come ahead
                    // come at the freeze: room for them now.
                    self.router.borrow_mut().reserve(n - adopted);
                    let _ = ahead.send(n);
                }
                Some((&CONNS, body)) => {
                    let at = std::time::Instant::now();
                    first.get_or_insert(at);
                    count += self.import_conns(body, fds)?;
                    busy += at.elapsed();
                }
                Some((&STORE, body)) => self
                    .store
                    .borrow_mut()
                    .import_state(body)
                    .map_err(|e| format!("unreadable store state: {e}"))?,
                Some((&END, body)) => {
                    let end = EndAhead::decode(body)
                        .map_err(|e| format!("unreadable last record: {e}"))?;
                    let (unclaimed, kept) = self.drop_unclaimed_early(&end)?;
                    count += kept;
                    tracing::debug!(
                        shard = self.id,
                        unclaimed,
                        conns = count,
                        busy_ms = busy.as_millis() as u64,
                        ms = first.map_or(0, |t| t.elapsed().as_millis() as u64),
                        "upgrade: a shard's sessions taken"
                    );
                    return Ok(count);
                }
                _ => return Err("unknown handover record".into()),
            }
        }
    }

    fn import_conns(&self, body: &[u8], fds: Vec<OwnedFd>) -> Result<usize, String> {
        let batch = ConnBatch::decode(body).map_err(|e| format!("unreadable sessions: {e}"))?;
        let n = batch.sessions.len();
        // Whether each session's descriptor was sent ahead.
        let mut early = vec![false; n];
        for &i in &batch.early {
            match early.get_mut(i as usize) {
                Some(seen @ false) => *seen = true,
                _ => return Err("descriptors sent ahead for no session, or twice for one".into()),
            }
        }
        if n != fds.len() + batch.early.len() {
            return Err(format!(
                "{n} sessions came with {} descriptors and {} sent ahead",
                fds.len(),
                batch.early.len()
            ));
        }
        let then = self.exported_at(batch.exported_unix_ms);
        let mut reread = vec![false; n];
        for &i in &batch.reread {
            match reread.get_mut(i as usize) {
                Some(r) => *r = true,
                None => return Err("a session to read again that did not come".into()),
            }
        }
        let mut tls = std::collections::HashMap::new();
        for t in batch.tls {
            if t.index as usize >= n || tls.insert(t.index, t).is_some() {
                return Err("TLS state for no session, or twice for one".into());
            }
        }
        let mut fds = fds.into_iter();
        for (index, st) in batch.sessions.into_iter().enumerate() {
            let fd = match early[index] {
                true => self.take_early(st.id).map(|(key, adopted)| match adopted {
                    true => Placed::Adopted(key),
                    false => Placed::Early(key),
                }),
                false => fds.next().map(Placed::New),
            };
            let Some(fd) = fd else {
                return Err(format!("no descriptor for connection {}", st.id));
            };
            let id = st.id;
            let key = self.take_session(st, then, fd, tls.remove(&(index as u32)))?;
            if reread[index] {
                self.read_again(key, id);
            }
        }
        self.keep_ahead(&batch.kept, &batch.kept_reread)?;
        Ok(n + batch.kept.len())
    }

    /// Takes over one connection in `st` (exported at `then`, this
    /// process's clock), its descriptor where `fd` says.
    pub(super) fn take_session(
        &self,
        mut st: crate::session::SessionState,
        then: std::time::Instant,
        fd: Placed,
        tls: Option<super::tls_move::TlsMoved>,
    ) -> Result<crate::router::tables::ConnKey, String> {
        if let Placed::Adopted(_) = fd {
            // What the state that came ahead left by id goes: this one's
            // replaces it.
            self.fx.borrow_mut().forget(st.id);
            self.sse_forget(st.id);
        }
        let rooms = RoomCursors::import(std::mem::take(&mut st.rooms_at));
        let window = std::mem::take(&mut st.inflate_window);
        let (session, grants) =
            Session::import(st, then, &self.env).map_err(|e| format!("a session: {e}"))?;
        let mut fx = self.fx.borrow_mut();
        fx.inflate.set_window(session.id(), window);
        if let Some(rooms) = rooms {
            fx.room_cursors.insert(session.id(), rooms);
        }
        drop(fx);
        self.adopt(fd, session, grants, tls)
    }

    /// Serves a connection that another process handed over (with its TLS
    /// record state, for a TLS one), at its entry if its descriptor came
    /// ahead.
    fn adopt(
        &self,
        fd: Placed,
        session: Session,
        grants: Option<crate::grants::Grants>,
        tls: Option<super::tls_move::TlsMoved>,
    ) -> Result<crate::router::tables::ConnKey, String> {
        let id = session.id();
        // Ids stay as they were (presence lists them): new ones come after.
        let n = id & ((1 << 48) - 1);
        if n >= self.next_id.get() {
            self.next_id.set(n + 1);
        }
        let wire = session.wire();
        let open = session
            .user()
            .map(|u| (u.clone(), session.device().clone()));
        let rooms: Vec<_> = session.rooms().to_vec();
        let (fd, key, watched, routed, counted) = match fd {
            Placed::New(fd) => {
                let fd = fd.into_raw_fd();
                let key = self.conns.borrow_mut().insert(Conn::new(fd, session));
                (fd, key, false, false, false)
            }
            Placed::Early(key) => {
                let mut conns = self.conns.borrow_mut();
                let c = &mut conns[key];
                c.set_session(session);
                (c.fd, key, true, false, false)
            }
            Placed::Adopted(key) => {
                // Its state came ahead and changed since: routed as it was
                // unless its user or rooms changed too.
                let same = self.conns.borrow()[key].session().same_routes(&session);
                if !same {
                    self.unroute(key);
                }
                let mut conns = self.conns.borrow_mut();
                let c = &mut conns[key];
                c.set_session(session);
                self.wheel.borrow_mut().cancel(c.timer);
                c.timer = crate::wheel::TimerKey::NONE;
                (c.fd, key, true, same, true)
            }
        };
        if let Some(t) = tls {
            // Before anything is read or written: its records are TLS.
            self.tls_adopt(key, t)?;
        }
        if let Some(g) = grants {
            self.fx
                .borrow_mut()
                .set_grants(id, Some(std::sync::Arc::new(g)));
        }
        if wire == crate::outbound::Wire::Sse {
            // Its POSTs' key is the node's, which the new process keeps.
            self.sse_opened(key, id);
        }
        // Not counted as accepted: the old process's totals carry it.
        if !counted {
            self.gauge(wire == crate::outbound::Wire::Tcp, 1);
        }
        let watch = match watched {
            true => Ok(()),
            false => self.watch(fd, key, id),
        };
        if let Err(e) = watch {
            tracing::warn!(
                shard = self.id,
                "cannot watch a handed-over connection: {e}"
            );
        }
        // Arms its deadline and queues its pending output (written once the
        // gate opens).
        self.drive(key, |_, _| ());
        if let Some((user, device)) = open.filter(|_| !routed) {
            self.apply_route(key, id, Route::Online { user, device, wire });
            for room in rooms {
                self.apply_route(key, id, Route::Joined(room));
            }
        }
        Ok(key)
    }
}

/// Where a handed-over connection's descriptor is: attached to its record,
/// or sent ahead and in its entry already (`handover_early`), and then
/// maybe with a state that came ahead too (`handover_ahead`).
pub(super) enum Placed {
    New(OwnedFd),
    Early(crate::router::tables::ConnKey),
    Adopted(crate::router::tables::ConnKey),
}

//! Moving this shard's connections to an upgrade's new process (the
//! orchestration is `control::upgrade`).
//!
//! Old process, per shard: `freeze` closes the shard's gate (no input read,
//! no output written, no session deadline acted on; mesh messages and store
//! completions are still handled so the shard can settle) and stops
//! accepting; `settled` says when no store operation and no backend request
//! is out; `export`
//! writes every movable plain connection (its descriptor and its session,
//! `session::SessionState`) and the in-process store's inboxes to the
//! channel the node gave it for this upgrade (its other end is the new
//! process's matching shard). Nothing is forgotten yet: `thaw` (abort) opens
//! the gate again as if nothing happened; `forget` (commit) drops the moved
//! connections without a word to anyone (no close, no disconnect event:
//! they live on in the new process) and opens the gate for the rest, which
//! the drain that follows sends away.
//!
//! New process, per shard (`handover_import`): it starts with its gate
//! closed; `import` reads the records from its channel, rebuilds each
//! connection (slab entry, epoll registration, wheel entry, its user and
//! rooms in the router, its grants) and the store; the commit (`Command::Accept`) opens the gate and
//! starts accepting. Bytes that arrived meanwhile wait in the sockets.
//!
//! Before the freeze, the plain connections' descriptors may go ahead
//! while the shard still serves (`handover_early`): the export then writes
//! only their sessions; and their sessions too (`handover_ahead`): the
//! export then writes only those changed since, and names the others.
//!
//! TLS 1.3 connections move with their record state (`tls_move`). Not
//! moved: other TLS connections (TLS 1.2, mid-handshake: they are drained,
//! go-away `DRAINING`) and closing ones (they finish in the old process).
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use prost::Message;

use super::handover_ahead::EndAhead;
use super::Shard;
use crate::router::tables::ConnKey;
use crate::session::SessionState;
use crate::sys;

/// Connections per record (one descriptor each; `SCM_RIGHTS` takes 253).
const PER_RECORD: usize = sys::MAX_FDS;
/// Largest record (the in-process store goes in one).
pub(super) const MAX_RECORD: usize = 1 << 30;
/// How long a frozen shard may take to see its store operations answered.
const SETTLE: Duration = Duration::from_secs(2);
/// How long an import waits for the next record.
pub(super) const RECORD_TIMEOUT: Duration = Duration::from_secs(30);

/// Record kinds (the first byte); `PIPE` comes from the node.
const PIPE: u8 = b'P';
/// Descriptors sent ahead (`handover_early`), and the record after the
/// last of them.
pub(super) const EARLY: u8 = b'A';
pub(super) const AHEAD: u8 = b'a';
/// The shard's epoll sets, ahead of its descriptors (`adopted`).
pub(super) const SETS: u8 = b'W';
pub(super) const CONNS: u8 = b'C';
pub(super) const STORE: u8 = b'S';
pub(super) const END: u8 = b'E';

/// Up to [`PER_RECORD`] connections, their descriptors in the same order.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ConnBatch {
    /// When it was written (Unix ms): the reader counts the time in transit
    /// against every deadline.
    #[prost(uint64, tag = "1")]
    pub(super) exported_unix_ms: u64,
    #[prost(message, repeated, tag = "2")]
    pub(super) sessions: Vec<SessionState>,
    /// The record state of the TLS connections among them (format 3).
    #[prost(message, repeated, tag = "3")]
    pub(super) tls: Vec<super::tls_move::TlsMoved>,
    /// The sessions whose descriptor was sent ahead (`handover_early`), by
    /// index: none is attached for them.
    #[prost(uint32, repeated, tag = "4")]
    pub(super) early: Vec<u32>,
    /// The sessions whose input an edge already reported and this shard
    /// left unread (its poller's next round, or held back while writes
    /// were blocked), by index: no new edge comes for it (`adopted`).
    #[prost(uint32, repeated, tag = "5")]
    pub(super) reread: Vec<u32>,
    /// Connections whose session went ahead too (`handover_early`) and
    /// did not change since: the new shard has it already. By id.
    #[prost(uint64, repeated, tag = "6")]
    pub(super) kept: Vec<u64>,
    /// Those of `kept` to read again (as `reread`), by index into `kept`.
    #[prost(uint32, repeated, tag = "7")]
    pub(super) kept_reread: Vec<u32>,
}

fn record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(body.len() + 1);
    r.push(kind);
    r.extend_from_slice(body);
    r
}

impl Shard {
    /// Stops reading, writing, timing out and accepting (an upgrade moves
    /// the connections next, or `thaw` undoes it).
    pub(super) fn freeze(&self) {
        self.gate.close();
        self.pause_accepting();
    }

    /// True once no store operation and no backend request (a hook
    /// decision, a send to the backend stream) of this shard is out: their
    /// answers are for the sessions, which must have them before they move.
    pub(super) fn settled(&self) -> bool {
        // Idle before the collection: every completion is there to collect.
        let idle = self.store.borrow().idle();
        self.drain_store();
        idle && self.replies_out.get() == 0 && self.router.borrow().unsettled() == (0, 0)
    }

    /// Answers once the shard is settled, or false after [`SETTLE`].
    pub(super) async fn settle_then_answer(
        self: std::rc::Rc<Self>,
        reply: crossbeam_channel::Sender<bool>,
    ) {
        let deadline = Instant::now() + SETTLE;
        while !self.settled() {
            if Instant::now() >= deadline {
                let (queued, at_store) = self.router.borrow().unsettled();
                tracing::warn!(
                    shard = self.id,
                    replies = self.replies_out.get(),
                    queued,
                    at_store,
                    "upgrade: store operations still out after the freeze"
                );
                let _ = reply.send(false);
                return;
            }
            self.flush_store();
            monoio::time::sleep(Duration::from_millis(2)).await;
        }
        let _ = reply.send(true);
    }

    /// The upgrade aborted: serve on as before.
    pub(super) fn thaw(&self) {
        self.exported.borrow_mut().clear();
        self.early.borrow_mut().call_off();
        // A channel the node gave for this upgrade that this shard never
        // took (the abort came first) is not for the next one.
        let sock = Fd(self.deps.handover[self.id]);
        while let Ok(Some(_)) = sys::recv_record(&sock, 16, Duration::ZERO) {}
        self.gate.open();
        self.start_accepting();
    }

    /// Writes every movable connection and the store to the handover
    /// channel; returns how many connections.
    pub(super) fn export(&self) -> std::io::Result<usize> {
        let pipe = match self.early.borrow_mut().pipe.take() {
            Some(pipe) => pipe,
            None => self.take_pipe().map_err(std::io::Error::other)?,
        };
        let (mut early, unlisted) = {
            let mut early = self.early.borrow_mut();
            (std::mem::take(&mut early.sent), early.unlisted)
        };
        let started = Instant::now();
        let sock = pipe.as_raw_fd();
        let now = self.tick_clock();
        let unix_ms = self.deps.clock.unix_ms(now);
        // TLS 1.3 ones leave rustls here; other TLS ones stay (drained).
        let again = self.unread_keys();
        let keys: Vec<ConnKey> = self
            .movable_keys()
            .into_iter()
            .filter(|k| self.tls_ready_to_move(*k))
            .collect();
        let mut kept = 0;
        for chunk in keys.chunks(PER_RECORD) {
            let mut batch = ConnBatch {
                exported_unix_ms: unix_ms,
                sessions: Vec::with_capacity(chunk.len()),
                tls: Vec::new(),
                early: Vec::new(),
                reread: Vec::new(),
                kept: Vec::new(),
                kept_reread: Vec::new(),
            };
            let mut fds: Vec<RawFd> = Vec::with_capacity(chunk.len());
            {
                let conns = self.conns.borrow();
                let fx = self.fx.borrow();
                for &key in chunk {
                    let c = &conns[key];
                    let id = c.session().id();
                    let again = c.read_stalled || again.contains(&key);
                    // Taken out of `early`: what is left in it at the end
                    // went ahead and does not move.
                    let sent = early.remove(&id);
                    if sent == Some(true) && !c.changed() {
                        // Its session went ahead and is the same now:
                        // named only to read it again, or when the new
                        // binary keeps none unnamed.
                        kept += 1;
                        if again {
                            batch.kept_reread.push(batch.kept.len() as u32);
                            batch.kept.push(id);
                        } else if !unlisted {
                            batch.kept.push(id);
                        }
                        continue;
                    }
                    let index = batch.sessions.len() as u32;
                    batch.tls.extend(self.tls_export(key, index));
                    batch.sessions.push(self.export_session(c, now, &fx));
                    if again {
                        batch.reread.push(index);
                    }
                    match sent {
                        Some(_) => batch.early.push(index),
                        None => fds.push(c.fd),
                    }
                }
            }
            if batch.sessions.is_empty() && batch.kept.is_empty() {
                continue;
            }
            sys::send_record(&Fd(sock), &record(CONNS, &batch.encode_to_vec()), &fds)?;
        }
        if let Some(state) = self.store.borrow().export_state() {
            sys::send_record(&Fd(sock), &record(STORE, &state), &[])?;
        }
        // Empty without `unlisted`, as from an older binary.
        let end = if unlisted {
            let gone = early
                .into_iter()
                .filter_map(|(id, session)| session.then_some(id));
            EndAhead {
                unlisted,
                gone: gone.collect(),
            }
            .encode_to_vec()
        } else {
            Vec::new()
        };
        sys::send_record(&Fd(sock), &record(END, &end), &[])?;
        tracing::debug!(
            shard = self.id,
            conns = keys.len(),
            kept,
            ms = started.elapsed().as_millis() as u64,
            "upgrade: a shard's sessions exported"
        );
        *self.exported.borrow_mut() = keys;
        Ok(self.exported.borrow().len())
    }

    /// Connection `c`'s state for the new process, with what the shard
    /// keeps of it by id (grants, room positions, the inflate window).
    pub(super) fn export_session(
        &self,
        c: &super::Conn,
        now: Instant,
        fx: &crate::session::Effects,
    ) -> SessionState {
        let id = c.session().id();
        let grants = fx.grants.get(&id).map(|g| &**g);
        let mut st = c.session().export(now, grants);
        if let Some(rooms) = fx.room_cursors.get(&id) {
            st.rooms_at = rooms.export();
        }
        if let Some(window) = fx.inflate.window(id) {
            st.inflate_window = window.to_vec();
        }
        st
    }

    /// The connections an upgrade may move: open or authenticating ones
    /// (`Session::movable`), but not a fallback POST waiting for its answer
    /// (its answer comes here, to this process, which serves what did not
    /// move until it drains).
    pub(super) fn movable_keys(&self) -> Vec<ConnKey> {
        let conns = self.conns.borrow();
        let fx = self.fx.borrow();
        conns
            .iter()
            .filter(|(_, c)| c.session().movable())
            .filter(|(_, c)| !fx.posts.contains_key(&c.session().id()))
            .map(|(k, _)| k)
            .collect()
    }

    /// The commit: drops the moved connections here without closing them
    /// for their peers (the new process holds them) and without events.
    pub(super) fn forget(self: &std::rc::Rc<Self>) {
        // The new process serves everyone from here: what this shard still
        // does (closing its copies of a million descriptors takes seconds
        // of CPU, then the drain) waits for the CPU the new one leaves.
        sys::lowest_priority_for_this_thread();
        let keys = std::mem::take(&mut *self.exported.borrow_mut());
        let sets_sent = std::mem::take(&mut self.early.borrow_mut().sets_sent);
        for key in keys {
            let Some(c) = self.conns.borrow_mut().try_remove(key) else {
                continue;
            };
            // epoll watches the socket, which lives on in the new process:
            // take it out of this set before closing this copy (unless the
            // set went with it).
            if !sets_sent {
                sys::epoll_del(self.poller_fd(), c.fd);
            }
            sys::close(c.fd);
            self.tls_forget(key);
            self.wheel.borrow_mut().cancel(c.timer);
            // The router's entries stay: this process accepts no connection
            // any more, so no key is reused, and a delivery to a key no
            // longer in the slab is dropped.
            let mut fx = self.fx.borrow_mut();
            fx.forget(c.session().id());
            self.sse_forget(c.session().id());
            self.gauge(c.session().wire() == crate::outbound::Wire::Tcp, -1);
        }
        // Peers resend what this shard did not read to the new process,
        // and never reach this one again.
        self.handed_over.set(true);
        self.close_inbound_links();
        if sets_sent {
            self.leave_sets();
        }
        // What did not move (TLS, closing) is served again until it drains.
        self.gate.open();
        self.check_done();
    }

    /// This upgrade's channel to the other process's matching shard, which
    /// the node sends through this shard's handover channel.
    pub(super) fn take_pipe(&self) -> Result<OwnedFd, String> {
        let sock = Fd(self.deps.handover[self.id]);
        match sys::recv_record(&sock, 16, RECORD_TIMEOUT) {
            Ok(Some((bytes, mut fds))) if bytes == [PIPE] && fds.len() == 1 => Ok(fds.remove(0)),
            Ok(_) => Err("no channel from the node".into()),
            Err(e) => Err(format!("handover channel: {e}")),
        }
    }
}

/// A descriptor number as `AsRawFd` (the shard's end of its channel, owned
/// by the shard for its life).
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

//! The new process's side of what comes ahead of the freeze
//! (`handover_early` says what and why): the old shard's epoll sets, its
//! descriptors (each given an entry and its place in a set), and, with them,
//! the sessions `handover_ahead` adopts; at the end of the import, what came
//! ahead and did not move after all is dropped.
use std::collections::HashSet;
use std::os::fd::{IntoRawFd, OwnedFd};

use prost::Message;

use super::adopted::{Adopted, MAX_SETS};
use super::handover_ahead::EndAhead;
use super::handover_early::{EarlyFds, Ids};
use super::{Conn, Shard};
use crate::router::tables::ConnKey;
use crate::session::{Session, Transport};
use crate::sys;

impl Shard {
    /// New process: the old shard's epoll sets, which its connections'
    /// descriptors name next.
    pub(super) fn import_sets(&self, fds: Vec<OwnedFd>) -> Result<(), String> {
        let mut early = self.early.borrow_mut();
        if !early.sets.is_empty() || fds.is_empty() || fds.len() > MAX_SETS {
            return Err(format!("{} epoll sets came, or came twice", fds.len()));
        }
        early.sets = fds.into_iter().map(Adopted::new).collect();
        Ok(())
    }

    /// New process: gives descriptors that came ahead their entries and
    /// their place in an epoll set: the one they came in, or this shard's.
    pub(super) fn import_early(&self, body: &[u8], fds: Vec<OwnedFd>) -> Result<(), String> {
        let record = EarlyFds::decode(body).map_err(|e| format!("unreadable descriptors: {e}"))?;
        let n = record.ids.len();
        let in_sets = !record.sets.is_empty();
        if fds.len() != n || (in_sets && (record.sets.len() != n || record.keys.len() != n)) {
            return Err(format!(
                "{n} ids came with {} descriptors and {} places",
                fds.len(),
                record.sets.len()
            ));
        }
        if record.listed > 0 && self.early.borrow().staged.is_empty() {
            self.reserve_ahead(record.listed as usize, !record.sessions.is_empty());
        }
        let now = self.tick_clock();
        let ids = record.ids;
        for (i, (&id, fd)) in ids.iter().zip(fds).enumerate() {
            if self.early.borrow().staged.contains_key(&id) {
                return Err(format!("connection {id}'s descriptor came twice"));
            }
            let fd = fd.into_raw_fd();
            // A placeholder until its session comes: never read, written or
            // timed (the gate is closed, no deadline is armed).
            let placeholder = Session::new(Transport::Tcp, id, now, &self.env);
            let key = self.conns.borrow_mut().insert(Conn::new(fd, placeholder));
            let placed = match in_sets {
                true => {
                    let mut early = self.early.borrow_mut();
                    match early.sets.get_mut(record.sets[i] as usize) {
                        Some(set) => set.place(record.keys[i], key, id),
                        None => Err("a descriptor in an epoll set that did not come".into()),
                    }
                }
                false => self
                    .watch(fd, key, id)
                    .map_err(|e| format!("cannot watch a descriptor sent ahead: {e}")),
            };
            if let Err(e) = placed {
                self.conns.borrow_mut().remove(key);
                sys::close(fd);
                return Err(e);
            }
            self.early.borrow_mut().staged.insert(id, (key, false));
        }
        self.adopt_ahead(
            &ids,
            record.sessions,
            &record.ahead_at,
            record.exported_unix_ms,
        )
    }

    /// New process: how many descriptors came ahead, and how many of
    /// them with their sessions.
    pub(super) fn early_count(&self) -> (usize, usize) {
        let early = self.early.borrow();
        (early.staged.len(), early.adopted)
    }

    /// New process: the entry of the descriptor connection `id` sent
    /// ahead, if it did, and whether its session came ahead too.
    pub(super) fn take_early(&self, id: u64) -> Option<(ConnKey, bool)> {
        self.early.borrow_mut().staged.remove(&id)
    }

    /// New process, at the end of the import (`end`: the old shard's last
    /// record): the descriptors of connections that did not move after
    /// all leave the set and are closed (the old process still holds the
    /// socket, or closed it). With `end.unlisted`, a connection whose
    /// session came ahead moved unless `end.gone` names it
    /// (`handover_ahead`). Returns how many were dropped, and how many
    /// kept that way.
    pub(super) fn drop_unclaimed_early(
        self: &std::rc::Rc<Self>,
        end: &EndAhead,
    ) -> Result<(usize, usize), String> {
        let (staged, sets) = {
            let mut early = self.early.borrow_mut();
            early.adopted = 0;
            (
                std::mem::take(&mut early.staged),
                std::mem::take(&mut early.sets),
            )
        };
        let gone: HashSet<u64, Ids> = end.gone.iter().copied().collect();
        let epfd = self.poller_fd();
        let (mut dropped, mut kept, mut named) = (0, 0, 0);
        for (id, &(key, adopted)) in &staged {
            let is_gone = adopted && gone.contains(id);
            named += usize::from(is_gone);
            if adopted && end.unlisted && !is_gone {
                kept += 1;
                continue;
            }
            if adopted {
                // Its state came ahead, and it closed or stayed since.
                self.unadopt(key);
            }
            dropped += 1;
            let Some(c) = self.conns.borrow_mut().try_remove(key) else {
                continue;
            };
            // epoll watches the file, which lives on elsewhere. (In a set
            // that came ahead, its entry is the old process's business:
            // its key here is free, and the id check drops its events.)
            if sets.is_empty() {
                sys::epoll_del(epfd, c.fd);
            }
            sys::close(c.fd);
        }
        self.watch_sets(sets)?;
        if named != gone.len() {
            return Err(format!(
                "{} sessions gone that did not come ahead",
                gone.len() - named
            ));
        }
        Ok((dropped, kept))
    }
}

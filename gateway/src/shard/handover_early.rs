//! An upgrade's descriptors, ahead of the move (`handover`).
//!
//! Receiving a descriptor and adding it to an epoll set is most of what
//! taking a connection over costs the new process (at a million
//! connections: the kernel's file table, `epoll_ctl` and the slab pages
//! for its entries, about half of the import's CPU). While the old process
//! still serves, each old shard sends the descriptors of its movable plain
//! connections ahead (`prepass`), and the new shard receives them, gives
//! each a slab entry (a placeholder session with the connection's id) and
//! adds it to its epoll set under its final token, its gate still closed;
//! a last record says they are all sent, and once every new shard has
//! taken its share the new process says so (`Ahead`): only then does the
//! old process freeze (sending is cheap, taking is the work). At the
//! freeze, the export writes only the sessions of those connections (their
//! descriptors went ahead) and the new shard puts each session in its
//! connection's entry; what arrived on a socket meanwhile waits in it, and
//! its edge in the epoll set.
//!
//! Nothing is given up early: a descriptor sent ahead is another reference
//! to the same socket. A connection that closes in the old process before
//! the freeze, or does not move after all, is not in the export, and the
//! new shard drops its entry and copy at the end of the import (the
//! client's FIN waits for that, at most the length of the handover). An
//! abort kills the new process, and with it every copy.
//!
//! Only when the new binary says it takes them (`Accept { early }`), so an
//! older binary is upgraded to as before. TLS connections are not sent
//! ahead: whether they move is decided at the export.
use std::collections::{HashMap, HashSet};
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};

use prost::Message;

use super::{Conn, Shard};
use crate::router::tables::ConnKey;
use crate::session::{Session, Transport};
use crate::sys;

/// Connections' ids and, attached in the same order, their descriptors.
#[derive(Clone, PartialEq, prost::Message)]
struct EarlyFds {
    #[prost(uint64, repeated, tag = "1")]
    ids: Vec<u64>,
}

/// A shard's part in sending descriptors ahead.
#[derive(Default)]
pub(super) struct Early {
    /// Old process: this upgrade's channel, taken for the pre-pass; the
    /// export writes to it too.
    pub(super) pipe: Option<OwnedFd>,
    /// Old process: the connections whose descriptors went ahead.
    pub(super) sent: HashSet<u64, Ids>,
    /// New process: the entries of descriptors that came ahead (each in
    /// the epoll set under its token), by connection id.
    staged: HashMap<u64, ConnKey, Ids>,
}

/// Hashes connection ids, which this node numbers itself (no client picks
/// them, so no flooding of one bucket to fear): one multiply, where the
/// default hasher's SipHash was a tenth of the freeze at a million
/// connections, for a lookup each.
pub(super) type Ids = std::hash::BuildHasherDefault<IdHasher>;

#[derive(Default)]
pub(super) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: an odd multiplier spreads a run of ids over
        // the low bits (the bucket) and mixes all of them into the high
        // ones (hashbrown's tag).
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Shard {
    /// Old process, still serving: takes this upgrade's channel and sends
    /// the descriptors of the movable plain connections through it; returns
    /// how many.
    pub(super) fn prepass(&self) -> Result<usize, String> {
        let pipe = self.take_pipe()?;
        let ids: Vec<(u64, RawFd)> = {
            let plain = self.movable_keys().into_iter().filter(|k| !self.is_tls(*k));
            let conns = self.conns.borrow();
            plain
                .map(|k| (conns[k].session.id(), conns[k].fd))
                .collect()
        };
        let mut early = self.early.borrow_mut();
        for chunk in ids.chunks(sys::MAX_FDS) {
            let record = EarlyFds {
                ids: chunk.iter().map(|(id, _)| *id).collect(),
            };
            let fds: Vec<RawFd> = chunk.iter().map(|(_, fd)| *fd).collect();
            let mut bytes = vec![super::handover::EARLY];
            record.encode(&mut bytes).map_err(|e| e.to_string())?;
            sys::send_record(&pipe, &bytes, &fds).map_err(|e| format!("handover channel: {e}"))?;
            early.sent.extend(record.ids);
        }
        sys::send_record(&pipe, &[super::handover::AHEAD], &[])
            .map_err(|e| format!("handover channel: {e}"))?;
        early.pipe = Some(pipe);
        Ok(ids.len())
    }

    /// New process: gives descriptors that came ahead their entries and
    /// puts them in the epoll set.
    pub(super) fn import_early(&self, body: &[u8], fds: Vec<OwnedFd>) -> Result<(), String> {
        let record = EarlyFds::decode(body).map_err(|e| format!("unreadable descriptors: {e}"))?;
        if record.ids.len() != fds.len() {
            return Err(format!(
                "{} ids came with {} descriptors",
                record.ids.len(),
                fds.len()
            ));
        }
        let now = self.tick_clock();
        for (id, fd) in record.ids.into_iter().zip(fds) {
            if self.early.borrow().staged.contains_key(&id) {
                return Err(format!("connection {id}'s descriptor came twice"));
            }
            let fd = fd.into_raw_fd();
            // A placeholder until its session comes: never read, written or
            // timed (the gate is closed, no deadline is armed).
            let placeholder = Session::new(Transport::Tcp, id, now, &self.env);
            let key = self.conns.borrow_mut().insert(Conn::new(fd, placeholder));
            if let Err(e) = self.watch(fd, key, id) {
                self.conns.borrow_mut().remove(key);
                sys::close(fd);
                return Err(format!("cannot watch a descriptor sent ahead: {e}"));
            }
            self.early.borrow_mut().staged.insert(id, key);
        }
        Ok(())
    }

    /// New process: how many descriptors came ahead and wait for their
    /// sessions.
    pub(super) fn early_count(&self) -> usize {
        self.early.borrow().staged.len()
    }

    /// New process: the entry of the descriptor connection `id` sent
    /// ahead, if it did.
    pub(super) fn take_early(&self, id: u64) -> Option<ConnKey> {
        self.early.borrow_mut().staged.remove(&id)
    }

    /// New process, at the end of the import: the descriptors of
    /// connections that did not move after all leave the set and are
    /// closed (the old process still holds the socket, or closed it).
    pub(super) fn drop_unclaimed_early(&self) -> usize {
        let staged = std::mem::take(&mut self.early.borrow_mut().staged);
        let epfd = self.poller_fd();
        for key in staged.values() {
            let Some(c) = self.conns.borrow_mut().try_remove(*key) else {
                continue;
            };
            // epoll watches the file, which lives on elsewhere.
            sys::epoll_del(epfd, c.fd);
            sys::close(c.fd);
        }
        staged.len()
    }
}

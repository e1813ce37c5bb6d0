//! An upgrade's descriptors, ahead of the move (`handover`).
//!
//! Receiving a descriptor and adding it to an epoll set is most of what
//! taking a connection over costs the new process (at a million
//! connections: the kernel's file table, `epoll_ctl` and the slab pages
//! for its entries, about half of the import's CPU). While the old process
//! still serves, each old shard sends the descriptors of its movable plain
//! connections ahead (`prepass`), and the new shard receives them and adds
//! them to its set under a token no connection has ([`EARLY_KEY`]), its
//! gate still closed; a last record says they are all sent, and once every
//! new shard has taken its share the new process says so (`Ahead`): only
//! then does the old process freeze (sending is cheap, taking is the
//! work). At the freeze, the export writes only the sessions of
//! those connections (their descriptors went ahead) and the new shard gives
//! each its own token (`epoll_retoken`, which reports what is pending
//! under it); what arrived on a socket meanwhile waits in it.
//!
//! Nothing is given up early: a descriptor sent ahead is another reference
//! to the same socket. A connection that closes in the old process before
//! the freeze, or does not move after all, is not in the export, and the
//! new shard drops its copy at the end of the import (the client's FIN
//! waits for that, at most the length of the handover). An abort kills the
//! new process, and with it every copy.
//!
//! Only when the new binary says it takes them (`Accept { early }`), so an
//! older binary is upgraded to as before. TLS connections are not sent
//! ahead: whether they move is decided at the export.
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use prost::Message;

use super::Shard;
use crate::router::tables::ConnKey;
use crate::sys;

/// The key in the tokens of descriptors sent ahead: none of a connection
/// (the slab's keys stay far below it) or of a listener.
pub(super) const EARLY_KEY: ConnKey = 0xffff_ffe0;

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
    pub(super) sent: HashSet<u64>,
    /// New process: descriptors that came ahead, by connection id, in the
    /// epoll set under [`EARLY_KEY`].
    staged: HashMap<u64, OwnedFd>,
}

impl Shard {
    /// Old process, still serving: takes this upgrade's channel and sends
    /// the descriptors of the movable plain connections through it; returns
    /// how many.
    pub(super) fn prepass(&self) -> Result<usize, String> {
        let pipe = self.take_pipe()?;
        let ids: Vec<(u64, RawFd)> = {
            let conns = self.conns.borrow();
            let fx = self.fx.borrow();
            conns
                .iter()
                .filter(|(k, c)| c.session.movable() && !self.is_tls(*k))
                .filter(|(_, c)| !fx.posts.contains_key(&c.session.id()))
                .map(|(_, c)| (c.session.id(), c.fd))
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

    /// New process: takes descriptors that came ahead into the epoll set.
    pub(super) fn import_early(&self, body: &[u8], fds: Vec<OwnedFd>) -> Result<(), String> {
        let record = EarlyFds::decode(body).map_err(|e| format!("unreadable descriptors: {e}"))?;
        if record.ids.len() != fds.len() {
            return Err(format!(
                "{} ids came with {} descriptors",
                record.ids.len(),
                fds.len()
            ));
        }
        let epfd = self.poller_fd();
        let mut early = self.early.borrow_mut();
        for (id, fd) in record.ids.into_iter().zip(fds) {
            sys::epoll_add(epfd, fd.as_raw_fd(), super::poller::token(EARLY_KEY, id))
                .map_err(|e| format!("cannot watch a descriptor sent ahead: {e}"))?;
            if let Some(twice) = early.staged.insert(id, fd) {
                sys::epoll_del(epfd, twice.as_raw_fd());
                return Err(format!("connection {id}'s descriptor came twice"));
            }
        }
        Ok(())
    }

    /// New process: how many descriptors came ahead and wait for their
    /// sessions.
    pub(super) fn early_count(&self) -> usize {
        self.early.borrow().staged.len()
    }

    /// New process: the descriptor connection `id` sent ahead, if it did.
    pub(super) fn take_early(&self, id: u64) -> Option<OwnedFd> {
        self.early.borrow_mut().staged.remove(&id)
    }

    /// New process, at the end of the import: the descriptors of
    /// connections that did not move after all leave the set and are
    /// closed (the old process still holds the socket, or closed it).
    pub(super) fn drop_unclaimed_early(&self) -> usize {
        let staged = std::mem::take(&mut self.early.borrow_mut().staged);
        let epfd = self.poller_fd();
        for fd in staged.values() {
            // epoll watches the file, which lives on elsewhere.
            sys::epoll_del(epfd, fd.as_raw_fd());
        }
        staged.len()
    }
}

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
//! When the new binary takes epoll sets too (`Accept { sets }`), the old
//! shard sends its sets first and each descriptor names its set and the
//! key in its token there: the new shard adds nothing to any set
//! (`adopted`, which says why and how).
//!
//! When the new binary takes sessions ahead too (`Accept { sessions }`),
//! each record carries the sessions of its connections beside their
//! descriptors, up to a record's size (`handover_ahead` says what the new
//! shard does with them).
//!
//! Only when the new binary says it takes them (`Accept { early }`), so an
//! older binary is upgraded to as before. TLS connections are not sent
//! ahead: whether they move is decided at the export.
use std::collections::HashMap;
use std::os::fd::{OwnedFd, RawFd};

use prost::Message;
use std::time::Duration;

use super::adopted::Adopted;
use super::Shard;
use crate::router::tables::ConnKey;
use crate::session::SessionState;
use crate::sys;

/// Largest session sent ahead: a bigger one (a long send queue, a large
/// QoS 1 window) goes at the freeze, as before.
const SESSION_AHEAD_MAX: usize = 16 * 1024;
/// Largest record sent ahead (a record is sent without waiting, in one
/// message of at most `sys`'s 32 KiB).
const RECORD_AHEAD_MAX: usize = 30 * 1024;
/// What a descriptor's id, set and key add to a record, at most.
const FD_BYTES: usize = 24;

/// How long a shard serves before it tries a full channel again.
const CHANNEL_FULL_RETRY: Duration = Duration::from_millis(1);

/// Connections' ids and, attached in the same order, their descriptors.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct EarlyFds {
    #[prost(uint64, repeated, tag = "1")]
    pub(super) ids: Vec<u64>,
    /// When the shard's epoll sets came first (`adopted`): each
    /// connection's set, by its place in that record, and the key in its
    /// token there; else empty, and the new shard registers each one.
    #[prost(uint32, repeated, tag = "2")]
    pub(super) sets: Vec<u32>,
    #[prost(uint32, repeated, tag = "3")]
    pub(super) keys: Vec<u32>,
    /// When the new binary takes sessions ahead too (`Accept { sessions }`):
    /// the sessions of some of them (`ahead_at`: their places in `ids`),
    /// as of `exported_unix_ms` (`handover_ahead`).
    #[prost(uint64, tag = "4")]
    pub(super) exported_unix_ms: u64,
    #[prost(message, repeated, tag = "5")]
    pub(super) sessions: Vec<SessionState>,
    #[prost(uint32, repeated, tag = "6")]
    pub(super) ahead_at: Vec<u32>,
    /// How many connections the old shard sends ahead in all (in its first
    /// record): the new shard sizes its tables once, not by doubling (each
    /// doubling copied into fresh pages, a third of the new process's CPU
    /// in the pre-pass at a million connections went to faulting them in).
    #[prost(uint32, tag = "7")]
    pub(super) listed: u32,
}

/// A shard's part in sending descriptors ahead.
#[derive(Default)]
pub(super) struct Early {
    /// Old process: this upgrade's channel, taken for the pre-pass; the
    /// export writes to it too.
    pub(super) pipe: Option<OwnedFd>,
    /// Old process: the connections whose descriptors went ahead, and
    /// whether their sessions went too (`handover_ahead`).
    pub(super) sent: HashMap<u64, bool, Ids>,
    /// Old process: the new binary keeps every session that came ahead
    /// unless the export names it (`Accept { unlisted }`, `handover_ahead`).
    pub(super) unlisted: bool,
    /// New process: how many of `staged` came with their sessions.
    pub(super) adopted: usize,
    /// Old process: its epoll sets went ahead too (`adopted`): at the
    /// commit, they are the new process's.
    pub(super) sets_sent: bool,
    /// New process: the epoll sets that came ahead, in their order.
    pub(super) sets: Vec<Adopted>,
    /// Old process: which upgrade this is, counted by `thaw` (a pre-pass
    /// of an upgrade called off stops).
    pub(super) generation: u64,
    /// New process: the entries of descriptors that came ahead (each in
    /// the epoll set under its token), by connection id, and whether its
    /// session came too and was adopted there.
    pub(super) staged: HashMap<u64, (ConnKey, bool), Ids>,
}

impl Early {
    /// The upgrade was called off: nothing of it is kept, and a pre-pass
    /// still sending stops.
    pub(super) fn call_off(&mut self) {
        *self = Early {
            generation: self.generation + 1,
            ..Default::default()
        };
    }
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
    /// the descriptors of the movable plain connections through it, with
    /// `with_sets` the shard's epoll sets first; answers how many.
    ///
    /// A record at a time, serving between them: a shard that sent all
    /// its share at once, or waited on a full channel, answered none of
    /// its clients meanwhile (pings waited two seconds at a million
    /// connections, measured). A connection that ended since the list was
    /// made is left out (its entry may be another's by then).
    pub(super) async fn prepass(
        self: std::rc::Rc<Self>,
        with_sets: bool,
        with_sessions: bool,
        unlisted: bool,
        reply: crossbeam_channel::Sender<Result<usize, String>>,
    ) {
        let generation = self.early.borrow().generation;
        self.early.borrow_mut().unlisted = with_sessions && unlisted;
        let sent = self
            .prepass_records(with_sets, with_sessions, generation)
            .await;
        if self.early.borrow().generation == generation {
            let _ = reply.send(sent);
        }
    }

    async fn prepass_records(
        &self,
        with_sets: bool,
        with_sessions: bool,
        generation: u64,
    ) -> Result<usize, String> {
        let pipe = self.take_pipe()?;
        let places = if with_sets { self.places() } else { None };
        let listed: Vec<(ConnKey, u64)> = {
            let plain = self.movable_keys().into_iter().filter(|k| !self.is_tls(*k));
            let conns = self.conns.borrow();
            plain.map(|k| (k, conns[k].session().id())).collect()
        };
        if let Some((sets, _)) = &places {
            self.send_ahead(&pipe, &[super::handover::SETS], sets, generation)
                .await?;
        }
        self.early.borrow_mut().sent.reserve(listed.len());
        let (mut count, mut next) = (0, 0);
        while next < listed.len() {
            // Sized for a full record: grown by doubling, the sessions
            // (a few hundred bytes each) were copied again and again, a
            // tenth of the old process's CPU in the pre-pass (measured).
            let with = if with_sessions { sys::MAX_FDS } else { 0 };
            let mut record = EarlyFds {
                listed: if next == 0 { listed.len() as u32 } else { 0 },
                ids: Vec::with_capacity(sys::MAX_FDS),
                sessions: Vec::with_capacity(with),
                ahead_at: Vec::with_capacity(with),
                ..Default::default()
            };
            let mut fds: Vec<RawFd> = Vec::with_capacity(sys::MAX_FDS);
            let mut went = Vec::with_capacity(sys::MAX_FDS);
            {
                let mut conns = self.conns.borrow_mut();
                let fx = self.fx.borrow();
                let mut bytes = 0;
                let now = self.tick_clock();
                record.exported_unix_ms = self.deps.clock.unix_ms(now);
                while let Some(&(key, id)) = listed.get(next) {
                    if fds.len() == sys::MAX_FDS {
                        break;
                    }
                    // Gone, or closing since the list was made: it stays.
                    let Some(c) = conns
                        .get_mut(key)
                        .filter(|c| c.session().id() == id && c.session().movable())
                    else {
                        next += 1;
                        continue;
                    };
                    let st = with_sessions
                        .then(|| self.export_session(c, now, &fx))
                        .map(|st| (st.encoded_len(), st))
                        .filter(|(len, _)| *len <= SESSION_AHEAD_MAX);
                    let size = st.as_ref().map_or(0, |(len, _)| *len) + FD_BYTES;
                    if bytes + size > RECORD_AHEAD_MAX && !fds.is_empty() {
                        break;
                    }
                    bytes += size;
                    next += 1;
                    went.push((id, st.is_some()));
                    if let Some((_, st)) = st {
                        record.ahead_at.push(record.ids.len() as u32);
                        record.sessions.push(st);
                        c.sent_ahead();
                    }
                    record.ids.push(id);
                    fds.push(c.fd);
                    if let Some((_, at)) = &places {
                        record.sets.push(at[key].0);
                        record.keys.push(at[key].1);
                    }
                }
            }
            let mut bytes = Vec::with_capacity(1 + record.encoded_len());
            bytes.push(super::handover::EARLY);
            record.encode(&mut bytes).map_err(|e| e.to_string())?;
            self.send_ahead(&pipe, &bytes, &fds, generation).await?;
            count += record.ids.len();
            let mut early = self.early.borrow_mut();
            if early.generation != generation {
                // Called off while this shard served after the send: what
                // went belongs to no upgrade now.
                return Err("the upgrade was called off".into());
            }
            early.sent.extend(went);
        }
        self.send_ahead(&pipe, &[super::handover::AHEAD], &[], generation)
            .await?;
        let mut early = self.early.borrow_mut();
        early.pipe = Some(pipe);
        early.sets_sent = places.is_some();
        Ok(count)
    }

    /// Sends one record ahead once the channel has room, letting the
    /// shard serve before (after each record, and while it is full).
    async fn send_ahead(
        &self,
        pipe: &OwnedFd,
        bytes: &[u8],
        fds: &[RawFd],
        generation: u64,
    ) -> Result<(), String> {
        loop {
            if self.early.borrow().generation != generation {
                return Err("the upgrade was called off".into());
            }
            match sys::try_send_record(pipe, bytes, fds) {
                Ok(true) => break,
                Ok(false) => monoio::time::sleep(CHANNEL_FULL_RETRY).await,
                Err(e) => return Err(format!("handover channel: {e}")),
            }
        }
        super::wake::yield_now().await;
        Ok(())
    }
}

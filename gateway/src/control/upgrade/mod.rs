//! Upgrading the binary in place: the running process (the old one) starts
//! the new binary and hands it the node's listening sockets, accept queues
//! included, then every plain connection with its state, so no connect is
//! refused and no connection is closed.
//!
//! Triggers: `SIGUSR2`, `POST /upgrade` (admin token as for every POST) and
//! `gateway upgrade` (which calls that). The new binary is `upgrade_binary`,
//! or else the file this process was started from as it is now; it starts
//! with the same flags (so the same config file, re-read).
//!
//! The handover, over a `SOCK_SEQPACKET` pair (the new process's end is its
//! descriptor 3, named by `GATEWAY_UPGRADE_FD`); every message is one JSON
//! object of [`Msg`], descriptors ride along with `SCM_RIGHTS`:
//!
//! 1. old → new `Offer`: the handover format, shard count, node id and the
//!    listeners' addresses. Nothing has moved yet: a new binary that cannot
//!    read the format, or whose config changes a listen address or the shard
//!    count, answers `Refuse` and exits; the old process serves on.
//! 2. new → old `Accept`; old → new `Fds` (every listener, at most 253
//!    descriptors a message). The old process keeps accepting meanwhile.
//! 3. The new process starts its shards on these sockets, closed (not
//!    accepting, reading or writing), and answers `Ready`.
//! 4. If the new process takes them (`Accept { early }`), `Move` and
//!    `Pipes` (a channel per shard pair) come first, and every old shard
//!    sends the descriptors of its movable plain connections ahead through
//!    its channel while it still serves (`shard::handover_early`; two
//!    shards per core at a time, so the others answer their clients), and
//!    with `Accept { sets }` its epoll sets first (`shard::adopted`: the
//!    new shard polls them, nothing is registered again), and with
//!    `Accept { sessions }` each connection's session beside its
//!    descriptor (`shard::handover_ahead`: the new shard adopts it there
//!    and then, and at the freeze only the sessions changed since move;
//!    with `Accept { unlisted }` the unchanged ones are not even named,
//!    and each old shard's last record names the ones that do not move);
//!    new → old `Ahead` once the new shards have taken them all.
//!    The old process freezes its shards (they stop accepting, reading,
//!    writing and acting on deadlines) and waits until their store
//!    operations are answered and the mesh is quiet; old → new `Move` and
//!    `Pipes` (a channel per shard pair), over which every old shard writes
//!    the records of `shard::handover` (sessions with their descriptors,
//!    the in-process store) to its new counterpart, all shards at once;
//!    new → old `Taken`.
//! 5. Commit: old → new `Commit`, with the old process's counter totals.
//!    The new process opens its shards (accepting; what arrived meanwhile
//!    waited in the sockets and queues), then its admin API, registry and
//!    streams. The old one forgets what moved (its shards at `SCHED_IDLE` from
//!    then on: what they still do must not take the CPU the new one serves
//!    with), closes its listeners, stops
//!    its admin API, registry writes and downstream consumer, and drains
//!    what did not move (TLS, closing): go-away `DRAINING` with the
//!    reconnect hint plus a random share of `drain.upgrade_spread_ms`, and
//!    no other node named, so it comes back to the same address, now the
//!    new process's. At exit it sends what it counted since (`Totals`).
//!
//! Abort: until the commit the old process has given nothing up, and the
//! new one has served nothing. If the new binary cannot be started,
//! refuses, exits, dies (`SIGKILL` included, also while it holds the moved
//! connections) or is not ready within [`READY_TIMEOUT`], or the shards do
//! not settle, the old process kills it (if it still runs), thaws its
//! shards, logs one line and answers the reason. If instead the old process
//! dies before the commit, the new one serves.
//!
//! The node keeps its id and its incarnation (registry entry, presence), so
//! peers see the same node: their links to it reconnect and resend what the
//! old process did not read (it reads nothing while frozen and closes
//! those links unread at the commit), and the interest tables resync on
//! link up. The new process's own links say hello with an incarnation of
//! its own, so peers number its batches afresh.
//!
//! Test hooks, read by the new process only: `GATEWAY_TEST_UPGRADE_FORMATS`
//! (comma-separated formats it claims to read, instead of [`FORMAT`]),
//! `GATEWAY_TEST_UPGRADE_LISTED` (it asks for every kept session by
//! name, as a binary before `Accept { unlisted }` does),
//! `GATEWAY_TEST_UPGRADE_HOLD_MS` (a pause before `Ready`),
//! `GATEWAY_TEST_UPGRADE_HOLD_AHEAD_MS` (a pause before `Ahead`, while the
//! old process serves on) and `GATEWAY_TEST_UPGRADE_HOLD_TAKEN_MS` (a
//! pause before `Taken`).
mod child;
mod parent;
mod relay;

use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use child::test_var;
pub(crate) use child::Incoming;
pub(crate) use parent::finish;
pub use parent::{UpgradeError, Upgraded};

use super::listeners::Addrs;

/// The handover format this binary sends. 2: sessions may be compressed
/// (wires 3 and 4, `inflate_*`) or SSE streams (wire 5), and the offer
/// carries the node's POST secret. 3: TLS 1.3 connections move, with their
/// record state (`shard::tls_move`). A binary that does not read it
/// refuses it before anything moves.
pub(crate) const FORMAT: u32 = 3;
/// The formats this binary reads (older binaries' offers: 1, 2).
pub(crate) const READS: [u32; 3] = [1, 2, 3];
/// Largest handover message.
const MAX_MSG: usize = 64 * 1024;
/// How long the new process may take to answer the offer (it starts and
/// reads its config first).
const OFFER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the new process may take from the offer to `Ready`.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The environment variable naming the new process's end of the channel.
const FD_VAR: &str = "GATEWAY_UPGRADE_FD";
/// The descriptor number the channel gets in the new process: its standard
/// input (`parent::spawn` says why).
const CHILD_FD: i32 = 0;

/// One handover message.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
enum Msg {
    /// What the old process hands over (nothing attached yet).
    Offer {
        format: u32,
        pid: u32,
        node_id: String,
        /// The node's incarnation, which the new process keeps.
        incarnation: u64,
        shards: usize,
        addrs: Addrs,
        /// How many descriptors the `Fds` messages will carry.
        fds: usize,
        /// The node's secret that signs SSE POST keys (hex), which the new
        /// process keeps (so moved streams' keys still check). Format 2.
        #[serde(default)]
        post_secret: String,
    },
    /// The new process can take it; `early`: it takes descriptors sent
    /// ahead of the move (`shard::handover_early`; older binaries do not
    /// say, and get none).
    Accept {
        pid: u32,
        #[serde(default)]
        early: bool,
        /// It takes each old shard's epoll sets with the descriptors.
        #[serde(default)]
        sets: bool,
        /// It takes the sessions with the descriptors, and at the freeze
        /// only those changed since (`shard::handover_ahead`).
        #[serde(default)]
        sessions: bool,
        /// At the freeze it keeps every session that came ahead unless the
        /// old shard names it, as changed or gone; else each kept one is
        /// named (`shard::handover_ahead`).
        #[serde(default)]
        unlisted: bool,
    },
    /// The new process cannot take it, and exits.
    Refuse { why: String },
    /// Listeners attached, in `Listeners::all`'s order.
    Fds,
    /// The new process is up, its shards not yet accepting or serving.
    Ready { pid: u32 },
    /// The connections follow, shard by shard (`relay`); `early`: the
    /// descriptors of the plain ones come ahead, before the freeze.
    Move {
        shards: usize,
        #[serde(default)]
        early: bool,
    },
    /// The new process took every descriptor sent ahead: the old one may
    /// freeze.
    Ahead { descriptors: u64 },
    /// One channel per shard attached, in shard order (at most 253 a
    /// message): old shard `i` writes to new shard `i` through it.
    Pipes,
    /// The new process took them over (not serving them yet).
    Taken { conns: u64 },
    /// The old process stopped accepting: the new one accepts from now on.
    /// Carries the old process's counter totals, as `Totals`.
    Commit {
        shards: Vec<Vec<u64>>,
        upgrades: u64,
        aborted: u64,
    },
    /// Counter totals, shard by shard (see `ShardStats::totals`), and the
    /// node's upgrade counters: added to the receiver's.
    Totals {
        shards: Vec<Vec<u64>>,
        upgrades: u64,
        aborted: u64,
    },
}

/// A node's upgrade state (in `Node`).
#[derive(Default)]
pub struct UpgradeState {
    /// Upgrades this node's processes completed (carried across them).
    pub done: AtomicU64,
    /// Upgrades aborted (carried across them).
    pub aborted: AtomicU64,
    /// Set at the commit: the new process writes the node's registry entry
    /// from then on. Until then this one does, whatever the handover takes
    /// (a million connections took seconds, about the entry's lifetime: a
    /// gap would have had every peer drop the node, its links and their
    /// queues).
    pub committed: std::sync::atomic::AtomicBool,
    /// One upgrade at a time.
    running: Mutex<()>,
    /// After a commit: the channel to the new process, and the totals
    /// already sent on it.
    handed: Mutex<Option<(OwnedFd, Vec<Vec<u64>>)>>,
}

fn send(sock: &OwnedFd, msg: &Msg, fds: &[i32]) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    crate::sys::send_msg(sock, &bytes, fds)
}

/// The next message and its descriptors; an error names what went wrong
/// (`None` from the OS: the other end closed).
fn recv(sock: &OwnedFd, timeout: Duration) -> Result<(Msg, Vec<OwnedFd>), String> {
    match crate::sys::recv_msg(sock, MAX_MSG, timeout) {
        Ok(Some((bytes, fds))) => serde_json::from_slice(&bytes)
            .map(|m| (m, fds))
            .map_err(|e| format!("unreadable handover message: {e}")),
        Ok(None) => Err("the other process closed the handover channel".into()),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            Err(format!("no answer within {timeout:?}"))
        }
        Err(e) => Err(format!("handover channel: {e}")),
    }
}

//! The new process's side of an upgrade (see the module header): take the
//! listeners instead of binding, say `Ready` once serving, then add the old
//! process's counters as they come.
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{recv, send, Msg, FD_VAR, OFFER_TIMEOUT, READS, READY_TIMEOUT};
use crate::config::Config;
use crate::control::listeners::{Addrs, Listeners};
use crate::control::node::Node;

/// The handover channel of a process started by an upgrade.
pub(crate) struct Incoming {
    sock: OwnedFd,
}

impl Incoming {
    /// The channel, if this process was started by an upgrade. Reads and
    /// clears `GATEWAY_UPGRADE_FD` (a later upgrade sets its own).
    pub(crate) fn from_env() -> Result<Option<Incoming>, String> {
        let Some(v) = std::env::var_os(FD_VAR) else {
            return Ok(None);
        };
        std::env::remove_var(FD_VAR);
        let fd: i32 = v
            .to_str()
            .and_then(|s| s.parse().ok())
            .filter(|fd| *fd >= 0)
            .ok_or_else(|| format!("{FD_VAR} is not a descriptor number"))?;
        // The descriptor must be a socket this process was given.
        crate::sys::set_nonblocking(fd).map_err(|e| format!("{FD_VAR}={fd}: {e}"))?;
        // SAFETY: the parent placed the channel at this number for us, and
        // nothing else in this process uses it.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        if fd != 0 {
            return Ok(Some(Incoming { sock }));
        }
        // Given as standard input: moved to a number of its own, and
        // standard input reads nothing, as for a node started by hand.
        let moved = crate::sys::dup(fd).map_err(|e| format!("{FD_VAR}={fd}: {e}"))?;
        drop(sock);
        crate::sys::null_stdin().map_err(|e| format!("standard input: {e}"))?;
        Ok(Some(Incoming { sock: moved }))
    }

    /// Reads the offer, checks this process can take it (format, shard
    /// count, listen addresses), and takes the listeners; also returns the
    /// node's incarnation and POST secret, which this process keeps. A
    /// refusal is sent to the old process too.
    pub(crate) fn take_listeners(&self, config: &Config) -> Result<(Listeners, Kept), String> {
        let (format, shards, addrs, count, kept) = match recv(&self.sock, OFFER_TIMEOUT)? {
            (
                Msg::Offer {
                    format,
                    shards,
                    addrs,
                    fds,
                    incarnation,
                    post_secret,
                    ..
                },
                _,
            ) => {
                let post_secret = hex32(&post_secret);
                (
                    format,
                    shards,
                    addrs,
                    fds,
                    Kept {
                        incarnation,
                        post_secret,
                    },
                )
            }
            (other, _) => return Err(format!("expected an offer, got {other:?}")),
        };
        if let Err(why) = check(config, format, shards, &addrs) {
            let _ = send(&self.sock, &Msg::Refuse { why: why.clone() }, &[]);
            return Err(format!("upgrade refused: {why}"));
        }
        let pid = std::process::id();
        let accept = Msg::Accept {
            pid,
            early: true,
            sets: true,
            sessions: true,
            // Off with the hook, as an older binary answers.
            unlisted: test_var("GATEWAY_TEST_UPGRADE_LISTED").is_none(),
        };
        send(&self.sock, &accept, &[]).map_err(|e| e.to_string())?;
        let mut fds = Vec::with_capacity(count);
        while fds.len() < count {
            match recv(&self.sock, OFFER_TIMEOUT)? {
                (Msg::Fds, got) => fds.extend(got),
                (other, _) => return Err(format!("expected listeners, got {other:?}")),
            }
        }
        let listeners = Listeners::adopt(fds, shards, addrs)?;
        tracing::info!("upgrade: took the listeners");
        Ok((listeners, kept))
    }

    /// Tells the old process this one is up and waits for its commit (it
    /// stopped accepting); then adds the counters it hands over, on a
    /// thread of its own until the old process exits. If the old process
    /// is gone before the commit, this one serves all the same.
    pub(crate) fn ready(self, node: Arc<Node>) -> Result<(), String> {
        if let Some(ms) = test_var("GATEWAY_TEST_UPGRADE_HOLD_MS") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
        }
        let pid = std::process::id();
        send(&self.sock, &Msg::Ready { pid }, &[]).map_err(|e| e.to_string())?;
        match recv(&self.sock, READY_TIMEOUT) {
            Ok((Msg::Move { shards, early }, _)) => {
                match super::relay::import(&node, &self.sock, shards, early) {
                    Ok(conns) => {
                        tracing::info!(conns, "upgrade: took the connections over");
                        if let Some(ms) = test_var("GATEWAY_TEST_UPGRADE_HOLD_TAKEN_MS") {
                            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
                        }
                        send(&self.sock, &Msg::Taken { conns }, &[]).map_err(|e| e.to_string())?;
                    }
                    Err(why) => {
                        let _ = send(&self.sock, &Msg::Refuse { why: why.clone() }, &[]);
                        return Err(format!("upgrade: cannot take the connections over: {why}"));
                    }
                }
            }
            Ok((other, _)) => return Err(format!("expected the connections, got {other:?}")),
            Err(why) => {
                tracing::warn!("upgrade: the old process is gone before the move ({why}): serving");
                return Ok(());
            }
        }
        match recv(&self.sock, READY_TIMEOUT) {
            Ok((msg @ Msg::Commit { .. }, _)) => add(&node, msg),
            Ok((other, _)) => return Err(format!("expected the commit, got {other:?}")),
            Err(why) => {
                tracing::warn!("upgrade: no commit from the old process ({why}): serving");
                return Ok(());
            }
        }
        std::thread::Builder::new()
            .name("upgrade-totals".into())
            .spawn(move || self.take_totals(&node))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn take_totals(self, node: &Node) {
        // The old process sends one at the commit and one at its exit,
        // which can be as late as its drain deadline.
        let wait = READY_TIMEOUT + Duration::from_millis(node.config.drain.deadline_ms) * 2;
        while let Ok((msg, _)) = recv(&self.sock, wait) {
            add(node, msg);
        }
    }
}

/// Adds the counters a `Commit` or `Totals` carries.
fn add(node: &Node, msg: Msg) {
    let (Msg::Commit {
        shards,
        upgrades,
        aborted,
    }
    | Msg::Totals {
        shards,
        upgrades,
        aborted,
    }) = msg
    else {
        return;
    };
    for (stats, totals) in node.stats.iter().zip(&shards) {
        stats.add_totals(totals);
    }
    node.upgrade.done.fetch_add(upgrades, Ordering::Relaxed);
    node.upgrade.aborted.fetch_add(aborted, Ordering::Relaxed);
}

/// Whether this binary and config can take what is offered.
/// What a new process keeps of the node it takes over.
pub(crate) struct Kept {
    /// The node's incarnation.
    pub incarnation: u64,
    /// The secret that signs SSE POST keys (none from a format 1 offer).
    pub post_secret: Option<[u8; 32]>,
}

/// 32 bytes from 64 hex digits.
fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn check(config: &Config, format: u32, shards: usize, addrs: &Addrs) -> Result<(), String> {
    let formats: Vec<u32> = match test_var("GATEWAY_TEST_UPGRADE_FORMATS") {
        Some(list) => list
            .split(',')
            .filter_map(|f| f.trim().parse().ok())
            .collect(),
        None => READS.to_vec(),
    };
    if !formats.contains(&format) {
        return Err(format!(
            "handover format {format} is not one this binary reads ({formats:?})"
        ));
    }
    if shards != config.shard_count() {
        return Err(format!(
            "the shard count changes from {shards} to {}: that takes a restart",
            config.shard_count()
        ));
    }
    let same = |what: &str, want: std::net::SocketAddr, have: std::net::SocketAddr| {
        // Port 0 in the config: whatever the old process got.
        let ok = want.ip() == have.ip() && (want.port() == 0 || want.port() == have.port());
        match ok {
            true => Ok(()),
            false => Err(format!(
                "{what} changes from {have} to {want}: that takes a restart"
            )),
        }
    };
    same("ws_listen", config.ws_listen, addrs.ws)?;
    same("tcp_listen", config.tcp_listen, addrs.tcp)?;
    same("admin_listen", config.admin_listen, addrs.admin)?;
    match (config.cluster.bus_listen, addrs.bus.first()) {
        (None, None) => Ok(()),
        (Some(want), Some(have)) => same("cluster.bus_listen", want, *have),
        _ => Err("cluster.bus_listen is turned on or off: that takes a restart".into()),
    }
}

pub(super) fn test_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

//! The old process's side of an upgrade (see the module header).
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{recv, relay, send, Msg, FD_VAR, FORMAT, OFFER_TIMEOUT, READY_TIMEOUT};
use crate::control::node::Node;
use crate::control::Control;
use crate::mesh::Redirect;
use crate::sys;

/// A completed upgrade, as `POST /upgrade` answers it.
#[derive(Debug, serde::Serialize)]
pub struct Upgraded {
    /// The new process.
    pub pid: u32,
    /// Connections handed over with their state.
    pub connections: u64,
    /// Connections that did not move (TLS, closing), told to reconnect (to
    /// the new process).
    pub draining: u64,
    /// From the trigger to the commit.
    pub took_ms: u64,
}

/// Why an upgrade did not happen; the old process serves on. One line each.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// Another upgrade runs, or the node drains or was already upgraded.
    #[error("{0}")]
    Busy(&'static str),
    /// The new binary could not be started.
    #[error("cannot start {binary}: {error}")]
    Start {
        /// The binary.
        binary: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The new process refused, failed or died before it was ready.
    #[error("{0}")]
    Failed(String),
}

impl Control {
    /// Upgrades this node's binary (see `control::upgrade`): returns once
    /// the new process serves and this one drains, or with the reason it
    /// did not happen (this process then serves as before).
    pub fn upgrade(&self) -> Result<Upgraded, UpgradeError> {
        let node = self.node();
        let state = &node.upgrade;
        let Ok(_one) = state.running.try_lock() else {
            return Err(UpgradeError::Busy("an upgrade is already running"));
        };
        if self.is_draining() {
            return Err(UpgradeError::Busy("the node is draining"));
        }
        let started = Instant::now();
        match self.hand_over(started) {
            Ok(done) => {
                tracing::info!(
                    pid = done.pid,
                    draining = done.draining,
                    took_ms = done.took_ms,
                    "upgraded: the new process serves, this one drains"
                );
                Ok(done)
            }
            Err(e) => {
                state.aborted.fetch_add(1, Ordering::Relaxed);
                tracing::error!("upgrade aborted, this process serves on: {e}");
                Err(e)
            }
        }
    }

    fn hand_over(&self, started: Instant) -> Result<Upgraded, UpgradeError> {
        let node = self.node();
        let binary = node
            .config
            .upgrade_binary
            .clone()
            .or_else(|| node.exe.clone())
            .ok_or(UpgradeError::Busy(
                "the path this node was started from is unknown: set upgrade_binary",
            ))?;
        let failed = |e: std::io::Error| UpgradeError::Failed(format!("handover channel: {e}"));
        let (mine, theirs) = sys::seqpacket_pair().map_err(failed)?;
        let mut child = spawn(&binary, theirs).map_err(|error| UpgradeError::Start {
            binary: binary.clone(),
            error,
        })?;
        let pid = child.id();
        let takes = match offer(node, &mine) {
            Ok(takes) => takes,
            Err(why) => {
                node.handed_over.store(false, Ordering::SeqCst);
                let _ = child.kill();
                let status = match child.wait() {
                    Ok(s) => format!("; the new process (pid {pid}) {s}"),
                    Err(_) => String::new(),
                };
                return Err(UpgradeError::Failed(format!("{why}{status}")));
            }
        };
        let conns: u64 = node.stats.iter().map(|s| s.conns().max(0) as u64).sum();
        let state = &node.upgrade;
        let mut totals = Vec::new();
        let moved = relay::move_out(node, &mine, takes).and_then(|moved| {
            // The commit goes first: if the new process is gone by now,
            // nothing here is forgotten yet and this process serves on.
            totals = node.stats.iter().map(|s| s.totals()).collect();
            let msg = Msg::Commit {
                shards: totals.clone(),
                upgrades: state.done.load(Ordering::Relaxed) + 1,
                aborted: state.aborted.load(Ordering::Relaxed),
            };
            send(&mine, &msg, &[])
                .map(|()| moved)
                .map_err(|e| format!("the new process did not take the commit: {e}"))
        });
        let moved = match moved {
            Ok(n) => n,
            Err(why) => {
                // Nothing was forgotten here and the new process served
                // nothing: everything goes on as before.
                relay::thaw(node);
                node.handed_over.store(false, Ordering::SeqCst);
                let _ = child.kill();
                let _ = child.wait();
                return Err(UpgradeError::Failed(why));
            }
        };
        // Committed: the new process serves the moved connections and the
        // listeners; what did not move (TLS, closing) drains here.
        state.done.fetch_add(1, Ordering::Relaxed);
        state.committed.store(true, Ordering::SeqCst);
        relay::forget(node);
        node.admin_stop.notify_one();
        drop(
            node.listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        self.drain_with(Redirect {
            nodes: Arc::from([]),
            policy: node.config.cluster.route_policy,
            reconnect_after_ms: node.config.drain.reconnect_after_ms,
            spread_ms: node.config.drain.upgrade_spread_ms,
        });
        *state.handed.lock().unwrap_or_else(|e| e.into_inner()) = Some((mine, totals));
        // Reaped here if it exits while this process still runs.
        let _ = std::thread::Builder::new()
            .name("upgrade-child".into())
            .spawn(move || child.wait());
        Ok(Upgraded {
            pid,
            connections: moved,
            draining: conns.saturating_sub(moved),
            took_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// Starts the new binary with this process's arguments and the channel's
/// other end as its standard input (`GATEWAY_UPGRADE_FD=0`; the new process
/// moves it off descriptor 0 and puts `/dev/null` there).
///
/// No `pre_exec`: with one, std forks, and a fork of a process holding a
/// million connections copies its page tables and write-protects every
/// page, so each page the old shards write while the new process starts
/// costs a fault and a TLB flush on every core (over a second of the old
/// process's CPU at a million connections, measured). Without one, std
/// spawns with `posix_spawn`, which shares the memory until the exec.
fn spawn(binary: &PathBuf, theirs: OwnedFd) -> std::io::Result<Child> {
    let mut cmd = Command::new(binary);
    cmd.args(std::env::args_os().skip(1))
        .env(FD_VAR, super::CHILD_FD.to_string())
        .stdin(Stdio::from(theirs));
    cmd.spawn()
}

/// Steps 1 to 3 of the handover: the offer, the listeners, `Ready`.
/// Returns what the new process takes ahead of the freeze.
fn offer(node: &Node, sock: &OwnedFd) -> Result<relay::Takes, String> {
    let listeners = node.listeners.lock().unwrap_or_else(|e| e.into_inner());
    let Some(l) = listeners.as_ref() else {
        return Err("the node no longer holds its listeners".into());
    };
    let fds = l.all();
    let offer = Msg::Offer {
        format: FORMAT,
        pid: std::process::id(),
        node_id: node.config.node_id.clone(),
        incarnation: node.incarnation,
        shards: node.mesh.len(),
        addrs: l.addrs.clone(),
        fds: fds.len(),
        post_secret: node
            .post_secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    };
    let io = |e: std::io::Error| format!("handover channel: {e}");
    send(sock, &offer, &[]).map_err(io)?;
    let takes = match recv(sock, OFFER_TIMEOUT)? {
        (
            Msg::Accept {
                pid,
                early,
                sets,
                sessions,
                unlisted,
            },
            _,
        ) => {
            tracing::info!(pid, "upgrade: the new process takes the offer");
            relay::Takes {
                early,
                sets,
                sessions,
                unlisted,
            }
        }
        (Msg::Refuse { why }, _) => return Err(format!("the new binary refused: {why}")),
        (other, _) => return Err(format!("unexpected answer to the offer: {other:?}")),
    };
    // From here this one consumes no downstream entry (resumed if the
    // upgrade aborts); it writes its registry entry until the commit.
    node.handed_over.store(true, Ordering::SeqCst);
    for chunk in fds.chunks(sys::MAX_FDS) {
        send(sock, &Msg::Fds, chunk).map_err(io)?;
    }
    drop(listeners);
    match recv(sock, READY_TIMEOUT)? {
        (Msg::Ready { .. }, _) => Ok(takes),
        (other, _) => Err(format!("unexpected message instead of ready: {other:?}")),
    }
}

/// At exit, after an upgrade: hands the new process what this one counted
/// since the commit.
pub(crate) fn finish(node: &Node) {
    let Some((sock, sent)) = node
        .upgrade
        .handed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        return;
    };
    let shards = node
        .stats
        .iter()
        .zip(&sent)
        .map(|(s, before)| {
            let now = s.totals();
            now.iter()
                .zip(before)
                .map(|(n, b)| n.saturating_sub(*b))
                .collect()
        })
        .collect();
    let msg = Msg::Totals {
        shards,
        upgrades: 0,
        aborted: 0,
    };
    if let Err(e) = send(&sock, &msg, &[]) {
        tracing::warn!("upgrade: the last counters could not be handed over: {e}");
    }
}

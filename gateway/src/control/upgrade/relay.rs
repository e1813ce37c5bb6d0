//! Moving the connections (step 4 of the module header), in both
//! processes: the old node freezes its shards, waits until they are settled
//! and the mesh is quiet, and relays each shard's records (its channel,
//! `shard::handover`) to the new process; the new node relays them to its
//! matching shard, which takes them over, and answers `Taken`.
//!
//! On the main channel each relayed record starts with [`RELAYED`] and the
//! shard's index (two bytes, little-endian), then the shard's record.
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{recv, send, Msg, READY_TIMEOUT};
use crate::control::node::Node;
use crate::mesh::{Command, ShardMsg};
use crate::sys;

/// The first byte of a relayed record.
const RELAYED: u8 = 1;
/// Largest record relayed (a shard's in-process store goes in one).
const MAX_RECORD: usize = (1 << 30) + 3;
/// How long the shards may take to settle (their own bound is 2 s).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the mesh must stay quiet before the export.
const QUIET: Duration = Duration::from_millis(10);
/// How long one shard's export or import may take.
const SHARD_TIMEOUT: Duration = Duration::from_secs(60);
/// The record that ends a shard's export (see `shard::handover`).
const END: u8 = b'E';

fn to_shard(node: &Node, shard: usize, cmd: Command) {
    let mut msg = ShardMsg::Command(cmd);
    while let Err(back) = node.mesh.push_blocking(shard, msg, Duration::from_secs(2)) {
        msg = back;
    }
}

/// Old process: freezes every shard and waits until they are settled and
/// nothing moves between them. The caller thaws them if this fails.
pub(super) fn freeze(node: &Node) -> Result<(), String> {
    let shards = node.mesh.len();
    let (tx, rx) = crossbeam_channel::bounded(shards);
    tracing::info!("upgrade: freezing the shards, then moving the connections");
    for shard in 0..shards {
        to_shard(node, shard, Command::Freeze(tx.clone()));
    }
    for _ in 0..shards {
        match rx.recv_timeout(SETTLE_TIMEOUT) {
            Ok(true) => {}
            _ => return Err("store operations did not settle in time".into()),
        }
    }
    quiet(node)
}

/// Waits until every shard's queue has been empty for [`QUIET`].
fn quiet(node: &Node) -> Result<(), String> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut since = Instant::now();
    loop {
        if !(0..node.mesh.len()).all(|s| node.mesh.is_idle(s)) {
            since = Instant::now();
        } else if since.elapsed() >= QUIET {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("the shards did not go quiet in time".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Old process: every shard exports, its records relayed to `sock`; then
/// the new process's answer. Returns the connections it took.
pub(super) fn export(node: &Node, sock: &OwnedFd) -> Result<u64, String> {
    let shards = node.mesh.len();
    send(sock, &Msg::Move { shards }, &[]).map_err(|e| format!("handover channel: {e}"))?;
    for shard in 0..shards {
        let (tx, rx) = crossbeam_channel::bounded(1);
        to_shard(node, shard, Command::Export(tx));
        let from = &node.handover[shard];
        loop {
            let (bytes, fds) = match sys::recv_record(from, MAX_RECORD, SHARD_TIMEOUT) {
                Ok(Some(r)) => r,
                _ => return Err(format!("shard {shard} did not export")),
            };
            let mut out = Vec::with_capacity(bytes.len() + 3);
            out.push(RELAYED);
            out.extend_from_slice(&(shard as u16).to_le_bytes());
            out.extend_from_slice(&bytes);
            let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
            sys::send_record(sock, &out, &raw).map_err(|e| format!("handover channel: {e}"))?;
            // This table's copies go; the shard's and the new process's stay.
            drop(fds);
            if bytes.first() == Some(&END) {
                break;
            }
        }
        match rx.recv_timeout(SHARD_TIMEOUT) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("shard {shard} could not export: {e}")),
            Err(_) => return Err(format!("shard {shard} did not answer the export")),
        }
    }
    // Nothing may have reached a shard since its export.
    if !(0..shards).all(|s| node.mesh.is_idle(s)) {
        return Err("a message reached a shard during the export".into());
    }
    match recv(sock, READY_TIMEOUT)? {
        (Msg::Taken { conns }, _) => Ok(conns),
        (Msg::Refuse { why }, _) => Err(format!("the new process could not take over: {why}")),
        (other, _) => Err(format!("unexpected answer to the move: {other:?}")),
    }
}

/// New process: relays every shard's records from `sock` to the shard,
/// which takes them over. Returns the connections taken.
pub(super) fn import(node: &Node, sock: &OwnedFd, shards: usize) -> Result<u64, String> {
    if shards != node.mesh.len() {
        return Err(format!("{shards} shards offered, {} here", node.mesh.len()));
    }
    let mut total = 0;
    for shard in 0..shards {
        let (tx, rx) = crossbeam_channel::bounded(1);
        to_shard(node, shard, Command::Import(tx));
        let to = &node.handover[shard];
        loop {
            let (bytes, fds) = match sys::recv_record(sock, MAX_RECORD, SHARD_TIMEOUT) {
                Ok(Some(r)) => r,
                _ => return Err("the old process stopped sending".into()),
            };
            let (head, body) = bytes.split_at(bytes.len().min(3));
            if head.len() < 3 || head[0] != RELAYED || head[1..] != (shard as u16).to_le_bytes() {
                return Err(format!("a record out of order for shard {shard}"));
            }
            let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
            sys::send_record(to, body, &raw).map_err(|e| format!("shard {shard}: {e}"))?;
            drop(fds);
            if body.first() == Some(&END) {
                break;
            }
        }
        match rx.recv_timeout(SHARD_TIMEOUT) {
            Ok(Ok(n)) => total += n as u64,
            Ok(Err(e)) => return Err(format!("shard {shard}: {e}")),
            Err(_) => return Err(format!("shard {shard} did not answer the import")),
        }
    }
    Ok(total)
}

/// Old process, aborting: every shard serves on.
pub(super) fn thaw(node: &Node) {
    for shard in 0..node.mesh.len() {
        to_shard(node, shard, Command::Thaw);
    }
}

/// Old process, committing: every shard forgets what moved.
pub(super) fn forget(node: &Node) {
    for shard in 0..node.mesh.len() {
        to_shard(node, shard, Command::Forget);
    }
}

//! Moving the connections (step 4 of the module header), in both
//! processes: the old node makes one channel per shard pair and gives each
//! old shard one end and the new process the other (`Pipes`), which gives
//! it to its matching shard: old shard `i` writes its records
//! (`shard::handover`) straight to new shard `i`, every pair at once. When
//! the new binary takes them, the old shards first send their plain
//! connections' descriptors ahead while still serving
//! (`shard::handover_early`); then the old node freezes its shards, waits
//! until they are settled and the mesh is quiet, and they export; the new
//! process answers `Taken`.
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{recv, send, Msg, READY_TIMEOUT};
use crate::control::lifecycle::command;
use crate::control::node::Node;
use crate::mesh::{Command, Import};
use crate::sys;

/// The record that gives a shard its end of the upgrade's channel.
const PIPE: u8 = b'P';
/// How long the shards may take to settle (their own bound is 2 s).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the mesh must stay quiet before the export.
const QUIET: Duration = Duration::from_millis(10);
/// How long one shard's export or import may take.
const SHARD_TIMEOUT: Duration = Duration::from_secs(60);

/// What the new process takes ahead of the freeze (`Accept`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Takes {
    /// The descriptors.
    pub(super) early: bool,
    /// The shards' epoll sets with them (`shard::adopted`).
    pub(super) sets: bool,
    /// The sessions with them (`shard::handover_ahead`).
    pub(super) sessions: bool,
    /// At the freeze it keeps those that came ahead unless they are named
    /// (`shard::handover_ahead`).
    pub(super) unlisted: bool,
}

/// Old process: step 4 of the module header. With `early` (the new process
/// takes them), the descriptors go ahead while the shards serve, then the
/// freeze; else the freeze, then the channels. Then the export; returns the
/// connections the new process took. The caller thaws the shards if this
/// fails.
pub(super) fn move_out(node: &Node, sock: &OwnedFd, takes: Takes) -> Result<u64, String> {
    if takes.early {
        open(node, sock, true)?;
        prepass(node, takes)?;
        let descriptors = ahead_taken(sock)?;
        tracing::info!(descriptors, "upgrade: descriptors sent ahead");
        freeze(node)?;
    } else {
        freeze(node)?;
        open(node, sock, false)?;
    }
    export(node, sock)
}

/// Milliseconds since `t`, for the log's phase lines.
fn ms_since(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// Old process: freezes every shard and waits until they are settled and
/// nothing moves between them.
fn freeze(node: &Node) -> Result<(), String> {
    let shards = node.mesh.len();
    let (tx, rx) = crossbeam_channel::bounded(shards);
    tracing::info!("upgrade: freezing the shards, then moving the connections");
    let started = Instant::now();
    for shard in 0..shards {
        command(node, shard, Command::Freeze(tx.clone()));
    }
    for _ in 0..shards {
        match rx.recv_timeout(SETTLE_TIMEOUT) {
            Ok(true) => {}
            _ => return Err("store operations did not settle in time".into()),
        }
    }
    let settled_ms = ms_since(started);
    quiet(node)?;
    tracing::info!(
        settled_ms,
        quiet_ms = ms_since(started),
        "upgrade: the shards are frozen"
    );
    Ok(())
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

/// Old process: one channel per shard pair, the new process's ends sent to
/// it (`Move`, `Pipes`); every shard is given its end, which it takes at
/// the pre-pass or else at the export.
fn open(node: &Node, sock: &OwnedFd, early: bool) -> Result<(), String> {
    let shards = node.mesh.len();
    let io = |e: std::io::Error| format!("handover channel: {e}");
    let pipes = (0..shards)
        .map(|_| sys::seqpacket_pair())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io)?;
    send(sock, &Msg::Move { shards, early }, &[]).map_err(io)?;
    let theirs: Vec<i32> = pipes.iter().map(|(_, t)| t.as_raw_fd()).collect();
    for chunk in theirs.chunks(sys::MAX_FDS) {
        send(sock, &Msg::Pipes, chunk).map_err(io)?;
    }
    for (shard, (mine, _)) in pipes.iter().enumerate() {
        give_pipe(node, shard, mine)?;
    }
    // The shards hold their ends now, the new process its own.
    Ok(())
}

/// Old process, still serving: every shard sends the descriptors of its
/// movable plain connections ahead (`shard::handover_early`), and with
/// `sets` their epoll sets first, a wave of shards at a time
/// ([`ahead_wave`]). Returns how many.
fn prepass(node: &Node, takes: Takes) -> Result<u64, String> {
    let shards = node.mesh.len();
    let (tx, rx) = crossbeam_channel::bounded(shards);
    let mut sent = 0;
    let all: Vec<usize> = (0..shards).collect();
    for wave in all.chunks(ahead_wave()) {
        for &shard in wave {
            let reply = tx.clone();
            command(
                node,
                shard,
                Command::Prepass {
                    reply,
                    sets: takes.sets,
                    sessions: takes.sessions,
                    unlisted: takes.unlisted,
                },
            );
        }
        sent += answers(&rx, wave.len(), "send its descriptors ahead")?;
    }
    Ok(sent)
}

/// How many shards send their descriptors ahead at once: eight per core.
/// All at once, the old shards sending and the new ones taking made some
/// 160 runnable threads on 2 cores (80 shards), and every old shard waited
/// its turn among them to answer its clients: pings took 0.5 s (p50) while
/// a million descriptors went ahead. In waves the other shards serve at
/// once; two per core left the cores idle between records and the
/// pre-pass took 1.7 times as long.
fn ahead_wave() -> usize {
    std::thread::available_parallelism().map_or(16, |n| 8 * n.get())
}

/// Old process, frozen, its channels open: every shard exports into its
/// channel, all at once; then the new process's answer. Returns the
/// connections it took.
fn export(node: &Node, sock: &OwnedFd) -> Result<u64, String> {
    let shards = node.mesh.len();
    let (tx, rx) = crossbeam_channel::bounded(shards);
    let started = Instant::now();
    for shard in 0..shards {
        command(node, shard, Command::Export(tx.clone()));
    }
    answers(&rx, shards, "export")?;
    tracing::info!(ms = ms_since(started), "upgrade: the shards exported");
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

/// New process: the channels from the old process's shards, one to each
/// shard, which takes over what comes through it; all at once. Returns the
/// connections taken.
pub(super) fn import(
    node: &Node,
    sock: &OwnedFd,
    shards: usize,
    early: bool,
) -> Result<u64, String> {
    if shards != node.mesh.len() {
        return Err(format!("{shards} shards offered, {} here", node.mesh.len()));
    }
    let mut pipes = Vec::with_capacity(shards);
    while pipes.len() < shards {
        match recv(sock, SHARD_TIMEOUT)? {
            (Msg::Pipes, fds) => pipes.extend(fds),
            (other, _) => return Err(format!("expected the shards' channels, got {other:?}")),
        }
    }
    let (tx, rx) = crossbeam_channel::bounded(shards);
    let (ahead_tx, ahead_rx) = crossbeam_channel::bounded(shards);
    for (shard, pipe) in pipes.iter().enumerate().take(shards) {
        give_pipe(node, shard, pipe)?;
        let import = Import {
            ahead: ahead_tx.clone(),
            done: tx.clone(),
        };
        command(node, shard, Command::Import(Box::new(import)));
    }
    drop(pipes);
    if early {
        let descriptors = taken_ahead(&ahead_rx, &rx, shards)?;
        tracing::info!(descriptors, "upgrade: took the descriptors sent ahead");
        if let Some(ms) = super::test_var("GATEWAY_TEST_UPGRADE_HOLD_AHEAD_MS") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
        }
        send(sock, &Msg::Ahead { descriptors }, &[])
            .map_err(|e| format!("handover channel: {e}"))?;
    }
    let started = Instant::now();
    let taken = answers(&rx, shards, "take over")?;
    tracing::info!(
        ms = ms_since(started),
        "upgrade: every shard took its connections"
    );
    Ok(taken)
}

/// New process: waits until every shard has taken the descriptors sent
/// ahead; returns how many. A shard that fails meanwhile fails it.
fn taken_ahead(
    ahead: &crossbeam_channel::Receiver<usize>,
    done: &crossbeam_channel::Receiver<Result<usize, String>>,
    shards: usize,
) -> Result<u64, String> {
    let deadline = Instant::now() + SHARD_TIMEOUT;
    let (mut total, mut got) = (0, 0);
    while got < shards {
        crossbeam_channel::select! {
            recv(ahead) -> n => {
                total += n.unwrap_or(0) as u64;
                got += 1;
            }
            recv(done) -> r => {
                let why = match r {
                    Ok(Err(e)) => e,
                    _ => "a shard ended its import before the descriptors sent ahead".into(),
                };
                return Err(format!("a shard could not take over: {why}"));
            }
            default(deadline.saturating_duration_since(Instant::now())) => {
                return Err("a shard did not take the descriptors sent ahead in time".into());
            }
        }
    }
    Ok(total)
}

/// Old process: waits until the new process took every descriptor sent
/// ahead (taking them is the work; sending only queues them).
fn ahead_taken(sock: &OwnedFd) -> Result<u64, String> {
    match recv(sock, SHARD_TIMEOUT)? {
        (Msg::Ahead { descriptors }, _) => Ok(descriptors),
        (Msg::Refuse { why }, _) => Err(format!("the new process could not take over: {why}")),
        (other, _) => Err(format!("unexpected answer to the descriptors: {other:?}")),
    }
}

/// Every shard's answer to a step, summed; the first failure, or a shard
/// silent for [`SHARD_TIMEOUT`], fails the step.
fn answers(
    rx: &crossbeam_channel::Receiver<Result<usize, String>>,
    shards: usize,
    step: &str,
) -> Result<u64, String> {
    let mut total = 0;
    for _ in 0..shards {
        match rx.recv_timeout(SHARD_TIMEOUT) {
            Ok(Ok(n)) => total += n as u64,
            Ok(Err(e)) => return Err(format!("a shard could not {step}: {e}")),
            Err(_) => return Err(format!("a shard did not {step} in time")),
        }
    }
    Ok(total)
}

/// Hands shard `shard` its end of this upgrade's channel (through its
/// handover channel: the shard has its own descriptor table).
fn give_pipe(node: &Node, shard: usize, pipe: &OwnedFd) -> Result<(), String> {
    sys::send_record(&node.handover[shard], &[PIPE], &[pipe.as_raw_fd()])
        .map_err(|e| format!("shard {shard}'s channel: {e}"))
}

/// Old process, aborting: every shard serves on.
pub(super) fn thaw(node: &Node) {
    for shard in 0..node.mesh.len() {
        command(node, shard, Command::Thaw);
    }
}

/// Old process, committing: every shard forgets what moved.
pub(super) fn forget(node: &Node) {
    for shard in 0..node.mesh.len() {
        command(node, shard, Command::Forget);
    }
}

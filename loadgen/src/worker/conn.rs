//! One connection's task: connect, handshake, then read until closed;
//! reconnect when the plan says so. It holds no read buffer while idle:
//! it waits for readability, then reads into the worker's shared buffer and
//! keeps only an incomplete frame's bytes.
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::io::{self, Recv};
use super::{user_name, Slot, Worker};
use crate::target::{Event, Session};
use crate::tls::Tls;

/// How a connection's life ended.
enum End {
    /// We were told to stop.
    Stopped,
    /// A storm closed it: reconnect, no failure.
    Stormed,
    /// It failed (before or after ready) for this cause.
    Failed(String),
}

/// Runs user `user`'s connection until the stop. The spawner counted its
/// first attempt in `connecting` already (so the in-flight bound holds
/// before this task first runs); reconnects count themselves.
///
/// This future lives as long as the connection, so its size is memory per
/// connection: what is awaited only now and then (connecting, the
/// handshake deadline, a send, the reconnect backoff) is boxed, which keeps
/// the idle state at about 670 B (was 1.5 KB).
pub(super) async fn run(w: Rc<Worker>, user: u64) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match once(&w, user).await {
            End::Stopped => break,
            End::Stormed => backoff = Duration::from_millis(100),
            End::Failed(cause) => {
                if !w.shared.stopping() {
                    w.shared.fail(&cause);
                }
                if !w.plan.reconnect || w.shared.stopping() {
                    break;
                }
                let jitter = fastrand::u64(0..=backoff.as_millis() as u64);
                Box::pin(monoio::time::sleep(backoff + Duration::from_millis(jitter))).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        if w.shared.stopping() {
            break;
        }
        w.connecting.set(w.connecting.get() + 1);
    }
    w.live.set(w.live.get() - 1);
}

/// Per-connection receive state (besides the protocol session).
struct Rx {
    /// The user's index in this worker (`user - first`).
    local: usize,
    ready_at: Option<Instant>,
}

async fn once(w: &Rc<Worker>, user: u64) -> End {
    let started = Instant::now();
    let dest = w.plan.dest_for(user);
    let connecting = monoio::time::timeout(w.plan.handshake_timeout, TcpStream::connect_addr(dest));
    let stream = match Box::pin(connecting).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return done_connecting(w, End::Failed(io::cause("connect", &e))),
        Err(_) => return done_connecting(w, End::Failed("connect_timeout".into())),
    };
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let tls = match w.plan.spec.tls.as_ref().map(|c| c.connect()).transpose() {
        Ok(t) => t,
        Err(e) => return done_connecting(w, End::Failed(io::cause("tls_setup", &e))),
    };
    let slot = w.slots.borrow_mut().insert(Slot {
        fd,
        tls: tls.clone(),
        user,
        ready: false,
        stormed: false,
        post: None,
    });
    if let Some(s) = w.by_user.borrow_mut().get_mut((user - w.first) as usize) {
        *s = Some(slot);
    }
    let end = session(w, &stream, tls.as_ref(), user, slot, started).await;
    if let Some(s) = w.by_user.borrow_mut().get_mut((user - w.first) as usize) {
        *s = None;
    }
    let removed = w.slots.borrow_mut().try_remove(slot);
    let was_ready = removed.as_ref().is_some_and(|s| s.ready);
    let stormed = removed.is_some_and(|s| s.stormed);
    if was_ready {
        w.shared.connected.fetch_sub(1, Relaxed);
        if !w.shared.stopping() && !stormed {
            w.shared.dropped.fetch_add(1, Relaxed);
        }
    } else {
        w.connecting.set(w.connecting.get() - 1);
    }
    match end {
        End::Failed(_) if stormed => End::Stormed,
        End::Failed(_) if w.shared.stopping() => End::Stopped,
        end => end,
    }
}

/// Writes `plain`, enciphered first on TLS (with any handshake records
/// rustls has queued).
async fn send(stream: &TcpStream, tls: Option<&Tls>, plain: &[u8]) -> std::io::Result<()> {
    let Some(tls) = tls else {
        return io::send_all(stream, plain).await;
    };
    let mut cipher = Vec::with_capacity(plain.len() + 64);
    crate::tls::seal(tls, plain, &mut cipher)?;
    match cipher.is_empty() {
        true => Ok(()),
        false => io::send_all(stream, &cipher).await,
    }
}

fn done_connecting(w: &Worker, end: End) -> End {
    w.connecting.set(w.connecting.get() - 1);
    end
}

async fn session(
    w: &Rc<Worker>,
    stream: &TcpStream,
    tls: Option<&Tls>,
    user: u64,
    slot: usize,
    started: Instant,
) -> End {
    let fd = stream.as_raw_fd();
    let mut out = Vec::new();
    let room = w.plan.room_of(user);
    let local = (user - w.first) as usize;
    let mut sess = match Session::start(
        w.plan.spec.clone(),
        &user_name(user),
        room.as_deref(),
        w.users.borrow().get(local).map_or(0, |u| u.last_seq),
        &mut out,
    ) {
        Ok(s) => s,
        Err(e) => return End::Failed(format!("setup: {e}")),
    };
    if let Err(e) = Box::pin(send(stream, tls, &out)).await {
        return End::Failed(io::cause("write", &e));
    }
    out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut rx = Rx {
        local,
        ready_at: None,
    };
    let deadline = started + w.plan.handshake_timeout;
    loop {
        if w.shared.stopping() {
            return End::Stopped;
        }
        let wait = stream.readable(false);
        let ready = if rx.ready_at.is_some() {
            wait.await
        } else {
            let left = deadline.saturating_duration_since(Instant::now());
            match Box::pin(monoio::time::timeout(left, wait)).await {
                Ok(r) => r,
                Err(_) => return End::Failed("handshake_timeout".into()),
            }
        };
        if let Err(e) = ready {
            return End::Failed(io::cause("poll", &e));
        }
        loop {
            let step = read_once(
                w,
                fd,
                tls,
                &mut sess,
                &mut pending,
                &mut out,
                &mut rx,
                slot,
                started,
            );
            if let (Some(path), false) = (sse_post(w, &sess, slot), out.is_empty()) {
                // The fallback: frames go up by POST, not on the stream.
                super::post::spawn(w, w.plan.dest_for(user), path, std::mem::take(&mut out));
            }
            if !out.is_empty() || tls.is_some_and(|t| t.borrow().wants_write()) {
                if let Err(e) = Box::pin(send(stream, tls, &out)).await {
                    return End::Failed(io::cause("write", &e));
                }
                out = Vec::new();
            }
            match step {
                Ok(true) => continue,
                Ok(false) => break,
                Err(end) => return end,
            }
        }
    }
}

/// `--wire sse`: the path this connection's frames are POSTed to (noted
/// in its slot for the heartbeats), once the stream named it.
fn sse_post(w: &Worker, sess: &Session, slot: usize) -> Option<Rc<str>> {
    if w.plan.spec.wire != crate::target::Wire::Sse {
        return None;
    }
    let path = sess.post_path()?.clone();
    if let Some(s) = w.slots.borrow_mut().get_mut(slot) {
        s.post.get_or_insert_with(|| path.clone());
    }
    Some(path)
}

/// One `recv` and the parsing of what it brought. `Ok(true)` if the buffer
/// was filled (read again), `Ok(false)` when drained.
#[allow(clippy::too_many_arguments)]
fn read_once(
    w: &Worker,
    fd: i32,
    tls: Option<&Tls>,
    sess: &mut Session,
    pending: &mut Vec<u8>,
    out: &mut Vec<u8>,
    rx: &mut Rx,
    slot: usize,
    started: Instant,
) -> Result<bool, End> {
    let mut buf = w.buf.borrow_mut();
    let n = match io::recv(fd, &mut buf) {
        Ok(Recv::Data(n)) => n,
        Ok(Recv::WouldBlock) => return Ok(false),
        Ok(Recv::Eof) => return Err(End::Failed("closed_eof".into())),
        Err(e) => return Err(End::Failed(io::cause("read", &e))),
    };
    let full = n == buf.len();
    let mut deciphered = Vec::new();
    let data: &mut [u8] = match tls {
        None => buf.get_mut(..n).unwrap_or_default(),
        Some(t) => {
            crate::tls::open(t, buf.get(..n).unwrap_or_default(), &mut deciphered)
                .map_err(|e| End::Failed(format!("tls: {e}")))?;
            &mut deciphered
        }
    };
    let mut deliveries = 0u64;
    let mut on = |ev: Event<'_>| on_event(w, ev, rx, slot, started, &mut deliveries);
    let res = if pending.is_empty() {
        sess.feed(data, out, &mut on).map(|used| {
            if let Some(rest) = data.get(used..).filter(|r| !r.is_empty()) {
                pending.extend_from_slice(rest);
            }
        })
    } else {
        pending.extend_from_slice(data);
        let mut data = std::mem::take(pending);
        sess.feed(&mut data, out, &mut on).map(|used| {
            data.drain(..used);
            if !data.is_empty() {
                *pending = data;
            }
        })
    };
    if deliveries > 0 {
        w.shared.deliveries.fetch_add(deliveries, Relaxed);
    }
    res.map_err(|f| End::Failed(f.cause()))?;
    if pending.len() > w.plan.spec.max_message + 64 {
        return Err(End::Failed("protocol".into()));
    }
    Ok(full)
}

/// A numbered message for this connection's user.
fn delivery(w: &Worker, body: &[u8], qos_seq: u64, rx: &Rx, deliveries: &mut u64) {
    *deliveries += 1;
    let mut report = w.report.borrow_mut();
    let mut users = w.users.borrow_mut();
    let Some(u) = users.get_mut(rx.local) else {
        return;
    };
    u.last_seq = u.last_seq.max(qos_seq);
    match crate::payload::decode(body) {
        Some((seq, ts)) => {
            let us = crate::payload::now_ns().saturating_sub(ts) / 1000;
            let _ = report.latency.record(us.max(1));
            if w.plan.audit {
                let _ = w.window.borrow_mut().record(us.max(1));
            }
            match u.seen.insert(seq, w.plan.max_seq) {
                Some(true) => report.distinct += 1,
                Some(false) => report.duplicates += 1,
                None => report.bad_payload += 1,
            }
        }
        None => report.bad_payload += 1,
    }
}

fn on_event(
    w: &Worker,
    ev: Event<'_>,
    rx: &mut Rx,
    slot: usize,
    started: Instant,
    deliveries: &mut u64,
) {
    match ev {
        Event::Ready => {
            let now = Instant::now();
            rx.ready_at = Some(now);
            let us = now.duration_since(started).as_micros() as u64;
            let _ = w.report.borrow_mut().handshake.record(us.max(1));
            if let Some(s) = w.slots.borrow_mut().get_mut(slot) {
                s.ready = true;
            }
            w.connecting.set(w.connecting.get() - 1);
            w.shared.connected.fetch_add(1, Relaxed);
            w.shared.readied.fetch_add(1, Relaxed);
        }
        // The audit numbers direct messages only; room ones are counted.
        Event::RoomDelivery(_) if w.plan.audit => {
            w.shared.room_deliveries.fetch_add(1, Relaxed);
        }
        Event::RoomDelivery(body) => delivery(w, body, 0, rx, deliveries),
        Event::Delivery(body, qos_seq) => delivery(w, body, qos_seq, rx, deliveries),
        Event::Pong(nonce) => {
            w.shared.pongs.fetch_add(1, Relaxed);
            if let (Some(sent), Some(rtt)) = (nonce, w.rtt.borrow_mut().as_mut()) {
                if w.shared.pinging.load(Relaxed) {
                    let now = crate::payload::now_ns() / 1000;
                    rtt.record(sent, now, w.shared.window());
                }
            }
        }
        Event::Warning(cause) => {
            w.shared.warnings.fetch_add(1, Relaxed);
            w.shared.note(&cause);
        }
        Event::Accepted(id) => {
            w.shared.accepted.fetch_add(1, Relaxed);
            if let Some(u) = w.users.borrow_mut().get_mut(rx.local) {
                if let Ok(seq) = id.parse::<u64>() {
                    u.accepted.insert(seq, w.plan.max_seq);
                }
            }
        }
        Event::Rejected(code) => {
            w.shared.rejected.fetch_add(1, Relaxed);
            w.shared.note(&format!("send_{code}"));
        }
    }
}

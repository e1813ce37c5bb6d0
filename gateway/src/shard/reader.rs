//! Reading a connection: bytes from the socket into a pooled buffer, split
//! into frames by the sans-IO codecs of `proto`, handed to the session.
//!
//! Reads land in the shard's scratch buffer; a connection keeps bytes of its
//! own only while a frame is incomplete, so an idle connection holds none. A
//! pending frame's buffer grows only up to the frame limit plus a header.
use std::os::fd::RawFd;

use proto::codec::Encoding;
use proto::v1::ErrorCode;
use proto::ws::{self, Assembler, Event, Role};

use super::tables::ConnKey;
use super::{Phase, Shard};
use crate::metrics::ShardStats;
use crate::outbound::Wire;
use crate::sys::{self, Io};

/// Reads one connection may do before the rest of its shard gets a turn
/// (one client streaming frames must not stall the others).
const READS_PER_TURN: usize = 4;

/// How reading ended.
pub(super) enum ReadEnd {
    /// Socket drained; wait for the next readiness edge.
    Again,
    /// Input may remain (the connection had its share of the round, or it
    /// started closing with input unread): read again next round.
    Yield,
    /// The peer closed, or the socket failed.
    Eof,
}

/// A fatal protocol error: the client gets this code and the connection closes.
pub(super) struct Fatal(pub ErrorCode, pub String);

/// Read state that outlives one readiness event: a partial frame, and a
/// fragmented WebSocket message in progress. A connection holds one (boxed)
/// only while something is incomplete.
pub(super) struct Partial {
    buf: Vec<u8>,
    ws: Option<Assembler>,
}

impl Partial {
    fn is_empty(&self) -> bool {
        self.buf.is_empty() && !self.ws.as_ref().is_some_and(Assembler::in_progress)
    }
}

/// Reads what the socket has and processes every complete frame.
///
/// Bytes land in the shard's scratch buffer; only a partial frame left at the
/// end is copied into the connection's own buffer (sized to fit), and while
/// one is pending reads append to it until the frame completes.
pub(super) fn read(shard: &Shard, key: ConnKey) -> ReadEnd {
    let limits = &shard.node.config.limits;
    let limit = (limits.max_frame_bytes + 64).max(limits.max_handshake_bytes);
    let (fd, kept, hangup, websocket) = {
        let mut conns = shard.conns.borrow_mut();
        let Some(c) = conns.get_mut(key) else {
            return ReadEnd::Again;
        };
        (c.fd, c.partial.take(), c.hangup, c.wire != Wire::Tcp)
    };
    // On the stack while reading; boxed into the connection only if
    // something is left incomplete.
    let mut st = kept.map_or_else(
        || Partial {
            buf: Vec::new(),
            ws: websocket.then(|| Assembler::new(limits.max_frame_bytes)),
        },
        |b| *b,
    );
    let end = read_into(shard, key, fd, &mut st, limit, hangup);
    if !st.is_empty() {
        if let Some(c) = shard.conns.borrow_mut().get_mut(key) {
            c.partial = Some(Box::new(st));
        }
    }
    end
}

/// Reads until `EAGAIN`, EOF or the turn's share. A read shorter than the
/// buffer means the socket is drained, unless a hang-up was reported (the
/// read stopped at the FIN, and only another read sees it).
fn read_into(
    shard: &Shard,
    key: ConnKey,
    fd: RawFd,
    st: &mut Partial,
    limit: usize,
    hangup: bool,
) -> ReadEnd {
    for _ in 0..READS_PER_TURN {
        let pending = !st.buf.is_empty();
        let mut scratch = shard.scratch.borrow_mut();
        let buf: &mut Vec<u8> = if pending { &mut st.buf } else { &mut scratch };
        if !pending {
            buf.clear();
        }
        if buf.len() == buf.capacity() {
            let grow = buf.len().min(limit.saturating_sub(buf.len())).max(1024);
            buf.reserve(grow);
        }
        let spare = buf.capacity() - buf.len();
        let n = match sys::recv(fd, buf) {
            Ok(Io::Done(0)) | Err(_) => return ReadEnd::Eof,
            Ok(Io::WouldBlock) => return ReadEnd::Again,
            Ok(Io::Done(n)) => n,
        };
        ShardStats::add(&shard.stats.bytes_in, n as u64);
        shard.touch(key);
        let result = process(&mut st.ws, shard, key, buf);
        if !pending && !scratch.is_empty() {
            st.buf.extend_from_slice(&scratch);
        }
        if pending && st.buf.is_empty() {
            // The partial frame completed: release its buffer.
            st.buf = Vec::new();
        }
        drop(scratch);
        if let Err(Fatal(code, msg)) = result {
            shard.fail(key, code, &msg);
            return ReadEnd::Yield;
        }
        if shard.phase(key) == Some(Phase::Closing) {
            // What is left is discarded from the next round on.
            return ReadEnd::Yield;
        }
        if n < spare && !hangup {
            return ReadEnd::Again;
        }
    }
    ReadEnd::Yield
}

/// Drains and discards input while a closing connection lingers.
pub(super) fn discard(shard: &Shard, key: ConnKey) -> ReadEnd {
    let fd = {
        let mut conns = shard.conns.borrow_mut();
        let Some(c) = conns.get_mut(key) else {
            return ReadEnd::Again;
        };
        c.partial = None;
        c.fd
    };
    let mut scratch = shard.scratch.borrow_mut();
    for _ in 0..READS_PER_TURN {
        scratch.clear();
        match sys::recv(fd, &mut scratch) {
            Ok(Io::Done(0)) | Err(_) => return ReadEnd::Eof,
            Ok(Io::WouldBlock) => return ReadEnd::Again,
            Ok(Io::Done(_)) => {}
        }
    }
    ReadEnd::Yield
}

/// Processes every complete frame at the front of `buf` and removes it.
fn process(
    ws: &mut Option<Assembler>,
    shard: &Shard,
    key: ConnKey,
    buf: &mut Vec<u8>,
) -> Result<(), Fatal> {
    let max = shard.node.config.limits.max_frame_bytes;
    let mut pos = 0;
    let result = loop {
        match shard.phase(key) {
            Some(Phase::Closing) | None => break Ok(()),
            Some(Phase::Upgrade) => {
                let max_head = shard.node.config.limits.max_handshake_bytes;
                match proto::handshake::parse_request(&buf[pos..], max_head) {
                    Ok(Some((used, req))) => {
                        pos += used;
                        shard.on_upgrade(key, req);
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => {
                        shard.reject_upgrade(key, e.status(), &e.to_string());
                        break Ok(());
                    }
                }
            }
            Some(_) => {
                let step = match ws {
                    Some(asm) => ws_step(shard, key, asm, &mut buf[pos..], max),
                    None => tcp_step(shard, key, &buf[pos..], max),
                };
                match step {
                    Ok(Some(used)) => pos += used,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        }
    };
    buf.drain(..pos);
    result
}

fn tcp_step(shard: &Shard, key: ConnKey, buf: &[u8], max: usize) -> Result<Option<usize>, Fatal> {
    match proto::frame::decode(buf, max) {
        Ok(Some((used, payload))) => {
            shard.on_payload(key, Encoding::Proto, payload)?;
            Ok(Some(used))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(Fatal(ErrorCode::FrameTooLarge, e.to_string())),
    }
}

fn ws_step(
    shard: &Shard,
    key: ConnKey,
    asm: &mut Assembler,
    buf: &mut [u8],
    max: usize,
) -> Result<Option<usize>, Fatal> {
    let head = match ws::decode_frame(buf, Role::Server, max) {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(None),
        Err(e) => return Err(ws_fatal(e)),
    };
    let used = head.header_len + head.payload_len;
    let payload = &buf[head.header_len..used];
    let event = asm.push(head, payload).map_err(ws_fatal)?;
    match event {
        None | Some(Event::Pong(_)) => {}
        Some(Event::Data { text, payload }) => {
            let enc = if text {
                Encoding::Json
            } else {
                Encoding::Proto
            };
            shard.on_payload(key, enc, &payload)?;
        }
        Some(Event::Ping(data)) => shard.ws_pong(key, data),
        Some(Event::Close { .. }) => shard.close(key, None),
    }
    Ok(Some(used))
}

/// A WebSocket protocol error as the error frame the client gets.
fn ws_fatal(e: proto::ws::WsError) -> Fatal {
    let code = if e.close_code() == 1009 {
        ErrorCode::FrameTooLarge
    } else {
        ErrorCode::BadFrame
    };
    Fatal(code, e.to_string())
}

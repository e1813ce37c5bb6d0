//! Reading a connection: bytes from the socket into the shard's scratch
//! buffer, lent to the session (`Session::handle_bytes`), which splits them
//! into frames and keeps an incomplete one.
//!
//! The scratch buffer is the shard's: an idle connection holds no read
//! buffer. A connection gets `READS_PER_TURN` reads per shard round, so one
//! client streaming frames cannot stall the others.
use super::Shard;
use crate::router::tables::ConnKey;
use crate::stats::ShardStats;
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

/// Reads until `EAGAIN`, EOF or the turn's share, handing each read to the
/// session. A read shorter than the buffer means the socket is drained,
/// unless a hang-up was reported (the read stopped at the FIN, and only
/// another read sees it).
pub(super) fn read(shard: &Shard, key: ConnKey) -> ReadEnd {
    let Some((fd, hangup)) = shard.conns.borrow().get(key).map(|c| (c.fd, c.hangup)) else {
        return ReadEnd::Again;
    };
    for _ in 0..READS_PER_TURN {
        let mut scratch = shard.scratch.borrow_mut();
        scratch.clear();
        let spare = scratch.capacity();
        let n = match sys::recv(fd, &mut scratch) {
            Ok(Io::Done(0)) | Err(_) => return ReadEnd::Eof,
            Ok(Io::WouldBlock) => return ReadEnd::Again,
            Ok(Io::Done(n)) => n,
        };
        ShardStats::add(&shard.stats.bytes_in, n as u64);
        let closing = if shard.is_tls(key) {
            let mut plain = shard.plain.borrow_mut();
            plain.clear();
            match shard.tls_input(key, &scratch[..n], &mut plain) {
                Ok(wants_write) => {
                    if wants_write {
                        shard.mark_dirty_key(key);
                    }
                }
                Err(e) => {
                    tracing::debug!(shard = shard.id, "TLS refused: {e}");
                    // The alert goes out; the session closes with it.
                    shard.mark_dirty_key(key);
                    shard.drive(key, |s, cx| s.close(cx));
                    return ReadEnd::Yield;
                }
            }
            shard.drive(key, |s, cx| {
                if !plain.is_empty() {
                    s.handle_bytes(cx, &mut plain[..]);
                }
                s.is_closing()
            })
        } else {
            shard.drive(key, |s, cx| {
                s.handle_bytes(cx, &mut scratch[..n]);
                s.is_closing()
            })
        };
        match closing {
            None => return ReadEnd::Again,
            // What is left is discarded from the next round on.
            Some(true) => return ReadEnd::Yield,
            Some(false) if n < spare && !hangup => return ReadEnd::Again,
            Some(false) => {}
        }
    }
    ReadEnd::Yield
}

/// Drains and discards input while a closing connection lingers.
pub(super) fn discard(shard: &Shard, key: ConnKey) -> ReadEnd {
    let Some(fd) = shard.conns.borrow().get(key).map(|c| c.fd) else {
        return ReadEnd::Again;
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

//! One bus socket as its task sees it: non-blocking reads and writes on the
//! descriptor, and readiness waits through the shard's runtime (a poll on a
//! duplicate, `wake::readiness`), which may be dropped at any time: no
//! bytes are ever in flight inside a cancelled future.
use std::cell::Cell;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use super::super::wake::{self, Notify, Turns};
use crate::sys::{self, Io};

/// Largest read per call.
const READ_CHUNK: usize = 64 * 1024;
/// Reads between two waits: a peer streaming without pause gets this much
/// of its shard's time before the shard's other tasks run.
const READS_PER_TURN: u32 = 16;

/// What a read found.
pub(super) enum Read {
    /// Bytes are in the buffer (and more may follow).
    Data,
    /// Nothing more for now, or the turn's share was read: wait.
    Empty,
    /// The peer closed, or the socket failed.
    Closed,
}

pub(super) struct Sock {
    fd: OwnedFd,
    carrier: monoio::net::TcpStream,
    out: Vec<u8>,
    sent: usize,
    /// Reads since the last wait.
    reads: Cell<u32>,
    turns: Turns,
}

impl Sock {
    pub(super) fn new(fd: OwnedFd) -> std::io::Result<Sock> {
        sys::set_nodelay(fd.as_raw_fd());
        let carrier = wake::readiness(fd.as_raw_fd())?;
        Ok(Sock {
            fd,
            carrier,
            out: Vec::new(),
            sent: 0,
            reads: Cell::new(0),
            turns: Turns::default(),
        })
    }

    /// Reads what is there into `buf` (cleared first).
    pub(super) fn read(&self, buf: &mut Vec<u8>) -> Read {
        buf.clear();
        if self.reads.get() >= READS_PER_TURN {
            // The rest is read after the wait, which finds it readable.
            return Read::Empty;
        }
        self.reads.set(self.reads.get() + 1);
        buf.reserve(READ_CHUNK);
        match sys::recv(self.fd.as_raw_fd(), buf) {
            Ok(Io::Done(0)) | Err(_) => Read::Closed,
            Ok(Io::Done(_)) => Read::Data,
            Ok(Io::WouldBlock) => Read::Empty,
        }
    }

    /// True while bytes wait for the socket.
    pub(super) fn pending(&self) -> bool {
        self.sent < self.out.len()
    }

    /// Queues `bytes` and writes what the socket takes; false when it failed.
    pub(super) fn write(&mut self, bytes: Vec<u8>) -> bool {
        if self.pending() {
            self.out.extend_from_slice(&bytes);
        } else {
            self.out = bytes;
            self.sent = 0;
        }
        self.flush()
    }

    /// Writes what waits; false when the socket failed.
    pub(super) fn flush(&mut self) -> bool {
        while self.pending() {
            match sys::send(self.fd.as_raw_fd(), &self.out[self.sent..]) {
                Ok(Io::Done(n)) => self.sent += n,
                Ok(Io::WouldBlock) => return true,
                Err(_) => return false,
            }
        }
        self.out.clear();
        self.sent = 0;
        true
    }

    /// Waits until the socket is readable (or writable, while output waits),
    /// `wake` is notified, or `timeout` passes.
    pub(super) async fn wait(&self, wake: &Notify, timeout: Option<Duration>) {
        let writable = async {
            if self.pending() {
                let _ = self.carrier.writable(false).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let sleep = async {
            match timeout {
                Some(t) => monoio::time::sleep(t).await,
                None => std::future::pending::<()>().await,
            }
        };
        let ((), did_wait) = wake::waited(async {
            monoio::select! {
                _ = self.carrier.readable(false) => {}
                _ = writable => {}
                _ = wake.notified() => {}
                _ = sleep => {}
            }
        })
        .await;
        self.reads.set(0);
        // A peer that keeps the socket readable: see `Turns`.
        self.turns.after_wait(did_wait).await;
    }
}

/// Waits until `wake` is notified or `timeout` passes (no socket).
pub(super) async fn idle(wake: &Notify, timeout: Option<Duration>) {
    let sleep = async {
        match timeout {
            Some(t) => monoio::time::sleep(t).await,
            None => std::future::pending::<()>().await,
        }
    };
    monoio::select! {
        _ = wake.notified() => {}
        _ = sleep => {}
    }
}

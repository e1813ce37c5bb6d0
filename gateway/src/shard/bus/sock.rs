//! One bus socket as its task sees it: non-blocking reads and writes on the
//! descriptor, and readiness waits through the shard's runtime (a poll on a
//! duplicate, `wake::readiness`), which may be dropped at any time: no
//! bytes are ever in flight inside a cancelled future.
//!
//! With TLS on the bus (`config::bus_tls`) the socket carries records of a
//! rustls connection, driven here sans-IO: ciphertext read goes through
//! `read_tls`/`process_new_packets` and the plaintext to the caller;
//! plaintext written goes to rustls' writer (no limit of its own: the
//! relay's link queue is the bound) and its records to the socket. The
//! caller sees plaintext either way.
use std::cell::Cell;
use std::io::{Read as _, Write as _};
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
    /// The TLS connection over the socket, with TLS on the bus.
    tls: Option<Box<rustls::Connection>>,
    /// Why TLS failed (a peer without a certificate of the cluster CA, a
    /// corrupt record): the socket reads as closed from then on.
    pub(super) tls_error: Option<rustls::Error>,
}

impl Sock {
    /// The socket `fd`, speaking TLS through `tls` when given.
    pub(super) fn new(fd: OwnedFd, tls: Option<rustls::Connection>) -> std::io::Result<Sock> {
        sys::set_nodelay(fd.as_raw_fd());
        let carrier = wake::readiness(fd.as_raw_fd())?;
        let tls = tls.map(|mut t| {
            t.set_buffer_limit(None);
            Box::new(t)
        });
        Ok(Sock {
            fd,
            carrier,
            out: Vec::new(),
            sent: 0,
            reads: Cell::new(0),
            turns: Turns::default(),
            tls,
            tls_error: None,
        })
    }

    /// Reads what is there into `buf` (cleared first): plaintext.
    pub(super) fn read(&mut self, buf: &mut Vec<u8>) -> Read {
        buf.clear();
        if self.tls.is_some() {
            return self.read_tls(buf);
        }
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

    /// `read` through TLS: records until some plaintext comes out (or the
    /// socket has nothing more now).
    fn read_tls(&mut self, buf: &mut Vec<u8>) -> Read {
        if self.tls_error.is_some() {
            return Read::Closed;
        }
        let mut cipher = Vec::new();
        loop {
            let Some(tls) = self.tls.as_mut() else {
                return Read::Closed;
            };
            match drain_plain(tls, buf) {
                Err(()) => return Read::Closed,
                Ok(()) if !buf.is_empty() => return Read::Data,
                Ok(()) => {}
            }
            if self.reads.get() >= READS_PER_TURN {
                return Read::Empty;
            }
            self.reads.set(self.reads.get() + 1);
            cipher.clear();
            cipher.reserve(READ_CHUNK);
            match sys::recv(self.fd.as_raw_fd(), &mut cipher) {
                Ok(Io::Done(0)) | Err(_) => return Read::Closed,
                Ok(Io::WouldBlock) => return Read::Empty,
                Ok(Io::Done(_)) => {}
            }
            let mut rest = &cipher[..];
            while !rest.is_empty() {
                if tls.read_tls(&mut rest).is_err() {
                    return Read::Closed;
                }
                if let Err(e) = tls.process_new_packets() {
                    self.tls_error = Some(e);
                    // The alert rustls queued goes out before the close.
                    self.pump();
                    let _ = self.flush_bytes();
                    return Read::Closed;
                }
                if drain_plain(tls, buf).is_err() {
                    return Read::Closed;
                }
            }
        }
    }

    /// Moves the records rustls has to send into `out`.
    fn pump(&mut self) {
        let Some(tls) = self.tls.as_mut() else { return };
        if self.sent >= self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
        while tls.wants_write() {
            if tls.write_tls(&mut self.out).is_err() {
                break;
            }
        }
    }

    /// True while bytes wait for the socket.
    pub(super) fn pending(&self) -> bool {
        self.sent < self.out.len() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Queues `bytes` and writes what the socket takes; false when it failed.
    pub(super) fn write(&mut self, bytes: Vec<u8>) -> bool {
        if let Some(tls) = self.tls.as_mut() {
            // No buffer limit: rustls takes it all (before the handshake
            // ends too, sent once it has).
            if tls.writer().write_all(&bytes).is_err() {
                return false;
            }
        } else if self.sent < self.out.len() {
            self.out.extend_from_slice(&bytes);
        } else {
            self.out = bytes;
            self.sent = 0;
        }
        self.flush()
    }

    /// Writes what waits; false when the socket failed.
    pub(super) fn flush(&mut self) -> bool {
        self.pump();
        self.flush_bytes()
    }

    fn flush_bytes(&mut self) -> bool {
        while self.sent < self.out.len() {
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

/// Moves the plaintext rustls holds into `buf`; `Err` once the peer has
/// closed (after what came before the close is taken) or the stream broke.
fn drain_plain(tls: &mut rustls::Connection, buf: &mut Vec<u8>) -> Result<(), ()> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match tls.reader().read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(()),
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(_) => return Err(()),
        }
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

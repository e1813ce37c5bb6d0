//! TLS under the session (`tls.cert_file`): the driver deciphers what the
//! socket brings before the session sees it, and enciphers what the
//! session queued before the socket gets it, with rustls' sans-IO
//! `ServerConnection`. The session never knows: it still speaks the
//! WebSocket or length-prefixed protocol on plaintext.
//!
//! A connection's TLS state lives in this shard's table, keyed like the
//! slab, and only for TLS connections (a plaintext node pays nothing). The
//! plaintext rustls holds for sending is bounded by the session's send
//! queue cap, so the slow-consumer rule still holds.
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::RawFd;

use rustls::ServerConnection;

use super::tables::ConnKey;
use super::Shard;
use crate::sys::{self, Io};

/// The TLS connections of a shard.
#[derive(Default)]
pub(super) struct Tls {
    conns: HashMap<ConnKey, Box<ServerConnection>>,
}

/// `io::Write` on a non-blocking socket (EAGAIN is `WouldBlock`).
struct Socket(RawFd);

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match sys::send(self.0, buf)? {
            Io::Done(n) => Ok(n),
            Io::WouldBlock => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What writing a TLS connection came to.
pub(super) enum Flushed {
    /// Everything is out.
    Done,
    /// The socket is full: wait for EPOLLOUT.
    Blocked,
    /// The peer is gone, or TLS failed.
    Failed,
}

impl Shard {
    /// True when the connection at `key` speaks TLS.
    pub(super) fn is_tls(&self, key: ConnKey) -> bool {
        self.tls.borrow().conns.contains_key(&key)
    }

    /// A TLS connection was accepted at `key`.
    pub(super) fn tls_accept(&self, key: ConnKey) -> Result<(), rustls::Error> {
        if let Some(cfg) = &self.node.tls {
            let mut conn = ServerConnection::new(cfg.get())?;
            conn.set_buffer_limit(Some(self.env.limits.send_queue_bytes));
            self.tls.borrow_mut().conns.insert(key, Box::new(conn));
        }
        Ok(())
    }

    /// Forgets the connection at `key`.
    pub(super) fn tls_forget(&self, key: ConnKey) {
        self.tls.borrow_mut().conns.remove(&key);
    }

    /// Deciphers `cipher` (bytes read from the socket) into `plain`; true
    /// when rustls has records to send (the handshake): flush the
    /// connection. `Err` when TLS failed (the alert is queued): close.
    pub(super) fn tls_input(
        &self,
        key: ConnKey,
        mut cipher: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<bool, rustls::Error> {
        let mut tls = self.tls.borrow_mut();
        let Some(conn) = tls.conns.get_mut(&key) else {
            return Ok(false);
        };
        while !cipher.is_empty() {
            match conn.read_tls(&mut cipher) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => break,
            }
            let state = conn.process_new_packets()?;
            let want = state.plaintext_bytes_to_read();
            if want > 0 {
                let start = plain.len();
                plain.resize(start + want, 0);
                let got = conn.reader().read(&mut plain[start..]).unwrap_or(0);
                plain.truncate(start + got);
            }
        }
        Ok(conn.wants_write())
    }

    /// Moves the session's output into rustls and writes the records.
    /// `take` is given the plaintext and returns how much it took (the
    /// session's `transmitted`); `fin` asks for a close_notify first.
    pub(super) fn tls_flush(
        &self,
        key: ConnKey,
        fd: RawFd,
        out: &[u8],
        fin: bool,
        sent: &mut usize,
    ) -> Flushed {
        let mut tls = self.tls.borrow_mut();
        let Some(conn) = tls.conns.get_mut(&key) else {
            return Flushed::Done;
        };
        let mut rest = out;
        loop {
            if !rest.is_empty() {
                match conn.writer().write(rest) {
                    Ok(n) => {
                        *sent += n;
                        rest = &rest[n..];
                    }
                    Err(_) => return Flushed::Failed,
                }
            }
            if rest.is_empty() && fin {
                conn.send_close_notify();
            }
            while conn.wants_write() {
                match conn.write_tls(&mut Socket(fd)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flushed::Blocked,
                    Err(_) => return Flushed::Failed,
                }
            }
            if rest.is_empty() {
                return Flushed::Done;
            }
        }
    }
}

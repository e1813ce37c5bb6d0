//! TLS under the session (`tls.cert_file`): the driver deciphers what the
//! socket brings before the session sees it, and enciphers what the
//! session queued before the socket gets it, with rustls' unbuffered
//! sans-IO `UnbufferedServerConnection`. The session never knows: it still
//! speaks the WebSocket or length-prefixed protocol on plaintext.
//!
//! A connection's TLS state lives in this shard's table, keyed like the
//! slab, and only for TLS connections (a plaintext node pays nothing). The
//! buffers are ours, not rustls': ciphertext of an incomplete record, and
//! records the socket has not taken yet, each held only while there is
//! some, so an idle TLS connection holds no buffer (as an idle plaintext
//! one holds none). Plaintext is enciphered a record at a time and only
//! while the socket takes it, so what waits stays in the session's send
//! queue and the slow-consumer rule still holds.
use std::collections::HashMap;
use std::os::fd::RawFd;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

use super::Shard;
use crate::router::tables::ConnKey;
use crate::sys::{self, Io};

/// Plaintext enciphered per step: one full TLS record.
const RECORD: usize = 16 * 1024;

/// The TLS connections of a shard.
#[derive(Default)]
pub(super) struct Tls {
    conns: HashMap<ConnKey, Box<Conn>>,
}

/// One connection's TLS state and the bytes it holds between calls.
pub(super) struct Conn {
    tls: UnbufferedServerConnection,
    /// Ciphertext of an incomplete record (empty, unallocated, while idle).
    pub(super) incoming: Vec<u8>,
    /// Records not yet taken by the socket, from `sent` on (unallocated
    /// while idle).
    pub(super) outgoing: Vec<u8>,
    pub(super) sent: usize,
    /// A close_notify is enciphered.
    pub(super) closing: bool,
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

/// Appends what `write` puts in a buffer of the size it asks for.
fn append<E>(
    out: &mut Vec<u8>,
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    needs: impl Fn(&E) -> Option<usize>,
) -> Result<(), E> {
    let start = out.len();
    out.resize(start + guess, 0);
    let r = match write(&mut out[start..]) {
        Err(e) => match needs(&e) {
            Some(size) => {
                out.resize(start + size, 0);
                write(&mut out[start..])
            }
            None => Err(e),
        },
        ok => ok,
    };
    out.truncate(start + *r.as_ref().unwrap_or(&0));
    r.map(|_| ())
}

fn encode_needs(e: &EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

fn encrypt_needs(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

impl Conn {
    /// A connection that has seen no bytes yet.
    pub(super) fn new(tls: UnbufferedServerConnection) -> Conn {
        Conn {
            tls,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            closing: false,
        }
    }

    /// Runs the records in `incoming` through rustls: application data to
    /// `plain`, handshake records to `outgoing`, until it needs more bytes.
    pub(super) fn input(&mut self, plain: &mut Vec<u8>) -> Result<(), rustls::Error> {
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.tls.process_tls_records(&mut self.incoming);
            let mut progress = discard > 0;
            match state? {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        let rec = rec?;
                        discard += rec.discard;
                        plain.extend_from_slice(rec.payload);
                    }
                    progress = true;
                }
                ConnectionState::ReadEarlyData(mut r) => {
                    while let Some(rec) = r.next_record() {
                        let rec = rec?;
                        discard += rec.discard;
                        plain.extend_from_slice(rec.payload);
                    }
                    progress = true;
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    let _ = append(&mut self.outgoing, 1024, |b| e.encode(b), encode_needs);
                    progress = true;
                }
                ConnectionState::TransmitTlsData(t) => {
                    // The records are in `outgoing`; they go, in order,
                    // before anything enciphered after them.
                    t.done();
                    progress = true;
                }
                ConnectionState::PeerClosed => progress = true,
                _ => {}
            }
            self.incoming.drain(..discard.min(self.incoming.len()));
            if !progress {
                if self.incoming.is_empty() {
                    // Idle: hold no buffer.
                    self.incoming = Vec::new();
                }
                return Ok(());
            }
        }
    }

    /// Collects what rustls queued after a failure (its alert).
    pub(super) fn alert(&mut self) {
        for _ in 0..4 {
            let UnbufferedStatus { state, .. } = self.tls.process_tls_records(&mut []);
            match state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    let _ = append(&mut self.outgoing, 1024, |b| e.encode(b), encode_needs);
                }
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                _ => return,
            }
        }
    }

    /// Enciphers the next record of `rest` (or, with nothing left and
    /// `fin`, a close_notify) into `outgoing`; returns the plaintext bytes
    /// taken, or `None` when nothing can be enciphered now.
    pub(super) fn encipher(&mut self, rest: &[u8], fin: bool) -> Result<Option<usize>, ()> {
        let UnbufferedStatus { discard, state } = self.tls.process_tls_records(&mut self.incoming);
        let taken = match state.map_err(|_| ())? {
            ConnectionState::WriteTraffic(mut w) if !rest.is_empty() => {
                let chunk = &rest[..rest.len().min(RECORD)];
                let guess = chunk.len() + 64;
                append(
                    &mut self.outgoing,
                    guess,
                    |b| w.encrypt(chunk, b),
                    encrypt_needs,
                )
                .map_err(|_| ())?;
                Some(chunk.len())
            }
            ConnectionState::WriteTraffic(mut w) if fin && !self.closing => {
                append(
                    &mut self.outgoing,
                    64,
                    |b| w.queue_close_notify(b),
                    encrypt_needs,
                )
                .map_err(|_| ())?;
                self.closing = true;
                Some(0)
            }
            ConnectionState::EncodeTlsData(mut e) => {
                let _ = append(&mut self.outgoing, 1024, |b| e.encode(b), encode_needs);
                Some(0)
            }
            ConnectionState::TransmitTlsData(t) => {
                t.done();
                Some(0)
            }
            ConnectionState::PeerClosed => Some(0),
            _ => None,
        };
        self.incoming.drain(..discard.min(self.incoming.len()));
        Ok(taken)
    }

    /// Sends `outgoing` until the socket is full; frees it once all out.
    fn transmit(&mut self, fd: RawFd) -> Flushed {
        while self.sent < self.outgoing.len() {
            match sys::send(fd, &self.outgoing[self.sent..]) {
                Ok(Io::Done(n)) => self.sent += n,
                Ok(Io::WouldBlock) => return Flushed::Blocked,
                Err(_) => return Flushed::Failed,
            }
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Flushed::Done
    }
}

impl Shard {
    /// True when the connection at `key` speaks TLS.
    pub(super) fn is_tls(&self, key: ConnKey) -> bool {
        self.tls.borrow().conns.contains_key(&key)
    }

    /// A TLS connection was accepted at `key`.
    pub(super) fn tls_accept(&self, key: ConnKey) -> Result<(), rustls::Error> {
        let cfg = self.tls_config.borrow().clone();
        if let Some(cfg) = cfg {
            let conn = Conn::new(UnbufferedServerConnection::new(cfg)?);
            self.tls.borrow_mut().conns.insert(key, Box::new(conn));
        }
        Ok(())
    }

    /// Forgets the connection at `key`.
    pub(super) fn tls_forget(&self, key: ConnKey) {
        self.tls.borrow_mut().conns.remove(&key);
    }

    /// Deciphers `cipher` (bytes read from the socket) into `plain`; true
    /// when there are records to send (the handshake): flush the
    /// connection. `Err` when TLS failed (the alert is queued): close.
    pub(super) fn tls_input(
        &self,
        key: ConnKey,
        cipher: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<bool, rustls::Error> {
        let mut tls = self.tls.borrow_mut();
        let Some(conn) = tls.conns.get_mut(&key) else {
            return Ok(false);
        };
        conn.incoming.extend_from_slice(cipher);
        let r = conn.input(plain);
        if r.is_err() {
            conn.incoming = Vec::new();
            conn.alert();
        }
        r.map(|()| !conn.outgoing.is_empty())
    }

    /// Enciphers the session's output and writes the records. `sent` is
    /// set to the plaintext bytes taken (the session's `transmitted`);
    /// `fin` asks for a close_notify after them.
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
        loop {
            match conn.transmit(fd) {
                Flushed::Done => {}
                other => return other,
            }
            let rest = &out[*sent..];
            if rest.is_empty() && (!fin || conn.closing) {
                return Flushed::Done;
            }
            match conn.encipher(rest, fin) {
                Ok(Some(n)) => *sent += n,
                // Not yet (the handshake is not done): the session keeps it.
                Ok(None) => return Flushed::Done,
                Err(()) => return Flushed::Failed,
            }
        }
    }
}

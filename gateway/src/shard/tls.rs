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
//!
//! A connection an upgrade moves (`tls_move`) leaves rustls: its keys go to
//! the record layer `crate::tls13`, in the old process first (so an abort
//! serves it on the same way) and then in the new one.
use std::collections::HashMap;
use std::os::fd::RawFd;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

use super::Shard;
use crate::router::tables::ConnKey;
use crate::sys::{self, Io};
use crate::tls13::RecordLayer;

/// Plaintext enciphered per step: one full TLS record.
const RECORD: usize = 16 * 1024;

/// The TLS connections of a shard.
#[derive(Default)]
pub(super) struct Tls {
    pub(super) conns: HashMap<ConnKey, Box<Conn>>,
}

/// Who protects a connection's records.
// Each `Conn` is boxed whole in the table: the variants' sizes cost one
// allocation per connection either way.
#[allow(clippy::large_enum_variant)]
pub(super) enum Engine {
    /// rustls, from the handshake on.
    Rustls(UnbufferedServerConnection),
    /// The record layer, once the keys left rustls for an upgrade.
    Moved(Box<RecordLayer>),
    /// Neither: the keys could not be taken out (the connection closes).
    Gone,
}

/// Why a connection's TLS failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    /// rustls refused (the handshake, a record).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The record layer of a moved connection refused.
    #[error("{0}")]
    Record(#[from] crate::tls13::Error),
    /// The keys could not be taken out of rustls.
    #[error("TLS state lost")]
    Gone,
}

/// One connection's TLS state and the bytes it holds between calls.
pub(super) struct Conn {
    pub(super) engine: Engine,
    /// Ciphertext of an incomplete record (empty, unallocated, while idle).
    pub(super) incoming: Vec<u8>,
    /// Records not yet taken by the socket, from `sent` on (unallocated
    /// while idle).
    pub(super) outgoing: Vec<u8>,
    pub(super) sent: usize,
    /// A close_notify is enciphered.
    pub(super) closing: bool,
    /// TLS failed: nothing more goes through rustls (it would parse its
    /// input again), only the alert already collected is written.
    pub(super) failed: bool,
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
            engine: Engine::Rustls(tls),
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            closing: false,
            failed: false,
        }
    }

    /// Runs the records in `incoming` through rustls: application data to
    /// `plain`, handshake records to `outgoing`, until it needs more bytes.
    pub(super) fn input(&mut self, plain: &mut Vec<u8>) -> Result<(), Failure> {
        let tls = match &mut self.engine {
            Engine::Rustls(tls) => tls,
            Engine::Moved(record) => {
                return match record.open(&mut self.incoming, plain) {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        // A fatal alert, or a close_notify for a KeyUpdate
                        // (see `tls13`); nothing is sent after it, and the
                        // socket closes once it is out.
                        record.seal_error(e, &mut self.outgoing);
                        self.closing = true;
                        self.incoming = Vec::new();
                        Err(e.into())
                    }
                };
            }
            Engine::Gone => return Err(Failure::Gone),
        };
        loop {
            let UnbufferedStatus { mut discard, state } =
                tls.process_tls_records(&mut self.incoming);
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

    /// Collects the records rustls has queued (a failure's alert, session
    /// tickets) into `outgoing`.
    ///
    /// Only while it has some (`wants_write`): each such call hands out a
    /// queued record before looking at input, so rustls never parses
    /// anything here. (Asked for more with an empty buffer while inside a
    /// partial handshake message, rustls would slice past its end; handed
    /// the bytes that failed, it would fail on them again.)
    pub(super) fn alert(&mut self) {
        let Engine::Rustls(tls) = &mut self.engine else {
            return;
        };
        while tls.wants_write() {
            let UnbufferedStatus { state, .. } = tls.process_tls_records(&mut []);
            match state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    let _ = append(&mut self.outgoing, 1024, |b| e.encode(b), encode_needs);
                }
                _ => return,
            }
        }
    }

    /// Enciphers the next record of `rest` (or, with nothing left and
    /// `fin`, a close_notify) into `outgoing`; returns the plaintext bytes
    /// taken, or `None` when nothing can be enciphered now.
    pub(super) fn encipher(&mut self, rest: &[u8], fin: bool) -> Result<Option<usize>, ()> {
        if self.failed {
            return Err(());
        }
        let tls = match &mut self.engine {
            Engine::Rustls(tls) => tls,
            Engine::Moved(record) => {
                if !rest.is_empty() {
                    // After an alert (ours or an error's) this fails: the
                    // socket closes once the alert is out.
                    let chunk = &rest[..rest.len().min(RECORD)];
                    if let Err(e) = record.seal(chunk, &mut self.outgoing) {
                        record.seal_error(e, &mut self.outgoing);
                        self.closing = true;
                        return Err(());
                    }
                    return Ok(Some(chunk.len()));
                }
                if fin && !self.closing {
                    record.seal_alert(0, &mut self.outgoing).map_err(|_| ())?;
                    self.closing = true;
                    return Ok(Some(0));
                }
                return Ok(None);
            }
            Engine::Gone => return Err(()),
        };
        let UnbufferedStatus { discard, state } = tls.process_tls_records(&mut self.incoming);
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
    ) -> Result<bool, Failure> {
        let mut tls = self.tls.borrow_mut();
        let Some(conn) = tls.conns.get_mut(&key) else {
            return Ok(false);
        };
        conn.incoming.extend_from_slice(cipher);
        let r = conn.input(plain);
        if r.is_err() {
            conn.alert();
            conn.incoming = Vec::new();
            conn.failed = true;
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

//! A TLS 1.3 record layer (RFC 8446 section 5) for connections whose
//! handshake rustls did: what lets a TLS connection move to an upgrade's
//! new process. The old process takes the traffic keys and sequence
//! numbers out of rustls (`dangerous_into_kernel_connection`), and from
//! then on both processes protect and open the connection's records here,
//! with `ring`'s AEADs, for the three TLS 1.3 suites rustls offers.
//!
//! Sans-IO: bytes in, bytes out. What it does not do, and what happens
//! then:
//! - A `KeyUpdate` from the client (RFC 8446 4.6.3): the traffic secret it
//!   derives from is not exported, so the connection cannot follow it; it
//!   is closed with a `close_notify` (`Error::KeyUpdate`), and the client
//!   reconnects and resumes. Clients rarely send one (rustls after 2^24
//!   records of AES-GCM; browsers not in a chat's lifetime).
//! - Any other handshake message, a change_cipher_spec or an unknown
//!   content type after the handshake: `unexpected_message`.
//! - A record that does not open: `bad_record_mac`; one longer than
//!   2^14 + 256 bytes: `record_overflow` (both fatal, as the RFC says).
//!
//! Checked against rustls itself, both ways and for each suite
//! (`tls13_tests.rs`), and fuzzed (`fuzz_targets/tls13_records.rs`).
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

/// Largest plaintext of one record.
pub const MAX_PLAIN: usize = 1 << 14;
/// Largest ciphertext of one record (plaintext, content type, tag, padding).
const MAX_CIPHER: usize = MAX_PLAIN + 256;
const HEADER: usize = 5;
const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const KEY_UPDATE: u8 = 24;
const CLOSE_NOTIFY: u8 = 0;
const USER_CANCELED: u8 = 90;
/// Records one AES-GCM key may protect (RFC 8446 5.5: 2^24.5; rustls
/// updates its keys at 2^24). A moved connection cannot update its keys,
/// so it closes there (days of traffic at chat rates).
const GCM_RECORDS: u64 = 1 << 24;

/// The AEAD of a TLS 1.3 cipher suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// TLS_AES_128_GCM_SHA256.
    Aes128Gcm = 1,
    /// TLS_AES_256_GCM_SHA384.
    Aes256Gcm = 2,
    /// TLS_CHACHA20_POLY1305_SHA256.
    Chacha20Poly1305 = 3,
}

impl Suite {
    /// The suite of its number (`Suite as u32`), as a handover carries it.
    pub fn from_u32(n: u32) -> Option<Suite> {
        match n {
            1 => Some(Suite::Aes128Gcm),
            2 => Some(Suite::Aes256Gcm),
            3 => Some(Suite::Chacha20Poly1305),
            _ => None,
        }
    }

    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Suite::Aes128Gcm => &aead::AES_128_GCM,
            Suite::Aes256Gcm => &aead::AES_256_GCM,
            Suite::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// One direction's keys and the sequence number of its next record.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    /// The AEAD.
    pub suite: Suite,
    /// The traffic key.
    pub key: Vec<u8>,
    /// The traffic IV (12 bytes).
    pub iv: [u8; 12],
    /// The next record's sequence number.
    pub seq: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("suite", &self.suite)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// The keys rustls hands out (`dangerous_into_kernel_connection`) with the
/// sequence number of the next record; `None` for an AEAD this layer does
/// not speak (none in rustls' TLS 1.3 suites today).
pub fn from_rustls(seq: u64, secrets: rustls::ConnectionTrafficSecrets) -> Option<Keys> {
    use rustls::ConnectionTrafficSecrets as S;
    let (suite, key, iv) = match secrets {
        S::Aes128Gcm { key, iv } => (Suite::Aes128Gcm, key, iv),
        S::Aes256Gcm { key, iv } => (Suite::Aes256Gcm, key, iv),
        S::Chacha20Poly1305 { key, iv } => (Suite::Chacha20Poly1305, key, iv),
        _ => return None,
    };
    Some(Keys {
        suite,
        key: key.as_ref().to_vec(),
        iv: iv.as_ref().try_into().ok()?,
        seq,
    })
}

/// Why the connection's records cannot go on; each but `KeyUpdate` is a
/// fatal alert to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A record did not open (alert 20, bad_record_mac).
    #[error("a record did not open (bad_record_mac)")]
    BadRecord,
    /// A record too long (alert 22, record_overflow).
    #[error("a record too long (record_overflow)")]
    Overflow,
    /// A malformed alert (alert 50, decode_error).
    #[error("a malformed alert (decode_error)")]
    Decode,
    /// Nothing more may be sent: an alert went out.
    #[error("the sending side is closed")]
    Closed,
    /// Something TLS 1.3 forbids here (alert 10, unexpected_message).
    #[error("an unexpected message (content type {0})")]
    Unexpected(u8),
    /// The peer sent a fatal alert.
    #[error("the peer sent alert {0}")]
    PeerAlert(u8),
    /// The client updated its keys: not followed after a move (see the
    /// module header); close with a close_notify.
    #[error("the client sent a KeyUpdate, which a moved connection cannot follow")]
    KeyUpdate,
    /// A key of the wrong length (a handover's corrupt state).
    #[error("a key of the wrong length")]
    BadKey,
    /// The key's record limit (2^24 for AES-GCM, 2^64 otherwise).
    #[error("the traffic key is used up")]
    Exhausted,
}

impl Error {
    /// The alert description to send, if any.
    pub fn alert(self) -> Option<u8> {
        match self {
            Error::BadRecord => Some(20),
            Error::Overflow => Some(22),
            Error::Unexpected(_) => Some(10),
            Error::Decode => Some(50),
            // A key used up: say goodbye, it is no one's fault.
            Error::Exhausted => Some(0),
            Error::PeerAlert(_) | Error::KeyUpdate | Error::BadKey | Error::Closed => None,
        }
    }
}

struct Direction {
    keys: Keys,
    aead: LessSafeKey,
}

impl Direction {
    fn new(keys: Keys) -> Result<Direction, Error> {
        let unbound =
            UnboundKey::new(keys.suite.algorithm(), &keys.key).map_err(|_| Error::BadKey)?;
        Ok(Direction {
            keys,
            aead: LessSafeKey::new(unbound),
        })
    }

    /// The nonce of the next record (RFC 8446 5.3), and the count moved on.
    fn next_nonce(&mut self) -> Result<Nonce, Error> {
        let seq = self.keys.seq;
        self.keys.seq = seq.checked_add(1).ok_or(Error::Exhausted)?;
        let mut nonce = self.keys.iv;
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        Ok(Nonce::assume_unique_for_key(nonce))
    }
}

/// Both directions of a connection's records.
pub struct RecordLayer {
    rx: Direction,
    tx: Direction,
    /// A close_notify came: nothing after it is read.
    closed: bool,
    /// An alert went out: nothing more is sent (RFC 8446 6.1, 6.2).
    tx_closed: bool,
}

impl RecordLayer {
    /// The layer with `rx` (the client's records) and `tx` (ours).
    pub fn new(rx: Keys, tx: Keys) -> Result<RecordLayer, Error> {
        Ok(RecordLayer {
            rx: Direction::new(rx)?,
            tx: Direction::new(tx)?,
            closed: false,
            tx_closed: false,
        })
    }

    /// The keys as they stand (what a handover carries): `(rx, tx)`.
    pub fn keys(&self) -> (&Keys, &Keys) {
        (&self.rx.keys, &self.tx.keys)
    }

    /// Opens every whole record at the front of `incoming` (and removes
    /// it), appending application data to `plain`. `Ok(true)` once the
    /// client has sent close_notify (what follows it is ignored).
    pub fn open(&mut self, incoming: &mut Vec<u8>, plain: &mut Vec<u8>) -> Result<bool, Error> {
        let mut at = 0;
        let result = loop {
            if self.closed {
                at = incoming.len();
                break Ok(true);
            }
            let rest = &mut incoming[at..];
            if rest.len() < HEADER {
                break Ok(false);
            }
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            if len > MAX_CIPHER {
                break Err(Error::Overflow);
            }
            if rest.len() < HEADER + len {
                break Ok(false);
            }
            if rest[0] != APPLICATION_DATA {
                // Only protected records after the handshake.
                break Err(Error::Unexpected(rest[0]));
            }
            let (header, body) = rest.split_at_mut(HEADER);
            let body = &mut body[..len];
            at += HEADER + len;
            let nonce = match self.rx.next_nonce() {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            let Ok(inner) = self
                .rx
                .aead
                .open_in_place(nonce, Aad::from(&header[..]), body)
            else {
                break Err(Error::BadRecord);
            };
            // TLSInnerPlaintext, padding included, is at most 2^14 + 1
            // bytes (RFC 8446 5.4).
            if inner.len() > MAX_PLAIN + 1 {
                break Err(Error::Overflow);
            }
            // The content type is the last non-zero byte; zeros after it pad.
            let Some(end) = inner.iter().rposition(|b| *b != 0) else {
                break Err(Error::Unexpected(0));
            };
            let (content, kind) = (&inner[..end], inner[end]);
            match kind {
                APPLICATION_DATA => plain.extend_from_slice(content),
                // close_notify ends the stream; user_canceled precedes one
                // (closure alerts, RFC 8446 6.1); any other alert is an
                // error whatever its level (6.2).
                ALERT if content.len() != 2 => break Err(Error::Decode),
                ALERT if content[1] == CLOSE_NOTIFY => self.closed = true,
                ALERT if content[1] == USER_CANCELED => {}
                ALERT => break Err(Error::PeerAlert(content[1])),
                HANDSHAKE if content.first() == Some(&KEY_UPDATE) => break Err(Error::KeyUpdate),
                other => break Err(Error::Unexpected(other)),
            }
        };
        incoming.drain(..at.min(incoming.len()));
        result
    }

    /// Protects `data` as application-data records (at most [`MAX_PLAIN`]
    /// bytes each), appended to `out`.
    pub fn seal(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        for chunk in data.chunks(MAX_PLAIN) {
            self.seal_record(APPLICATION_DATA, chunk, out)?;
        }
        Ok(())
    }

    /// Protects an alert: `close_notify` (0, a warning) or a fatal one;
    /// nothing is sent after it.
    pub fn seal_alert(&mut self, description: u8, out: &mut Vec<u8>) -> Result<(), Error> {
        let level = if description == CLOSE_NOTIFY { 1 } else { 2 };
        let sealed = self.seal_record(ALERT, &[level, description], out);
        self.tx_closed = true;
        sealed
    }

    /// The alert to send for `e` (a close_notify for a `KeyUpdate`, which
    /// is no one's fault), sealed into `out`; nothing when `e` needs none.
    pub fn seal_error(&mut self, e: Error, out: &mut Vec<u8>) {
        let alert = match e {
            Error::KeyUpdate => Some(CLOSE_NOTIFY),
            e => e.alert(),
        };
        match alert {
            Some(a) if !self.tx_closed => {
                let _ = self.seal_alert(a, out);
            }
            _ => self.tx_closed = true,
        }
    }

    fn seal_record(&mut self, kind: u8, content: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if self.tx_closed {
            return Err(Error::Closed);
        }
        let gcm = self.tx.keys.suite != Suite::Chacha20Poly1305;
        if gcm && kind == APPLICATION_DATA && self.tx.keys.seq >= GCM_RECORDS {
            return Err(Error::Exhausted);
        }
        let tag = self.tx.aead.algorithm().tag_len();
        let len = content.len() + 1 + tag;
        let start = out.len();
        out.extend_from_slice(&[APPLICATION_DATA, 3, 3]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(content);
        out.push(kind);
        let nonce = match self.tx.next_nonce() {
            Ok(n) => n,
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        let (header, body) = out[start..].split_at_mut(HEADER);
        let header: [u8; HEADER] = header.try_into().expect("a header is 5 bytes");
        match self
            .tx
            .aead
            .seal_in_place_separate_tag(nonce, Aad::from(header), body)
        {
            Ok(t) => {
                out.extend_from_slice(t.as_ref());
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(Error::BadKey)
            }
        }
    }
}

#[cfg(test)]
#[path = "tls13_tests.rs"]
mod tests;

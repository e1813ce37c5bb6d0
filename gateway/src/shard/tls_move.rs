//! TLS connections across an upgrade (`handover`): a TLS 1.3 connection
//! whose handshake is done moves like a plain one, with its record state.
//!
//! At the export the old shard takes the connection's traffic keys and
//! sequence numbers out of rustls (`dangerous_into_kernel_connection`) and
//! serves it from then on with the record layer `crate::tls13`, so an
//! abort changes nothing for it. The handover carries the keys, the
//! sequence numbers, the ciphertext read but not yet opened (at most one
//! partial record: rustls opened every whole one) and the records not yet
//! written; the new shard registers the connection with the same record
//! layer and writes those records before anything else.
//!
//! What does not move, and is drained (go-away `DRAINING`) as before: TLS
//! 1.2 connections, connections still in their handshake, closing ones.
use rustls::server::UnbufferedServerConnection;

use super::tls::{Conn, Engine};
use super::Shard;
use crate::router::tables::ConnKey;
use crate::tls13::{self, Keys, RecordLayer, Suite};

/// One moved TLS connection's record state (in `handover::ConnBatch`).
/// Its `Debug` leaves the keys out.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(super) struct TlsMoved {
    /// Which session of the batch it is.
    #[prost(uint32, tag = "1")]
    pub index: u32,
    /// `tls13::Suite` as a number.
    #[prost(uint32, tag = "2")]
    pub suite: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub rx_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub rx_iv: Vec<u8>,
    #[prost(uint64, tag = "5")]
    pub rx_seq: u64,
    #[prost(bytes = "vec", tag = "6")]
    pub tx_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    pub tx_iv: Vec<u8>,
    #[prost(uint64, tag = "8")]
    pub tx_seq: u64,
    /// Ciphertext read and not yet opened.
    #[prost(bytes = "vec", tag = "9")]
    pub incoming: Vec<u8>,
    /// Records not yet written to the socket.
    #[prost(bytes = "vec", tag = "10")]
    pub outgoing: Vec<u8>,
}

impl std::fmt::Debug for TlsMoved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMoved")
            .field("index", &self.index)
            .field("suite", &self.suite)
            .field("rx_seq", &self.rx_seq)
            .field("tx_seq", &self.tx_seq)
            .finish_non_exhaustive()
    }
}

/// The record layer of rustls' connection, its keys taken out.
fn take_out(tls: UnbufferedServerConnection) -> Result<RecordLayer, String> {
    let (secrets, _kernel) = tls
        .dangerous_into_kernel_connection()
        .map_err(|e| e.to_string())?;
    let rx = tls13::from_rustls(secrets.rx.0, secrets.rx.1).ok_or("an AEAD not covered")?;
    let tx = tls13::from_rustls(secrets.tx.0, secrets.tx.1).ok_or("an AEAD not covered")?;
    RecordLayer::new(rx, tx).map_err(|e| e.to_string())
}

/// Takes `conn`'s keys out of rustls into the record layer, if it can
/// move: `Ok(true)` once it is served by the record layer, `Ok(false)` when
/// it cannot move (TLS 1.2, mid-handshake, closing: rustls keeps it), `Err`
/// when the keys left rustls but cannot serve (the connection is lost: it
/// fails at its next read or write and closes). Call it only for a session
/// that has sent something since its handshake (authenticated): see the
/// key-update check.
pub(super) fn move_out(conn: &mut Conn) -> Result<bool, String> {
    if conn.closing || conn.failed {
        return Ok(false);
    }
    match &conn.engine {
        Engine::Moved(_) => return Ok(true),
        Engine::Gone => return Ok(false),
        Engine::Rustls(t) => {
            let v13 = t.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
            if t.is_handshaking() || !v13 {
                return Ok(false);
            }
        }
    }
    // What rustls still has to say (a session ticket) goes to the records
    // not yet written, before its keys leave it.
    conn.alert();
    if holds_a_whole_record(&conn.incoming) {
        // rustls opened every whole record it could: one left is one it is
        // in the middle of (a handshake message spanning records), which
        // the record layer could not open again. It stays; drained.
        return Ok(false);
    }
    let Engine::Rustls(t) = std::mem::replace(&mut conn.engine, Engine::Gone) else {
        return Ok(false);
    };
    let record = take_out(t)?;
    if record.keys().1.seq == 0 {
        // Nothing sent under these keys yet, though the session has spoken:
        // rustls switched them for a client's KeyUpdate and holds its own
        // KeyUpdate until the next write, which would be lost here.
        return Err("a key update of rustls' own was still to be sent".into());
    }
    conn.engine = Engine::Moved(Box::new(record));
    Ok(true)
}

/// True when `incoming` starts with a whole TLS record.
fn holds_a_whole_record(incoming: &[u8]) -> bool {
    incoming.len() >= 5
        && incoming.len() >= 5 + usize::from(u16::from_be_bytes([incoming[3], incoming[4]]))
}

impl Shard {
    /// True when the connection at `key` can move: plaintext, or TLS 1.3
    /// past its handshake (its keys leave rustls here if they had not).
    /// False for TLS that cannot (drained instead). A connection whose
    /// keys rustls would not give up closes (logged).
    pub(super) fn tls_ready_to_move(&self, key: ConnKey) -> bool {
        let mut tls = self.tls.borrow_mut();
        let Some(conn) = tls.conns.get_mut(&key) else {
            return true;
        };
        let open = self
            .conns
            .borrow()
            .get(key)
            .is_some_and(|c| c.session().user().is_some());
        if !open {
            // Not authenticated yet: it may not have been sent a record
            // (see `move_out`); drained, it comes back.
            return false;
        }
        match move_out(conn) {
            Ok(ready) => ready,
            Err(e) => {
                tracing::warn!(
                    shard = self.id,
                    "upgrade: a TLS connection's keys stayed in rustls ({e}): it closes"
                );
                false
            }
        }
    }

    /// The record state of a moved TLS connection (`None`: plaintext).
    pub(super) fn tls_export(&self, key: ConnKey, index: u32) -> Option<TlsMoved> {
        let tls = self.tls.borrow();
        let conn = tls.conns.get(&key)?;
        let Engine::Moved(record) = &conn.engine else {
            return None;
        };
        let (rx, tx) = record.keys();
        Some(TlsMoved {
            index,
            suite: rx.suite as u32,
            rx_key: rx.key.clone(),
            rx_iv: rx.iv.to_vec(),
            rx_seq: rx.seq,
            tx_key: tx.key.clone(),
            tx_iv: tx.iv.to_vec(),
            tx_seq: tx.seq,
            incoming: conn.incoming.clone(),
            outgoing: conn.outgoing[conn.sent..].to_vec(),
        })
    }

    /// Serves the connection at `key` (just adopted) with `moved`'s records.
    pub(super) fn tls_adopt(&self, key: ConnKey, moved: TlsMoved) -> Result<(), String> {
        let suite = Suite::from_u32(moved.suite).ok_or("an unknown TLS suite")?;
        let keys = |key: Vec<u8>, iv: Vec<u8>, seq| -> Result<Keys, String> {
            let iv = iv.try_into().map_err(|_| "a TLS IV of the wrong length")?;
            Ok(Keys {
                suite,
                key,
                iv,
                seq,
            })
        };
        let rx = keys(moved.rx_key, moved.rx_iv, moved.rx_seq)?;
        let tx = keys(moved.tx_key, moved.tx_iv, moved.tx_seq)?;
        let record = RecordLayer::new(rx, tx).map_err(|e| e.to_string())?;
        let conn = Conn {
            engine: Engine::Moved(Box::new(record)),
            incoming: moved.incoming,
            outgoing: moved.outgoing,
            sent: 0,
            closing: false,
            failed: false,
        };
        self.tls.borrow_mut().conns.insert(key, Box::new(conn));
        Ok(())
    }
}

//! `ACK` and `PING`: the two control frames.
//!
//! `ACK` (`seq: u64`) is cumulative: it says every batch numbered `<= seq`
//! was received, so a lost or coalesced ack costs nothing. `PING` has an empty
//! body and is answered by an `ACK` of the acceptor's current position, which
//! keeps an idle link's liveness visible to both sides.

use super::{encode_header, BusError, Kind, Malformed, Reader, HEADER_LEN};

/// Body length of an `ACK`.
const ACK_BODY_LEN: usize = 8;

/// Decodes an `ACK` body.
pub(crate) fn load_ack(body: &[u8]) -> Result<u64, BusError> {
    let mut r = Reader::new(Kind::Ack, body);
    let seq = r.u64()?;
    r.finish()?;
    Ok(seq)
}

/// Checks a `PING` body is empty.
pub(crate) fn load_ping(body: &[u8]) -> Result<(), BusError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(BusError::Malformed {
            kind: Kind::Ping,
            what: Malformed::Trailing(body.len()),
        })
    }
}

/// Appends an `ACK` of every batch up to and including `seq`.
pub fn encode_ack(seq: u64, out: &mut Vec<u8>) {
    out.reserve(HEADER_LEN + ACK_BODY_LEN);
    encode_header(Kind::Ack, ACK_BODY_LEN, out);
    out.extend_from_slice(&seq.to_be_bytes());
}

/// Appends a `PING`.
pub fn encode_ping(out: &mut Vec<u8>) {
    encode_header(Kind::Ping, 0, out);
}

//! `AUTH`: the mutual challenge-response of a cluster with a secret.
//!
//! Body: `nonce: [u8; 16]`, `count: u8` (0..=4), then `count` proofs of 32
//! bytes (HMAC-SHA-256 values, one per secret the sender accepts: a node in
//! a secret rotation holds two). Computing and checking proofs is the
//! link's business (`relay`), not the codec's. The exchange, when the nodes
//! have a secret: the dialer sends `HELLO` then `AUTH` (its nonce, no
//! proofs); the acceptor answers `AUTH` (its nonce, its proofs); the
//! dialer checks them and sends `AUTH` (its nonce again, its proofs); the
//! acceptor checks them and only then answers `WELCOME`.

use super::{encode_header, BusError, Kind, Malformed, Reader, HEADER_LEN};

/// Length of a nonce.
pub const NONCE_LEN: usize = 16;
/// Length of one proof.
pub const PROOF_LEN: usize = 32;
/// Most proofs in one `AUTH`.
pub const MAX_PROOFS: usize = 4;

/// One side's nonce and proofs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auth<'a> {
    /// The sender's fresh nonce.
    pub nonce: &'a [u8; NONCE_LEN],
    /// The proofs, `PROOF_LEN` bytes each, concatenated (possibly none).
    pub proofs: &'a [u8],
}

impl<'a> Auth<'a> {
    /// Decodes an `AUTH` body.
    pub(crate) fn load(body: &'a [u8]) -> Result<Auth<'a>, BusError> {
        let mut r = Reader::new(Kind::Auth, body);
        let nonce: &[u8; NONCE_LEN] = r
            .bytes(NONCE_LEN)?
            .try_into()
            .map_err(|_| r.err(Malformed::Truncated))?;
        let count = usize::from(r.u8()?);
        if count > MAX_PROOFS {
            return Err(r.err(Malformed::TooManyProofs(count)));
        }
        let proofs = r.bytes(count * PROOF_LEN)?;
        r.finish()?;
        Ok(Auth { nonce, proofs })
    }

    /// The proofs one by one.
    pub fn proofs(&self) -> impl Iterator<Item = &'a [u8]> + Clone {
        self.proofs.chunks_exact(PROOF_LEN)
    }
}

/// Appends an `AUTH` frame to `out`.
///
/// # Panics
/// If `proofs` is not a whole number of proofs, or more than
/// [`MAX_PROOFS`] (a caller's bug).
pub fn encode_auth(nonce: &[u8; NONCE_LEN], proofs: &[u8], out: &mut Vec<u8>) {
    let count = proofs.len() / PROOF_LEN;
    assert!(
        proofs.len().is_multiple_of(PROOF_LEN) && count <= MAX_PROOFS,
        "AUTH takes up to {MAX_PROOFS} proofs of {PROOF_LEN} bytes"
    );
    let body_len = NONCE_LEN + 1 + proofs.len();
    out.reserve(HEADER_LEN + body_len);
    encode_header(Kind::Auth, body_len, out);
    out.extend_from_slice(nonce);
    out.push(count as u8);
    out.extend_from_slice(proofs);
}

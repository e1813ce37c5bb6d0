//! The cluster secret: what proves a peer is a node of this cluster (see
//! `proto::bus::Auth` for the exchange).
//!
//! A proof is HMAC-SHA-256 over a label naming the side that proves
//! (dialer or acceptor), both sides' fresh nonces and the dialer's `HELLO`
//! fields (node id, incarnation, shard, shards). Each side proves with
//! every secret it holds and accepts a proof made with any of them, so a
//! node in a secret rotation (the new secret and the old one) still links
//! with nodes on either. A recorded handshake is worth nothing: the other
//! side's nonce is new on every connection. Checks run in constant time
//! (`ring::hmac::verify`).

use proto::bus::{Hello, NONCE_LEN, PROOF_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The secrets a node accepts, the one it prefers first (at least 32
/// bytes each, checked by the caller's config).
#[derive(Clone)]
pub struct Secrets {
    keys: Vec<hmac::Key>,
    /// For `PartialEq`: the secrets' digests, never the secrets.
    ids: Vec<[u8; 32]>,
}

impl Secrets {
    /// The secrets, preferred first. Empty: no authentication.
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> Secrets {
        let keys = secrets
            .iter()
            .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_ref()))
            .collect();
        let ids = secrets
            .iter()
            .map(|s| {
                let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"id"), s.as_ref());
                tag.as_ref().try_into().unwrap_or([0; 32])
            })
            .collect();
        Secrets { keys, ids }
    }

    /// How many secrets are held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} held)", self.keys.len())
    }
}

impl PartialEq for Secrets {
    fn eq(&self, other: &Secrets) -> bool {
        self.ids == other.ids
    }
}

impl Eq for Secrets {}

/// Which side proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Dialer,
    Acceptor,
}

/// A fresh nonce.
pub(crate) fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    // The system's generator failing is not something to limp on with a
    // predictable nonce.
    SystemRandom::new()
        .fill(&mut n)
        .expect("the system random generator failed");
    n
}

/// What a proof covers.
fn message(role: Role, dialer: &[u8], acceptor: &[u8], hello: &Hello<'_>) -> Vec<u8> {
    let label: &[u8] = match role {
        Role::Dialer => b"im-gateway bus v1 dialer",
        Role::Acceptor => b"im-gateway bus v1 acceptor",
    };
    let mut m = Vec::with_capacity(96 + hello.node_id.len());
    m.extend_from_slice(label);
    m.extend_from_slice(dialer);
    m.extend_from_slice(acceptor);
    m.push(hello.node_id.len() as u8);
    m.extend_from_slice(hello.node_id.as_bytes());
    m.extend_from_slice(&hello.incarnation.to_be_bytes());
    m.extend_from_slice(&hello.shard.to_be_bytes());
    m.extend_from_slice(&hello.shards.to_be_bytes());
    m
}

/// `role`'s proofs, one per secret, concatenated.
pub(crate) fn prove(
    secrets: &Secrets,
    role: Role,
    dialer: &[u8],
    acceptor: &[u8],
    hello: &Hello<'_>,
) -> Vec<u8> {
    let m = message(role, dialer, acceptor, hello);
    let mut out = Vec::with_capacity(secrets.len() * PROOF_LEN);
    for key in secrets.keys.iter().take(proto::bus::MAX_PROOFS) {
        out.extend_from_slice(hmac::sign(key, &m).as_ref());
    }
    out
}

/// True when one of `proofs` was made by `role` with one of `secrets`.
pub(crate) fn verify<'a>(
    secrets: &Secrets,
    role: Role,
    dialer: &[u8],
    acceptor: &[u8],
    hello: &Hello<'_>,
    proofs: impl Iterator<Item = &'a [u8]> + Clone,
) -> bool {
    let m = message(role, dialer, acceptor, hello);
    secrets
        .keys
        .iter()
        .any(|key| proofs.clone().any(|p| hmac::verify(key, &m, p).is_ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello<'static> {
        Hello {
            version: 1,
            shard: 0,
            shards: 2,
            incarnation: 9,
            node_id: "a",
        }
    }

    #[test]
    fn a_proof_holds_only_for_its_secret_side_nonces_and_hello() {
        let s = Secrets::new(&[[1u8; 32]]);
        let (d, a) = (nonce(), nonce());
        let h = hello();
        let p = prove(&s, Role::Acceptor, &d, &a, &h);
        let ok = |s: &Secrets, role, d: &[u8], a: &[u8], h: &Hello<'_>| {
            verify(s, role, d, a, h, p.chunks_exact(PROOF_LEN))
        };
        assert!(ok(&s, Role::Acceptor, &d, &a, &h));
        assert!(!ok(&s, Role::Dialer, &d, &a, &h), "the other side's proof");
        assert!(!ok(&s, Role::Acceptor, &a, &d, &h), "nonces swapped");
        assert!(!ok(&s, Role::Acceptor, &d, &nonce(), &h), "a new nonce");
        let other = Hello {
            incarnation: 10,
            ..h
        };
        assert!(!ok(&s, Role::Acceptor, &d, &a, &other), "another hello");
        assert!(!ok(&Secrets::new(&[[2u8; 32]]), Role::Acceptor, &d, &a, &h));
    }

    #[test]
    fn in_a_rotation_either_secret_links() {
        let (old, new) = ([1u8; 32], [2u8; 32]);
        let rotating = Secrets::new(&[new, old]);
        let (d, a) = (nonce(), nonce());
        let h = hello();
        for peer in [Secrets::new(&[old]), Secrets::new(&[new])] {
            let p = prove(&peer, Role::Dialer, &d, &a, &h);
            assert!(verify(
                &rotating,
                Role::Dialer,
                &d,
                &a,
                &h,
                p.chunks_exact(PROOF_LEN)
            ));
            let p = prove(&rotating, Role::Acceptor, &d, &a, &h);
            assert!(verify(
                &peer,
                Role::Acceptor,
                &d,
                &a,
                &h,
                p.chunks_exact(PROOF_LEN)
            ));
        }
        assert_ne!(nonce(), nonce());
    }
}

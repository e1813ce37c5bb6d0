//! Per-link counters: plain integers owned by the shard, summed by the
//! control thread when scraped. Counters only grow; `queued_bytes` is a
//! gauge.

/// Counters of a dialer [`crate::Link`], over its whole life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Bytes handed to the caller to write.
    pub bytes_out: u64,
    /// Bytes received from the peer.
    pub bytes_in: u64,
    /// Batches transmitted for the first time.
    pub batches_out: u64,
    /// Envelopes transmitted for the first time.
    pub envelopes_out: u64,
    /// Batches transmitted again after a reconnect.
    pub batches_resent: u64,
    /// Envelopes `send` refused because the queue was full.
    pub envelopes_refused: u64,
    /// Connect attempts started.
    pub connects: u64,
    /// Handshakes completed.
    pub ups: u64,
    /// Connections ended (after `transport_up`, whether or not they got up).
    pub downs: u64,
    /// Handshakes the acceptor failed: it did not prove the cluster secret,
    /// or it asked for one this node does not have.
    pub auth_failures: u64,
    /// Gauge: bytes unsent plus unacked, open batch included.
    pub queued_bytes: usize,
}

/// Counters of one acceptor [`crate::Inbound`] connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundStats {
    /// Bytes received from the dialer.
    pub bytes_in: u64,
    /// New batches received (duplicates excluded).
    pub batches_in: u64,
    /// Envelopes delivered.
    pub envelopes_in: u64,
    /// Batches dropped because they had already been received.
    pub duplicates: u64,
    /// The dialer did not prove the cluster secret (wrong proof, no `AUTH`
    /// in time, a frame instead of it).
    pub auth_failures: u64,
}

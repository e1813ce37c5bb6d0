//! What a [`super::Link`] reports: its lifecycle state and its events.

/// Where a [`super::Link`] is in its connection lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No connection: waiting for the next connect (now, or after a backoff).
    Idle,
    /// The caller is opening the TCP connection.
    Connecting,
    /// Connected; the `HELLO` is out, waiting for the `WELCOME`.
    Handshaking,
    /// Handshake done: batches flow.
    Up,
}

/// The peer as its `WELCOME` described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's node id.
    pub node_id: String,
    /// The peer's incarnation.
    pub incarnation: u64,
}

/// What happened to a [`super::Link`], for the caller to act on or log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The handshake completed; queued batches are flowing.
    Up {
        /// Who answered.
        peer: PeerInfo,
        /// The peer's incarnation differs from the previous `Up`'s: it was
        /// restarted and lost what it had not processed.
        peer_restarted: bool,
    },
    /// The connection ended (after `transport_up`, up or not).
    Down {
        /// Why, in one line.
        reason: String,
    },
}

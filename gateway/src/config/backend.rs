//! `[backend]`: fronting a chat backend. The streams need `redis`; without
//! it a send to the backend is refused with UNAVAILABLE and nothing is
//! consumed.
use serde::Deserialize;

/// `[backend]`: the Redis streams to and from the backend, and rate limits.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// Stream client sends to `backend` are appended to. Default
    /// `"gw:upstream"`.
    pub upstream_stream: String,
    /// Approximate bound of the upstream stream (`XADD MAXLEN ~`).
    /// Default `1000000`.
    pub upstream_maxlen: u64,
    /// Write lifecycle events (connect, disconnect, join, leave, refresh).
    /// Default `false`.
    pub events: bool,
    /// Stream lifecycle events are appended to. Default `"gw:events"`.
    pub events_stream: String,
    /// Approximate bound of the events stream. Default `1000000`.
    pub events_maxlen: u64,
    /// Consume the downstream stream (the backend's pushes). Default `true`
    /// (when `redis` is set).
    pub downstream: bool,
    /// Stream the backend appends pushes to. Default `"gw:downstream"`.
    pub downstream_stream: String,
    /// Consumer group every node reads the downstream stream in (each node
    /// is one consumer, named by its node id). Default `"gateway"`.
    pub downstream_group: String,
    /// A downstream entry read by a node and not acknowledged for this long
    /// (the node died) is claimed by another, in ms. Default `15000`.
    pub claim_idle_ms: u64,
    /// Client sends per second one connection may make (a token bucket
    /// with a burst of twice that); 0: no limit. Default `0`.
    pub rate_per_conn: u32,
    /// Messages per second one room accepts from clients (at the room's
    /// owner shard, per node; burst twice that); 0: no limit. Default `0`.
    pub rate_per_room: u32,
    /// Backend pushes per second to one user or room (admin API and
    /// downstream, per node; burst twice that); 0: no limit. Default `0`.
    pub rate_per_target: u32,
    /// The backend's authorization hook for joins and publishes to rooms
    /// (`http://host:port/path`, see `backend::hook`); asked after the
    /// token's `rooms` claim allows. Default: unset (no hook).
    pub authorize_url: Option<String>,
    /// How long one hook question may take, in ms, all included (connect
    /// and answer). Default `1000`.
    pub authorize_timeout_ms: u64,
    /// Hook requests in flight at most (worker threads, each keeping one
    /// connection to the backend open). Default `16`.
    pub authorize_concurrency: usize,
    /// How long an answer is reused for the same user, action and room, in
    /// seconds (0: never). Default `30`.
    pub authorize_cache_secs: u64,
    /// When the hook cannot answer (unreachable, timeout, behind):
    /// `"deny"` or `"allow"`. Default `"deny"`.
    pub authorize_when_down: String,
}

impl BackendConfig {
    /// True when `authorize_when_down` is `"allow"`.
    pub fn authorize_when_down_allows(&self) -> bool {
        self.authorize_when_down == "allow"
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            upstream_stream: "gw:upstream".into(),
            upstream_maxlen: 1_000_000,
            events: false,
            events_stream: "gw:events".into(),
            events_maxlen: 1_000_000,
            downstream: true,
            downstream_stream: "gw:downstream".into(),
            downstream_group: "gateway".into(),
            claim_idle_ms: 15_000,
            rate_per_conn: 0,
            rate_per_room: 0,
            rate_per_target: 0,
            authorize_url: None,
            authorize_timeout_ms: 1_000,
            authorize_concurrency: 16,
            authorize_cache_secs: 30,
            authorize_when_down: "deny".into(),
        }
    }
}

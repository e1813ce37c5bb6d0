//! `[compression]`: permessage-deflate (RFC 7692) on the WebSocket port.
//!
//! On by default, at no memory cost for an idle connection: the gateway
//! compresses each message on its own (no context takeover), with one
//! compressor per shard, and a room broadcast once per wire, its bytes
//! shared by every member. A client that compresses with context takeover
//! (browsers do) is capped to a 512-byte window, kept for a connection only
//! once it has sent a compressed message (`proto::ws::extensions`). Inbound
//! messages are inflated under `limits.max_frame_bytes`.
use serde::Deserialize;

use super::validate::check;
use super::ConfigError;

/// `[compression]` (see the module header).
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Accept permessage-deflate from clients that offer it. A client that
    /// does not offer it (or `false` here) gets uncompressed messages.
    /// Default `true`.
    pub enabled: bool,
    /// Messages shorter than this many bytes go uncompressed (RSV1 clear):
    /// deflate saves little on them. Default `128`.
    pub min_bytes: usize,
    /// zlib level, 1 (fastest) to 9 (smallest). Default `6`.
    pub level: u32,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: true,
            min_bytes: 128,
            level: 6,
        }
    }
}

impl CompressionConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let l = self.level;
        check(
            (1..=9).contains(&l),
            "compression.level",
            l,
            "must be 1 to 9",
        )
    }
}

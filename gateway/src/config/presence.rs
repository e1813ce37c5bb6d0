//! `[presence]`: when the backend hears that a user is online or offline
//! (the `online` and `offline` events, `cluster::presence_events`).
use serde::Deserialize;

use super::validate::check;
use super::ConfigError;

/// `[presence]` (see the module header).
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// How long a user's last connection must stay gone, in ms, before the
    /// `offline` event: a reconnect within it (a phone changing networks,
    /// a page reload) is no change. Default `5000`.
    pub offline_grace_ms: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            offline_grace_ms: 5000,
        }
    }
}

impl PresenceConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let g = self.offline_grace_ms;
        check(
            (100..=3_600_000).contains(&g),
            "presence.offline_grace_ms",
            g,
            "must be 100 to 3600000 (an hour)",
        )
    }
}

//! `[rooms]`: which rooms keep history (one order per room, recovery by
//! position) and how much of it.
//!
//! A room whose name matches one of `history`'s patterns keeps its last
//! `history_size` messages for `history_secs`, stored once per room (not
//! per member), and every message it carries gets an offset in the room's
//! one order. Rooms that match no pattern behave as before: live messages,
//! and QoS 1 ones written into the inbox of every member connected then.
//! The default is no pattern: history costs a store write per message, so
//! a room used only for typing notices should not pay for it unasked.
use serde::Deserialize;

use super::validate::check;
use super::ConfigError;

/// `[rooms]` (see the module header).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// Name patterns of the rooms that keep history: `*` matches any run
    /// of characters (`"*"`: every room, `"chat:*"`, `"*-log"`). Default
    /// none.
    pub history: Vec<String>,
    /// Messages kept per room. Default `100`.
    pub history_size: usize,
    /// Seconds a message is kept; a room silent that long forgets its
    /// history and starts a new epoch. Default `300`.
    pub history_secs: u64,
    /// In-process store: bytes of room history kept per shard, past it the
    /// oldest messages of the largest rooms go first. Default 64 MiB.
    pub history_total_bytes: usize,
    /// How long a room's owner shard holds a message that came ahead of a
    /// missing offset (another node's, still on its way) before it reads
    /// the missing ones from the store, in ms. Default `200`.
    pub reorder_wait_ms: u64,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            history: Vec::new(),
            history_size: 100,
            history_secs: 300,
            history_total_bytes: 64 << 20,
            reorder_wait_ms: 200,
        }
    }
}

/// Most messages kept per room; most seconds.
const MAX_SIZE: usize = 1 << 20;
const MAX_SECS: u64 = 30 * 86_400;

impl RoomsConfig {
    /// True when `room` keeps history.
    pub fn keeps_history(&self, room: &str) -> bool {
        self.history.iter().any(|p| glob(p, room))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for p in &self.history {
            check(
                !p.is_empty() && !p.chars().any(char::is_control),
                "rooms.history",
                p,
                "a pattern must be non-empty, without control characters",
            )?;
        }
        let n = self.history_size;
        check(
            (1..=MAX_SIZE).contains(&n),
            "rooms.history_size",
            n,
            "must be 1 to 1048576",
        )?;
        let s = self.history_secs;
        check(
            (1..=MAX_SECS).contains(&s),
            "rooms.history_secs",
            s,
            "must be 1 to 2592000 (30 days)",
        )?;
        let b = self.history_total_bytes;
        check(b > 0, "rooms.history_total_bytes", b, "must be at least 1")?;
        let w = self.reorder_wait_ms;
        check(
            (1..=60_000).contains(&w),
            "rooms.reorder_wait_ms",
            w,
            "must be 1 to 60000",
        )
    }
}

/// `*` matches any run of characters (none included); everything else
/// matches itself. Iterative with one backtrack point: linear in practice,
/// never exponential.
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == n[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::{glob, RoomsConfig};

    #[test]
    fn patterns_match_with_stars_anywhere() {
        for (p, n, want) in [
            ("*", "", true),
            ("*", "lobby", true),
            ("lobby", "lobby", true),
            ("lobby", "lobby2", false),
            ("chat:*", "chat:1", true),
            ("chat:*", "chat", false),
            ("*-log", "a-log", true),
            ("*-log", "a-log-b", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("**", "x", true),
            ("é*", "été", true),
        ] {
            assert_eq!(glob(p, n), want, "{p} ~ {n}");
        }
    }

    #[test]
    fn no_pattern_means_no_history_and_bad_values_are_refused() {
        let mut c = RoomsConfig::default();
        assert!(!c.keeps_history("lobby"));
        c.history = vec!["lob*".into()];
        assert!(c.keeps_history("lobby") && !c.keeps_history("typing"));
        assert!(c.validate().is_ok());
        c.history_size = 0;
        assert!(c.validate().is_err());
        c.history_size = 10;
        c.history.push(String::new());
        assert!(c.validate().is_err());
    }
}

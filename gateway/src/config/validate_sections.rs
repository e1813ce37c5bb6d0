//! Validation of the `[qos]` and `[backend]` sections and of `redis`: each
//! documented key refuses a value the node could not use, at start-up, with
//! one line naming the key (as `validate` does for the rest).
use super::validate::check;
use super::{BackendConfig, ConfigError, QosConfig, MAX_TIMEOUT_MS};

/// Most messages in flight per connection, most hook workers.
const MAX_WINDOW: usize = 65_536;
const MAX_HOOK_WORKERS: usize = 1024;

impl QosConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let w = self.inflight_window;
        check(
            (1..=MAX_WINDOW).contains(&w),
            "qos.inflight_window",
            w,
            "must be 1 to 65536",
        )?;
        let (first, max) = (self.retransmit_ms, self.retransmit_max_ms);
        check(
            (10..=MAX_TIMEOUT_MS).contains(&first),
            "qos.retransmit_ms",
            first,
            "must be 10 to 86400000",
        )?;
        check(
            (first..=MAX_TIMEOUT_MS).contains(&max),
            "qos.retransmit_max_ms",
            max,
            "must be at least qos.retransmit_ms and at most 86400000",
        )?;
        let positive: [(&'static str, usize); 4] = [
            ("qos.inbox_per_user", self.inbox_per_user),
            ("qos.inbox_total_bytes", self.inbox_total_bytes),
            ("qos.dedupe_window", self.dedupe_window),
            ("qos.max_pending_appends", self.max_pending_appends),
        ];
        for (key, v) in positive {
            check(v > 0, key, v, "must be at least 1")?;
        }
        for (key, v) in [
            ("qos.retention_secs", self.retention_secs),
            ("qos.dedupe_secs", self.dedupe_secs),
        ] {
            check(v > 0, key, v, "must be at least 1 (seconds)")?;
        }
        Ok(())
    }
}

impl BackendConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, name) in [
            ("backend.upstream_stream", &self.upstream_stream),
            ("backend.events_stream", &self.events_stream),
            ("backend.downstream_stream", &self.downstream_stream),
            ("backend.downstream_group", &self.downstream_group),
        ] {
            let ok = !name.is_empty()
                && name.len() <= 256
                && !name
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
            check(ok, key, name, "must be 1-256 bytes with no spaces")?;
        }
        for (key, v) in [
            ("backend.upstream_maxlen", self.upstream_maxlen),
            ("backend.events_maxlen", self.events_maxlen),
        ] {
            check(v > 0, key, v, "must be at least 1")?;
        }
        let t = self.authorize_timeout_ms;
        check(
            (1..=MAX_TIMEOUT_MS).contains(&t),
            "backend.authorize_timeout_ms",
            t,
            "must be 1 to 86400000",
        )?;
        let n = self.authorize_concurrency;
        check(
            (1..=MAX_HOOK_WORKERS).contains(&n),
            "backend.authorize_concurrency",
            n,
            "must be 1 to 1024",
        )?;
        let idle = self.claim_idle_ms;
        check(
            (100..=MAX_TIMEOUT_MS).contains(&idle),
            "backend.claim_idle_ms",
            idle,
            "must be 100 to 86400000",
        )?;
        Ok(())
    }
}

/// `redis`: one URL, or a comma-separated list of a Redis Cluster's
/// masters, each `redis://`, `rediss://` or `unix://`.
pub(super) fn validate_redis(redis: &str) -> Result<(), ConfigError> {
    let urls: Vec<&str> = redis.split(',').map(str::trim).collect();
    let ok = urls.iter().all(|u| {
        ["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|s| u.len() > s.len() && u.starts_with(s))
    });
    check(
        ok,
        "redis",
        redis,
        "must be redis://HOST:PORT (or rediss://, unix://), or a comma-separated list of them",
    )
}

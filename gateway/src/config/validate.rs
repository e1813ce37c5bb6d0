//! Validation of a parsed [`Config`](super::Config): every rule promised by
//! the `config` module header, each failure one line naming the setting.

use super::{Config, ConfigError, MAX_FRAME_BYTES, MAX_SHARDS, MAX_TIMEOUT_MS};

impl Config {
    /// Checks every rule listed in the `config` module header; returns the
    /// first violation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let node_ok = !self.node_id.is_empty()
            && self.node_id.len() <= 128
            && self.node_id.bytes().all(is_node_id_byte);
        check(
            node_ok,
            "node_id",
            &self.node_id,
            "must be 1-128 ASCII letters, digits or -_.:",
        )?;
        let listeners = [
            ("ws_listen", self.ws_listen),
            ("tcp_listen", self.tcp_listen),
            ("admin_listen", self.admin_listen),
        ];
        for (i, (name, addr)) in listeners.iter().enumerate() {
            for (other, other_addr) in &listeners[i + 1..] {
                if addr.port() != 0 && addr == other_addr {
                    return Err(ConfigError::invalid(name, addr, format!("same as {other}")));
                }
            }
        }
        let shards = self.shards;
        check(
            shards <= MAX_SHARDS,
            "shards",
            shards,
            "must be at most 1024",
        )?;
        let tick = self.timer_tick_ms;
        check(
            (1..=1000).contains(&tick),
            "timer_tick_ms",
            tick,
            "must be 1 to 1000",
        )?;
        let coalesce = self.read_coalesce_us;
        check(
            coalesce <= 100_000,
            "read_coalesce_us",
            coalesce,
            "must be at most 100000 (100 ms)",
        )?;

        let l = &self.limits;
        let frame = l.max_frame_bytes;
        let frame_ok = (1..=MAX_FRAME_BYTES).contains(&frame);
        check(
            frame_ok,
            "limits.max_frame_bytes",
            frame,
            "must be 1 to 16777216",
        )?;
        let ms_ok = |v: u64| (1..=MAX_TIMEOUT_MS).contains(&v);
        let ms_reason = "must be 1 to 86400000 (one day)";
        let hs = l.handshake_timeout_ms;
        check(ms_ok(hs), "limits.handshake_timeout_ms", hs, ms_reason)?;
        let hb = l.heartbeat_interval_ms;
        check(
            hb > 0,
            "limits.heartbeat_interval_ms",
            hb,
            "must be positive",
        )?;
        let hbt = l.heartbeat_timeout_ms;
        check(ms_ok(hbt), "limits.heartbeat_timeout_ms", hbt, ms_reason)?;
        if hbt <= u64::from(hb) {
            let reason = format!("must exceed limits.heartbeat_interval_ms ({hb})");
            return Err(ConfigError::invalid(
                "limits.heartbeat_timeout_ms",
                hbt,
                reason,
            ));
        }
        let min_queue = frame.saturating_add(16);
        if l.send_queue_bytes < min_queue {
            let reason = format!("must be at least limits.max_frame_bytes + 16 ({min_queue})");
            let value = l.send_queue_bytes;
            return Err(ConfigError::invalid(
                "limits.send_queue_bytes",
                value,
                reason,
            ));
        }
        let rooms = l.max_rooms_per_conn;
        check(
            rooms > 0,
            "limits.max_rooms_per_conn",
            rooms,
            "must be positive",
        )?;
        let names = l.max_name_bytes;
        let names_ok = (1..=1024).contains(&names);
        check(
            names_ok,
            "limits.max_name_bytes",
            names,
            "must be 1 to 1024",
        )?;
        let hsb = l.max_handshake_bytes;
        let hsb_ok = (1024..=1 << 20).contains(&hsb);
        check(
            hsb_ok,
            "limits.max_handshake_bytes",
            hsb,
            "must be 1024 to 1048576",
        )?;

        let pre = l.max_preauth_frame_bytes;
        check(
            pre >= 256,
            "limits.max_preauth_frame_bytes",
            pre,
            "must be at least 256",
        )?;

        let dl = self.drain.deadline_ms;
        let dl_ok = dl <= MAX_TIMEOUT_MS;
        check(
            dl_ok,
            "drain.deadline_ms",
            dl,
            "must be at most 86400000 (one day)",
        )?;
        let spread = self.drain.upgrade_spread_ms;
        check(
            spread <= 3_600_000,
            "drain.upgrade_spread_ms",
            spread,
            "must be at most 3600000 (one hour)",
        )?;

        let c = &self.cluster;
        if let Some(bus) = c.bus_listen {
            check(
                self.redis.is_some(),
                "cluster.bus_listen",
                bus,
                "a cluster needs redis (the registry): set redis / --redis",
            )?;
            check(
                self.node_id.len() <= 64,
                "node_id",
                &self.node_id,
                "must be at most 64 bytes on a cluster (it travels in the bus hello)",
            )?;
            check(
                !bus.ip().is_unspecified() || c.bus_advertise.is_some(),
                "cluster.bus_listen",
                bus,
                "listening on all addresses needs cluster.bus_advertise (the host peers dial)",
            )?;
            check(
                bus.ip().is_loopback() || c.secret.is_some(),
                "cluster.bus_listen",
                bus,
                "a bus reachable from other hosts needs cluster.secret (or secret_file, \
                 GATEWAY_CLUSTER_SECRET): without it any process that reaches the port \
                 could deliver messages to anyone",
            )?;
            let last = usize::from(bus.port()) + self.shard_count();
            check(
                bus.port() == 0 || last <= 65_536,
                "cluster.bus_listen",
                bus,
                "port + shards must stay below 65536",
            )?;
        }
        let previous = c.previous_secrets.len();
        check(
            previous == 0 || c.secret.is_some(),
            "cluster.previous_secrets",
            format!("{previous} secrets"),
            "need cluster.secret (the one this node proves with first)",
        )?;
        check(
            previous <= 3,
            "cluster.previous_secrets",
            format!("{previous} secrets"),
            "at most 3 (a link carries 4 proofs at most)",
        )?;
        for (key, s) in (c.secret.iter().map(|s| ("cluster.secret", s))).chain(
            c.previous_secrets
                .iter()
                .map(|s| ("cluster.previous_secrets", s)),
        ) {
            check(
                s.len() >= 32,
                key,
                format!("{} bytes", s.len()),
                "must be at least 32 bytes",
            )?;
        }
        let ttl = c.registry_ttl_ms;
        check(
            (300..=60_000).contains(&ttl),
            "cluster.registry_ttl_ms",
            ttl,
            "must be 300 to 60000",
        )?;
        if let Some(host) = &c.bus_advertise {
            check(
                is_host(host),
                "cluster.bus_advertise",
                host,
                "must be a host name or an IP address, without a port (each listener's own port is added)",
            )?;
        }

        self.admin.validate(self.admin_listen)?;
        self.qos.validate()?;
        self.rooms.validate()?;
        self.compression.validate()?;
        self.presence.validate()?;
        self.backend.validate()?;
        if let Some(url) = &self.redis {
            super::validate_sections::validate_redis(url)?;
        }

        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(ConfigError::invalid(
                "tls",
                "cert_file / key_file",
                "set both (or neither)".to_owned(),
            ));
        }
        let down = &self.backend.authorize_when_down;
        check(
            down == "deny" || down == "allow",
            "backend.authorize_when_down",
            down,
            "must be \"deny\" or \"allow\"",
        )?;
        if let Some(url) = &self.backend.authorize_url {
            check(
                url.starts_with("http://") && url.len() > 7,
                "backend.authorize_url",
                url,
                "must be an http://host:port/path URL",
            )?;
        }
        let a = &self.auth;
        if a.jwks_file.is_some() && (a.jwt_secret.is_some() || a.jwt_public_key.is_some()) {
            return Err(ConfigError::ConflictingKeys);
        }
        match (&self.auth.jwt_secret, &self.auth.jwt_public_key) {
            (Some(_), Some(_)) => Err(ConfigError::ConflictingKeys),
            (Some(secret), None) if secret.is_empty() => Err(ConfigError::EmptySecret),
            _ => Ok(()),
        }
    }
}

pub(super) fn check(
    ok: bool,
    key: &'static str,
    value: impl ToString,
    reason: &str,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, value, reason.to_owned()))
    }
}

pub(super) fn is_node_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')
}

/// A host as `cluster.bus_advertise` takes it: an IP address (IPv6 bare or
/// in brackets) or a DNS name (RFC 1123 labels), never `host:port`.
pub(super) fn is_host(h: &str) -> bool {
    let bare = h
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(h);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return bare == h || bare.contains(':');
    }
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    h.len() <= 253 && h.trim_end_matches('.').split('.').all(label)
}

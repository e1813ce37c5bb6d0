//! How the flags go over the config file's settings (`RunArgs::apply`).
use super::cli::RunArgs;
use super::Config;

impl RunArgs {
    /// Writes every flag that was given over `config`. A key flag
    /// (`--jwt-secret` or `--jwt-public-key`) replaces the file's whole key
    /// choice, so a flag secret overrides a file public key and vice versa.
    pub fn apply(&self, config: &mut Config) {
        fn set<T: Clone>(flag: &Option<T>, field: &mut T) {
            if let Some(v) = flag {
                *field = v.clone();
            }
        }
        set(&self.node_id, &mut config.node_id);
        set(&self.ws_listen, &mut config.ws_listen);
        set(&self.tcp_listen, &mut config.tcp_listen);
        set(&self.admin_listen, &mut config.admin_listen);
        set(&self.shards, &mut config.shards);
        set(&self.driver, &mut config.driver);
        set(&self.read_coalesce_us, &mut config.read_coalesce_us);
        if self.upgrade_binary.is_some() {
            config.upgrade_binary = self.upgrade_binary.clone();
        }
        if self.jwt_secret.is_some() || self.jwt_public_key.is_some() || self.jwks_file.is_some() {
            config.auth.jwt_secret = self.jwt_secret.clone();
            config.auth.jwt_public_key = self.jwt_public_key.clone();
            config.auth.jwks_file = self.jwks_file.clone();
        }
        let limits = &mut config.limits;
        set(&self.max_frame_bytes, &mut limits.max_frame_bytes);
        set(&self.send_queue_bytes, &mut limits.send_queue_bytes);
        set(&self.handshake_timeout_ms, &mut limits.handshake_timeout_ms);
        set(&self.heartbeat_timeout_ms, &mut limits.heartbeat_timeout_ms);
        set(&self.drain_deadline_ms, &mut config.drain.deadline_ms);
        if self.redis.is_some() {
            config.redis = self.redis.clone();
        }
        if self.redis_password_file.is_some() {
            config.redis_password_file = self.redis_password_file.clone();
        }
        if self.redis_ca_file.is_some() {
            config.redis_ca_file = self.redis_ca_file.clone();
        }
        if self.redis_username.is_some() {
            config.redis_username = self.redis_username.clone();
        }
        set(&self.inbox_per_user, &mut config.qos.inbox_per_user);
        set(&self.direct_when_full, &mut config.qos.direct_when_full);
        set(&self.retransmit_ms, &mut config.qos.retransmit_ms);
        if !self.room_history.is_empty() {
            config.rooms.history = self.room_history.clone();
        }
        set(&self.room_history_size, &mut config.rooms.history_size);
        set(&self.room_history_secs, &mut config.rooms.history_secs);
        let cluster = &mut config.cluster;
        if self.bus_listen.is_some() {
            cluster.bus_listen = self.bus_listen;
        }
        if self.bus_advertise.is_some() {
            cluster.bus_advertise = self.bus_advertise.clone();
        }
        if self.cluster_secret_file.is_some() {
            cluster.secret = None;
            cluster.secret_file = self.cluster_secret_file.clone();
        }
        set(&self.route_policy, &mut cluster.route_policy);
        set(&self.registry_ttl_ms, &mut cluster.registry_ttl_ms);
        let backend = &mut config.backend;
        if self.events {
            backend.events = true;
        }
        set(&self.claim_idle_ms, &mut backend.claim_idle_ms);
        set(
            &self.offline_grace_ms,
            &mut config.presence.offline_grace_ms,
        );
        set(&self.rate_per_conn, &mut backend.rate_per_conn);
        set(&self.rate_per_room, &mut backend.rate_per_room);
        set(&self.rate_per_target, &mut backend.rate_per_target);
        set(&self.rooms_claim, &mut config.auth.rooms_claim);
        if self.tls_cert.is_some() {
            config.tls.cert_file = self.tls_cert.clone();
        }
        if self.tls_key.is_some() {
            config.tls.key_file = self.tls_key.clone();
        }
        let c = &mut config.cluster;
        for (flag, key) in [
            (&self.bus_tls_cert, &mut c.tls_cert_file),
            (&self.bus_tls_key, &mut c.tls_key_file),
            (&self.bus_tls_ca, &mut c.tls_ca_file),
        ] {
            if flag.is_some() {
                key.clone_from(flag);
            }
        }
        if self.bus_tls_server_name.is_some() {
            c.tls_server_name.clone_from(&self.bus_tls_server_name);
        }
        set(&self.max_conns, &mut config.limits.max_conns);
        set(
            &self.max_frames_per_sec,
            &mut config.limits.max_frames_per_sec,
        );
        set(&self.max_conns_per_ip, &mut config.limits.max_conns_per_ip);
        set(
            &self.connect_rate_per_ip,
            &mut config.limits.connect_rate_per_ip,
        );
        if self.audience.is_some() {
            config.auth.audience = self.audience.clone();
        }
        if self.issuer.is_some() {
            config.auth.issuer = self.issuer.clone();
        }
        set(
            &self.max_token_lifetime_secs,
            &mut config.auth.max_lifetime_secs,
        );
        if self.admin_token.is_some() {
            config.admin.token = self.admin_token.clone();
        }
    }
}

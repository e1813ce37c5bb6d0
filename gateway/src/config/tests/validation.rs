//! Tests for config validation and key selection.
use super::*;

#[test]
fn validation_errors() {
    type Edit = fn(&mut Config);
    let cases: [(Edit, &str); 19] = [
        (|c| c.node_id = String::new(), "invalid node_id"),
        (|c| c.node_id = "has space".into(), "invalid node_id"),
        (|c| c.node_id = "x".repeat(129), "invalid node_id"),
        (
            |c| c.tcp_listen = c.ws_listen,
            "invalid ws_listen = 127.0.0.1:8080: same as tcp_listen",
        ),
        (|c| c.shards = 1025, "invalid shards = 1025"),
        (|c| c.timer_tick_ms = 0, "invalid timer_tick_ms"),
        (
            |c| c.read_coalesce_us = 100_001,
            "invalid read_coalesce_us = 100001",
        ),
        (
            |c| c.limits.max_frame_bytes = 0,
            "invalid limits.max_frame_bytes = 0",
        ),
        (
            |c| c.limits.max_frame_bytes = (16 << 20) + 1,
            "invalid limits.max_frame_bytes",
        ),
        (
            |c| c.limits.send_queue_bytes = 65_551,
            "at least limits.max_frame_bytes + 16 (65552)",
        ),
        (
            |c| c.limits.handshake_timeout_ms = 0,
            "invalid limits.handshake_timeout_ms",
        ),
        (
            |c| c.limits.heartbeat_interval_ms = 0,
            "invalid limits.heartbeat_interval_ms",
        ),
        (
            |c| c.limits.heartbeat_timeout_ms = 25_000,
            "must exceed limits.heartbeat_interval_ms",
        ),
        (
            |c| c.limits.heartbeat_timeout_ms = u64::MAX,
            "invalid limits.heartbeat_timeout_ms",
        ),
        (
            |c| c.limits.max_rooms_per_conn = 0,
            "invalid limits.max_rooms_per_conn",
        ),
        (
            |c| c.limits.max_name_bytes = 0,
            "invalid limits.max_name_bytes",
        ),
        (
            |c| c.limits.max_handshake_bytes = 100,
            "invalid limits.max_handshake_bytes",
        ),
        (
            |c| c.drain.deadline_ms = MAX_TIMEOUT_MS + 1,
            "invalid drain.deadline_ms",
        ),
        (
            |c| c.auth.jwt_secret = Some(String::new()),
            "auth.jwt_secret is empty",
        ),
    ];
    for (edit, want) in cases {
        let mut c = Config::default();
        edit(&mut c);
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains(want), "{msg:?} lacks {want:?}");
        assert!(!msg.contains('\n'));
    }
    // Ephemeral ports may repeat (tests bind everything to port 0).
    let mut c = Config::default();
    c.ws_listen.set_port(0);
    c.tcp_listen.set_port(0);
    c.admin_listen.set_port(0);
    c.validate().unwrap();
    // The smallest consistent queue is accepted.
    c.limits.send_queue_bytes = c.limits.max_frame_bytes + 16;
    c.validate().unwrap();
}

#[test]
fn key_selection() {
    let dir = scratch("keys");
    let both = parse("[auth]\njwt_secret = \"a\"\njwt_public_key = \"k.pem\"\n").unwrap();
    assert!(matches!(both.validate(), Err(ConfigError::ConflictingKeys)));
    assert!(matches!(
        both.key_source(),
        Err(ConfigError::ConflictingKeys)
    ));

    // A relative key path is relative to the config file.
    let path = write(
        &dir,
        "gw.toml",
        "[auth]\njwt_public_key = \"keys/jwt.pem\"\n",
    );
    let c = Config::from_file(&path).unwrap();
    assert_eq!(c.auth.jwt_public_key, Some(dir.join("keys/jwt.pem")));
    let msg = c.key_source().unwrap_err().to_string();
    assert!(
        msg.starts_with("cannot read JWT public key ") && msg.contains("jwt.pem"),
        "{msg}"
    );

    // A key flag replaces the file's key choice.
    let args = cli(&["--config", path.to_str().unwrap(), "--jwt-secret", "flag"]);
    let c = load(&args.run).unwrap();
    assert_eq!(c.auth.jwt_public_key, None);
    assert!(
        matches!(c.key_source(), Ok((crate::auth::KeySource::Secret(s), false)) if s == b"flag")
    );
    let args = cli(&["--jwt-secret", "a", "--jwt-public-key", "b.pem"]);
    assert!(matches!(load(&args.run), Err(ConfigError::ConflictingKeys)));

    // A file that is not a public key fails when the verifier is built.
    let junk = write(
        &dir,
        "junk.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let c = load(&cli(&["--jwt-public-key", junk.to_str().unwrap()]).run).unwrap();
    assert!(matches!(
        c.key_source(),
        Ok((crate::auth::KeySource::PublicKeyPem(_), false))
    ));
    let msg = c.verifier().unwrap_err().to_string();
    assert!(
        msg.contains("junk.pem") && msg.contains("private key"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cluster_settings() {
    let d = Config::default();
    assert!(!d.cluster.enabled(), "a single node by default");
    assert_eq!(d.cluster.registry_ttl_ms, 3_000);
    assert_eq!(d.cluster.route_policy, RoutePolicy::LeastConns);
    let bus = |c: &mut Config| c.cluster.bus_listen = Some("127.0.0.1:7000".parse().unwrap());
    type Edit = fn(&mut Config);
    let cases: [(Edit, &str); 8] = [
        (
            |c| c.cluster.bus_listen = Some("127.0.0.1:0".parse().unwrap()),
            "a cluster needs redis",
        ),
        (
            |c| {
                c.redis = Some("redis://x/".into());
                c.cluster.bus_listen = Some("0.0.0.0:7000".parse().unwrap());
            },
            "needs cluster.bus_advertise",
        ),
        (
            |c| {
                c.redis = Some("redis://x/".into());
                c.shards = 4;
                c.cluster.bus_listen = Some("127.0.0.1:65534".parse().unwrap());
            },
            "port + shards must stay below 65536",
        ),
        (
            |c| c.cluster.registry_ttl_ms = 100,
            "invalid cluster.registry_ttl_ms = 100",
        ),
        (
            |c| c.cluster.bus_advertise = Some("has space".into()),
            "invalid cluster.bus_advertise",
        ),
        (
            |c| c.cluster.bus_advertise = Some("127.0.0.1:46385".into()),
            "without a port",
        ),
        (
            |c| c.cluster.bus_advertise = Some("gw-1.internal:7000".into()),
            "without a port",
        ),
        (
            |c| c.cluster.bus_advertise = Some("[::1]:7000".into()),
            "without a port",
        ),
    ];
    for (edit, want) in cases {
        let mut c = Config::default();
        edit(&mut c);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains(want), "{err:?} lacks {want:?}");
    }
    let mut ok = Config {
        redis: Some("redis://x/".into()),
        ..Default::default()
    };
    bus(&mut ok);
    ok.validate().unwrap();
    ok.node_id = "n".repeat(65);
    assert!(ok
        .validate()
        .unwrap_err()
        .to_string()
        .contains("at most 64 bytes"));
    // Flags and TOML.
    let from_toml = Config::from_toml(
        "redis = \"redis://x/\"\n[cluster]\nbus_listen = \"127.0.0.1:7000\"\nroute_policy = \"hash_room\"\n",
        Path::new("g.toml"),
    )
    .unwrap();
    assert_eq!(from_toml.cluster.route_policy, RoutePolicy::HashRoom);
    let mut flags = Config::default();
    Cli::parse_from([
        "gateway",
        "--bus-listen",
        "127.0.0.1:7100",
        "--route-policy",
        "round_robin",
        "--bus-advertise",
        "h1",
    ])
    .run
    .apply(&mut flags);
    assert_eq!(
        flags.cluster.bus_listen,
        Some("127.0.0.1:7100".parse().unwrap())
    );
    assert_eq!(flags.cluster.route_policy, RoutePolicy::RoundRobin);
    assert_eq!(flags.cluster.bus_advertise.as_deref(), Some("h1"));
}

#[test]
fn bus_advertise_takes_hosts_and_addresses() {
    use crate::config::validate::is_host;
    for ok in [
        "10.0.0.7",
        "::1",
        "[fd00::7]",
        "gw-1",
        "gw-1.pods.cluster.local",
        "a.",
    ] {
        assert!(is_host(ok), "{ok}");
    }
    for bad in [
        "",
        "10.0.0.7:7000",
        "[::1]:7000",
        "-gw",
        "gw_1",
        "a..b",
        "[10.0.0.7]",
        "x/y",
    ] {
        assert!(!is_host(bad), "{bad}");
    }
}

/// Every key of `[qos]`, `[backend]` and `redis` refuses what the node
/// could not use, with one line naming it.
#[test]
fn qos_backend_and_redis_refuse_unusable_values() {
    type Edit = fn(&mut Config);
    let cases: [(Edit, &str); 14] = [
        (|c| c.qos.inflight_window = 0, "invalid qos.inflight_window"),
        (|c| c.qos.retransmit_ms = 0, "invalid qos.retransmit_ms"),
        (
            |c| c.qos.retransmit_max_ms = c.qos.retransmit_ms - 1,
            "invalid qos.retransmit_max_ms",
        ),
        (|c| c.qos.inbox_per_user = 0, "invalid qos.inbox_per_user"),
        (|c| c.qos.dedupe_secs = 0, "invalid qos.dedupe_secs"),
        (
            |c| c.qos.max_pending_appends = 0,
            "invalid qos.max_pending_appends",
        ),
        (
            |c| c.backend.upstream_stream = String::new(),
            "invalid backend.upstream_stream",
        ),
        (
            |c| c.backend.downstream_group = "two words".into(),
            "invalid backend.downstream_group",
        ),
        (
            |c| c.backend.events_maxlen = 0,
            "invalid backend.events_maxlen",
        ),
        (
            |c| c.backend.authorize_timeout_ms = 0,
            "invalid backend.authorize_timeout_ms",
        ),
        (
            |c| c.backend.authorize_concurrency = 0,
            "invalid backend.authorize_concurrency",
        ),
        (
            |c| c.backend.claim_idle_ms = 0,
            "invalid backend.claim_idle_ms",
        ),
        (|c| c.redis = Some("127.0.0.1:6379".into()), "invalid redis"),
        (
            |c| c.redis = Some("redis://a:1,b:2".into()),
            "invalid redis",
        ),
    ];
    for (edit, want) in cases {
        let mut c = Config::default();
        edit(&mut c);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains(want), "{err:?} lacks {want:?}");
    }
    let ok = Config {
        redis: Some("redis://a:1, redis://b:2,rediss://c:3".into()),
        ..Default::default()
    };
    ok.validate().unwrap();
}

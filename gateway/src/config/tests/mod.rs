//! Tests for config parsing, flag overrides and validation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use super::*;

/// A scratch directory unique to this test process and `name`.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gateway-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("/etc/gateway/gateway.toml"))
}

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("gateway").chain(args.iter().copied())).unwrap()
}

#[test]
fn defaults() {
    let c = load(&RunArgs::default()).unwrap();
    assert!(c.node_id.starts_with("node-"), "{}", c.node_id);
    assert_eq!(c.ws_listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.tcp_listen.to_string(), "127.0.0.1:8081");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:8082");
    assert_eq!(
        (c.shards, c.driver, c.pin_shards, c.timer_tick_ms),
        (0, Driver::Auto, true, 50)
    );
    assert_eq!(c.read_coalesce_us, 0, "read coalescing is off by default");
    assert!(c.shard_count() >= 1);
    assert_eq!(c.timer_tick(), Duration::from_millis(50));
    let l = &c.limits;
    assert_eq!((l.max_frame_bytes, l.send_queue_bytes), (65_536, 262_144));
    assert_eq!(l.handshake_timeout(), Duration::from_secs(10));
    assert_eq!(l.heartbeat_interval(), Duration::from_secs(25));
    assert_eq!(l.heartbeat_timeout(), Duration::from_secs(60));
    assert_eq!(
        (
            l.max_rooms_per_conn,
            l.max_name_bytes,
            l.max_handshake_bytes
        ),
        (64, 128, 8192)
    );
    let q = &c.qos;
    assert_eq!(
        (q.inflight_window, q.retransmit_ms, q.retransmit_max_ms),
        (256, 2_000, 30_000)
    );
    assert_eq!(
        (q.inbox_per_user, q.inbox_total_bytes, q.retention()),
        (1_000, 64 << 20, Duration::from_secs(86_400))
    );
    assert_eq!(
        (q.dedupe_window, q.dedupe_secs, q.max_pending_appends),
        (4_096, 600, 65_536)
    );
    assert_eq!(q.direct_when_full, crate::config::WhenFull::Refuse);
    assert_eq!(
        (
            l.max_preauth_frame_bytes,
            l.max_conns,
            l.max_conns_per_ip,
            l.connect_rate_per_ip
        ),
        (4096, 0, 0, 0)
    );
    let a = &c.auth;
    assert_eq!(
        (
            a.audience.as_deref(),
            a.issuer.as_deref(),
            a.max_lifetime_secs
        ),
        (None, None, 0)
    );
    assert_eq!(a.rooms_claim, crate::grants::RoomsClaim::Enforce);
    let b = &c.backend;
    assert_eq!(
        (
            b.upstream_stream.as_str(),
            b.events_stream.as_str(),
            b.downstream_stream.as_str()
        ),
        ("gw:upstream", "gw:events", "gw:downstream")
    );
    assert_eq!(
        (b.events, b.downstream, b.claim_idle_ms),
        (false, true, 15_000)
    );
    assert_eq!(
        (b.rate_per_conn, b.rate_per_room, b.rate_per_target),
        (0, 0, 0)
    );
    assert_eq!(c.drain.deadline(), Duration::from_secs(30));
    assert_eq!(c.drain.reconnect_after(), Duration::from_secs(1));
    let (source, dev) = c.key_source().unwrap();
    assert!(dev);
    assert!(matches!(source, crate::auth::KeySource::Secret(s) if s == DEV_SECRET.as_bytes()));
    assert!(c.verifier().unwrap().1);
    // An empty file is the defaults too.
    let empty = parse("").unwrap();
    assert_eq!(empty.ws_listen, c.ws_listen);
    assert!(empty.validate().is_ok());
}

#[test]
fn the_full_inbox_policy_from_toml_and_flags() {
    let c = parse("[qos]\ndirect_when_full = \"drop_oldest\"\n").unwrap();
    assert_eq!(c.qos.direct_when_full, crate::config::WhenFull::DropOldest);
    assert!(parse("[qos]\ndirect_when_full = \"maybe\"\n").is_err());
    let c = load(&cli(&["--direct-when-full", "drop_oldest"]).run).unwrap();
    assert_eq!(c.qos.direct_when_full, crate::config::WhenFull::DropOldest);
}

#[test]
fn toml_with_sections() {
    let c = parse(
        r#"
        node_id = "gw-a"
        ws_listen = "0.0.0.0:9000"
        shards = 4
        driver = "legacy"
        pin_shards = false
        timer_tick_ms = 10
        read_coalesce_us = 5000

        [auth]
        jwt_secret = "s3cret"

        [limits]
        max_frame_bytes = 1024
        heartbeat_interval_ms = 1000
        heartbeat_timeout_ms = 3000

        [drain]
        deadline_ms = 5000
        "#,
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.node_id, "gw-a");
    assert_eq!(c.ws_listen.to_string(), "0.0.0.0:9000");
    assert_eq!(
        c.tcp_listen.to_string(),
        "127.0.0.1:8081",
        "unset keys keep defaults"
    );
    assert_eq!(
        (c.shards, c.shard_count(), c.driver, c.pin_shards),
        (4, 4, Driver::Legacy, false)
    );
    assert_eq!((c.timer_tick_ms, c.read_coalesce_us), (10, 5000));
    assert_eq!(c.auth.jwt_secret.as_deref(), Some("s3cret"));
    assert_eq!(c.limits.max_frame_bytes, 1024);
    assert_eq!(c.limits.send_queue_bytes, 262_144);
    assert_eq!(c.drain.deadline_ms, 5000);
    assert_eq!(c.drain.reconnect_after_ms, 1000);
    assert!(!c.verifier().unwrap().1);
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "secret leaked into Debug"
    );
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let cases = [
        ("shard = 4\n", "shard"),
        ("node_id = \"a\"\n\n[limits]\nmax_frame = 10\n", "max_frame"),
        ("[auth]\njwt_key = \"x\"\n", "jwt_key"),
        ("[metrics]\nport = 1\n", "metrics"),
        ("driver = \"epoll\"\n", "epoll"),
        ("shards = \"many\"\n", "line 1"),
        ("ws_listen = \"localhost\"\n", "line 1"),
        ("shards = -1\n", "shards"),
        ("this is not toml", "line 1"),
    ];
    for (text, needle) in cases {
        let err = parse(text).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }), "{msg}");
        assert!(msg.contains(needle), "{msg:?} does not name {needle:?}");
        assert!(
            msg.starts_with("config file /etc/gateway/gateway.toml: "),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "not one line: {msg:?}");
    }
    let msg = parse("node_id = \"a\"\n\n[limits]\nmax_frame = 10\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("line 4, column 1"), "{msg}");
}

#[test]
fn missing_file_names_the_path() {
    let args = RunArgs {
        config: Some(PathBuf::from("/nonexistent/gateway.toml")),
        ..RunArgs::default()
    };
    let msg = load(&args).unwrap_err().to_string();
    assert!(
        msg.starts_with("cannot read config file /nonexistent/gateway.toml: "),
        "{msg}"
    );
}

#[test]
fn flags_override_the_file() {
    let dir = scratch("override");
    let path = write(
        &dir,
        "gw.toml",
        "shards = 2\nnode_id = \"from-file\"\n[limits]\nmax_frame_bytes = 1000\n[drain]\ndeadline_ms = 1\n",
    );
    let path_str = path.to_str().unwrap();
    let c = cli(&[
        "--config",
        path_str,
        "--shards",
        "8",
        "--driver",
        "uring",
        "--ws-listen",
        "[::1]:7000",
        "--tcp-listen",
        "127.0.0.1:7001",
        "--admin-listen",
        "127.0.0.1:7002",
        "--node-id",
        "from-flag",
        "--max-frame-bytes",
        "2048",
        "--send-queue-bytes",
        "100000",
        "--handshake-timeout-ms",
        "500",
        "--heartbeat-timeout-ms",
        "40000",
        "--drain-deadline-ms",
        "9000",
        "--jwt-secret",
        "flag-secret",
    ]);
    assert_eq!(c.command, None);
    assert!(
        !format!("{c:?}").contains("flag-secret"),
        "secret leaked into Debug"
    );
    let config = load(&c.run).unwrap();
    assert_eq!((config.shards, config.driver), (8, Driver::Uring));
    assert_eq!(config.node_id, "from-flag");
    assert_eq!(config.ws_listen.to_string(), "[::1]:7000");
    assert_eq!(config.tcp_listen.port(), 7001);
    assert_eq!(config.admin_listen.port(), 7002);
    assert_eq!(config.limits.max_frame_bytes, 2048);
    assert_eq!(config.limits.send_queue_bytes, 100_000);
    assert_eq!(config.limits.handshake_timeout_ms, 500);
    assert_eq!(config.limits.heartbeat_timeout_ms, 40_000);
    assert_eq!(config.drain.deadline_ms, 9000);
    assert_eq!(config.auth.jwt_secret.as_deref(), Some("flag-secret"));

    // Only the file: its values stand.
    let config = load(&cli(&["--config", path_str]).run).unwrap();
    assert_eq!((config.shards, config.limits.max_frame_bytes), (2, 1000));
    assert_eq!(config.node_id, "from-file");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn token_subcommand() {
    let c = cli(&["token", "--user", "alice"]);
    let want = Command::Token {
        user: "alice".into(),
        device: None,
        ttl: Duration::from_secs(3600),
    };
    assert_eq!(c.command, Some(want));
    // Run flags work after the subcommand too.
    let c = cli(&[
        "token",
        "--user",
        "bob",
        "--device",
        "tab",
        "--ttl",
        "15m",
        "--jwt-secret",
        "k",
    ]);
    let want = Command::Token {
        user: "bob".into(),
        device: Some("tab".into()),
        ttl: Duration::from_secs(900),
    };
    assert_eq!(c.command, Some(want));
    assert_eq!(c.run.jwt_secret.as_deref(), Some("k"));
    let c = cli(&["--shards", "1", "token", "--user", "x"]);
    assert_eq!(c.run.shards, Some(1));

    for bad in [
        &["token"][..],
        &["token", "--user", "a", "--ttl", "5"],
        &["--driver", "epoll"],
    ] {
        let args = std::iter::once("gateway").chain(bad.iter().copied());
        assert!(Cli::try_parse_from(args).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn ttl_parsing() {
    let ok = [
        ("30s", 30),
        ("15m", 900),
        ("1h", 3600),
        ("2d", 172_800),
        ("1h30m", 5400),
        (" 90s ", 90),
        ("3650d", 3650 * 86_400),
    ];
    for (text, secs) in ok {
        assert_eq!(
            parse_ttl(text).unwrap(),
            Duration::from_secs(secs),
            "{text}"
        );
    }
    assert_eq!(parse_ttl("1500ms").unwrap(), Duration::from_millis(1500));
    let bad = [
        ("", "empty"),
        ("10", "missing unit"),
        ("5x", "unknown unit"),
        ("h", "expected a number"),
        ("0s", "greater than zero"),
        ("1h 30m", "expected a number"),
        ("3651d", "too long"),
        ("99999999999999999999s", "number too large"),
        ("18446744073709551615d", "too long"),
        ("-1h", "expected a number"),
    ];
    for (text, reason) in bad {
        let msg = parse_ttl(text).unwrap_err().to_string();
        assert!(msg.contains(reason), "{text:?}: {msg}");
    }
}

mod validation;

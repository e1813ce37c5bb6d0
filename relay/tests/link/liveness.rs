//! Heartbeats keep an idle link up; a silent peer is declared down after
//! `idle_timeout`; reconnects back off, jittered, within bounds.

use std::time::{Duration, Instant};

use relay::{Config, LinkState};

use crate::pair::Pair;

#[test]
fn heartbeats_keep_an_idle_link_up() {
    let mut p = Pair::new(Config::default());
    p.drive_until(Duration::from_secs(1), Pair::is_up);
    p.run_for(Duration::from_secs(30));
    assert!(p.is_up());
    assert!(p.downs().is_empty(), "{:?}", p.downs());
    assert_eq!(p.link.stats().ups, 1);
    // One PING a second, each answered.
    assert!((29..=31).contains(&p.pings_parsed), "{}", p.pings_parsed);
    assert!(p.link.stats().bytes_in >= 29 * 16);
    assert!(p.inbound.as_ref().is_some_and(|i| !i.wants_close()));
}

#[test]
fn traffic_replaces_heartbeats() {
    let mut p = Pair::new(Config::default());
    p.drive_until(Duration::from_secs(1), Pair::is_up);
    let end = p.now + Duration::from_secs(10);
    let mut i = 0;
    while p.now < end {
        p.link.send(p.now, &crate::pair::envelope(i, 8)).unwrap();
        p.link.flush(p.now);
        i += 1;
        p.run_for(Duration::from_millis(200));
    }
    assert_eq!(p.pings_parsed, 0);
    assert!(p.is_up());
}

#[test]
fn silent_peer_is_down_after_idle_timeout() {
    let config = Config::default();
    let mut p = Pair::new(config.clone());
    p.drive_until(Duration::from_secs(1), Pair::is_up);
    let hung = p.now;
    p.silent = true;
    p.drive_until(Duration::from_secs(10), |p| !p.downs().is_empty());
    let (down_at, _) = p.link_events.last().unwrap();
    let waited = *down_at - hung;
    // The last byte came at `hung` at the latest (the WELCOME), at most one
    // heartbeat earlier for the ACK.
    assert!(waited <= config.idle_timeout, "{waited:?}");
    assert!(
        waited + config.heartbeat + p.latency * 2 >= config.idle_timeout,
        "{waited:?}"
    );
    assert!(p.downs()[0].contains("nothing received"), "{:?}", p.downs());
    // It reconnects (to the same hung peer: the handshake times out).
    p.drive_until(Duration::from_secs(10), |p| p.link.stats().connects >= 2);
    p.drive_until(Duration::from_secs(10), |p| p.downs().len() >= 2);
    assert!(p.downs()[1].contains("no WELCOME"), "{:?}", p.downs());
    p.silent = false;
    p.drive_until(Duration::from_secs(10), Pair::is_up);
}

/// The delays between a failed connect and the next attempt, over `n` tries
/// to an unreachable peer.
fn backoff_delays(seed: u64, n: usize) -> Vec<Duration> {
    let mut p = Pair::with(Config::default(), None, seed);
    p.accepting = false;
    p.drive_until(Duration::from_secs(60), |p| p.connects.len() > n);
    // Each attempt fails one latency after it starts.
    p.connects
        .windows(2)
        .map(|w| w[1] - w[0] - p.latency)
        .collect()
}

#[test]
fn reconnect_backoff_grows_within_bounds_and_is_jittered() {
    let config = Config::default();
    let a = backoff_delays(1, 10);
    let b = backoff_delays(2, 10);
    for d in a.iter().chain(&b) {
        assert!(
            *d >= config.backoff_min && *d <= config.backoff_max,
            "{d:?}"
        );
    }
    // Ceilings 100, 200, 400, 800, 1600 ms: growing until the cap.
    for w in a[..5].windows(2) {
        assert!(w[0] <= w[1], "{a:?}");
    }
    assert!(a[0] < Duration::from_millis(101));
    assert!(a[9] >= config.backoff_max / 2);
    assert_ne!(a, b, "two seeds must differ");
    assert_eq!(a, backoff_delays(1, 10), "one seed repeats");
}

#[test]
fn backoff_resets_after_up() {
    let mut p = Pair::new(Config::default());
    p.accepting = false;
    p.drive_until(Duration::from_secs(60), |p| p.connects.len() > 6);
    p.accepting = true;
    p.drive_until(Duration::from_secs(5), Pair::is_up);
    let n = p.connects.len();
    p.cut();
    let cut_at: Instant = p.now;
    p.drive_until(Duration::from_secs(5), |p| p.connects.len() > n);
    assert!(p.connects[n] - cut_at <= Duration::from_millis(100));
    assert_eq!(p.link.state(), LinkState::Connecting);
}

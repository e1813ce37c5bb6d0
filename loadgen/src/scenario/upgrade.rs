//! `upgrade`: ramp N connections, then keep every one pinging every
//! `--ping-ms` (each ping's round trip measured, by send time), upgrade the
//! gateway's binary in place with `POST /upgrade` on `--admin` (`--rounds`
//! times in a row), and report per upgrade: the gateway's `took_ms` and
//! the POST's wall time, the round trips of the pings in flight while it
//! ran (the pause the clients saw), every connection closed (a plain
//! connection must never be), and the RSS and CPU of the old process (until
//! it exits) and of the new one the answer names, which the monitor
//! follows from then on.
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::{scrape_metrics, Run, Shape};
use crate::cli::Common;
use crate::procs::Procs;
use crate::report::upgrade::{Round, RttPoint, Timeline};
use crate::report::{Outcome, Pcts};
use crate::rtt::{self, Rtts, BUCKET_US};
use crate::target::Target;
use crate::{payload, sys};

/// The scenario's bounds.
pub struct Upgrade {
    /// Connections.
    pub conns: u64,
    /// Ping period once ramped, ms.
    pub ping_ms: u64,
    /// Seconds of pinging before the first upgrade.
    pub hold_secs: u64,
    /// Seconds of pinging after each answer.
    pub after_secs: u64,
    /// Upgrades in a row.
    pub rounds: u64,
    /// Longest wait for an answer, seconds.
    pub upgrade_timeout_secs: u64,
    /// Longest ramp, seconds.
    pub ramp_timeout_secs: u64,
}

/// Microseconds of `payload::now_ns` (the clock pings are stamped with).
fn now_us() -> u64 {
    payload::now_ns() / 1000
}

/// Runs the scenario.
pub fn run(common: &Common, u: &Upgrade) -> anyhow::Result<Outcome> {
    if common.target != Target::Gateway {
        bail!("the upgrade scenario is for the gateway");
    }
    let Some(&first_pid) = common.server_pids.first() else {
        bail!("--server-pid is needed: the scenario follows the gateway's processes");
    };
    let mut run = Run::start(
        common,
        Shape {
            conns: u.conns,
            ping: Some(Duration::from_millis(u.ping_ms.max(1))),
            ..Shape::default()
        },
    )?;
    let all = run.ramp(Duration::from_secs(u.ramp_timeout_secs));
    // Payload microseconds at the run's second 0 (the monitor's clock).
    let zero_us = now_us().saturating_sub((run.mon.elapsed() * 1e6) as u64);
    let mut procs = Procs::default();
    procs.follow(first_pid);
    let shared = run.shared().clone();
    shared.pinging.store(true, Relaxed);
    let (pings0, t_ping) = (shared.pings.load(Relaxed), run.mon.elapsed());
    run.mon.phase("hold, pinging", u.hold_secs);
    watch(
        &mut run,
        &mut procs,
        Duration::from_secs(u.hold_secs),
        || false,
    );
    let at_hold = run.mon.sample();
    let hold_us = (zero_us + (t_ping * 1e6) as u64, now_us());
    let mut rounds: Vec<Round> = Vec::new();
    let mut windows = Vec::new();
    let mut pid = first_pid;
    let hold = rtt::take(&shared, false).map(|r| rtt::between(&r, hold_us.0, hold_us.1));
    let slow_us = hold.map_or(0, |h| h.p99 * 10).clamp(100_000, 1_000_000);
    for n in 1..=u.rounds {
        if !all {
            break;
        }
        let at = Clock { zero_us, slow_us };
        let (round, window) = one_round(&mut run, &mut procs, u, n, pid, at);
        windows.push(window);
        let next = round.new.as_ref().map(|p| p.pid);
        rounds.push(round);
        match next {
            Some(p) => pid = p,
            None => break,
        }
    }
    let t_end = run.mon.elapsed();
    let end = run.mon.sample();
    let pings = shared.pings.load(Relaxed) - pings0;
    let metrics = scrape_metrics(common);
    let held = end.connected;
    let rtts = rtt::take(&shared, true).unwrap_or_default();
    let report = run.stop();
    let mut o = run.outcome("upgrade", &report, held);
    o.server_rss_held_bytes = at_hold.server_rss;
    o.server_rss_after_bytes = procs.latest(pid).map_or(0, |p| p.rss);
    let server_cpu: f64 = rounds
        .iter()
        .map(|r| r.old.cpu_secs + r.new.as_ref().map_or(0.0, |p| p.cpu_secs))
        .sum();
    o.set_cpu(server_cpu, rounds.iter().map(|r| r.machine_cpu_secs).sum());
    let pings_per_sec = pings as f64 / (t_end - t_ping).max(1e-3);
    let extra = [
        ("ping_ms", u.ping_ms.into()),
        ("pings_per_sec", pings_per_sec.round().into()),
        ("hold_secs", u.hold_secs.into()),
        ("after_secs", u.after_secs.into()),
        ("rounds", (rounds.len() as u64).into()),
        ("rtt_hold_ms", ms(&hold.unwrap_or_default()).into()),
        (
            "rtt_outside_windows_ms",
            ms(&Pcts::of(&rtts.outside)).into(),
        ),
        (
            "gateway_upgrades_total",
            super::cluster::metric_sum(&metrics, "gateway_upgrades_total").into(),
        ),
    ];
    for (k, v) in extra {
        o.extra.insert(k.into(), v);
    }
    o.metrics = metrics;
    check(&mut o, u, all, held, &rounds);
    o.timeline = Some(Timeline {
        rtt: rtts
            .buckets
            .iter()
            .map(|(k, h)| RttPoint {
                t: (k * BUCKET_US + BUCKET_US / 2).saturating_sub(zero_us) as f64 / 1e6,
                us: Pcts::of(h),
            })
            .collect(),
        procs: procs.points,
        windows,
    });
    o.upgrades = rounds;
    Ok(o)
}

/// The run's clock and the slow round trip, for a round.
#[derive(Clone, Copy)]
struct Clock {
    /// Payload microseconds at the run's second 0.
    zero_us: u64,
    /// A round trip this long is slow.
    slow_us: u64,
}

/// One upgrade: the POST (answered on a thread of its own while this one
/// samples), then `after_secs` of pinging. Returns the round and its
/// window (POST, answer) in seconds since the run started.
fn one_round(
    run: &mut Run,
    procs: &mut Procs,
    u: &Upgrade,
    n: u64,
    old: u32,
    at: Clock,
) -> (Round, (f64, f64)) {
    let zero_us = at.zero_us;
    let shared = run.shared().clone();
    let (dropped0, failed0) = (shared.dropped.load(Relaxed), shared.failed.load(Relaxed));
    let machine0 = sys::machine_busy_secs().unwrap_or(0.0);
    let t0 = run.mon.elapsed();
    procs.sample(t0);
    let at_post = shared.connected();
    shared.open_window(now_us());
    let timeout = Duration::from_secs(u.upgrade_timeout_secs);
    let answer = post_upgrade(run.common.admin, timeout);
    run.mon.phase(&format!("upgrade {n}"), 1);
    let mut got = None;
    watch(run, procs, timeout + Duration::from_secs(5), || {
        match answer.try_recv() {
            Ok(a) => got = Some(a),
            Err(mpsc::TryRecvError::Empty) => return false,
            Err(mpsc::TryRecvError::Disconnected) => {}
        }
        true
    });
    shared.close_window(now_us());
    let t1 = run.mon.elapsed();
    let (status, body, wall) = match got {
        Some((Ok((status, body)), wall)) => (status, body, wall),
        Some((Err(e), wall)) => (0, format!("{e:#}").into_bytes(), wall),
        None => (0, b"no answer".to_vec(), timeout),
    };
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned().into());
    let field = |k: &str| answer.get(k).and_then(|v| v.as_u64());
    let new_pid = field("pid")
        .filter(|_| status == 200)
        .and_then(|p| u32::try_from(p).ok());
    let mut cpu_at_answer = None;
    if let Some(p) = new_pid {
        run.mon.pids = vec![p];
        procs.follow(p);
        procs.sample(t1);
        cpu_at_answer = procs.latest(p).map(|s| s.cpu);
    }
    run.mon.phase(&format!("after upgrade {n}"), u.after_secs);
    watch(run, procs, Duration::from_secs(u.after_secs), || false);
    let t2 = run.mon.elapsed();
    procs.sample(t2);
    let min_connected = run
        .mon
        .samples
        .iter()
        .filter(|s| s.t >= t0)
        .map(|s| s.connected)
        .chain([shared.connected()])
        .min()
        .unwrap_or(0);
    let window = shared
        .rtt
        .lock()
        .ok()
        .and_then(|mut r| r.as_mut().map(Rtts::take_window));
    let answer_us = zero_us + (t1 * 1e6) as u64;
    let (after, slow_until) = shared
        .rtt
        .lock()
        .ok()
        .and_then(|r| {
            r.as_ref().map(|r| {
                let slow = rtt::last_slow(r, answer_us, at.slow_us);
                (rtt::between(r, answer_us, now_us()), slow)
            })
        })
        .unwrap_or_default();
    let mut old_figures = procs.figures(old, t0, t2, None);
    old_figures.exited_after_answer_ms = procs.gone_at(old).map(|g| (g - t1).max(0.0) * 1e3);
    let new = new_pid.map(|p| {
        let mut f = procs.figures(p, t1, t2, Some(0.0));
        f.cpu_secs_at_answer = cpu_at_answer;
        f
    });
    let round = Round {
        round: n,
        status,
        took_ms: field("took_ms"),
        post_wall_ms: wall.as_secs_f64() * 1e3,
        connections_moved: field("connections"),
        draining: field("draining"),
        answer,
        connections_at_post: at_post,
        min_connected,
        closed: shared.dropped.load(Relaxed) - dropped0,
        failed: shared.failed.load(Relaxed) - failed0,
        rtt_window_us: window.as_ref().map(Pcts::of).unwrap_or_default(),
        rtt_after_us: after,
        slow_threshold_ms: at.slow_us as f64 / 1e3,
        slow_pings_until_ms: slow_until.saturating_sub(answer_us) as f64 / 1e3,
        old: old_figures,
        new,
        machine_cpu_secs: sys::machine_busy_secs().unwrap_or(0.0) - machine0,
        secs: t2 - t0,
    };
    (round, (t0, t1))
}

/// An answer of the POST: status and body, or the error; and its wall time.
type Answer = (anyhow::Result<(u16, Vec<u8>)>, Duration);

/// Sends `POST /upgrade` to `admin` from a thread of its own.
fn post_upgrade(admin: std::net::SocketAddr, timeout: Duration) -> mpsc::Receiver<Answer> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut client = crate::http::Client::with_timeout(admin, timeout);
        let r = client.request("POST", "/upgrade", b"");
        let _ = tx.send((r, start.elapsed()));
    });
    rx
}

/// Samples (the monitor and `procs`) until `done` or `timeout`.
fn watch(run: &mut Run, procs: &mut Procs, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        procs.tick(run.mon.elapsed());
        run.mon.tick(start.elapsed().as_secs());
        if done() || start.elapsed() >= timeout {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `p50 / p99 / p999 / max` in milliseconds, for the summary.
fn ms(p: &Pcts) -> String {
    let f = |us: u64| format!("{:.1}", us as f64 / 1000.0);
    format!(
        "{} / {} / {} / {} ms ({} pings)",
        f(p.p50),
        f(p.p99),
        f(p.p999),
        f(p.max),
        p.count
    )
}

/// The checks: every connection held, every upgrade answered 200 having
/// moved every connection, none closed, every old process gone.
fn check(o: &mut Outcome, u: &Upgrade, all: bool, held: u64, rounds: &[Round]) {
    if !all {
        o.problem(format!("the ramp reached only {held} of {}", u.conns));
    }
    if all && (rounds.len() as u64) < u.rounds {
        o.problem(format!("{} of {} upgrades done", rounds.len(), u.rounds));
    }
    for r in rounds {
        let n = r.round;
        if r.status != 200 {
            o.problem(format!(
                "round {n}: POST /upgrade answered {}: {}",
                r.status, r.answer
            ));
            continue;
        }
        if r.connections_moved != Some(r.connections_at_post) || r.draining != Some(0) {
            o.problem(format!(
                "round {n}: {} moved, {} draining, of {} connections",
                r.connections_moved.unwrap_or(0),
                r.draining.unwrap_or(0),
                r.connections_at_post
            ));
        }
        if r.closed > 0 || r.failed > 0 {
            o.problem(format!(
                "round {n}: {} connections closed, {} attempts failed",
                r.closed, r.failed
            ));
        }
        if r.old.exited_after_answer_ms.is_none() {
            o.problem(format!(
                "round {n}: the old process {} still ran {} s after the answer",
                r.old.pid, u.after_secs
            ));
        }
    }
    if o.failed > 0 || o.dropped > 0 {
        o.problem(format!(
            "{} failed attempts, {} connections closed in the run",
            o.failed, o.dropped
        ));
    }
    if held < u.conns {
        o.problem(format!("held {held} of {} connections at the end", u.conns));
    }
}

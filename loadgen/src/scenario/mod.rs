//! What every scenario shares: starting the workers with a plan, the ramp,
//! the stop, and turning the counters into an [`Outcome`].
pub mod cluster;
pub mod connect;
pub mod direct;
pub mod fanout;
pub mod smoke;
pub mod soak;
pub mod storm;
pub mod upgrade;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::cli::Common;
use crate::monitor::Monitor;
use crate::nodes::Placement;
use crate::report::{Outcome, Pcts};
use crate::stats::{Shared, WorkerReport};
use crate::target::{Spec, Target};
use crate::worker::{self, Plan};

/// What a scenario changes in the default plan.
#[derive(Default)]
pub struct Shape {
    /// Connections.
    pub conns: u64,
    /// Members per room.
    pub room_size: Option<u64>,
    /// Reconnect after drops.
    pub reconnect: bool,
    /// Highest message number a connection may see.
    pub max_seq: u64,
    /// Direct messages per second, body size, and sending time.
    pub direct: Option<(f64, usize, Duration)>,
    /// How users are placed on the nodes (`--addrs`).
    pub placement: Placement,
    /// Account for every message (`Plan::audit`).
    pub audit: bool,
    /// Ping period while `Shared::pinging` (`Plan::ping`).
    pub ping: Option<Duration>,
}

/// A running scenario.
pub struct Run {
    /// The shared flags.
    pub common: Common,
    /// The plan the workers follow.
    pub plan: Arc<Plan>,
    /// Samples and progress.
    pub mon: Monitor,
    handles: Vec<std::thread::JoinHandle<()>>,
    rx: mpsc::Receiver<WorkerReport>,
    /// Server RSS before the first connection.
    pub idle_rss: u64,
    /// Seconds the ramp took (set by [`Run::ramp`]).
    pub ramp_secs: f64,
}

/// Default worker count: one per 12,500 connections, at least 2.
fn default_workers(conns: u64) -> u64 {
    conns.div_ceil(12_500).max(2)
}

impl Run {
    /// Starts the workers.
    pub fn start(common: &Common, shape: Shape) -> anyhow::Result<Run> {
        if common.target == Target::Gateway && common.jwt_secret.is_none() {
            bail!("--jwt-secret (or LOADGEN_JWT_SECRET) is needed for the gateway");
        }
        crate::payload::epoch();
        crate::payload::set_text(common.text);
        crate::sys::raise_nofile();
        let spec = Spec {
            target: common.target,
            wire: common.wire,
            qos1: common.qos == 1,
            minter: common
                .jwt_secret
                .as_deref()
                .map(|s| crate::token::Minter::new(s, 86_400)),
            max_message: 1 << 20,
            deflate: common.deflate && common.target == Target::Gateway,
            tls: match &common.tls_ca {
                Some(ca) if common.target == Target::Gateway => {
                    Some(crate::tls::Client::new(ca, &common.tls_name)?)
                }
                Some(_) => anyhow::bail!("--tls-ca is for the gateway target"),
                None => None,
            },
        };
        let plan = Arc::new(Plan {
            spec: Arc::new(spec),
            dests: common.client_addrs(),
            placement: shape.placement,
            spread: common.spread,
            conns: shape.conns,
            rate: common.rate,
            in_flight: common.in_flight,
            heartbeat: (common.heartbeat_ms > 0)
                .then(|| Duration::from_millis(common.heartbeat_ms)),
            ping: shape.ping,
            room_size: shape.room_size,
            reconnect: shape.reconnect,
            max_seq: shape.max_seq.max(1),
            direct: shape.direct,
            handshake_timeout: Duration::from_millis(common.handshake_timeout_ms),
            audit: shape.audit,
        });
        let shared = Arc::new(Shared::default());
        let mut mon = Monitor::new(shared.clone(), common.server_pids.clone());
        let idle = mon.sample();
        let workers = if common.workers == 0 {
            default_workers(shape.conns)
        } else {
            common.workers
        };
        let (handles, rx) = worker::spawn(plan.clone(), shared, workers)?;
        Ok(Run {
            common: common.clone(),
            plan,
            mon,
            handles,
            rx,
            idle_rss: idle.server_rss,
            ramp_secs: 0.0,
        })
    }

    /// The live counters.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.mon.shared
    }

    /// Waits until every connection is ready (or attempts all ended, or
    /// `timeout`); returns whether all are ready.
    pub fn ramp(&mut self, timeout: Duration) -> bool {
        let goal = self.plan.conns;
        let reconnect = self.plan.reconnect;
        self.mon.phase("ramp", goal);
        let start = Instant::now();
        let ok = self.mon.wait(
            timeout,
            |s| {
                s.connected() >= goal
                    || (!reconnect && s.connected() + s.failed.load(Relaxed) >= goal)
            },
            |s| s.connected(),
        );
        self.ramp_secs = start.elapsed().as_secs_f64();
        ok && self.shared().connected() >= goal
    }

    /// Holds for `secs`, sampling.
    pub fn hold(&mut self, secs: u64) {
        self.mon.phase("hold", secs);
        let start = Instant::now();
        self.mon.wait(
            Duration::from_secs(secs),
            |_| false,
            |_| start.elapsed().as_secs(),
        );
    }

    /// Stops every worker and merges their reports.
    pub fn stop(&mut self) -> WorkerReport {
        self.mon.phase("stop", self.handles.len() as u64);
        self.shared().stop.store(true, Relaxed);
        let n = self.handles.len() as u32;
        self.mon.wait(
            Duration::from_secs(30),
            |s| s.workers_done.load(Relaxed) >= n,
            |s| u64::from(s.workers_done.load(Relaxed)),
        );
        self.mon.finish();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        let mut total = WorkerReport::new();
        while let Ok(r) = self.rx.try_recv() {
            total.merge(&r);
        }
        total
    }

    /// An outcome with the fields every scenario fills.
    pub fn outcome(&self, scenario: &str, report: &WorkerReport, held: u64) -> Outcome {
        let s = self.shared();
        let mut o = Outcome::new(scenario, &self.common);
        o.connections_target = self.plan.conns;
        o.connections_held = held;
        o.failed = s.failed.load(Relaxed);
        o.dropped = s.dropped.load(Relaxed);
        o.failures = s.causes();
        o.handshake_us = Pcts::of(&report.handshake);
        o.ramp_secs = self.ramp_secs;
        o.connect_rate_per_sec = if self.ramp_secs > 0.0 {
            held as f64 / self.ramp_secs
        } else {
            0.0
        };
        o.latency_us = Pcts::of(&report.latency);
        o.duplicated = report.duplicates;
        o.bad_payload = report.bad_payload;
        o.pings = s.pings.load(Relaxed);
        o.pongs = s.pongs.load(Relaxed);
        o.server_rss_idle_bytes = self.idle_rss;
        o.samples = self.mon.samples.clone();
        o
    }
}

/// Fetches the gateway's `/metrics` text (empty when unreachable); with
/// several `--admins`, every node's, each after a `# node ADDR` line.
pub fn scrape_metrics(common: &Common) -> String {
    if common.target != Target::Gateway {
        return String::new();
    }
    let admins = common.admin_addrs();
    if let [one] = admins.as_slice() {
        return cluster::metrics_of(*one);
    }
    admins
        .iter()
        .map(|&a| format!("# node {a}\n{}", cluster::metrics_of(a)))
        .collect()
}

//! Worker threads: each gives itself a private descriptor table
//! (`unshare(CLONE_FILES)`) and then builds its own monoio runtime, so N
//! workers hold N times the per-table descriptor limit. A worker opens its
//! share of the connections at its share of the ramp rate and keeps them
//! until told to stop; it talks to the main thread only through
//! [`Shared`] atomics (polled on a timer) and a final [`WorkerReport`].
mod conn;
mod io;
mod post;
mod sweep;

use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use slab::Slab;

use crate::nodes::Placement;
use crate::stats::{Seen, Shared, WorkerReport};
use crate::target::Spec;

/// What every worker does, fixed for the run.
pub struct Plan {
    /// The server and its protocol.
    pub spec: Arc<Spec>,
    /// The nodes' client addresses; user `i` connects to node
    /// `placement.node_of(i, N)`, at the `(i / N) % spread`-th IPv4 address
    /// after that node's (127.0.0.1 .. 127.0.0.spread).
    pub dests: Vec<SocketAddrV4>,
    /// How users are placed on the nodes.
    pub placement: Placement,
    /// How many consecutive IPv4 destinations to spread over.
    pub spread: u32,
    /// Connections in all.
    pub conns: u64,
    /// Connections opened per second, all workers together.
    pub rate: f64,
    /// Connections to keep in flight (connecting) per worker at most.
    pub in_flight: u64,
    /// Heartbeat period of each connection (`None`: no heartbeats).
    pub heartbeat: Option<Duration>,
    /// Ping period while `Shared::pinging` (the `upgrade` scenario), when
    /// the round trips of the pings are recorded (`None`: heartbeats only).
    pub ping: Option<Duration>,
    /// Members per room (`None`: no room; nchan/nats subscribe to the user).
    pub room_size: Option<u64>,
    /// Reconnect after a failure or a drop.
    pub reconnect: bool,
    /// Numbered messages each connection may receive (bitset bound).
    pub max_seq: u64,
    /// Direct messages: total per second (all pairs), body size, and how
    /// long to send.
    pub direct: Option<(f64, usize, Duration)>,
    /// Ready deadline of a connection (connect + upgrade + auth + join).
    pub handshake_timeout: Duration,
    /// Account for every message (the soak): direct sends carry their
    /// number as `client_msg_id`, accepted ones are remembered and checked
    /// against what the receiver got, and latencies are kept per window.
    pub audit: bool,
}

/// What a worker keeps of one of its users across reconnects.
#[derive(Default)]
struct User {
    /// Numbered messages received (on any of its connections).
    seen: Seen,
    /// Highest QoS 1 seq received: the resume point of a reconnect.
    last_seq: u64,
    /// Numbered messages it sent that the server accepted (`audit`).
    accepted: Seen,
}

impl Plan {
    /// The address user `user` connects to.
    fn dest_for(&self, user: u64) -> SocketAddr {
        let n = self.dests.len().max(1);
        let dest = self
            .dests
            .get(self.node_of(user))
            .copied()
            .unwrap_or(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
        let base = u32::from(*dest.ip());
        let off = (user / n as u64) % u64::from(self.spread.max(1));
        let ip = Ipv4Addr::from(base.wrapping_add(u32::try_from(off).unwrap_or(0)));
        SocketAddr::V4(SocketAddrV4::new(ip, dest.port()))
    }

    /// The node (index into `dests`) user `user` connects to.
    pub fn node_of(&self, user: u64) -> usize {
        self.placement.node_of(user, self.dests.len())
    }

    /// The sweeper's tick: a tenth of the shortest ping period, within
    /// 20..100 ms (a shorter tick sends each burst of pings smaller).
    fn tick(&self) -> Duration {
        let shortest = self.heartbeat.into_iter().chain(self.ping).min();
        shortest.map_or(Duration::from_millis(100), |p| {
            (p / 10).clamp(Duration::from_millis(20), Duration::from_millis(100))
        })
    }

    /// The room (or channel, or subject) of `user`.
    pub fn room_of(&self, user: u64) -> Option<String> {
        self.room_size.map(|s| format!("room{}", user / s.max(1)))
    }
}

/// Whether a storm dropping `permille` thousandths of the connections drops
/// `user`'s (a fixed pseudo-random choice, spread over every block of users).
pub fn stormed(user: u64, permille: u32) -> bool {
    user.wrapping_mul(7919) % 1000 < u64::from(permille)
}

/// User name of connection `user`.
pub fn user_name(user: u64) -> String {
    format!("u{user}")
}

/// A connection the worker's sweeper can reach.
struct Slot {
    fd: i32,
    /// The connection's TLS state (with `--tls-ca`).
    tls: Option<crate::tls::Tls>,
    user: u64,
    ready: bool,
    /// Closed by a storm (reconnect without counting a failure).
    stormed: bool,
    /// `--wire sse`: where its frames are POSTed, once the stream said.
    post: Option<Rc<str>>,
}

impl Slot {
    /// Writes `frame` (plaintext) in one non-blocking send, enciphered
    /// first on TLS; false if it did not all fit (the connection's stream
    /// would be corrupt, so it is shut down).
    fn send_whole(&self, frame: &[u8]) -> bool {
        let ok = match &self.tls {
            None => io::send_now(self.fd, frame).is_ok_and(|n| n == frame.len()),
            Some(tls) => {
                let mut cipher = Vec::with_capacity(frame.len() + 64);
                crate::tls::seal(tls, frame, &mut cipher).is_ok()
                    && io::send_now(self.fd, &cipher).is_ok_and(|n| n == cipher.len())
            }
        };
        if !ok {
            io::shutdown(self.fd);
        }
        ok
    }
}

/// One worker's state, owned by its thread.
struct Worker {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    slots: RefCell<Slab<Slot>>,
    /// Slot of each of this worker's users, by `user - first`.
    by_user: RefCell<Vec<Option<usize>>>,
    /// Each of this worker's users, by `user - first`.
    users: RefCell<Vec<User>>,
    /// Latencies since the sweeper last handed them over (`audit`).
    window: RefCell<hdrhistogram::Histogram<u64>>,
    /// Ping round trips since the sweeper last handed them over (with
    /// `Plan::ping`).
    rtt: RefCell<Option<crate::rtt::Rtts>>,
    first: u64,
    /// The shared read buffer: connections hold none while idle.
    buf: RefCell<Box<[u8]>>,
    report: RefCell<WorkerReport>,
    /// Connection tasks still running.
    live: Cell<u64>,
    /// Connection attempts in flight (not yet ready or failed).
    connecting: Cell<u64>,
}

/// Size of each worker's shared read buffer.
const READ_BUF: usize = 256 * 1024;

/// Starts `workers` threads sharing `plan.conns` users; each sends its
/// report on the returned channel when done.
pub fn spawn(
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    workers: u64,
) -> anyhow::Result<(
    Vec<std::thread::JoinHandle<()>>,
    mpsc::Receiver<WorkerReport>,
)> {
    let (tx, rx) = mpsc::channel();
    let workers = workers.max(1);
    // Even-sized blocks keep both users of a direct pair in one worker.
    let per = plan.conns.div_ceil(workers).next_multiple_of(2);
    let mut handles = Vec::new();
    for w in 0..workers {
        let first = (w * per).min(plan.conns);
        let last = ((w + 1) * per).min(plan.conns);
        let (plan, shared, tx) = (plan.clone(), shared.clone(), tx.clone());
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{w}"))
            .spawn(move || {
                let report = run_thread(plan, shared.clone(), first, last);
                shared
                    .workers_done
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = tx.send(report);
            })?;
        handles.push(h);
    }
    Ok((handles, rx))
}

fn run_thread(plan: Arc<Plan>, shared: Arc<Shared>, first: u64, last: u64) -> WorkerReport {
    if let Err(e) = crate::sys::unshare_files() {
        shared.note(&format!("unshare_failed_{}", e.raw_os_error().unwrap_or(0)));
    }
    crate::sys::raise_nofile();
    let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build();
    let mut rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            shared.fail(&format!("runtime_{}", e.kind()));
            return WorkerReport::new();
        }
    };
    let rtt = plan.ping.map(|_| crate::rtt::Rtts::default());
    let worker = Rc::new(Worker {
        plan,
        shared,
        slots: RefCell::new(Slab::new()),
        by_user: RefCell::new(vec![None; usize::try_from(last - first).unwrap_or(0)]),
        users: RefCell::new((first..last).map(|_| User::default()).collect::<Vec<_>>()),
        window: RefCell::new(crate::stats::histogram()),
        rtt: RefCell::new(rtt),
        first,
        buf: RefCell::new(vec![0u8; READ_BUF].into_boxed_slice()),
        report: RefCell::new(WorkerReport::new()),
        live: Cell::new(0),
        connecting: Cell::new(0),
    });
    rt.block_on(run(worker.clone(), first, last));
    let mut report = std::mem::replace(&mut *worker.report.borrow_mut(), WorkerReport::new());
    if worker.plan.audit {
        report.missing = missing(&worker.users.borrow());
    }
    report
}

/// Accepted sends of each sender `2k` whose message its receiver `2k+1`
/// never got.
fn missing(users: &[User]) -> u64 {
    users
        .chunks(2)
        .map(|pair| match pair {
            [from, to] => from
                .accepted
                .iter()
                .filter(|s| !to.seen.contains(*s))
                .count() as u64,
            _ => 0,
        })
        .sum()
}

/// Ramps this worker's users up, then waits for the stop and for every
/// connection task to finish.
async fn run(w: Rc<Worker>, first: u64, last: u64) {
    monoio::spawn(sweep::run(w.clone()));
    if let Some((rate, size, secs)) = w.plan.direct {
        monoio::spawn(sweep::direct(w.clone(), rate, size, secs));
    }
    let workers = w.plan.conns.div_ceil((last - first).max(1)).max(1);
    let rate = (w.plan.rate / workers as f64).max(1.0);
    let start = std::time::Instant::now();
    let mut next = first;
    while next < last && !w.shared.stopping() {
        let due = first + (start.elapsed().as_secs_f64() * rate) as u64;
        while next < last.min(due + 1) && w.connecting.get() < w.plan.in_flight {
            w.live.set(w.live.get() + 1);
            // Counted now, not when the task first runs: the bound holds
            // however many are spawned in one pass.
            w.connecting.set(w.connecting.get() + 1);
            monoio::spawn(conn::run(w.clone(), next));
            next += 1;
        }
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    while w.live.get() > 0 || !w.shared.stopping() {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
}

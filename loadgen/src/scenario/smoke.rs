//! `smoke`: starts a gateway on ephemeral loopback ports and runs every
//! scenario small, checking counts, not speed: every connection ready,
//! every message delivered exactly once (QoS 0 and QoS 1 direct), and no
//! send refused but a bounded few OVERLOADED. Bounded: each step has its own
//! deadline and the whole takes well under a minute.
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::cluster::metric_sum;
use super::{connect, direct, fanout, storm};
use crate::cli::Common;
use crate::report::Outcome;
use crate::target::Wire;

const SECRET: &str = "loadgen-smoke-secret";

/// `send_<code>` notes of refused sends: OVERLOADED (503), the gateway's
/// stated backpressure, is the only refusal the smoke tolerates.
const OVERLOADED_NOTE: &str = "send_503";

/// At the smoke's rates a healthy gateway refuses nothing; this many
/// OVERLOADED refusals per 1000 sends (and no other) are tolerated.
const MAX_OVERLOADED_PER_MILLE: u64 = 10;

/// A step's refused sends: none, or only OVERLOADED within the bound. The
/// scenarios subtract refused sends from what is owed, so without this a
/// gateway refusing every send would pass.
fn check_refusals(o: &mut Outcome) {
    if o.rejected == 0 {
        return;
    }
    let other: Vec<String> = o
        .failures
        .iter()
        .filter(|(k, _)| k.starts_with("send_") && k.as_str() != OVERLOADED_NOTE)
        .map(|(k, v)| format!("{k} x{v}"))
        .collect();
    if !other.is_empty() {
        o.problem(format!(
            "sends refused other than OVERLOADED: {}",
            other.join(", ")
        ));
    }
    let bound = o.messages_published * MAX_OVERLOADED_PER_MILLE / 1000;
    if o.rejected > bound {
        o.problem(format!(
            "{} of {} sends refused (at most {bound} OVERLOADED tolerated)",
            o.rejected, o.messages_published
        ));
    }
}

/// The gateway child, killed when dropped.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Listen addresses from the gateway's `ready ws=.. tcp=.. admin=..` line.
struct Ready {
    ws: SocketAddrV4,
    tcp: SocketAddrV4,
    admin: SocketAddr,
}

fn start(bin: &Path) -> anyhow::Result<(Gateway, Ready)> {
    let mut child = Command::new(bin)
        .args([
            "--ws-listen",
            "127.0.0.1:0",
            "--tcp-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--shards", "2", "--jwt-secret", SECRET])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let gw = Gateway(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("ready ") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .context("the gateway printed no ready line in 10 s")?;
    let field = |k: &str| -> anyhow::Result<String> {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{k}=")).map(str::to_string))
            .with_context(|| format!("no {k}= in {line:?}"))
    };
    let ready = Ready {
        ws: field("ws")?.parse()?,
        tcp: field("tcp")?.parse()?,
        admin: field("admin")?.parse()?,
    };
    Ok((gw, ready))
}

fn common(base: &Common, ready: &Ready, pid: u32, wire: Wire, qos: u8) -> Common {
    let mut c = base.clone();
    c.qos = qos;
    c.target = crate::target::Target::Gateway;
    c.wire = wire;
    c.addr = if wire == Wire::Tcp {
        ready.tcp
    } else {
        ready.ws
    };
    c.addrs = Vec::new();
    c.spread = 1;
    c.admin = ready.admin;
    c.admins = Vec::new();
    c.jwt_secret = Some(SECRET.into());
    c.server_pids = vec![pid];
    c.heartbeat_ms = 500;
    c.workers = 2;
    c.rate = 2000.0;
    c.no_results = true;
    c
}

/// A quarter of the connections in one room, 20 messages of `size` bytes.
fn small_fanout(conns: u64, size: usize) -> fanout::Fanout {
    let n = (conns / 4).max(1);
    fanout::Fanout {
        conns: n,
        room_size: n,
        messages: 20,
        pub_rate: 0.0,
        size,
        drain_secs: 10,
    }
}

/// Runs the smoke; fails unless every step's counts matched.
pub fn run(base: &Common, gateway_bin: &Path, conns: u64) -> anyhow::Result<()> {
    let (gw, ready) = start(gateway_bin)?;
    let pid = gw.0.id();
    let c = |wire| common(base, &ready, pid, wire, 0);
    let q1 = |wire| common(base, &ready, pid, wire, 1);
    type Step<'a> = (&'a str, Box<dyn Fn() -> anyhow::Result<Outcome> + 'a>);
    let steps: Vec<Step> = vec![
        (
            "connect ws",
            Box::new(|| connect::run(&c(Wire::Ws), conns, 2, 20)),
        ),
        (
            "connect ws-json",
            Box::new(|| connect::run(&c(Wire::WsJson), conns, 1, 20)),
        ),
        (
            "connect tcp",
            Box::new(|| connect::run(&c(Wire::Tcp), conns, 1, 20)),
        ),
        (
            "direct ws",
            Box::new(|| direct::run(&c(Wire::Ws), &direct::Direct::new(conns, 2000.0, 1))),
        ),
        (
            "direct ws-json",
            Box::new(|| direct::run(&c(Wire::WsJson), &direct::Direct::new(conns, 1000.0, 1))),
        ),
        (
            "direct tcp qos1",
            Box::new(|| {
                let mut o = direct::run(&q1(Wire::Tcp), &direct::Direct::new(conns, 1000.0, 1))?;
                // The only QoS 1 step on this gateway: every accepted send
                // was stored, once.
                let stored = metric_sum(&o.metrics, "gateway_qos_appends_total");
                if stored != Some(o.expected_deliveries as f64) {
                    o.problem(format!(
                        "gateway_qos_appends_total {stored:?}, {} sends accepted",
                        o.expected_deliveries
                    ));
                }
                Ok(o)
            }),
        ),
        (
            "fanout ws",
            Box::new(|| {
                let f = fanout::Fanout {
                    conns,
                    room_size: (conns / 4).max(1),
                    messages: 50,
                    pub_rate: 0.0,
                    size: 64,
                    drain_secs: 10,
                };
                fanout::run(&c(Wire::Ws), &f)
            }),
        ),
        (
            "fanout sse (the fallback: joins and heartbeats by POST)",
            Box::new(|| fanout::run(&c(Wire::Sse), &small_fanout(conns, 64))),
        ),
        (
            "fanout ws deflate",
            Box::new(|| {
                let mut c = c(Wire::Ws);
                (c.deflate, c.text) = (true, true);
                fanout::run(&c, &small_fanout(conns, 300))
            }),
        ),
        (
            "storm tcp",
            Box::new(|| storm::run(&c(Wire::Tcp), conns, 0.5, 20)),
        ),
    ];
    let mut failed = 0;
    for (name, step) in &steps {
        let outcome = step().map(|mut o| {
            check_refusals(&mut o);
            o
        });
        match outcome {
            Ok(o) if o.ok => println!(
                "ok   {name}: held {} deliveries {}/{} pongs {}",
                o.connections_held, o.deliveries, o.expected_deliveries, o.pongs
            ),
            Ok(o) => {
                failed += 1;
                println!("FAIL {name}: {}", o.problems.join("; "));
                for (k, v) in &o.failures {
                    println!("       {k}: {v}");
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {name}: {e:#}");
            }
        }
    }
    drop(gw);
    println!("smoke: {} passed, {failed} failed", steps.len() - failed);
    if failed > 0 {
        bail!("{failed} smoke steps failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(sent: u64, refused: &[(&str, u64)]) -> Outcome {
        let mut o = Outcome {
            ok: true,
            messages_published: sent,
            ..Outcome::default()
        };
        for (k, v) in refused {
            o.failures.insert((*k).into(), *v);
            o.rejected += v;
        }
        o
    }

    #[test]
    fn refusals_fail_the_smoke() {
        let mut o = outcome(1000, &[]);
        check_refusals(&mut o);
        assert!(o.ok);
        let mut o = outcome(1000, &[(OVERLOADED_NOTE, 10)]);
        check_refusals(&mut o);
        assert!(o.ok, "{:?}", o.problems);
        // Every send refused: the scenario owes nothing, the smoke fails.
        let mut o = outcome(1000, &[(OVERLOADED_NOTE, 1000)]);
        check_refusals(&mut o);
        assert!(!o.ok);
        let mut o = outcome(1000, &[("send_501", 1)]);
        check_refusals(&mut o);
        assert!(!o.ok);
    }
}

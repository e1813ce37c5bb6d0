//! What a run against gateway nodes needs before and after sending: waiting
//! until the cluster knows every room member (`GET /rooms/{room}` on the
//! publisher's node) or every receiver at its sender's node (`GET
//! /presence/{user}`: interest reaches the other nodes asynchronously), and
//! the bus counters of every node's `/metrics`, summed over nodes and peers.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::Client;
use crate::report::Outcome;

/// How long after traffic the shards have published their bus counters
/// (every 2 s).
pub const METRICS_SETTLE: Duration = Duration::from_millis(2500);

/// Time between polls of the admin API.
const POLL: Duration = Duration::from_millis(50);

/// One node's `/metrics` text (empty when unreachable).
pub fn metrics_of(admin: SocketAddr) -> String {
    match Client::new(admin).request("GET", "/metrics", b"") {
        Ok((200, body)) => String::from_utf8_lossy(&body).into_owned(),
        _ => String::new(),
    }
}

/// The sum of every series of `name` in Prometheus text (comment lines
/// skipped); None if there is none or one does not parse.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let values: Vec<Option<f64>> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(k, _)| k.split('{').next() == Some(name))
        .map(|(_, v)| v.parse::<f64>().ok())
        .collect();
    if values.is_empty() {
        return None;
    }
    values.into_iter().sum()
}

/// The bus counters, summed over every node and peer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bus {
    /// `gateway_bus_bytes_out_total`.
    pub bytes: f64,
    /// `gateway_bus_envelopes_out_total`.
    pub envelopes: f64,
    /// `gateway_bus_batches_out_total`.
    pub batches: f64,
}

impl Bus {
    /// The counters in one or more nodes' metrics text.
    pub fn of(text: &str) -> Bus {
        let sum = |name| metric_sum(text, name).unwrap_or(0.0);
        Bus {
            bytes: sum("gateway_bus_bytes_out_total"),
            envelopes: sum("gateway_bus_envelopes_out_total"),
            batches: sum("gateway_bus_batches_out_total"),
        }
    }

    /// Scrapes every node in `admins`.
    pub fn scrape(admins: &[SocketAddr]) -> Bus {
        let text: String = admins.iter().map(|&a| metrics_of(a) + "\n").collect();
        Bus::of(&text)
    }

    /// What was sent between `before` and `self`.
    pub fn since(self, before: Bus) -> Bus {
        Bus {
            bytes: self.bytes - before.bytes,
            envelopes: self.envelopes - before.envelopes,
            batches: self.batches - before.batches,
        }
    }

    /// Records the traffic in `o.extra`: totals, bytes per delivery and
    /// envelopes per published message.
    pub fn record(self, o: &mut Outcome) {
        let per = |x: f64, n: u64| if n > 0 { x / n as f64 } else { 0.0 };
        let (d, m) = (o.deliveries, o.messages_published);
        let e = &mut o.extra;
        e.insert("bus_bytes_out".into(), self.bytes.into());
        e.insert("bus_envelopes_out".into(), self.envelopes.into());
        e.insert("bus_batches_out".into(), self.batches.into());
        e.insert("bus_bytes_per_delivery".into(), per(self.bytes, d).into());
        e.insert(
            "bus_envelopes_per_message".into(),
            per(self.envelopes, m).into(),
        );
        e.insert("bus_bytes_per_message".into(), per(self.bytes, m).into());
    }
}

fn get_json(c: &mut Client, path: &str) -> Option<Value> {
    match c.request("GET", path, b"") {
        Ok((200, body)) => serde_json::from_slice(&body).ok(),
        _ => None,
    }
}

/// Waits until `rooms`' members, as `admin` reports them for the whole
/// cluster, add up to `want`. Returns the seconds waited, or why not.
pub fn wait_rooms(
    admin: SocketAddr,
    rooms: u64,
    want: u64,
    timeout: Duration,
) -> Result<f64, String> {
    let start = Instant::now();
    let mut c = Client::new(admin);
    loop {
        let mut total = 0;
        let mut unreachable = 0;
        for r in 0..rooms {
            let v = get_json(&mut c, &format!("/rooms/room{r}")).unwrap_or_default();
            total += v["members"].as_u64().unwrap_or(0);
            unreachable += v["unreachable"].as_array().map_or(0, Vec::len);
        }
        if total >= want && unreachable == 0 {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "after {:.0} s {admin} reports {total} of {want} room members ({unreachable} nodes unreachable)",
                timeout.as_secs_f64()
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until each `(node, user)` is online at that node's admin
/// (`admins[node]`: its `/presence` asks the nodes its interest table
/// names). Returns the seconds waited, or why not.
pub fn wait_presence(
    admins: &[SocketAddr],
    checks: Vec<(usize, String)>,
    timeout: Duration,
) -> Result<f64, String> {
    let start = Instant::now();
    let mut clients: Vec<Client> = admins.iter().map(|&a| Client::new(a)).collect();
    let total = checks.len();
    let mut pending = checks;
    loop {
        pending.retain(|(node, user)| {
            let Some(c) = clients.get_mut(*node) else {
                return true;
            };
            let v = get_json(c, &format!("/presence/{user}")).unwrap_or_default();
            v["online"].as_bool() != Some(true)
        });
        if pending.is_empty() {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > timeout {
            let (node, user) = pending.first().cloned().unwrap_or_default();
            let at = admins
                .get(node)
                .map(ToString::to_string)
                .unwrap_or_default();
            return Err(format!(
                "after {:.0} s {} of {total} receivers still unknown at their sender's node (e.g. {user} at {at})",
                timeout.as_secs_f64(),
                pending.len()
            ));
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums() {
        let text = "# HELP x\nx{shard=\"0\"} 2\nx{shard=\"1\"} 3\nxy 7\n";
        assert_eq!(metric_sum(text, "x"), Some(5.0));
        assert_eq!(metric_sum(text, "xy"), Some(7.0));
        assert_eq!(metric_sum(text, "z"), None);
    }

    #[test]
    fn bus_counters_sum_over_nodes_and_peers() {
        let node = |b: u32, e: u32| {
            format!(
                "# node x\ngateway_bus_bytes_out_total{{peer=\"a\"}} {b}\n\
                 gateway_bus_bytes_out_total{{peer=\"b\"}} {b}\n\
                 gateway_bus_envelopes_out_total{{peer=\"a\"}} {e}\n\
                 gateway_bus_batches_out_total{{peer=\"a\"}} 1\n"
            )
        };
        let before = Bus::of(&node(10, 1));
        let after = Bus::of(&(node(110, 3) + &node(50, 2)));
        assert_eq!(
            after.since(before),
            Bus {
                bytes: 300.0,
                envelopes: 4.0,
                batches: 1.0
            }
        );
        let mut o = Outcome {
            deliveries: 100,
            messages_published: 2,
            ..Outcome::default()
        };
        after.since(before).record(&mut o);
        assert_eq!(o.extra["bus_bytes_per_delivery"], 3.0);
        assert_eq!(o.extra["bus_envelopes_per_message"], 2.0);
    }
}

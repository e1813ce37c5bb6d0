//! `GET /route`: which node a client should connect to, by the configured
//! policy, over the registry's live, non-draining nodes. Pure: the caller
//! passes the nodes and the round-robin turn.
use std::sync::Arc;

use serde::Serialize;

use super::{NodeInfo, View};
use crate::config::RoutePolicy;

/// The answer: `{"node": ID, "ws": "ws://HOST:PORT/ws", "tcp": "HOST:PORT"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Route {
    /// The chosen node's id.
    pub node: String,
    /// Its WebSocket URL.
    pub ws: String,
    /// Its raw TCP address.
    pub tcp: String,
}

impl Route {
    /// The answer naming `n`.
    pub(crate) fn to(n: &NodeInfo) -> Route {
        Route {
            node: n.id.clone(),
            ws: format!("ws://{}/ws", n.ws),
            tcp: n.tcp.clone(),
        }
    }
}

/// Answers `GET /route?user=U&room=R` from the node's registry view:
/// `Ok(None)` when every node drains, `Err` for a malformed query.
pub(crate) fn answer(
    view: &View,
    policy: RoutePolicy,
    query: &str,
) -> Result<Option<Route>, &'static str> {
    let (mut user, mut room) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = proto::handshake::percent_decode(v).map_err(|_| "bad percent-encoding")?;
        match k {
            "user" => user = Some(v),
            "room" => room = Some(v),
            _ => {}
        }
    }
    let nodes = view.nodes();
    let turn = view.next_turn();
    Ok(pick(policy, &nodes, user.as_deref(), room.as_deref(), turn).map(Route::to))
}

/// `GET /route` on the client port (plain HTTP, no upgrade), for sessions.
pub(crate) fn http_hook(view: Arc<View>, policy: RoutePolicy) -> crate::session::HttpHook {
    Arc::new(move |target: &str| {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if path != "/route" {
            return None;
        }
        Some(match answer(&view, policy, query) {
            Ok(Some(r)) => (200, serde_json::to_string(&r).unwrap_or_default()),
            Ok(None) => (
                503,
                r#"{"error":"no node accepts clients (all draining)"}"#.into(),
            ),
            Err(e) => (400, serde_json::json!({ "error": e }).to_string()),
        })
    })
}

/// Picks a node for a client of `user` that wants `room`; `None` when every
/// node drains. `nodes` must be sorted by id (the registry's order).
pub(crate) fn pick<'a>(
    policy: RoutePolicy,
    nodes: &'a [NodeInfo],
    user: Option<&str>,
    room: Option<&str>,
    turn: usize,
) -> Option<&'a NodeInfo> {
    let live: Vec<&NodeInfo> = nodes.iter().filter(|n| !n.draining).collect();
    if live.is_empty() {
        return None;
    }
    match policy {
        RoutePolicy::LeastConns => live.into_iter().min_by_key(|n| (n.conns, n.id.as_str())),
        RoutePolicy::RoundRobin => Some(live[turn % live.len()]),
        RoutePolicy::HashRoom => Some(rendezvous(&live, room.or(user).unwrap_or(""))),
        RoutePolicy::HashUser => Some(rendezvous(&live, user.or(room).unwrap_or(""))),
    }
}

/// Highest-random-weight hashing: the node whose hash with `key` is the
/// largest. A node joining or leaving moves only the keys it wins or held.
fn rendezvous<'a>(live: &[&'a NodeInfo], key: &str) -> &'a NodeInfo {
    live.iter()
        .copied()
        .max_by_key(|n| {
            (
                fnv1a(&[n.id.as_bytes(), b"\0", key.as_bytes()]),
                n.id.as_str(),
            )
        })
        .expect("live is not empty")
}

/// FNV-1a 64 with a final mix: stable across processes and releases (the
/// std hasher is not promised to be).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // splitmix64 finaliser: FNV's high bits alone mix poorly.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, conns: u64, draining: bool) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            incarnation: 1,
            bus: vec![],
            ws: format!("{id}:1"),
            tcp: format!("{id}:2"),
            admin: format!("{id}:3"),
            conns,
            draining,
            version: String::new(),
            pid: 0,
        }
    }

    #[test]
    fn least_conns_skips_draining_nodes() {
        let nodes = [node("a", 5, false), node("b", 1, true), node("c", 3, false)];
        let n = pick(RoutePolicy::LeastConns, &nodes, None, None, 0).unwrap();
        assert_eq!(n.id, "c");
        let r = Route::to(n);
        assert_eq!(r.ws, "ws://c:1/ws");
        assert_eq!(r.tcp, "c:2");
    }

    #[test]
    fn round_robin_visits_every_live_node() {
        let nodes = [node("a", 0, false), node("b", 0, true), node("c", 0, false)];
        let got: Vec<_> = (0..4)
            .map(|t| {
                pick(RoutePolicy::RoundRobin, &nodes, None, None, t)
                    .unwrap()
                    .id
                    .clone()
            })
            .collect();
        assert_eq!(got, ["a", "c", "a", "c"]);
    }

    #[test]
    fn hashing_is_stable_and_moves_only_the_leavers_keys() {
        let three = [
            node("a", 0, false),
            node("b", 0, false),
            node("c", 0, false),
        ];
        let mut two = three.clone();
        two[1].draining = true;
        let mut spread = std::collections::HashMap::new();
        for i in 0..300 {
            let room = format!("room-{i}");
            let before = pick(RoutePolicy::HashRoom, &three, None, Some(&room), 0).unwrap();
            let again = pick(RoutePolicy::HashRoom, &three, Some("x"), Some(&room), 7).unwrap();
            assert_eq!(
                before.id, again.id,
                "the room decides, not the user or turn"
            );
            let after = pick(RoutePolicy::HashRoom, &two, None, Some(&room), 0).unwrap();
            if before.id != "b" {
                assert_eq!(before.id, after.id, "{room} moved though its node stayed");
            }
            assert_ne!(after.id, "b");
            *spread.entry(before.id.clone()).or_insert(0) += 1;
        }
        assert!(
            spread.values().all(|&n| n > 60),
            "uneven spread: {spread:?}"
        );
        let by_user = pick(RoutePolicy::HashUser, &three, Some("alice"), Some("r"), 0).unwrap();
        let same = pick(RoutePolicy::HashUser, &three, Some("alice"), Some("q"), 0).unwrap();
        assert_eq!(by_user.id, same.id);
    }

    #[test]
    fn no_answer_when_every_node_drains() {
        let nodes = [node("a", 0, true)];
        assert!(pick(RoutePolicy::LeastConns, &nodes, None, None, 0).is_none());
        assert!(pick(RoutePolicy::HashRoom, &[], None, Some("r"), 0).is_none());
    }
}

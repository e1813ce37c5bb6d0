//! The admin API's cluster-wide answers: `GET /presence/{user}` and
//! `GET /rooms/{room}`, and requests forwarded to a peer (`?node=`). This node answers for itself from its shards. For
//! its peers, presence comes from Redis (`cluster::presence`), and room
//! counts from the peers its interest tables name (the nodes with members),
//! each asked for its local part (`?local=1`) with a short timeout: a peer
//! (or Redis) that does not answer is listed under `unreachable`.
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Control, ControlError};

/// How long one peer's admin API may take to answer.
const PEER_TIMEOUT: Duration = Duration::from_millis(1000);

/// `GET /presence/{user}`: every connection of the user in the cluster.
pub(super) fn presence(
    control: &Control,
    user: &str,
    local_only: bool,
) -> Result<Value, ControlError> {
    let p = control.presence(user)?;
    let me = &control.node().config.node_id;
    let mut conns: Vec<Value> = p
        .local
        .iter()
        .map(|e| json!({ "node": me, "conn_id": e.conn_id, "shard": e.shard, "device": &*e.device, "transport": e.wire.transport() }))
        .collect();
    let mut nodes: Vec<String> = if conns.is_empty() {
        vec![]
    } else {
        vec![me.clone()]
    };
    let mut unreachable = Vec::new();
    match (&control.node().presence, local_only) {
        (_, true) => {}
        // On a cluster: the peers' part from Redis (live nodes only).
        (Some(store), false) => {
            let view = control.node().view.nodes();
            let live: Vec<(String, u64)> =
                view.iter().map(|n| (n.id.clone(), n.incarnation)).collect();
            match store.read(user, &live) {
                Ok(parts) => {
                    // This node's part came from its shards, fresher.
                    for (node, list) in parts.into_iter().filter(|(n, _)| n != me) {
                        nodes.push(node.clone());
                        conns.extend(list.into_iter().map(|mut c| {
                            c["node"] = json!(node);
                            c
                        }));
                    }
                }
                Err(e) => {
                    tracing::debug!("presence read failed: {e}");
                    unreachable.push("redis".to_owned());
                }
            }
        }
        (None, false) => {
            let path = format!("/presence/{}?local=1", percent_encode(user));
            for (node, answer) in ask_peers(control, &p.nodes, &path) {
                match answer.as_ref().and_then(|v| v["connections"].as_array()) {
                    Some(list) => {
                        conns.extend(list.iter().cloned());
                        nodes.push(node.to_string());
                    }
                    None => unreachable.push(node.to_string()),
                }
            }
        }
    }
    nodes.sort();
    // The peers this node routes the user's messages to (its interest
    // table): the same as `nodes` but for the moments interest travels.
    let routed_to: Vec<&str> = p.nodes.iter().map(|n| &**n).collect();
    Ok(
        json!({ "user": user, "online": !conns.is_empty(), "nodes": nodes, "routed_to": routed_to, "connections": conns, "unreachable": unreachable }),
    )
}

/// `GET /rooms/{room}`: members per node and in total.
pub(super) fn room(control: &Control, room: &str, local_only: bool) -> Result<Value, ControlError> {
    let (members, peers) = control.room(room)?;
    let me = control.node().config.node_id.clone();
    let mut per_node = serde_json::Map::new();
    if members > 0 {
        per_node.insert(me, json!(members));
    }
    let mut total = members as u64;
    let mut unreachable = Vec::new();
    if !local_only {
        let path = format!("/rooms/{}?local=1", percent_encode(room));
        for (node, answer) in ask_peers(control, &peers, &path) {
            match answer.as_ref().and_then(|v| v["members"].as_u64()) {
                Some(0) => {}
                Some(n) => {
                    total += n;
                    per_node.insert(node.to_string(), json!(n));
                }
                None => unreachable.push(node.to_string()),
            }
        }
    }
    Ok(json!({ "room": room, "members": total, "nodes": per_node, "unreachable": unreachable }))
}

/// Asks each of `nodes` (by the registry's admin address) for `path`.
fn ask_peers(control: &Control, nodes: &[Arc<str>], path: &str) -> Vec<(Arc<str>, Option<Value>)> {
    let view = control.node().view.nodes();
    nodes
        .iter()
        .map(|node| {
            let addr = view
                .iter()
                .find(|n| *n.id == **node)
                .map(|n| n.admin.clone());
            let token = admin_token(control);
            (
                node.clone(),
                addr.and_then(|a| get_json(&a, path, token.as_deref())),
            )
        })
        .collect()
}

/// A bounded GET of a JSON body from a peer's admin API (200 only).
fn get_json(host: &str, path: &str, token: Option<&str>) -> Option<Value> {
    match call(host, "GET", path, token, PEER_TIMEOUT)? {
        (200, v) => Some(v),
        _ => None,
    }
}

/// One bounded request to a peer's admin API, without a body: its status
/// and JSON answer. The peer's `Host` is its registry address (what it
/// accepts for itself), and this node's admin token goes along (the nodes
/// of one cluster share it).
fn call(
    host: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Option<(u16, Value)> {
    let addr = host.to_socket_addrs().ok()?.next()?;
    let mut s = TcpStream::connect_timeout(&addr, PEER_TIMEOUT).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(PEER_TIMEOUT)).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let length = if method == "POST" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}{length}Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.take(1 << 20).read_to_end(&mut raw).ok()?;
    let text = std::str::from_utf8(&raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    Some((status, serde_json::from_str(body).ok()?))
}

/// `?node=ID` on `GET /series`, `POST /drain`, `/reload` and `/upgrade`:
/// the request made to node `id`'s admin API (by the registry's address),
/// its status and answer passed back; 404 for a node the registry does not
/// list, 502 when it does not answer (an upgrade may take up to a minute).
pub(super) fn forward(control: &Control, id: &str, method: &str, path: &str) -> (u16, Value) {
    let view = control.node().view.nodes();
    let Some(peer) = view.iter().find(|n| n.id == id) else {
        return (
            404,
            json!({ "error": format!("no node {id} in the registry") }),
        );
    };
    let timeout = match path {
        "/upgrade" => Duration::from_secs(60),
        _ => Duration::from_secs(5),
    };
    let token = admin_token(control);
    match call(&peer.admin, method, path, token.as_deref(), timeout) {
        Some(answer) => answer,
        None => (502, json!({ "error": format!("node {id} did not answer") })),
    }
}

/// The admin token in force (from `admin.token` or `admin.token_file`, as
/// last reloaded): what this node sends its peers.
fn admin_token(control: &Control) -> Option<String> {
    control
        .node()
        .admin_token
        .with(|t| t.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

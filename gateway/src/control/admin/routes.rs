//! The admin API's handlers: a parsed request in, a response out. They
//! call [`Control`], which may block briefly (a full shard inbox, a shard's
//! reply, a peer's HTTP answer): the server runs them on its blocking pool.
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use crate::control::{Control, Target};

/// What the body of a state-changing request must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyRule {
    /// `Content-Type: application/json` (`POST /push`).
    Json,
    /// JSON, or no `Content-Type` and an empty body (`POST /drain`,
    /// `POST /kick/{user}`: they take no body).
    JsonOrEmpty,
}

/// The body rule of a state-changing endpoint; `None` for the others.
pub(super) fn body_rule(method: &str, path: &str) -> Option<BodyRule> {
    match (method, path) {
        ("POST", "/push") => Some(BodyRule::Json),
        ("POST", "/drain") => Some(BodyRule::JsonOrEmpty),
        ("POST", "/upgrade") => Some(BodyRule::JsonOrEmpty),
        ("POST", "/reload") => Some(BodyRule::JsonOrEmpty),
        ("POST", p) if p.starts_with("/kick/") => Some(BodyRule::JsonOrEmpty),
        _ => None,
    }
}

/// A response before it is framed.
pub(super) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Further headers (the console's policy, a redirect's location).
    pub headers: &'static [(&'static str, &'static str)],
}

fn reply(status: u16, body: serde_json::Value) -> Response {
    Response {
        status,
        content_type: "application/json",
        body: body.to_string() + "\n",
        headers: &[],
    }
}

fn text(status: u16, content_type: &'static str, body: String) -> Response {
    Response {
        status,
        content_type,
        body,
        headers: &[],
    }
}

pub(super) fn error(status: u16, message: &str) -> Response {
    reply(status, json!({ "error": message }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    user: Option<String>,
    room: Option<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    rooms: Vec<String>,
    text: Option<String>,
    payload_b64: Option<String>,
    #[serde(default)]
    qos: u8,
}

/// Answers one request; `path` includes the query.
pub(super) fn route(control: &Control, method: &str, path: &str, body: &[u8]) -> Response {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    if let Some(node) = forwarded_to(control, method, path, query) {
        return match node {
            Ok(id) => {
                let (status, answer) =
                    crate::control::cluster_api::forward(control, &id, method, path);
                reply(status, answer)
            }
            Err(e) => error(400, e),
        };
    }
    match (method, path) {
        ("GET", "/nodes") => {
            let nodes = control.node().view.nodes();
            reply(200, json!({ "nodes": &*nodes }))
        }
        ("GET", "/route") => match crate::cluster::route::answer(
            &control.node().view,
            control.node().config.cluster.route_policy,
            query,
        ) {
            Ok(Some(r)) => reply(200, json!(r)),
            Ok(None) => error(503, "no node accepts clients (all draining)"),
            Err(e) => error(400, e),
        },
        ("GET", "/healthz") if control.is_draining() => {
            text(503, "text/plain", "draining\n".into())
        }
        ("GET", "/healthz") => text(200, "text/plain", "ok\n".into()),
        ("GET", "/metrics") => text(200, "text/plain; version=0.0.4", control.metrics()),
        ("GET", "/series") => reply(200, control.series()),
        ("GET", p) if super::console::is_console(p) => {
            super::console::asset(p).unwrap_or_else(|| error(404, "not found"))
        }
        ("POST", "/push") => push(control, body),
        ("POST", "/drain") => {
            control.drain();
            reply(202, json!({ "draining": true }))
        }
        ("POST", "/upgrade") => match control.upgrade() {
            Ok(done) => reply(200, json!(done)),
            Err(e) => {
                let status = match e {
                    crate::control::upgrade::UpgradeError::Busy(_) => 409,
                    _ => 500,
                };
                reply(status, json!({ "upgraded": false, "error": e.to_string() }))
            }
        },
        ("POST", "/reload") => match control.reload() {
            Ok(()) => reply(200, json!({ "reloaded": true })),
            Err(e) => reply(422, json!({ "reloaded": false, "error": e.to_string() })),
        },
        ("GET", p) if p.starts_with("/presence/") => with_user(p, "/presence/", |user| {
            let local = query.split('&').any(|q| q == "local=1");
            crate::control::cluster_api::presence(control, user, local).map(|v| reply(200, v))
        }),
        ("GET", p) if p.starts_with("/rooms/") => with_user(p, "/rooms/", |room| {
            let local = query.split('&').any(|q| q == "local=1");
            crate::control::cluster_api::room(control, room, local).map(|v| reply(200, v))
        }),
        ("POST", p) if p.starts_with("/kick/") => with_user(p, "/kick/", |user| {
            control
                .kick(user)
                .map(|n| reply(200, json!({ "kicked": n })))
        }),
        (
            _,
            "/healthz" | "/metrics" | "/push" | "/drain" | "/reload" | "/upgrade" | "/nodes"
            | "/route" | "/series",
        ) => error(405, "method not allowed"),
        _ => error(404, "not found"),
    }
}

/// The node named by `?node=` on a request another node may answer
/// (`GET /series`, `POST /drain`, `/reload`, `/upgrade`), when it is not
/// this one.
fn forwarded_to(
    control: &Control,
    method: &str,
    path: &str,
    query: &str,
) -> Option<Result<String, &'static str>> {
    let forwardable = matches!(
        (method, path),
        ("GET", "/series") | ("POST", "/drain" | "/reload" | "/upgrade")
    );
    let value = query.split('&').find_map(|q| q.strip_prefix("node="))?;
    if !forwardable {
        return None;
    }
    let id = match proto::handshake::percent_decode(value) {
        Ok(id) if !id.is_empty() => id,
        _ => return Some(Err("bad node id in ?node=")),
    };
    (id != control.node().config.node_id).then_some(Ok(id))
}

fn with_user(
    path: &str,
    prefix: &str,
    f: impl FnOnce(&str) -> Result<Response, crate::control::ControlError>,
) -> Response {
    let Ok(user) = proto::handshake::percent_decode(&path[prefix.len()..]) else {
        return error(400, "bad percent-encoding in the user id");
    };
    if user.is_empty() || user.contains('/') {
        return error(400, "expected a user id after the prefix");
    }
    f(&user).unwrap_or_else(|e| error(503, &e.to_string()))
}

fn push(control: &Control, body: &[u8]) -> Response {
    let req: PushBody = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return error(400, &format!("bad JSON: {e}")),
    };
    let batch = !req.users.is_empty() || !req.rooms.is_empty();
    let mut targets: Vec<Target> = Vec::new();
    targets.extend(req.user.into_iter().map(Target::User));
    targets.extend(req.room.into_iter().map(Target::Room));
    targets.extend(req.users.into_iter().map(Target::User));
    targets.extend(req.rooms.into_iter().map(Target::Room));
    let max_name = control.node().config.limits.max_name_bytes;
    let name_ok = |t: &Target| match t {
        Target::User(n) | Target::Room(n) => !n.is_empty() && n.len() <= max_name,
    };
    if targets.is_empty() || !targets.iter().all(name_ok) {
        return error(
            400,
            "give a user, a room, or users/rooms lists of non-empty names",
        );
    }
    if targets.len() > 1000 {
        return error(413, "at most 1000 targets per push");
    }
    let payload = match (req.text, req.payload_b64) {
        (Some(t), None) => t.into_bytes(),
        (None, Some(b)) => match base64::engine::general_purpose::STANDARD.decode(b) {
            Ok(p) => p,
            Err(e) => return error(400, &format!("bad payload_b64: {e}")),
        },
        _ => return error(400, "give exactly one of text or payload_b64"),
    };
    if payload.len()
        > control
            .node()
            .config
            .limits
            .max_frame_bytes
            .saturating_sub(256)
    {
        return error(413, "payload over the node's frame limit");
    }
    if req.qos > 1 {
        return error(400, "qos is 0 or 1");
    }
    if !batch && targets.len() == 1 {
        let target = targets.pop().expect("one target");
        if let Err(wait) = control.take_rate(&target) {
            let ms = wait.as_millis().max(1) as u64;
            return reply(
                429,
                json!({ "accepted": false, "error": "RATE_LIMITED", "retry_after_ms": ms }),
            );
        }
        return match control.push(target, payload, req.qos == 1) {
            Ok(msg_id) => reply(200, json!({ "accepted": true, "msg_id": msg_id })),
            Err(e) => error(503, &e.to_string()),
        };
    }
    // A batch: one result per target, in order.
    let results: Vec<_> = targets
        .into_iter()
        .map(|t| {
            let name = match &t {
                Target::User(u) => json!({ "user": u }),
                Target::Room(r) => json!({ "room": r }),
            };
            if let Err(wait) = control.take_rate(&t) {
                let ms = wait.as_millis().max(1) as u64;
                return json!({ "target": name, "accepted": false, "error": "RATE_LIMITED", "retry_after_ms": ms });
            }
            match control.push(t, payload.clone(), req.qos == 1) {
                Ok(msg_id) => json!({ "target": name, "accepted": true, "msg_id": msg_id }),
                Err(e) => json!({ "target": name, "accepted": false, "error": e.to_string() }),
            }
        })
        .collect();
    reply(200, json!({ "results": results }))
}

//! The authorization hook: the backend decides joins and publishes over
//! HTTP (`backend.authorize_url`), when the token's `rooms` claim (if any)
//! already allows them.
//!
//! A request is `POST <url>` with `{"action": "join"|"publish", "user",
//! "device", "room", "node", "conn"}`; the answer is `200 {"allow": bool}`
//! (any other answer is "no"). Answers are cached per (user, action, room)
//! for `backend.authorize_cache_secs`. At most
//! `backend.authorize_concurrency` requests are in flight (that many worker
//! threads); each waits `backend.authorize_timeout_ms` at most. When the
//! backend cannot be reached (refused, timeout, the queue full), the policy
//! `backend.authorize_when_down` decides: `deny` (default) or `allow`.
//! The decision goes back to the connection's shard through the mesh.
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde_json::json;

use crate::control::node::Node;
use crate::mesh::DataMsg;
use crate::store::ReplyTo;

/// Requests queued at most (past it: the down policy answers at once).
const QUEUE: usize = 4096;
/// Cached answers at most.
const MAX_CACHED: usize = 100_000;

/// What is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Join a room.
    Join,
    /// Send to a room.
    Publish,
}

/// One question for the backend.
pub struct Ask {
    /// What.
    pub action: Action,
    /// Who.
    pub user: Arc<str>,
    /// Its device.
    pub device: Arc<str>,
    /// Where.
    pub room: Arc<str>,
    /// The connection to answer.
    pub reply: ReplyTo,
    /// The send waiting for the answer (publish).
    pub send: Option<Box<proto::v1::Send>>,
}

/// Counters of the hook.
#[derive(Default)]
pub struct Counters {
    /// Answers from the backend.
    pub asked: AtomicU64,
    /// Answers from the cache.
    pub cached: AtomicU64,
    /// Decided by `authorize_when_down` (backend unreachable or behind).
    pub down: AtomicU64,
}

type Cache = Mutex<HashMap<(Arc<str>, Action, Arc<str>), (bool, Instant)>>;

/// The node's hook: a queue and its workers.
pub struct Hook {
    tx: Sender<Ask>,
    cache: Arc<Cache>,
    node: Arc<Node>,
    /// For metrics.
    pub counters: Arc<Counters>,
}

impl Hook {
    /// Starts the workers (when `backend.authorize_url` is set).
    pub fn start(node: Arc<Node>) -> anyhow::Result<Option<Hook>> {
        let b = &node.config.backend;
        let Some(url) = b.authorize_url.clone() else {
            return Ok(None);
        };
        let target = Target::parse(&url)?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let cache: Arc<Cache> = Arc::default();
        let counters: Arc<Counters> = Arc::default();
        for i in 0..b.authorize_concurrency.max(1) {
            let w = Worker {
                node: node.clone(),
                rx: rx.clone(),
                target: target.clone(),
                cache: cache.clone(),
                counters: counters.clone(),
            };
            std::thread::Builder::new()
                .name(format!("hook-{i}"))
                .spawn(move || w.run())?;
        }
        Ok(Some(Hook {
            tx,
            cache,
            node,
            counters,
        }))
    }

    /// Asks (from a shard: never blocks); a cached answer comes at once.
    pub fn ask(&self, ask: Ask) {
        let key = (ask.user.clone(), ask.action, ask.room.clone());
        let hit = self.cache.lock().ok().and_then(|c| c.get(&key).copied());
        if let Some((allow, until)) = hit.filter(|(_, until)| Instant::now() < *until) {
            let _ = until;
            self.counters.cached.fetch_add(1, Ordering::Relaxed);
            return answer(&self.node, ask, allow);
        }
        if let Err(e) = self.tx.try_send(ask) {
            self.counters.down.fetch_add(1, Ordering::Relaxed);
            let allow = self.node.config.backend.authorize_when_down_allows();
            answer(&self.node, e.into_inner(), allow);
        }
    }
}

/// Sends the decision to the connection's shard.
fn answer(node: &Node, ask: Ask, allow: bool) {
    let msg = DataMsg::Authorized {
        reply: ask.reply,
        action: ask.action,
        room: ask.room,
        allow,
        send: ask.send,
    };
    let _ = node
        .mesh
        .push_blocking(ask.reply.shard as usize, msg.into(), Duration::from_secs(2));
}

#[derive(Clone)]
struct Target {
    host: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("backend.authorize_url must be an http:// URL"))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        Ok(Target {
            host: host.to_owned(),
            path: format!("/{path}"),
        })
    }
}

struct Worker {
    node: Arc<Node>,
    rx: Receiver<Ask>,
    target: Target,
    cache: Arc<Cache>,
    counters: Arc<Counters>,
}

impl Worker {
    fn run(self) {
        let b = &self.node.config.backend;
        let timeout = Duration::from_millis(b.authorize_timeout_ms.max(1));
        let ttl = Duration::from_secs(b.authorize_cache_secs);
        while let Ok(ask) = self.rx.recv() {
            let body = json!({
                "action": match ask.action { Action::Join => "join", Action::Publish => "publish" },
                "user": &*ask.user,
                "device": &*ask.device,
                "room": &*ask.room,
                "node": &self.node.config.node_id,
                "conn": ask.reply.conn_id,
            })
            .to_string();
            let allow = match self.post(&body, timeout) {
                Some(allow) => {
                    self.counters.asked.fetch_add(1, Ordering::Relaxed);
                    if !ttl.is_zero() {
                        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                        if c.len() >= MAX_CACHED {
                            let now = Instant::now();
                            c.retain(|_, (_, until)| *until > now);
                        }
                        if c.len() < MAX_CACHED {
                            let key = (ask.user.clone(), ask.action, ask.room.clone());
                            c.insert(key, (allow, Instant::now() + ttl));
                        }
                    }
                    allow
                }
                None => {
                    self.counters.down.fetch_add(1, Ordering::Relaxed);
                    b.authorize_when_down_allows()
                }
            };
            answer(&self.node, ask, allow);
        }
    }

    /// The backend's answer, or `None` when it could not be had in time.
    fn post(&self, body: &str, timeout: Duration) -> Option<bool> {
        let addr = self.target.host.to_socket_addrs().ok()?.next()?;
        let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        s.set_write_timeout(Some(timeout)).ok()?;
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.target.path,
            self.target.host,
            body.len()
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut raw = Vec::new();
        s.take(64 * 1024).read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return Some(false);
        }
        let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
        Some(v["allow"].as_bool() == Some(true))
    }
}

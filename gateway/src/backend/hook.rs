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
//! The decision goes back to the connection's shard as a `mesh::Reply`,
//! which never blocks and is never dropped: a shard asking with a cached
//! answer (or a full queue) is answered through its own reply queue, not by
//! waiting on its own full mesh queue.
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde_json::json;

use crate::config::BackendConfig;
use crate::mesh::{Mesh, Reply};
use crate::store::ReplyTo;

/// Requests queued at most (past it: the down policy answers at once).
const QUEUE: usize = 4096;
/// Cached answers at most.
const MAX_CACHED: usize = 100_000;

pub use crate::session::Action;

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
    mesh: Arc<Mesh>,
    when_down_allows: bool,
    /// For metrics.
    pub counters: Arc<Counters>,
}

impl Hook {
    /// Starts the workers (when `backend.authorize_url` is set); answers
    /// go to the asking connection's shard through `mesh`.
    pub fn start(
        b: &BackendConfig,
        node_id: &str,
        mesh: Arc<Mesh>,
    ) -> Result<Option<Hook>, HookError> {
        let Some(url) = b.authorize_url.clone() else {
            return Ok(None);
        };
        let target = Target::parse(&url)?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let cache: Arc<Cache> = Arc::default();
        let counters: Arc<Counters> = Arc::default();
        for i in 0..b.authorize_concurrency.max(1) {
            let w = Worker {
                mesh: mesh.clone(),
                node_id: node_id.to_owned(),
                timeout: Duration::from_millis(b.authorize_timeout_ms.max(1)),
                ttl: Duration::from_secs(b.authorize_cache_secs),
                when_down_allows: b.authorize_when_down_allows(),
                rx: rx.clone(),
                target: target.clone(),
                cache: cache.clone(),
                counters: counters.clone(),
            };
            std::thread::Builder::new()
                .name(format!("hook-{i}"))
                .spawn(move || w.run())
                .map_err(HookError::Thread)?;
        }
        Ok(Some(Hook {
            tx,
            cache,
            mesh,
            when_down_allows: b.authorize_when_down_allows(),
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
            return answer(&self.mesh, ask, allow);
        }
        if let Err(e) = self.tx.try_send(ask) {
            self.counters.down.fetch_add(1, Ordering::Relaxed);
            answer(&self.mesh, e.into_inner(), self.when_down_allows);
        }
    }
}

/// Sends the decision to the connection's shard (never blocks, never lost).
fn answer(mesh: &Mesh, ask: Ask, allow: bool) {
    let msg = Reply::Authorized {
        reply: ask.reply,
        action: ask.action,
        room: ask.room,
        allow,
        send: ask.send,
    };
    mesh.reply(ask.reply.shard as usize, msg);
}

/// Why the hook could not start.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// `backend.authorize_url` is not an `http://` URL.
    #[error("backend.authorize_url must be an http:// URL, not {0:?}")]
    Url(String),
    /// A worker thread could not be started.
    #[error("cannot start the hook's workers: {0}")]
    Thread(std::io::Error),
}

#[derive(Clone)]
struct Target {
    host: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, HookError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| HookError::Url(url.to_owned()))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        Ok(Target {
            host: host.to_owned(),
            path: format!("/{path}"),
        })
    }
}

struct Worker {
    mesh: Arc<Mesh>,
    node_id: String,
    timeout: Duration,
    ttl: Duration,
    when_down_allows: bool,
    rx: Receiver<Ask>,
    target: Target,
    cache: Arc<Cache>,
    counters: Arc<Counters>,
}

impl Worker {
    fn run(self) {
        let (timeout, ttl) = (self.timeout, self.ttl);
        while let Ok(ask) = self.rx.recv() {
            let body = json!({
                "action": match ask.action { Action::Join => "join", Action::Publish => "publish" },
                "user": &*ask.user,
                "device": &*ask.device,
                "room": &*ask.room,
                "node": &self.node_id,
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
                    self.when_down_allows
                }
            };
            answer(&self.mesh, ask, allow);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::{Command, ShardMsg};

    fn ask(shard: u16) -> Ask {
        Ask {
            action: Action::Join,
            user: Arc::from("u"),
            device: Arc::from("d"),
            room: Arc::from("r"),
            reply: ReplyTo {
                shard,
                key: 3,
                conn_id: 9,
            },
            send: None,
        }
    }

    /// The stall this module once had: a cached answer asked for on a shard
    /// whose own mesh queue is full was pushed to that queue with a blocking
    /// retry (the shard slept up to 2 s) and then dropped, so the join was
    /// never answered. The answer now goes to the reply queue at once.
    #[test]
    fn a_cached_answer_reaches_a_shard_whose_queue_is_full() {
        let mesh = Arc::new(Mesh::new(1, 1).unwrap());
        assert!(mesh
            .try_push(0, Command::Drain(Default::default()).into())
            .is_ok());
        assert!(
            mesh.try_push(0, Command::Drain(Default::default()).into())
                .is_err(),
            "full"
        );
        let cfg = BackendConfig {
            // Nothing listens there: only the cache answers.
            authorize_url: Some("http://127.0.0.1:9/authorize".into()),
            authorize_cache_secs: 60,
            ..BackendConfig::default()
        };
        let hook = Hook::start(&cfg, "n1", mesh.clone()).unwrap().unwrap();
        let key = (Arc::from("u"), Action::Join, Arc::from("r"));
        let until = Instant::now() + Duration::from_secs(60);
        hook.cache.lock().unwrap().insert(key, (true, until));

        hook.ask(ask(0));

        match mesh.pop_reply(0) {
            Some(Reply::Authorized {
                allow, reply, room, ..
            }) => {
                assert!(allow);
                assert_eq!((reply.key, reply.conn_id), (3, 9));
                assert_eq!(&*room, "r");
            }
            _ => panic!("the decision was not delivered"),
        }
        assert_eq!(hook.counters.cached.load(Ordering::Relaxed), 1);
        // The full data queue was left as it was.
        assert!(matches!(
            mesh.pop(0),
            Some(ShardMsg::Command(Command::Drain(_)))
        ));
    }

    #[test]
    fn a_url_that_is_not_http_is_refused() {
        let mesh = Arc::new(Mesh::new(1, 1).unwrap());
        let cfg = BackendConfig {
            authorize_url: Some("https://backend/authorize".into()),
            ..BackendConfig::default()
        };
        let err = Hook::start(&cfg, "n1", mesh).err().expect("refused");
        assert!(matches!(err, HookError::Url(_)), "{err}");
    }
}

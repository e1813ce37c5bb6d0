//! The authorization hook: the backend decides joins and publishes over
//! HTTP (`backend.authorize_url`), when the token's `rooms` claim (if any)
//! already allows them.
//!
//! A request is `POST <url>` with `{"action": "join"|"publish", "user",
//! "device", "room", "node", "conn"}`; the answer is `200 {"allow": bool}`
//! (any other status is "no"; a body past 64 KiB or one that is not that
//! JSON counts as no answer). Answers are cached per (user, action, room)
//! for `backend.authorize_cache_secs`. At most
//! `backend.authorize_concurrency` requests are in flight: that many worker
//! threads, each asking one question at a time with hyper's HTTP/1.1 client
//! on its own current-thread tokio runtime. Each worker keeps its
//! connection open between questions (keep-alive) and reuses it; a kept
//! connection the backend has closed meanwhile is found on use, and the
//! question is asked once more on a new connection. Each question waits
//! `backend.authorize_timeout_ms` at most, all included (name lookup,
//! connect, the retry, the answer); a question that timed out or failed
//! closes its connection. When the backend cannot be reached (refused,
//! timeout, the queue full), the policy `backend.authorize_when_down`
//! decides: `deny` (default) or `allow`.
//! The decision goes back to the connection's shard as a `mesh::Reply`,
//! which never blocks and is never dropped: a shard asking with a cached
//! answer (or a full queue) is answered through its own reply queue, not by
//! waiting on its own full mesh queue.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::config::BackendConfig;
use crate::mesh::{Mesh, Reply};
use crate::store::ReplyTo;

/// Requests queued at most (past it: the down policy answers at once).
const QUEUE: usize = 4096;
/// Cached answers at most.
const MAX_CACHED: usize = 100_000;
/// An answer's body is read up to this many bytes.
const MAX_BODY: usize = 64 * 1024;

pub(crate) use crate::session::Action;

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
        let target = Arc::new(Target::parse(&url)?);
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let cache: Arc<Cache> = Arc::default();
        let counters: Arc<Counters> = Arc::default();
        for i in 0..b.authorize_concurrency.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                // Name lookups of a host name (an IP address needs none).
                .max_blocking_threads(1)
                .thread_name(format!("hook-{i}-dns"))
                .build()
                .map_err(HookError::Runtime)?;
            let w = Worker {
                mesh: mesh.clone(),
                node_id: node_id.to_owned(),
                ttl: Duration::from_secs(b.authorize_cache_secs),
                when_down_allows: b.authorize_when_down_allows(),
                rx: rx.clone(),
                cache: cache.clone(),
                counters: counters.clone(),
                runtime,
                client: Client {
                    target: target.clone(),
                    timeout: Duration::from_millis(b.authorize_timeout_ms.max(1)),
                    conn: None,
                },
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
    /// A worker's runtime could not be built.
    #[error("cannot start the hook's workers: no runtime: {0}")]
    Runtime(std::io::Error),
}

/// Where the questions go, parsed once.
struct Target {
    /// The host to connect to (no brackets around an IPv6 address).
    host: String,
    port: u16,
    /// The `Host` header.
    authority: HeaderValue,
    /// The request target: path and query.
    path: Uri,
}

impl Target {
    fn parse(url: &str) -> Result<Target, HookError> {
        let bad = || HookError::Url(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let auth = uri.authority().ok_or_else(bad)?;
        if auth.host().is_empty() {
            return Err(bad());
        }
        let authority = match auth.port() {
            Some(port) => format!("{}:{port}", auth.host()),
            None => auth.host().to_owned(),
        };
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") => "/",
            Some(p) => p,
        };
        Ok(Target {
            host: auth
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: auth.port_u16().unwrap_or(80),
            authority: HeaderValue::from_str(&authority).map_err(|_| bad())?,
            path: path.parse().map_err(|_| bad())?,
        })
    }
}

struct Worker {
    mesh: Arc<Mesh>,
    node_id: String,
    ttl: Duration,
    when_down_allows: bool,
    rx: Receiver<Ask>,
    cache: Arc<Cache>,
    counters: Arc<Counters>,
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Worker {
    fn run(mut self) {
        let ttl = self.ttl;
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
            let allow = match self.runtime.block_on(self.client.post(Bytes::from(body))) {
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
}

/// One worker's HTTP/1.1 client: one kept connection at most.
struct Client {
    target: Arc<Target>,
    timeout: Duration,
    conn: Option<SendRequest<Full<Bytes>>>,
}

/// Why a question got no answer.
enum Failed {
    /// The connection gave no answer at all (closed, reset, refused): on a
    /// kept connection, the backend may have closed it while it was idle.
    NoAnswer,
    /// An answer came but could not be read or understood.
    Unreadable,
}

impl Client {
    /// The backend's answer, or `None` when it could not be had in time.
    async fn post(&mut self, body: Bytes) -> Option<bool> {
        match tokio::time::timeout(self.timeout, self.exchange(body)).await {
            Ok(Ok(allow)) => Some(allow),
            Ok(Err(_)) | Err(_) => {
                // Mid-question or broken: never reused.
                self.conn = None;
                None
            }
        }
    }

    /// Asks on the kept connection, or (when there is none, or it gave no
    /// answer) on a new one.
    async fn exchange(&mut self, body: Bytes) -> Result<bool, Failed> {
        if let Some(mut conn) = self.conn.take() {
            if conn.ready().await.is_ok() {
                match self.request(&mut conn, body.clone()).await {
                    Ok((allow, keep)) => {
                        self.conn = keep.then_some(conn);
                        return Ok(allow);
                    }
                    Err(Failed::NoAnswer) => {} // once more, on a new one
                    Err(e) => return Err(e),
                }
            }
        }
        let mut conn = self.connect().await?;
        let (allow, keep) = self.request(&mut conn, body).await?;
        self.conn = keep.then_some(conn);
        Ok(allow)
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Failed> {
        let t = &*self.target;
        let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|_| Failed::NoAnswer)?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|_| Failed::NoAnswer)?;
        // Runs while the worker's runtime does (during its questions);
        // ends when `send` is dropped or the backend closes.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    /// One question on `conn`: the decision, and whether `conn` can be kept.
    async fn request(
        &self,
        conn: &mut SendRequest<Full<Bytes>>,
        body: Bytes,
    ) -> Result<(bool, bool), Failed> {
        let t = &*self.target;
        let req = Request::post(t.path.clone())
            .header(HOST, t.authority.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|_| Failed::Unreadable)?;
        let resp = conn.send_request(req).await.map_err(|_| Failed::NoAnswer)?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY).collect().await;
        if status != StatusCode::OK {
            // "No", whatever the body; read so that the connection is kept.
            return Ok((false, body.is_ok()));
        }
        let body = body.map_err(|_| Failed::Unreadable)?.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| Failed::Unreadable)?;
        Ok((v["allow"].as_bool() == Some(true), true))
    }
}

#[cfg(test)]
#[path = "hook_tests.rs"]
mod tests;

//! Cluster presence in Redis: for each user, a hash `im:{<user>}:presence`
//! (the user's hash tag, so its slot is the user's) of node id -> that
//! node's incarnation and connections of the user (JSON
//! `{"inc": N, "conns": [{conn_id, shard, device, transport}]}`).
//!
//! Written in batches: a user's owner shard marks the user when a
//! connection comes or goes and, once per timer tick, hands the writer
//! thread (`presence`) the new value of every user it marked (coalesced:
//! one write per user per tick, whatever the number of connection events);
//! the thread sends each batch as one pipeline. Nothing is written per
//! heartbeat or per message. When Redis is down the latest value of each
//! user waits (one per user) and is written once Redis is back.
//!
//! A node that dies leaves its fields behind: readers keep only fields of
//! nodes the registry lists (a dead node leaves it within its TTL), and
//! delete a field written by an earlier incarnation of a listed node (it
//! restarted: the field is stale). A field of a node not listed is left
//! alone (a node that just joined may not be in every view yet) and
//! expires a day after its last write. A node that stops gracefully closes
//! its connections, which deletes its fields.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::Value;

use super::presence_events::{EventsConfig, Tracker};
use super::View;
use crate::redis_client::{Client, Lazy};
use crate::store::redis::presence_key;

/// One user's new value on this node: its connections as JSON, or `None`
/// when it has none left here.
pub(crate) type Update = (Arc<str>, Option<String>);

/// Batches queued for the writer at most (each is one shard's tick).
const QUEUE: usize = 4096;
/// Redis timeouts of the writer and readers.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Presence keys outlive their last write by this much (a whole cluster
/// that died leaves nothing forever).
const KEY_TTL_MS: u64 = 86_400_000;

/// The node's presence in Redis: the writer's queue, and reads.
pub struct Presence {
    node_id: String,
    incarnation: u64,
    tx: Sender<Vec<Update>>,
    rx: Mutex<Option<Receiver<Vec<Update>>>>,
    client: Client,
    reader: Mutex<Lazy>,
    /// Users written (set or deleted).
    pub writes: AtomicU64,
    /// Pipelines Redis refused or did not answer.
    pub errors: AtomicU64,
    /// Batches dropped because the writer's queue was full.
    pub dropped: AtomicU64,
    /// With `backend.events`: where `online`/`offline` go, and the view
    /// that says which nodes are live (`cluster::presence_events`).
    events: Option<(EventsConfig, Arc<View>)>,
    /// `online` and `offline` events appended.
    pub told: [AtomicU64; 2],
    /// Events dropped because Redis refused appends long enough for the
    /// outbox to fill (`presence_events::OUTBOX`).
    pub events_dropped: AtomicU64,
}

impl Presence {
    /// The presence of node `node_id` on `redis` (not yet writing: `start`).
    pub(crate) fn new(
        node_id: &str,
        incarnation: u64,
        redis: &str,
        access: &crate::config::RedisAccess,
        events: Option<(EventsConfig, Arc<View>)>,
    ) -> Result<Presence, PresenceError> {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let client = Client::open(redis, access, TIMEOUT).map_err(PresenceError::Url)?;
        Ok(Presence {
            node_id: node_id.to_owned(),
            incarnation,
            tx,
            rx: Mutex::new(Some(rx)),
            reader: Mutex::new(Lazy::new(client.clone(), TIMEOUT, TIMEOUT)),
            client,
            writes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            events,
            told: Default::default(),
            events_dropped: AtomicU64::new(0),
        })
    }

    /// The node's presence, if any: on a cluster, and on a single node
    /// whose backend hears `online`/`offline` (`backend.events`); both need
    /// `redis`. `view` says which nodes are live.
    pub fn from_config(
        config: &crate::config::Config,
        incarnation: u64,
        view: &Arc<View>,
    ) -> Result<Option<Arc<Presence>>, PresenceError> {
        let Some(url) = &config.redis else {
            return Ok(None);
        };
        if !config.cluster.enabled() && !config.backend.events {
            return Ok(None);
        }
        let events = config.backend.events.then(|| {
            let cfg = EventsConfig {
                stream: config.backend.events_stream.clone(),
                maxlen: config.backend.events_maxlen,
                grace_ms: config.presence.offline_grace_ms,
            };
            (cfg, view.clone())
        });
        let p = Presence::new(
            &config.node_id,
            incarnation,
            url,
            &config.redis_access,
            events,
        )?;
        Ok(Some(Arc::new(p)))
    }

    /// Queues one shard's batch (never blocks a shard).
    pub fn submit(&self, batch: Vec<Update>) {
        if self.tx.try_send(batch).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts the writer thread.
    pub fn start(self: &Arc<Self>) -> Result<(), PresenceError> {
        let Some(rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return Err(PresenceError::Started);
        };
        let me = self.clone();
        std::thread::Builder::new()
            .name("presence".into())
            .spawn(move || me.write_loop(rx))
            .map_err(PresenceError::Thread)?;
        Ok(())
    }

    fn write_loop(&self, rx: Receiver<Vec<Update>>) {
        let mut pending: HashMap<Arc<str>, Option<String>> = HashMap::new();
        let mut redis = Lazy::new(self.client.clone(), TIMEOUT, TIMEOUT)
            .logged("presence", "cannot write (kept, retrying)");
        let mut tracker = self.events.as_ref().map(|(cfg, view)| {
            Tracker::new(cfg.clone(), &self.node_id, self.incarnation, view.clone())
        });
        loop {
            let wait = match pending.is_empty() && tracker.is_none() {
                true => Duration::from_secs(3600),
                false => Duration::from_millis(200),
            };
            match rx.recv_timeout(wait) {
                Ok(batch) => pending.extend(batch),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(batch) = rx.try_recv() {
                pending.extend(batch);
            }
            if !pending.is_empty() {
                self.write(&mut redis, &mut pending, tracker.as_mut());
            }
            if let Some(t) = &mut tracker {
                if t.tick(&mut redis).is_err() {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                }
                self.told[0].store(t.told[0], Ordering::Relaxed);
                self.told[1].store(t.told[1], Ordering::Relaxed);
                self.events_dropped.store(t.dropped, Ordering::Relaxed);
            }
        }
    }

    /// Writes every pending user as one pipeline (kept on a failure).
    fn write(
        &self,
        redis: &mut Lazy,
        pending: &mut HashMap<Arc<str>, Option<String>>,
        mut tracker: Option<&mut Tracker>,
    ) {
        let mut cmds = Vec::with_capacity(pending.len() * 3);
        // Per user: where its script's reply is, for an online write.
        let mut online = Vec::new();
        for (user, value) in pending.iter() {
            match &tracker {
                Some(t) => {
                    if value.is_some() {
                        online.push((user.clone(), cmds.len()));
                    }
                    cmds.extend(t.write_cmds(user, value.clone(), KEY_TTL_MS));
                }
                None => cmds.push(self.command(user, value)),
            }
        }
        match redis.with(|c| c.pipeline(cmds)) {
            Ok(replies) => {
                if let Some(t) = &mut tracker {
                    for (user, at) in online {
                        if let Some(reply) = replies.get(at) {
                            t.written(&user, reply);
                        }
                    }
                }
                self.writes
                    .fetch_add(pending.len() as u64, Ordering::Relaxed);
                pending.clear();
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn command(&self, user: &str, value: &Option<String>) -> redis::Cmd {
        let key = presence_key("im", user);
        match value {
            Some(v) => {
                // HSET and PEXPIRE in one atomic step, one reply.
                let mut c = redis::cmd("EVAL");
                c.arg("redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return redis.call('PEXPIRE', KEYS[1], ARGV[3])")
                    .arg(1)
                    .arg(key)
                    .arg(&self.node_id)
                    .arg(format!("{{\"inc\":{},\"conns\":{v}}}", self.incarnation))
                    .arg(KEY_TTL_MS);
                c
            }
            None => {
                let mut c = redis::cmd("HDEL");
                c.arg(key).arg(&self.node_id);
                c
            }
        }
    }

    /// The user's connections on every node `live` lists (id and
    /// incarnation), from Redis; fields of an earlier incarnation of a
    /// listed node are deleted (a later one is kept and read: the view is
    /// older than the node's restart).
    pub fn read(
        &self,
        user: &str,
        live: &[(String, u64)],
    ) -> Result<Vec<(String, Vec<Value>)>, PresenceError> {
        let mut reader = self.reader.lock().map_err(|_| PresenceError::Poisoned)?;
        let key = presence_key("im", user);
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg(&key);
        let fields: HashMap<String, String> = reader
            .with(|c| c.query(&hgetall))
            .map_err(PresenceError::Read)?;
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for (node, json) in fields {
            let Some((_, inc)) = live.iter().find(|(id, _)| *id == node) else {
                continue;
            };
            let v: Value = serde_json::from_str(&json).unwrap_or_default();
            // Incarnations only grow: an older one is a dead process's
            // leftover; a newer one is the node restarted (or upgraded)
            // since this reader's view, and is live.
            if v["inc"].as_u64().is_none_or(|i| i < *inc) {
                stale.push(node);
                continue;
            }
            let conns = v["conns"].as_array().cloned().unwrap_or_default();
            out.push((node, conns));
        }
        if !stale.is_empty() {
            let mut hdel = redis::cmd("HDEL");
            hdel.arg(&key).arg(&stale);
            // Best effort, as before: a failure here keeps the connection.
            if let Ok(conn) = reader.get() {
                let _ = conn.query::<()>(&hdel);
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Why presence could not start or be read.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// `redis` is not a Redis URL (the operator's config).
    #[error("redis url (presence): {0}")]
    Url(redis::RedisError),
    /// `start` was called twice (a bug of the caller).
    #[error("presence writer already started")]
    Started,
    /// The writer's thread could not be started (the OS).
    #[error("cannot start the presence writer: {0}")]
    Thread(std::io::Error),
    /// A reader panicked while holding the connection (a bug).
    #[error("presence reader poisoned")]
    Poisoned,
    /// Redis did not answer the read (down, unreachable or refusing).
    #[error("{0}")]
    Read(redis::RedisError),
}

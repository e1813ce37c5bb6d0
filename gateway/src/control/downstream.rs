//! The downstream consumer: the backend's pushes from a Redis stream.
//!
//! Every node is one consumer (named by its node id) of one consumer group
//! (`backend.downstream_group`) on `backend.downstream_stream`, so each
//! entry is handled by one node and routed over the bus to wherever its
//! recipients are. An entry is acknowledged (XACK) only after every message
//! in it was handed to the router. Entries a node read and never
//! acknowledged (it died) are claimed by a live node once idle for
//! `backend.claim_idle_ms` (XAUTOCLAIM), so none is lost. A claimed QoS 1
//! entry is stored once (its id, or the entry id, is the dedupe id); a
//! claimed QoS 0 entry may reach a device twice.
//!
//! Entry fields (strings unless said): `user`, `room`, `users`, `rooms`
//! (comma-separated lists), at least one of them; `payload` (bytes) or
//! `text`; `qos` (`0` or `1`, default 0); `id` (optional dedupe id).
//! An entry with no target or no payload is acknowledged and counted as
//! malformed. Over `backend.rate_per_target`, the consumer waits for the
//! target's bucket: the stream is the queue, nothing grows in memory.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::RedisResult;

use crate::control::{Control, Target};
use crate::redis_client::{Client, Conn, Lazy};

/// Entries read per call.
const COUNT: usize = 256;
/// How long one read blocks in Redis.
const BLOCK_MS: u64 = 1000;

/// Counters of the consumer, for metrics.
#[derive(Default)]
pub struct Counters {
    /// Entries handled and acknowledged.
    pub entries: AtomicU64,
    /// Entries claimed from a consumer that stopped acknowledging.
    pub claimed: AtomicU64,
    /// Entries acknowledged without a push (no target or payload).
    pub malformed: AtomicU64,
    /// Failed Redis calls.
    pub errors: AtomicU64,
}

/// Starts the consumer thread of this node.
pub fn start(control: Control, counters: Arc<Counters>) -> Result<(), DownstreamError> {
    let node = control.node();
    let Some(url) = node.config.redis.clone() else {
        return Ok(());
    };
    let timeout = Duration::from_millis(BLOCK_MS * 3);
    let access = &node.config.redis_access;
    let client = Client::open(&url, access, timeout).map_err(DownstreamError::Url)?;
    let b = &node.config.backend;
    let mut create = redis::cmd("XGROUP");
    create
        .arg("CREATE")
        .arg(&b.downstream_stream)
        .arg(&b.downstream_group)
        .arg("0")
        .arg("MKSTREAM");
    let redis = Lazy::new(client, timeout, timeout)
        .logged("downstream", "cannot read the stream (retrying)")
        // Every new connection makes sure the group exists.
        .on_connect(move |conn| match conn.query::<()>(&create) {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e),
            _ => Ok(()),
        });
    std::thread::Builder::new()
        .name("downstream".into())
        .spawn(move || {
            Consumer {
                control,
                counters,
                redis,
            }
            .run()
        })
        .map_err(DownstreamError::Thread)?;
    Ok(())
}

/// Why the consumer could not start.
#[derive(Debug, thiserror::Error)]
pub enum DownstreamError {
    /// `redis` is not a Redis URL (the operator's config).
    #[error("redis url (downstream): {0}")]
    Url(redis::RedisError),
    /// The consumer's thread could not be started (the OS).
    #[error("cannot start the downstream consumer: {0}")]
    Thread(std::io::Error),
}

struct Consumer {
    control: Control,
    counters: Arc<Counters>,
    redis: Lazy,
}

impl Consumer {
    fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        let mut next_claim = Instant::now();
        loop {
            if self.control.node().handed_over.load(Ordering::SeqCst) {
                // An upgrade's new process consumes now (resumed if the
                // upgrade aborts); what this one read and did not ack is
                // claimed there.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            let claim = Instant::now() >= next_claim;
            let (control, counters) = (&self.control, &*self.counters);
            let round = |conn: &mut Conn| {
                Round {
                    conn,
                    control,
                    counters,
                }
                .run(claim)
            };
            match self.redis.with(round) {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    if claim {
                        let idle = self.control.node().config.backend.claim_idle_ms;
                        next_claim = Instant::now() + Duration::from_millis((idle / 2).max(100));
                    }
                }
                Err(_) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// One round on a connection.
struct Round<'a> {
    conn: &'a mut Conn,
    control: &'a Control,
    counters: &'a Counters,
}

impl Round<'_> {
    /// One read (and, when due, one claim of idle entries).
    fn run(&mut self, claim: bool) -> RedisResult<()> {
        let node = self.control.node();
        let b = node.config.backend.clone();
        let me = node.config.node_id.clone();
        if claim {
            let mut c = redis::cmd("XAUTOCLAIM");
            c.arg(&b.downstream_stream)
                .arg(&b.downstream_group)
                .arg(&me);
            c.arg(b.claim_idle_ms).arg("0-0").arg("COUNT").arg(COUNT);
            let reply: StreamAutoClaimReply = self.conn.query(&c)?;
            self.counters
                .claimed
                .fetch_add(reply.claimed.len() as u64, Ordering::Relaxed);
            self.handle(&b.downstream_stream, &b.downstream_group, reply.claimed)?;
        }
        let mut c = redis::cmd("XREADGROUP");
        c.arg("GROUP")
            .arg(&b.downstream_group)
            .arg(&me)
            .arg("COUNT")
            .arg(COUNT);
        c.arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&b.downstream_stream)
            .arg(">");
        let reply: Option<StreamReadReply> = self.conn.query(&c)?;
        let entries = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        self.handle(&b.downstream_stream, &b.downstream_group, entries)
    }

    /// Pushes each entry, then acknowledges what was pushed (one XACK).
    fn handle(&mut self, stream: &str, group: &str, entries: Vec<StreamId>) -> RedisResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut done = Vec::with_capacity(entries.len());
        for e in &entries {
            match self.push(e) {
                Ok(()) => done.push(e.id.clone()),
                // Not handed on (the node is overloaded): stays pending,
                // read again by a claim.
                Err(err) => {
                    tracing::debug!("downstream: entry {} not pushed: {err}", e.id);
                    break;
                }
            }
        }
        if !done.is_empty() {
            let mut ack = redis::cmd("XACK");
            ack.arg(stream).arg(group).arg(&done);
            self.conn.query::<()>(&ack)?;
            self.counters
                .entries
                .fetch_add(done.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn push(&self, e: &StreamId) -> Result<(), crate::control::ControlError> {
        let text = |k: &str| e.get::<String>(k).filter(|s| !s.is_empty());
        let mut targets = Vec::new();
        let list = |k: &str| {
            text(k)
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        targets.extend(text("user").map(Target::User));
        targets.extend(text("room").map(Target::Room));
        targets.extend(list("users").into_iter().map(Target::User));
        targets.extend(list("rooms").into_iter().map(Target::Room));
        let payload = e
            .get::<Vec<u8>>("payload")
            .or_else(|| text("text").map(String::into_bytes));
        let (Some(payload), false) = (payload, targets.is_empty()) else {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("downstream: entry {} has no target or payload", e.id);
            return Ok(());
        };
        let qos1 = text("qos").as_deref() == Some("1");
        let id = text("id").unwrap_or_else(|| e.id.clone());
        for target in targets {
            self.control.wait_for_rate(&target);
            self.control
                .push_with(target, payload.clone(), qos1, Some(&format!("ds-{id}")))?;
        }
        Ok(())
    }
}

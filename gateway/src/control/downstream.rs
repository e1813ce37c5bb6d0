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

use crate::control::{Control, Target};
use crate::store::redis::conn::{Client, Conn};

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
pub fn start(control: Control, counters: Arc<Counters>) -> anyhow::Result<()> {
    let node = control.node();
    let Some(url) = node.config.redis.clone() else {
        return Ok(());
    };
    let timeout = Duration::from_millis(BLOCK_MS * 3);
    let client = Client::open(&url, timeout)?;
    std::thread::Builder::new()
        .name("downstream".into())
        .spawn(move || {
            Consumer {
                control,
                client,
                counters,
                conn: None,
            }
            .run()
        })?;
    Ok(())
}

struct Consumer {
    control: Control,
    client: Client,
    counters: Arc<Counters>,
    conn: Option<Conn>,
}

impl Consumer {
    fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        let mut next_claim = Instant::now();
        let mut down = false;
        loop {
            let claim = Instant::now() >= next_claim;
            match self.round(claim) {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    if std::mem::take(&mut down) {
                        tracing::info!("downstream: redis answers again");
                    }
                    if claim {
                        let idle = self.control.node().config.backend.claim_idle_ms;
                        next_claim = Instant::now() + Duration::from_millis((idle / 2).max(100));
                    }
                }
                Err(e) => {
                    self.conn = None;
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    if !std::mem::replace(&mut down, true) {
                        tracing::warn!("downstream: cannot read the stream (retrying): {e}");
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn conn(&mut self) -> anyhow::Result<&mut Conn> {
        if self.conn.is_none() {
            let t = Duration::from_millis(BLOCK_MS * 3);
            let mut conn = self.client.connect(t, t)?;
            let b = &self.control.node().config.backend;
            let mut create = redis::cmd("XGROUP");
            create
                .arg("CREATE")
                .arg(&b.downstream_stream)
                .arg(&b.downstream_group)
                .arg("0")
                .arg("MKSTREAM");
            match conn.query::<()>(&create) {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    /// One read (and, when due, one claim of idle entries).
    fn round(&mut self, claim: bool) -> anyhow::Result<()> {
        let node = self.control.node();
        let b = node.config.backend.clone();
        let me = node.config.node_id.clone();
        if claim {
            let mut c = redis::cmd("XAUTOCLAIM");
            c.arg(&b.downstream_stream)
                .arg(&b.downstream_group)
                .arg(&me);
            c.arg(b.claim_idle_ms).arg("0-0").arg("COUNT").arg(COUNT);
            let reply: StreamAutoClaimReply = self.conn()?.query(&c)?;
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
        let reply: Option<StreamReadReply> = self.conn()?.query(&c)?;
        let entries = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        self.handle(&b.downstream_stream, &b.downstream_group, entries)
    }

    /// Pushes each entry, then acknowledges what was pushed (one XACK).
    fn handle(&mut self, stream: &str, group: &str, entries: Vec<StreamId>) -> anyhow::Result<()> {
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
            self.conn()?.query::<()>(&ack)?;
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

//! The upstream writer of one shard: client sends to `backend` and
//! lifecycle events, appended to their Redis streams.
//!
//! One thread (`upstream-N`) per shard with one connection. `submit` only
//! queues (a bounded channel; a full queue refuses the send with
//! OVERLOADED, never blocks the shard). The thread takes everything queued
//! (up to [`MAX_BATCH`]) and sends it as ONE pipeline: one round trip per
//! batch, not per message. Each send's outcome goes back to its
//! connection's shard through the mesh as a `SendResult`, only after the
//! append: accepted with the message id, or UNAVAILABLE when Redis failed
//! (the client retries; a QoS 1 send with the same client message id is
//! appended once, by a dedupe record next to the stream).
//!
//! Entry fields (all strings but `payload`, raw bytes): sends have `user`,
//! `device`, `node`, `conn`, `client_msg_id`, `msg_id`, `ts` (Unix ms),
//! `qos` (`0`/`1`), `payload`; events have `type` (`connect`,
//! `disconnect`, `join`, `leave`, `refresh`), `user`, `device`, `node`,
//! `conn`, `ts`, and `room` (join, leave), `reason` (disconnect) or `exp`
//! (refresh).
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use proto::v1::{ErrorCode, SendResult};

use crate::config::BackendConfig;
use crate::mesh::{Mesh, Reply};
use crate::redis_client::{Client, Lazy};
use crate::store::ReplyTo;

/// Most operations in one pipeline.
pub(crate) const MAX_BATCH: usize = 512;
/// Operations queued per shard at most (past it, sends get OVERLOADED).
const QUEUE: usize = 16_384;
/// Redis timeouts.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Appends a QoS 1 send unless its dedupe record exists; returns the
/// message id the client gets (the first one's, for a retry).
const APPEND: &str = "local prev = redis.call('GET', KEYS[2]) \
    if prev then return prev end \
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 4)) \
    redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2]) \
    return ARGV[3]";

/// One entry's fields, in order.
pub(crate) type Fields = Vec<(&'static str, Bytes)>;

/// What the writer is asked to do.
pub(crate) enum Op {
    /// A client's send to the backend.
    Send {
        /// The entry.
        fields: Fields,
        /// Dedupe record key suffix (QoS 1 with a client message id).
        dedupe: Option<(String, String)>,
        /// The server message id.
        msg_id: String,
        /// The client's id, echoed in the result.
        client_msg_id: String,
        /// Where the result goes.
        reply: ReplyTo,
    },
    /// A lifecycle event.
    Event(Fields),
}

/// A shard's handle on its writer.
pub(crate) struct Upstream {
    tx: Sender<Op>,
}

impl Upstream {
    /// Starts the writer of shard `shard`: `backend` names the streams,
    /// `dedupe_secs` is how long a QoS 1 send's id is remembered, and the
    /// results of sends go back to the shard through `mesh`'s replies.
    pub(crate) fn start(
        shard: usize,
        url: &str,
        access: &crate::config::RedisAccess,
        backend: BackendConfig,
        dedupe_secs: u64,
        mesh: Arc<Mesh>,
    ) -> Result<Upstream, UpstreamError> {
        let client = Client::open(url, access, TIMEOUT)?;
        let redis = Lazy::new(client, TIMEOUT, TIMEOUT)
            .logged("upstream", "cannot append (sends refused UNAVAILABLE)")
            .on_connect(|conn| {
                let mut load = redis::cmd("SCRIPT");
                load.arg("LOAD").arg(APPEND);
                conn.query::<redis::Value>(&load).map(drop)
            });
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        std::thread::Builder::new()
            .name(format!("upstream-{shard}"))
            .spawn(move || {
                Writer {
                    backend,
                    dedupe_ms: dedupe_secs.saturating_mul(1000).max(1),
                    mesh,
                    redis,
                }
                .run(rx)
            })?;
        Ok(Upstream { tx })
    }

    /// Queues `op`; gives it back when the queue is full.
    pub(crate) fn submit(&self, op: Op) -> Result<(), Box<Op>> {
        self.tx.try_send(op).map_err(|e| match e {
            TrySendError::Full(op) | TrySendError::Disconnected(op) => Box::new(op),
        })
    }
}

/// Why a shard's upstream writer could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The Redis URL is not one.
    #[error("redis url: {0}")]
    Url(#[from] redis::RedisError),
    /// The writer's thread could not be started.
    #[error("cannot start the upstream writer: {0}")]
    Thread(#[from] std::io::Error),
}

struct Writer {
    backend: BackendConfig,
    dedupe_ms: u64,
    mesh: Arc<Mesh>,
    redis: Lazy,
}

/// Why a batch was not appended.
#[derive(Debug, thiserror::Error)]
enum AppendError {
    /// Redis failed or refused the pipeline.
    #[error("{0}")]
    Redis(redis::RedisError),
    /// Redis answered with the wrong number of replies.
    #[error("redis: {got} replies to {sent} commands")]
    Replies { got: usize, sent: usize },
}

impl From<redis::RedisError> for AppendError {
    fn from(e: redis::RedisError) -> Self {
        AppendError::Redis(e)
    }
}

/// The append script's SHA1 (loaded at every connect; EVALSHA per send).
fn append_sha() -> &'static str {
    static SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHA.get_or_init(|| redis::Script::new(APPEND).get_hash().to_owned())
}

impl Writer {
    fn run(mut self, rx: Receiver<Op>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Ok(first) = rx.recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.write(&mut batch);
        }
    }

    fn write(&mut self, batch: &mut Vec<Op>) {
        let b = &self.backend;
        let dedupe_ms = self.dedupe_ms;
        let cmds: Vec<redis::Cmd> = batch
            .iter()
            .map(|op| match op {
                Op::Send {
                    fields,
                    dedupe: Some((user, id)),
                    msg_id,
                    ..
                } => {
                    let mut c = redis::cmd("EVALSHA");
                    let key = format!(
                        "{{{}}}:d:{}:{}",
                        b.upstream_stream,
                        URL_SAFE_NO_PAD.encode(user),
                        URL_SAFE_NO_PAD.encode(id)
                    );
                    c.arg(append_sha()).arg(2).arg(&b.upstream_stream).arg(key);
                    c.arg(b.upstream_maxlen).arg(dedupe_ms).arg(msg_id);
                    for (k, v) in fields {
                        c.arg(*k).arg(v.as_ref());
                    }
                    c
                }
                Op::Send { fields, .. } => xadd(&b.upstream_stream, b.upstream_maxlen, fields),
                Op::Event(fields) => xadd(&b.events_stream, b.events_maxlen, fields),
            })
            .collect();
        let sent = batch.len();
        let replies = self.redis.with(|conn| match conn.pipeline(cmds)? {
            r if r.len() == sent => Ok(r),
            r => Err(AppendError::Replies { got: r.len(), sent }),
        });
        let replies = match replies {
            Ok(r) => {
                // The scripts were flushed: load them again on a new
                // connection (the refused sends are retried by their clients).
                if r.iter()
                    .any(|v| matches!(v, redis::Value::ServerError(e) if e.code() == "NOSCRIPT"))
                {
                    self.redis.reset();
                }
                r.into_iter().map(Some).collect()
            }
            Err(_) => vec![None; sent],
        };
        for (op, reply) in batch.drain(..).zip(replies) {
            let Op::Send {
                msg_id,
                client_msg_id,
                reply: to,
                dedupe,
                ..
            } = op
            else {
                continue;
            };
            let result = match reply {
                Some(redis::Value::ServerError(e)) => rejected(client_msg_id, &e.to_string()),
                Some(v) => SendResult {
                    client_msg_id,
                    accepted: true,
                    // A deduplicated send answers with the first one's id.
                    msg_id: match dedupe {
                        Some(_) => redis::from_redis_value::<String>(v).unwrap_or(msg_id),
                        None => msg_id,
                    },
                    ..Default::default()
                },
                None => rejected(client_msg_id, "backend stream unavailable: retry"),
            };
            let done = Reply::SendDone {
                reply: to,
                result: Box::new(result),
            };
            // Never blocks, never lost: the sender waits for this answer.
            self.mesh.reply(to.shard as usize, done);
        }
    }
}

fn xadd(stream: &str, maxlen: u64, fields: &Fields) -> redis::Cmd {
    let mut c = redis::cmd("XADD");
    c.arg(stream).arg("MAXLEN").arg("~").arg(maxlen).arg("*");
    for (k, v) in fields {
        c.arg(*k).arg(v.as_ref());
    }
    c
}

fn rejected(client_msg_id: String, why: &str) -> SendResult {
    SendResult {
        client_msg_id,
        accepted: false,
        code: ErrorCode::Unavailable as i32,
        message: why.to_owned(),
        ..Default::default()
    }
}

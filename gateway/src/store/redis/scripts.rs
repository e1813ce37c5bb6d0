//! The Lua scripts (`inbox.lua` for appends and acks, `read.lua`, and the
//! rooms' two), how an `Op` becomes a script invocation in a pipeline (a
//! batch's appends and acks are grouped: `inbox`), and how its reply
//! becomes a `Done`.
//!
//! Each script runs atomically in Redis; on a Redis Cluster a call touches
//! the keys of one user (one hash tag) or one room. Replies are checked, never trusted: a reply of an
//! unexpected shape is a `StoreError` for that operation, never a panic.
use prost::Message;
use proto::v1::{Deliver, Qos};
use redis::{Cmd, Script, ToRedisArgs, Value};

use crate::redis_client::Conn;

use super::keys::UserKeys;
use super::RedisLimits;
use crate::store::{Done, Op, Replay, StoreError, StoreErrorKind, Stored};

/// Sequence numbers and resume points are clamped to this (2^53): Lua
/// numbers are doubles and exact up to it, far beyond any real sequence.
pub(super) const MAX_SEQ: u64 = 1 << 53;
/// Most messages one read may return (Redis LIMIT takes a signed count).
const MAX_READ: usize = 1 << 30;

/// The scripts, hashed once; loaded into Redis at every (re)connect.
pub(super) struct Scripts {
    pub(super) inbox: Lua,
    read: Lua,
    pub(super) room_append: Lua,
    pub(super) room_read: Lua,
}

/// A script's text and its SHA1 (what EVALSHA names).
pub(super) struct Lua {
    code: &'static str,
    script: Script,
}

impl Lua {
    fn new(code: &'static str) -> Lua {
        Lua {
            code,
            script: Script::new(code),
        }
    }
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            inbox: Lua::new(include_str!("inbox.lua")),
            read: Lua::new(include_str!("read.lua")),
            room_append: Lua::new(include_str!("room_append.lua")),
            room_read: Lua::new(include_str!("room_read.lua")),
        }
    }

    /// SCRIPT LOAD of all of them (on a cluster: on every master).
    pub(super) fn load(&self, conn: &mut Conn) -> Result<(), StoreError> {
        let all = [&self.inbox, &self.read, &self.room_append, &self.room_read];
        for script in all {
            let mut load = redis::cmd("SCRIPT");
            load.arg("LOAD").arg(script.code);
            conn.query::<Value>(&load).map_err(|e| {
                let e = super::worker::from_redis(&e);
                StoreError::new(e.kind, format!("loading scripts: {}", e.detail))
            })?;
        }
        Ok(())
    }
}

/// One EVALSHA being built: keys first, then arguments.
pub(super) struct Invocation<'a> {
    hash: &'a str,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl<'a> Invocation<'a> {
    pub(super) fn new(lua: &'a Lua) -> Invocation<'a> {
        Invocation {
            hash: lua.script.get_hash(),
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    pub(super) fn key(&mut self, key: impl ToRedisArgs) -> &mut Self {
        self.keys.extend(key.to_redis_args());
        self
    }

    pub(super) fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        self.args.extend(arg.to_redis_args());
        self
    }

    pub(super) fn cmd(&self) -> Cmd {
        let mut c = redis::cmd("EVALSHA");
        c.arg(self.hash).arg(self.keys.len());
        for k in &self.keys {
            c.arg(k.as_slice());
        }
        for a in &self.args {
            c.arg(a.as_slice());
        }
        c
    }
}

/// The limits as script arguments, formatted once.
pub(super) struct Params {
    pub(super) prefix: String,
    pub(super) room_size: String,
    pub(super) room_age_ms: String,
    pub(super) per_user: String,
    pub(super) retention_ms: String,
    pub(super) dedupe_ms: String,
}

impl Params {
    pub(super) fn new(limits: &RedisLimits) -> Params {
        let ms = |d: std::time::Duration| d.as_millis().clamp(1, i64::MAX as u128).to_string();
        Params {
            room_size: limits.room_size.to_string(),
            room_age_ms: ms(limits.room_age),
            prefix: limits.key_prefix.clone(),
            per_user: limits.per_user.to_string(),
            retention_ms: ms(limits.retention),
            dedupe_ms: ms(limits.dedupe_window),
        }
    }
}

/// The invocation that performs `op` alone (`inbox::plan` groups a
/// batch's appends and acks instead).
pub(super) fn command(scripts: &Scripts, params: &Params, op: &Op) -> Cmd {
    match op {
        Op::Append { .. } | Op::Ack { .. } => {
            super::inbox::invocation(scripts, params, std::iter::once(op))
        }
        Op::Read {
            user,
            device,
            after,
            max,
            ..
        } => {
            let keys = UserKeys::new(&params.prefix, user);
            let mut inv = Invocation::new(&scripts.read);
            inv.key(keys.seq())
                .key(keys.inbox())
                .key(keys.cursors())
                .key(keys.dropped())
                .key(keys.acked());
            let after = after.map_or(-1, |a| a.min(MAX_SEQ) as i64);
            inv.arg(device.as_bytes())
                .arg(after)
                .arg((*max).min(MAX_READ))
                .arg(&params.retention_ms);
            inv.cmd()
        }
        Op::RoomAppend(_) | Op::RoomRead { .. } => {
            super::room_scripts::command(scripts, params, op)
        }
    }
}

/// The outcome of `op` given its reply; `None` for an ack.
pub(super) fn complete(op: Op, reply: Result<Value, StoreError>) -> Option<Done> {
    match op {
        Op::Append {
            user,
            mut msg,
            client_msg_id,
            reply: to,
            ..
        } => {
            let (result, duplicate, unstored) = match reply.and_then(parse_append) {
                Ok((seq, first_id)) => {
                    msg.seq = seq;
                    let duplicate = first_id.is_some();
                    if let Some(id) = first_id {
                        msg.msg_id = id;
                    }
                    (Ok(msg), duplicate, None)
                }
                Err(e) => (Err(e), false, Some(Box::new(msg))),
            };
            Some(Done::Appended {
                user,
                result,
                duplicate,
                client_msg_id,
                reply: to,
                unstored,
            })
        }
        Op::Ack { .. } => None,
        Op::Read { conn, .. } => Some(Done::Read {
            result: reply.and_then(parse_read),
            conn,
        }),
        op @ (Op::RoomAppend(_) | Op::RoomRead { .. }) => {
            Some(super::room_scripts::complete(op, reply))
        }
    }
}

/// The failure of `op` when its batch could not run.
pub(super) fn fail(op: Op, err: &StoreError) -> Option<Done> {
    complete(op, Err(err.clone()))
}

/// True for a NOSCRIPT reply (the scripts were flushed from Redis).
pub(super) fn is_noscript(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// A reply as a result: a server error is a `StoreError`.
pub(super) fn reply_result(v: Value) -> Result<Value, StoreError> {
    match v {
        Value::ServerError(e) => Err(StoreError::new(
            StoreError::kind_of_code(e.code()),
            format!("redis: {e}"),
        )),
        v => Ok(v),
    }
}

/// The message as stored: a `Deliver` without its sequence (the append
/// script puts the sequence in front).
pub(super) fn encode(msg: &Stored) -> Vec<u8> {
    Deliver {
        seq: 0,
        msg_id: msg.msg_id.clone(),
        from: msg.from.clone(),
        room: msg.room.clone(),
        qos: Qos::AtLeastOnce as i32,
        payload: msg.payload.clone(),
        timestamp_ms: msg.timestamp_ms,
        offset: 0,
    }
    .encode_to_vec()
}

fn decode(member: &[u8], seq: u64) -> Result<Stored, StoreError> {
    let d = Deliver::decode(member).map_err(|e| {
        StoreError::new(
            StoreErrorKind::Unexpected,
            format!("redis: undecodable inbox member: {e}"),
        )
    })?;
    Ok(Stored {
        seq,
        msg_id: d.msg_id,
        from: d.from,
        room: d.room,
        payload: d.payload,
        timestamp_ms: d.timestamp_ms,
    })
}

pub(super) fn shape(what: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unexpected,
        format!("redis: unexpected reply shape ({what})"),
    )
}

pub(super) fn int(v: &Value) -> Result<u64, StoreError> {
    let n = match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| shape("integer"))
}

pub(super) fn array(v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(items) => Ok(items),
        _ => Err(shape("array")),
    }
}

/// `{seq, first msg_id, duplicate}` -> (seq, Some(first msg_id) on a hit).
fn parse_append(v: Value) -> Result<(u64, Option<String>), StoreError> {
    let items = array(v)?;
    let [seq, id, dup] = items.as_slice() else {
        return Err(shape("append"));
    };
    let seq = int(seq)?;
    if seq == 0 {
        return Err(shape("append seq 0"));
    }
    match int(dup)? {
        0 => Ok((seq, None)),
        _ => match id {
            Value::BulkString(b) => Ok((seq, Some(String::from_utf8_lossy(b).into_owned()))),
            _ => Err(shape("append msg_id")),
        },
    }
}

/// `{last_seq, gap_from, gap_to, member, score, ...}` -> `Replay`.
fn parse_read(v: Value) -> Result<Replay, StoreError> {
    let items = array(v)?;
    let [last, gap_from, gap_to, from, rest @ ..] = items.as_slice() else {
        return Err(shape("read"));
    };
    if rest.len() % 2 != 0 {
        return Err(shape("read pairs"));
    }
    let (gap_from, gap_to) = (int(gap_from)?, int(gap_to)?);
    let mut msgs = Vec::with_capacity(rest.len() / 2);
    for pair in rest.chunks_exact(2) {
        let Value::BulkString(member) = &pair[0] else {
            return Err(shape("read member"));
        };
        msgs.push(decode(member, int(&pair[1])?)?);
    }
    let gap = (gap_from > 0).then_some((gap_from, gap_to));
    Ok(Replay {
        msgs,
        gap,
        last_seq: int(last)?,
        from: int(from)?,
    })
}

#[cfg(test)]
#[path = "scripts_tests.rs"]
mod tests;

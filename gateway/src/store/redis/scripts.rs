//! The three Lua scripts (append, ack, read), how an `Op` becomes one
//! script invocation in a pipeline, and how its reply becomes a `Done`.
//!
//! Each script runs atomically in Redis and touches only the keys of one
//! user (one hash tag). Replies are checked, never trusted: a reply of an
//! unexpected shape is a `StoreError` for that operation, never a panic.
use prost::Message;
use proto::v1::{Deliver, Qos};
use redis::{Pipeline, Script, Value};

use super::keys::UserKeys;
use super::RedisLimits;
use crate::store::{Done, Op, Replay, StoreError, StoreErrorKind, Stored, WhenFull};

/// Sequence numbers and resume points are clamped to this (2^53): Lua
/// numbers are doubles and exact up to it, far beyond any real sequence.
const MAX_SEQ: u64 = 1 << 53;
/// Most messages one read may return (Redis LIMIT takes a signed count).
const MAX_READ: usize = 1 << 30;

/// The scripts, hashed once; loaded into Redis at every (re)connect.
pub(super) struct Scripts {
    append: Script,
    ack: Script,
    read: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            append: Script::new(include_str!("append.lua")),
            ack: Script::new(include_str!("ack.lua")),
            read: Script::new(include_str!("read.lua")),
        }
    }

    /// SCRIPT LOAD of all three, in one round trip.
    pub(super) fn load(&self, conn: &mut redis::Connection) -> Result<(), StoreError> {
        redis::pipe()
            .load_script(&self.append)
            .load_script(&self.ack)
            .load_script(&self.read)
            .query::<Vec<String>>(conn)
            .map(drop)
            .map_err(|e| {
                let e = super::worker::from_redis(&e);
                StoreError::new(e.kind, format!("loading scripts: {}", e.detail))
            })
    }
}

/// The limits as script arguments, formatted once.
pub(super) struct Params {
    prefix: String,
    per_user: String,
    retention_ms: String,
    dedupe_ms: String,
}

impl Params {
    pub(super) fn new(limits: &RedisLimits) -> Params {
        let ms = |d: std::time::Duration| d.as_millis().clamp(1, i64::MAX as u128).to_string();
        Params {
            prefix: limits.key_prefix.clone(),
            per_user: limits.per_user.to_string(),
            retention_ms: ms(limits.retention),
            dedupe_ms: ms(limits.dedupe_window),
        }
    }
}

/// Adds the invocation that performs `op` to `pipe`.
pub(super) fn add(pipe: &mut Pipeline, scripts: &Scripts, params: &Params, op: &Op) {
    match op {
        Op::Append {
            user,
            msg,
            client_msg_id,
            online,
            when_full,
            ..
        } => {
            let keys = UserKeys::new(&params.prefix, user);
            let mut inv = scripts.append.prepare_invoke();
            inv.key(keys.seq())
                .key(keys.inbox())
                .key(keys.cursors())
                .key(keys.dropped());
            if !client_msg_id.is_empty() {
                inv.key(keys.dedupe(&msg.from, client_msg_id));
            }
            inv.arg(encode(msg))
                .arg(&msg.msg_id)
                .arg(&params.per_user)
                .arg(&params.retention_ms)
                .arg(&params.dedupe_ms)
                .arg(if *when_full == WhenFull::Refuse {
                    "1"
                } else {
                    "0"
                });
            for device in online {
                inv.arg(device.as_bytes());
            }
            pipe.invoke_script(&inv);
        }
        Op::Ack { user, device, seq } => {
            let keys = UserKeys::new(&params.prefix, user);
            let mut inv = scripts.ack.prepare_invoke();
            inv.key(keys.seq())
                .key(keys.inbox())
                .key(keys.cursors())
                .key(keys.acked());
            inv.arg(device.as_bytes())
                .arg((*seq).min(MAX_SEQ))
                .arg(&params.retention_ms);
            pipe.invoke_script(&inv);
        }
        Op::Read {
            user,
            device,
            after,
            max,
            ..
        } => {
            let keys = UserKeys::new(&params.prefix, user);
            let mut inv = scripts.read.prepare_invoke();
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
            pipe.invoke_script(&inv);
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
        Op::Read { user, conn, .. } => Some(Done::Read {
            user,
            result: reply.and_then(parse_read),
            conn,
        }),
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
fn encode(msg: &Stored) -> Vec<u8> {
    Deliver {
        seq: 0,
        msg_id: msg.msg_id.clone(),
        from: msg.from.clone(),
        room: msg.room.clone(),
        qos: Qos::AtLeastOnce as i32,
        payload: msg.payload.clone(),
        timestamp_ms: msg.timestamp_ms,
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

fn shape(what: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unexpected,
        format!("redis: unexpected reply shape ({what})"),
    )
}

fn int(v: &Value) -> Result<u64, StoreError> {
    let n = match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| shape("integer"))
}

fn array(v: Value) -> Result<Vec<Value>, StoreError> {
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
mod tests {
    use std::sync::Arc;

    use super::*;

    fn read_op() -> Op {
        let conn = crate::store::ReplyTo {
            shard: 0,
            key: 0,
            conn_id: 1,
        };
        Op::Read {
            user: Arc::from("u"),
            device: Arc::from("d"),
            after: None,
            max: 10,
            conn,
        }
    }

    #[test]
    fn replies_of_an_unexpected_shape_are_errors() {
        let bad = [
            Value::Nil,
            Value::Int(7),
            Value::Array(vec![]),
            Value::Array(vec![
                Value::Int(1),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::Int(5),
            ]),
            Value::Array(vec![
                Value::Int(1),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::Int(5),
                Value::Int(1),
            ]),
            Value::Array(vec![
                Value::Int(-1),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::BulkString(b"\xff\xff".to_vec()),
                Value::BulkString(b"x".to_vec()),
            ]),
        ];
        for v in bad {
            let done = complete(read_op(), Ok(v.clone()));
            assert!(
                matches!(done, Some(Done::Read { result: Err(_), .. })),
                "{v:?}"
            );
            assert!(parse_append(v).is_err());
        }
        assert!(
            parse_append(Value::Array(vec![Value::Int(3), Value::Nil, Value::Int(1)])).is_err()
        );
        assert_eq!(
            parse_append(Value::Array(vec![Value::Int(3), Value::Nil, Value::Int(0)])),
            Ok((3, None))
        );
    }

    #[test]
    fn a_stored_member_decodes_with_its_sequence() {
        let msg = Stored {
            seq: 0,
            msg_id: "m1".into(),
            from: "alice".into(),
            room: "r".into(),
            payload: bytes::Bytes::from_static(b"hi"),
            timestamp_ms: 42,
        };
        // What append.lua stores for seq 300: field 1 as a varint, then the message.
        let mut member = vec![0x08, 0xac, 0x02];
        member.extend(encode(&msg));
        assert_eq!(Deliver::decode(&member[..]).ok().map(|d| d.seq), Some(300));
        assert_eq!(decode(&member, 300), Ok(Stored { seq: 300, ..msg }));
    }
}

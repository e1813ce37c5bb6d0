//! Room history in Redis (`store::rooms`): the two scripts' invocations
//! (`room_append.lua`, `room_read.lua`) and their replies as `Done`s.
//! Replies are checked, never trusted: a reply of the wrong shape is a
//! `StoreError` for that operation.
use prost::Message;
use proto::v1::{Deliver, Qos};
use redis::{Cmd, Value};

use super::keys::RoomKeys;
use super::scripts::{array, int, shape, Invocation, Params, Scripts};
use crate::store::rooms::{epoch_text, parse_epoch, RoomEntry};
use crate::store::{Done, Op, RoomHistory, RoomRange, StoreError, StoreErrorKind, Stored};

/// Offsets are clamped to this (2^53): Lua numbers are doubles.
const MAX_OFFSET: u64 = 1 << 53;

/// The epoch a log gets if this operation creates it.
fn fresh_epoch() -> String {
    epoch_text(fastrand::u64(1..))
}

/// The invocation that performs a room `op`.
pub(super) fn command(scripts: &Scripts, params: &Params, op: &Op) -> Cmd {
    match op {
        Op::RoomAppend(a) => {
            let keys = RoomKeys::new(&params.prefix, &a.room);
            let mut inv = Invocation::new(&scripts.room_append);
            inv.key(keys.top()).key(keys.epoch()).key(keys.log());
            if !a.client_msg_id.is_empty() {
                inv.key(keys.dedupe(&a.msg.from, &a.client_msg_id));
            }
            inv.arg(encode(&a.msg, a.qos1))
                .arg(&a.msg.msg_id)
                .arg(&params.room_size)
                .arg(&params.room_age_ms)
                .arg(format!("{:013}", a.msg.timestamp_ms.min(9_999_999_999_999)))
                .arg(fresh_epoch());
            inv.cmd()
        }
        Op::RoomRead { room, range, .. } => {
            let keys = RoomKeys::new(&params.prefix, room);
            let mut inv = Invocation::new(&scripts.room_read);
            inv.key(keys.top()).key(keys.epoch()).key(keys.log());
            match range {
                RoomRange::After(p) => inv
                    .arg("after")
                    .arg(epoch_text(p.epoch))
                    .arg(p.offset.min(MAX_OFFSET)),
                RoomRange::Last(n) => inv.arg("last").arg("").arg((*n).min(1 << 30)),
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            inv.arg(&params.room_age_ms).arg(now).arg(fresh_epoch());
            inv.cmd()
        }
        Op::Append { .. } | Op::Ack { .. } | Op::Read { .. } => {
            unreachable!("not a room operation")
        }
    }
}

/// The outcome of a room `op` given its reply.
pub(super) fn complete(op: Op, reply: Result<Value, StoreError>) -> Done {
    match op {
        Op::RoomAppend(a) => {
            let a = *a;
            let parsed = reply.and_then(parse_append);
            let duplicate = matches!(parsed, Ok((_, _, Some(_))));
            let result = parsed.map(|(epoch, offset, first_id)| {
                let mut msg = a.msg.clone();
                msg.seq = offset;
                if let Some(id) = first_id {
                    msg.msg_id = id;
                }
                let entry = RoomEntry { msg, qos1: a.qos1 };
                (epoch, entry)
            });
            a.done(result, duplicate)
        }
        Op::RoomRead {
            room,
            range,
            reader,
        } => Done::RoomRead {
            result: reply.and_then(|v| parse_read(&room, v)),
            room,
            range,
            reader,
        },
        Op::Append { .. } | Op::Ack { .. } | Op::Read { .. } => {
            unreachable!("not a room operation")
        }
    }
}

/// A room message as stored: a `Deliver` without its offset (the score
/// is; the script puts the time in front).
fn encode(msg: &Stored, qos1: bool) -> Vec<u8> {
    let qos = if qos1 {
        Qos::AtLeastOnce
    } else {
        Qos::AtMostOnce
    };
    Deliver {
        seq: 0,
        msg_id: msg.msg_id.clone(),
        from: msg.from.clone(),
        room: msg.room.clone(),
        qos: qos as i32,
        payload: msg.payload.clone(),
        timestamp_ms: msg.timestamp_ms,
        offset: 0,
    }
    .encode_to_vec()
}

fn epoch(v: &Value) -> Result<u64, StoreError> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(parse_epoch),
        Value::SimpleString(s) => parse_epoch(s),
        _ => None,
    }
    .ok_or_else(|| shape("room epoch"))
}

/// `{epoch, offset, first msg_id or '', duplicate}`.
fn parse_append(v: Value) -> Result<(u64, u64, Option<String>), StoreError> {
    let items = array(v)?;
    let [e, offset, id, dup] = items.as_slice() else {
        return Err(shape("room append"));
    };
    let offset = int(offset)?;
    if offset == 0 {
        return Err(shape("room append offset 0"));
    }
    let first = match (int(dup)?, id) {
        (0, _) => None,
        (_, Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => return Err(shape("room append msg_id")),
    };
    Ok((epoch(e)?, offset, first))
}

/// `{epoch, top, first, member, offset, ...}`; a member is 13 digits of
/// time and a `Deliver` (without its offset: the score is).
fn parse_read(room: &str, v: Value) -> Result<RoomHistory, StoreError> {
    let items = array(v)?;
    let [e, top, first, members @ ..] = items.as_slice() else {
        return Err(shape("room read"));
    };
    if !members.len().is_multiple_of(2) {
        return Err(shape("room read pairs"));
    }
    let mut msgs = Vec::with_capacity(members.len() / 2);
    for pair in members.chunks_exact(2) {
        let Value::BulkString(b) = &pair[0] else {
            return Err(shape("room read member"));
        };
        let d = b
            .get(13..)
            .and_then(|rest| Deliver::decode(rest).ok())
            .ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::Unexpected,
                    format!("redis: undecodable history member of room {room}"),
                )
            })?;
        let qos1 = d.qos() == Qos::AtLeastOnce;
        msgs.push(RoomEntry {
            qos1,
            msg: Stored {
                seq: int(&pair[1])?,
                msg_id: d.msg_id,
                from: d.from,
                room: d.room,
                payload: d.payload,
                timestamp_ms: d.timestamp_ms,
            },
        });
    }
    Ok(RoomHistory {
        epoch: epoch(e)?,
        top: int(top)?,
        first: int(first)?,
        msgs,
    })
}

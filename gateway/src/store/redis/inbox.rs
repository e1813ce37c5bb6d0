//! A batch's pipeline: its appends and acks go in few calls of one script,
//! `inbox.lua`, instead of one call each.
//!
//! A call of a script costs Redis more than the commands inside it (the
//! request is parsed, the script's arguments are set up, the reply built):
//! per QoS 1 message, an append and its ack cost about 48 us of Redis CPU
//! as two calls (`bench-results/README.md`). So the store's thread groups
//! them:
//! - on one Redis, each run of appends and acks between two other
//!   operations (a read, a room operation) is one call per
//!   [`MAX_PER_CALL`] operations, which run in the batch's order;
//! - on a Redis Cluster a script touches one hash slot, so a run is split
//!   per user (a user's keys share a hash tag), each user's operations in
//!   their order: different users' keys are disjoint, so the order between
//!   users does not matter.
//!
//! Reads and room operations keep one call each, in place, so every
//! operation of a user still runs after the ones submitted before it.
use std::collections::HashMap;

use redis::{Cmd, Value};

use super::keys::UserKeys;
use super::scripts::{self, reply_result, shape, Invocation, Params, Scripts, MAX_SEQ};
use crate::store::{Op, StoreError, WhenFull};

/// Most operations in one call of `inbox.lua`. Redis runs a script to its
/// end, serving nobody else meanwhile: at about 25 us an operation, 64
/// keep a call under 2 ms.
pub(super) const MAX_PER_CALL: usize = 64;

/// One call of a batch's pipeline and the operations it performs.
pub(super) struct Call {
    /// Indices into the batch, in order.
    pub(super) ops: Vec<usize>,
    /// An `inbox.lua` call, whose reply is one per operation; else a call
    /// of one operation.
    grouped: bool,
}

impl Call {
    /// The command that performs this call's operations of `batch`.
    pub(super) fn cmd(&self, scripts: &Scripts, params: &Params, batch: &[Op]) -> Cmd {
        match self.grouped {
            true => invocation(scripts, params, self.ops.iter().map(|&i| &batch[i])),
            false => scripts::command(scripts, params, &batch[self.ops[0]]),
        }
    }
}

/// The calls that perform `batch`, in pipeline order (see the module
/// header).
pub(super) fn plan(batch: &[Op], cluster: bool) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut run = Vec::new();
    for (i, op) in batch.iter().enumerate() {
        if matches!(op, Op::Append { .. } | Op::Ack { .. }) {
            run.push(i);
            continue;
        }
        group(&mut calls, batch, &run, cluster);
        run.clear();
        calls.push(Call {
            ops: vec![i],
            grouped: false,
        });
    }
    group(&mut calls, batch, &run, cluster);
    calls
}

/// The calls for one run of appends and acks.
fn group(calls: &mut Vec<Call>, batch: &[Op], run: &[usize], cluster: bool) {
    let mut push = |ops: &[usize]| {
        for chunk in ops.chunks(MAX_PER_CALL) {
            calls.push(Call {
                ops: chunk.to_vec(),
                grouped: true,
            });
        }
    };
    if !cluster {
        push(run);
        return;
    }
    // Per user, users in the order they first appear.
    let mut users: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for &i in run {
        let (Op::Append { user, .. } | Op::Ack { user, .. }) = &batch[i] else {
            continue;
        };
        let n = *index.entry(user).or_insert_with(|| {
            users.push(Vec::new());
            users.len() - 1
        });
        users[n].push(i);
    }
    for ops in &users {
        push(ops);
    }
}

/// One `inbox.lua` call performing `ops` (appends and acks) in order.
pub(super) fn invocation<'a>(
    scripts: &Scripts,
    params: &Params,
    ops: impl Iterator<Item = &'a Op>,
) -> Cmd {
    let mut inv = Invocation::new(&scripts.inbox);
    inv.arg(&params.per_user)
        .arg(&params.retention_ms)
        .arg(&params.dedupe_ms);
    for op in ops {
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
                inv.key(keys.seq())
                    .key(keys.inbox())
                    .key(keys.cursors())
                    .key(keys.dropped());
                let dedupe = !client_msg_id.is_empty();
                if dedupe {
                    inv.key(keys.dedupe(&msg.from, client_msg_id));
                }
                inv.arg("a")
                    .arg(if dedupe { 5 } else { 4 })
                    .arg(online.len())
                    .arg(scripts::encode(msg))
                    .arg(&msg.msg_id)
                    .arg(if *when_full == WhenFull::Refuse {
                        "1"
                    } else {
                        "0"
                    });
                for device in online {
                    inv.arg(device.as_bytes());
                }
            }
            Op::Ack { user, device, seq } => {
                let keys = UserKeys::new(&params.prefix, user);
                inv.key(keys.seq())
                    .key(keys.inbox())
                    .key(keys.cursors())
                    .key(keys.acked());
                inv.arg("k").arg(device.as_bytes()).arg((*seq).min(MAX_SEQ));
            }
            // `plan` puts only appends and acks here.
            Op::Read { .. } | Op::RoomAppend(_) | Op::RoomRead { .. } => {}
        }
    }
    inv.cmd()
}

/// Each operation's reply, in batch order, from each call's: a grouped
/// call answers an array with one reply per operation, or one error for
/// all of them (the script did not run, or failed as a whole).
pub(super) fn spread(
    calls: &[Call],
    replies: Vec<Value>,
    n: usize,
) -> Vec<Result<Value, StoreError>> {
    let mut out: Vec<Option<Result<Value, StoreError>>> = (0..n).map(|_| None).collect();
    for (call, reply) in calls.iter().zip(replies) {
        if !call.grouped {
            out[call.ops[0]] = Some(reply_result(reply));
            continue;
        }
        match reply_result(reply) {
            Ok(Value::Array(items)) if items.len() == call.ops.len() => {
                for (&i, item) in call.ops.iter().zip(items) {
                    out[i] = Some(reply_result(item));
                }
            }
            Ok(_) => call
                .ops
                .iter()
                .for_each(|&i| out[i] = Some(Err(shape("inbox batch")))),
            Err(e) => call.ops.iter().for_each(|&i| out[i] = Some(Err(e.clone()))),
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(shape("no reply"))))
        .collect()
}

#[cfg(test)]
#[path = "inbox_tests.rs"]
mod tests;

//! Tests of `inbox`: how a batch becomes calls, and how their replies are
//! spread back (what the script does is tested against a real Redis in
//! `tests`).
use std::sync::Arc;

use redis::Value;

use super::*;
use crate::store::redis::tests::{append_op, read_op};

fn ack(user: &str, seq: u64) -> Op {
    Op::Ack {
        user: Arc::from(user),
        device: Arc::from("d"),
        seq,
    }
}

fn read(user: &str) -> Op {
    read_op(user, "d")
}

fn append(user: &str) -> Op {
    append_op(user, "x", "", "body", &[])
}

fn shape_of(calls: &[Call]) -> Vec<(Vec<usize>, bool)> {
    calls.iter().map(|c| (c.ops.clone(), c.grouped)).collect()
}

#[test]
fn on_one_redis_runs_between_reads_are_one_call_each() {
    let batch = vec![
        append("a"),
        ack("b", 1),
        append("a"),
        read("a"),
        append("a"),
        ack("a", 2),
    ];
    assert_eq!(
        shape_of(&plan(&batch, false)),
        [(vec![0, 1, 2], true), (vec![3], false), (vec![4, 5], true)]
    );
}

#[test]
fn a_long_run_is_cut_into_calls_of_at_most_max_per_call() {
    let batch: Vec<Op> = (0..MAX_PER_CALL * 2 + 1).map(|_| append("a")).collect();
    let calls = plan(&batch, false);
    let sizes: Vec<usize> = calls.iter().map(|c| c.ops.len()).collect();
    assert_eq!(sizes, [MAX_PER_CALL, MAX_PER_CALL, 1]);
    let all: Vec<usize> = calls.iter().flat_map(|c| c.ops.clone()).collect();
    assert_eq!(all, (0..batch.len()).collect::<Vec<_>>(), "in order");
}

#[test]
fn on_a_cluster_a_call_holds_one_users_operations_in_order() {
    let batch = vec![
        append("a"),
        append("b"),
        ack("a", 1),
        read("b"),
        ack("b", 1),
        append("c"),
        append("b"),
    ];
    assert_eq!(
        shape_of(&plan(&batch, true)),
        [
            (vec![0, 2], true),
            (vec![1], true),
            (vec![3], false),
            (vec![4, 6], true),
            (vec![5], true)
        ]
    );
}

#[test]
fn replies_are_spread_back_in_batch_order() {
    let batch = vec![append("a"), read("a"), ack("a", 1)];
    let calls = plan(&batch, false);
    let one = Value::Array(vec![
        Value::Int(1),
        Value::BulkString(vec![]),
        Value::Int(0),
    ]);
    let replies = vec![
        Value::Array(vec![one.clone()]),
        Value::Array(vec![Value::Int(0); 4]),
        Value::Array(vec![Value::Int(1)]),
    ];
    let got = spread(&calls, replies, batch.len());
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].as_ref().ok(), Some(&one));
    assert_eq!(
        got[1].as_ref().ok(),
        Some(&Value::Array(vec![Value::Int(0); 4]))
    );
    assert_eq!(got[2].as_ref().ok(), Some(&Value::Int(1)));
}

#[test]
fn a_grouped_reply_of_the_wrong_length_fails_each_of_its_operations() {
    let batch = vec![append("a"), ack("a", 1), read("a")];
    let calls = plan(&batch, false);
    let replies = vec![
        Value::Array(vec![Value::Int(1)]),
        Value::Array(vec![Value::Int(0); 4]),
    ];
    let got = spread(&calls, replies, batch.len());
    assert!(got[0].is_err() && got[1].is_err());
    assert!(got[2].is_ok(), "the read's own call answered");
    // A reply that is not an array at all, and a missing one.
    let got = spread(&calls, vec![Value::Int(3)], batch.len());
    assert!(got.iter().all(|r| r.is_err()));
}

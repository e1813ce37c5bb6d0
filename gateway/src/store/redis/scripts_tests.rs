//! Tests of `scripts`.
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
    assert!(parse_append(Value::Array(vec![Value::Int(3), Value::Nil, Value::Int(1)])).is_err());
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
    // What inbox.lua stores for seq 300: field 1 as a varint, then the message.
    let mut member = vec![0x08, 0xac, 0x02];
    member.extend(encode(&msg));
    assert_eq!(Deliver::decode(&member[..]).ok().map(|d| d.seq), Some(300));
    assert_eq!(decode(&member, 300), Ok(Stored { seq: 300, ..msg }));
}

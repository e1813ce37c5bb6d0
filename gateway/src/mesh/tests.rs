//! Tests of the queues: full queues, wake-ups, parking, owners.
use super::*;
use crate::store::ReplyTo;

#[test]
fn a_full_queue_gives_the_message_back() {
    let mesh = Mesh::new(2, 1).unwrap();
    assert!(mesh
        .try_push(1, Command::Drain(Redirect::default()).into())
        .is_ok());
    assert!(matches!(
        mesh.try_push(1, Command::Drain(Redirect::default()).into()),
        Err(ShardMsg::Command(Command::Drain(_)))
    ));
    assert!(mesh.pop(1).is_some());
    assert!(mesh.pop(1).is_none());
}

#[test]
fn one_wake_per_batch() {
    let mesh = Mesh::new(1, 8).unwrap();
    assert!(mesh.park(0));
    mesh.try_push(0, Command::Drain(Redirect::default()).into())
        .ok();
    mesh.try_push(0, Command::Drain(Redirect::default()).into())
        .ok();
    let mut buf = [0u8; 8];
    // SAFETY: reads 8 bytes into a live buffer from our eventfd.
    let n = unsafe { libc::read(mesh.eventfd(0), buf.as_mut_ptr().cast(), 8) };
    assert_eq!(n, 8);
    assert_eq!(u64::from_ne_bytes(buf), 1, "two pushes, one wake-up");
}

#[test]
fn a_reply_is_taken_when_the_queue_is_full_and_wakes_the_shard() {
    let mesh = Mesh::new(1, 1).unwrap();
    assert!(mesh
        .try_push(0, Command::Drain(Redirect::default()).into())
        .is_ok());
    assert!(!mesh.park(0), "a message waits");
    assert!(mesh.pop(0).is_some());
    assert!(mesh
        .try_push(0, Command::Drain(Redirect::default()).into())
        .is_ok());
    assert!(
        mesh.try_push(0, Command::Drain(Redirect::default()).into())
            .is_err(),
        "full"
    );
    assert!(mesh.pop(0).is_some());
    assert!(mesh.park(0));
    let reply = ReplyTo {
        shard: 0,
        key: 1,
        conn_id: 7,
    };
    let result = Box::new(proto::v1::SendResult::default());
    mesh.reply(0, Reply::SendDone { reply, result });
    let mut buf = [0u8; 8];
    // SAFETY: reads 8 bytes into a live buffer from our eventfd.
    let n = unsafe { libc::read(mesh.eventfd(0), buf.as_mut_ptr().cast(), 8) };
    assert_eq!(n, 8, "the parked shard was woken");
    assert!(!mesh.park(0), "park refuses while a reply waits");
    assert!(!mesh.is_idle(0));
    assert!(matches!(mesh.pop_reply(0), Some(Reply::SendDone { .. })));
    assert!(mesh.is_idle(0));
}

#[test]
fn park_refuses_when_messages_wait() {
    let mesh = Mesh::new(1, 8).unwrap();
    mesh.try_push(0, Command::Drain(Redirect::default()).into())
        .ok();
    assert!(!mesh.park(0));
}

#[test]
fn owner_is_stable_and_in_range() {
    let mesh = Mesh::new(7, 1).unwrap();
    for name in ["alice", "bob", "room:1", ""] {
        let o = mesh.owner(name);
        assert!(o < 7);
        assert_eq!(o, mesh.owner(name));
    }
}

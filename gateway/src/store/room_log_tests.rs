use std::sync::Arc;

use super::{RoomLimits, RoomLogs};
use crate::store::rooms::{RoomAppend, RoomPos, RoomRange};
use crate::store::Stored;

fn logs(size: usize, total_bytes: usize) -> RoomLogs {
    let limits = RoomLimits {
        size,
        age_ms: 10_000,
        total_bytes,
    };
    RoomLogs::new(limits, 42)
}

fn msg(room: &str, body: &str, cmid: &str, at: u64) -> RoomAppend {
    let mut msg = Stored::for_test("alice", body, at);
    msg.room = room.into();
    RoomAppend {
        room: Arc::from(room),
        msg,
        qos1: true,
        client_msg_id: cmid.into(),
        reply: None,
    }
}

fn bodies(logs: &mut RoomLogs, room: &str, range: RoomRange, now: u64) -> Vec<String> {
    let h = logs.read(&Arc::from(room), range, now);
    h.msgs
        .iter()
        .map(|e| String::from_utf8_lossy(&e.msg.payload).into_owned())
        .collect()
}

#[test]
fn offsets_follow_each_other_per_room_and_reads_start_after_a_position() {
    let mut l = logs(100, 1 << 20);
    let (e, first, _) = l.append(&msg("r", "a", "", 1), 1);
    assert_eq!(first.msg.seq, 1);
    l.append(&msg("r", "b", "", 2), 2);
    let (e2, third, _) = l.append(&msg("r", "c", "", 3), 3);
    assert_eq!((e2, third.msg.seq), (e, 3));
    let (other, o1, _) = l.append(&msg("s", "x", "", 3), 3);
    assert_eq!(o1.msg.seq, 1, "each room counts its own");
    assert_ne!(other, e, "each log has its own epoch");
    let after = RoomRange::After(RoomPos {
        epoch: e,
        offset: 1,
    });
    assert_eq!(bodies(&mut l, "r", after, 4), ["b", "c"]);
    assert_eq!(bodies(&mut l, "r", RoomRange::Last(1), 4), ["c"]);
    assert!(bodies(&mut l, "r", RoomRange::Last(0), 4).is_empty());
    // Another epoch knows nothing of this one: everything held.
    let foreign = RoomRange::After(RoomPos {
        epoch: e ^ 1,
        offset: 2,
    });
    assert_eq!(bodies(&mut l, "r", foreign, 4), ["a", "b", "c"]);
}

#[test]
fn the_size_bound_drops_the_oldest_and_a_reader_behind_it_sees_the_gap() {
    let mut l = logs(2, 1 << 20);
    let (e, _, _) = l.append(&msg("r", "a", "", 1), 1);
    l.append(&msg("r", "b", "", 2), 2);
    l.append(&msg("r", "c", "", 3), 3);
    let since = RoomPos {
        epoch: e,
        offset: 0,
    };
    let h = l.read(&Arc::from("r"), RoomRange::After(since), 4);
    assert_eq!((h.top, h.first, h.msgs.len()), (3, 2, 2));
    let r = h.recovery(since);
    assert_eq!((r.recovered, r.gap), (false, Some((1, 2))));
    assert_eq!(l.held(), (2, 2));
}

#[test]
fn a_retried_send_is_stored_once() {
    let mut l = logs(100, 1 << 20);
    let (_, first, dup) = l.append(&msg("r", "a", "c1", 1), 1);
    assert!(!dup);
    let (_, again, dup) = l.append(&msg("r", "a-retry", "c1", 2), 2);
    assert!(dup);
    assert_eq!(again, first);
    assert_eq!(l.held().0, 1);
}

#[test]
fn old_messages_go_and_an_unused_log_is_forgotten_with_its_epoch() {
    let mut l = logs(100, 1 << 20);
    let (e, _, _) = l.append(&msg("r", "a", "c1", 1_000), 1_000);
    // A member joined meanwhile (a read uses the log).
    l.read(&Arc::from("r"), RoomRange::Last(0), 6_000);
    // Past the age: the message is gone, the log still counts.
    let h = l.read(&Arc::from("r"), RoomRange::Last(10), 11_001);
    assert_eq!((h.epoch, h.top, h.first, h.msgs.len()), (e, 1, 2, 0));
    // The dedupe entry went with it: the same id is a new message.
    let (_, again, dup) = l.append(&msg("r", "b", "c1", 11_002), 11_002);
    assert_eq!((again.msg.seq, dup), (2, false));
    // Nothing held and untouched past the age: a new life, a new epoch.
    let h = l.read(&Arc::from("r"), RoomRange::Last(10), 30_000);
    assert_eq!(h.msgs.len(), 0);
    let h = l.read(&Arc::from("r"), RoomRange::Last(10), 50_000);
    assert_ne!(h.epoch, e);
    assert_eq!(h.top, 0);
}

#[test]
fn the_shard_byte_bound_drops_the_oldest_of_any_room() {
    let mut l = logs(100, 3);
    l.append(&msg("r", "a", "", 1), 1);
    l.append(&msg("s", "b", "", 2), 2);
    l.append(&msg("r", "c", "", 3), 3);
    l.append(&msg("s", "d", "", 4), 4);
    assert_eq!(l.held(), (3, 3));
    assert_eq!(bodies(&mut l, "r", RoomRange::Last(10), 5), ["c"]);
    assert_eq!(bodies(&mut l, "s", RoomRange::Last(10), 5), ["b", "d"]);
}

#[test]
fn the_logs_move_whole_to_another_process() {
    let mut l = logs(100, 1 << 20);
    let (e, _, _) = l.append(&msg("r", "a", "c1", 1), 1);
    l.append(&msg("r", "b", "", 2), 2);
    l.append(&msg("s", "x", "", 3), 3);
    let mut moved = RoomLogs::new(
        RoomLimits {
            size: 100,
            age_ms: 10_000,
            total_bytes: 1 << 20,
        },
        7,
    );
    moved.import(&l.export()).unwrap();
    assert_eq!(moved.held(), l.held());
    let h = moved.read(&Arc::from("r"), RoomRange::Last(10), 4);
    assert_eq!((h.epoch, h.top, h.msgs.len()), (e, 2, 2));
    // Offsets go on, and the dedupe window came along.
    let (_, next, dup) = moved.append(&msg("r", "c", "", 5), 5);
    assert_eq!((next.msg.seq, dup), (3, false));
    let (_, again, dup) = moved.append(&msg("r", "a", "c1", 6), 6);
    assert_eq!((again.msg.seq, dup), (1, true));
}

#[test]
fn stale_order_entries_are_compacted_and_a_quiet_room_ages_out_unused() {
    let limits = RoomLimits {
        size: 2,
        age_ms: 10_000,
        total_bytes: 1 << 30,
    };
    let mut l = RoomLogs::new(limits, 1);
    l.append(&msg("quiet", "q", "", 1), 1);
    for t in 2..10_002 {
        l.append(&msg("hot", "h", "", t), t);
        assert!(
            l.order.len() <= 2 * l.held + 1024,
            "order grew to {}",
            l.order.len()
        );
    }
    // Nobody uses the quiet room again: its message still goes with age.
    l.append(&msg("hot", "h", "", 20_000), 20_000);
    assert_eq!(l.held().0, 2, "the hot room's two, the quiet room's gone");
    assert!(bodies(&mut l, "quiet", RoomRange::Last(10), 20_001).is_empty());
}

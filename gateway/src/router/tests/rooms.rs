//! Rooms with history at their owner shard: the sequencer releases a
//! room's messages to member shards in offset order, fills holes from the
//! store after the reorder wait, reports what the store no longer has, and
//! restarts members on a new epoch.
use super::*;
use crate::config::RoomsConfig;
use crate::store::rooms::{RoomAppended, RoomEntry};
use crate::store::{Done, RoomHistory, RoomPos, RoomRange, RoomReader, Stored};

const E: u64 = 0xe1;
const ROOM: &str = "r";

/// The owner of `ROOM` with every room keeping history, and one member
/// shard (1) interested, its first member's read answered: the room is at
/// offset `top` of epoch `E`.
fn sequencer(top: u64) -> Router {
    let mut r = owner_with_member(1);
    let reader = RoomReader::Member(ReplyTo {
        shard: 1,
        key: 0,
        conn_id: 7,
    });
    r.stored(t0(), read_done(history(E, top, top + 1, &[]), reader));
    take(&mut r);
    r
}

/// The owner of `ROOM` (every room keeping history, a reorder wait of
/// 100 ms) once `shard` has a member of it.
fn owner_with_member(shard: ShardId) -> Router {
    let config = RoomsConfig {
        history: vec!["*".into()],
        reorder_wait_ms: 100,
        ..RoomsConfig::default()
    };
    let me = owner(ROOM, SHARDS) as ShardId;
    let (qos, stats) = (QosConfig::default(), Arc::new(ShardStats::default()));
    let mut r = Router::new(me, SHARDS, false, &qos, Arc::new(config), stats);
    let on = DataMsg::Interest {
        room: name(ROOM),
        shard,
        on: true,
    };
    r.handle(t0(), on);
    r
}

fn entry(offset: u64) -> RoomEntry {
    let mut msg = Stored::for_test("alice", &format!("m{offset}"), 1);
    msg.seq = offset;
    msg.room = ROOM.into();
    RoomEntry { msg, qos1: false }
}

fn history(epoch: u64, top: u64, first: u64, offsets: &[u64]) -> RoomHistory {
    RoomHistory {
        epoch,
        top,
        first,
        msgs: offsets.iter().map(|&o| entry(o)).collect(),
    }
}

fn read_done(h: RoomHistory, reader: RoomReader) -> Done {
    Done::RoomRead {
        room: name(ROOM),
        range: RoomRange::Last(0),
        result: Ok(h),
        reader,
    }
}

/// This node's store gave `offset` (of `epoch`) to a message.
fn appended(r: &mut Router, now: Instant, epoch: u64, offset: u64) {
    let done = RoomAppended {
        room: name(ROOM),
        result: Ok((epoch, entry(offset))),
        duplicate: false,
        client_msg_id: String::new(),
        reply: None,
    };
    r.stored(now, Done::RoomAppended(Box::new(done)));
}

/// A peer's message at `offset` of `epoch` came off the bus.
fn from_peer(r: &mut Router, now: Instant, epoch: u64, offset: u64) {
    let msg = Outbound::new(entry(offset).to_frame());
    let peer = PeerMsg::ToRoom {
        room: name(ROOM),
        msg,
        epoch,
    };
    r.handle_peer(now, peer);
}

/// What went to member shards, as `shard:offset`, `shard:gap a..b` or
/// `shard:epoch e@offset`; reads the sequencer asked of the store as
/// `read ...`.
fn released(r: &mut Router) -> Vec<String> {
    let mut out = Vec::new();
    for a in take(r) {
        match a {
            Action::Send(to, ShardMsg::Data(DataMsg::RoomLocal { msg, .. })) => {
                out.push(match msg.frame().frame.as_ref() {
                    Some(Frame::Deliver(d)) => format!("{to}:{}", d.offset),
                    Some(Frame::Gap(g)) => {
                        format!("{to}:gap {}..{}", g.from_seq, g.first_available)
                    }
                    Some(Frame::Joined(j)) => format!("{to}:epoch {}@{}", j.epoch, j.offset),
                    _ => format!("{to}:other"),
                })
            }
            Action::Store(Op::RoomRead { range, reader, .. }) => {
                out.push(format!("read {range:?} {reader:?}"))
            }
            _ => {}
        }
    }
    out
}

#[test]
fn messages_go_to_members_in_offset_order_whatever_order_they_arrive_in() {
    let mut r = sequencer(4);
    appended(&mut r, at(1), E, 5);
    assert_eq!(released(&mut r), ["1:5"]);
    // A peer's 7 overtakes our 6 (another link, another store reply).
    from_peer(&mut r, at(2), E, 7);
    assert!(released(&mut r).is_empty(), "7 waits for 6");
    appended(&mut r, at(3), E, 6);
    assert_eq!(released(&mut r), ["1:6", "1:7"]);
    // What a member already had (a late or repeated copy) goes nowhere.
    from_peer(&mut r, at(4), E, 6);
    assert!(released(&mut r).is_empty());
}

#[test]
fn a_hole_that_lasts_the_reorder_wait_is_read_from_the_store() {
    let mut r = sequencer(4);
    from_peer(&mut r, at(10), E, 7);
    r.on_tick(at(50));
    assert!(released(&mut r).is_empty(), "not before the wait");
    r.on_tick(at(110));
    let asked = RoomRange::After(RoomPos {
        epoch: E,
        offset: 4,
    });
    assert_eq!(released(&mut r), [format!("read {asked:?} Fill")]);
    // One read at a time.
    r.on_tick(at(300));
    assert!(released(&mut r).is_empty());
    r.stored(
        at(310),
        read_done(history(E, 7, 1, &[5, 6, 7]), RoomReader::Fill),
    );
    assert_eq!(released(&mut r), ["1:5", "1:6", "1:7"]);
    // Nothing held: nothing more is read.
    r.on_tick(at(1000));
    assert!(released(&mut r).is_empty());
}

#[test]
fn what_the_store_no_longer_has_is_a_gap_never_a_silent_hole() {
    let mut r = sequencer(4);
    from_peer(&mut r, at(10), E, 9);
    r.on_tick(at(200));
    released(&mut r);
    // The log kept only 8 and 9 (its size bound): 5..8 are gone.
    r.stored(
        at(210),
        read_done(history(E, 9, 8, &[8, 9]), RoomReader::Fill),
    );
    assert_eq!(released(&mut r), ["1:gap 5..8", "1:8", "1:9"]);
}

#[test]
fn a_new_epoch_restarts_the_members_at_its_first_offset_once_the_store_says_so() {
    let mut r = sequencer(4);
    appended(&mut r, at(1), E, 5);
    released(&mut r);
    // The log was lost (Redis flushed, the room expired): a new life. Its
    // offset 2 (another node's) comes before its 1: nothing is released
    // until the store says which epoch is the room's now.
    from_peer(&mut r, at(2), E + 1, 2);
    assert!(released(&mut r).is_empty());
    r.on_tick(at(3));
    let asked = RoomRange::After(RoomPos {
        epoch: E,
        offset: 5,
    });
    assert_eq!(released(&mut r), [format!("read {asked:?} Fill")]);
    r.stored(
        at(4),
        read_done(history(E + 1, 2, 1, &[1, 2]), RoomReader::Fill),
    );
    let notice = format!("1:epoch {}@0", crate::store::rooms::epoch_text(E + 1));
    assert_eq!(released(&mut r), [notice, "1:1".into(), "1:2".into()]);
    // A straggler of the old epoch is asked about, and dropped.
    from_peer(&mut r, at(5), E, 6);
    r.on_tick(at(6));
    released(&mut r);
    r.stored(
        at(7),
        read_done(history(E + 1, 2, 1, &[1, 2]), RoomReader::Fill),
    );
    assert!(released(&mut r).is_empty());
    appended(&mut r, at(8), E + 1, 3);
    assert_eq!(released(&mut r), ["1:3"]);
}

#[test]
fn after_a_gap_what_was_held_below_it_is_released_no_more() {
    let mut r = sequencer(4);
    from_peer(&mut r, at(1), E, 6);
    from_peer(&mut r, at(1), E, 9);
    r.on_tick(at(200));
    released(&mut r);
    // The store rolled past 6 and 7 meanwhile: it starts at 8.
    r.stored(
        at(210),
        read_done(history(E, 9, 8, &[8, 9]), RoomReader::Fill),
    );
    assert_eq!(released(&mut r), ["1:gap 5..8", "1:8", "1:9"]);
    // Nothing left held: no more reads.
    r.on_tick(at(1000));
    assert!(released(&mut r).is_empty());
}

#[test]
fn before_its_first_read_a_sequencer_holds_and_then_starts_after_the_read() {
    let mut r = owner_with_member(2);
    // Messages before the member's read answered: held.
    appended(&mut r, at(1), E, 3);
    appended(&mut r, at(2), E, 4);
    assert!(released(&mut r).is_empty());
    // The read saw up to 3: the member has it from the read; 4 is live.
    let reader = RoomReader::Member(ReplyTo {
        shard: 2,
        key: 0,
        conn_id: 1,
    });
    r.stored(at(3), read_done(history(E, 3, 1, &[1, 2, 3]), reader));
    let out = released(&mut r);
    assert_eq!(out, ["2:4"]);
}

#[test]
fn a_room_without_members_here_keeps_no_sequencer() {
    let mut r = sequencer(4);
    r.handle(
        at(1),
        DataMsg::Interest {
            room: name(ROOM),
            shard: 1,
            on: false,
        },
    );
    appended(&mut r, at(2), E, 5);
    from_peer(&mut r, at(3), E, 7);
    r.on_tick(at(1000));
    assert!(released(&mut r).is_empty());
}

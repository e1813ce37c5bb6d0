//! Joining a room with history: the join answer waits for the room's log,
//! live messages wait behind the recovery, nothing reaches the client twice,
//! and a position the log cannot serve is told, not papered over. (Rooms
//! named `h*` keep history in the harness.)
use std::sync::Arc;

use proto::v1::{client_frame, server_frame::Frame, JoinRoom, RoomPosition, ServerFrame};

use super::Harness;
use crate::outbound::Outbound;
use crate::session::{Delivery, Route, Transport};
use crate::store::rooms::{epoch_text, RoomEntry};
use crate::store::{RoomHistory, RoomPos, RoomRange, Stored};

const E: u64 = 0xabc;

fn entry(offset: u64) -> RoomEntry {
    let mut msg = Stored::for_test("bob", &format!("m{offset}"), 1);
    msg.seq = offset;
    msg.room = "hall".into();
    RoomEntry { msg, qos1: true }
}

fn live(offset: u64) -> Arc<Outbound> {
    Outbound::new(entry(offset).to_frame())
}

fn join(h: &mut Harness, since: Option<(u64, u64)>) -> RoomRange {
    h.send(client_frame::Frame::Join(JoinRoom {
        room: "hall".into(),
        since: since.map(|(epoch, offset)| RoomPosition {
            offset,
            epoch: epoch_text(epoch),
        }),
        recent: 0,
    }));
    assert!(h.frames().is_empty(), "the join is answered after the read");
    let reads: Vec<RoomRange> = h
        .routes()
        .into_iter()
        .filter_map(|r| match r {
            Route::RoomRead { range, .. } => Some(range),
            _ => None,
        })
        .collect();
    assert_eq!(reads.len(), 1);
    reads[0]
}

fn answer(h: &mut Harness, range: RoomRange, top: u64, first: u64, offsets: &[u64]) {
    let history = RoomHistory {
        epoch: E,
        top,
        first,
        msgs: offsets.iter().map(|&o| entry(o)).collect(),
    };
    h.deliver(Delivery::RoomHistory {
        room: Arc::from("hall"),
        range,
        result: Ok(history),
    });
}

/// The frames as short strings: `joined top recovered`, `gap a..b`, `offset`.
fn seen(h: &mut Harness) -> Vec<String> {
    h.frames()
        .into_iter()
        .map(|f: ServerFrame| match f.frame {
            Some(Frame::Joined(j)) => format!("joined {} {}", j.offset, j.recovered),
            Some(Frame::Gap(g)) => format!("gap {}..{}", g.from_seq, g.first_available),
            Some(Frame::Deliver(d)) => d.offset.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_live_message_during_recovery_waits_behind_it_and_is_not_sent_twice() {
    let mut h = Harness::open(Transport::Tcp);
    let range = join(&mut h, Some((E, 3)));
    assert_eq!(
        range,
        RoomRange::After(RoomPos {
            epoch: E,
            offset: 3
        })
    );
    // Live messages while the log is read: 5 (which the read also has)
    // and 6 (which it does not).
    h.deliver(Delivery::Live(&live(5)));
    h.deliver(Delivery::Live(&live(6)));
    assert!(h.frames().is_empty(), "live waits behind the recovery");
    answer(&mut h, range, 5, 1, &[4, 5]);
    assert_eq!(seen(&mut h), ["joined 5 true", "4", "5", "6"]);
    // A late copy of what the client has goes nowhere; new ones go on.
    h.deliver(Delivery::Live(&live(6)));
    h.deliver(Delivery::Live(&live(7)));
    assert_eq!(seen(&mut h), ["7"]);
}

#[test]
fn a_position_from_another_epoch_is_not_recovered_and_the_gap_comes_first() {
    let mut h = Harness::open(Transport::Tcp);
    let range = join(&mut h, Some((E + 1, 40)));
    // The log holds 3..=5 of epoch E: 1 and 2 are gone.
    answer(&mut h, range, 5, 3, &[3, 4, 5]);
    assert_eq!(seen(&mut h), ["joined 5 false", "gap 1..3", "3", "4", "5"]);
}

#[test]
fn a_position_behind_the_history_gets_the_gap_then_what_is_left() {
    let mut h = Harness::open(Transport::Tcp);
    let range = join(&mut h, Some((E, 2)));
    answer(&mut h, range, 9, 6, &[6, 7, 8, 9]);
    assert_eq!(
        seen(&mut h),
        ["joined 9 false", "gap 3..6", "6", "7", "8", "9"]
    );
}

#[test]
fn a_position_ahead_of_the_room_is_not_recovered_and_restarts_at_the_top() {
    let mut h = Harness::open(Transport::Tcp);
    let range = join(&mut h, Some((E, 50)));
    answer(&mut h, range, 9, 1, &[]);
    assert_eq!(seen(&mut h), ["joined 9 false"]);
    // The room's next message is the next the client gets.
    h.deliver(Delivery::Live(&live(10)));
    assert_eq!(seen(&mut h), ["10"]);
}

#[test]
fn a_join_without_a_position_starts_at_the_top_and_a_later_hole_is_a_gap() {
    let mut h = Harness::open(Transport::Tcp);
    let range = join(&mut h, None);
    assert_eq!(range, RoomRange::Last(0));
    answer(&mut h, range, 4, 1, &[]);
    assert_eq!(seen(&mut h), ["joined 4 false"]);
    h.deliver(Delivery::Live(&live(5)));
    h.deliver(Delivery::Live(&live(8)));
    assert_eq!(seen(&mut h), ["5", "gap 6..8", "8"]);
}

#[test]
fn a_room_left_during_its_read_gets_nothing() {
    let mut h = Harness::open(Transport::Tcp);
    let range = join(&mut h, Some((E, 1)));
    h.send(client_frame::Frame::Leave(proto::v1::LeaveRoom {
        room: "hall".into(),
    }));
    h.frames();
    answer(&mut h, range, 3, 1, &[2, 3]);
    h.deliver(Delivery::Live(&live(4)));
    assert!(h.frames().is_empty());
}

#[test]
fn a_new_epoch_notice_the_read_already_covered_changes_nothing() {
    let mut h = Harness::open(Transport::Tcp);
    let range = join(&mut h, None);
    // While the read is out, the room starts a new life (epoch E): its
    // notice and its first message wait behind the read.
    let notice = Outbound::new(ServerFrame {
        frame: Some(Frame::Joined(proto::v1::RoomJoined {
            room: "hall".into(),
            history: true,
            offset: 0,
            epoch: epoch_text(E),
            recovered: false,
        })),
    });
    h.deliver(Delivery::Live(&notice));
    h.deliver(Delivery::Live(&live(1)));
    // The read ran after them, in the same epoch.
    answer(&mut h, range, 1, 1, &[]);
    assert_eq!(seen(&mut h), ["joined 1 false"]);
    h.deliver(Delivery::Live(&live(2)));
    assert_eq!(seen(&mut h), ["2"]);
}

#[test]
fn a_member_without_a_position_still_hears_the_room() {
    let mut h = Harness::open(Transport::Tcp);
    let range = join(&mut h, None);
    answer(&mut h, range, 0, 1, &[]);
    h.frames();
    // Positions lost (a connection moved from a binary without them).
    h.fx.room_cursors.clear();
    h.deliver(Delivery::Live(&live(3)));
    h.deliver(Delivery::Live(&live(3)));
    h.deliver(Delivery::Live(&live(4)));
    assert_eq!(seen(&mut h), ["3", "4"]);
}

#[test]
fn the_answer_of_a_read_from_before_a_leave_is_not_the_rejoin_answer() {
    let mut h = Harness::open(Transport::Tcp);
    let first = join(&mut h, Some((E, 1)));
    h.send(client_frame::Frame::Leave(proto::v1::LeaveRoom {
        room: "hall".into(),
    }));
    h.frames();
    let second = join(&mut h, Some((E, 3)));
    // The first read's answer comes first (same owner, in order): ignored.
    answer(&mut h, first, 2, 1, &[2]);
    assert!(h.frames().is_empty());
    answer(&mut h, second, 5, 1, &[4, 5]);
    assert_eq!(seen(&mut h), ["joined 5 true", "4", "5"]);
}

#[test]
fn live_messages_past_the_hold_back_bound_are_read_again_from_the_log() {
    let mut h = Harness::open(Transport::Tcp);
    let range = join(&mut h, Some((E, 0)));
    for offset in 1..=4100 {
        h.deliver(Delivery::Live(&live(offset)));
    }
    answer(&mut h, range, 2, 1, &[1, 2]);
    assert_eq!(seen(&mut h), ["joined 2 true", "1", "2"]);
    let again: Vec<RoomRange> = (h.routes().into_iter())
        .filter_map(|r| match r {
            Route::RoomRead { range, .. } => Some(range),
            _ => None,
        })
        .collect();
    let after = RoomRange::After(RoomPos {
        epoch: E,
        offset: 2,
    });
    assert_eq!(again, [after]);
    answer(&mut h, after, 4100, 1, &[3, 4]);
    // No second join answer: the messages go on where the first read ended.
    assert_eq!(seen(&mut h), ["3", "4"]);
}

//! The owner side of QoS 1: store requests in arrival order, completions
//! routed, refusals retried on the router's clock, recent resend.
use proto::v1::{ErrorCode, SendResult};

use super::*;
use crate::cluster::NodeInfo;
use crate::store::{Done, Replay, StoreError, StoreErrorKind, Stored};

fn stored(seq: u64, id: &str) -> Stored {
    Stored {
        seq,
        msg_id: id.into(),
        from: "a".into(),
        room: String::new(),
        payload: Default::default(),
        timestamp_ms: 1,
    }
}

fn append(user: &str, id: &str, reply: Option<ReplyTo>) -> DataMsg {
    DataMsg::Qos1Append {
        user: name(user),
        msg: Box::new(stored(0, id)),
        client_msg_id: format!("c-{id}"),
        reply,
    }
}

fn sender() -> ReplyTo {
    ReplyTo {
        shard: 3,
        key: 7,
        conn_id: 70,
    }
}

fn appended(user: &str, id: &str, seq: u64, reply: Option<ReplyTo>) -> Done {
    Done::Appended {
        user: name(user),
        result: Ok(stored(seq, id)),
        duplicate: false,
        client_msg_id: format!("c-{id}"),
        reply,
        unstored: None,
    }
}

fn refused(user: &str, id: &str, kind: StoreErrorKind, reply: Option<ReplyTo>) -> Done {
    Done::Appended {
        user: name(user),
        result: Err(StoreError::new(kind, "no")),
        duplicate: false,
        client_msg_id: format!("c-{id}"),
        reply,
        unstored: Some(Box::new(stored(0, id))),
    }
}

/// The send results in `actions`, in order.
fn results(actions: &[Action]) -> Vec<SendResult> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(_, ShardMsg::Data(DataMsg::SendDone { result, .. })) => {
                Some((**result).clone())
            }
            _ => None,
        })
        .collect()
}

fn online(r: &mut Router, user: &str, shard: ShardId, conn_id: u64) {
    let entry = entry(shard, conn_id);
    r.handle(
        t0(),
        DataMsg::Online {
            user: name(user),
            entry,
        },
    );
    take(r);
}

#[test]
fn a_direct_append_asks_the_store_with_the_devices_online() {
    let mut r = owner_of("u");
    online(&mut r, "u", 1, 10);
    r.handle(t0(), append("u", "m1", Some(sender())));
    assert_eq!(
        said(&mut r),
        ["store append u c-m1 reply=true online=phone"]
    );
}

#[test]
fn a_stored_message_reaches_its_holders_before_the_senders_result() {
    let mut r = owner_of("u");
    online(&mut r, "u", 1, 10);
    r.handle(t0(), append("u", "m1", Some(sender())));
    take(&mut r);
    r.stored(at(1), appended("u", "m1", 5, Some(sender())));
    let acts = take(&mut r);
    let said: Vec<String> = acts.iter().map(describe).collect();
    assert_eq!(said, ["1:deliver u 5", "3:other"]);
    let res = results(&acts);
    assert!(res[0].accepted && res[0].msg_id == "m1" && res[0].client_msg_id == "c-m1");
}

#[test]
fn past_max_pending_appends_a_sender_is_told_overloaded() {
    let qos = QosConfig {
        max_pending_appends: 1,
        ..QosConfig::default()
    };
    let (mut r, stats) = router_with(owner("u", SHARDS) as ShardId, false, &qos);
    r.handle(t0(), append("u", "m1", Some(sender())));
    r.handle(t0(), append("u", "m2", Some(sender())));
    let acts = take(&mut r);
    assert_eq!(acts.len(), 2, "one store request, one refusal");
    let res = results(&acts);
    assert_eq!(res[0].code, ErrorCode::Overloaded as i32);
    assert_eq!(res[0].client_msg_id, "c-m2");
    // Once the store answers, there is room again.
    r.stored(at(1), appended("u", "m1", 1, Some(sender())));
    take(&mut r);
    r.handle(at(2), append("u", "m3", Some(sender())));
    assert_eq!(said(&mut r), ["store append u c-m3 reply=true online="]);
    assert_eq!(
        stats.qos_appends.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn a_full_inbox_or_a_store_down_is_the_senders_to_retry() {
    let (mut r, stats) = router_with(owner("u", SHARDS) as ShardId, false, &QosConfig::default());
    let mut res = Vec::new();
    for (id, kind) in [
        ("m1", StoreErrorKind::Full),
        ("m2", StoreErrorKind::Unreachable),
    ] {
        r.handle(t0(), append("u", id, Some(sender())));
        take(&mut r);
        r.stored(at(1), refused("u", id, kind, Some(sender())));
        res.extend(results(&take(&mut r)));
    }
    assert_eq!(res[0].code, ErrorCode::InboxFull as i32);
    assert_eq!(res[1].code, ErrorCode::Unavailable as i32);
    assert!(!res[0].accepted && !res[1].accepted);
    assert_eq!(
        stats
            .qos_inbox_full
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(r.unsettled(), (0, 0), "a sender's refusal is not kept");
}

#[test]
fn a_room_copy_refused_is_asked_for_again_after_a_delay() {
    let (mut r, stats) = router_with(owner("u", SHARDS) as ShardId, false, &QosConfig::default());
    r.handle(t0(), append("u", "m1", None));
    assert_eq!(said(&mut r), ["store append u c-m1 reply=false online="]);
    r.stored(at(1), refused("u", "m1", StoreErrorKind::Unreachable, None));
    assert!(said(&mut r).is_empty(), "nobody to tell");
    assert_eq!(r.unsettled(), (1, 0));
    r.on_tick(at(2));
    assert!(said(&mut r).is_empty(), "not yet due");
    r.on_tick(at(1000));
    assert_eq!(said(&mut r), ["store append u c-m1 reply=false online="]);
    let retries = stats
        .qos_append_retries
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(retries, 1);
}

#[test]
fn room_copies_keep_their_arrival_order_behind_a_refused_one() {
    let mut r = owner_of("u");
    r.handle(t0(), append("u", "m1", None));
    take(&mut r);
    r.stored(at(1), refused("u", "m1", StoreErrorKind::Busy, None));
    // m2 arrives while m1 waits: it queues behind m1.
    r.handle(at(2), append("u", "m2", None));
    assert!(said(&mut r).is_empty(), "m2 waits behind m1");
    r.on_tick(at(1000));
    assert_eq!(
        said(&mut r),
        [
            "store append u c-m1 reply=false online=",
            "store append u c-m2 reply=false online="
        ]
    );
}

#[test]
fn a_room_copy_refused_for_good_is_counted_and_not_retried() {
    let (mut r, stats) = router_with(owner("u", SHARDS) as ShardId, false, &QosConfig::default());
    r.handle(t0(), append("u", "m1", None));
    take(&mut r);
    r.stored(at(1), refused("u", "m1", StoreErrorKind::Refused, None));
    r.on_tick(at(10_000));
    assert!(said(&mut r).is_empty());
    let dropped = stats
        .qos_append_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped, 1);
}

/// An ack and a replay crossing: the router hands reads and acks to the
/// store in arrival order (the store answers in that order too), so a read
/// that arrived before an ack reports what was unacked then, and the
/// session drops what it already has; nothing is reordered here.
#[test]
fn an_ack_and_a_read_reach_the_store_in_arrival_order_and_the_replay_goes_back() {
    let (mut r, stats) = router_with(owner("u", SHARDS) as ShardId, false, &QosConfig::default());
    let conn = sender();
    let read = DataMsg::Qos1Read {
        user: name("u"),
        device: name("d"),
        after: Some(2),
        max: 10,
        conn,
    };
    r.handle(t0(), read);
    let ack = DataMsg::Qos1Ack {
        user: name("u"),
        device: name("d"),
        seq: 4,
    };
    r.handle(t0(), ack);
    assert_eq!(
        said(&mut r),
        ["store read u after=Some(2)", "store ack u 4"]
    );
    let replay = Replay {
        msgs: vec![stored(3, "a"), stored(4, "b")],
        gap: None,
        last_seq: 4,
        from: 2,
    };
    r.stored(
        at(1),
        Done::Read {
            result: Ok(replay),
            conn,
        },
    );
    let acts = take(&mut r);
    assert!(matches!(
        &acts[..],
        [Action::Send(3, ShardMsg::Data(DataMsg::Qos1Replay { .. }))]
    ));
    assert_eq!(
        stats.qos_resumes.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// Where the user is while a refused room copy waits for its retry: the
/// stored message goes where the user is when the store answers, not where
/// it was at the first attempt (here: gone from this node, on a peer now).
#[test]
fn a_retried_copy_goes_where_the_user_is_when_it_is_stored() {
    let mut r = owner_of("u");
    r.set_peered(true);
    online(&mut r, "u", 1, 10);
    r.handle(t0(), append("u", "m1", None));
    take(&mut r);
    r.stored(at(1), refused("u", "m1", StoreErrorKind::Unreachable, None));
    // Meanwhile the device moves to node n2.
    r.handle(
        at(2),
        DataMsg::Offline {
            user: name("u"),
            shard: 1,
            conn_id: 10,
        },
    );
    r.handle_peer(at(3), interest(Kind::User, "u", "n2", true));
    take(&mut r);
    r.on_tick(at(1000));
    take(&mut r);
    r.stored(at(1001), appended("u", "m1", 6, None));
    assert_eq!(said(&mut r), ["bus n2"], "to the peer only, no local shard");
}

#[test]
fn a_peer_that_just_became_interested_gets_the_last_message_again() {
    let mut r = owner_of("u");
    r.set_peered(true);
    r.handle(t0(), append("u", "m1", Some(sender())));
    take(&mut r);
    r.stored(at(1), appended("u", "m1", 9, Some(sender())));
    take(&mut r);
    r.handle_peer(at(100), interest(Kind::User, "u", "n3", true));
    assert_eq!(said(&mut r), ["bus n3"]);
    // Past the window it is not sent again.
    r.handle_peer(at(100), interest(Kind::User, "u", "n3", false));
    r.handle_peer(at(10_000), interest(Kind::User, "u", "n3", true));
    assert!(said(&mut r).is_empty());
}

#[test]
fn without_peers_nothing_is_remembered_or_sent_to_the_bus() {
    let mut r = owner_of("u");
    r.handle(t0(), append("u", "m1", Some(sender())));
    take(&mut r);
    r.stored(at(1), appended("u", "m1", 1, Some(sender())));
    assert_eq!(said(&mut r), ["3:other"], "only the result: nobody holds u");
    assert_eq!(r.owner.recent.len(), 0);
}

#[test]
fn a_duplicate_is_routed_again_and_counted_as_a_dedupe_hit() {
    let (mut r, stats) = router_with(owner("u", SHARDS) as ShardId, false, &QosConfig::default());
    online(&mut r, "u", 2, 10);
    r.handle(t0(), append("u", "m1", Some(sender())));
    take(&mut r);
    let dup = Done::Appended {
        user: name("u"),
        result: Ok(stored(4, "m1")),
        duplicate: true,
        client_msg_id: "c-m1".into(),
        reply: Some(sender()),
        unstored: None,
    };
    r.stored(at(1), dup);
    assert_eq!(said(&mut r), ["2:deliver u 4", "3:other"]);
    assert_eq!(
        stats
            .qos_dedupe_hits
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn a_drain_names_another_node_by_wire_and_spreads_clients() {
    let mut r = router(0, false);
    let node = |id: &str| NodeInfo {
        id: id.into(),
        incarnation: 1,
        bus: vec![],
        ws: format!("{id}:80"),
        tcp: format!("{id}:81"),
        admin: String::new(),
        conns: 0,
        draining: false,
        version: String::new(),
        pid: 0,
    };
    let redirect = Redirect {
        nodes: vec![node("b"), node("c")].into(),
        policy: crate::config::RoutePolicy::default(),
        reconnect_after_ms: 0,
        spread_ms: 0,
    };
    let ws = r.redirect(&redirect, Some("u1"), Wire::WsJson);
    assert!(ws == "ws://b:80/ws" || ws == "ws://c:80/ws", "{ws}");
    let tcp = r.redirect(&redirect, Some("u1"), Wire::Tcp);
    assert!(tcp == "b:81" || tcp == "c:81", "{tcp}");
    assert_eq!(r.redirect(&Redirect::default(), None, Wire::Tcp), "");
}

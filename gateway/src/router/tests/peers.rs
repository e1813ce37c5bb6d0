//! Many nodes: the peers' interest, what comes off the bus, announces.
use super::*;

#[test]
fn a_users_first_and_last_device_are_announced_to_peers() {
    let mut r = owner_of("u");
    r.set_peered(true);
    r.up("u", 1, 10);
    assert_eq!(said(&mut r), ["bus all"], "the node's first");
    r.up("u", 2, 11);
    assert!(said(&mut r).is_empty(), "a second device");
    r.handle(
        t0(),
        DataMsg::Offline {
            user: name("u"),
            shard: 1,
            conn_id: 10,
        },
    );
    assert!(said(&mut r).is_empty(), "one left");
    r.handle(
        t0(),
        DataMsg::Offline {
            user: name("u"),
            shard: 2,
            conn_id: 11,
        },
    );
    assert_eq!(said(&mut r), ["bus all"], "the node's last");
}

#[test]
fn a_stale_offline_changes_nothing() {
    let mut r = owner_of("u");
    r.set_peered(true);
    r.up("u", 1, 10);
    take(&mut r);
    r.handle(
        t0(),
        DataMsg::Offline {
            user: name("u"),
            shard: 1,
            conn_id: 99,
        },
    );
    assert!(r.is_idle());
    assert_eq!(r.tables().presence("u").len(), 1);
}

#[test]
fn an_interested_peer_gets_one_envelope_per_message() {
    let mut r = owner_of("u");
    r.handle_peer(t0(), interest(Kind::User, "u", "n2", true));
    assert!(said(&mut r).is_empty(), "nothing stored here to resend");
    r.handle(
        t0(),
        DataMsg::ToUser {
            user: name("u"),
            msg: msg(Qos::AtMostOnce, "m"),
        },
    );
    assert_eq!(said(&mut r), ["bus n2"]);
    r.handle_peer(t0(), interest(Kind::User, "u", "n2", false));
    r.handle(
        t0(),
        DataMsg::ToUser {
            user: name("u"),
            msg: msg(Qos::AtMostOnce, "m"),
        },
    );
    assert!(said(&mut r).is_empty());
}

#[test]
fn a_room_envelope_goes_to_every_interested_peer_once() {
    let mut r = owner_of("r");
    for node in ["n2", "n3", "n2"] {
        r.handle_peer(t0(), interest(Kind::Room, "r", node, true));
    }
    assert!(said(&mut r).is_empty(), "no resend for rooms");
    r.handle(
        t0(),
        DataMsg::ToRoom {
            room: name("r"),
            msg: msg(Qos::AtMostOnce, "m"),
        },
    );
    assert_eq!(said(&mut r), ["bus n2,n3"]);
}

#[test]
fn what_a_peer_sent_is_delivered_here_and_never_sent_back_out() {
    let mut r = owner_of("u");
    r.handle_peer(t0(), interest(Kind::User, "u", "n2", true));
    r.up("u", 3, 10);
    take(&mut r);
    let m = msg(Qos::AtMostOnce, "m");
    r.handle_peer(
        t0(),
        PeerMsg::ToUser {
            user: name("u"),
            msg: m,
        },
    );
    assert_eq!(said(&mut r), ["3:user local u"]);
}

#[test]
fn a_peers_stored_message_and_kick_reach_the_holding_shards() {
    let mut r = owner_of("u");
    r.up("u", 2, 10);
    take(&mut r);
    let m = msg(Qos::AtLeastOnce, "m");
    r.handle_peer(
        t0(),
        PeerMsg::Stored {
            user: name("u"),
            seq: 9,
            msg: m,
        },
    );
    r.handle_peer(t0(), PeerMsg::Kick { user: name("u") });
    assert_eq!(said(&mut r), ["2:deliver u 9", "2:kick u"]);
}

#[test]
fn an_arriving_envelope_goes_to_its_names_owner_and_a_reset_to_all() {
    let mut r = router(0, false);
    r.arrived(interest(Kind::User, "u", "n2", true));
    let reset = PeerMsg::Reset {
        node: name("n2"),
        shard: 0,
        shards: 1,
        end_follows: true,
    };
    r.arrived(reset);
    r.arrived(PeerMsg::SnapshotEnd {
        node: name("n2"),
        shard: 0,
    });
    let o = owner("u", SHARDS);
    let mut want = vec![format!("{o}:peer interest u")];
    want.extend((0..SHARDS).map(|s| format!("{s}:peer reset n2")));
    want.extend((0..SHARDS).map(|s| format!("{s}:peer end n2")));
    assert_eq!(said(&mut r), want);
}

#[test]
fn a_reset_or_a_peer_gone_forgets_what_it_wanted() {
    let mut r = owner_of("u");
    r.handle_peer(t0(), interest(Kind::User, "u", "n2", true));
    r.handle_peer(t0(), interest(Kind::User, "u", "n3", true));
    take(&mut r);
    r.handle_peer(
        t0(),
        PeerMsg::Reset {
            node: name("n2"),
            shard: 0,
            shards: 1,
            end_follows: false,
        },
    );
    assert_eq!(&r.remote_nodes(Kind::User, "u")[..], &[name("n3")]);
    r.forget_peer("n3");
    assert!(r.remote_nodes(Kind::User, "u").is_empty());
}

/// The owner sees a peer's `Reset` (sent to every shard), then a live
/// message from another local shard, then the peer's `Interest` (sent to
/// the owner only): the message still reaches the peer, and what the
/// snapshot did not say again goes at its end.
#[test]
fn a_message_between_a_reset_and_the_snapshot_still_reaches_the_peer() {
    let mut r = owner_of("u");
    r.handle_peer(t0(), interest(Kind::User, "u", "n2", true));
    r.handle_peer(t0(), interest(Kind::User, "gone", "n2", true));
    take(&mut r);
    let reset = PeerMsg::Reset {
        node: name("n2"),
        shard: 0,
        shards: 1,
        end_follows: true,
    };
    r.handle_peer(t0(), reset);
    let to_u = || DataMsg::ToUser {
        user: name("u"),
        msg: msg(Qos::AtMostOnce, "m"),
    };
    r.handle(t0(), to_u());
    assert_eq!(said(&mut r), ["bus n2"]);
    r.handle_peer(t0(), interest(Kind::User, "u", "n2", true));
    r.handle_peer(
        t0(),
        PeerMsg::SnapshotEnd {
            node: name("n2"),
            shard: 0,
        },
    );
    take(&mut r);
    r.handle(t0(), to_u());
    assert_eq!(said(&mut r), ["bus n2"]);
    assert!(r.remote_nodes(Kind::User, "gone").is_empty());
}

#[test]
fn a_user_on_two_nodes_gets_local_delivery_and_one_envelope() {
    let mut r = owner_of("u");
    r.up("u", 0, 1);
    r.handle_peer(t0(), interest(Kind::User, "u", "n2", true));
    take(&mut r);
    r.handle(
        t0(),
        DataMsg::ToUser {
            user: name("u"),
            msg: msg(Qos::AtMostOnce, "m"),
        },
    );
    assert_eq!(said(&mut r), ["bus n2", "0:user local u"]);
}

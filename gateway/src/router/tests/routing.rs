//! Routing on one node: tables, owners, session routes, and the races
//! between them that the queue order settles.
use super::*;

#[test]
fn the_owner_is_the_meshs() {
    let r = router(0, false);
    let mesh = crate::mesh::Mesh::new(SHARDS, 1).unwrap();
    for n in ["alice", "bob", "room:1", ""] {
        assert_eq!(r.owner(n), mesh.owner(n));
    }
}

#[test]
fn online_adds_the_connection_and_tells_the_owner() {
    let mut r = router(0, false);
    let route = Route::Online {
        user: name("alice"),
        device: name("phone"),
        wire: Wire::Tcp,
    };
    assert!(r.route(from(5, 50), route).is_none());
    assert_eq!(r.tables().user_conns("alice"), &[5]);
    let o = owner("alice", SHARDS);
    assert_eq!(said(&mut r), [format!("{o}:online alice 50")]);
}

#[test]
fn the_first_join_tells_the_rooms_owner_and_the_second_does_not() {
    let mut r = router(2, false);
    let o = owner("r", SHARDS);
    r.route(from(1, 10), Route::Joined(name("r")));
    assert_eq!(said(&mut r), [format!("{o}:interest r 2 true")]);
    r.route(from(2, 20), Route::Joined(name("r")));
    assert!(said(&mut r).is_empty());
    assert_eq!(r.tables().room_members("r").count(), 2);
}

#[test]
fn the_last_leave_withdraws_interest() {
    let mut r = router(2, false);
    let o = owner("r", SHARDS);
    r.route(from(1, 10), Route::Joined(name("r")));
    r.route(from(2, 20), Route::Joined(name("r")));
    take(&mut r);
    r.route(from(1, 10), Route::Left(name("r")));
    assert!(said(&mut r).is_empty());
    r.leave(2, &name("r"));
    assert_eq!(said(&mut r), [format!("{o}:interest r 2 false")]);
}

#[test]
fn a_closed_connection_is_offline_at_the_owner() {
    let mut r = router(1, false);
    let user = name("bob");
    let online = Route::Online {
        user: user.clone(),
        device: name("web"),
        wire: Wire::Tcp,
    };
    r.route(from(3, 30), online);
    take(&mut r);
    r.closed(3, &user, 30);
    assert!(r.tables().user_conns("bob").is_empty());
    let o = owner("bob", SHARDS);
    assert_eq!(said(&mut r), [format!("{o}:offline bob 30")]);
}

#[test]
fn sends_go_to_the_owner_of_their_name() {
    let mut r = router(0, false);
    let m = msg(Qos::AtMostOnce, "m");
    r.route(
        from(1, 1),
        Route::ToUser {
            user: name("u"),
            msg: m.clone(),
        },
    );
    r.route(
        from(1, 1),
        Route::ToRoom {
            room: name("r"),
            msg: m,
        },
    );
    let (ou, or) = (owner("u", SHARDS), owner("r", SHARDS));
    assert_eq!(
        said(&mut r),
        [format!("{ou}:to user u"), format!("{or}:to room r")]
    );
}

#[test]
fn qos1_routes_go_to_the_users_owner_with_who_asked() {
    let mut r = router(0, false);
    let o = owner("u", SHARDS);
    let stored = Box::new(crate::store::Stored {
        seq: 0,
        msg_id: "m".into(),
        from: "a".into(),
        room: String::new(),
        payload: Default::default(),
        timestamp_ms: 0,
    });
    let append = Route::Append {
        user: name("u"),
        msg: stored,
        client_msg_id: "c1".into(),
    };
    r.route(from(1, 11), append);
    let read = Route::Read {
        user: name("u"),
        device: name("d"),
        after: Some(3),
        max: 10,
    };
    r.route(from(1, 11), read);
    let ack = Route::Ack {
        user: name("u"),
        device: name("d"),
        seq: 4,
    };
    r.route(from(1, 11), ack);
    assert_eq!(
        said(&mut r),
        [
            format!("{o}:append u c1 reply=true"),
            format!("{o}:read u conn=11"),
            format!("{o}:ack u 4")
        ]
    );
}

#[test]
fn backend_routes_are_given_back() {
    let mut r = router(0, false);
    let back = r.route(from(1, 1), Route::Event(crate::session::Event::Connected));
    assert!(matches!(back, Some(Route::Event(_))));
    let ask = Route::Authorize {
        action: crate::session::Action::Join,
        room: name("r"),
        send: None,
    };
    assert!(matches!(
        r.route(from(1, 1), ask),
        Some(Route::Authorize { .. })
    ));
    assert!(r.is_idle());
}

#[test]
fn a_direct_message_reaches_each_holding_shard_once() {
    let mut r = owner_of("u");
    r.up("u", 1, 10);
    r.up("u", 1, 11);
    r.up("u", 3, 12);
    take(&mut r);
    r.handle(
        t0(),
        DataMsg::ToUser {
            user: name("u"),
            msg: msg(Qos::AtMostOnce, "m"),
        },
    );
    assert_eq!(said(&mut r), ["1:user local u", "3:user local u"]);
}

#[test]
fn a_direct_message_to_nobody_goes_nowhere() {
    let mut r = owner_of("u");
    r.handle(
        t0(),
        DataMsg::ToUser {
            user: name("u"),
            msg: msg(Qos::AtMostOnce, "m"),
        },
    );
    assert!(r.is_idle());
}

#[test]
fn a_room_message_reaches_each_interested_shard() {
    let mut r = owner_of("r");
    for s in [0, 2] {
        r.handle(
            t0(),
            DataMsg::Interest {
                room: name("r"),
                shard: s,
                on: true,
            },
        );
    }
    r.handle(
        t0(),
        DataMsg::ToRoom {
            room: name("r"),
            msg: msg(Qos::AtMostOnce, "m"),
        },
    );
    assert_eq!(said(&mut r), ["0:room local r", "2:room local r"]);
}

#[test]
fn at_a_member_shard_qos0_is_live_and_qos1_is_stored() {
    let mut r = router(0, false);
    r.handle(
        t0(),
        DataMsg::RoomLocal {
            room: name("r"),
            msg: msg(Qos::AtMostOnce, "a"),
        },
    );
    r.handle(
        t0(),
        DataMsg::RoomLocal {
            room: name("r"),
            msg: msg(Qos::AtLeastOnce, "b"),
        },
    );
    r.handle(
        t0(),
        DataMsg::UserLocal {
            user: name("u"),
            msg: msg(Qos::AtMostOnce, "c"),
        },
    );
    let seq = 7;
    r.handle(
        t0(),
        DataMsg::Qos1Deliver {
            user: name("u"),
            seq,
            msg: msg(Qos::AtLeastOnce, "d"),
        },
    );
    assert_eq!(
        said(&mut r),
        [
            "live room r",
            "store members r",
            "live user u",
            "stored u 7"
        ]
    );
}

#[test]
fn a_qos1_room_message_is_appended_once_per_member_user() {
    let mut r = router(0, false);
    let users = vec![name("b"), name("a"), name("b")];
    r.store_for(users, &msg(Qos::AtLeastOnce, "m9"));
    let (oa, ob) = (owner("a", SHARDS), owner("b", SHARDS));
    assert_eq!(
        said(&mut r),
        [
            format!("{oa}:append a room:m9 reply=false"),
            format!("{ob}:append b room:m9 reply=false")
        ]
    );
}

#[test]
fn the_stores_wake_up_is_given_back() {
    let mut r = router(0, false);
    let ack = DataMsg::Qos1Ack {
        user: name("u"),
        device: name("d"),
        seq: 1,
    };
    assert!(r.handle(t0(), ack).is_none(), "an ack is the store's");
    assert!(matches!(
        r.handle(t0(), DataMsg::StoreReady),
        Some(DataMsg::StoreReady)
    ));
}

#[test]
fn without_peers_nothing_is_announced() {
    let mut r = owner_of("u");
    r.up("u", 1, 10);
    r.handle(
        t0(),
        DataMsg::Interest {
            room: name("u"),
            shard: 1,
            on: true,
        },
    );
    assert!(r.is_idle());
}

#[test]
fn presence_changes_are_kept_only_for_a_writer() {
    let mut with = router(0, true);
    let mut without = router(0, false);
    for r in [&mut with, &mut without] {
        r.up("u", 1, 10);
        r.handle(
            t0(),
            DataMsg::Offline {
                user: name("v"),
                shard: 1,
                conn_id: 3,
            },
        );
    }
    let dirty = with.take_presence_dirty();
    assert!(dirty.contains("u") && dirty.contains("v"));
    assert!(with.take_presence_dirty().is_empty(), "taken once");
    assert!(without.take_presence_dirty().is_empty());
}

/// An upgrade's import holds the `Online`s; a connection closed (or taken
/// back) before they go drops its own, and no `Offline` overtakes it.
#[test]
fn closing_a_connection_whose_online_is_held_drops_it() {
    let mut r = router(1, false);
    let o = owner("bob", SHARDS);
    r.hold_online();
    for (key, conn_id) in [(3, 30), (4, 40)] {
        let online = Route::Online {
            user: name("bob"),
            device: name("web"),
            wire: Wire::Tcp,
        };
        r.route(from(key, conn_id), online);
    }
    r.closed(3, &name("bob"), 30);
    // One held after the first was dropped, then dropped too.
    let online = Route::Online {
        user: name("bob"),
        device: name("web"),
        wire: Wire::Tcp,
    };
    r.route(from(5, 50), online);
    r.closed(5, &name("bob"), 50);
    assert!(said(&mut r).is_empty(), "nothing goes while held");
    assert_eq!(r.tables().user_conns("bob"), &[4]);
    r.release_online();
    let sent = take(&mut r);
    let [Action::Send(to, ShardMsg::Data(DataMsg::OnlineMany(entries)))] = &sent[..] else {
        panic!(
            "expected one OnlineMany, got {:?}",
            sent.iter().map(describe).collect::<Vec<_>>()
        );
    };
    assert_eq!(*to, o);
    let ids: Vec<u64> = entries.iter().map(|(_, e)| e.conn_id).collect();
    assert_eq!(ids, [40]);
    // Once released, a close is an `Offline` again.
    r.closed(4, &name("bob"), 40);
    assert_eq!(said(&mut r), [format!("{o}:offline bob 40")]);
}

//! Races the queue order settles: an interest change during a broadcast,
//! a message racing a connect, one sender's order.
use super::*;

/// The race of an interest change with a broadcast: the owner's queue
/// orders them, and the router answers each in that order. A shard that
/// joins after a message was routed does not get it; one that left before
/// does not either; nothing is delivered twice.
#[test]
fn an_interest_change_during_a_broadcast_follows_the_queue_order() {
    let mut r = owner_of("r");
    let m = msg(Qos::AtMostOnce, "m");
    r.handle(
        t0(),
        DataMsg::Interest {
            room: name("r"),
            shard: 1,
            on: true,
        },
    );
    r.handle(
        t0(),
        DataMsg::ToRoom {
            room: name("r"),
            msg: m.clone(),
        },
    );
    r.handle(
        t0(),
        DataMsg::Interest {
            room: name("r"),
            shard: 2,
            on: true,
        },
    );
    r.handle(
        t0(),
        DataMsg::Interest {
            room: name("r"),
            shard: 1,
            on: false,
        },
    );
    r.handle(
        t0(),
        DataMsg::ToRoom {
            room: name("r"),
            msg: m,
        },
    );
    assert_eq!(said(&mut r), ["1:room local r", "2:room local r"]);
}

/// A user connecting while a message to it is routed: before the owner
/// hears `Online`, the message finds nobody (QoS 0 is live only); after,
/// it reaches the new connection's shard.
#[test]
fn a_message_racing_a_users_connect_follows_the_queue_order() {
    let mut r = owner_of("u");
    let m = msg(Qos::AtMostOnce, "m");
    r.handle(
        t0(),
        DataMsg::ToUser {
            user: name("u"),
            msg: m.clone(),
        },
    );
    r.up("u", 2, 10);
    r.handle(
        t0(),
        DataMsg::ToUser {
            user: name("u"),
            msg: m,
        },
    );
    assert_eq!(said(&mut r), ["2:user local u"]);
}

#[test]
fn one_senders_messages_keep_their_order() {
    let mut r = router(0, false);
    for i in 0..5 {
        let m = msg(Qos::AtMostOnce, &format!("m{i}"));
        r.route(
            from(1, 1),
            Route::ToUser {
                user: name("u"),
                msg: m,
            },
        );
    }
    let ids: Vec<String> = take(&mut r)
        .into_iter()
        .map(|a| match a {
            Action::Send(_, ShardMsg::Data(DataMsg::ToUser { msg, .. })) => {
                match msg.frame().frame.as_ref() {
                    Some(Frame::Deliver(d)) => d.msg_id.clone(),
                    _ => unreachable!(),
                }
            }
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(ids, ["m0", "m1", "m2", "m3", "m4"]);
}

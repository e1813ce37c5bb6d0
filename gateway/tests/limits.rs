//! Resource limits: the per-connection send-queue cap (slow consumers are
//! closed, never buffered without bound and never allowed to stall others),
//! the per-connection room limit and the longest name (user, room, device,
//! target, client message id).

mod common;

use common::*;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;

driver_tests!(
    slow_consumer_is_closed,
    too_many_rooms,
    replay_of_a_reading_client_is_never_a_slow_consumer,
    names_up_to_max_name_bytes,
    devices_up_to_max_name_bytes,
);

/// `limits.max_name_bytes`, 128 by default.
const MAX_NAME: usize = 128;

/// Connects with a 4 KiB receive buffer (set before connect, so the kernel's
/// autotuning cannot grow it): the gateway's output backs up quickly.
fn connect_small_rcvbuf(addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 loopback expected")
    };
    // SAFETY: plain socket calls on a descriptor we create and then hand to
    // `TcpStream`, which owns (and closes) it from here on; every pointer
    // passed points at a live local of the size passed with it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let size: libc::c_int = 4096;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}

fn slow_consumer_is_closed(driver: Driver) {
    const PAYLOAD: usize = 16 << 10;
    const TOTAL: usize = 20 << 20;
    const BATCH: usize = 32;
    // The queue must hold one maximal frame (the gateway refuses a cap below
    // max-frame-bytes + 16), so frames are capped at 32 KiB here.
    let limits = ["--send-queue-bytes", "65536", "--max-frame-bytes", "32768"];
    let gw = Gateway::start(driver, &limits);
    let mut victim = Client::from_tcp(connect_small_rcvbuf(gw.tcp));
    victim.send(&auth(&user_token("victim", "slow"), ""));
    victim.auth = victim.auth_ok();
    let shard = victim.auth.shard;
    let mut bystander = gw.connect_on_shard(WS, "bystander", "phone", shard);
    let mut sender = gw.connect(WS, "sender", "phone");
    let closes = "gateway_slow_consumer_closes_total";
    assert_eq!(metric(&gw.metrics(), closes), Some(0.0));

    // The victim reads nothing from here on. The sender reads every
    // SendResult batch by batch, so it is never a slow consumer itself and
    // each batch proves it is not blocked.
    let payload = vec![0x5a; PAYLOAD];
    let mut sent = 0;
    'flood: while sent < TOTAL {
        for round in 0..8 {
            let ids: Vec<String> = (0..BATCH).map(|i| format!("f{sent}-{round}-{i}")).collect();
            for id in &ids {
                sender.send(&to_user("victim", id, &payload));
            }
            for id in &ids {
                assert!(sender.result_for(id).accepted, "send {id} refused");
            }
            sent += BATCH * PAYLOAD;
        }
        if metric(&gw.metrics(), closes).unwrap_or(0.0) >= 1.0 {
            break 'flood;
        }
    }
    gw.wait_metric(closes, |v| v >= 1.0);

    // The victim gets what was already queued, then Error(SLOW_CONSUMER)
    // as its last frame, then the end.
    let mut delivered = 0;
    loop {
        match victim.next_event() {
            Event::Frame(Frame::Deliver(d)) => {
                assert_eq!(d.payload.len(), PAYLOAD);
                delivered += 1;
            }
            Event::Frame(Frame::Error(e)) => {
                assert_error(&e, ErrorCode::SlowConsumer, true);
                break;
            }
            Event::Frame(f) => panic!("unexpected frame for the slow consumer: {f:?}"),
            Event::Closed(code) => {
                panic!("closed ({code:?}) after {delivered} deliveries without SLOW_CONSUMER")
            }
        }
    }
    victim.expect_closed();
    assert_eq!(metric(&gw.metrics(), closes), Some(1.0));
    // Its shard and the sender carry on.
    bystander.ping(1);
    let r = {
        sender.send(&to_user("bystander", "after", b"still here"));
        sender.result_for("after")
    };
    assert!(r.accepted, "{r:?}");
    let d = bystander.deliver();
    assert_eq!(
        (&d.payload[..], d.msg_id.as_str()),
        (&b"still here"[..], r.msg_id.as_str())
    );
    sender.ping(2);
    gw.assert_shards_serve();
}

/// `limits.max_rooms_per_conn`, 64 by default: exactly that many joins
/// succeed, the next is refused, not fatally.
fn too_many_rooms(driver: Driver) {
    const CAP: usize = 64;
    let gw = Gateway::start(driver, &[]);
    let mut c = gw.connect(TCP, "joiner", "laptop");
    for i in 0..CAP {
        c.join(&format!("room-{i}"));
    }
    c.send(&join(&format!("room-{CAP}")));
    assert_error(&c.error(), ErrorCode::TooManyRooms, false);
    gw.wait_metric("gateway_errors_total{code=\"TOO_MANY_ROOMS\"}", |v| {
        v == 1.0
    });
    // Not fatal: the connection carries on, and leaving makes room.
    c.ping(1);
    c.send(&leave("room-0"));
    assert_eq!(c.left().room, "room-0");
    c.join("one-more");
    c.send(&join("one-too-many"));
    assert_error(&c.error(), ErrorCode::TooManyRooms, false);
    // Membership of the rooms it holds still works.
    let mut sender = gw.connect(WS, "sender", "phone");
    sender.send(&to_room("one-more", "x", b"hi"));
    assert!(sender.result_for("x").accepted);
    assert_eq!(c.deliver().room, "one-more");
}

/// A name of `n` bytes, distinct per `tag`.
fn name(tag: char, n: usize) -> String {
    std::iter::repeat_n(tag, n).collect()
}

/// Rooms, send targets (user and room) and client message ids: 128 bytes
/// are fine, 129 are INVALID_ARGUMENT (an error for a join, a send result
/// for a send), never fatal.
fn names_up_to_max_name_bytes(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let mut c = gw.connect(TCP, "namer", "laptop");
    c.join(&name('r', MAX_NAME));
    c.send(&join(&name('r', MAX_NAME + 1)));
    assert_error(&c.error(), ErrorCode::InvalidArgument, false);
    c.ping(1);

    let refused = |c: &mut Client, f: &proto::v1::ClientFrame, id: &str| {
        c.send(f);
        let r = c.result_for(id);
        assert!(!r.accepted, "{r:?}");
        assert_eq!(r.code(), ErrorCode::InvalidArgument, "{r:?}");
        assert!(r.msg_id.is_empty(), "{r:?}");
    };
    let long_user = name('u', MAX_NAME + 1);
    let long_room = name('r', MAX_NAME + 1);
    refused(&mut c, &to_user(&long_user, "u", b"x"), "u");
    refused(&mut c, &qos1_to_user(&long_user, "u1", b"x"), "u1");
    refused(&mut c, &to_room(&long_room, "r", b"x"), "r");
    let long_id = name('i', MAX_NAME + 1);
    refused(&mut c, &to_user("namer", &long_id, b"x"), &long_id);
    refused(&mut c, &qos1_to_user("namer", &long_id, b"x"), &long_id);
    c.ping(2);

    // At the limit, everything is accepted and delivered.
    let mut long = gw.connect(WS, &name('u', MAX_NAME), "phone");
    let id = name('i', MAX_NAME);
    c.send(&to_user(&name('u', MAX_NAME), &id, b"to a long name"));
    assert!(c.result_for(&id).accepted);
    assert_eq!(&long.deliver().payload[..], b"to a long name");
    c.send(&to_room(&name('r', MAX_NAME), "room", b"to a long room"));
    assert!(c.result_for("room").accepted);
    assert_eq!(c.deliver().room, name('r', MAX_NAME));
    let errors = "gateway_errors_total{code=\"INVALID_ARGUMENT\"}";
    gw.wait_metric(errors, |v| v >= 1.0);
}

/// The device (Auth frame or token claim) and the user (token `sub`): 128
/// bytes are fine; 129 in the Auth frame are a fatal INVALID_ARGUMENT, in
/// the token a refused token (HTTP 401 at the upgrade).
fn devices_up_to_max_name_bytes(driver: Driver) {
    let gw = Gateway::start(driver, &[]);
    let (user, device) = (name('u', MAX_NAME), name('d', MAX_NAME));
    let mut c = Client::from_tcp(TcpStream::connect(gw.tcp).unwrap());
    c.send(&auth(&user_token(&user, "x"), &device));
    gw.check_auth(&c.auth_ok(), &user, &device);
    let mut c = Client::from_tcp(TcpStream::connect(gw.tcp).unwrap());
    c.send(&auth(&user_token("bob", "x"), &name('d', MAX_NAME + 1)));
    assert_error(&c.error(), ErrorCode::InvalidArgument, true);
    c.expect_closed();

    gw.connect(WS, &user, &device).ping(1);
    for (t, reason) in [
        (
            user_token(&name('u', MAX_NAME + 1), "phone"),
            "invalid sub claim",
        ),
        (
            user_token("bob", &name('d', MAX_NAME + 1)),
            "invalid device claim",
        ),
    ] {
        let bearer = format!("Bearer {t}");
        match upgrade(gw.ws, "/ws", &[("authorization", &bearer)]).map_err(|e| *e) {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401);
                let body = resp.body().clone().unwrap_or_default();
                assert_eq!(String::from_utf8_lossy(&body), format!("{reason}\n"));
            }
            Err(e) => panic!("expected HTTP 401 ({reason}), got {e}"),
            Ok(_) => panic!("a token with a name over {MAX_NAME} bytes was accepted"),
        }
    }
    gw.assert_shards_serve();
}

/// 4 MiB of QoS 1 messages wait for a device whose send queue holds 64 KiB
/// and whose socket buffer is small: the replay goes out at most half a
/// queue at a time, as acks make room, and a client that reads and acks
/// gets every message in order, never SLOW_CONSUMER.
fn replay_of_a_reading_client_is_never_a_slow_consumer(driver: Driver) {
    const PAYLOAD: usize = 16 << 10;
    const N: u64 = 256;
    let limits = ["--send-queue-bytes", "65536", "--max-frame-bytes", "32768"];
    let gw = Gateway::start(driver, &[&limits[..], &["--retransmit-ms", "200"]].concat());
    let mut alice = gw.connect(WS, "alice", "desk");
    let payload = vec![0x5a; PAYLOAD];
    for i in 1..=N {
        let id = i.to_string();
        alice.send(&qos1_to_user("bob", &id, &payload));
        let r = alice.result_for(&id);
        assert!(r.accepted, "{r:?}");
    }
    let mut bob = Client::from_tcp(connect_small_rcvbuf(gw.tcp));
    bob.send(&auth(&user_token("bob", "phone"), ""));
    bob.auth = bob.auth_ok();
    let mut last = 0;
    while last < N {
        let d = bob.deliver();
        assert_eq!(d.payload.len(), PAYLOAD, "{d:?}");
        // Retransmits of what the ack has not reached yet may come again.
        if d.seq <= last {
            continue;
        }
        assert_eq!(d.seq, last + 1, "a hole after {last}");
        last = d.seq;
        bob.send(&ack(last));
    }
    // Retransmits that crossed the last ack may come before the Pong.
    bob.send(&ping(1));
    loop {
        match bob.recv() {
            Frame::Deliver(d) => assert!(d.seq <= N, "{d:?}"),
            Frame::Pong(p) => break assert_eq!(p.nonce, 1),
            f => panic!("expected the Pong, got {f:?}"),
        }
    }
    let text = gw.metrics();
    assert_eq!(
        metric(&text, "gateway_slow_consumer_closes_total"),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "gateway_errors_total{code=\"SLOW_CONSUMER\"}"),
        Some(0.0)
    );
}

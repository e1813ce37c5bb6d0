//! Helpers of the QoS 1 test files: stored sends, deliveries checked.
use super::*;
use proto::v1::Deliver;

/// Retransmits that cannot fire while a test runs (they would be extra
/// frames in tests that are not about them).
pub const NO_RETRANSMIT: [&str; 2] = ["--retransmit-ms", "30000"];

/// Sends a QoS 1 message and returns its msg_id once it is stored.
#[track_caller]
pub fn send_q1(c: &mut Client, to: &str, client_msg_id: &str, payload: &str) -> String {
    c.send(&qos1_to_user(to, client_msg_id, payload.as_bytes()));
    let r = c.result_for(client_msg_id);
    assert!(r.accepted && !r.msg_id.is_empty(), "{r:?}");
    r.msg_id
}

#[track_caller]
pub fn assert_q1(d: &Deliver, seq: u64, payload: &str, msg_id: &str) {
    assert_eq!(d.qos(), Qos::AtLeastOnce, "{d:?}");
    assert_eq!(
        (d.seq, &d.payload[..], d.msg_id.as_str()),
        (seq, payload.as_bytes(), msg_id),
        "{d:?}"
    );
}

/// Gateway flags of every run: fast retransmits, and an inbox that holds
/// the whole run (a bound would be a gap, which fails this test).
pub const QOS1_FLAGS: [&str; 4] = ["--retransmit-ms", "200", "--inbox-per-user", "20000"];

/// `QOS1_FLAGS` without the fast retransmits: for tests about something
/// else, where a retransmitted copy (after an ack that took longer than
/// 200 ms on a loaded machine) would sit among the frames a test reads.
pub const QOS1_NO_RETRANSMIT_FLAGS: [&str; 4] = [
    NO_RETRANSMIT[0],
    NO_RETRANSMIT[1],
    "--inbox-per-user",
    "20000",
];

/// A gateway with `QOS1_FLAGS`, on Redis when `redis` is a URL.
pub fn start_qos1(driver: Driver, redis: Option<&str>) -> Gateway {
    start_qos1_with(driver, redis, &QOS1_FLAGS)
}

/// A gateway with `flags` (e.g. `QOS1_NO_RETRANSMIT_FLAGS`), on Redis when
/// `redis` is a URL.
pub fn start_qos1_with(driver: Driver, redis: Option<&str>, flags: &[&str]) -> Gateway {
    let mut args = flags.to_vec();
    if let Some(url) = redis {
        args.extend(["--redis", url]);
    }
    Gateway::start(driver, &args)
}

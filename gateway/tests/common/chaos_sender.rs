//! The chaos run's sender: pipelines numbered QoS 1 messages within a
//! window, reconnecting to whichever gateway is current, and logs what it
//! was told (see `chaos`).
use std::collections::BTreeSet;
use std::time::Instant;

use super::*;

/// What the sender saw.
pub struct SendLog {
    /// The msg_id of every message's SendResult, by counter.
    pub msg_ids: Vec<String>,
    /// How many times its connection ended and it reconnected.
    pub reconnects: usize,
}

/// Sends messages `0..n` (client_msg_id and payload = the counter) to
/// `to` with at most `window` unanswered; after a reconnect, resends every
/// message it has no SendResult for, with the same client_msg_id.
pub fn run_sender(slot: &Slot, to: &str, n: usize, window: usize, deadline: Instant) -> SendLog {
    run_sender_pausing(slot, to, n, window, deadline, None)
}

/// A point in the sender's run: once it has SendResults for `at` messages
/// it tells `reached`, then waits for `resume` (or its end) before it goes
/// on, e.g. while the test kills the gateway under it.
pub struct Pause {
    pub at: usize,
    pub reached: mpsc::Sender<()>,
    pub resume: mpsc::Receiver<()>,
}

/// `run_sender`, stopping once at `pause`.
pub fn run_sender_pausing(
    slot: &Slot,
    to: &str,
    n: usize,
    window: usize,
    deadline: Instant,
    mut pause: Option<Pause>,
) -> SendLog {
    let mut msg_ids: Vec<Option<String>> = vec![None; n];
    let mut answered = 0;
    let mut next = 0;
    let mut reconnects = 0;
    let (_, mut c) = slot.connect(TCP, "sender", "desk", Some(0), deadline);
    loop {
        // Everything sent on an earlier connection without an answer.
        let mut open: BTreeSet<usize> = (0..next).filter(|&i| msg_ids[i].is_none()).collect();
        let mut ok = open.iter().all(|&i| c.try_send(&numbered(to, i)));
        while ok {
            assert!(Instant::now() < deadline, "sender: deadline, {next} sent");
            while open.len() < window && next < n {
                ok &= c.try_send(&numbered(to, next));
                open.insert(next);
                next += 1;
            }
            if open.is_empty() && next == n {
                let msg_ids = msg_ids.into_iter().map(Option::unwrap).collect();
                return SendLog {
                    msg_ids,
                    reconnects,
                };
            }
            match c.next_event() {
                Event::Frame(Frame::SendResult(r)) => {
                    let i: usize = r.client_msg_id.parse().expect("a counter");
                    assert!(r.accepted && !r.msg_id.is_empty(), "message {i}: {r:?}");
                    if let Some(first) = &msg_ids[i] {
                        assert_eq!(first, &r.msg_id, "a retry of {i} got a new msg_id");
                    } else {
                        answered += 1;
                    }
                    msg_ids[i] = Some(r.msg_id);
                    open.remove(&i);
                    if let Some(p) = pause.take_if(|p| answered >= p.at) {
                        let _ = p.reached.send(());
                        let left = deadline.saturating_duration_since(Instant::now());
                        // Err: the test ended its part (it failed, or it
                        // has nothing to wait for).
                        let _ = p.resume.recv_timeout(left);
                    }
                }
                Event::Frame(f) => panic!("sender: unexpected {f:?}"),
                Event::Closed(_) => ok = false,
            }
        }
        reconnects += 1;
        c = slot.connect(TCP, "sender", "desk", None, deadline).1;
    }
}

fn numbered(to: &str, i: usize) -> proto::v1::ClientFrame {
    let id = i.to_string();
    qos1_to_user(to, &id, id.as_bytes())
}

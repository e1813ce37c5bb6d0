//! One client streaming frames as fast as it can write cannot stall the
//! others on its shard: each connection gets a bounded share of reads per
//! shard round (`reader::READS_PER_TURN`). Shown on the event: another
//! client's ping is answered while the flood is still going.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use proto::codec::Encoding;

driver_tests!(
    a_flooding_client_does_not_stall_its_shard,
    coalesced_reads_answer_and_route
);

fn a_flooding_client_does_not_stall_its_shard(driver: Driver) {
    // One shard: both clients share it. No frame rate cap, or the flooder
    // would be closed instead of read.
    let gw = Gateway::start(driver, &["--shards", "1", "--max-frames-per-sec", "0"]);
    let flooder = gw.connect(TCP, "flood", "d");
    let mut stream: TcpStream = flooder.tcp_stream().try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    // Acks produce no answer: the flooder never has to read.
    let one = length_prefixed(&encode_client(&ack(0), Encoding::Proto));
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 8192).collect();
    let (s2, w2) = (stop.clone(), written.clone());
    let t = std::thread::spawn(move || {
        while !s2.load(Ordering::Relaxed) {
            if stream.write_all(&batch).is_err() {
                break;
            }
            w2.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    });
    // The flood is on before the other client asks.
    wait_for("the flood started", || {
        written.load(Ordering::Relaxed) > 1 << 20
    });
    let mut other = gw.connect(WS, "other", "d");
    for nonce in 1..=5 {
        other.ping(nonce);
    }
    let during = written.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert!(
        during > 1 << 20,
        "answered while {during} bytes of flood were written"
    );
    drop(flooder);
}

/// Read coalescing (`read_coalesce_us`) changes when a shard reads, not
/// what: pings are answered and messages routed, in order, across
/// transports and shards.
fn coalesced_reads_answer_and_route(driver: Driver) {
    let gw = Gateway::start(driver, &["--read-coalesce-us", "20000"]);
    let mut alice = gw.connect(WS, "alice", "d");
    let mut bob = gw.connect(TCP, "bob", "d");
    for i in 0..20 {
        alice.ping(i);
        bob.ping(i);
        let id = format!("m{i}");
        bob.send(&to_user("alice", &id, id.as_bytes()));
        assert!(bob.result_for(&id).accepted);
        assert_eq!(&alice.deliver().payload[..], id.as_bytes());
    }
}

//! `proto::bus::parse` over a stream of bus frames with the default limits:
//! never panics, always makes progress, and every parsed frame re-encodes
//! to bytes that parse to the same frame. The same bytes, in two chunks, go
//! to a `relay::Inbound`, which must never panic either.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use proto::bus::{self, Limits};
use relay::{Config, Identity, Inbound, Seen};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut rest = data;
    while let Ok(Some((frame, consumed))) = bus::parse(rest, &limits) {
        assert!(consumed >= bus::HEADER_LEN && consumed <= rest.len());
        let mut again = Vec::new();
        frame.encode(&mut again);
        let (reparsed, n) = bus::parse(&again, &limits)
            .expect("re-encoded frame parses")
            .expect("re-encoded frame is whole");
        assert_eq!(n, again.len());
        assert_eq!(reparsed, frame);
        rest = &rest[consumed..];
    }

    // The first byte picks where the stream is split.
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(sel).min(stream.len());
    let now = Instant::now();
    let local = Identity {
        node_id: "fuzz".to_owned(),
        incarnation: 1,
        shard: 0,
        shards: 1,
    };
    let mut seen = Seen::new();
    let mut inbound = Inbound::new(local, Config::default(), now);
    inbound.handle_bytes(now, &stream[..cut], &mut seen);
    inbound.handle_bytes(now, &stream[cut..], &mut seen);
    while inbound.poll_event().is_some() {}
    if let Some(out) = inbound.poll_transmit() {
        let mut rest = &out[..];
        while let Some((_, n)) = bus::parse(rest, &limits).expect("our own writes parse") {
            rest = &rest[n..];
        }
        assert!(rest.is_empty());
    }
});

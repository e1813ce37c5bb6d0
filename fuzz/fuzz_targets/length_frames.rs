//! `proto::frame::decode` over a stream of length-prefixed frames: never
//! panics, always makes progress, and re-encoding a frame gives its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::frame;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limit, so small and large maxima both get
    // hit; 0 picks the server's own (`max_frame_bytes`).
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let max = match sel {
        0 => gateway::config::Config::default().limits.max_frame_bytes,
        n => usize::from(n) * 16,
    };
    while let Ok(Some((consumed, payload))) = frame::decode(rest, max) {
        assert!(consumed >= frame::HEADER_LEN && consumed <= rest.len());
        assert!(payload.len() <= max);
        let mut again = Vec::new();
        frame::encode(payload, &mut again);
        assert_eq!(again, rest[..consumed]);
        rest = &rest[consumed..];
    }
});

//! permessage-deflate's inflate path (`proto::ws::deflate`) on arbitrary
//! compressed messages and windows, under the server's frame limit: never
//! panics, never holds more than the limit plus one byte, fails only with
//! 1009 (too large) or 1007 (corrupt); what it inflates without a window
//! is what a second inflater (miniz_oxide, a different implementation)
//! makes of the same bytes; and anything the server's compressor frames
//! inflates back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::ws::deflate::{slide_window, Deflater, Inflater};
use proto::ws::{decode_frame_ext, Opcode, Role, WsError};

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, rest)) = input.split_first() else {
        return;
    };
    let max = gateway::config::Config::default().limits.max_frame_bytes;
    // The server's compressor round trip, at the level the byte picks.
    let mut framed = Vec::new();
    if Deflater::new(u32::from(ctl % 9) + 1).frame(Opcode::Binary, rest, &mut framed) {
        let head = decode_frame_ext(&mut framed, Role::Client, usize::MAX >> 1, true)
            .unwrap()
            .unwrap();
        assert!(head.rsv1 && head.frame_len() == framed.len());
        let mut back = Vec::new();
        Inflater::new()
            .message(&[], &framed[head.header_len..], rest.len(), &mut back)
            .unwrap();
        assert_eq!(back, rest);
    }
    // Arbitrary bytes as a compressed message, after a window of the
    // length the byte picks (a client with context takeover).
    let split = usize::from(ctl >> 1).min(rest.len());
    let (window, data) = rest.split_at(split);
    let window = if ctl & 1 == 1 { window } else { &[][..] };
    let mut out = Vec::new();
    match Inflater::new().message(window, data, max, &mut out) {
        Ok(()) => {
            assert!(out.len() <= max);
            if window.is_empty() {
                let mut with_tail = data.to_vec();
                with_tail.extend_from_slice(&[0, 0, 0xff, 0xff]);
                let (corrupt, reference) = reference_inflate(&with_tail, max);
                if corrupt {
                    // Where miniz gives up, zlib may still wait for more
                    // bits (a truncated block): they agree up to there.
                    assert!(out.starts_with(&reference), "inflaters disagree");
                } else {
                    assert_eq!(out, reference, "inflaters disagree");
                }
            }
            let mut w = window.to_vec();
            slide_window(&mut w, &out, 9);
            assert!(w.len() <= 512);
        }
        Err(e @ WsError::TooLarge { .. }) => {
            assert_eq!(e.close_code(), 1009);
            assert!(out.capacity() <= max + 1, "{}", out.capacity());
        }
        Err(e @ WsError::BadCompressed) => assert_eq!(e.close_code(), 1007),
        Err(e) => panic!("unexpected {e:?}"),
    }
});

/// miniz_oxide's inflate of a raw deflate stream, in one call with room for
/// `max + 1` bytes: whether it found the data corrupt, and its output.
fn reference_inflate(data: &[u8], max: usize) -> (bool, Vec<u8>) {
    use miniz_oxide::inflate::stream::{inflate, InflateState};
    let mut state = InflateState::new_boxed(miniz_oxide::DataFormat::Raw);
    let mut out = vec![0u8; max + 1];
    let r = inflate(&mut state, data, &mut out, miniz_oxide::MZFlush::Sync);
    out.truncate(r.bytes_written);
    (r.status == Err(miniz_oxide::MZError::Data), out)
}

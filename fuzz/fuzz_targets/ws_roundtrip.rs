//! WebSocket frames the other way round: a message cut into fragments by
//! the fuzzer, encoded (masked, as a client sends) and decoded as the
//! server does, with the server's `max_frame_bytes` for frames and
//! messages: each frame decodes to its own length, and the assembled data
//! equals the concatenated fragments; past the limit the error is
//! `TooLarge`, which is the one the server closes with 1009 (every other
//! error is closed 1008 as BAD_FRAME, never 1009).
#![no_main]

use gateway::config::Config;
use libfuzzer_sys::fuzz_target;
use proto::ws::{apply_mask, decode_frame, encode_header, Assembler, Event, Opcode, Role, WsError};

fuzz_target!(|data: &[u8]| {
    let max = Config::default().limits.max_frame_bytes;
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let opcode = if sel & 1 == 0 {
        Opcode::Binary
    } else {
        Opcode::Text
    };
    // Fragment lengths from the next bytes, scaled so the limit is reachable;
    // the payload is the message counter pattern.
    let mut cuts: Vec<usize> = rest.iter().take(8).map(|&b| usize::from(b) * 300).collect();
    if cuts.is_empty() {
        cuts.push(0);
    }
    let total: usize = cuts.iter().sum();
    let message: Vec<u8> = (0..total)
        .map(|i| (i * 31 + usize::from(sel)) as u8)
        .collect();
    let mut wire = Vec::new();
    let mut at = 0;
    for (i, &len) in cuts.iter().enumerate() {
        let op = if i == 0 { opcode } else { Opcode::Continuation };
        let key = [sel, i as u8, 0x5a, 0xa5];
        encode_header(i + 1 == cuts.len(), op, len, Some(key), &mut wire);
        let start = wire.len();
        wire.extend_from_slice(&message[at..at + len]);
        apply_mask(&mut wire[start..], key);
        at += len;
    }
    let mut asm = Assembler::new(max);
    let mut pos = 0;
    let mut done = None;
    for (i, &len) in cuts.iter().enumerate() {
        let head = match decode_frame(&mut wire[pos..], Role::Server, max) {
            Ok(Some(head)) => head,
            Ok(None) => panic!("frame {i} incomplete"),
            Err(e) => {
                assert!(len > max, "frame {i} of {len} bytes refused: {e:?}");
                assert!(matches!(e, WsError::TooLarge { .. }), "{e:?}");
                assert_eq!(e.close_code(), 1009);
                return;
            }
        };
        assert_eq!(head.payload_len, len);
        assert_eq!(head.fin, i + 1 == cuts.len());
        let end = pos + head.frame_len();
        let payload = &wire[pos + head.header_len..end];
        match asm.push(head, payload) {
            Ok(Some(Event::Data { text, payload, .. })) => {
                assert_eq!(i + 1, cuts.len(), "data before the last fragment");
                assert_eq!(text, opcode == Opcode::Text);
                done = Some(payload.into_owned());
            }
            Ok(None) => assert!(i + 1 < cuts.len()),
            Ok(Some(e)) => panic!("not a data event: {e:?}"),
            Err(e) => {
                assert!(total > max, "a message of {total} bytes refused: {e:?}");
                assert!(matches!(e, WsError::TooLarge { .. }), "{e:?}");
                assert_eq!(e.close_code(), 1009);
                return;
            }
        }
        pos = end;
    }
    assert_eq!(pos, wire.len());
    assert!(total <= max);
    assert_eq!(
        done.as_deref(),
        Some(&message[..]),
        "assembled != fragments"
    );
    assert_eq!(asm.capacity(), 0, "idle assembler holds no buffer");
});

//! `proto::ws::decode_frame` and `Assembler` over a stream of WebSocket
//! frames, decoded as both server and client: never panics, always makes
//! progress, and honours the payload and message limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::ws::{decode_frame, Assembler, Event, Role};

const MAX_PAYLOAD: usize = 4096;
const MAX_MESSAGE: usize = 8192;

fuzz_target!(|data: &[u8]| {
    for role in [Role::Server, Role::Client] {
        let mut buf = data.to_vec();
        let mut pos = 0;
        let mut asm = Assembler::new(MAX_MESSAGE);
        while let Ok(Some(head)) = decode_frame(&mut buf[pos..], role, MAX_PAYLOAD) {
            let end = pos + head.frame_len();
            assert!(end <= buf.len() && end > pos);
            assert!(head.payload_len <= MAX_PAYLOAD);
            let payload = &buf[pos + head.header_len..end];
            match asm.push(head, payload) {
                Ok(Some(Event::Data { payload, .. })) => assert!(payload.len() <= MAX_MESSAGE),
                Ok(Some(Event::Close {
                    code: Some(c),
                    reason,
                })) => {
                    assert!(proto::ws::close_code::is_valid(c));
                    assert!(std::str::from_utf8(reason).is_ok());
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = e.close_code();
                    assert_eq!(asm.capacity(), 0);
                    break;
                }
            }
            if !asm.in_progress() {
                assert_eq!(asm.capacity(), 0, "idle assembler holds no buffer");
            }
            pos = end;
        }
    }
});

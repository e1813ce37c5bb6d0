//! `proto::ws::decode_frame` and `Assembler` over a stream of WebSocket
//! frames, decoded as both server and client with the server's limit
//! (`max_frame_bytes` for a frame and for a message, as its reader uses
//! them): never panics, always makes progress, honours the limits, and every
//! error carries the close code the server's choice depends on: 1009 (sent
//! with FRAME_TOO_LARGE) exactly for `TooLarge`, else 1002 or 1007 (the
//! server sends BAD_FRAME and close 1008 for those).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::ws::{decode_frame, Assembler, Event, Role, WsError};

/// The close code the error carries: the server sends FRAME_TOO_LARGE and
/// close 1009 when it is 1009, BAD_FRAME and close 1008 otherwise.
fn check_close_code(e: &WsError) {
    let code = e.close_code();
    match e {
        WsError::TooLarge { .. } => assert_eq!(code, 1009, "{e:?}"),
        WsError::InvalidUtf8 => assert_eq!(code, 1007, "{e:?}"),
        _ => assert_eq!(code, 1002, "{e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let limit = gateway::config::Config::default().limits.max_frame_bytes;
    let (max_payload, max_message) = (limit, limit);
    for role in [Role::Server, Role::Client] {
        let mut buf = data.to_vec();
        let mut pos = 0;
        let mut asm = Assembler::new(max_message);
        loop {
            let head = match decode_frame(&mut buf[pos..], role, max_payload) {
                Ok(Some(head)) => head,
                Ok(None) => break,
                Err(e) => {
                    check_close_code(&e);
                    break;
                }
            };
            let end = pos + head.frame_len();
            assert!(end <= buf.len() && end > pos);
            assert!(head.payload_len <= max_payload);
            let payload = &buf[pos + head.header_len..end];
            match asm.push(head, payload) {
                Ok(Some(Event::Data { payload, .. })) => assert!(payload.len() <= max_message),
                Ok(Some(Event::Close {
                    code: Some(c),
                    reason,
                })) => {
                    assert!(proto::ws::close_code::is_valid(c));
                    assert!(std::str::from_utf8(reason).is_ok());
                }
                Ok(_) => {}
                Err(e) => {
                    check_close_code(&e);
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

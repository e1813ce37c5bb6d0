//! `proto::ws::decode_frame` against tungstenite's `FrameHeader::parse` on
//! the same bytes (tungstenite is the reference the design card names).
//! Whenever our decoder accepts a frame, tungstenite reads the same header:
//! FIN, opcode, masking, header length and payload length. When ours asks
//! for more bytes, tungstenite either does too or has read a header whose
//! frame is not all there yet. Our decoder may refuse more (unmasked client
//! frames, RSV bits, reserved opcodes, oversized control frames): those are
//! checked by the `ws_frames` target.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use proto::ws::{decode_frame, Opcode, Role};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

fn same_opcode(ours: Opcode, theirs: OpCode) -> bool {
    matches!(
        (ours, theirs),
        (Opcode::Continuation, OpCode::Data(Data::Continue))
            | (Opcode::Text, OpCode::Data(Data::Text))
            | (Opcode::Binary, OpCode::Data(Data::Binary))
            | (Opcode::Close, OpCode::Control(Control::Close))
            | (Opcode::Ping, OpCode::Control(Control::Ping))
            | (Opcode::Pong, OpCode::Control(Control::Pong))
    )
}

fuzz_target!(|data: &[u8]| {
    let max = 1 << 20;
    let mut ours = data.to_vec();
    let decoded = decode_frame(&mut ours, Role::Server, max);
    let mut cursor = Cursor::new(data);
    let theirs = FrameHeader::parse(&mut cursor);
    match decoded {
        Ok(Some(head)) => {
            let Ok(Some((hdr, len))) = theirs else {
                panic!("we decoded {head:?}, tungstenite did not: {theirs:?}");
            };
            assert_eq!(hdr.is_final, head.fin);
            assert!(same_opcode(head.opcode, hdr.opcode), "{head:?} vs {hdr:?}");
            assert!(hdr.mask.is_some(), "we accepted an unmasked client frame");
            assert!(!hdr.rsv1 && !hdr.rsv2 && !hdr.rsv3, "we accepted RSV bits");
            assert_eq!(len, head.payload_len as u64);
            assert_eq!(cursor.position() as usize, head.header_len);
        }
        Ok(None) => match theirs {
            Ok(None) => {}
            Ok(Some((_, len))) => {
                let have = data.len() as u64 - cursor.position();
                assert!(len > have, "we wanted more, tungstenite has the whole frame");
            }
            Err(e) => panic!("we wanted more, tungstenite refused: {e}"),
        },
        Err(_) => {}
    }
});

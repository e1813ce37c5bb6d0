//! Tests of the WebSocket codec: the RFC 6455 section 5.7 examples, every
//! split point, limits and protocol violations.

use std::borrow::Cow;

use super::*;

const MASKED_HELLO: [u8; 11] = [
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];
const UNMASKED_HELLO: [u8; 7] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn decode(buf: &[u8], role: Role, max: usize) -> Result<Option<(FrameHead, Vec<u8>)>, WsError> {
    let mut copy = buf.to_vec();
    Ok(decode_frame(&mut copy, role, max)?.map(|h| {
        let payload = copy[h.header_len..h.frame_len()].to_vec();
        (h, payload)
    }))
}

fn head(fin: bool, opcode: Opcode, header_len: usize, payload_len: usize) -> FrameHead {
    FrameHead {
        fin,
        rsv1: false,
        opcode,
        header_len,
        payload_len,
    }
}

#[test]
fn rfc_masked_hello() {
    let (h, p) = decode(&MASKED_HELLO, Role::Server, 125).unwrap().unwrap();
    assert_eq!(h, head(true, Opcode::Text, 6, 5));
    assert_eq!(p, b"Hello");
    let mut out = Vec::new();
    encode_frame(Opcode::Text, b"Hello", Some(KEY), &mut out);
    assert_eq!(out, MASKED_HELLO);
}

#[test]
fn rfc_unmasked_hello() {
    let (h, p) = decode(&UNMASKED_HELLO, Role::Client, 125).unwrap().unwrap();
    assert_eq!(h, head(true, Opcode::Text, 2, 5));
    assert_eq!(p, b"Hello");
    let mut out = Vec::new();
    encode_frame(Opcode::Text, b"Hello", None, &mut out);
    assert_eq!(out, UNMASKED_HELLO);
}

#[test]
fn rfc_fragmented_hello() {
    let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
    let last = [0x80, 0x02, 0x6c, 0x6f];
    let mut asm = Assembler::new(16);
    let (h, p) = decode(&first, Role::Client, 16).unwrap().unwrap();
    assert_eq!(h, head(false, Opcode::Text, 2, 3));
    assert_eq!(asm.push(h, &p), Ok(None));
    assert!(asm.in_progress());
    // A ping may come between fragments.
    let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let (hp, pp) = decode(&ping, Role::Client, 16).unwrap().unwrap();
    assert_eq!(asm.push(hp, &pp), Ok(Some(Event::Ping(b"Hello"))));
    let (h, p) = decode(&last, Role::Client, 16).unwrap().unwrap();
    assert_eq!(h, head(true, Opcode::Continuation, 2, 2));
    let ev = asm.push(h, &p).unwrap().unwrap();
    assert_eq!(
        ev,
        Event::Data {
            text: true,
            compressed: false,
            payload: Cow::Owned(b"Hello".to_vec())
        }
    );
    assert!(!asm.in_progress());
    assert_eq!(asm.capacity(), 0, "idle assembler holds no buffer");
}

#[test]
fn rfc_masked_pong() {
    let pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let (h, p) = decode(&pong, Role::Server, 125).unwrap().unwrap();
    assert_eq!(h, head(true, Opcode::Pong, 6, 5));
    let mut asm = Assembler::new(0);
    assert_eq!(asm.push(h, &p), Ok(Some(Event::Pong(b"Hello"))));
}

#[test]
fn rfc_extended_lengths() {
    for (len, hl) in [(256usize, 4usize), (65_536, 10)] {
        let payload = vec![0xAB; len];
        let mut out = Vec::new();
        encode_frame(Opcode::Binary, &payload, None, &mut out);
        assert_eq!(header_len(len, false), hl);
        if len == 256 {
            assert_eq!(out[..4], [0x82, 0x7E, 0x01, 0x00]);
        } else {
            assert_eq!(out[..10], [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        }
        let (h, p) = decode(&out, Role::Client, len).unwrap().unwrap();
        assert_eq!(h, head(true, Opcode::Binary, hl, len));
        assert_eq!(p, payload);
    }
}

#[test]
fn need_more_at_every_split() {
    let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    for (role, mask) in [(Role::Server, Some(KEY)), (Role::Client, None)] {
        for len in [0usize, 5, 125, 126, 300] {
            let mut out = Vec::new();
            encode_frame(Opcode::Binary, &payload[..len], mask, &mut out);
            for cut in 0..out.len() {
                let mut part = out[..cut].to_vec();
                assert_eq!(decode_frame(&mut part, role, 1000), Ok(None), "{len} {cut}");
                assert_eq!(part, out[..cut], "buffer untouched until complete");
            }
            let (h, p) = decode(&out, role, 1000).unwrap().unwrap();
            assert_eq!(h.frame_len(), out.len());
            assert_eq!(p, payload[..len]);
        }
    }
}

#[test]
fn masking_rules() {
    assert_eq!(
        decode(&UNMASKED_HELLO, Role::Server, 125),
        Err(WsError::UnmaskedClientFrame)
    );
    assert_eq!(
        decode(&MASKED_HELLO, Role::Client, 125),
        Err(WsError::MaskedServerFrame)
    );
}

#[test]
fn header_violations() {
    for rsv in [0x40u8, 0x20, 0x10] {
        assert_eq!(
            decode(&[0x81 | rsv], Role::Server, 9),
            Err(WsError::ReservedBits)
        );
    }
    for op in [3u8, 7, 0xB, 0xF] {
        assert_eq!(
            decode(&[0x80 | op], Role::Server, 9),
            Err(WsError::ReservedOpcode(op))
        );
    }
    assert_eq!(
        decode(&[0x09], Role::Server, 9),
        Err(WsError::FragmentedControl)
    );
    assert_eq!(
        decode(&[0x89, 0xFE, 0, 126], Role::Server, 1000),
        Err(WsError::ControlTooLong(126))
    );
    assert_eq!(
        decode(
            &[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0],
            Role::Client,
            usize::MAX
        ),
        Err(WsError::BadLength)
    );
}

#[test]
fn too_large_before_payload() {
    // Only the header of a 65536-byte frame: rejected without the payload.
    let hdr = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0];
    assert_eq!(
        decode(&hdr, Role::Server, 65_535),
        Err(WsError::TooLarge {
            size: 65_536,
            max: 65_535
        })
    );
    assert_eq!(decode(&hdr, Role::Server, 65_536), Ok(None));
    assert_eq!(WsError::TooLarge { size: 1, max: 0 }.close_code(), 1009);
    assert_eq!(WsError::BadContinuation.close_code(), 1002);
    assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
}

#[test]
fn unfragmented_data_is_borrowed() {
    let mut asm = Assembler::new(5);
    let ev = asm
        .push(head(true, Opcode::Binary, 2, 5), b"abcde")
        .unwrap();
    assert!(matches!(
        ev,
        Some(Event::Data {
            text: false,
            compressed: false,
            payload: Cow::Borrowed(b"abcde")
        })
    ));
    assert_eq!(
        asm.push(head(true, Opcode::Text, 2, 6), b"abcdef"),
        Err(WsError::TooLarge { size: 6, max: 5 })
    );
}

#[test]
fn fragment_limits_and_order() {
    let mut asm = Assembler::new(6);
    assert_eq!(
        asm.push(head(true, Opcode::Continuation, 2, 1), b"x"),
        Err(WsError::BadContinuation)
    );
    assert_eq!(
        asm.push(head(false, Opcode::Binary, 2, 4), b"abcd"),
        Ok(None)
    );
    assert_eq!(asm.buffered(), 4);
    assert_eq!(
        asm.push(head(true, Opcode::Text, 2, 1), b"x"),
        Err(WsError::BadContinuation)
    );
    assert_eq!(
        (asm.in_progress(), asm.capacity()),
        (false, 0),
        "reset on error"
    );
    assert_eq!(
        asm.push(head(false, Opcode::Binary, 2, 4), b"abcd"),
        Ok(None)
    );
    assert_eq!(
        asm.push(head(false, Opcode::Continuation, 2, 2), b"ef"),
        Ok(None)
    );
    assert_eq!(
        asm.push(head(true, Opcode::Continuation, 2, 1), b"g"),
        Err(WsError::TooLarge { size: 7, max: 6 })
    );
    assert_eq!(asm.capacity(), 0);
}

#[test]
fn close_payloads() {
    let mut asm = Assembler::new(0);
    let close = |p: &'static [u8]| Assembler::new(0).push(head(true, Opcode::Close, 2, p.len()), p);
    assert_eq!(
        close(b""),
        Ok(Some(Event::Close {
            code: None,
            reason: b""
        }))
    );
    assert_eq!(close(b"\x03"), Err(WsError::BadClosePayload));
    assert_eq!(
        close(b"\x03\xe8bye"),
        Ok(Some(Event::Close {
            code: Some(1000),
            reason: b"bye"
        }))
    );
    assert_eq!(
        close(b"\x0f\xa0"),
        Ok(Some(Event::Close {
            code: Some(4000),
            reason: b""
        }))
    );
    for bad in [999u16, 1004, 1005, 1006, 1015, 2999, 5000] {
        let p = bad.to_be_bytes();
        assert_eq!(
            asm.push(head(true, Opcode::Close, 2, 2), &p),
            Err(WsError::InvalidCloseCode(bad))
        );
    }
    assert_eq!(close(b"\x03\xe8\xff"), Err(WsError::InvalidUtf8));
}

#[test]
fn encode_close_truncates_on_char_boundary() {
    let reason = "é".repeat(100); // 200 bytes, 2 per char
    let mut out = Vec::new();
    encode_close(1001, &reason, None, &mut out);
    let (h, p) = decode(&out, Role::Client, 125).unwrap().unwrap();
    assert_eq!(h.opcode, Opcode::Close);
    assert_eq!(h.payload_len, 2 + 122, "123 would split a char");
    let mut asm = Assembler::new(0);
    match asm.push(h, &p).unwrap() {
        Some(Event::Close {
            code: Some(1001),
            reason,
        }) => {
            assert!(std::str::from_utf8(reason).is_ok())
        }
        other => panic!("{other:?}"),
    }
    out.clear();
    encode_close(1005, "x", Some(KEY), &mut out);
    assert_eq!(
        out,
        [0x88, 0x80, 0x37, 0xfa, 0x21, 0x3d],
        "unsendable code: empty close"
    );
}

#[test]
fn header_encoding_matches_header_len() {
    for len in [0usize, 125, 126, 0xFFFF, 0x1_0000, 1 << 40] {
        for mask in [None, Some(KEY)] {
            let mut out = Vec::new();
            encode_header(false, Opcode::Continuation, len, mask, &mut out);
            assert_eq!(out.len(), header_len(len, mask.is_some()));
            assert_eq!(out[0], 0x00);
        }
    }
}

#[test]
fn mask_is_an_involution_at_any_length() {
    for len in 0..40 {
        let original: Vec<u8> = (0..len as u8).collect();
        let mut buf = original.clone();
        apply_mask(&mut buf, KEY);
        let naive: Vec<u8> = original
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ KEY[i % 4])
            .collect();
        assert_eq!(buf, naive);
        apply_mask(&mut buf, KEY);
        assert_eq!(buf, original);
    }
}

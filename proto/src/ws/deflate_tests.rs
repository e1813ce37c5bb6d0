use super::*;
use crate::ws::{decode_frame_ext, Assembler, Event, Role};
use flate2::Compression;

/// Raw deflate of `data` with `flush`, as a client's compressor would.
fn client_deflate(z: &mut Compress, data: &[u8], flush: FlushCompress) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let start = z.total_in() as usize;
    loop {
        let used = z.total_in() as usize - start;
        z.compress_vec(&data[used..], &mut out, flush).unwrap();
        if out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    out
}

fn deflated(data: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::default(), false);
    let mut out = client_deflate(&mut z, data, FlushCompress::Sync);
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

fn chat(n: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            r#"{{"deliver":{{"from":"user-{i}","room":"chat:lobby","payload":"aGVsbG8gd29ybGQ="}}}}"#
        ));
    }
    s.into_bytes()
}

#[test]
fn a_compressed_frame_inflates_to_the_message() {
    let msg = chat(8);
    let mut out = Vec::new();
    let mut d = Deflater::new(6);
    assert!(d.frame(Opcode::Text, &msg, &mut out));
    assert!(out.len() < msg.len() / 3, "{} of {}", out.len(), msg.len());
    let head = decode_frame_ext(&mut out, Role::Client, 1 << 20, true)
        .unwrap()
        .unwrap();
    assert!(head.rsv1 && head.fin);
    assert_eq!(head.opcode, Opcode::Text);
    let mut inflated = Vec::new();
    Inflater::new()
        .message(
            &[],
            &out[head.header_len..head.frame_len()],
            1 << 20,
            &mut inflated,
        )
        .unwrap();
    assert_eq!(inflated, msg);
    // The compressor is reset per message: the same bytes again.
    let mut again = Vec::new();
    assert!(d.frame(Opcode::Text, &msg, &mut again));
    let mut first = Vec::new();
    Deflater::new(6).frame(Opcode::Text, &msg, &mut first);
    assert_eq!(again, first);
}

#[test]
fn what_does_not_shrink_is_not_compressed() {
    let mut out = vec![1, 2, 3];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..300)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert!(!Deflater::new(6).frame(Opcode::Binary, &noise, &mut out));
    assert!(!Deflater::new(6).frame(Opcode::Binary, b"", &mut out));
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn a_deflate_bomb_stops_at_the_bound() {
    let bomb = deflated(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 16 << 10);
    let max = 64 << 10;
    let mut out = Vec::new();
    let err = Inflater::new().message(&[], &bomb, max, &mut out);
    assert!(matches!(err, Err(WsError::TooLarge { .. })), "{err:?}");
    assert!(out.capacity() <= max + 1, "{}", out.capacity());
    assert_eq!(WsError::TooLarge { size: 0, max }.close_code(), 1009);
    // Exactly at the bound is fine.
    let exact = deflated(&vec![7u8; max]);
    let mut out = Vec::new();
    Inflater::new().message(&[], &exact, max, &mut out).unwrap();
    assert_eq!(out.len(), max);
}

#[test]
fn corrupt_input_is_an_error_not_a_panic() {
    let mut good = deflated(&chat(2));
    for junk in [&[0xff, 0xff, 0xff][..], &[0x07], &[]] {
        let mut out = Vec::new();
        let r = Inflater::new().message(&[], junk, 1 << 16, &mut out);
        assert!(r.is_ok() || r == Err(WsError::BadCompressed), "{r:?}");
    }
    good[3] ^= 0x5a;
    let r = Inflater::new().message(&[], &good, 1 << 16, &mut Vec::new());
    assert!(r.is_ok() || r == Err(WsError::BadCompressed), "{r:?}");
    let mut out = Vec::new();
    let r = Inflater::new().message(&[], &[0xff, 0xff, 0xff], 1 << 16, &mut out);
    assert_eq!(r, Err(WsError::BadCompressed));
    assert_eq!(WsError::BadCompressed.close_code(), 1007);
}

#[test]
fn a_final_block_ends_the_message() {
    let msg = chat(3);
    let mut z = Compress::new(Compression::default(), false);
    let data = client_deflate(&mut z, &msg, FlushCompress::Finish);
    let mut out = Vec::new();
    Inflater::new()
        .message(&[], &data, 1 << 16, &mut out)
        .unwrap();
    assert_eq!(out, msg);
}

#[test]
fn a_client_with_context_takeover_refers_to_its_last_message() {
    // The client keeps one compressor for the connection, with the window
    // the server agreed to (9 bits).
    let mut client = Compress::new_with_window_bits(Compression::default(), false, 9);
    let mut inflater = Inflater::new();
    let mut window = Vec::new();
    let msgs = [chat(1), chat(1), chat(3), b"short".to_vec(), chat(1)];
    let mut sizes = Vec::new();
    for msg in &msgs {
        let mut data = client_deflate(&mut client, msg, FlushCompress::Sync);
        data.truncate(data.len() - 4);
        sizes.push(data.len());
        let mut out = Vec::new();
        inflater.message(&window, &data, 1 << 16, &mut out).unwrap();
        assert_eq!(&out, msg);
        slide_window(&mut window, &out, 9);
        assert!(window.len() <= 512);
    }
    // The repeat refers back: far smaller than the first.
    assert!(sizes[1] * 3 < sizes[0], "{sizes:?}");
    // Without the window it does not inflate to the message.
    let mut data = client_deflate(&mut client, &msgs[0], FlushCompress::Sync);
    data.truncate(data.len() - 4);
    let mut out = Vec::new();
    let r = Inflater::new().message(&[], &data, 1 << 16, &mut out);
    assert!(r.is_err() || out != msgs[0]);
}

#[test]
fn the_window_keeps_the_last_bytes() {
    let mut w = Vec::new();
    slide_window(&mut w, &[1; 300], 9);
    slide_window(&mut w, &[2; 300], 9);
    assert_eq!(w.len(), 512);
    assert_eq!(&w[..212], &[1; 212][..]);
    assert_eq!(&w[212..], &[2; 300][..]);
    slide_window(&mut w, &[3; 600], 9);
    assert_eq!(w, vec![3; 512]);
}

#[test]
fn rsv1_is_checked_where_the_rfc_says() {
    // Without the extension, on any frame.
    let mut text = [0xC1, 0x80, 0, 0, 0, 0];
    assert_eq!(
        decode_frame_ext(&mut text, Role::Server, 9, false),
        Err(WsError::ReservedBits)
    );
    // On a control frame, even with it.
    let mut ping = [0xC9, 0x80, 0, 0, 0, 0];
    assert_eq!(
        decode_frame_ext(&mut ping, Role::Server, 9, true),
        Err(WsError::ReservedBits)
    );
    // RSV2 and RSV3 never.
    let mut rsv2 = [0xA1, 0x80, 0, 0, 0, 0];
    assert_eq!(
        decode_frame_ext(&mut rsv2, Role::Server, 9, true),
        Err(WsError::ReservedBits)
    );
    // A fragmented compressed message: RSV1 on the first frame only.
    let msg = deflated(&chat(2));
    let (a, b) = msg.split_at(msg.len() / 2);
    let mut first = vec![0x41, 0x80 | a.len() as u8, 0, 0, 0, 0];
    first.extend_from_slice(a);
    let mut last = vec![0x80, 0x80 | b.len() as u8, 0, 0, 0, 0];
    last.extend_from_slice(b);
    let mut asm = Assembler::new(1 << 16);
    let h = decode_frame_ext(&mut first, Role::Server, 1 << 16, true)
        .unwrap()
        .unwrap();
    assert!(asm.push(h, &first[h.header_len..]).unwrap().is_none());
    let h = decode_frame_ext(&mut last, Role::Server, 1 << 16, true)
        .unwrap()
        .unwrap();
    let Some(Event::Data {
        text: true,
        compressed: true,
        payload,
    }) = asm.push(h, &last[h.header_len..]).unwrap()
    else {
        panic!("not a compressed text message");
    };
    let mut out = Vec::new();
    Inflater::new()
        .message(&[], &payload, 1 << 16, &mut out)
        .unwrap();
    assert_eq!(out, chat(2));
    // RSV1 on a continuation is a protocol error.
    let mut asm = Assembler::new(1 << 16);
    let h = decode_frame_ext(&mut first.clone(), Role::Server, 1 << 16, true)
        .unwrap()
        .unwrap();
    asm.push(h, a).unwrap();
    let mut bad_last = last.clone();
    bad_last[0] |= 0x40;
    let h = decode_frame_ext(&mut bad_last, Role::Server, 1 << 16, true)
        .unwrap()
        .unwrap();
    assert_eq!(asm.push(h, b), Err(WsError::ReservedBits));
}

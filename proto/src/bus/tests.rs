//! Tests of the bus codec: round trips, every error, and every split point of
//! a stream of several frames.

use super::*;

pub(super) const LIMITS: Limits = Limits {
    max_body: 1 << 20,
    max_envelopes: 1 << 16,
    max_node_id: 64,
};

pub(super) fn hello() -> Hello<'static> {
    Hello {
        version: VERSION,
        shard: 3,
        shards: 8,
        incarnation: 0x0102_0304_0506_0708,
        node_id: "node-a",
    }
}

pub(super) fn welcome() -> Welcome<'static> {
    Welcome {
        version: VERSION,
        incarnation: 42,
        received: 17,
        node_id: "node-b",
    }
}

pub(super) fn batch(seq: u64, envelopes: &[&[u8]]) -> Vec<u8> {
    let mut w = BatchWriter::new(seq);
    for e in envelopes {
        w.push(e);
    }
    w.finish()
}

fn parse_one(buf: &[u8]) -> Frame<'_> {
    let (frame, used) = parse(buf, &LIMITS).unwrap().expect("a whole frame");
    assert_eq!(used, buf.len());
    frame
}

fn malformed(kind: Kind, what: Malformed) -> BusError {
    BusError::Malformed { kind, what }
}

#[test]
fn hello_roundtrip() {
    let mut out = Vec::new();
    encode_hello(&hello(), &mut out);
    assert_eq!(&out[..8], &[0xB5, 1, 0, 0, 0, 0, 0, 21]);
    assert_eq!(parse_one(&out), Frame::Hello(hello()));
}

#[test]
fn welcome_roundtrip() {
    let mut out = Vec::new();
    encode_welcome(&welcome(), &mut out);
    assert_eq!(parse_one(&out), Frame::Welcome(welcome()));
}

#[test]
fn ack_and_ping_roundtrip() {
    let mut out = Vec::new();
    encode_ack(u64::MAX - 1, &mut out);
    assert_eq!(parse_one(&out), Frame::Ack(u64::MAX - 1));
    out.clear();
    encode_ping(&mut out);
    assert_eq!(out, [0xB5, 5, 0, 0, 0, 0, 0, 0]);
    assert_eq!(parse_one(&out), Frame::Ping);
}

#[test]
fn batch_roundtrip() {
    let bytes = batch(9, &[b"a", b"", b"hello world"]);
    let Frame::Batch(b) = parse_one(&bytes) else {
        panic!("not a batch");
    };
    assert_eq!((b.seq, b.count), (9, 3));
    let envs: Vec<&[u8]> = b.envelopes().collect();
    assert_eq!(envs, [&b"a"[..], b"", b"hello world"]);
    assert_eq!(b.envelopes().len(), 3);
    let mut again = Vec::new();
    Frame::Batch(b).encode(&mut again);
    assert_eq!(again, bytes);
}

#[test]
fn empty_batch_is_valid() {
    let bytes = BatchWriter::new(1).finish();
    assert_eq!(bytes.len(), HEADER_LEN + BATCH_PREFIX_LEN);
    let Frame::Batch(b) = parse_one(&bytes) else {
        panic!("not a batch");
    };
    assert_eq!(b.envelopes().count(), 0);
}

#[test]
fn batch_writer_appends_after_existing_bytes() {
    let mut buf = Vec::new();
    encode_ping(&mut buf);
    let mut w = BatchWriter::append_to(buf, 5);
    w.push(b"xy");
    w.push_with(|b| b.extend_from_slice(b"zzz"));
    assert_eq!(w.count(), 2);
    assert_eq!(w.frame_len(), HEADER_LEN + BATCH_PREFIX_LEN + 4 + 2 + 4 + 3);
    let buf = w.finish();
    let (ping, n) = parse(&buf, &LIMITS).unwrap().unwrap();
    assert_eq!(ping, Frame::Ping);
    let Frame::Batch(b) = parse_one(&buf[n..]) else {
        panic!("not a batch");
    };
    assert_eq!(b.envelopes().collect::<Vec<_>>(), [&b"xy"[..], b"zzz"]);
}

#[test]
fn header_errors() {
    assert_eq!(parse(&[0x00], &LIMITS), Err(BusError::BadMagic(0)));
    assert_eq!(
        parse(&[0xB5, 9, 0, 0, 0, 0, 0, 0], &LIMITS),
        Err(BusError::UnknownKind(9))
    );
    assert_eq!(
        parse(&[0xB5, 0, 0, 0, 0, 0, 0, 0], &LIMITS),
        Err(BusError::UnknownKind(0))
    );
    assert_eq!(
        parse(&[0xB5, 5, 1, 0, 0, 0, 0, 0], &LIMITS),
        Err(BusError::NonzeroFlags {
            flags: 1,
            reserved: 0
        })
    );
    assert_eq!(
        parse(&[0xB5, 5, 0, 2, 0, 0, 0, 0], &LIMITS),
        Err(BusError::NonzeroFlags {
            flags: 0,
            reserved: 2
        })
    );
}

#[test]
fn body_too_large_on_header_alone() {
    let head = [0xB5, 3, 0, 0, 0, 0x10, 0, 1];
    assert_eq!(
        parse(&head, &LIMITS),
        Err(BusError::BodyTooLarge {
            size: (1 << 20) + 1,
            max: 1 << 20
        })
    );
    assert_eq!(parse(&head[..7], &LIMITS), Ok(None));
    // Exactly the maximum waits for the body.
    assert_eq!(parse(&[0xB5, 3, 0, 0, 0, 0x10, 0, 0], &LIMITS), Ok(None));
    let h = peek_header(&[0xB5, 3, 0, 0, 0, 0x10, 0, 0], &LIMITS)
        .unwrap()
        .unwrap();
    assert_eq!(
        h,
        Header {
            kind: Kind::Batch,
            body_len: 1 << 20
        }
    );
    assert_eq!(h.frame_len(), (1 << 20) + 8);
}

#[test]
fn control_body_errors() {
    let mut ack = Vec::new();
    encode_header(Kind::Ack, 7, &mut ack);
    ack.extend_from_slice(&[0; 7]);
    assert_eq!(
        parse(&ack, &LIMITS),
        Err(malformed(Kind::Ack, Malformed::Truncated))
    );
    let mut ack = Vec::new();
    encode_header(Kind::Ack, 9, &mut ack);
    ack.extend_from_slice(&[0; 9]);
    assert_eq!(
        parse(&ack, &LIMITS),
        Err(malformed(Kind::Ack, Malformed::Trailing(1)))
    );
    let ping = [0xB5, 5, 0, 0, 0, 0, 0, 1, 0];
    assert_eq!(
        parse(&ping, &LIMITS),
        Err(malformed(Kind::Ping, Malformed::Trailing(1)))
    );
}

#[test]
fn hello_body_errors() {
    let mut good = Vec::new();
    encode_hello(&hello(), &mut good);
    let body = good[HEADER_LEN..].to_vec();
    let frame = |body: &[u8]| {
        let mut out = Vec::new();
        encode_header(Kind::Hello, body.len(), &mut out);
        out.extend_from_slice(body);
        out
    };
    // Truncated at every point of the body.
    for cut in 0..body.len() {
        assert_eq!(
            parse(&frame(&body[..cut]), &LIMITS),
            Err(malformed(Kind::Hello, Malformed::Truncated)),
            "cut at {cut}"
        );
    }
    let mut trailing = body.clone();
    trailing.push(0);
    assert_eq!(
        parse(&frame(&trailing), &LIMITS),
        Err(malformed(Kind::Hello, Malformed::Trailing(1)))
    );
    let mut empty_id = body[..14].to_vec();
    empty_id.push(0);
    assert_eq!(
        parse(&frame(&empty_id), &LIMITS),
        Err(malformed(
            Kind::Hello,
            Malformed::NodeIdLength { len: 0, max: 64 }
        ))
    );
    let mut long_id = body[..14].to_vec();
    long_id.push(65);
    long_id.extend_from_slice(&[b'x'; 65]);
    assert_eq!(
        parse(&frame(&long_id), &LIMITS),
        Err(malformed(
            Kind::Hello,
            Malformed::NodeIdLength { len: 65, max: 64 }
        ))
    );
    let small = Limits {
        max_node_id: 4,
        ..LIMITS
    };
    assert_eq!(
        parse(&good, &small),
        Err(malformed(
            Kind::Hello,
            Malformed::NodeIdLength { len: 6, max: 4 }
        ))
    );
    let mut bad_utf8 = body[..14].to_vec();
    bad_utf8.extend_from_slice(&[2, 0xC3, 0x28]);
    assert_eq!(
        parse(&frame(&bad_utf8), &LIMITS),
        Err(malformed(Kind::Hello, Malformed::NodeIdUtf8))
    );
}

#[test]
fn welcome_body_errors() {
    let mut good = Vec::new();
    encode_welcome(&welcome(), &mut good);
    let mut short = Vec::new();
    encode_header(Kind::Welcome, good.len() - HEADER_LEN - 1, &mut short);
    short.extend_from_slice(&good[HEADER_LEN..good.len() - 1]);
    assert_eq!(
        parse(&short, &LIMITS),
        Err(malformed(Kind::Welcome, Malformed::Truncated))
    );
}

fn raw_batch(seq: u64, count: u32, rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_header(Kind::Batch, BATCH_PREFIX_LEN + rest.len(), &mut out);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(rest);
    out
}

#[test]
fn batch_body_errors() {
    let err = |what| Err(malformed(Kind::Batch, what));
    let whole = raw_batch(1, 0, &[]);
    assert_eq!(parse(&whole[..whole.len() - 1], &LIMITS), Ok(None));
    let mut short = Vec::new();
    encode_header(Kind::Batch, 11, &mut short);
    short.extend_from_slice(&[0; 11]);
    assert_eq!(parse(&short, &LIMITS), err(Malformed::Truncated));
    assert_eq!(
        parse(&raw_batch(1, 0, &[7]), &LIMITS),
        err(Malformed::Trailing(1))
    );
    let few = Limits {
        max_envelopes: 2,
        ..LIMITS
    };
    assert_eq!(
        parse(&batch(1, &[b"a", b"b", b"c"]), &few),
        err(Malformed::TooManyEnvelopes { count: 3, max: 2 })
    );
    assert_eq!(
        parse(
            &raw_batch(1, u32::MAX, &[0; 8]),
            &Limits {
                max_envelopes: usize::MAX,
                ..LIMITS
            }
        ),
        err(Malformed::CountExceedsBody {
            count: u32::MAX,
            bytes: 8
        })
    );
    assert_eq!(
        parse(&raw_batch(1, 1, &[0, 0, 0, 5, 1, 2]), &LIMITS),
        err(Malformed::EnvelopeOverrun { index: 0, len: 5 })
    );
    assert_eq!(
        parse(&raw_batch(1, 2, &[0, 0, 0, 0, 0, 0, 0, 9]), &LIMITS),
        err(Malformed::EnvelopeOverrun { index: 1, len: 9 })
    );
    // Count says 1 but two envelopes follow: trailing.
    assert_eq!(
        parse(&raw_batch(1, 1, &[0, 0, 0, 1, 1, 0, 0, 0, 0]), &LIMITS),
        err(Malformed::Trailing(4))
    );
    // A half envelope prefix after the last counted envelope.
    assert_eq!(
        parse(&raw_batch(1, 2, &[0, 0, 0, 0, 0, 0, 0]), &LIMITS),
        err(Malformed::CountExceedsBody { count: 2, bytes: 7 })
    );
}

#[test]
fn kind_bytes_roundtrip() {
    for byte in 0..=255u8 {
        if let Some(k) = Kind::from_u8(byte) {
            assert_eq!(k.to_u8(), byte);
        }
    }
    assert_eq!(Kind::from_u8(6), Some(Kind::Auth));
    assert_eq!(Kind::from_u8(7), None);
}

#[test]
fn auth_roundtrip_with_and_without_proofs() {
    let nonce = [7u8; NONCE_LEN];
    let proofs = [[1u8; PROOF_LEN], [2u8; PROOF_LEN]].concat();
    for p in [&proofs[..], &[]] {
        let mut buf = Vec::new();
        encode_auth(&nonce, p, &mut buf);
        let Frame::Auth(a) = parse_one(&buf) else {
            panic!("not an AUTH")
        };
        assert_eq!((a.nonce, a.proofs), (&nonce, p));
        assert_eq!(a.proofs().count(), p.len() / PROOF_LEN);
    }
}

#[test]
fn auth_with_too_many_or_cut_proofs_is_malformed() {
    let mut buf = Vec::new();
    encode_header(Kind::Auth, NONCE_LEN + 1, &mut buf);
    buf.extend_from_slice(&[0; NONCE_LEN]);
    buf.push(5);
    assert_eq!(
        parse(&buf, &LIMITS).unwrap_err(),
        malformed(Kind::Auth, Malformed::TooManyProofs(5))
    );
    let mut buf = Vec::new();
    encode_header(Kind::Auth, NONCE_LEN + 1 + 10, &mut buf);
    buf.extend_from_slice(&[0; NONCE_LEN]);
    buf.push(1);
    buf.extend_from_slice(&[0; 10]);
    assert_eq!(
        parse(&buf, &LIMITS).unwrap_err(),
        malformed(Kind::Auth, Malformed::Truncated)
    );
}

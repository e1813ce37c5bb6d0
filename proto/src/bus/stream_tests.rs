//! Every split point of a stream of several frames of every kind parses to
//! the same frames: whole, byte by byte, and in every two-chunk split.

use super::tests::{batch, hello, welcome, LIMITS};
use super::*;

/// A stream of several frames of every kind, and what parsing it must give.
fn stream() -> Vec<u8> {
    let mut out = Vec::new();
    encode_hello(&hello(), &mut out);
    encode_welcome(&welcome(), &mut out);
    out.extend_from_slice(&batch(1, &[b"first", b"second"]));
    encode_ping(&mut out);
    out.extend_from_slice(&batch(2, &[]));
    encode_ack(2, &mut out);
    out.extend_from_slice(&batch(3, &[&[0xAB; 300]]));
    out
}

/// Feeds `chunks` as a socket would deliver them, buffering the partial
/// tail, and returns every frame re-encoded.
fn feed(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match parse(&buf, &LIMITS).unwrap() {
                None => break,
                Some((frame, used)) => {
                    let mut enc = Vec::new();
                    frame.encode(&mut enc);
                    assert_eq!(enc, buf[..used]);
                    frames.push(enc);
                    buf.drain(..used);
                }
            }
        }
    }
    assert!(buf.is_empty(), "{} bytes left", buf.len());
    frames
}

#[test]
fn stream_whole() {
    let s = stream();
    let frames = feed(&[&s]);
    assert_eq!(frames.len(), 7);
    assert_eq!(frames.concat(), s);
}

#[test]
fn stream_byte_by_byte() {
    let s = stream();
    let chunks: Vec<&[u8]> = s.chunks(1).collect();
    assert_eq!(feed(&chunks), feed(&[&s]));
}

#[test]
fn stream_every_two_chunk_split() {
    let s = stream();
    let whole = feed(&[&s]);
    for cut in 0..=s.len() {
        assert_eq!(feed(&[&s[..cut], &s[cut..]]), whole, "cut at {cut}");
    }
}

#[test]
fn every_prefix_needs_more() {
    let s = stream();
    let (_, first) = parse(&s, &LIMITS).unwrap().unwrap();
    for cut in 0..first {
        assert_eq!(parse(&s[..cut], &LIMITS), Ok(None), "cut at {cut}");
    }
}

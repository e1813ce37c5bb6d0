//! The numbered, timestamped message body every scenario sends, and the
//! clock it is stamped with.
//!
//! A body is ASCII so every target carries it unchanged (nchan and nats relay
//! it in text frames, the gateway's JSON subprotocol base64s it): 16 hex
//! digits of sequence number, 16 hex digits of send time (nanoseconds since
//! this process's [`epoch`]), then `.` padding up to the requested size, or
//! with `--text` ([`set_text`]) chat-like words, varied by sequence number
//! (what compression is measured on).
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;

static TEXT: AtomicBool = AtomicBool::new(false);

/// Pads bodies with chat-like text from now on (`--text`).
pub fn set_text(on: bool) {
    TEXT.store(on, Relaxed);
}

const WORDS: &[&str] = &[
    "hey", "are", "you", "coming", "tonight", "the", "train", "is", "late", "again", "see", "at",
    "station", "eight", "bring", "tickets", "map", "ok", "sounds", "good", "lol", "what", "time",
    "meeting", "tomorrow", "morning", "can't", "wait", "thanks", "for", "photos", "dinner", "was",
    "great", "call", "me", "when", "home", "love", "it", "weekend", "plans",
];
use std::time::Instant;

/// Bytes of the header (sequence and timestamp); the smallest body.
pub const HEADER_LEN: usize = 32;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The instant all timestamps count from (fixed on first use).
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`]: the same clock in every worker thread.
pub fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Appends a body of `size` bytes (at least [`HEADER_LEN`]) numbered `seq`
/// and stamped `ts_ns`.
pub fn encode(seq: u64, ts_ns: u64, size: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(format!("{seq:016x}{ts_ns:016x}").as_bytes());
    let want = start + size.max(HEADER_LEN);
    if TEXT.load(Relaxed) {
        let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        while out.len() < want {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push(b' ');
            out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        }
        out.truncate(want);
        return;
    }
    out.resize(want, b'.');
}

/// A fresh body for `seq`, stamped now.
pub fn make(seq: u64, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size.max(HEADER_LEN));
    encode(seq, now_ns(), size, &mut v);
    v
}

/// The `(seq, ts_ns)` of a body, or `None` if it is not one of ours.
pub fn decode(body: &[u8]) -> Option<(u64, u64)> {
    let head = body.get(..HEADER_LEN)?;
    let text = std::str::from_utf8(head).ok()?;
    let seq = u64::from_str_radix(text.get(..16)?, 16).ok()?;
    let ts = u64::from_str_radix(text.get(16..)?, 16).ok()?;
    Some((seq, ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_padding() {
        let mut v = Vec::new();
        encode(42, 7_000_000, 64, &mut v);
        assert_eq!(v.len(), 64);
        assert_eq!(decode(&v), Some((42, 7_000_000)));
        assert_eq!(decode(b"not a body"), None);
        assert_eq!(decode(&[0xff; 40]), None);
    }
}

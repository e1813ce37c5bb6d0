//! Length-prefixed frames for the raw TCP transport: a `u32` big-endian
//! payload length followed by that many payload bytes.
//!
//! Invariants:
//! - [`decode`] never panics and never slices past a checked bound.
//! - The declared length is checked against the caller's maximum as soon as
//!   the 4 header bytes are present, before the caller buffers the body, so a
//!   peer can never make us wait for (or allocate) more than `max` bytes.
//! - A zero-length frame is valid and carries an empty payload.

/// Length of the frame header (the big-endian `u32` payload length).
pub const HEADER_LEN: usize = 4;

/// Why a length-prefixed frame was rejected. Always the peer's fault; the
/// connection cannot be resynchronised and must be closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The header announces a payload longer than the allowed maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The announced payload length.
        size: usize,
        /// The maximum the caller allows.
        max: usize,
    },
}

/// Decodes one frame from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, or
/// `Ok(Some((consumed, payload)))` where `consumed` is the header plus payload
/// length to drop from the front of `buf`. The length is checked against `max`
/// as soon as the header is complete.
pub fn decode(buf: &[u8], max: usize) -> Result<Option<(usize, &[u8])>, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut len_bytes = [0u8; HEADER_LEN];
    len_bytes.copy_from_slice(header);
    let declared = u32::from_be_bytes(len_bytes);
    // On 16-bit targets a u32 may not fit a usize: treat it as too large.
    let size = usize::try_from(declared).unwrap_or(usize::MAX);
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    let Some(end) = HEADER_LEN.checked_add(size) else {
        return Err(FrameError::TooLarge { size, max });
    };
    match buf.get(HEADER_LEN..end) {
        Some(payload) => Ok(Some((end, payload))),
        None => Ok(None),
    }
}

/// Appends the 4-byte header announcing a payload of `len` bytes.
///
/// # Panics
/// If `len` does not fit a `u32`: that is a bug of the caller, who must bound
/// the frames it sends well below 4 GiB.
pub fn encode_header(len: usize, out: &mut Vec<u8>) {
    let len = u32::try_from(len).expect("length-prefixed frame payload must fit a u32");
    out.extend_from_slice(&len.to_be_bytes());
}

/// Appends a whole frame (header and payload) to `out`.
///
/// # Panics
/// If `payload` is 4 GiB or longer (see [`encode_header`]).
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(HEADER_LEN + payload.len());
    encode_header(payload.len(), out);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let mut out = Vec::new();
        encode(b"hello", &mut out);
        assert_eq!(out, b"\0\0\0\x05hello");
        assert_eq!(decode(&out, 5), Ok(Some((9, &b"hello"[..]))));
    }

    #[test]
    fn zero_length_frame() {
        let mut out = Vec::new();
        encode(b"", &mut out);
        assert_eq!(out, [0, 0, 0, 0]);
        assert_eq!(decode(&out, 0), Ok(Some((4, &b""[..]))));
    }

    #[test]
    fn need_more_at_every_split() {
        let mut out = Vec::new();
        encode(b"payload!", &mut out);
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut], 100), Ok(None), "cut at {cut}");
        }
        assert_eq!(decode(&out, 100), Ok(Some((12, &b"payload!"[..]))));
    }

    #[test]
    fn too_large_checked_on_header_alone() {
        let buf = 1_000_000u32.to_be_bytes();
        assert_eq!(
            decode(&buf, 65_536),
            Err(FrameError::TooLarge {
                size: 1_000_000,
                max: 65_536
            })
        );
        // Three header bytes are not enough to know.
        assert_eq!(decode(&buf[..3], 65_536), Ok(None));
        // Exactly the maximum is fine.
        assert_eq!(decode(&[0, 0, 0, 4], 4), Ok(None));
        assert_eq!(
            decode(&u32::MAX.to_be_bytes(), usize::MAX),
            Ok(None),
            "huge but allowed: waits for the body"
        );
    }

    #[test]
    fn trailing_bytes_are_left_for_the_next_frame() {
        let mut out = Vec::new();
        encode(b"a", &mut out);
        encode(b"bc", &mut out);
        let (n, p) = decode(&out, 10).unwrap().unwrap();
        assert_eq!((n, p), (5, &b"a"[..]));
        let (m, q) = decode(&out[n..], 10).unwrap().unwrap();
        assert_eq!((m, q), (6, &b"bc"[..]));
        assert_eq!(n + m, out.len());
    }

    #[test]
    fn header_only() {
        let mut out = vec![9];
        encode_header(258, &mut out);
        assert_eq!(out, [9, 0, 0, 1, 2]);
    }
}

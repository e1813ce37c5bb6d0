//! Encoding WebSocket frames (RFC 6455 section 5.2) into an output buffer.
//!
//! Invariants: the length always uses the minimal encoding; servers pass
//! `mask: None`, clients a fresh random key per frame (the key is the
//! caller's choice, this module has no randomness). Encoders append to `out`
//! and never clear it, so many frames can be batched into one write.

use super::{apply_mask, close_code, Opcode, MAX_CONTROL_PAYLOAD};

/// Length of the header of a frame carrying `payload_len` bytes, with or
/// without a masking key.
pub fn header_len(payload_len: usize, masked: bool) -> usize {
    let ext = match payload_len {
        0..=125 => 0,
        126..=0xFFFF => 2,
        _ => 8,
    };
    2 + ext + if masked { 4 } else { 0 }
}

/// Appends a frame header for a payload of `payload_len` bytes. When `mask` is
/// given the caller must append the payload masked with it (see
/// [`apply_mask`]).
pub fn encode_header(
    fin: bool,
    opcode: Opcode,
    payload_len: usize,
    mask: Option<[u8; 4]>,
    out: &mut Vec<u8>,
) {
    let b0 = if fin { 0x80 } else { 0 } | opcode.as_u8();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(b0);
    match payload_len {
        0..=125 => out.push(mask_bit | payload_len as u8),
        126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// Appends a whole, unfragmented frame (FIN set). With a `mask`, a masked copy
/// of `payload` is written; `payload` itself is left untouched.
pub fn encode_frame(opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    out.reserve(header_len(payload.len(), mask.is_some()) + payload.len());
    encode_header(true, opcode, payload.len(), mask, out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        if let Some(written) = out.get_mut(start..) {
            apply_mask(written, key);
        }
    }
}

/// Appends a close frame with `code` and `reason`. The reason is truncated on
/// a char boundary so the payload fits the 125 bytes of a control frame.
///
/// A `code` that may not be sent (1005, 1006, 1015 and the reserved ranges,
/// see [`close_code::is_valid`]) is replaced by an empty close payload, which
/// is what RFC 6455 prescribes when there is no status to report.
pub fn encode_close(code: u16, reason: &str, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    if !close_code::is_valid(code) {
        encode_frame(Opcode::Close, &[], mask, out);
        return;
    }
    let reason = truncate_on_char_boundary(reason, MAX_CONTROL_PAYLOAD - 2);
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
    encode_frame(Opcode::Close, &payload[..2 + reason.len()], mask, out);
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary.
fn truncate_on_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

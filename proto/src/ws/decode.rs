//! Decoding one WebSocket frame from the front of a read buffer
//! (RFC 6455 section 5.2), unmasking its payload in place.
//!
//! Invariants: the header is validated byte by byte as it arrives (RSV bits,
//! opcode, masking rule, control-frame rules) and the payload length is
//! checked against the maximum before the caller waits for the payload. The
//! buffer is only modified (unmasked) once the whole frame is present, so a
//! `None` answer can be retried with more bytes appended.

use super::{FrameHead, Opcode, Role, WsError, MAX_CONTROL_PAYLOAD};

/// Decodes the frame at the front of `buf` for a peer of the given `role`.
///
/// Returns `Ok(None)` until the header and the whole payload are in `buf`.
/// Then the payload, `buf[head.header_len..head.frame_len()]`, is unmasked in
/// place and the head is returned. Errors as soon as the bytes present show
/// the frame is invalid or longer than `max_payload`.
///
/// The length is not required to use the minimal encoding (RFC 6455 asks the
/// sender to, but rejecting it buys nothing).
pub fn decode_frame(
    buf: &mut [u8],
    role: Role,
    max_payload: usize,
) -> Result<Option<FrameHead>, WsError> {
    decode_frame_ext(buf, role, max_payload, false)
}

/// [`decode_frame`] on a connection that negotiated permessage-deflate
/// when `deflate` is true: RSV1 may then be set on a data frame (whether
/// it may be set on a continuation is the [`Assembler`](super::Assembler)'s
/// to check), never on a control frame (RFC 7692 section 6).
pub fn decode_frame_ext(
    buf: &mut [u8],
    role: Role,
    max_payload: usize,
    deflate: bool,
) -> Result<Option<FrameHead>, WsError> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    let rsv1 = b0 & 0x40 != 0;
    if b0 & 0x30 != 0 || (rsv1 && !deflate) {
        return Err(WsError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let raw_opcode = b0 & 0x0F;
    let opcode = Opcode::from_u8(raw_opcode).ok_or(WsError::ReservedOpcode(raw_opcode))?;
    if opcode.is_control() && !fin {
        return Err(WsError::FragmentedControl);
    }
    if opcode.is_control() && rsv1 {
        return Err(WsError::ReservedBits);
    }
    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    let masked = b1 & 0x80 != 0;
    match (role, masked) {
        (Role::Server, false) => return Err(WsError::UnmaskedClientFrame),
        (Role::Client, true) => return Err(WsError::MaskedServerFrame),
        _ => {}
    }
    let len7 = b1 & 0x7F;
    let (ext_len, size): (usize, u64) = match len7 {
        126 => match buf.get(2..4) {
            Some(&[a, b]) => (2, u64::from(u16::from_be_bytes([a, b]))),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(bytes) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(bytes);
                let size = u64::from_be_bytes(be);
                if size >> 63 != 0 {
                    return Err(WsError::BadLength);
                }
                (8, size)
            }
            None => return Ok(None),
        },
        n => (0, u64::from(n)),
    };
    if opcode.is_control() && size > MAX_CONTROL_PAYLOAD as u64 {
        return Err(WsError::ControlTooLong(
            usize::try_from(size).unwrap_or(usize::MAX),
        ));
    }
    let max = u64::try_from(max_payload).unwrap_or(u64::MAX);
    if size > max {
        return Err(WsError::TooLarge {
            size,
            max: max_payload,
        });
    }
    // size <= max_payload, so it fits a usize.
    let payload_len = usize::try_from(size).map_err(|_| WsError::TooLarge {
        size,
        max: max_payload,
    })?;
    let header_len = 2 + ext_len + if masked { 4 } else { 0 };
    let frame_len = header_len
        .checked_add(payload_len)
        .ok_or(WsError::TooLarge {
            size,
            max: max_payload,
        })?;
    if buf.len() < frame_len {
        return Ok(None);
    }
    if masked {
        let mut key = [0u8; 4];
        if let Some(k) = buf.get(header_len - 4..header_len) {
            key.copy_from_slice(k);
        }
        if let Some(payload) = buf.get_mut(header_len..frame_len) {
            apply_mask(payload, key);
        }
    }
    Ok(Some(FrameHead {
        fin,
        rsv1,
        opcode,
        header_len,
        payload_len,
    }))
}

/// XORs `buf` with the 4-byte masking `key`, starting at key offset 0
/// (RFC 6455 section 5.3). Masking and unmasking are the same operation.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word) ^ wide;
        chunk.copy_from_slice(&x.to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, hence at key offset 0.
    for (b, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *b ^= k;
    }
}

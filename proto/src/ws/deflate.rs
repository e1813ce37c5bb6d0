//! permessage-deflate (RFC 7692) on whole messages: compressing one
//! message into a frame ([`Deflater`]) and inflating one message under a
//! size bound ([`Inflater`]). Deflate itself is `flate2` (the zlib-rs
//! backend); this module only frames it.
//!
//! Invariants:
//! - The server compresses every message on its own (no context takeover):
//!   the compressor is reset per message, so one per shard serves every
//!   connection, and a compressed broadcast is the same bytes for all.
//! - A compressed message ends with an empty stored block whose 4 octets
//!   `00 00 ff ff` are removed on the wire and put back before inflating
//!   (section 7.2.1 and 7.2.2).
//! - Inflating never grows its output past `max + 1` bytes (it may fill
//!   room the buffer already had): past `max` it stops with
//!   [`WsError::TooLarge`] (a deflate bomb costs its bound, not its claim).
//!   Corrupt input is [`WsError::BadCompressed`], never a panic.
//! - A client that keeps its context across messages sends messages that may
//!   refer to its earlier output: the caller keeps the last `1 << bits`
//!   bytes of it ([`slide_window`]) and passes them as the dictionary.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{encode_header, Opcode, WsError};

/// The 4 octets every sync-flushed message ends with, removed on the wire.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Output reserved per step while inflating (doubled as output grows).
const INFLATE_STEP: usize = 4096;

/// Compresses whole messages, one at a time, into frames with RSV1 set.
pub struct Deflater {
    z: Compress,
    /// The last message's compressed bytes (reused).
    buf: Vec<u8>,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").finish_non_exhaustive()
    }
}

impl Deflater {
    /// A compressor at zlib `level` (0-9; 1 is fastest).
    pub fn new(level: u32) -> Self {
        Deflater {
            z: Compress::new(Compression::new(level.min(9)), false),
            buf: Vec::new(),
        }
    }

    /// Appends a final frame with RSV1 set carrying `payload` compressed,
    /// and returns true; or leaves `out` untouched and returns false when
    /// compressing would not make the message smaller.
    pub fn frame(&mut self, opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) -> bool {
        if !self.compress(payload) {
            return false;
        }
        let start = out.len();
        encode_header(true, opcode, self.buf.len(), None, out);
        if let Some(b0) = out.get_mut(start) {
            *b0 |= 0x40;
        }
        out.extend_from_slice(&self.buf);
        true
    }

    /// Compresses `payload` into `self.buf` without its tail; false when
    /// the result is not shorter than `payload`.
    fn compress(&mut self, payload: &[u8]) -> bool {
        self.z.reset();
        self.buf.clear();
        self.buf.reserve(payload.len() / 2 + 64);
        let start_in = self.z.total_in();
        loop {
            let used = (self.z.total_in() - start_in) as usize;
            let Some(rest) = payload.get(used..) else {
                return false;
            };
            if self
                .z
                .compress_vec(rest, &mut self.buf, FlushCompress::Sync)
                .is_err()
            {
                return false;
            }
            let done = self.z.total_in() - start_in == payload.len() as u64;
            if done && self.buf.len() < self.buf.capacity() {
                break;
            }
            // No gain possible: give up before compressing the rest.
            if self.buf.len() >= payload.len() + TAIL.len() {
                return false;
            }
            self.buf.reserve(self.buf.capacity().max(64));
        }
        if self.buf.ends_with(&TAIL) {
            self.buf.truncate(self.buf.len() - TAIL.len());
        }
        self.buf.len() < payload.len()
    }
}

/// Inflates whole messages, one at a time, under a size bound.
pub struct Inflater {
    z: Decompress,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").finish_non_exhaustive()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// An inflater for any window up to 15 bits.
    pub fn new() -> Self {
        Inflater {
            z: Decompress::new(false),
        }
    }

    /// Appends the inflated `data` (one message's payload, tail removed) to
    /// `out`. `window` is what the client's earlier messages inflated to
    /// (its last bytes), when it keeps its context; empty otherwise. Fails
    /// with [`WsError::TooLarge`] once the message passes `max` bytes, and
    /// with [`WsError::BadCompressed`] on corrupt input.
    pub fn message(
        &mut self,
        window: &[u8],
        data: &[u8],
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), WsError> {
        self.z.reset(false);
        if !window.is_empty() {
            self.z
                .set_dictionary(window)
                .map_err(|_| WsError::BadCompressed)?;
        }
        let start = out.len();
        for input in [data, &TAIL[..]] {
            if self.feed(input, start, max, out)? {
                break;
            }
        }
        Ok(())
    }

    /// Inflates all of `input`; true when the deflate stream ended (a
    /// final block), after which nothing more may follow.
    fn feed(
        &mut self,
        input: &[u8],
        start: usize,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, WsError> {
        let too_large = |n: usize| WsError::TooLarge {
            size: n as u64,
            max,
        };
        let start_in = self.z.total_in();
        loop {
            let produced = out.len() - start;
            if produced > max {
                return Err(too_large(produced));
            }
            if out.len() == out.capacity() {
                // Never room for more than one byte past the bound.
                let step = produced.max(INFLATE_STEP).min(max + 1 - produced);
                out.reserve_exact(step);
            }
            let used = (self.z.total_in() - start_in) as usize;
            let rest = input.get(used..).unwrap_or_default();
            let before_out = out.len();
            let status = self
                .z
                .decompress_vec(rest, out, FlushDecompress::Sync)
                .map_err(|_| WsError::BadCompressed)?;
            let used_now = (self.z.total_in() - start_in) as usize;
            if out.len() - start > max {
                return Err(too_large(out.len() - start));
            }
            if status == Status::StreamEnd {
                // A final block: what follows it is not deflate data.
                return match input.len() - used_now {
                    0 => Ok(true),
                    _ if input == TAIL => Ok(true),
                    _ => Err(WsError::BadCompressed),
                };
            }
            let progressed = used_now > used || out.len() > before_out;
            if used_now == input.len() && out.len() < out.capacity() {
                return Ok(false);
            }
            if !progressed {
                return match used_now == input.len() {
                    true => Ok(false),
                    false => Err(WsError::BadCompressed),
                };
            }
        }
    }
}

/// Keeps the last `1 << bits` bytes of what a client sent: its old
/// `window` followed by the message it just sent (`message`).
pub fn slide_window(window: &mut Vec<u8>, message: &[u8], bits: u8) {
    let size = 1usize << bits.min(15);
    if message.len() >= size {
        window.clear();
        window.extend_from_slice(&message[message.len() - size..]);
        return;
    }
    let keep = size - message.len();
    if window.len() > keep {
        window.drain(..window.len() - keep);
    }
    window.extend_from_slice(message);
}

#[cfg(test)]
#[path = "deflate_tests.rs"]
mod tests;

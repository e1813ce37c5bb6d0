//! `BATCH`: a numbered run of opaque envelopes, and [`BatchWriter`], which
//! builds one in place in the sender's buffer.
//!
//! Body: `seq: u64, count: u32`, then `count` envelopes, each `len: u32` and
//! `len` bytes. Batches are numbered per dialer from 1 and acknowledged
//! cumulatively; what an envelope holds is the gateway's business.
//!
//! Invariants:
//! - [`Batch::load`] validates the whole body before returning it: the count
//!   is within [`Limits::max_envelopes`], every envelope length fits in what
//!   is left, and nothing trails the last envelope. [`Batch::envelopes`]
//!   therefore never fails.
//! - [`BatchWriter`] writes the header with placeholder lengths and patches
//!   them in [`BatchWriter::finish`], so envelopes are copied once, into the
//!   buffer that goes to the socket.

use super::{body_len_u32, encode_header, BusError, Kind, Limits, Malformed, Reader, HEADER_LEN};

/// Bytes of a batch body before its first envelope (`seq` and `count`).
pub const BATCH_PREFIX_LEN: usize = 8 + 4;

/// Bytes of an envelope's length prefix.
pub const ENVELOPE_PREFIX_LEN: usize = 4;

/// A validated `BATCH`, borrowing its envelopes from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch<'a> {
    /// The batch number (from 1, per dialer incarnation).
    pub seq: u64,
    /// How many envelopes it holds.
    pub count: u32,
    /// The envelopes with their length prefixes, validated.
    envelopes: &'a [u8],
}

impl<'a> Batch<'a> {
    /// Decodes and fully validates a `BATCH` body.
    pub(crate) fn load(body: &'a [u8], limits: &Limits) -> Result<Batch<'a>, BusError> {
        let mut r = Reader::new(Kind::Batch, body);
        let seq = r.u64()?;
        let count = r.u32()?;
        let n = usize::try_from(count).unwrap_or(usize::MAX);
        if n > limits.max_envelopes {
            return Err(r.err(Malformed::TooManyEnvelopes {
                count,
                max: limits.max_envelopes,
            }));
        }
        let envelopes = r.rest;
        if n > envelopes.len() / ENVELOPE_PREFIX_LEN {
            return Err(r.err(Malformed::CountExceedsBody {
                count,
                bytes: envelopes.len(),
            }));
        }
        for index in 0..count {
            let len = r.u32()?;
            let size = usize::try_from(len).unwrap_or(usize::MAX);
            if size > r.rest.len() {
                return Err(r.err(Malformed::EnvelopeOverrun { index, len }));
            }
            r.bytes(size)?;
        }
        r.finish()?;
        Ok(Batch {
            seq,
            count,
            envelopes,
        })
    }

    /// The envelopes, in order, without their length prefixes.
    pub fn envelopes(&self) -> Envelopes<'a> {
        Envelopes {
            rest: self.envelopes,
            left: self.count,
        }
    }

    /// Appends this batch's encoding to `out` (the bytes it was parsed from).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let body_len = BATCH_PREFIX_LEN + self.envelopes.len();
        out.reserve(HEADER_LEN + body_len);
        encode_header(Kind::Batch, body_len, out);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(self.envelopes);
    }
}

/// Iterator over a validated batch's envelopes.
#[derive(Debug, Clone)]
pub struct Envelopes<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Envelopes<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        // Validated by `Batch::load`; the checks only keep this panic-free.
        let prefix = self.rest.get(..ENVELOPE_PREFIX_LEN)?;
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let end = ENVELOPE_PREFIX_LEN.checked_add(usize::try_from(len).ok()?)?;
        let envelope = self.rest.get(ENVELOPE_PREFIX_LEN..end)?;
        self.rest = &self.rest[end..];
        self.left -= 1;
        Some(envelope)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.left as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Envelopes<'_> {}

/// Builds a `BATCH` frame in place at the end of a buffer.
///
/// ```
/// use proto::bus::{parse, BatchWriter, Frame, Limits};
/// let mut w = BatchWriter::new(7);
/// w.push(b"one");
/// w.push(b"two");
/// let bytes = w.finish();
/// let (frame, used) = parse(&bytes, &Limits::default()).unwrap().unwrap();
/// let Frame::Batch(b) = frame else { panic!() };
/// assert_eq!((b.seq, used), (7, bytes.len()));
/// assert_eq!(b.envelopes().collect::<Vec<_>>(), [b"one", b"two"]);
/// ```
#[derive(Debug)]
pub struct BatchWriter {
    buf: Vec<u8>,
    start: usize,
    seq: u64,
    count: u32,
}

impl BatchWriter {
    /// Starts batch `seq` in a new buffer.
    pub fn new(seq: u64) -> BatchWriter {
        BatchWriter::append_to(Vec::new(), seq)
    }

    /// Starts batch `seq` at the end of `buf`, after whatever it holds.
    pub fn append_to(mut buf: Vec<u8>, seq: u64) -> BatchWriter {
        let start = buf.len();
        encode_header(Kind::Batch, 0, &mut buf);
        buf.extend_from_slice(&seq.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        BatchWriter {
            buf,
            start,
            seq,
            count: 0,
        }
    }

    /// Appends one envelope.
    ///
    /// # Panics
    /// If the envelope is 4 GiB or longer, or the batch already holds
    /// `u32::MAX` envelopes: callers bound both far lower.
    pub fn push(&mut self, envelope: &[u8]) {
        self.push_with(|buf| buf.extend_from_slice(envelope));
    }

    /// Appends one envelope that `write` encodes straight into the batch
    /// buffer (for example a prost message's `encode_raw`), then patches its
    /// length prefix.
    ///
    /// # Panics
    /// As [`BatchWriter::push`], or if `write` removes bytes it did not add.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; ENVELOPE_PREFIX_LEN]);
        write(&mut self.buf);
        let len = self.buf.len() - at - ENVELOPE_PREFIX_LEN;
        let len = u32::try_from(len).expect("bus envelope must fit a u32");
        self.buf[at..at + ENVELOPE_PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
        self.count = self.count.checked_add(1).expect("too many envelopes");
    }

    /// The batch number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Envelopes pushed so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether no envelope was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the whole frame so far, header included.
    pub fn frame_len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Patches the header's body length and the envelope count and returns
    /// the buffer, whose tail is now one complete `BATCH` frame.
    ///
    /// # Panics
    /// If the body reached 4 GiB.
    pub fn finish(mut self) -> Vec<u8> {
        let body_len = body_len_u32(self.frame_len() - HEADER_LEN);
        let s = self.start;
        self.buf[s + 4..s + HEADER_LEN].copy_from_slice(&body_len.to_be_bytes());
        let count_at = s + HEADER_LEN + 8;
        self.buf[count_at..count_at + 4].copy_from_slice(&self.count.to_be_bytes());
        self.buf
    }
}

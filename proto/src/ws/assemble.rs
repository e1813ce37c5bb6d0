//! Turning decoded frames into events: reassembling fragmented data messages
//! (RFC 6455 section 5.4) and validating control frames (section 5.5).
//!
//! Invariants:
//! - An unfragmented data frame is handed out borrowed, never copied: the
//!   common case does not allocate.
//! - Fragments are copied into a buffer that is released (`Vec::new()`, no
//!   capacity) as soon as the message completes or fails: an idle connection
//!   holds no buffer.
//! - The total of a fragmented message is checked against the maximum before
//!   each fragment is copied.
//! - Control frames may arrive between fragments and pass straight through.
//! - RSV1 (a compressed message, permessage-deflate) is taken from a
//!   message's first frame; on a continuation it is an error (RFC 7692
//!   section 6.1). The payload is handed out as it came: inflating it is
//!   the caller's (`deflate`).

use std::borrow::Cow;

use super::{close_code, FrameHead, Opcode, WsError};

/// What a frame means to the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete data message.
    Data {
        /// Whether it is a text message (else binary). Not UTF-8 validated.
        text: bool,
        /// Whether the payload is compressed (RSV1 on its first frame).
        compressed: bool,
        /// Borrowed from the frame when it was not fragmented, owned when it
        /// was reassembled.
        payload: Cow<'a, [u8]>,
    },
    /// A ping: answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// A close frame, validated: `code` is `None` for an empty payload, and
    /// the reason is valid UTF-8.
    Close {
        /// The peer's close code, if it sent one.
        code: Option<u16>,
        /// The peer's reason (UTF-8, possibly empty).
        reason: &'a [u8],
    },
}

/// Reassembles fragmented data messages of one connection.
#[derive(Debug, Default)]
pub struct Assembler {
    max_message: usize,
    /// `Some((text, compressed))` while a fragmented message is in progress.
    in_progress: Option<(bool, bool)>,
    /// The fragments so far; empty with no capacity when idle.
    buf: Vec<u8>,
}

impl Assembler {
    /// An assembler accepting messages of up to `max_message` bytes in total.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            in_progress: None,
            buf: Vec::new(),
        }
    }

    /// Feeds one decoded frame and its (unmasked) payload.
    ///
    /// Returns `Ok(None)` while a fragmented message is incomplete. On error
    /// the partial message is dropped; the connection should be closed with
    /// [`WsError::close_code`].
    pub fn push<'a>(
        &mut self,
        head: FrameHead,
        payload: &'a [u8],
    ) -> Result<Option<Event<'a>>, WsError> {
        let result = self.push_inner(head, payload);
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn push_inner<'a>(
        &mut self,
        head: FrameHead,
        payload: &'a [u8],
    ) -> Result<Option<Event<'a>>, WsError> {
        match head.opcode {
            Opcode::Ping => Ok(Some(Event::Ping(payload))),
            Opcode::Pong => Ok(Some(Event::Pong(payload))),
            Opcode::Close => parse_close(payload).map(Some),
            Opcode::Text | Opcode::Binary => {
                if self.in_progress.is_some() {
                    return Err(WsError::BadContinuation);
                }
                self.check_total(payload.len())?;
                let text = head.opcode == Opcode::Text;
                let compressed = head.rsv1;
                if head.fin {
                    return Ok(Some(Event::Data {
                        text,
                        compressed,
                        payload: Cow::Borrowed(payload),
                    }));
                }
                self.in_progress = Some((text, compressed));
                self.buf.extend_from_slice(payload);
                Ok(None)
            }
            Opcode::Continuation => {
                let Some((text, compressed)) = self.in_progress else {
                    return Err(WsError::BadContinuation);
                };
                if head.rsv1 {
                    return Err(WsError::ReservedBits);
                }
                self.check_total(payload.len())?;
                self.buf.extend_from_slice(payload);
                if !head.fin {
                    return Ok(None);
                }
                self.in_progress = None;
                Ok(Some(Event::Data {
                    text,
                    compressed,
                    payload: Cow::Owned(std::mem::take(&mut self.buf)),
                }))
            }
        }
    }

    /// Fails if `more` bytes would push the message over the maximum.
    fn check_total(&self, more: usize) -> Result<(), WsError> {
        let total = self.buf.len().saturating_add(more);
        if total > self.max_message {
            return Err(WsError::TooLarge {
                size: u64::try_from(total).unwrap_or(u64::MAX),
                max: self.max_message,
            });
        }
        Ok(())
    }

    /// Whether a fragmented message is in progress.
    pub fn in_progress(&self) -> bool {
        self.in_progress.is_some()
    }

    /// Bytes of the fragmented message buffered so far.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Capacity held by the fragment buffer (0 when idle).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The fragmented message in progress, if any: whether it is text,
    /// whether it is compressed, and its bytes so far (to hand the state to
    /// another process).
    pub fn pending(&self) -> Option<(bool, bool, &[u8])> {
        self.in_progress
            .map(|(text, compressed)| (text, compressed, &self.buf[..]))
    }

    /// An assembler resuming a message `pending` returned; `None` if the
    /// bytes already exceed `max_message`.
    pub fn resume(max_message: usize, text: bool, compressed: bool, buf: Vec<u8>) -> Option<Self> {
        (buf.len() <= max_message).then_some(Self {
            max_message,
            in_progress: Some((text, compressed)),
            buf,
        })
    }

    /// Drops any partial message and releases its buffer.
    pub fn reset(&mut self) {
        self.in_progress = None;
        self.buf = Vec::new();
    }
}

/// Validates a close payload (RFC 6455 sections 5.5.1 and 7.4).
fn parse_close(payload: &[u8]) -> Result<Event<'_>, WsError> {
    match payload {
        [] => Ok(Event::Close {
            code: None,
            reason: &[],
        }),
        [_] => Err(WsError::BadClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code::is_valid(code) {
                return Err(WsError::InvalidCloseCode(code));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(WsError::InvalidUtf8);
            }
            Ok(Event::Close {
                code: Some(code),
                reason,
            })
        }
    }
}

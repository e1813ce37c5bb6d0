//! The dialer's send queue: the open batch being built, then every closed
//! batch not yet acknowledged, encoded once and kept for resend.
//!
//! Invariants:
//! - Batch numbers are contiguous from 1: `closed` holds `acked + 1 ..`, in
//!   order, and the open batch (if any) is the next number.
//! - `acked <= sent`: an ack can only cover what went out on this
//!   connection; `sent` is rewound to the peer's `received` at each `WELCOME`
//!   and everything after it is transmitted again, before newer batches.
//! - `queued_bytes` is the encoded size of the open batch plus every closed
//!   one; `push` refuses an envelope that would take it past the maximum and
//!   never drops one it accepted.

use std::collections::VecDeque;

use proto::bus::{BatchWriter, BATCH_PREFIX_LEN, ENVELOPE_PREFIX_LEN, HEADER_LEN};

use crate::Config;

/// Why [`crate::Link::send`] refused an envelope. The caller's to handle:
/// nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Unsent plus unacked bytes would pass `max_queue_bytes`: the peer is
    /// slow or away. Retrying later makes sense; the refusal is counted in
    /// `envelopes_refused`.
    #[error("bus queue full")]
    Full,
    /// The envelope can never fit one batch (`limits.max_body`) or the queue:
    /// a bug of the sender, retrying is pointless.
    #[error("envelope of {size} bytes can never be sent (max {max})")]
    TooLarge {
        /// The envelope's length.
        size: usize,
        /// The largest envelope that fits.
        max: usize,
    },
}

/// A closed batch, encoded.
#[derive(Debug)]
struct Closed {
    seq: u64,
    envelopes: u32,
    bytes: Vec<u8>,
}

/// What one `transmit` call wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transmitted {
    pub(crate) batches: u64,
    pub(crate) envelopes: u64,
    pub(crate) resent: u64,
}

/// The peer's ack covers batches it was never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Beyond;

#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    open: Option<BatchWriter>,
    closed: VecDeque<Closed>,
    /// The number the next opened batch gets.
    next_seq: u64,
    /// Highest batch acknowledged (cumulatively).
    acked: u64,
    /// Highest batch transmitted on the current connection.
    sent: u64,
    /// Highest batch ever transmitted (to tell a resend from a first send).
    high_water: u64,
    queued_bytes: usize,
}

const BATCH_OVERHEAD: usize = HEADER_LEN + BATCH_PREFIX_LEN;

impl SendQueue {
    pub(crate) fn new() -> SendQueue {
        SendQueue {
            next_seq: 1,
            ..SendQueue::default()
        }
    }

    /// Appends `envelope` to the open batch (opening one if needed), and
    /// closes it once it reaches `max_batch_bytes`.
    pub(crate) fn push(&mut self, envelope: &[u8], config: &Config) -> Result<(), SendError> {
        let limits = &config.limits;
        let max = limits
            .max_body
            .saturating_sub(BATCH_PREFIX_LEN + ENVELOPE_PREFIX_LEN)
            .min(
                config
                    .max_queue_bytes
                    .saturating_sub(BATCH_OVERHEAD + ENVELOPE_PREFIX_LEN),
            )
            .min(u32::MAX as usize);
        let size = envelope.len();
        if size > max || limits.max_envelopes == 0 {
            return Err(SendError::TooLarge { size, max });
        }
        let cost = ENVELOPE_PREFIX_LEN + size;
        // Close the open batch first if this envelope would not fit in it.
        if let Some(open) = &self.open {
            let body = open.frame_len() - HEADER_LEN;
            if body + cost > limits.max_body || open.count() as usize >= limits.max_envelopes {
                self.close();
            }
        }
        let total = cost
            + if self.open.is_none() {
                BATCH_OVERHEAD
            } else {
                0
            };
        if self.queued_bytes + total > config.max_queue_bytes {
            return Err(SendError::Full);
        }
        let open = self.open.get_or_insert_with(|| {
            let w = BatchWriter::new(self.next_seq);
            self.next_seq += 1;
            w
        });
        open.push(envelope);
        self.queued_bytes += total;
        if open.frame_len() >= config.max_batch_bytes {
            self.close();
        }
        Ok(())
    }

    /// Closes the open batch, if any: it joins the unsent ones.
    pub(crate) fn close(&mut self) {
        if let Some(open) = self.open.take() {
            let (seq, envelopes) = (open.seq(), open.count());
            self.closed.push_back(Closed {
                seq,
                envelopes,
                bytes: open.finish(),
            });
        }
    }

    pub(crate) fn has_open(&self) -> bool {
        self.open.is_some()
    }

    /// Highest closed batch number, 0 if none.
    fn last_closed(&self) -> u64 {
        self.next_seq - 1 - u64::from(self.open.is_some())
    }

    /// A cumulative ack of every batch `<= seq`.
    pub(crate) fn ack(&mut self, seq: u64) -> Result<(), Beyond> {
        if seq > self.sent {
            return Err(Beyond);
        }
        if seq > self.acked {
            self.acked = seq;
            self.free_acked();
        }
        Ok(())
    }

    /// A new connection's `WELCOME` says the peer holds every batch
    /// `<= received`: drop those, and transmit what follows again.
    pub(crate) fn rewind(&mut self, received: u64) -> Result<(), Beyond> {
        if received > self.last_closed() {
            return Err(Beyond);
        }
        self.acked = self.acked.max(received);
        self.free_acked();
        self.sent = self.acked;
        Ok(())
    }

    fn free_acked(&mut self) {
        while let Some(front) = self.closed.front() {
            if front.seq > self.acked {
                break;
            }
            self.queued_bytes -= front.bytes.len();
            self.closed.pop_front();
        }
    }

    /// Whether a closed batch waits to be transmitted on this connection.
    pub(crate) fn has_unsent(&self) -> bool {
        self.closed.back().is_some_and(|c| c.seq > self.sent)
    }

    /// Appends closed batches not yet sent on this connection to `out`, in
    /// order, until `out` holds at least `max_bytes` (always one if any).
    pub(crate) fn transmit(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> Transmitted {
        let mut t = Transmitted::default();
        // Contiguous from `acked + 1`, and `acked <= sent`.
        let skip = usize::try_from(self.sent - self.acked).unwrap_or(usize::MAX);
        for batch in self.closed.iter().skip(skip) {
            if out.len() >= max_bytes && t != Transmitted::default() {
                break;
            }
            out.extend_from_slice(&batch.bytes);
            self.sent = batch.seq;
            if batch.seq <= self.high_water {
                t.resent += 1;
            } else {
                self.high_water = batch.seq;
                t.batches += 1;
                t.envelopes += u64::from(batch.envelopes);
            }
        }
        t
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_none() && self.closed.is_empty()
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Batches closed and not yet acknowledged.
    #[cfg(test)]
    pub(crate) fn unacked(&self) -> usize {
        self.closed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            max_batch_bytes: 100,
            max_queue_bytes: 1000,
            ..Config::default()
        }
    }

    #[test]
    fn closes_by_size_and_keeps_order() {
        let mut q = SendQueue::new();
        let c = config();
        for _ in 0..10 {
            q.push(&[7; 30], &c).unwrap();
        }
        // 20 + 34 * 3 = 122 >= 100: three envelopes a batch.
        q.close();
        assert_eq!(q.unacked(), 4);
        let mut out = Vec::new();
        let t = q.transmit(&mut out, usize::MAX);
        assert_eq!((t.batches, t.envelopes, t.resent), (4, 10, 0));
        assert_eq!(out.len(), q.queued_bytes());
        assert!(!q.has_unsent());
    }

    #[test]
    fn ack_frees_and_checks_bounds() {
        let mut q = SendQueue::new();
        let c = config();
        q.push(b"a", &c).unwrap();
        q.close();
        q.push(b"b", &c).unwrap();
        q.close();
        assert_eq!(q.ack(1), Err(Beyond), "nothing sent yet");
        q.transmit(&mut Vec::new(), usize::MAX);
        q.ack(1).unwrap();
        assert_eq!(q.unacked(), 1);
        q.ack(1).unwrap();
        q.ack(2).unwrap();
        assert!(q.is_empty());
        assert_eq!(q.queued_bytes(), 0);
        assert_eq!(q.ack(3), Err(Beyond));
    }

    #[test]
    fn rewind_resends() {
        let mut q = SendQueue::new();
        let c = config();
        for e in [b"a", b"b", b"c"] {
            q.push(e, &c).unwrap();
            q.close();
        }
        q.transmit(&mut Vec::new(), usize::MAX);
        assert_eq!(q.rewind(4), Err(Beyond));
        q.rewind(1).unwrap();
        let t = q.transmit(&mut Vec::new(), usize::MAX);
        assert_eq!((t.batches, t.resent), (0, 2));
    }

    #[test]
    fn full_and_too_large() {
        let mut q = SendQueue::new();
        let c = config();
        assert!(matches!(
            q.push(&[0; 1000], &c),
            Err(SendError::TooLarge { .. })
        ));
        let mut accepted = 0;
        while q.push(&[0; 50], &c).is_ok() {
            accepted += 1;
        }
        assert!(q.queued_bytes() <= 1000);
        assert!(accepted >= 12);
        assert_eq!(q.push(&[0; 50], &c), Err(SendError::Full));
    }
}

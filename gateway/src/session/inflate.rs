//! Inflating compressed client messages (permessage-deflate), for every
//! connection of a shard: one zlib context, reset per message, and the
//! window of each connection whose client keeps its context across
//! messages (`Session::inflate_bits`), kept here by connection id only once
//! it has sent a compressed message, so a connection that never does costs
//! nothing. The window is at most `1 << proto::ws::extensions::
//! CLIENT_WINDOW_BITS` bytes (512).
use std::collections::HashMap;

use proto::ws::deflate::{slide_window, Inflater};
use proto::ws::WsError;

/// See the module header.
#[derive(Debug, Default)]
pub(crate) struct Inflate {
    inflater: Option<Box<Inflater>>,
    windows: HashMap<u64, Vec<u8>>,
}

impl Inflate {
    /// Appends connection `id`'s compressed message `data`, inflated, to
    /// `out`; `bits` is its client's window (0: it resets its context per
    /// message). Fails past `max` bytes or on corrupt data.
    pub(crate) fn message(
        &mut self,
        id: u64,
        bits: u8,
        data: &[u8],
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), WsError> {
        let inflater = self.inflater.get_or_insert_with(Default::default);
        if bits == 0 {
            return inflater.message(&[], data, max, out);
        }
        let start = out.len();
        let window = self.windows.entry(id).or_default();
        inflater.message(window, data, max, out)?;
        if window.capacity() == 0 {
            window.reserve_exact(1 << bits);
        }
        slide_window(window, &out[start..], bits);
        Ok(())
    }

    /// Connection `id`'s window (to hand it to another process).
    pub(crate) fn window(&self, id: u64) -> Option<&[u8]> {
        self.windows.get(&id).map(Vec::as_slice)
    }

    /// Sets connection `id`'s window (taken over from another process).
    pub(crate) fn set_window(&mut self, id: u64, window: Vec<u8>) {
        if !window.is_empty() {
            self.windows.insert(id, window);
        }
    }

    /// Forgets connection `id` (closed).
    pub(crate) fn forget(&mut self, id: u64) {
        self.windows.remove(&id);
    }

    /// Connections holding a window.
    #[cfg(test)]
    pub(crate) fn windows(&self) -> usize {
        self.windows.len()
    }
}

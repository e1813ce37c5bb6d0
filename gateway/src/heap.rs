//! Live heap bytes: a counting wrapper around the process's allocator, so
//! `/metrics` can tell a leak (`gateway_heap_live_bytes` rising) from
//! allocator slack (RSS rising while live bytes stay flat).
//!
//! Each thread adds to its own cache-line slot (an uncontended atomic add
//! per allocation, no lock); past `SLOTS` threads share slots, which stays
//! correct. A block freed on another thread than the one that allocated it
//! moves bytes between slots; the sum, read only by a scrape, is exact.
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::Relaxed};

const SLOTS: usize = 256;

#[repr(align(64))]
struct Slot(AtomicI64);

static COUNTS: [Slot; SLOTS] = [const { Slot(AtomicI64::new(0)) }; SLOTS];
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MINE: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn add(bytes: i64) {
    // A thread being torn down has no thread-locals left: its last frees
    // go to the shared last slot.
    let i = MINE
        .try_with(|m| {
            if m.get() == usize::MAX {
                m.set(NEXT.fetch_add(1, Relaxed) % SLOTS);
            }
            m.get()
        })
        .unwrap_or(SLOTS - 1);
    COUNTS[i].0.fetch_add(bytes, Relaxed);
}

/// Bytes allocated and not yet freed, by every thread (as requested; the
/// allocator's own rounding and free pages are what RSS adds).
pub fn live_bytes() -> u64 {
    let sum: i64 = COUNTS.iter().map(|s| s.0.load(Relaxed)).sum();
    sum.max(0) as u64
}

/// Counts what `A` hands out; use as `#[global_allocator]`.
pub struct Counting<A>(pub A);

// SAFETY: every call is forwarded to `A` unchanged; only the count is added.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `A`'s.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as `alloc`.
        unsafe { self.0.dealloc(ptr, layout) };
        add(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn counts_what_is_live_across_threads() {
        let a = Counting(System);
        let l = Layout::from_size_align(1 << 20, 8).unwrap();
        let before = live_bytes();
        // SAFETY: a valid non-zero layout; freed below with the same one.
        let p = unsafe { a.alloc(l) } as usize;
        assert!(live_bytes() >= before + (1 << 20));
        // SAFETY: p came from `a.alloc(l)`; grown, then freed elsewhere.
        let p = unsafe { a.realloc(p as *mut u8, l, 2 << 20) } as usize;
        assert!(live_bytes() >= before + (2 << 20));
        let l2 = Layout::from_size_align(2 << 20, 8).unwrap();
        std::thread::spawn(move || unsafe { Counting(System).dealloc(p as *mut u8, l2) })
            .join()
            .unwrap();
        // Other tests allocate meanwhile: only our 2 MiB must be gone.
        assert!(
            live_bytes() < before + (1 << 20),
            "{} vs {before}",
            live_bytes()
        );
    }
}

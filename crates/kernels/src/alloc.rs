//! The process's memory allocator: the system one, with transparent huge
//! pages asked for under large blocks.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large get [`crate::huge_pages`]: every such
/// block holds at least one whole 2 MiB page.
const HUGE_BLOCK: usize = 2 << 20;

/// [`System`], except that a block of at least 4 MiB is marked
/// `MADV_HUGEPAGE` (its 2 MiB-aligned interior) before the caller first
/// writes it, so it faults in 2 MiB at a time instead of 4 KiB.
///
/// Loading a model copies its weights into fresh memory twice (protobuf
/// decoding, then tract's tensors) before packing them: for SmolLM2 in f32
/// that was 400 k page faults, and fault handling was a quarter of the
/// load's CPU time (`perf record`). The `edgebench` binary installs it as
/// its global allocator; a library user may do the same.
pub struct HugePageAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments;
// `madvise` only changes how the untouched pages of a block are backed.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        advise(p, new_size);
        p
    }
}

fn advise(p: *mut u8, size: usize) {
    if size >= HUGE_BLOCK && !p.is_null() {
        crate::huge_pages(p, size);
    }
}

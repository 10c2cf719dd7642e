//! Keeps hostile element counts from aborting the process.
//!
//! kafka-protocol 0.18 decodes arrays with `Vec::with_capacity(count)` using the count read off
//! the wire, before checking that the bytes exist. A 16-byte Metadata request claiming 2^30
//! topics asks for tens of gigabytes; the system allocator refuses, and Rust aborts the whole
//! process on allocation failure. A frame-size cap does not help, and the counts sit inside
//! every API's schema, so they cannot be checked generically before decoding.
//!
//! The proxy therefore installs [`GuardedAllocator`]: requests of [`HUGE_ALLOCATION`] bytes or
//! more are served by an anonymous `mmap` with `MAP_NORESERVE`, which reserves address space
//! without committing memory. The decoder then fails on the missing bytes after touching at most
//! a few pages, the vector is dropped and the mapping released. Legitimate allocations of that
//! size do not occur in the proxy (frames are capped far below it), and if one did, it would
//! behave like any lazily committed allocation. With `vm.overcommit_memory=2` the kernel
//! ignores `MAP_NORESERVE`; the mapping then fails like malloc would (documented limit).
#![allow(unsafe_code, reason = "a global allocator is unsafe by definition")]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are reserved lazily.
pub const HUGE_ALLOCATION: usize = 1 << 30;

const PAGE: usize = 4096;

pub struct GuardedAllocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_ALLOCATION && layout.align() <= PAGE
}

unsafe impl GlobalAlloc for GuardedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: anonymous private mapping, no file descriptor; failure is MAP_FAILED.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    layout.size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                return std::ptr::null_mut();
            }
            return ptr.cast();
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: every huge layout was mapped by `alloc` with exactly this size.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
            return;
        }
        // SAFETY: forwarded with the layout it was allocated with.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Fresh anonymous mappings are zero-filled.
            // SAFETY: same contract as `alloc`.
            return unsafe { self.alloc(layout) };
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` and `layout.align()` form a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: both sides come from the system allocator.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate, copy the overlapping prefix, free the old block.
        unsafe {
            let new_ptr = self.alloc(new_layout);
            if !new_ptr.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new_ptr
        }
    }
}

/// Marks a region that decodes untrusted input. The protection itself is the global allocator;
/// this keeps the call sites explicit and gives one place to add per-decode budgets.
pub fn untrusted<T>(decode: impl FnOnce() -> T) -> T {
    decode()
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_capacity_does_not_abort() {
        let v: Vec<[u8; 64]> = Vec::with_capacity(1 << 32);
        assert!(v.capacity() >= 1 << 32);
    }
}

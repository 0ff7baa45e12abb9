//! The global allocator: mimalloc, asked for plain blocks wherever a plain block is aligned enough.
//!
//! The `mimalloc` crate's `GlobalAlloc` sends every allocation through `mi_malloc_aligned`.
//! mimalloc 3 serves that from a size class's free list only while the list has a block; once it
//! is empty, an alignment request whose size class is not a power of two (24, 48, 80 bytes…) takes
//! the over-allocating path: a larger block and a slower call (purpleprotocol/mimalloc_rust#170).
//! The aligned entry points and that path were ~5% of `aptc plan`'s instructions at 10,000
//! claims. As Rust's own `System` allocator does with `malloc`, this one calls `mi_malloc` when the
//! size class's blocks are aligned enough: every class is a multiple of 8 bytes, those of
//! multiples of 16 are multiples of 16, and a page's first block is 16-aligned. `check` of
//! 100,000 claims peaks 21 MiB lower for it (docs/performance.md).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// mimalloc, called as [`is_plain`] allows.
pub struct Mimalloc;

/// Whether a plain `mi_malloc` block of `size` bytes is aligned to `align`: mimalloc's size
/// classes are multiples of 8, and multiples of 16 for sizes that are (`MI_MAX_ALIGN_SIZE` is 16).
/// (`align` is a power of two, so a mask tests the multiple: `%` would divide on every call.)
#[inline]
fn is_plain(size: usize, align: usize) -> bool {
    align <= 16 && size >= align && size & (align - 1) == 0
}

/// A new block for `layout` from `plain` (a size) or `aligned` (a size and an alignment), as
/// [`is_plain`] decides: the one choice of `alloc` and `alloc_zeroed`.
#[inline]
unsafe fn new_block(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: mimalloc's allocation functions accept any size and power-of-two alignment.
    unsafe {
        if is_plain(layout.size(), layout.align()) {
            plain(layout.size()).cast()
        } else {
            aligned(layout.size(), layout.align()).cast()
        }
    }
}

// SAFETY: each call is the mimalloc function for the layout (plain or aligned); mimalloc frees
// and reallocates any of its blocks, however they were allocated.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `mi_malloc` and `mi_malloc_aligned` take what `new_block` gives them.
        unsafe { new_block(layout, mi::mi_malloc, mi::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`, zeroed.
        unsafe { new_block(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; a moved block keeps its alignment.
        unsafe {
            if is_plain(new_size, layout.align()) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layout gets a block aligned as asked and as large, through allocation, zeroed
    /// allocation and growing or shrinking reallocation, plain or aligned.
    #[test]
    fn blocks_are_aligned_as_their_layouts_ask() {
        let allocator = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in (1..=600).chain([1000, 4096, 10_000, 70_000, 1 << 22]) {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size; each block is written within its size, then freed once.
                unsafe {
                    // Many small blocks of one layout, so size classes run out of free blocks and refill.
                    let count = if size <= 4096 { 64 } else { 2 };
                    let blocks: Vec<*mut u8> = (0..count).map(|_| allocator.alloc(layout)).collect();
                    for &block in &blocks {
                        assert!(!block.is_null() && (block as usize).is_multiple_of(align), "{size} bytes at {align}");
                        block.write_bytes(0xa5, size);
                    }
                    let zeroed = allocator.alloc_zeroed(layout);
                    assert!((zeroed as usize).is_multiple_of(align));
                    assert!(std::slice::from_raw_parts(zeroed, size).iter().all(|&b| b == 0));
                    for (n, &block) in blocks.iter().enumerate() {
                        let new_size = if n % 2 == 0 { size * 3 } else { size.div_ceil(2) };
                        let moved = allocator.realloc(block, layout, new_size);
                        assert!(
                            !moved.is_null() && (moved as usize).is_multiple_of(align),
                            "{size} → {new_size} at {align}"
                        );
                        let kept = std::slice::from_raw_parts(moved, size.min(new_size));
                        assert!(kept.iter().all(|&b| b == 0xa5), "{size} → {new_size} at {align} kept its bytes");
                        allocator.dealloc(moved, Layout::from_size_align(new_size, align).unwrap());
                    }
                    allocator.dealloc(zeroed, layout);
                }
            }
        }
    }
}

//! Metadata memory: a bump allocator over mmap'd chunks for the allocator's own records
//! (thread heaps), which must not come from any malloc. Records are never freed; heaps are
//! recycled through the heap registry instead.

use crate::allocator::sync::Locked;
#[cfg(loom)]
use alloc::vec::Vec;
use core::ptr;

const CHUNK: usize = 64 * 1024;

/// Invariant: `next..end` is the unused tail of the current chunk (`next == 0`: no chunk).
pub(crate) struct Bump {
    next: usize,
    end: usize,
    /// Every chunk mapped, so that a loom execution can unmap them when it ends.
    #[cfg(loom)]
    chunks: Vec<usize>,
}

crate::allocator::sync::global! {
    /// The bump allocator under its lock.
    pub(crate) static BUMP: Locked<Bump> = Locked::new(Bump {
        next: 0,
        end: 0,
        #[cfg(loom)]
        chunks: Vec::new(),
    });
}

#[cfg(loom)]
impl Drop for Bump {
    fn drop(&mut self) {
        for &chunk in &self.chunks {
            // SAFETY: mapped by `alloc` below; the execution is over, nothing uses it.
            unsafe { crate::allocator::os::unmap(chunk as *mut u8, CHUNK) };
        }
    }
}

/// Zeroed, suitably aligned, never-freed memory for one `T`; NULL when the OS refuses.
pub fn alloc<T>() -> *mut T {
    let (size, align) = (core::mem::size_of::<T>(), core::mem::align_of::<T>());
    debug_assert!(size <= CHUNK && align <= 4096);
    let mut bump = BUMP.lock();
    let mut start = (bump.next + align - 1) & !(align - 1);
    if bump.next == 0 || start + size > bump.end {
        let chunk = crate::allocator::os::map(CHUNK);
        if chunk.is_null() {
            return ptr::null_mut();
        }
        start = chunk as usize;
        bump.end = start + CHUNK;
        #[cfg(loom)]
        bump.chunks.push(start);
    }
    bump.next = start + size;
    start as *mut T
}

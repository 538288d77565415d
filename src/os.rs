//! OS memory: aligned arena mappings, unmapping, and handing pages back with `madvise`.
//! The only module that calls `mmap`, `munmap` and `madvise`.

use crate::geometry::ARENA_SIZE;
use core::ptr;

/// Maps `ARENA_SIZE` bytes of zeroed memory aligned to `ARENA_SIZE`, or returns NULL.
///
/// `mmap` only promises page alignment, so we map twice the size and unmap the unaligned
/// head and the tail; the kernel keeps no record of the trimmed parts.
pub fn map_arena() -> *mut u8 {
    let len = 2 * ARENA_SIZE;
    // SAFETY: an anonymous private mapping at an address the kernel chooses has no
    // preconditions; failure is reported as MAP_FAILED.
    let raw = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    let start = raw as usize;
    let aligned = (start + ARENA_SIZE - 1) & !(ARENA_SIZE - 1);
    let head = aligned - start;
    let tail = len - head - ARENA_SIZE;
    // SAFETY: both ranges lie inside the mapping just made and outside the arena we keep.
    unsafe {
        if head != 0 {
            libc::munmap(raw, head);
        }
        if tail != 0 {
            libc::munmap((aligned + ARENA_SIZE) as *mut libc::c_void, tail);
        }
    }
    aligned as *mut u8
}

/// Unmaps an arena made by [`map_arena`].
///
/// # Safety
/// `arena` came from [`map_arena`], is not unmapped yet, and nothing refers to it any more.
pub unsafe fn unmap_arena(arena: *mut u8) {
    // SAFETY: the caller guarantees `arena` is a live mapping of ARENA_SIZE bytes.
    unsafe {
        libc::munmap(arena.cast(), ARENA_SIZE);
    }
}

/// Gives the physical pages behind `[start, start + len)` back to the OS. The range stays
/// mapped and reads as zeros afterwards.
///
/// `MADV_DONTNEED` rather than `MADV_FREE`: the pages leave RSS at once (what users measure
/// and what `pymalloc_trim` promises), and the zero-fill on reuse is what a fresh pool costs.
///
/// # Safety
/// The range is page-aligned, lies in one of our arenas, and holds nothing anyone reads.
pub unsafe fn decommit(start: *mut u8, len: usize) {
    // SAFETY: per the caller's guarantee the range is ours and unused.
    unsafe {
        libc::madvise(start.cast(), len, libc::MADV_DONTNEED);
    }
}

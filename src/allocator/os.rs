//! OS memory: aligned arena mappings, unmapping, and handing pages back with `madvise`;
//! and the coarse clock that drives the decay. The only module that calls `mmap`, `munmap`,
//! `madvise` and `clock_gettime`.

use crate::allocator::geometry::ARENA_SIZE;
use crate::allocator::sync::{unmodeled, Ordering};
use core::ptr;

/// Memory system calls made (`mmap`, `munmap`, `madvise`): a statistic, and how tests and
/// benchmarks see that a steady oscillation makes none. Unmodeled: no protocol reads it.
static CALLS: unmodeled::AtomicU64 = unmodeled::AtomicU64::new(0);

/// The number of `mmap`, `munmap` and `madvise` calls made so far.
pub fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

fn count_call() {
    CALLS.fetch_add(1, Ordering::Relaxed);
}

/// Maps `ARENA_SIZE` bytes of zeroed memory aligned to `ARENA_SIZE`, or returns NULL.
///
/// `mmap` only promises page alignment. First try a mapping of exactly the arena's size:
/// the kernel places new mappings just below the previous ones (or into the hole an
/// unmapped arena left), so after the first arena this is nearly always aligned already
/// and costs one system call (docs/decisions.md#arena-mappings-aligned-first-try-populated-once-the-heap-is-big).
/// Otherwise map twice the size and unmap the unaligned head and the tail (the kernel
/// keeps no record of the trimmed parts).
///
/// With `populate`, the arena's pages are then faulted in with one `madvise`
/// (`MADV_POPULATE_WRITE`): an arena is only mapped when every other one is full, so its
/// pools are about to be handed out, and one system call costs far less than 64 separate
/// page faults (docs/decisions.md, as above). The price is at most one arena's worth of pages committed ahead of use, since allocation
/// fills the fullest arena first. Kernels before 5.14 refuse the advice; the pages then
/// fault in on first touch, as without `populate`.
pub fn map_arena(populate: bool) -> *mut u8 {
    let arena = map_aligned();
    if populate && !arena.is_null() {
        // SAFETY: the arena was just mapped read-write and nothing uses it yet; populating
        // only commits its (zero) pages. A failure changes nothing.
        count_call();
        unsafe { libc::madvise(arena.cast(), ARENA_SIZE, libc::MADV_POPULATE_WRITE) };
    }
    arena
}

/// See [`map_arena`].
fn map_aligned() -> *mut u8 {
    let raw = map(ARENA_SIZE);
    if raw.is_null() || raw as usize & (ARENA_SIZE - 1) == 0 {
        return raw;
    }
    // SAFETY: `raw` is the mapping of ARENA_SIZE bytes just made, unused.
    unsafe { unmap(raw, ARENA_SIZE) };
    let len = 2 * ARENA_SIZE;
    let raw = map(len);
    if raw.is_null() {
        return raw;
    }
    let start = raw as usize;
    let aligned = (start + ARENA_SIZE - 1) & !(ARENA_SIZE - 1);
    let head = aligned - start;
    let tail = len - head - ARENA_SIZE;
    // SAFETY: both ranges lie inside the mapping just made and outside the arena we keep.
    unsafe {
        if head != 0 {
            unmap(raw, head);
        }
        if tail != 0 {
            unmap((aligned + ARENA_SIZE) as *mut u8, tail);
        }
    }
    aligned as *mut u8
}

/// An anonymous private read-write mapping of `len` bytes where the kernel likes, or NULL.
pub fn map(len: usize) -> *mut u8 {
    count_call();
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
        ptr::null_mut()
    } else {
        raw.cast()
    }
}

/// Unmaps an arena made by [`map_arena`].
///
/// # Safety
/// `arena` came from [`map_arena`], is not unmapped yet, and nothing refers to it any more.
pub unsafe fn unmap_arena(arena: *mut u8) {
    // SAFETY: per the caller.
    unsafe { unmap(arena, ARENA_SIZE) }
}

/// Unmaps `[start, start + len)`.
///
/// # Safety
/// The range is a mapping made by [`map`] (or whole pages of one), and nothing refers to
/// it any more.
pub unsafe fn unmap(start: *mut u8, len: usize) {
    count_call();
    // SAFETY: per the caller the range is ours and unused.
    unsafe {
        libc::munmap(start.cast(), len);
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
    count_call();
    // SAFETY: per the caller's guarantee the range is ours and unused.
    unsafe {
        libc::madvise(start.cast(), len, libc::MADV_DONTNEED);
    }
}

/// Milliseconds on the monotonic clock, at the kernel tick's resolution (1–4 ms):
/// `CLOCK_MONOTONIC_COARSE` is a vDSO read of a few nanoseconds, no system call.
#[cfg(not(loom))]
pub fn now_ms() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-parameter; the clock id is one Linux always has.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) };
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// Under loom time stands still: an execution must not depend on the wall clock, so the
/// heaps' kept pools never age there (aging is the owner's own business, not a protocol).
#[cfg(loom)]
pub fn now_ms() -> u64 {
    0
}

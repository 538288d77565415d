//! Every symbol the library exports, and the only place one is defined (`#[no_mangle]`;
//! `tests/layers.rs` fails on one anywhere else): the C ABI `include/pymalloc.h` declares,
//! CPython's `PyObject_*` names and its two statistics hooks, and the descriptor
//! `pymalloc inspect` reads. Thin wrappers over [`crate::front::api`], [`crate::cpython`]
//! and [`crate::introspect`]; no logic lives here.

use crate::allocator::fallback::AllocatorEx;
use crate::allocator::heap::ThreadHeap;
#[cfg(not(loom))]
use crate::allocator::layout::{self, Descriptor};
use crate::introspect::stats::{self, GroupStats, HeapStats, Stats};
use crate::{allocator::heap, cpython, cpython::dispatch, front::api, introspect::check};
use core::ffi::{c_int, c_void};

/// `PyObject_Malloc`: ours for C programs linked against this library; inside CPython the
/// interpreter's dispatch through its OBJ domain (ours, tracemalloc's hooks, or whatever
/// `PYTHONMALLOC` chose; see `src/cpython/dispatch.rs`).
#[no_mangle]
pub extern "C" fn PyObject_Malloc(size: usize) -> *mut c_void {
    dispatch::malloc(size)
}

/// `PyObject_Calloc`: see [`PyObject_Malloc`].
#[no_mangle]
pub extern "C" fn PyObject_Calloc(nelem: usize, elsize: usize) -> *mut c_void {
    dispatch::calloc(nelem, elsize)
}

/// `PyObject_Realloc`: see [`PyObject_Malloc`].
///
/// # Safety
/// As for `pymalloc_realloc`.
#[no_mangle]
pub unsafe extern "C" fn PyObject_Realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded caller contract.
    unsafe { dispatch::realloc(ptr, size) }
}

/// `PyObject_Free`: see [`PyObject_Malloc`].
///
/// # Safety
/// As for `pymalloc_free`.
#[no_mangle]
pub unsafe extern "C" fn PyObject_Free(ptr: *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { dispatch::free(ptr) }
}

/// The descriptor `pymalloc inspect PID` finds the allocator's state by, from outside the
/// process (see `allocator::layout`): read-only, never read by the library itself.
#[cfg(not(loom))]
#[no_mangle]
#[used]
pub static pymalloc_descriptor: Descriptor = Descriptor {
    magic: layout::MAGIC,
    layout: layout::LAYOUT_VERSION,
    size: core::mem::size_of::<Descriptor>() as u32,
    version: layout::padded(env!("CARGO_PKG_VERSION")),
    ownership: crate::allocator::ownership::layout(),
    arenas: crate::allocator::arena::layout(),
    pools: crate::allocator::pool::layout(),
    heaps: heap::layout(),
    large_global: crate::allocator::fallback::layout_large(),
    trim_signal: crate::allocator::trim_signal::layout(),
};

/// Allocates `size` bytes (CPython's `PyObject_Malloc` semantics): 1..=512 bytes from a
/// pool, 16-byte aligned; 0 and larger sizes from the system allocator; NULL above
/// `PY_SSIZE_T_MAX`.
#[no_mangle]
pub extern "C" fn pymalloc_malloc(size: usize) -> *mut c_void {
    // SAFETY: the thread's own heap has no contract.
    unsafe { api::malloc_inline::<ThreadHeap>(size).cast() }
}

/// Allocates zeroed memory for `nelem * elsize` bytes; NULL if the product overflows or
/// exceeds `PY_SSIZE_T_MAX`.
#[no_mangle]
pub extern "C" fn pymalloc_calloc(nelem: usize, elsize: usize) -> *mut c_void {
    // SAFETY: the thread's own heap has no contract.
    unsafe { api::calloc_inline::<ThreadHeap>(nelem, elsize).cast() }
}

/// Resizes `ptr` with CPython's rules (see the README). NULL leaves `ptr` untouched.
///
/// # Safety
/// `ptr` is NULL, a live block from this allocator, or a pointer the system allocator can
/// reallocate.
#[no_mangle]
pub unsafe extern "C" fn pymalloc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded caller contract; the thread's own heap has no contract.
    unsafe { api::realloc_inner::<ThreadHeap>(ptr.cast(), size).cast() }
}

/// Frees `ptr`; NULL is a no-op; pointers not from our pools go to the system allocator.
///
/// # Safety
/// `ptr` is NULL, a live block from this allocator, or a pointer the system allocator can
/// free.
#[no_mangle]
pub unsafe extern "C" fn pymalloc_free(ptr: *mut c_void) {
    // SAFETY: forwarded caller contract; the thread's own heap has no contract.
    unsafe { api::free_inline::<ThreadHeap>(ptr.cast()) }
}

/// The class size of a block of ours (16..=512), 0 for any other pointer.
///
/// # Safety
/// `ptr` is any address; if it lies in our pools it is a live block.
#[no_mangle]
pub unsafe extern "C" fn pymalloc_usable_size(ptr: *const c_void) -> usize {
    // SAFETY: forwarded caller contract.
    unsafe { api::usable_size(ptr.cast()) }
}

/// Whether `ptr` lies in one of our pools. O(1); reads no memory that is not ours.
#[no_mangle]
pub extern "C" fn pymalloc_owns(ptr: *const c_void) -> bool {
    api::owns(ptr.cast())
}

/// Returns free pools and empty arenas to the OS now, without waiting for the decay: every
/// free pool and empty arena, and the empty pools kept by the calling thread, by the shared
/// heap and by exited threads' heaps. (Other running threads keep theirs until their own
/// decay ages them or they exit: only its owner touches a heap.)
#[no_mangle]
pub extern "C" fn pymalloc_trim() {
    heap::trim_all();
}

/// Walks every arena, pool, free list and heap and checks the allocator's invariants.
/// Returns 0 when they hold; otherwise writes what is broken to stderr and returns -1.
/// Returns -2, with a line on stderr, when the check could not be made: its bookkeeping
/// (sets of what it has seen, from the C library's `malloc`) could not get memory. It
/// never aborts for want of memory.
///
/// # Safety
/// No other thread is inside the allocator, or enters it, until this returns (it reads
/// the heaps' lists, which their owners change without a lock).
#[no_mangle]
pub unsafe extern "C" fn pymalloc_check() -> c_int {
    // SAFETY: forwarded caller contract.
    match unsafe { check::verify() } {
        Ok(_) => 0,
        Err(check::Failure::Broken(e)) => {
            eprintln!("pymalloc_check: {e}");
            -1
        }
        Err(check::Failure::NoMemory) => {
            crate::allocator::fault::to_stderr(b"pymalloc_check: not enough memory to check\n");
            -2
        }
    }
}

/// This allocator as a `PyMemAllocatorEx`-shaped struct, for `PyMem_SetAllocator` (its
/// `ctx` is NULL and ignored).
#[no_mangle]
pub extern "C" fn pymalloc_allocator() -> AllocatorEx {
    dispatch::ctx::allocator::<ThreadHeap>()
}

/// Installs this allocator into the running CPython (OBJ and MEM domains, or those
/// `PYMALLOC_DOMAINS` names), e.g. after `Py_Initialize` restored the defaults, or in a
/// program that loaded libpython with `dlopen` after our constructor ran. The allocator it
/// replaces receives frees of blocks we did not hand out. Call with the GIL held.
///
/// Returns 0 when every wanted domain now runs on this allocator (also when it already
/// did); -1 outside CPython (no `PyMem_SetAllocator` in the global scope); -2 in a
/// free-threaded CPython (3.13t and later), which must keep its own mimalloc (its garbage
/// collector walks mimalloc's heaps) and is left alone; otherwise the
/// domains it skipped, as bits (1 = OBJ, 2 = MEM): another allocator sits there (the
/// tracemalloc or debug hooks, installed after ours first took its fallback), and
/// replacing it would free its blocks with the wrong allocator.
#[no_mangle]
pub extern "C" fn pymalloc_install() -> c_int {
    match cpython::install(cpython::configured_domains()) {
        cpython::Outcome::Installed { skipped, .. } => c_int::from(skipped),
        cpython::Outcome::NoCPython => -1,
        cpython::Outcome::FreeThreaded => -2,
    }
}

/// The CPython domains this process installed this allocator into, as bits (1 = OBJ,
/// 2 = MEM); 0 when it never did (not CPython, `PYMALLOC_INSTALL=0`, `PYTHONMALLOC` or
/// `-X dev` made it step aside, or everything was skipped). Never cleared: an
/// interpreter that later restores its own allocators (3.12+ re-initialisation) still
/// counts; `pymalloc_rs.is_active()` probes the domains to tell.
#[no_mangle]
pub extern "C" fn pymalloc_installed_domains() -> core::ffi::c_uint {
    cpython::installed_domains().into()
}

/// Fills `out` with the allocator's counters (see `pymalloc_stats`). Allocates nothing:
/// the counters are whole also when memory has run out.
///
/// # Safety
/// `out` is NULL or points to writable memory for one `pymalloc_stats`.
#[no_mangle]
pub unsafe extern "C" fn pymalloc_get_stats(out: *mut Stats) {
    if !out.is_null() {
        // SAFETY: per the caller.
        unsafe { out.write(stats::collect()) };
    }
}

/// Fills `out[0..max]` with what each heap holds (see `pymalloc_heap_stats`), oldest heap
/// first, and returns how many heaps there are (may exceed `max`: call again with room for
/// them); `SIZE_MAX` when no memory could be had for the snapshot's bookkeeping (nothing
/// written). Heaps of running threads are read while they change: a snapshot.
///
/// # Safety
/// `out` points to writable memory for `max` `pymalloc_heap_stats` (NULL when `max` is 0).
#[no_mangle]
pub unsafe extern "C" fn pymalloc_get_heap_stats(out: *mut HeapStats, max: usize) -> usize {
    let Some(heaps) = stats::collect_with_heaps().1 else {
        return usize::MAX;
    };
    for (i, h) in heaps.iter().take(max).enumerate() {
        // SAFETY: per the caller, room for `max` records.
        unsafe { out.add(i).write(*h) };
    }
    heaps.len()
}

/// Attributes our pools to groups of addresses in one call (for tools that find which
/// objects keep sparsely used pools resident, such as `pymalloc_rs.pinning()`): address
/// `addrs[i]` belongs to group `groups[i]` (an index below `ngroups`); for each address
/// inside a block of one of our pools in use (any byte of the block), `out[groups[i]]`
/// counts the object, its block's bytes, the pool once per group when it is sparse (at
/// most half of its blocks in use), and the object's share of the bytes stranded in the
/// pool (see `pymalloc_group_stats`). Adds to `out` (zero it first). Other addresses (not
/// ours, or any value) and those whose group is out of range are skipped: only our own
/// pool headers are read. An address given twice in one group counts once. `scratch` is working room of `2 * n` values (the library
/// allocates nothing). Returns how many addresses lie in our pools; 0 when `n` is 0 or a
/// pointer is NULL.
///
/// # Safety
/// `addrs` and `groups` point to `n` readable elements each, `scratch` to `2 * n`
/// writable `uint64_t`, `out` to `ngroups` writable `pymalloc_group_stats`; `scratch` and
/// `out` overlap nothing.
#[no_mangle]
pub unsafe extern "C" fn pymalloc_attribute(
    addrs: *const *const c_void,
    groups: *const u32,
    n: usize,
    scratch: *mut u64,
    out: *mut GroupStats,
    ngroups: usize,
) -> usize {
    if n == 0 || addrs.is_null() || groups.is_null() || scratch.is_null() || out.is_null() {
        return 0;
    }
    // SAFETY: per the caller: arrays of `n` addresses (pointers are `usize`-sized) and
    // groups, `2 * n` scratch values as `n` pairs (same alignment), `ngroups` records;
    // the written ones disjoint from the rest.
    unsafe {
        stats::attribute(
            core::slice::from_raw_parts(addrs.cast::<usize>(), n),
            core::slice::from_raw_parts(groups, n),
            core::slice::from_raw_parts_mut(scratch.cast::<[u64; 2]>(), n),
            core::slice::from_raw_parts_mut(out, ngroups),
        )
    }
}

/// Writes the statistics as text laid out like `sys._debugmallocstats()` to `fd`. Needs
/// memory only for the table of heaps at its end, which, when memory has run out, is left
/// out with a line saying so; never aborts for want of memory.
#[no_mangle]
pub extern "C" fn pymalloc_print_stats(fd: c_int) {
    stats::print(fd);
}

/// CPython's `sys._debugmallocstats()` hook (reached where symbol interposition reaches):
/// our statistics while we are installed, the interpreter's own otherwise.
///
/// # Safety
/// `out` is a valid `FILE*`.
#[no_mangle]
pub unsafe extern "C" fn _PyObject_DebugMallocStats(out: *mut libc::FILE) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe { cpython::debug_malloc_stats(out) }
}

/// CPython's `sys.getallocatedblocks()` hook (up to 3.11, where interposition reaches):
/// the blocks in our pools plus those in the interpreter's own.
#[no_mangle]
pub extern "C" fn _Py_GetAllocatedBlocks() -> isize {
    cpython::allocated_blocks()
}

//! CPython's allocation semantics on top of the heaps and the fallback: which
//! requests pools serve, the size limits, calloc's zeroing, realloc's shrink rule and the
//! moves between pools and the fallback. The C ABI and the Rust tests both call these.

use crate::allocator::geometry::{class_size, is_small, PY_SSIZE_T_MAX};
use crate::allocator::heap::interp::Interpreter;
use crate::allocator::heap::{Source, ThreadHeap};
use crate::allocator::pool::{block_size_of, in_header_page, pool_in};
use crate::front::debug::{self, Api};
use crate::{allocator::fallback, allocator::heap, allocator::ownership, allocator::valgrind};
use core::ptr;

/// Whether `p` is a block of one of our pools (any address; reads no memory).
#[inline(always)]
pub fn owns(p: *const u8) -> bool {
    ownership::owns_arena_of(p as usize) && !in_header_page(p as usize)
}

/// `PyObject_Malloc`: 1..=512 bytes from a pool of the calling thread's heap, anything else
/// from the fallback.
pub fn malloc(n: usize) -> *mut u8 {
    // SAFETY: the thread's own heap has no contract.
    unsafe { malloc_inline::<ThreadHeap>(n) }
}

/// [`malloc`] for the C entry points, always inlined. Only a crate-private function may be:
/// a public `#[inline]` one would make its slow paths symbols the library exports to
/// other Rust crates, which the compiler then reaches through the GOT
/// (docs/decisions.md#no-got-on-the-fast-paths). The heap is `S`'s.
///
/// # Safety
/// The caller meets `S`'s contract.
#[inline(always)]
pub(crate) unsafe fn malloc_inline<S: Source>(n: usize) -> *mut u8 {
    if is_small(n) {
        // SAFETY: per the caller.
        let p = unsafe { heap::alloc::<S>(n) };
        valgrind::allocated(p, n);
        p
    } else {
        // SAFETY: per the caller.
        unsafe { large_malloc::<S>(n) }
    }
}

/// Requests pools do not serve: size 0 or above 512 bytes. (The heap is looked up here,
/// off the fast paths, which then load nothing more through the GOT: `tests/lean.rs`.)
///
/// # Safety
/// The caller meets `S`'s contract.
#[cold]
unsafe extern "C" fn large_malloc<S: Source>(n: usize) -> *mut u8 {
    if n > PY_SSIZE_T_MAX {
        return ptr::null_mut();
    }
    if debug::enabled() {
        return debug::malloc(n, Api::Native);
    }
    let fb = fallback::get();
    // SAFETY: the fallback accepts any size up to PY_SSIZE_T_MAX; per the caller.
    unsafe { heap::count_large::<S>((fb.malloc)(fb.ctx, n).cast()) }
}

/// `PyObject_Calloc`: zeroed memory for `nelem * elsize` bytes, NULL on overflow.
pub fn calloc(nelem: usize, elsize: usize) -> *mut u8 {
    // SAFETY: the thread's own heap has no contract.
    unsafe { calloc_inline::<ThreadHeap>(nelem, elsize) }
}

/// [`calloc`] for the C entry points, always inlined (see [`malloc_inline`]).
///
/// # Safety
/// The caller meets `S`'s contract.
#[inline(always)]
pub(crate) unsafe fn calloc_inline<S: Source>(nelem: usize, elsize: usize) -> *mut u8 {
    // A multiplication with an overflow check, not CPython's division by `elsize` (tens of
    // cycles on every calloc, which CPython's objects call for every GC-tracked object).
    let n = match nelem.checked_mul(elsize) {
        Some(n) if n <= PY_SSIZE_T_MAX => n,
        _ => return ptr::null_mut(),
    };
    if is_small(n) {
        // SAFETY: per the caller.
        let p = unsafe { heap::alloc::<S>(n) };
        valgrind::allocated(p, n);
        if !p.is_null() {
            // SAFETY: a fresh block of at least `n` bytes.
            unsafe { ptr::write_bytes(p, 0, n) };
        }
        return p;
    }
    // SAFETY: per the caller.
    unsafe { large_calloc::<S>(nelem, elsize) }
}

/// Requests of `nelem * elsize` bytes (at most `PY_SSIZE_T_MAX`) pools do not serve (see
/// [`large_malloc`]).
///
/// # Safety
/// The caller meets `S`'s contract.
#[cold]
unsafe extern "C" fn large_calloc<S: Source>(nelem: usize, elsize: usize) -> *mut u8 {
    if debug::enabled() {
        return debug::calloc(nelem, elsize, Api::Native);
    }
    let fb = fallback::get();
    // SAFETY: the product fits in PY_SSIZE_T_MAX (checked by the caller); per the caller.
    unsafe { heap::count_large::<S>((fb.calloc)(fb.ctx, nelem, elsize).cast()) }
}

/// `PyObject_Free`: our blocks back to their pool, anything else to the fallback.
///
/// # Safety
/// `p` is NULL, a live block from [`malloc`]/[`calloc`]/[`realloc`], or a pointer the
/// fallback allocator can free.
pub unsafe fn free(p: *mut u8) {
    // SAFETY: forwarded caller contract; the thread's own heap has no contract.
    unsafe { free_inline::<ThreadHeap>(p) }
}

/// [`free`] for the C entry points, always inlined (see [`malloc_inline`]).
///
/// # Safety
/// As for [`free`], and the caller meets `S`'s contract.
#[inline(always)]
pub(crate) unsafe fn free_inline<S: Source>(p: *mut u8) {
    let table = ownership::table_of(p as usize);
    if table != 0 {
        valgrind::freed(p);
        // SAFETY: per the caller, a pointer in our arenas is a live block of ours.
        unsafe { heap::free::<S>(p, table) }
    } else {
        // SAFETY: per the caller, the pointer belongs to the fallback.
        unsafe { free_foreign::<S>(p) }
    }
}

/// Frees a pointer that is not in our arenas (see [`large_malloc`]).
///
/// # Safety
/// `p` is NULL or freeable by the fallback; the caller meets `S`'s contract.
#[cold]
unsafe extern "C" fn free_foreign<S: Source>(p: *mut u8) {
    if p.is_null() {
        return;
    }
    if debug::enabled() {
        // SAFETY: forwarded caller contract.
        return unsafe { debug::free(p, Api::Native) };
    }
    let fb = fallback::get();
    // SAFETY: per the caller.
    unsafe {
        heap::uncount_large::<S>();
        (fb.free)(fb.ctx, p.cast())
    }
}

/// `PyObject_Realloc`, with CPython's rules: a block shrunk to more than 3/4 of its class
/// stays put; a pool block grown past 512 bytes moves to the fallback; a fallback block
/// stays with the fallback whatever its new size. NULL leaves `p` untouched.
///
/// # Safety
/// As for [`free`].
pub unsafe fn realloc(p: *mut u8, n: usize) -> *mut u8 {
    // SAFETY: forwarded caller contract; the thread's own heap has no contract.
    unsafe { realloc_inner::<ThreadHeap>(p, n) }
}

/// [`realloc`] for the C entry points: crate-private, so that they reach it with a direct
/// call (see [`malloc_inline`]); out of line, as it is long and three of them share it.
///
/// # Safety
/// As for [`realloc`], and the caller meets `S`'s contract.
pub(crate) unsafe fn realloc_inner<S: Source>(p: *mut u8, n: usize) -> *mut u8 {
    if n > PY_SSIZE_T_MAX {
        return ptr::null_mut();
    }
    if debug::enabled() {
        // SAFETY: forwarded caller contract.
        return unsafe { debug::realloc(p, n, Api::Native) };
    }
    let table = ownership::table_of(p as usize);
    if table == 0 {
        if p.is_null() {
            // SAFETY: per the caller.
            return unsafe { malloc_inline::<S>(n) };
        }
        let fb = fallback::get();
        // SAFETY: per the caller, `p` belongs to the fallback.
        return unsafe { (fb.realloc)(fb.ctx, p.cast(), n).cast() };
    }
    // SAFETY: `p` is a live block of ours, so its pool header is live.
    let size = class_size(unsafe { (*pool_in(table, p as usize)).class() } as usize);
    let keep = if n <= size {
        // Shrinking: stay unless that would waste more than a quarter of the block.
        if 4 * n > 3 * size {
            valgrind::resized_in_place(p, n);
            return p;
        }
        n
    } else {
        size
    };
    // SAFETY: per the caller.
    let q = unsafe { malloc_inline::<S>(n) };
    if !q.is_null() {
        // SAFETY: both blocks hold at least `keep` bytes and are distinct; `p` is a live
        // block of ours in the arena whose header table is `table`, freed once.
        unsafe {
            // CPython copies the whole old class size, slack included: let memcheck know.
            valgrind::copied_whole(p, keep);
            ptr::copy_nonoverlapping(p, q, keep);
            // `free` without a second lookup of the arena.
            valgrind::freed(p);
            heap::free::<S>(p, table);
        }
    }
    q
}

/// Usable size of `p`: its class size for our blocks, 0 for anything else.
///
/// # Safety
/// `p` is any address; if it is in our pools it is a live block.
pub unsafe fn usable_size(p: *const u8) -> usize {
    if debug::enabled() {
        return debug::usable_size(p);
    }
    if owns(p) {
        // SAFETY: per the caller, the pool is in use.
        unsafe { block_size_of(p) }
    } else {
        0
    }
}

/// For the tests of the interpreter heap: makes it and shares it among every caller of
/// [`malloc_interpreter`] and [`free_interpreter`], which must hold one lock (CPython's GIL
/// in the library's own use); `lock_held` says whether the calling thread holds it (for
/// [`crate::allocator::heap::trim`]). False when no metadata memory could be had.
///
/// # Safety
/// Before any call of [`malloc_interpreter`] or [`free_interpreter`].
#[doc(hidden)]
pub unsafe fn enable_interpreter_heap(lock_held: extern "C" fn() -> core::ffi::c_int) -> bool {
    heap::interp::set_lock_held(lock_held);
    // SAFETY: per the caller; the count is the library's own constant 1.
    unsafe { heap::interp::enable(&heap::interp::ONE) }
}

/// [`malloc`] from the interpreter heap (see [`enable_interpreter_heap`]).
///
/// # Safety
/// The caller holds the lock every caller of this and [`free_interpreter`] holds.
#[doc(hidden)]
pub unsafe fn malloc_interpreter(n: usize) -> *mut u8 {
    // SAFETY: per the caller, the interpreter heap's contract.
    unsafe { malloc_inline::<Interpreter>(n) }
}

/// [`free`] into the interpreter heap (see [`enable_interpreter_heap`]).
///
/// # Safety
/// As for [`free`], and as for [`malloc_interpreter`].
#[doc(hidden)]
pub unsafe fn free_interpreter(p: *mut u8) {
    // SAFETY: per the caller.
    unsafe { free_inline::<Interpreter>(p) }
}

//! The fallback allocator: where requests we do not serve from pools go (size 0, more than
//! 512 bytes, no arena to be had) and where frees of pointers we did not hand out go.
//!
//! Outside CPython it is the C library's allocator, wrapped with CPython's raw-domain rules
//! (size 0 becomes 1, so every success is a unique non-NULL pointer). Inside CPython it is
//! the allocator we replaced. Its shape is CPython's `PyMemAllocatorEx`. It also counts the
//! blocks it hands out on our behalf, for the statistics.

use crate::allocator::sync::{
    unmodeled::{AtomicBool, AtomicPtr, AtomicUsize},
    Ordering,
};
use core::ffi::c_void;

/// A `PyMemAllocatorEx`-shaped allocator: a context pointer passed to four functions.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AllocatorEx {
    pub ctx: *mut c_void,
    pub malloc: unsafe extern "C" fn(ctx: *mut c_void, size: usize) -> *mut c_void,
    pub calloc: unsafe extern "C" fn(ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void,
    pub realloc:
        unsafe extern "C" fn(ctx: *mut c_void, ptr: *mut c_void, new_size: usize) -> *mut c_void,
    pub free: unsafe extern "C" fn(ctx: *mut c_void, ptr: *mut c_void),
}

// SAFETY: an allocator's context is, by the PyMemAllocatorEx contract, usable from any
// thread that may call the allocator.
unsafe impl Sync for AllocatorEx {}
// SAFETY: as above.
unsafe impl Send for AllocatorEx {}

/// Defines module `$name` holding a `PyMemAllocatorEx`'s four functions, which ignore
/// `ctx` and run the bodies given (`malloc(n)`, `calloc(nelem, elsize)`, `realloc(ptr, n)`,
/// `free(ptr)`; the pointers are `*mut c_void`, the results too), generic over `$g` when
/// one is named, and `allocator()`, them as an [`AllocatorEx`] with `ctx` NULL. Every such
/// set of the crate is made with it: the C library's here, the allocator itself per heap
/// source (`cpython::dispatch`) and debug mode's per CPython domain (`front::debug`). The
/// callers' contract is the allocator's: the bodies hold the `unsafe` blocks it allows.
macro_rules! allocator_ex {
    (
        $(#[$m:meta])* $vis:vis mod $name:ident $(<$g:ident: $bound:path>)? {
            malloc($n:ident) $malloc:block
            calloc($nelem:ident, $elsize:ident) $calloc:block
            realloc($p:ident, $size:ident) $realloc:block
            free($q:ident) $free:block
        }
    ) => {
        $(#[$m])*
        $vis mod $name {
            #[allow(unused_imports)]
            use super::*;
            use core::ffi::c_void;

            /// `malloc`.
            ///
            /// # Safety
            /// The allocator's contract (see the module).
            pub unsafe extern "C" fn malloc$(<$g: $bound>)?(
                _ctx: *mut c_void,
                $n: usize,
            ) -> *mut c_void $malloc
            /// `calloc`.
            ///
            /// # Safety
            /// The allocator's contract (see the module).
            pub unsafe extern "C" fn calloc$(<$g: $bound>)?(
                _ctx: *mut c_void,
                $nelem: usize,
                $elsize: usize,
            ) -> *mut c_void $calloc
            /// `realloc`.
            ///
            /// # Safety
            /// The allocator's contract (see the module).
            pub unsafe extern "C" fn realloc$(<$g: $bound>)?(
                _ctx: *mut c_void,
                $p: *mut c_void,
                $size: usize,
            ) -> *mut c_void $realloc
            /// `free`.
            ///
            /// # Safety
            /// The allocator's contract (see the module).
            pub unsafe extern "C" fn free$(<$g: $bound>)?(_ctx: *mut c_void, $q: *mut c_void) $free

            /// The four as a `PyMemAllocatorEx`, `ctx` NULL.
            #[inline(always)]
            #[allow(clippy::redundant_field_names)] // `malloc: malloc::<G>` with a generic
            pub const fn allocator$(<$g: $bound>)?() -> $crate::allocator::fallback::AllocatorEx {
                $crate::allocator::fallback::AllocatorEx {
                    ctx: core::ptr::null_mut(),
                    malloc: malloc$(::<$g>)?,
                    calloc: calloc$(::<$g>)?,
                    realloc: realloc$(::<$g>)?,
                    free: free$(::<$g>)?,
                }
            }
        }
    };
}
pub(crate) use allocator_ex;

allocator_ex! {
    /// The C library's allocator with CPython's raw-domain rules (a size of 0 is 1).
    mod system {
        malloc(size) {
            // SAFETY: malloc accepts any size.
            unsafe { libc::malloc(size.max(1)) }
        }
        calloc(nelem, elsize) {
            let (nelem, elsize) = if nelem == 0 || elsize == 0 {
                (1, 1)
            } else {
                (nelem, elsize)
            };
            // SAFETY: calloc checks the product for overflow itself.
            unsafe { libc::calloc(nelem, elsize) }
        }
        realloc(ptr, size) {
            // SAFETY: the caller passes NULL or a pointer from this allocator.
            unsafe { libc::realloc(ptr, size.max(1)) }
        }
        free(ptr) {
            // SAFETY: the caller passes NULL or a pointer from this allocator.
            unsafe { libc::free(ptr) }
        }
    }
}

/// The C library's allocator with CPython's raw-domain rules.
pub static SYSTEM: AllocatorEx = system::allocator();

/// The fallback in force. Invariant: it always points to an allocator that lives for the
/// rest of the process (`SYSTEM`, or the replaced CPython allocator copied into a static),
/// and changes only at installation into CPython (see [`set`]).
static CURRENT: AtomicPtr<AllocatorEx> =
    AtomicPtr::new(&SYSTEM as *const AllocatorEx as *mut AllocatorEx);

/// The fallback allocator in force.
#[inline(always)]
pub fn get() -> &'static AllocatorEx {
    // SAFETY: `CURRENT` only ever holds pointers to 'static allocators (see `set`).
    unsafe { &*CURRENT.load(Ordering::Acquire) }
}

/// Makes `alloc` the fallback. Blocks the previous fallback handed out must still be freed
/// by it, so this is meant for start-up, before the first large allocation.
pub fn set(alloc: &'static AllocatorEx) {
    CURRENT.store(
        alloc as *const AllocatorEx as *mut AllocatorEx,
        Ordering::Release,
    );
}

/// The part of the statistics' `large_in_use` counted by threads without a heap (threads
/// that have made no small allocation yet, debug mode, exited threads, threads that could
/// get none): blocks the fallback handed out on
/// our behalf minus frees of pointers not ours, as a wrapping two's-complement count. The
/// rest is counted in the heaps (`heap::count_large`).
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// The address of the count in `IN_USE`, for the descriptor (`layout`).
pub const fn layout_large() -> *const u8 {
    IN_USE.as_ptr().cast()
}

/// Whether the fallback ever handed out a block for us in this process (or in the process
/// it was forked from). Never cleared.
static SERVED: AtomicBool = AtomicBool::new(false);

/// Adds `delta` to the count of threads without a heap (see `IN_USE`).
pub fn count_global(delta: isize) {
    IN_USE.fetch_add(delta as usize, Ordering::Relaxed);
}

/// Records that the fallback handed out a block for us.
#[inline]
pub fn mark_served() {
    if !SERVED.load(Ordering::Relaxed) {
        SERVED.store(true, Ordering::Relaxed);
    }
}

/// The count of threads without a heap (see `IN_USE`), signed.
pub fn in_use_global() -> isize {
    IN_USE.load(Ordering::Relaxed) as isize
}

/// Whether the fallback ever handed out a block for us (see `SERVED`).
pub fn served() -> bool {
    SERVED.load(Ordering::Relaxed)
}

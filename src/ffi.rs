//! The C ABI: the functions `include/pymalloc.h` declares. Thin wrappers over [`crate::api`];
//! no logic lives here.

use crate::fallback::AllocatorEx;
use crate::{api, arena, check, heap};
use core::ffi::{c_int, c_void};

/// Allocates `size` bytes (CPython's `PyObject_Malloc` semantics): 1..=512 bytes from a
/// pool, 16-byte aligned; 0 and larger sizes from the system allocator; NULL above
/// `PY_SSIZE_T_MAX`.
#[no_mangle]
pub extern "C" fn pymalloc_malloc(size: usize) -> *mut c_void {
    api::malloc(size).cast()
}

/// Allocates zeroed memory for `nelem * elsize` bytes; NULL if the product overflows or
/// exceeds `PY_SSIZE_T_MAX`.
#[no_mangle]
pub extern "C" fn pymalloc_calloc(nelem: usize, elsize: usize) -> *mut c_void {
    api::calloc(nelem, elsize).cast()
}

/// Resizes `ptr` with CPython's rules (see the README). NULL leaves `ptr` untouched.
///
/// # Safety
/// `ptr` is NULL, a live block from this allocator, or a pointer the system allocator can
/// reallocate.
#[no_mangle]
pub unsafe extern "C" fn pymalloc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded caller contract.
    unsafe { api::realloc(ptr.cast(), size).cast() }
}

/// Frees `ptr`; NULL is a no-op; pointers not from our pools go to the system allocator.
///
/// # Safety
/// `ptr` is NULL, a live block from this allocator, or a pointer the system allocator can
/// free.
#[no_mangle]
pub unsafe extern "C" fn pymalloc_free(ptr: *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { api::free(ptr.cast()) }
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

/// Returns every free pool and spare arena to the OS now.
#[no_mangle]
pub extern "C" fn pymalloc_trim() {
    heap::trim();
    arena::trim();
}

/// Walks every arena, pool, free list and heap and checks the allocator's invariants.
/// Returns 0 when they hold; otherwise writes what is broken to stderr and returns -1.
/// Call it only while no other thread is inside the allocator.
#[no_mangle]
pub extern "C" fn pymalloc_check() -> c_int {
    match check::verify() {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("pymalloc_check: {e}");
            -1
        }
    }
}

unsafe extern "C" fn ctx_malloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    pymalloc_malloc(size)
}
unsafe extern "C" fn ctx_calloc(_ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    pymalloc_calloc(nelem, elsize)
}
unsafe extern "C" fn ctx_realloc(_ctx: *mut c_void, ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded caller contract.
    unsafe { pymalloc_realloc(ptr, size) }
}
unsafe extern "C" fn ctx_free(_ctx: *mut c_void, ptr: *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { pymalloc_free(ptr) }
}

/// This allocator as a `PyMemAllocatorEx`-shaped struct, for `PyMem_SetAllocator`.
#[no_mangle]
pub extern "C" fn pymalloc_allocator() -> AllocatorEx {
    AllocatorEx {
        ctx: core::ptr::null_mut(),
        malloc: ctx_malloc,
        calloc: ctx_calloc,
        realloc: ctx_realloc,
        free: ctx_free,
    }
}

/// `PyObject_Malloc` for C programs linked against this library.
#[no_mangle]
pub extern "C" fn PyObject_Malloc(size: usize) -> *mut c_void {
    api::malloc(size).cast()
}

/// `PyObject_Calloc` for C programs linked against this library.
#[no_mangle]
pub extern "C" fn PyObject_Calloc(nelem: usize, elsize: usize) -> *mut c_void {
    pymalloc_calloc(nelem, elsize)
}

/// `PyObject_Realloc` for C programs linked against this library.
///
/// # Safety
/// As for [`pymalloc_realloc`].
#[no_mangle]
pub unsafe extern "C" fn PyObject_Realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded caller contract.
    unsafe { pymalloc_realloc(ptr, size) }
}

/// `PyObject_Free` for C programs linked against this library.
///
/// # Safety
/// As for [`pymalloc_free`].
#[no_mangle]
pub unsafe extern "C" fn PyObject_Free(ptr: *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { api::free(ptr.cast()) }
}

//! The exported `PyObject_*` names without the detour through the interpreter.
//!
//! Inside CPython our `PyObject_Malloc` & co. must dispatch exactly as the interpreter's own
//! do: through the OBJ domain's current allocator, which may be ours, tracemalloc's
//! hooks or whatever the program installed. Forwarding to the interpreter's function does
//! that, but on builds whose own calls reach our names (pyenv's `--enable-shared`: every
//! `PyObject_Malloc` of libpython goes through the PLT to us) it costs a second call and
//! the interpreter's indirect call back into us on every allocation and free
//! (docs/decisions.md#pyobject_-without-the-detour).
//!
//! The interpreter's `PyObject_Malloc(n)` is `n > PY_SSIZE_T_MAX ? NULL :
//! obj.malloc(obj.ctx, n)` in every version 3.8–3.13, where `obj` is the live OBJ-domain
//! allocator struct (`_PyObject` in obmalloc.c up to 3.11, `_PyRuntime.allocators.
//! standard.obj` from 3.12). Neither is exported, so [`locate`] finds it once, right after
//! we installed ourselves with a `ctx` no other struct holds ([`obj_ctx`]): it looks for
//! our five words in the interpreter's data near an exported neighbour (`_PyRuntime`, or
//! obmalloc.c's `_Py_tracemalloc_config`) and accepts a single match only. From then on
//! the exported names read that struct as the interpreter does, and call our allocator
//! directly when it is the one installed: the same dispatch without the hop. Where the
//! struct is not found (another layout, a debug-mode install) they keep forwarding.
//!
//! Invariant: `OBJ_DOMAIN` is null or the address of the interpreter's live OBJ-domain
//! `PyMemAllocatorEx`, which lives as long as the interpreter's library: for good, unless
//! an embedder `dlclose`s libpython after `pymalloc_install`, which the forwarding slots
//! (pointers to its functions) would not survive either.

use crate::allocator::fallback::AllocatorEx;
use crate::allocator::geometry::PY_SSIZE_T_MAX;
use crate::allocator::heap::interp::Interpreter;
use crate::allocator::heap::{Source, ThreadHeap};
use crate::allocator::sync::unmodeled::{AtomicPtr, AtomicUsize};
use crate::allocator::sync::Ordering;
use crate::front::api;
use core::ffi::{c_int, c_void, CStr};
use core::mem::transmute;
use core::ptr;

type MallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type CallocFn = unsafe extern "C" fn(*mut c_void, usize, usize) -> *mut c_void;
type ReallocFn = unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void, *mut c_void);

crate::allocator::fallback::allocator_ex! {
    /// This allocator as a `PyMemAllocatorEx` whose functions use the heap of `S`:
    /// [`ThreadHeap`] for embedders, who may install it in any domain, the GIL-less RAW one
    /// too; [`Interpreter`] for the OBJ and MEM domains, which CPython calls with the GIL
    /// held. The callers meet `S`'s contract (the interpreter heap's: they hold the GIL).
    pub(crate) mod ctx<S: Source> {
        malloc(size) {
            // SAFETY: per the caller.
            unsafe { api::malloc_inline::<S>(size).cast() }
        }
        calloc(nelem, elsize) {
            // SAFETY: per the caller.
            unsafe { api::calloc_inline::<S>(nelem, elsize).cast() }
        }
        realloc(ptr, size) {
            // SAFETY: the caller passes a block it may reallocate, and meets `S`'s contract.
            unsafe { api::realloc_inner::<S>(ptr.cast(), size).cast() }
        }
        free(ptr) {
            // SAFETY: the caller passes a block it may free, and meets `S`'s contract.
            unsafe { api::free_inline::<S>(ptr.cast()) }
        }
    }
}

/// The interpreter's own `PyObject_Malloc`, `_Calloc`, `_Realloc`, `_Free`, set by
/// `cpython::resolve_forwarding`; null outside CPython, where the exported names are ours.
pub(crate) static FORWARD_MALLOC: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
pub(crate) static FORWARD_CALLOC: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
pub(crate) static FORWARD_REALLOC: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
pub(crate) static FORWARD_FREE: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

/// Loads a forwarding slot: the interpreter's function of type `F`, or `None` outside CPython.
///
/// # Safety
/// `F` is the function pointer type of the function `slot` holds.
#[inline(always)]
unsafe fn forward<F: Copy>(slot: &AtomicPtr<c_void>) -> Option<F> {
    const { assert!(core::mem::size_of::<F>() == core::mem::size_of::<*mut c_void>()) };
    let p = slot.load(Ordering::Relaxed);
    // SAFETY: a non-null slot holds the interpreter's function of the matching signature
    // (see `cpython::resolve_forwarding`); per the caller `F` is that function pointer type,
    // and it is pointer-sized (checked above).
    (!p.is_null()).then(|| unsafe { core::mem::transmute_copy::<*mut c_void, F>(&p) })
}

/// `PyObject_Malloc`: in CPython, the interpreter's dispatch (directly where [`locate`]
/// found its struct, else by forwarding); outside it, ours. NULL above `PY_SSIZE_T_MAX`.
#[inline(always)]
pub(crate) fn malloc(size: usize) -> *mut c_void {
    if let Some(obj) = obj_domain() {
        let f = obj.malloc.load(Ordering::Relaxed);
        if f == ctx::malloc::<Interpreter> as *const () as usize {
            // SAFETY: the caller of `PyObject_Malloc` in CPython holds the GIL.
            return unsafe { api::malloc_inline::<Interpreter>(size).cast() };
        }
        if size > PY_SSIZE_T_MAX {
            return ptr::null_mut();
        }
        // SAFETY: the OBJ domain's malloc, called with its ctx as the interpreter would.
        return unsafe { transmute::<usize, MallocFn>(f)(obj.ctx.load(Ordering::Relaxed), size) };
    }
    // SAFETY: `FORWARD_MALLOC` holds the interpreter's PyObject_Malloc, of this type.
    match unsafe { forward::<unsafe extern "C" fn(usize) -> *mut c_void>(&FORWARD_MALLOC) } {
        // SAFETY: the interpreter's PyObject_Malloc.
        Some(f) => unsafe { f(size) },
        // SAFETY: the thread's own heap has no contract.
        None => unsafe { api::malloc_inline::<ThreadHeap>(size).cast() },
    }
}

/// `PyObject_Calloc`: as `malloc` (this module's); NULL when `nelem * elsize` exceeds `PY_SSIZE_T_MAX`.
pub(crate) fn calloc(nelem: usize, elsize: usize) -> *mut c_void {
    if let Some(obj) = obj_domain() {
        let f = obj.calloc.load(Ordering::Relaxed);
        if f == ctx::calloc::<Interpreter> as *const () as usize {
            // SAFETY: the caller of `PyObject_Calloc` in CPython holds the GIL.
            return unsafe { api::calloc_inline::<Interpreter>(nelem, elsize).cast() };
        }
        if nelem.checked_mul(elsize).is_none_or(|n| n > PY_SSIZE_T_MAX) {
            return ptr::null_mut();
        }
        // SAFETY: the OBJ domain's calloc, called with its ctx as the interpreter would.
        return unsafe {
            transmute::<usize, CallocFn>(f)(obj.ctx.load(Ordering::Relaxed), nelem, elsize)
        };
    }
    // SAFETY: `FORWARD_CALLOC` holds the interpreter's PyObject_Calloc, of this type.
    match unsafe { forward::<unsafe extern "C" fn(usize, usize) -> *mut c_void>(&FORWARD_CALLOC) } {
        // SAFETY: the interpreter's PyObject_Calloc.
        Some(f) => unsafe { f(nelem, elsize) },
        // SAFETY: the thread's own heap has no contract.
        None => unsafe { api::calloc_inline::<ThreadHeap>(nelem, elsize).cast() },
    }
}

/// `PyObject_Realloc`: as `malloc` (this module's).
///
/// # Safety
/// `ptr` is NULL or a live block of the OBJ domain's allocator (outside CPython: ours, or
/// one the system allocator can reallocate).
pub(crate) unsafe fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if let Some(obj) = obj_domain() {
        let f = obj.realloc.load(Ordering::Relaxed);
        if f == ctx::realloc::<Interpreter> as *const () as usize {
            // SAFETY: per the caller, a block of the OBJ domain's allocator, which is ours:
            // one of our pools', or one `api` hands on to the allocator we replaced; the
            // caller of `PyObject_Realloc` in CPython holds the GIL.
            return unsafe { api::realloc_inner::<Interpreter>(ptr.cast(), size).cast() };
        }
        if size > PY_SSIZE_T_MAX {
            return ptr::null_mut();
        }
        // SAFETY: the OBJ domain's realloc, with its ctx and the caller's block.
        return unsafe {
            transmute::<usize, ReallocFn>(f)(obj.ctx.load(Ordering::Relaxed), ptr, size)
        };
    }
    // SAFETY: `FORWARD_REALLOC` holds the interpreter's PyObject_Realloc, of this type.
    match unsafe {
        forward::<unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void>(&FORWARD_REALLOC)
    } {
        // SAFETY: the interpreter's PyObject_Realloc, with the caller's contract.
        Some(f) => unsafe { f(ptr, size) },
        // SAFETY: forwarded caller contract; the thread's own heap has no contract.
        None => unsafe { api::realloc_inner::<ThreadHeap>(ptr.cast(), size).cast() },
    }
}

/// `PyObject_Free`: see [`malloc`].
///
/// # Safety
/// As for [`realloc`].
#[inline(always)]
pub(crate) unsafe fn free(ptr: *mut c_void) {
    if let Some(obj) = obj_domain() {
        let f = obj.free.load(Ordering::Relaxed);
        if f == ctx::free::<Interpreter> as *const () as usize {
            // SAFETY: per the caller, a block of the OBJ domain's allocator, which is ours:
            // one of our pools', or one `api` hands on to the allocator we replaced; the
            // caller of `PyObject_Free` in CPython holds the GIL.
            return unsafe { api::free_inline::<Interpreter>(ptr.cast()) };
        }
        // SAFETY: the OBJ domain's free, with its ctx and the caller's block.
        return unsafe { transmute::<usize, FreeFn>(f)(obj.ctx.load(Ordering::Relaxed), ptr) };
    }
    // SAFETY: `FORWARD_FREE` holds the interpreter's PyObject_Free, of this type.
    match unsafe { forward::<unsafe extern "C" fn(*mut c_void)>(&FORWARD_FREE) } {
        // SAFETY: the interpreter's PyObject_Free, with the caller's contract.
        Some(f) => unsafe { f(ptr) },
        // SAFETY: forwarded caller contract.
        None => unsafe { free_outside_cpython(ptr) },
    }
}

/// `PyObject_Free` outside CPython: the thread's heap's free path, out of line. Inlined
/// beside the interpreter's copy, the two copies' `ret` was shared and the interpreter's
/// reached it through a jump (docs/decisions.md#pool-fields-the-statistics-read-are-relaxed-atomics).
///
/// # Safety
/// As for [`free`].
#[inline(never)]
unsafe fn free_outside_cpython(ptr: *mut c_void) {
    // SAFETY: forwarded caller contract; the thread's own heap has no contract.
    unsafe { api::free_inline::<ThreadHeap>(ptr.cast()) }
}

/// A byte whose address is the `ctx` of the allocator we install in the OBJ domain: a
/// value no struct in the interpreter's data holds before we install ours.
static OBJ_CTX_BYTE: u8 = 0;

/// The `ctx` we install in the OBJ domain (our functions ignore it).
pub fn obj_ctx() -> *mut c_void {
    &OBJ_CTX_BYTE as *const u8 as *mut c_void
}

/// The interpreter's live OBJ-domain allocator, as the atomics that its words are read
/// through (CPython writes them without synchronisation, and reads them so too).
#[repr(C)]
pub struct Live {
    pub ctx: AtomicPtr<c_void>,
    pub malloc: AtomicUsize,
    pub calloc: AtomicUsize,
    pub realloc: AtomicUsize,
    pub free: AtomicUsize,
}

const _: () = assert!(core::mem::size_of::<Live>() == core::mem::size_of::<AllocatorEx>());

/// See the module's invariant.
static OBJ_DOMAIN: AtomicPtr<Live> = AtomicPtr::new(ptr::null_mut());

/// The interpreter's live OBJ-domain allocator, once [`locate`] found it.
#[inline(always)]
pub(crate) fn obj_domain() -> Option<&'static Live> {
    let p = OBJ_DOMAIN.load(Ordering::Relaxed);
    // SAFETY: per the invariant, non-null means the interpreter's struct, which lives for
    // good; its words are read as atomics.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Bytes searched on each side of an anchor symbol. In the pyenv builds of 3.8–3.11,
/// `_PyObject` lies 0x238 bytes after `_Py_tracemalloc_config`; from 3.12 the struct is
/// within the first kilobytes of `_PyRuntime`.
const WINDOW: usize = 16 << 10;

/// Where [`locate`] looks: the address ranges around the anchor symbols that exist in this
/// process. Computed before the install lock is taken: `dlsym` and `dl_iterate_phdr` take
/// the loader's lock, which `dlopen` holds while it runs constructors (that may install),
/// so taking it under the install lock could deadlock.
pub fn search_windows() -> [Option<(usize, usize)>; 2] {
    [window(c"_PyRuntime"), window(c"_Py_tracemalloc_config")]
}

/// Finds the interpreter's OBJ-domain struct after `installed` (whose `ctx` is
/// [`obj_ctx`]) was set in the OBJ domain, and publishes it if exactly one struct in
/// `windows` ([`search_windows`]) holds those five words. Idempotent once found.
pub fn locate(installed: &AllocatorEx, windows: &[Option<(usize, usize)>]) {
    if !OBJ_DOMAIN.load(Ordering::Acquire).is_null() || installed.ctx != obj_ctx() {
        return;
    }
    let want = [
        installed.ctx as usize,
        installed.malloc as usize,
        installed.calloc as usize,
        installed.realloc as usize,
        installed.free as usize,
    ];
    let mut found: Option<usize> = None;
    for &(lo, hi) in windows.iter().flatten() {
        let mut w = lo;
        while w + want.len() * 8 <= hi {
            // SAFETY: `window` keeps [lo, hi) inside a loaded segment of the object that
            // defines the anchor, looked up just before (the install runs with the library
            // loaded); the words are read as atomics (the interpreter may write them
            // meanwhile, as it may write any of its data).
            let word = |i: usize| unsafe {
                (*((w + 8 * i) as *const AtomicUsize)).load(Ordering::Relaxed)
            };
            if (0..want.len()).all(|i| word(i) == want[i]) {
                match found {
                    None => found = Some(w),
                    Some(f) if f == w => {} // the windows overlap
                    Some(_) => return,      // two candidates: trust neither
                }
            }
            w += 8;
        }
    }
    if let Some(f) = found {
        OBJ_DOMAIN.store(f as *mut Live, Ordering::Release);
    }
}

/// The 8-aligned range within [`WINDOW`] of the data symbol `name` that lies inside the
/// loaded segment holding it; `None` if there is no such symbol.
fn window(name: &CStr) -> Option<(usize, usize)> {
    // SAFETY: dlsym accepts RTLD_DEFAULT and a NUL-terminated name.
    let anchor = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
    if anchor == 0 {
        return None;
    }
    let (lo, hi) = segment_of(anchor)?;
    let lo = lo.max(anchor.saturating_sub(WINDOW)).next_multiple_of(8);
    let hi = hi.min(anchor + WINDOW);
    Some((lo, hi))
}

/// The bounds of the loaded segment (`PT_LOAD`, in memory) that contains `addr`.
fn segment_of(addr: usize) -> Option<(usize, usize)> {
    struct Search {
        addr: usize,
        found: Option<(usize, usize)>,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid `info` whose `dlpi_phdr` has `dlpi_phnum`
        // entries; `data` is the `Search` handed to `dl_iterate_phdr` below.
        unsafe {
            let s = &mut *data.cast::<Search>();
            let info = &*info;
            for i in 0..usize::from(info.dlpi_phnum) {
                let ph = &*info.dlpi_phdr.add(i);
                if ph.p_type != libc::PT_LOAD {
                    continue;
                }
                let lo = info.dlpi_addr as usize + ph.p_vaddr as usize;
                let hi = lo + ph.p_memsz as usize;
                if (lo..hi).contains(&s.addr) {
                    s.found = Some((lo, hi));
                    return 1;
                }
            }
            0
        }
    }
    let mut s = Search { addr, found: None };
    // SAFETY: `visit` only reads what the loader hands it and writes `s`, which outlives
    // the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut s as *mut Search).cast()) };
    s.found
}

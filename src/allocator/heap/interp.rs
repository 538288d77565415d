//! The interpreter heap: one heap for every call made under a lock its callers hold, whichever
//! thread makes it. In CPython that lock is the GIL: the OBJ and MEM domains are called with
//! it held (CPython's own pymalloc relies on that, and its debug hooks check it). So the
//! threads of a Python thread pool, which run one at a time, allocate from one heap, as
//! they do from CPython's one allocator state per interpreter: what the process holds
//! follows the work, not the number of threads that ever allocated, and the thread that
//! runs next reuses what the last one freed, still in cache. (Per-thread heaps made a pool
//! of 64 workers hold 1.8 times CPython's peak: docs/decisions.md#one-heap-per-interpreter.)
//!
//! Whoever holds the lock acts as the heap's owner, with the fast paths' plain loads and
//! stores; the lock's release and the next holder's acquire order one holder's writes
//! before the next one's reads. Threads that do not hold it (a C thread calling
//! `pymalloc_free`) free into its pools through the remote-free protocol, as into any
//! other thread's heap. Its slow paths run its decay clock like any heap's; `trim` from a
//! thread that may not hold the lock asks the next holder to do it ([`trim`]).
//!
//! One lock for all of a process's Python threads is what CPython up to 3.11 has. From 3.12
//! an interpreter may have a GIL of its own, and two threads could then use the heap at
//! once. So the heap is shared only while the process has had a single interpreter:
//! [`Interpreter::heap`] reads the runtime's count of interpreters ever created
//! (`_PyRuntime.interpreters.next_id`, found at install). A subinterpreter's threads read
//! it after it was raised (the interpreter's creation is published to them), so they use
//! their own heaps; a thread of the main interpreter that still reads the old count uses
//! the interpreter heap under the main GIL, serialised with every other such thread. From
//! then on the heap serves no new calls: its blocks are freed into it as remote frees and
//! wait there (docs/decisions.md#one-heap-per-interpreter says what that costs).

use super::registry::{attach_interpreter, tidy};
use super::{thread, Heap, Source};
use crate::allocator::sync::unmodeled::{AtomicBool, AtomicI64, AtomicPtr};
use crate::allocator::sync::Ordering;

// The interpreter heap and where the count of interpreters ever created is, in two words:
// the heap, [`Heap::empty`] until `enable` made it (a call that finds the empty heap takes
// the slow path, which serves it from the thread's own heap); the count's address, in the
// interpreter's runtime, or [`ONE`] where all threads always share one lock, or [`NEVER`]
// (not shared) until `enable`. Declared in assembly as a hidden symbol: a Rust static that
// a trait impl's code reads is compiled with default visibility, reached through the GOT,
// one more dependent load on every call (docs/decisions.md#no-got-on-the-fast-paths).
#[cfg(not(loom))]
mod words {
    use crate::allocator::sync::unmodeled::AtomicUsize;

    core::arch::global_asm!(
        ".pushsection .data.pymalloc_interpreter,\"aw\",@progbits",
        ".p2align 4",
        ".globl pymalloc_interpreter",
        ".hidden pymalloc_interpreter",
        ".type pymalloc_interpreter,@object",
        ".size pymalloc_interpreter,16",
        "pymalloc_interpreter:",
        ".quad {empty}",
        ".quad {never}",
        ".popsection",
        empty = sym crate::allocator::heap::EMPTY_HEAP,
        never = sym super::NEVER,
    );

    /// The two words: the heap and the count's address.
    #[inline(always)]
    pub(super) fn get() -> &'static [AtomicUsize; 2] {
        let p: *const [AtomicUsize; 2];
        // SAFETY: the address of the 16-byte, 16-aligned object declared above.
        unsafe {
            core::arch::asm!(
                "lea {p}, [rip + pymalloc_interpreter]",
                p = out(reg) p,
                options(nostack, nomem, preserves_flags, pure),
            );
            &*p
        }
    }
}

/// Loom models share the heap whenever it exists.
#[cfg(loom)]
mod words {
    use super::Heap;
    use crate::allocator::sync::unmodeled::AtomicUsize;

    crate::allocator::sync::global! {
        static WORDS: [AtomicUsize; 2] =
            [AtomicUsize::new(Heap::empty() as usize), AtomicUsize::new(&super::ONE as *const i64 as usize)];
    }

    pub(super) fn get() -> &'static [AtomicUsize; 2] {
        // SAFETY: loom's global lives for the execution, which outlives every use.
        unsafe { &*(&*WORDS as *const [AtomicUsize; 2]) }
    }
}

/// A count for interpreters whose threads all share one lock (CPython up to 3.11).
pub static ONE: i64 = 1;
/// A count that never lets the heap be shared.
#[cfg(not(loom))]
static NEVER: i64 = i64::MAX;

crate::allocator::sync::global! {
    /// A trim was asked for by a thread that may not hold the lock (see [`trim`]).
    static TRIM: AtomicBool = AtomicBool::new(false);
}

/// Calls that use the interpreter heap while the process has had one interpreter, and the
/// calling thread's heap after that.
///
/// Callers of the allocation functions with this source hold the lock (CPython's GIL) that
/// every call with this source holds.
pub(crate) struct Interpreter;

// SAFETY: per the type's contract, every caller holds the one lock while the count says
// that there is one; then one thread at a time acts on the interpreter heap. Otherwise the
// calling thread's own heap, which only it acts on.
unsafe impl Source for Interpreter {
    #[inline(always)]
    fn heap() -> *mut Heap {
        current()
    }
}

/// See [`Interpreter`].
#[inline(always)]
fn current() -> *mut Heap {
    let [heap, count] = words::get();
    // SAFETY: the count's word points at an `i64` that lives for good (ours, or in the
    // interpreter's runtime state, which lives as long as its library; see `enable`),
    // written by the interpreter under its own lock: read atomically, a value at most one
    // interpreter stale, which the module's text allows for.
    let n =
        unsafe { &*(count.load(Ordering::Relaxed) as *const AtomicI64) }.load(Ordering::Relaxed);
    if n <= 1 {
        return heap.load(Ordering::Relaxed) as *mut Heap;
    }
    thread::thread_heap()
}

/// Makes the interpreter heap and shares it while `*count`, the number of interpreters ever
/// created, is at most 1 ([`ONE`] for interpreters with one lock for all threads). False
/// when no metadata memory could be had; then every call keeps using its thread's heap.
///
/// # Safety
/// Before any call with the [`Interpreter`] source; `count` points at an `i64` that lives
/// as long as the library is used and that the interpreter raises before a second lock
/// can exist.
pub unsafe fn enable(count: *const i64) -> bool {
    let heap = attach_interpreter();
    if heap.is_null() {
        return false;
    }
    let [slot, count_slot] = words::get();
    count_slot.store(count as usize, Ordering::Relaxed);
    slot.store(heap as usize, Ordering::Relaxed);
    true
}

/// The interpreter heap, or null when there is none.
pub(super) fn get() -> *mut Heap {
    let heap = words::get()[0].load(Ordering::Relaxed) as *mut Heap;
    if heap == Heap::empty() {
        return core::ptr::null_mut();
    }
    heap
}

/// Gives the interpreter heap's empty pools back: now if the calling thread holds the lock
/// (as the hook [`set_lock_held`] says), else at the heap's next allocation slow path.
pub(super) fn trim() {
    let heap = get();
    if heap.is_null() {
        return;
    }
    let held = LOCK_HELD.load(Ordering::Relaxed);
    // SAFETY: null, or a `fn() -> bool` that `set_lock_held` stored.
    if !held.is_null() && current() == heap && unsafe { transmute_held(held)() } != 0 {
        // SAFETY: the calling thread holds the lock while the heap is shared, so it acts
        // as the heap's owner.
        return unsafe { tidy(heap) };
    }
    TRIM.store(true, Ordering::Relaxed);
}

/// The hook that says whether the calling thread holds the lock (CPython's
/// `PyGILState_Check`); null: not known, so `trim` defers to the next holder.
static LOCK_HELD: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Sets the hook that says whether the calling thread holds the interpreter heap's lock.
pub fn set_lock_held(held: extern "C" fn() -> core::ffi::c_int) {
    LOCK_HELD.store(held as *mut (), Ordering::Relaxed);
}

/// # Safety
/// `p` is what `set_lock_held` stored.
unsafe fn transmute_held(p: *mut ()) -> extern "C" fn() -> core::ffi::c_int {
    // SAFETY: per the caller, `p` came from a function pointer of this type.
    unsafe { core::mem::transmute::<*mut (), extern "C" fn() -> core::ffi::c_int>(p) }
}

/// On a slow path of `heap`: if it is the interpreter heap and a trim was asked for, does it.
///
/// # Safety
/// The caller acts as `heap`'s owner.
#[inline(always)]
pub(super) unsafe fn take_trim_request(heap: *mut Heap) {
    if TRIM.load(Ordering::Relaxed) && heap == get() {
        TRIM.store(false, Ordering::Relaxed);
        // SAFETY: per the caller.
        unsafe { tidy(heap) };
    }
}

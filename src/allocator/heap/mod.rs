//! Heaps: the heap structure and its invariants, where a call finds its heap (`Source`),
//! and the modules that hold the allocation and free paths and everything a thread does
//! without a lock.
//!
//! Each thread allocates from its own [`Heap`]: per size class, a list of pools it owns,
//! headed by the pool it currently carves from. A free of a block whose pool the calling
//! thread owns is a plain push on the pool's free list — no lock, no atomic read-modify-
//! write. A free from any other thread goes through
//! [`pool::remote_free`](crate::allocator::pool::remote_free). When a thread exits, its
//! heap is abandoned whole (pools, blocks left behind and all) and the next new thread
//! adopts it, so a thread's exit leaks nothing and memory does not grow with the number of
//! threads that ever lived. The threads of CPython share the interpreter heap instead
//! (`interp`).
//!
//! The rest of the heap, one job per module:
//!
//! - `alloc`: the allocation fast path and its slow paths;
//! - `free`: the free fast path, the owner's slow paths and the remote free;
//! - `cache`: the empty pools a heap keeps for reuse ("Empty pools": the budget, the
//!   low-water mark, the decay epoch, the batches to and from the arenas);
//! - `lists`: the class lists of pools (link, unlink, put a parked pool back);
//! - `registry`: every heap, the abandoned ones, thread exit, the shared heap, trim;
//! - `interp`: the interpreter heap, which every thread uses for the calls it makes under
//!   CPython's GIL;
//! - `walk`: read-only accessors for the statistics and the invariant walker;
//! - [`thread`]: the calling thread's heap pointer and state.
//!
//! Fast-path note: the functions the fast paths call out to (`alloc_fresh`, `alloc_next`,
//! `alloc_slow`, `free_slow`, `free_remote`, `fault::double_free`, and the fallback calls in
//! `api`) are `extern "C"`, which makes them non-unwinding: calls to them need no landing
//! pad, so the fast paths end in plain tail jumps and need no stack frame
//! (docs/decisions.md#frameless-fast-paths).

use crate::allocator::geometry::NUM_CLASSES;
use crate::allocator::pool::{Owner, Pool};
use crate::allocator::sync::{unmodeled, Ordering};
use cache::{MIN_BUDGET, POOL_BATCH};
use core::ptr;

mod alloc;
mod cache;
mod free;
pub(crate) mod interp;
mod lists;
mod registry;
pub mod thread;
mod walk;

pub(crate) use alloc::alloc;
pub(crate) use free::free;
#[cfg(loom)]
pub use registry::exit_thread;
pub use registry::{alloc_shared, trim};
// For the fork handlers.
#[cfg(not(loom))]
pub(crate) use registry::{forget_vanished_threads, REGISTRY, SHARED};
#[cfg(not(loom))]
pub use walk::layout;
pub use walk::{
    cache_of, delayed_of, each_heap_role, for_each_heap, in_forked_child, kept_of, large_in_heaps,
    lists_of, HeapRole,
};

/// A thread's heap.
///
/// Invariants:
/// - `lists[c]` heads a doubly linked list (through `Pool::next`/`prev`) of the pools this
///   heap owns for class `c` that are `linked`; the empty list is [`empty_pool`], never
///   null, so the fast path needs no null test. Owned pools that are not on the list are
///   full and have `NOTIFY` set or a block of theirs on `delayed`; pools on the list may
///   have `NOTIFY` set too (it is sticky, see [`pool::NOTIFY`](crate::allocator::pool::NOTIFY)).
/// - `owner.delayed` holds blocks freed by other threads into this heap's pools that had
///   `NOTIFY` set (full ones, or linked ones whose bit stayed set); each is still counted
///   in its pool's `used` ([`pool::Owner`](crate::allocator::pool::Owner)). `owner` is the first field, so a heap's
///   address is its owner's (the pools' `heap` field).
/// - Only the owning thread (or, for an abandoned heap, whoever holds the registry lock)
///   touches anything but `delayed`, `large` (read by the statistics) and the registry
///   links `next_all`/`next_abandoned` (registry lock).
/// - `tails[c]` is the last pool of `lists[c]`, null when the list is empty.
/// - `slow_events` counts the owner's slow-path calls (wrapping), for the decay heartbeat.
/// - `large` is, as a wrapping two's-complement count, the fallback blocks this heap's
///   threads had served for us minus the foreign pointers they freed (see `count_large`);
///   only the owner writes it, with a plain load and store.
/// - `cache[c]` heads a queue (through `Pool::next`, its last pool `cache_tail[c]`, null
///   when empty) of empty pools of class `c` this heap owns, each `cached`, not `linked`,
///   with `used == 0` and a null `heap` (see [`Pool::heap`]); `cache_classes` has bit `c` set
///   exactly when it is non-empty; `cached` counts them all, `cached <= budget` unless the
///   decay is 0 (then the cache is empty), and `low_water <= cached`.
/// - `releasing[..nreleasing]` are pools on their way back to the arenas: empty, owned by
///   this heap still, `cached` too but on no queue; `nreleasing < POOL_BATCH` between calls.
#[repr(C)]
pub struct Heap {
    owner: Owner,
    lists: [*mut Pool; NUM_CLASSES],
    tails: [*mut Pool; NUM_CLASSES],
    slow_events: u32,
    large: unmodeled::AtomicUsize,
    /// Empty pools kept for reuse, per class (see "Empty pools" in `cache.rs`).
    cache: [*mut Pool; NUM_CLASSES],
    cache_tail: [*mut Pool; NUM_CLASSES],
    cache_classes: u32,
    /// The pools on the cache (an atomic that only the owner writes, with a load and a
    /// store: the statistics read it from other threads).
    cached: unmodeled::AtomicU32,
    /// Most pools the cache may hold.
    budget: u32,
    /// Fewest pools cached since the epoch began: those stayed unused all along.
    low_water: u32,
    /// Pools given back beyond the budget, not yet wanted again.
    overflow: u32,
    /// When this heap's current decay epoch began (`os::now_ms`).
    epoch_ms: u64,
    releasing: [*mut Pool; POOL_BATCH],
    nreleasing: u32,
    /// Next heap in the registry's list of all heaps (registry lock).
    next_all: *mut Heap,
    /// Next heap in the registry's list of abandoned heaps (registry lock).
    next_abandoned: *mut Heap,
}

/// The home of the two sentinels, the empty pool and the empty heap: statics that hold raw
/// pointers and are never written (every list of the empty heap is the empty pool, whose
/// `free` is null and `next` null, so the paths that would write either divert to the
/// slow path first).
#[repr(transparent)]
pub struct Sentinel<T>(T);
// SAFETY: never written after its constant initialisation (see the type), so shared reads
// from any thread are sound.
unsafe impl Sync for Sentinel<Pool> {}
// SAFETY: as above.
unsafe impl Sync for Sentinel<Heap> {}
// SAFETY: as above (loom's lazy statics want `Send`).
unsafe impl Send for Sentinel<Pool> {}
// SAFETY: as above.
unsafe impl Send for Sentinel<Heap> {}

crate::allocator::sync::global! {
    static EMPTY_POOL: Sentinel<Pool> = Sentinel(Pool::empty());
}

crate::allocator::sync::const_unless_loom! {
    /// The pool that heads every empty class list.
    #[inline(always)]
    pub fn empty_pool() -> *mut Pool {
        &EMPTY_POOL.0 as *const Pool as *mut Pool
    }
}

crate::allocator::sync::const_unless_loom! {
    fn blank_heap() -> Heap {
        Heap {
            owner: Owner::empty(),
            lists: [empty_pool(); NUM_CLASSES],
            tails: [ptr::null_mut(); NUM_CLASSES],
            slow_events: 0,
            large: unmodeled::AtomicUsize::new(0),
            cache: [ptr::null_mut(); NUM_CLASSES],
            cache_tail: [ptr::null_mut(); NUM_CLASSES],
            cache_classes: 0,
            cached: unmodeled::AtomicU32::new(0),
            budget: MIN_BUDGET,
            low_water: 0,
            overflow: 0,
            epoch_ms: 0,
            releasing: [ptr::null_mut(); POOL_BATCH],
            nreleasing: 0,
            next_all: ptr::null_mut(),
            next_abandoned: ptr::null_mut(),
        }
    }
}

/// The empty heap ([`Heap::empty`]), a static that the slots declared in assembly
/// ([`thread`], `interp`) name as their initial value.
#[cfg(not(loom))]
static EMPTY_HEAP: Sentinel<Heap> = Sentinel(blank_heap());
#[cfg(loom)]
loom::lazy_static! {
    static ref EMPTY_HEAP: Sentinel<Heap> = Sentinel(blank_heap());
}

impl Heap {
    crate::allocator::sync::const_unless_loom! {
        /// The heap of threads that have none: owns no pool, and every list of it is empty.
        #[inline(always)]
        pub fn empty() -> *mut Heap {
            &EMPTY_HEAP.0 as *const Heap as *mut Heap
        }
    }
}

/// Where the slow paths send every allocation and every free of a pool block while it is
/// set: debug mode (`front::debug`) sets it once, before the first allocation, and
/// then no thread gets a heap, so every call reaches the slow paths. Through this pointer
/// the heap calls debug mode without naming a layer above its own.
pub struct Divert {
    /// Allocates `n` bytes, `1 <= n <= 512`; NULL when memory is exhausted.
    pub malloc: fn(usize) -> *mut u8,
    /// Frees `p`, a block of one of our pools handed out through `malloc`.
    pub free: unsafe fn(*mut u8),
}

static DIVERT: unmodeled::AtomicPtr<Divert> = unmodeled::AtomicPtr::new(ptr::null_mut());

/// Sends every later allocation's and free's slow path to `to` (see [`Divert`]). Only
/// before the first allocation.
pub fn divert(to: &'static Divert) {
    DIVERT.store(to as *const Divert as *mut Divert, Ordering::Release);
}

/// The diversion, if one is set.
#[inline(always)]
fn diverted() -> Option<&'static Divert> {
    // SAFETY: null, or the `&'static Divert` that `divert` stored.
    unsafe { DIVERT.load(Ordering::Acquire).as_ref() }
}

/// `pymalloc_trim`: gives the empty pools that the calling thread may take (its own heap's,
/// the shared heap's and the abandoned heaps', see [`trim`]) to the arenas, and every free
/// pool and empty arena to the OS.
pub fn trim_all() {
    trim();
    crate::allocator::arena::trim();
}

/// The owner part of `heap`, as the pools it owns name it.
#[inline(always)]
pub fn owner(heap: *mut Heap) -> *mut Owner {
    heap.cast()
}

/// Where a call finds the heap it acts as the owner of: the calling thread's own
/// ([`ThreadHeap`]), or the interpreter heap for calls made under CPython's GIL
/// ([`interp::Interpreter`]).
///
/// # Safety
/// While callers meet the implementation's contract, at most one thread at a time acts on
/// the heap [`Source::heap`] returns (other than through the remote-free protocol), and a
/// thread that takes over from another is ordered after it by synchronisation.
pub(crate) unsafe trait Source {
    /// The heap the calling thread acts as the owner of now ([`Heap::empty`]: none yet).
    fn heap() -> *mut Heap;
}

/// The calling thread's own heap, in its thread slot: no contract.
pub(crate) struct ThreadHeap;

// SAFETY: a thread slot is read and written by its thread only, and a heap is in one
// thread's slot at a time (the registry hands heaps out under its lock).
unsafe impl Source for ThreadHeap {
    #[inline(always)]
    fn heap() -> *mut Heap {
        thread::thread_heap()
    }
}

/// The class of `pool` as an index the compiler knows to be below [`NUM_CLASSES`] (a class
/// always is; the modulo is an `and`): without it, the bounds checks of the class tables
/// bring panic calls, and with them stack frames, into the transition paths.
///
/// # Safety
/// `pool` is a pool header we may read.
#[inline(always)]
unsafe fn class_index(pool: *mut Pool) -> usize {
    // SAFETY: per the caller.
    unsafe { (*pool).class() as usize % NUM_CLASSES }
}

/// Counts `p`, a block the fallback just handed out for us (NULL: none), in the statistics'
/// `large_in_use`, and returns it: in `S`'s heap, with a plain load and store
/// (docs/decisions.md#large-blocks-counted-per-heap); callers without a heap count in
/// [`crate::allocator::fallback`]'s global counter.
///
/// # Safety
/// The caller meets `S`'s contract.
#[inline(always)]
pub(crate) unsafe fn count_large<S: Source>(p: *mut u8) -> *mut u8 {
    // SAFETY: per `S`'s contract the calling thread acts as the owner of `S::heap()`.
    unsafe { count_large_in(S::heap(), p) }
}

/// A pointer that is not ours was freed: one block fewer in `large_in_use` (see
/// [`count_large`]).
///
/// # Safety
/// The caller meets `S`'s contract.
#[inline(always)]
pub(crate) unsafe fn uncount_large<S: Source>() {
    // SAFETY: as in `count_large`.
    unsafe { add_large(S::heap(), -1) };
}

/// [`count_large`] in `heap`.
///
/// # Safety
/// The caller acts as `heap`'s owner, or `heap` is the empty heap.
unsafe fn count_large_in(heap: *mut Heap, p: *mut u8) -> *mut u8 {
    if !p.is_null() {
        crate::allocator::fallback::mark_served();
        // SAFETY: per the caller.
        unsafe { add_large(heap, 1) };
    }
    p
}

/// Adds `delta` to `heap`'s count of large blocks, or to the global one for the empty heap.
///
/// # Safety
/// The caller acts as `heap`'s owner, or `heap` is the empty heap.
unsafe fn add_large(heap: *mut Heap, delta: isize) {
    if heap == Heap::empty() {
        return crate::allocator::fallback::count_global(delta);
    }
    // SAFETY: per the caller we act as the heap's owner, so we alone write `large`; heaps
    // are never freed.
    let large = unsafe { &(*heap).large };
    large.store(
        large.load(Ordering::Relaxed).wrapping_add(delta as usize),
        Ordering::Relaxed,
    );
}

//! Per-thread heaps: the heap structure, the allocation and free fast paths and their slow
//! paths, and everything a thread does without a lock.
//!
//! Each thread allocates from its own [`Heap`]: per size class, a list of pools it owns,
//! headed by the pool it currently carves from. A free of a block whose pool the calling
//! thread owns is a plain push on the pool's free list — no lock, no atomic read-modify-
//! write. A free from any other thread goes through [`pool::remote_free`]. When a thread
//! exits, its heap is abandoned whole (pools, blocks left behind and all) and the next new
//! thread adopts it, so a thread's exit leaks nothing and memory does not grow with the
//! number of threads that ever lived.
//!
//! The rest of the heap, one job per module:
//!
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

use crate::allocator::geometry::{blocks_per_pool, class_of, class_size, NUM_CLASSES};
use crate::allocator::pool::{self, pool_of, Block, Owner, Pool};
use crate::allocator::sync::{unmodeled, Ordering};
use cache::{cache_pop, fetch, heartbeat, retire, HEARTBEAT_EVERY, MIN_BUDGET, POOL_BATCH};
use core::ptr;
use lists::{push_front, relink, unlink};
use registry::attach;
use thread::ThreadState;

mod cache;
pub(crate) mod interp;
mod lists;
mod registry;
pub mod thread;
mod walk;

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
///   have `NOTIFY` set too (it is sticky, see [`pool::NOTIFY`]).
/// - `owner.delayed` holds blocks freed by other threads into this heap's pools that had
///   `NOTIFY` set (full ones, or linked ones whose bit stayed set); each is still counted
///   in its pool's `used` ([`pool::Owner`]). `owner` is the first field, so a heap's
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

/// Public only so that the thread slot ([`thread`]) can name it as its initial value.
#[doc(hidden)]
#[cfg(not(loom))]
pub static EMPTY_HEAP: Sentinel<Heap> = Sentinel(blank_heap());
#[cfg(loom)]
loom::lazy_static! {
    static ref EMPTY_HEAP: Sentinel<Heap> = Sentinel(blank_heap());
}

/// The heap of threads that have none: owns no pool, and every list of it is empty.
#[cfg(not(loom))]
pub const EMPTY_HEAP_PTR: *mut Heap = &EMPTY_HEAP.0 as *const Heap as *mut Heap;

impl Heap {
    /// See [`EMPTY_HEAP_PTR`].
    #[cfg(not(loom))]
    pub const EMPTY: *mut Heap = EMPTY_HEAP_PTR;

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

/// Allocates a block for a request of `n` bytes, `1 <= n <= 512`, from `S`'s heap.
/// When no arena can be mapped the block comes from the fallback allocator instead; NULL
/// only if that fails too.
///
/// # Safety
/// The caller meets `S`'s contract (none for [`ThreadHeap`]).
#[inline(always)]
pub(crate) unsafe fn alloc<S: Source>(n: usize) -> *mut u8 {
    // SAFETY: per `S`'s contract the calling thread acts as the owner of `S::heap()` (or it
    // is the empty heap, which owns nothing).
    unsafe { alloc_from(S::heap(), n) }
}

/// Pops a block for `n` bytes from `heap`, or takes the slow path (which gets `n`, not just
/// its class, because debug mode records the requested size).
///
/// # Safety
/// The caller acts as `heap`'s owner, or `heap` is the empty heap; `1 <= n <= 512`.
#[inline(always)]
unsafe fn alloc_from(heap: *mut Heap, n: usize) -> *mut u8 {
    // SAFETY: `lists[class]` is always a pool whose header is readable; a non-null `free`
    // means the pool is one `heap` owns (the empty pool's `free` is always null).
    unsafe {
        let pool = (*heap).lists[class_of(n)];
        let block = (*pool).free;
        if block.is_null() {
            return alloc_fresh(n, heap, pool);
        }
        // No prefetch of `next` here: docs/decisions.md#no-prefetch-on-the-malloc-fast-path.
        (*pool).free = (*block).next;
        (*pool).set_used((*pool).used() + 1);
        block.cast()
    }
}

/// The free list of the head pool of `n`'s class is empty: hand out its next never-used
/// block, or take the slow path. Not `#[cold]`: a fresh pool serves all its blocks once
/// from here. (Its own function so that the fast path stays frameless and this one needs
/// no registers saved.)
///
/// # Safety
/// As for [`alloc_from`]; `pool` heads `heap`'s list for `n`'s class.
#[inline(never)]
unsafe extern "C" fn alloc_fresh(n: usize, heap: *mut Heap, pool: *mut Pool) -> *mut u8 {
    // SAFETY: per the caller we own `pool` (or it is the empty pool, never carved).
    let block = unsafe { pool::carve(pool, class_size(class_of(n))) };
    if block.is_null() {
        // SAFETY: forwarded caller contract; `pool` has no free and no uncarved block.
        return unsafe { alloc_next(n, heap, pool) };
    }
    block
}

/// The head pool of `n`'s class is used up: park it and pop a block of the next pool on
/// the list. In random-lifetime churn this is one allocation in two, so the common case is
/// kept here, small and frameless (docs/decisions.md#frameless-fast-paths), and everything
/// else (remote or delayed frees to take back, `NOTIFY` not yet set, no next pool or an
/// empty one, the decay's heartbeat due, the empty heap) goes to [`alloc_slow`].
///
/// # Safety
/// As for [`alloc_from`]; `pool` heads `heap`'s list for `n`'s class and has no block on
/// its free list and none uncarved.
#[inline(never)]
unsafe extern "C" fn alloc_next(n: usize, heap: *mut Heap, pool: *mut Pool) -> *mut u8 {
    // SAFETY: per the caller we act as `heap`'s owner, so its lists and the pools on them
    // are ours; `pool` is the head of its class list (or the empty pool).
    unsafe {
        let next = (*pool).next;
        if next.is_null() // the last pool of the class (or the empty pool)
            || (*pool).remote.load(Ordering::Relaxed) != pool::NOTIFY
            || !(*heap).owner.delayed.load(Ordering::Relaxed).is_null()
            || (*heap).slow_events.wrapping_add(1).is_multiple_of(HEARTBEAT_EVERY)
        {
            return alloc_slow(n, heap);
        }
        let block = (*next).free;
        if block.is_null() {
            return alloc_slow(n, heap);
        }
        (*heap).slow_events += 1;
        // Park `pool`: off the list (it is the head and not the tail), full. `NOTIFY` is
        // set, so the next remote free of one of its blocks tells us.
        debug_assert!((*pool).linked() && (*pool).free.is_null() && (*pool).fresh == 0);
        (*heap).lists[class_index(pool)] = next;
        (*next).prev = ptr::null_mut();
        (*pool).set_linked(false);
        (*pool).next = ptr::null_mut();
        (*pool).set_used(pool::PARKED);
        // As `refill` does: the pool after `next` serves next; start loading its header.
        pool::prefetch((*next).next);
        // `block` is cold: when it is the pool's only free block (no uncarved ones, all
        // others in use) its link is null and is not read
        // (docs/decisions.md#a-new-heads-only-free-block-is-not-read).
        let only =
            (*next).fresh == 0 && (*next).used() + 1 == blocks_per_pool(class_index(next)) as u32;
        (*next).free = if only { ptr::null_mut() } else { (*block).next };
        (*next).set_used((*next).used() + 1);
        block.cast()
    }
}

/// Frees `p`, a block of one of our pools, in the arena whose header table is `table`: into
/// `S`'s heap if it owns the pool, else as a remote free.
///
/// # Safety
/// `p` lies in our arena whose header table ([`crate::allocator::geometry::header_table`]) is `table`
/// and is a block handed out and not yet freed; the caller meets `S`'s contract.
#[inline(always)]
pub(crate) unsafe fn free<S: Source>(p: *mut u8, table: usize) {
    let pool = pool::pool_in(table, p as usize);
    let heap = S::heap();
    // SAFETY: per the caller, `pool` is in use while `p` is, so its header is readable;
    // if `S`'s heap owns it, the calling thread acts as its owner (`S`'s contract).
    unsafe {
        if (*pool).heap_unraced() != owner(heap) {
            return free_remote(p.cast(), pool);
        }
        free_local(heap, pool, p.cast());
    }
}

/// A free from a thread that does not own the block's pool, or any free in debug mode
/// (where no thread owns a pool).
///
/// # Safety
/// As for [`free`].
#[inline(never)]
unsafe extern "C" fn free_remote(block: *mut Block, pool: *mut Pool) {
    if let Some(to) = diverted() {
        // SAFETY: forwarded caller contract.
        return unsafe { (to.free)(block.cast()) };
    }
    // SAFETY: per the caller the header is mapped. A pool given back to its arena has a
    // null `heap`, so a second free of a block whose pool emptied and went back in between
    // (and was not handed out again) is seen here, instead of being pushed on the delayed
    // list of no heap; other double frees are caught only as `remote_free`'s cheap check
    // catches them.
    unsafe {
        if (*pool).heap().is_null() {
            crate::allocator::fault::free_in_free_pool(block.cast());
        }
        pool::remote_free(block, pool)
    }
}

/// Pushes `block` back on its pool's free list: the owner's side of every free.
///
/// # Safety
/// The caller acts as `heap`'s owner, `heap` owns `pool`, and `block` is a used block of it.
#[inline(always)]
unsafe fn free_local(heap: *mut Heap, pool: *mut Pool, block: *mut Block) {
    // SAFETY: per the caller.
    unsafe {
        let next = (*pool).free;
        // The cheap double-free check: freeing the block that was freed last.
        if block == next {
            return crate::allocator::fault::double_free(block.cast());
        }
        (*block).next = next;
        (*pool).free = block;
        // One test (see `pool::PARKED`) for both slow cases: the pool became empty, or it
        // is parked (off its class list because it ran out) and takes this block back onto
        // the list. Not "the free list was empty": with lazy carving a linked pool often
        // has an empty list (its blocks come from `fresh`), and a free into it needs
        // nothing more.
        (*pool).release_one(|| free_slow(heap, pool));
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

/// Owner: a pool that was full has a free block again, or a pool has become empty.
/// The common case, a parked pool taking a block back (one free in two in random-lifetime
/// churn), is handled here without a stack frame; the rest in [`free_slow_rest`].
///
/// # Safety
/// The caller acts as `heap`'s owner (its thread, or the holder of the lock that guards an
/// abandoned or the shared heap), and `heap` owns `pool`.
#[inline(never)]
unsafe extern "C" fn free_slow(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: per the caller, we own both.
    unsafe {
        if !(*pool).linked()
            && !(*heap)
                .slow_events
                .wrapping_add(1)
                .is_multiple_of(HEARTBEAT_EVERY)
        {
            (*heap).slow_events += 1;
            return relink(heap, pool);
        }
        free_slow_rest(heap, pool)
    }
}

/// [`free_slow`]'s other cases: the pool has become empty (it goes back to its arena
/// unless it is the last of its class), or the decay's heartbeat is due.
///
/// # Safety
/// As for [`free_slow`].
#[cold]
unsafe extern "C" fn free_slow_rest(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: per the caller, we own both; list links are ours to change.
    unsafe {
        heartbeat(heap);
        if !(*pool).linked() {
            relink(heap, pool);
        }
        if (*pool).used() == 0 {
            let class = class_index(pool);
            // Keep the last pool of a class: a hot malloc/free cycle must not go to the
            // arena lock on every turn.
            if (*heap).lists[class] == pool && (*pool).next.is_null() {
                return;
            }
            unlink(heap, pool);
            retire(heap, pool);
        }
    }
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

/// The slow path of [`alloc_from`]: the head pool of the class has no free block, or the
/// thread has no heap yet (always the case in debug mode, see [`crate::front::debug`]).
///
/// # Safety
/// As for [`alloc_from`].
#[cold]
#[inline(never)]
unsafe extern "C" fn alloc_slow(n: usize, heap: *mut Heap) -> *mut u8 {
    let class = class_of(n);
    if heap == Heap::empty() {
        if let Some(to) = diverted() {
            return (to.malloc)(n);
        }
        if thread::thread_state() == ThreadState::Exited || !attach() {
            return alloc_shared(n);
        }
        // SAFETY: the thread's own heap has no contract.
        return unsafe { alloc::<ThreadHeap>(n) };
    }
    // A trim asked for by signal (`trim_signal`), done by a thread on its own heap or on
    // the interpreter heap (under the GIL), which holds no lock of ours here (the shared
    // heap's holds the shared heap's lock).
    if crate::allocator::trim_signal::take_if(|| {
        heap == thread::thread_heap() || heap == interp::get()
    }) {
        trim_all();
    }
    // SAFETY: per the caller we act as `heap`'s owner.
    let p = unsafe { refill(heap, n) };
    if p.is_null() {
        // No arena to be had: serve the request as CPython does, from the fallback.
        let fb = crate::allocator::fallback::get();
        // SAFETY: the fallback accepts any size; the block is counted in `heap`, which we
        // act as the owner of.
        return unsafe { count_large_in(heap, (fb.malloc)(fb.ctx, class_size(class)).cast()) };
    }
    p
}

/// Finds a block for `n` bytes in `heap`'s pools, taking back delayed and remote frees, or
/// in a fresh pool from an arena.
///
/// # Safety
/// The caller owns `heap`.
unsafe fn refill(heap: *mut Heap, n: usize) -> *mut u8 {
    let class = class_of(n);
    // SAFETY: the caller owns `heap` and so every pool on its lists.
    unsafe {
        heartbeat(heap);
        interp::take_trim_request(heap);
        drain_delayed(heap);
        loop {
            let pool = (*heap).lists[class];
            if pool == empty_pool() {
                break;
            }
            if (*pool).free.is_null() && (*pool).fresh == 0 && pool::collect_remote(pool) == 0 {
                if !pool::try_mark_full(pool) {
                    continue; // a remote free just arrived: collect it
                }
                unlink(heap, pool);
                debug_assert!((*pool).used() == blocks_per_pool(class) as u32);
                (*pool).set_used(pool::PARKED);
                continue;
            }
            // The next pool of the list serves once this one runs out: start loading its
            // header now, so that slow path does not stall on it.
            pool::prefetch((*pool).next);
            return alloc_from(heap, n);
        }
        let mut pool = cache_pop(heap, class);
        if pool.is_null() {
            pool = fetch(heap, class);
            if pool.is_null() {
                return ptr::null_mut();
            }
        }
        push_front(heap, pool);
        alloc_from(heap, n)
    }
}

/// Takes back every block other threads put on this heap's delayed list.
///
/// # Safety
/// The caller owns `heap`.
unsafe fn drain_delayed(heap: *mut Heap) {
    // SAFETY: the swap hands us the list; each block is a live block of one of our pools,
    // published by the freer's release exchange.
    unsafe {
        if (*heap).owner.delayed.load(Ordering::Relaxed).is_null() {
            return;
        }
        let mut block = (*heap)
            .owner
            .delayed
            .swap(ptr::null_mut(), Ordering::Acquire);
        while !block.is_null() {
            let next = (*block).next;
            free_local(heap, pool_of(block), block);
            block = next;
        }
    }
}

//! Per-thread heaps: the allocation and free fast paths, and everything a thread does
//! without a lock.
//!
//! Each thread allocates from its own [`Heap`]: per size class, a list of pools it owns,
//! headed by the pool it currently carves from. A free of a block whose pool the calling
//! thread owns is a plain push on the pool's free list — no lock, no atomic read-modify-
//! write. A free from any other thread goes through [`pool::remote_free`]. When a thread
//! exits, its heap is abandoned whole (pools, blocks left behind and all) and the next new
//! thread adopts it, so a thread's exit leaks nothing and memory does not grow with the
//! number of threads that ever lived.
//!
//! ## Empty pools
//!
//! A pool that becomes empty (and is not the last of its class) leaves its class list. The
//! heap keeps it, on its *cache* for that class, a queue: a steady oscillation (build a
//! structure, drop it, build the next) takes its pools back with no lock and no system
//! call, in the order they emptied, and carves each afresh from its first block, so that
//! consecutive allocations lie at rising addresses, as they did the first time. (Handing
//! out the pool's old free list instead, as CPython does, reads every block on the way
//! out and hands them out backwards: 3.5 times the allocator's samples and 1.7 times the
//! collector's in the 10,000-pair Python loop; see `docs/decisions.md`.)
//! How many the cache may hold (its *budget*) is what recent history justifies:
//!
//! - it starts at [`MIN_BUDGET`] pools;
//! - an emptied pool beyond the budget goes back to the arenas (in batches of
//!   [`POOL_BATCH`], under one hold of the arena lock), which give its page back to the OS
//!   at once; the heap counts it as *overflow*;
//! - fetching pools from the arenas while there is overflow is the evidence that they were
//!   wanted after all: each pool fetched then moves one from the overflow to the budget, so
//!   an oscillation is kept whole from its second cycle on;
//! - a clock ages what is in between: at the end of every decay epoch (`PYMALLOC_DECAY_MS`,
//!   read on one slow path in 64), the pools that stayed in the cache through the whole
//!   epoch (its low-water mark) go back, the budget shrinks by as many, and the overflow
//!   halves.
//!
//! So a one-off burst is given back while it is freed, whether or not the program
//! allocates again, and an oscillation keeps its pools. What it gets wrong: an oscillation
//! that stops and leaves the process idle keeps its last cycle's pools (up to the budget)
//! until the thread allocates again, exits, or calls `pymalloc_trim`; and a heap whose
//! thread never comes back to the allocator keeps its cache (there is no thread to age it).
//! The measurements behind the numbers are in `docs/decisions.md`.
//!
//! Fast-path note: the functions the fast paths call out to (`alloc_fresh`, `alloc_next`,
//! `alloc_slow`, `free_slow`, `free_remote`, `fault::double_free`, and the fallback calls in
//! `api`) are `extern "C"`, which makes them non-unwinding: calls to them need no landing
//! pad, so the fast paths end in plain tail jumps and need no stack frame
//! (docs/decisions.md#frameless-fast-paths).

use crate::allocator::geometry::{blocks_per_pool, class_of, class_size, NUM_CLASSES};
use crate::allocator::pool::{self, pool_of, Block, Owner, Pool};
use crate::allocator::sync::{self, unmodeled, Locked, Ordering};
use thread::ThreadState;

pub mod thread;
use crate::allocator::arena;
use core::ptr;

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
///   threads had served for us minus the foreign pointers they freed (see [`count_large`]);
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
    /// Empty pools kept for reuse, per class (see the module's "Empty pools").
    cache: [*mut Pool; NUM_CLASSES],
    cache_tail: [*mut Pool; NUM_CLASSES],
    cache_classes: u32,
    cached: u32,
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
            cached: 0,
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

/// The registry of heaps: every heap ever made (heaps are never unmapped) and the
/// abandoned ones waiting for a new thread, in [`REGISTRY`].
///
/// Invariants: `all` links every heap through `next_all`; `abandoned` and `vanished` link
/// disjoint sets of them through `next_abandoned`; `shared` is the shared heap once made
/// (null before), on neither list.
pub(crate) struct Registry {
    all: *mut Heap,
    abandoned: *mut Heap,
    /// Heaps of threads that did not survive a `fork` (see `fork`): owned by nobody, never
    /// adopted.
    vanished: *mut Heap,
    shared: *mut Heap,
}
// SAFETY: heaps are process-wide metadata, never freed and not tied to a thread; the
// registry lives in a `Locked` and is reached only under its lock.
unsafe impl Send for Registry {}

/// The shared heap (null until first needed), in [`SHARED`].
pub(crate) struct SharedHeap(*mut Heap);
// SAFETY: as for `Registry`: the heap is reached only under `SHARED`'s lock.
unsafe impl Send for SharedHeap {}

crate::allocator::sync::global! {
    /// The registry under its lock.
    pub(crate) static REGISTRY: Locked<Registry> = Locked::new(Registry {
        all: ptr::null_mut(),
        abandoned: ptr::null_mut(),
        vanished: ptr::null_mut(),
        shared: ptr::null_mut(),
    });
}

crate::allocator::sync::global! {
    /// The shared heap under its lock: it serves threads whose own heap was handed back at
    /// exit (their thread-local destructors may still allocate), threads that could get no
    /// heap, and debug mode's blocks. The holder of the lock acts as its owner. Made once,
    /// and then also recorded in the registry (`Registry::shared`) under both locks.
    pub(crate) static SHARED: Locked<SharedHeap> = Locked::new(SharedHeap(ptr::null_mut()));
}

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

/// The owner part of `heap`, as the pools it owns name it.
#[inline(always)]
pub fn owner(heap: *mut Heap) -> *mut Owner {
    heap.cast()
}

/// Allocates a block for a request of `n` bytes, `1 <= n <= 512`, for the calling thread.
/// When no arena can be mapped the block comes from the fallback allocator instead; NULL
/// only if that fails too.
#[inline(always)]
pub fn alloc(n: usize) -> *mut u8 {
    // SAFETY: the calling thread owns its heap (or has the empty heap, which owns nothing).
    unsafe { alloc_from(thread::thread_heap(), n) }
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
        (*pool).used += 1;
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
            || (*heap).slow_events.wrapping_add(1) % HEARTBEAT_EVERY == 0
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
        debug_assert!((*pool).linked && (*pool).free.is_null() && (*pool).fresh == 0);
        (*heap).lists[class_index(pool)] = next;
        (*next).prev = ptr::null_mut();
        (*pool).linked = false;
        (*pool).next = ptr::null_mut();
        (*pool).used = pool::PARKED;
        // As `refill` does: the pool after `next` serves next; start loading its header.
        pool::prefetch((*next).next);
        // `block` is cold: when it is the pool's only free block (no uncarved ones, all
        // others in use) its link is null and is not read
        // (docs/decisions.md#a-new-heads-only-free-block-is-not-read).
        let only =
            (*next).fresh == 0 && (*next).used + 1 == blocks_per_pool(class_index(next)) as u32;
        (*next).free = if only { ptr::null_mut() } else { (*block).next };
        (*next).used += 1;
        block.cast()
    }
}

/// Frees `p`, a block of one of our pools, in the arena whose header table is `table`.
///
/// # Safety
/// `p` lies in our arena whose header table ([`crate::allocator::geometry::header_table`]) is `table`
/// and is a block handed out and not yet freed.
#[inline(always)]
pub unsafe fn free(p: *mut u8, table: usize) {
    let pool = pool::pool_in(table, p as usize);
    let heap = thread::thread_heap();
    // SAFETY: per the caller, `pool` is in use while `p` is, so its header is readable;
    // if the calling thread's heap owns it, so does the calling thread.
    unsafe {
        if (*pool).heap != owner(heap) {
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
        if (*pool).heap.is_null() {
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
        (*pool).used -= 1;
        if (*pool).used == 0 {
            free_slow(heap, pool);
        }
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
    unsafe { (*pool).class as usize % NUM_CLASSES }
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
        if !(*pool).linked && (*heap).slow_events.wrapping_add(1) % HEARTBEAT_EVERY != 0 {
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
        if !(*pool).linked {
            relink(heap, pool);
        }
        if (*pool).used == 0 {
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

/// Pools fetched from the arenas in one hold of the arena lock, and given back in one: a
/// run of neighbouring pages for one class (64 KiB, mimalloc's page size).
const POOL_BATCH: usize = 16;

/// The cache's budget before any reuse was seen, in pools: one batch.
const MIN_BUDGET: u32 = POOL_BATCH as u32;

/// The most pools the cache of `heap` may hold now: none with a decay of 0.
///
/// # Safety
/// The caller acts as `heap`'s owner.
unsafe fn budget(heap: *mut Heap) -> u32 {
    if arena::decay_ms() == 0 {
        return 0;
    }
    // SAFETY: per the caller.
    unsafe { (*heap).budget }
}

/// Owner: `pool` has just become empty and is on no list: keep it for reuse if the budget
/// allows, else send it back to the arenas and count the overflow.
///
/// # Safety
/// The caller acts as `heap`'s owner; `pool` is an empty pool of `heap` on no list.
unsafe fn retire(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: per the caller.
    unsafe {
        if (*heap).cached < budget(heap) {
            return cache_push(heap, pool);
        }
        (*heap).overflow = (*heap).overflow.saturating_add(1);
        release(heap, pool);
    }
}

/// Appends the empty `pool` to `heap`'s cache for its class.
///
/// # Safety
/// As for [`retire`].
unsafe fn cache_push(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: per the caller.
    unsafe {
        let class = class_index(pool);
        (*pool).cached = true;
        (*pool).heap = ptr::null_mut(); // a free into it is a double free: caught
        (*pool).next = ptr::null_mut();
        let tail = (*heap).cache_tail[class];
        if tail.is_null() {
            (*heap).cache[class] = pool;
        } else {
            (*tail).next = pool;
        }
        (*heap).cache_tail[class] = pool;
        (*heap).cache_classes |= 1 << class;
        (*heap).cached += 1;
    }
}

/// Takes the first pool of `heap`'s cache for `class`, or of any other class's, and sets
/// it up afresh for `class` (its blocks carved again from the first; the page is not
/// touched); NULL when the cache is empty. The pool is on no list.
///
/// # Safety
/// The caller acts as `heap`'s owner; `class < NUM_CLASSES`.
unsafe fn cache_pop(heap: *mut Heap, class: usize) -> *mut Pool {
    // SAFETY: per the caller; cached pools are ours.
    unsafe {
        let h = &mut *heap;
        let from = if h.cache[class].is_null() {
            if h.cache_classes == 0 {
                return ptr::null_mut();
            }
            h.cache_classes.trailing_zeros() as usize % NUM_CLASSES
        } else {
            class
        };
        let pool = h.cache[from];
        h.cache[from] = (*pool).next;
        if h.cache[from].is_null() {
            h.cache_tail[from] = ptr::null_mut();
            h.cache_classes &= !(1 << from);
        }
        h.cached -= 1;
        h.low_water = h.low_water.min(h.cached);
        (*pool).cached = false;
        pool::init(pool, owner(heap), class);
        pool
    }
}

/// Fetches pools for `class` from the arenas, one batch at most: the first is returned
/// (NULL when no arena can be had), the others go on the cache. While there is overflow,
/// each pool fetched moves one from the overflow to the budget (see "Empty pools").
///
/// # Safety
/// The caller acts as `heap`'s owner; `class < NUM_CLASSES`.
unsafe fn fetch(heap: *mut Heap, class: usize) -> *mut Pool {
    // SAFETY: per the caller; the pools handed out are ours from here on.
    unsafe {
        let h = &mut *heap;
        let grant = h.overflow.min(POOL_BATCH as u32);
        h.overflow -= grant;
        h.budget = h.budget.saturating_add(grant);
        let room = budget(heap).saturating_sub((*heap).cached) as usize;
        let mut got = [ptr::null_mut(); POOL_BATCH];
        let n = arena::alloc_pools(&mut got[..(room + 1).min(POOL_BATCH)]);
        // In address order, as the cache hands them out.
        for &pool in got[1..n.max(1)].iter() {
            pool::init(pool, owner(heap), class);
            cache_push(heap, pool);
        }
        if n == 0 {
            return ptr::null_mut();
        }
        pool::init(got[0], owner(heap), class);
        got[0]
    }
}

/// Sends the empty `pool` back to the arenas, with the next ones, as one batch.
///
/// # Safety
/// The caller acts as `heap`'s owner; `pool` is an empty pool of `heap` on no list and not
/// cached.
unsafe fn release(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: per the caller.
    unsafe {
        (*pool).cached = true;
        (*pool).heap = ptr::null_mut(); // as in the cache
        let h = &mut *heap;
        h.releasing[h.nreleasing as usize % POOL_BATCH] = pool;
        h.nreleasing += 1;
        if h.nreleasing as usize == POOL_BATCH || arena::decay_ms() == 0 {
            flush_releasing(heap);
        }
    }
}

/// Gives the pools waiting in `heap`'s release batch to the arenas.
///
/// # Safety
/// The caller acts as `heap`'s owner.
unsafe fn flush_releasing(heap: *mut Heap) {
    // SAFETY: per the caller; the pools in the batch are empty and on no list.
    unsafe {
        let h = &mut *heap;
        let n = (h.nreleasing as usize).min(POOL_BATCH);
        if n > 0 {
            arena::release_pools(&mut h.releasing[..n]);
            h.nreleasing = 0;
        }
    }
}

/// Gives back up to `n` pools of `heap`'s cache (all of them with `u32::MAX`).
///
/// # Safety
/// The caller acts as `heap`'s owner.
unsafe fn shrink_cache(heap: *mut Heap, n: u32) {
    // SAFETY: per the caller.
    unsafe {
        for _ in 0..n.min((*heap).cached) {
            let class = (*heap).cache_classes.trailing_zeros() as usize % NUM_CLASSES;
            release(heap, cache_pop(heap, class));
        }
        flush_releasing(heap);
        (*heap).low_water = (*heap).cached;
    }
}

/// The end of a decay epoch of `heap`'s cache, if one has passed at `now` (milliseconds):
/// the pools that stayed cached through it go back and the budget shrinks by as many; the
/// overflow halves (see "Empty pools").
///
/// # Safety
/// The caller acts as `heap`'s owner.
unsafe fn age_cache(heap: *mut Heap, now: u64) {
    let d = arena::decay_ms();
    // SAFETY: per the caller.
    unsafe {
        if d == 0 {
            return shrink_cache(heap, u32::MAX); // (left over from before the setting)
        }
        if d == arena::DECAY_NEVER || now.wrapping_sub((*heap).epoch_ms) < u64::from(d) {
            return;
        }
        (*heap).epoch_ms = now;
        let idle = (*heap).low_water;
        (*heap).budget = (*heap).budget.saturating_sub(idle).max(MIN_BUDGET);
        (*heap).overflow /= 2;
        shrink_cache(heap, idle);
    }
}

/// Owner: puts a parked pool, which just took back a block, back on its class list.
///
/// # Safety
/// The caller owns `heap` and `pool`, which is parked.
#[inline(always)]
unsafe fn relink(heap: *mut Heap, pool: *mut Pool) {
    // At the back, not the front: the pools ahead are used up first, and meanwhile more
    // frees land in this one (docs/decisions.md#a-relinked-pool-goes-to-the-back-of-its-list).
    // Pools that keep receiving frees at the back also get a chance to empty and go back
    // to their arena.
    //
    // `NOTIFY` stays set: clearing it would take an atomic RMW, and leaving it only sends
    // the pool's next remote free through the delayed list.
    // SAFETY: per the caller. Parked, it was full: all its blocks but this one are in use.
    unsafe {
        debug_assert!(!(*pool).linked && (*pool).used == pool::PARKED - 1);
        (*pool).used = blocks_per_pool(class_index(pool)) as u32 - 1;
        push_back(heap, pool);
    }
}

/// Counts `p`, a block the fallback just handed out for us (NULL: none), in the statistics'
/// `large_in_use`, and returns it: in the calling thread's heap, with a plain load and
/// store (docs/decisions.md#large-blocks-counted-per-heap); threads without a heap count in
/// [`crate::allocator::fallback`]'s global counter.
#[inline(always)]
pub fn count_large(p: *mut u8) -> *mut u8 {
    if !p.is_null() {
        crate::allocator::fallback::mark_served();
        add_large(1);
    }
    p
}

/// A pointer that is not ours was freed: one block fewer in `large_in_use` (see
/// [`count_large`]).
#[inline(always)]
pub fn uncount_large() {
    add_large(-1);
}

fn add_large(delta: isize) {
    let heap = thread::thread_heap();
    if heap == Heap::empty() {
        return crate::allocator::fallback::count_global(delta);
    }
    // SAFETY: the calling thread owns its heap, so it alone writes `large`; heaps are
    // never freed.
    let large = unsafe { &(*heap).large };
    large.store(
        large.load(Ordering::Relaxed).wrapping_add(delta as usize),
        Ordering::Relaxed,
    );
}

/// The sum of every heap's `large` count (see [`count_large`]), read without stopping the
/// owners: a statistic, current to within the blocks being counted meanwhile.
pub fn large_in_heaps() -> isize {
    let mut sum = 0usize;
    for_each_heap(|h| {
        // SAFETY: heaps are never freed; the count is an atomic.
        sum = sum.wrapping_add(unsafe { (*h).large.load(Ordering::Relaxed) });
    });
    sum as isize
}

/// Slow-path calls between two reads of the decay clock.
const HEARTBEAT_EVERY: u32 = 64;

/// Ages `heap`'s cache of empty pools ([`age_cache`]) every [`HEARTBEAT_EVERY`] slow-path
/// calls of `heap`, so that the clock is read on one slow path in 64.
///
/// # Safety
/// The caller acts as `heap`'s owner.
#[inline(always)]
unsafe fn heartbeat(heap: *mut Heap) {
    // SAFETY: per the caller, the counter is ours.
    unsafe {
        (*heap).slow_events = (*heap).slow_events.wrapping_add(1);
        if (*heap).slow_events % HEARTBEAT_EVERY == 0 {
            age_cache(heap, crate::os::now_ms());
        }
    }
}

/// Links `pool` at the head of its class list.
///
/// # Safety
/// The caller owns `heap` and `pool`, and `pool` is not linked.
unsafe fn push_front(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: per the caller.
    unsafe {
        debug_assert!(!(*pool).linked, "a pool linked twice");
        let class = class_index(pool);
        let head = (*heap).lists[class];
        (*pool).prev = ptr::null_mut();
        if head == empty_pool() {
            (*pool).next = ptr::null_mut();
            (*heap).tails[class] = pool;
        } else {
            (*pool).next = head;
            (*head).prev = pool;
        }
        (*heap).lists[class] = pool;
        (*pool).linked = true;
    }
}

/// Links `pool` at the tail of its class list.
///
/// # Safety
/// As for [`push_front`].
unsafe fn push_back(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: per the caller.
    unsafe {
        let class = class_index(pool);
        let tail = (*heap).tails[class];
        if tail.is_null() {
            return push_front(heap, pool);
        }
        (*pool).next = ptr::null_mut();
        (*pool).prev = tail;
        (*tail).next = pool;
        (*heap).tails[class] = pool;
        (*pool).linked = true;
    }
}

/// Takes `pool` off its class list.
///
/// # Safety
/// The caller owns `heap` and `pool`, and `pool` is linked.
unsafe fn unlink(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: per the caller.
    unsafe {
        debug_assert!((*pool).linked, "an unlinked pool taken off its list");
        let (prev, next) = ((*pool).prev, (*pool).next);
        let class = class_index(pool);
        if prev.is_null() {
            (*heap).lists[class] = if next.is_null() { empty_pool() } else { next };
        } else {
            (*prev).next = next;
        }
        if next.is_null() {
            (*heap).tails[class] = prev;
        } else {
            (*next).prev = prev;
        }
        (*pool).linked = false;
        (*pool).next = ptr::null_mut();
        (*pool).prev = ptr::null_mut();
    }
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
        return alloc(n);
    }
    // SAFETY: per the caller we act as `heap`'s owner.
    let p = unsafe { refill(heap, n) };
    if p.is_null() {
        // No arena to be had: serve the request as CPython does, from the fallback.
        let fb = crate::allocator::fallback::get();
        // SAFETY: the fallback accepts any size.
        return count_large(unsafe { (fb.malloc)(fb.ctx, class_size(class)).cast() });
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
                debug_assert!((*pool).used == blocks_per_pool(class) as u32);
                (*pool).used = pool::PARKED;
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

/// Gives the calling thread a heap: an abandoned one if any, else a new one. False when
/// no metadata memory could be had.
fn attach() -> bool {
    // (The fork handlers are registered by `fork`'s own constructor, before any heap.)
    let heap = {
        let mut reg = REGISTRY.lock();
        if reg.abandoned.is_null() {
            let heap = crate::allocator::meta::alloc::<Heap>();
            if heap.is_null() {
                return false;
            }
            // SAFETY: fresh metadata memory, sized and aligned for a Heap.
            unsafe {
                heap.write(blank_heap());
                (*heap).next_all = reg.all;
            }
            reg.all = heap;
            heap
        } else {
            let heap = reg.abandoned;
            // SAFETY: heaps on the abandoned list are live and ours under the lock.
            reg.abandoned = unsafe { (*heap).next_abandoned };
            heap
        }
    };
    thread::set_thread_heap(heap);
    thread::set_thread_state(ThreadState::Active);
    sync::at_thread_exit(heap.cast(), on_thread_exit);
    true
}

/// pthread key destructor: the thread is exiting; hand its heap back.
unsafe extern "C" fn on_thread_exit(heap: *mut libc::c_void) {
    let heap = heap.cast::<Heap>();
    thread::set_thread_heap(Heap::empty());
    thread::set_thread_state(ThreadState::Exited);
    let mut reg = REGISTRY.lock();
    // SAFETY: the exiting thread owned `heap` until now; under the registry lock nobody
    // else can adopt it before it is on the abandoned list.
    unsafe {
        tidy(heap);
        (*heap).next_abandoned = reg.abandoned;
        reg.abandoned = heap;
    }
}

/// Loom models have no pthread key destructors: a model thread calls this as its last act,
/// standing for the destructor that hands its heap back.
#[cfg(loom)]
pub fn exit_thread() {
    let heap = thread::thread_heap();
    if heap != Heap::empty() {
        // SAFETY: the calling thread owns `heap` and is done with it.
        unsafe { on_thread_exit(heap.cast()) };
    }
}

/// Takes back delayed and remote frees and gives every empty pool back to its arena,
/// the last pool of a class and the cache included.
///
/// # Safety
/// The caller acts as `heap`'s owner.
unsafe fn tidy(heap: *mut Heap) {
    // SAFETY: per the caller.
    unsafe {
        drain_delayed(heap);
        for class in 0..NUM_CLASSES {
            let mut pool = (*heap).lists[class];
            while pool != empty_pool() && !pool.is_null() {
                let next = (*pool).next;
                pool::collect_remote(pool);
                if (*pool).used == 0 {
                    debug_assert!(
                        (*pool).linked
                            && (*pool).remote.load(Ordering::Relaxed) & !pool::NOTIFY == 0
                    );
                    unlink(heap, pool);
                    release(heap, pool);
                }
                pool = next;
            }
        }
        shrink_cache(heap, u32::MAX);
    }
}

/// Allocates `n` bytes (`1 <= n <= 512`) from the shared heap, under its lock.
pub fn alloc_shared(n: usize) -> *mut u8 {
    let mut shared = SHARED.lock();
    // SAFETY: the lock is held, so we act as the owner of the shared heap.
    unsafe {
        if shared.0.is_null() {
            let heap = crate::allocator::meta::alloc::<Heap>();
            if heap.is_null() {
                return ptr::null_mut();
            }
            heap.write(blank_heap());
            let mut reg = REGISTRY.lock();
            (*heap).next_all = reg.all;
            reg.all = heap;
            reg.shared = heap;
            shared.0 = heap;
        }
        alloc_from(shared.0, n)
    }
}

/// Returns to the arenas every empty pool of the calling thread's heap, of the shared heap
/// and of every abandoned heap (see `pymalloc_trim`).
pub fn trim() {
    let own = thread::thread_heap();
    if own != Heap::empty() {
        // SAFETY: the calling thread owns its heap.
        unsafe { tidy(own) };
    }
    {
        let shared = SHARED.lock();
        if !shared.0.is_null() {
            // SAFETY: the lock is held, so we act as the owner of the shared heap. Its
            // blocks come back as remote frees, and a pool emptied by collected remote
            // frees stays on its lists until tidied.
            unsafe { tidy(shared.0) };
        }
    }
    let reg = REGISTRY.lock();
    // SAFETY: abandoned heaps are owned by the registry lock holder.
    unsafe {
        let mut heap = reg.abandoned;
        while !heap.is_null() {
            tidy(heap);
            heap = (*heap).next_abandoned;
        }
    }
}

/// What a heap is doing now, for the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapRole {
    /// Owned by a running thread.
    Active,
    /// Its thread exited; waiting for a new thread to adopt it.
    Abandoned,
    /// The shared heap (exited threads' late allocations, debug mode).
    Shared,
    /// Its thread did not survive a `fork`: owned by nobody, never adopted (see `fork`).
    Vanished,
}

/// Every heap ever made, with its role, oldest last.
pub fn heap_roles() -> Vec<(usize, HeapRole)> {
    let reg = REGISTRY.lock();
    let shared = reg.shared;
    // SAFETY: the registry lock is held; heaps are never freed.
    unsafe {
        let on = |mut h: *mut Heap| {
            let mut v = Vec::new();
            while !h.is_null() {
                v.push(h);
                h = (*h).next_abandoned;
            }
            v
        };
        let (abandoned, vanished) = (on(reg.abandoned), on(reg.vanished));
        let mut roles = Vec::new();
        let mut h = reg.all;
        while !h.is_null() {
            let role = if h == shared {
                HeapRole::Shared
            } else if abandoned.contains(&h) {
                HeapRole::Abandoned
            } else if vanished.contains(&h) {
                HeapRole::Vanished
            } else {
                HeapRole::Active
            };
            roles.push((h as usize, role));
            h = (*h).next_all;
        }
        roles
    }
}

/// In a child just forked, with the registry lock held by the forking thread (the fork
/// handlers hold every lock): marks every heap that was active in the parent, other than
/// the calling thread's own, as vanished.
///
/// # Safety
/// Called only from the child's fork handler, before it releases the registry lock.
#[cfg(not(loom))]
pub(crate) unsafe fn forget_vanished_threads() {
    let own = thread::thread_heap();
    // SAFETY: the registry lock is held by this thread (per the caller), the only one;
    // heaps are never freed.
    unsafe {
        let reg = &mut *REGISTRY.held();
        let shared = reg.shared;
        let mut listed = Vec::new();
        for mut h in [reg.abandoned, reg.vanished] {
            while !h.is_null() {
                listed.push(h);
                h = (*h).next_abandoned;
            }
        }
        let mut h = reg.all;
        while !h.is_null() {
            if h != own && h != shared && !listed.contains(&h) {
                (*h).next_abandoned = reg.vanished;
                reg.vanished = h;
            }
            h = (*h).next_all;
        }
    }
}

/// Calls `f` on every heap ever made, under the registry lock. Callers that read a heap's
/// lists must ensure no other thread is inside the allocator.
pub fn for_each_heap(mut f: impl FnMut(*mut Heap)) {
    let reg = REGISTRY.lock();
    // SAFETY: the registry lock is held; heaps are never freed.
    unsafe {
        let mut heap = reg.all;
        while !heap.is_null() {
            f(heap);
            heap = (*heap).next_all;
        }
    }
}

/// Read-only view of a heap for the invariant walker.
///
/// # Safety
/// `heap` is live and no thread is changing it.
pub unsafe fn lists_of(heap: *mut Heap) -> [(*mut Pool, *mut Pool); NUM_CLASSES] {
    // SAFETY: per the caller.
    let (lists, tails) = unsafe { ((*heap).lists, (*heap).tails) };
    core::array::from_fn(|c| (lists[c], tails[c]))
}

/// The cache of `heap` for the invariant walker: its stacks, the count it keeps, and the
/// pools in its release batch.
///
/// # Safety
/// `heap` is live and no thread is changing it.
pub unsafe fn cache_of(heap: *mut Heap) -> ([*mut Pool; NUM_CLASSES], u32, Vec<*mut Pool>) {
    // SAFETY: per the caller.
    unsafe {
        let h = &*heap;
        let n = (h.nreleasing as usize).min(POOL_BATCH);
        (h.cache, h.cached, h.releasing[..n].to_vec())
    }
}

/// The delayed list of `heap`, for the invariant walker.
///
/// # Safety
/// `heap` is live and no thread is changing it.
pub unsafe fn delayed_of(heap: *mut Heap) -> *mut Block {
    // SAFETY: per the caller.
    unsafe { (*heap).owner.delayed.load(Ordering::Acquire) }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A heap of the test's own (heaps are never freed), for the policy's numbers.
    fn test_heap() -> *mut Heap {
        let h = crate::allocator::meta::alloc::<Heap>();
        assert!(!h.is_null());
        // SAFETY: fresh metadata memory, sized and aligned for a heap.
        unsafe { h.write(blank_heap()) };
        h
    }

    /// Takes `n` pools of class 3 the way `refill` does: the cache first, then the arenas.
    ///
    /// # Safety
    /// The caller owns `h`.
    unsafe fn take(h: *mut Heap, n: usize) -> Vec<*mut Pool> {
        (0..n)
            .map(|_| {
                // SAFETY: per the caller.
                let p = unsafe { cache_pop(h, 3) };
                if p.is_null() {
                    // SAFETY: per the caller.
                    unsafe { fetch(h, 3) }
                } else {
                    p
                }
            })
            .inspect(|p| assert!(!p.is_null()))
            .collect()
    }

    #[test]
    fn the_budget_follows_reuse_and_idleness() {
        // (No unit test changes the decay setting: the library's default holds here.)
        assert_eq!(arena::decay_ms(), arena::DEFAULT_DECAY_MS);
        let h = test_heap();
        // SAFETY: this test owns `h`; the pools are empty and on no list when retired.
        unsafe {
            // A first cycle of 40 pools: fetched in batches, the extras cached.
            let pools = take(h, 40);
            assert_eq!((*h).budget, MIN_BUDGET, "no reuse seen yet");
            let owned = 40 + (*h).cached;
            for &p in &pools {
                retire(h, p);
            }
            // The budget keeps 16; the rest went back (overflow), nothing waits in a batch
            // beyond one.
            assert_eq!((*h).cached, MIN_BUDGET);
            assert_eq!((*h).overflow, owned - MIN_BUDGET);
            assert!(((*h).nreleasing as usize) < POOL_BATCH);
            // The second cycle fetches them back: that justifies keeping them.
            let pools = take(h, 40);
            for &p in &pools {
                retire(h, p);
            }
            assert_eq!((*h).overflow, 0, "the second cycle was kept whole");
            assert!((*h).budget >= 40 && (*h).cached >= 40, "{}", (*h).cached);
            let kept = (*h).cached;
            // A third cycle touches 10 pools only, across a whole epoch: the pools it left
            // unused all along (its low-water mark) go back at the epoch's end, and the
            // budget shrinks by as many.
            let start = 1_000_000;
            age_cache(h, start); // an epoch begins
            assert_eq!((*h).low_water, kept);
            let few = take(h, 10);
            for &p in &few {
                retire(h, p);
            }
            let budget = (*h).budget;
            age_cache(h, start + u64::from(arena::DEFAULT_DECAY_MS) - 1);
            assert_eq!((*h).cached, kept, "before the epoch's end nothing moves");
            age_cache(h, start + u64::from(arena::DEFAULT_DECAY_MS));
            assert_eq!((*h).cached, 10, "only the pools used in the epoch stay");
            assert_eq!((*h).budget, (budget - (kept - 10)).max(MIN_BUDGET));
            shrink_cache(h, u32::MAX);
            assert_eq!((*h).cached, 0);
            assert_eq!((*h).nreleasing, 0);
        }
    }
}

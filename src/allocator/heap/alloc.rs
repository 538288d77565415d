//! The allocation paths of a heap: the fast path (pop the head pool's free list), the
//! never-used blocks of a fresh pool, the next pool of the class list, and the slow path
//! that takes back other threads' frees, reuses a kept pool or fetches new ones.

use super::cache::{cache_pop, fetch, heartbeat, HEARTBEAT_EVERY};
use super::free::drain_delayed;
use super::lists::{push_front, unlink};
use super::registry::{alloc_shared, attach};
use super::thread::{self, ThreadState};
use super::{
    class_index, count_large_in, diverted, empty_pool, interp, trim_all, Heap, Source, ThreadHeap,
};
use crate::allocator::geometry::{blocks_per_pool, class_of, class_size};
use crate::allocator::pool::{self, Pool};
use crate::allocator::sync::Ordering;
use core::ptr;

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
pub(super) unsafe fn alloc_from(heap: *mut Heap, n: usize) -> *mut u8 {
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

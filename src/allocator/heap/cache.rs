//! The heap's cache of empty pools: its budget, its low-water mark and decay epoch, and the
//! batches in which pools come from and go back to the arenas. The cache's fields are in
//! [`Heap`], whose invariants cover them.
//!
//! ## Empty pools
//!
//! A pool that becomes empty (and is not the last of its class) leaves its class list. The
//! heap keeps it, on its *cache* for that class, a queue: a steady oscillation (build a
//! structure, drop it, build the next) takes its pools back with no lock and no system
//! call, in the order they emptied, and carves each afresh from its first block, so that
//! consecutive allocations lie at rising addresses, as they did the first time. (Handing
//! out the pool's old free list instead, as CPython does, reads every block on the way
//! out and hands them out backwards, which both the allocator and the collector's walk pay
//! for: docs/decisions.md#empty-pools-kept-where-they-are-reused-given-back-where-they-are-not.)
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

use super::{class_index, owner, Heap};
use crate::allocator::arena;
use crate::allocator::geometry::NUM_CLASSES;
use crate::allocator::pool::{self, Pool};
use crate::allocator::sync::Ordering;
use core::ptr;

/// Pools fetched from the arenas in one hold of the arena lock, and given back in one: a
/// run of neighbouring pages for one class (64 KiB, mimalloc's page size).
pub(super) const POOL_BATCH: usize = 16;

/// The cache's budget before any reuse was seen, in pools: one batch.
pub(super) const MIN_BUDGET: u32 = POOL_BATCH as u32;

/// The pools on `heap`'s cache.
///
/// # Safety
/// `heap` is a live heap (any thread may read the count).
pub(super) unsafe fn kept(heap: *mut Heap) -> u32 {
    // SAFETY: per the caller.
    unsafe { (*heap).cached.load(Ordering::Relaxed) }
}

/// Sets the count of pools on `heap`'s cache (a load and a store: only the owner writes it).
///
/// # Safety
/// The caller acts as `heap`'s owner.
unsafe fn set_kept(heap: *mut Heap, n: u32) {
    // SAFETY: per the caller.
    unsafe { (*heap).cached.store(n, Ordering::Relaxed) }
}

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
pub(super) unsafe fn retire(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: per the caller.
    unsafe {
        if kept(heap) < budget(heap) {
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
        (*pool).set_cached(true);
        (*pool).set_heap(ptr::null_mut()); // a free into it is a double free: caught
        (*pool).next = ptr::null_mut();
        let tail = (*heap).cache_tail[class];
        if tail.is_null() {
            (*heap).cache[class] = pool;
        } else {
            (*tail).next = pool;
        }
        (*heap).cache_tail[class] = pool;
        (*heap).cache_classes |= 1 << class;
        set_kept(heap, kept(heap) + 1);
    }
}

/// Takes the first pool of `heap`'s cache for `class`, or of any other class's, and sets
/// it up afresh for `class` (its blocks carved again from the first; the page is not
/// touched); NULL when the cache is empty. The pool is on no list.
///
/// # Safety
/// The caller acts as `heap`'s owner; `class < NUM_CLASSES`.
pub(super) unsafe fn cache_pop(heap: *mut Heap, class: usize) -> *mut Pool {
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
        let left = h.cached.load(Ordering::Relaxed) - 1;
        h.cached.store(left, Ordering::Relaxed);
        h.low_water = h.low_water.min(left);
        (*pool).set_cached(false);
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
pub(super) unsafe fn fetch(heap: *mut Heap, class: usize) -> *mut Pool {
    // SAFETY: per the caller; the pools handed out are ours from here on.
    unsafe {
        let h = &mut *heap;
        let grant = h.overflow.min(POOL_BATCH as u32);
        h.overflow -= grant;
        h.budget = h.budget.saturating_add(grant);
        let room = budget(heap).saturating_sub(kept(heap)) as usize;
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
pub(super) unsafe fn release(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: per the caller.
    unsafe {
        (*pool).set_cached(true);
        (*pool).set_heap(ptr::null_mut()); // as in the cache
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
pub(super) unsafe fn shrink_cache(heap: *mut Heap, n: u32) {
    // SAFETY: per the caller.
    unsafe {
        for _ in 0..n.min(kept(heap)) {
            let class = (*heap).cache_classes.trailing_zeros() as usize % NUM_CLASSES;
            release(heap, cache_pop(heap, class));
        }
        flush_releasing(heap);
        (*heap).low_water = kept(heap);
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

/// Slow-path calls between two reads of the decay clock.
pub(super) const HEARTBEAT_EVERY: u32 = 64;

/// Ages `heap`'s cache of empty pools ([`age_cache`]) every [`HEARTBEAT_EVERY`] slow-path
/// calls of `heap`, so that the clock is read on one slow path in 64.
///
/// # Safety
/// The caller acts as `heap`'s owner.
#[inline(always)]
pub(super) unsafe fn heartbeat(heap: *mut Heap) {
    // SAFETY: per the caller, the counter is ours.
    unsafe {
        (*heap).slow_events = (*heap).slow_events.wrapping_add(1);
        if (*heap).slow_events.is_multiple_of(HEARTBEAT_EVERY) {
            age_cache(heap, crate::allocator::os::now_ms());
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::blank_heap;
    use super::*;
    use alloc::vec::Vec;

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
            let owned = 40 + kept(h);
            for &p in &pools {
                retire(h, p);
            }
            // The budget keeps 16; the rest went back (overflow), nothing waits in a batch
            // beyond one.
            assert_eq!(kept(h), MIN_BUDGET);
            assert_eq!((*h).overflow, owned - MIN_BUDGET);
            assert!(((*h).nreleasing as usize) < POOL_BATCH);
            // The second cycle fetches them back: that justifies keeping them.
            let pools = take(h, 40);
            for &p in &pools {
                retire(h, p);
            }
            assert_eq!((*h).overflow, 0, "the second cycle was kept whole");
            assert!((*h).budget >= 40 && kept(h) >= 40, "{}", kept(h));
            let held = kept(h);
            // A third cycle touches 10 pools only, across a whole epoch: the pools it left
            // unused all along (its low-water mark) go back at the epoch's end, and the
            // budget shrinks by as many.
            let start = 1_000_000;
            age_cache(h, start); // an epoch begins
            assert_eq!((*h).low_water, held);
            let few = take(h, 10);
            for &p in &few {
                retire(h, p);
            }
            let budget = (*h).budget;
            age_cache(h, start + u64::from(arena::DEFAULT_DECAY_MS) - 1);
            assert_eq!(kept(h), held, "before the epoch's end nothing moves");
            age_cache(h, start + u64::from(arena::DEFAULT_DECAY_MS));
            assert_eq!(kept(h), 10, "only the pools used in the epoch stay");
            assert_eq!((*h).budget, (budget - (held - 10)).max(MIN_BUDGET));
            shrink_cache(h, u32::MAX);
            assert_eq!(kept(h), 0);
            assert_eq!((*h).nreleasing, 0);
        }
    }
}

//! The free paths of a heap: the owner's push on the pool's free list, the pool that was
//! full or has become empty, the remote free of a block whose pool another heap owns, and
//! the owner taking back the frees other threads left on its delayed list.

use super::cache::{heartbeat, retire, HEARTBEAT_EVERY};
use super::lists::{relink, unlink};
use super::{class_index, diverted, owner, Heap, Source};
use crate::allocator::pool::{self, pool_of, Block, Pool};
use crate::allocator::sync::Ordering;
use core::ptr;

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

/// Takes back every block other threads put on this heap's delayed list.
///
/// # Safety
/// The caller owns `heap`.
pub(super) unsafe fn drain_delayed(heap: *mut Heap) {
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

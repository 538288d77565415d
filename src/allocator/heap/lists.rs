//! The class lists of a heap: doubly linked lists of the pools it owns per size class,
//! headed by the pool it carves from (their invariants are in [`Heap`]).

use super::{class_index, empty_pool, Heap};
use crate::allocator::geometry::blocks_per_pool;
use crate::allocator::pool::{self, Pool};
use core::ptr;

/// Owner: puts a parked pool, which just took back a block, back on its class list.
///
/// # Safety
/// The caller owns `heap` and `pool`, which is parked.
#[inline(always)]
pub(super) unsafe fn relink(heap: *mut Heap, pool: *mut Pool) {
    // At the back, not the front: the pools ahead are used up first, and meanwhile more
    // frees land in this one (docs/decisions.md#a-relinked-pool-goes-to-the-back-of-its-list).
    // Pools that keep receiving frees at the back also get a chance to empty and go back
    // to their arena.
    //
    // `NOTIFY` stays set: clearing it would take an atomic RMW, and leaving it only sends
    // the pool's next remote free through the delayed list.
    // SAFETY: per the caller. Parked, it was full: all its blocks but this one are in use.
    unsafe {
        debug_assert!(!(*pool).linked() && (*pool).used() == pool::PARKED - 1);
        (*pool).set_used(blocks_per_pool(class_index(pool)) as u32 - 1);
        push_back(heap, pool);
    }
}

/// Links `pool` at the head of its class list.
///
/// # Safety
/// The caller owns `heap` and `pool`, and `pool` is not linked.
pub(super) unsafe fn push_front(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: per the caller.
    unsafe {
        debug_assert!(!(*pool).linked(), "a pool linked twice");
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
        (*pool).set_linked(true);
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
        (*pool).set_linked(true);
    }
}

/// Takes `pool` off its class list.
///
/// # Safety
/// The caller owns `heap` and `pool`, and `pool` is linked.
pub(super) unsafe fn unlink(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: per the caller.
    unsafe {
        debug_assert!((*pool).linked(), "an unlinked pool taken off its list");
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
        (*pool).set_linked(false);
        (*pool).next = ptr::null_mut();
        (*pool).prev = ptr::null_mut();
    }
}

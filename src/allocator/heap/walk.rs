//! Read-only accessors over the heaps, for the statistics and the invariant walker.

use super::cache::POOL_BATCH;
use super::registry::{each, Link, REGISTRY};
use super::Heap;
use crate::allocator::geometry::NUM_CLASSES;
use crate::allocator::pool::{Block, Pool};
use crate::allocator::sync::Ordering;
use alloc::vec::Vec;

/// The sum of every heap's `large` count (see [`count_large`](super::count_large)), read
/// without stopping the owners: a statistic, current to within the blocks being counted
/// meanwhile.
pub fn large_in_heaps() -> isize {
    let mut sum = 0usize;
    for_each_heap(|h| {
        // SAFETY: heaps are never freed; the count is an atomic.
        sum = sum.wrapping_add(unsafe { (*h).large.load(Ordering::Relaxed) });
    });
    sum as isize
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
    let (mut abandoned, mut vanished, mut roles) = (Vec::new(), Vec::new(), Vec::new());
    // SAFETY: the registry lock is held and nothing here writes a link.
    unsafe {
        each(reg.abandoned, Link::Abandoned, |h| abandoned.push(h));
        each(reg.vanished, Link::Abandoned, |h| vanished.push(h));
        each(reg.all, Link::All, |h| {
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
        });
    }
    roles
}

/// Calls `f` on every heap ever made, under the registry lock. Callers that read a heap's
/// lists must ensure no other thread is inside the allocator.
pub fn for_each_heap(f: impl FnMut(*mut Heap)) {
    let reg = REGISTRY.lock();
    // SAFETY: the registry lock is held; the links are private to the heap module, so `f`
    // cannot write them.
    unsafe { each(reg.all, Link::All, f) };
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

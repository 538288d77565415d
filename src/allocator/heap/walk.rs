//! Read-only accessors over the heaps, for the statistics and the invariant walker.

use super::cache::POOL_BATCH;
use super::registry::{each, Link, REGISTRY};
use super::Heap;
use crate::allocator::geometry::NUM_CLASSES;
use crate::allocator::pool::{Block, Pool};
use crate::allocator::sync::Ordering;

/// The sum of every heap's `large` count (see `heap::count_large`), read
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

/// What a heap is doing now, for the statistics (`pymalloc_heap_stats.role` holds the
/// number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum HeapRole {
    /// Owned by a running thread.
    Active = 0,
    /// Its thread exited; waiting for a new thread to adopt it.
    Abandoned = 1,
    /// The shared heap (exited threads' late allocations, debug mode).
    Shared = 2,
    /// The interpreter heap: every thread's calls under CPython's GIL (see `heap::interp`).
    Interpreter = 3,
    /// Its thread did not survive a `fork`: owned by nobody, never adopted (see `fork`).
    Vanished = 4,
}

impl HeapRole {
    /// Every role, in the order of their numbers.
    pub const ALL: [HeapRole; 5] = [
        HeapRole::Active,
        HeapRole::Abandoned,
        HeapRole::Shared,
        HeapRole::Interpreter,
        HeapRole::Vanished,
    ];

    /// The role's name in the statistics' report.
    pub const fn name(self) -> &'static str {
        match self {
            HeapRole::Active => "active",
            HeapRole::Abandoned => "abandoned",
            HeapRole::Shared => "shared",
            HeapRole::Interpreter => "interpreter",
            HeapRole::Vanished => "vanished",
        }
    }
}

/// Where an outside reader finds the heaps and their roles (see `layout`): the registry's
/// lists, as [`each_heap_role`] reads them, and a heap's fields.
#[cfg(not(loom))]
pub const fn layout() -> crate::allocator::layout::Heaps {
    use crate::allocator::layout::{padded, RoleList, SINGLE};
    use core::mem::offset_of;
    use core::ptr::addr_of;
    let reg = REGISTRY.data_address();
    let next_abandoned = offset_of!(Heap, next_abandoned) as u64;
    // SAFETY: computes addresses of fields of the static; nothing is read.
    unsafe {
        crate::allocator::layout::Heaps {
            all: addr_of!((*reg).all).cast(),
            next_all: offset_of!(Heap, next_all) as u64,
            large: offset_of!(Heap, large) as u64,
            cached: offset_of!(Heap, cached) as u64,
            default_role: padded(HeapRole::Active.name()),
            roles: [
                RoleList {
                    name: padded(HeapRole::Shared.name()),
                    head: addr_of!((*reg).shared).cast(),
                    link: SINGLE,
                },
                RoleList {
                    name: padded(HeapRole::Interpreter.name()),
                    head: addr_of!((*reg).interpreter).cast(),
                    link: SINGLE,
                },
                RoleList {
                    name: padded(HeapRole::Abandoned.name()),
                    head: addr_of!((*reg).abandoned).cast(),
                    link: next_abandoned,
                },
                RoleList {
                    name: padded(HeapRole::Vanished.name()),
                    head: addr_of!((*reg).vanished).cast(),
                    link: next_abandoned,
                },
            ],
        }
    }
}

/// Calls `f` on every heap ever made with its role, newest first, under the registry lock.
/// Allocates nothing: the statistics must work when memory has run out.
pub fn each_heap_role(mut f: impl FnMut(*mut Heap, HeapRole)) {
    let reg = REGISTRY.lock();
    let on = |list: *mut Heap, h: *mut Heap| {
        let mut found = false;
        // SAFETY: the registry lock is held and nothing here writes a link.
        unsafe { each(list, Link::Abandoned, |a| found |= a == h) };
        found
    };
    // SAFETY: as above.
    unsafe {
        each(reg.all, Link::All, |h| {
            let role = if h == reg.shared {
                HeapRole::Shared
            } else if h == reg.interpreter {
                HeapRole::Interpreter
            } else if on(reg.abandoned, h) {
                HeapRole::Abandoned
            } else if on(reg.vanished, h) {
                HeapRole::Vanished
            } else {
                HeapRole::Active
            };
            f(h, role);
        });
    }
}

/// The empty pools `heap` keeps (its cache), read while its owner may be changing it: a
/// statistic.
///
/// # Safety
/// `heap` is a live heap (heaps are never freed).
pub unsafe fn kept_of(heap: *mut Heap) -> u32 {
    // SAFETY: per the caller.
    unsafe { super::cache::kept(heap) }
}

/// Whether this process is a child made by `fork`, for the invariant walker.
pub fn in_forked_child() -> bool {
    REGISTRY.lock().forked
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
/// pools in its release batch (the first `n` of the array returned last, with `n`).
///
/// # Safety
/// `heap` is live and no thread is changing it.
pub unsafe fn cache_of(
    heap: *mut Heap,
) -> (
    [*mut Pool; NUM_CLASSES],
    u32,
    [*mut Pool; POOL_BATCH],
    usize,
) {
    // SAFETY: per the caller.
    unsafe {
        let h = &*heap;
        let n = (h.nreleasing as usize).min(POOL_BATCH);
        (h.cache, h.cached.load(Ordering::Relaxed), h.releasing, n)
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

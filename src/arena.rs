//! Arenas: 256 KiB aligned mappings cut into pools, and the global policy that decides
//! which arena the next pool comes from and when an arena goes back to the OS.
//!
//! Like CPython's sorted `usable_arenas`, a new pool comes from the arena with the fewest
//! free pools, so that lightly used arenas drain and can be unmapped. Arenas are kept in
//! buckets by their number of free pools, with a bitmap of non-empty buckets, so both the
//! choice and the move after a pool changes hands are O(1). An arena whose pools are all
//! free is unmapped, except for one kept as a spare so that a workload hovering at an arena
//! boundary does not map and unmap on every turn.
//!
//! Free pools inside live arenas go back to the OS lazily: once more than [`RESERVE`] free
//! pools are committed, every [`SWEEP_EVERY`] pool releases a sweep `madvise`s the pools
//! that were already free at the previous sweep and have not been handed out since. A pool reused within one sweep interval is never
//! decommitted, so a workload that cycles pools pays nothing, while memory freed for good
//! leaves RSS after at most two sweeps (`pymalloc_trim` does it at once).

use crate::geometry::{ARENA_MASK, POOLS_PER_ARENA, POOL_SIZE};
use crate::pool::{pool_index, Pool};
use crate::sync::{unmodeled, Lock, Ordering};
use crate::{os, ownership};
use core::cell::UnsafeCell;
use core::ptr;

/// Arenas mapped before new ones are populated at once (see [`Arenas::map`]).
const POPULATE_FROM: u64 = 32;

/// Usable pools in an arena (pool 0 holds the header).
pub const USABLE_POOLS: u32 = POOLS_PER_ARENA as u32 - 1;
/// Bits of the usable pools in a free-pool set.
const ALL_USABLE: u64 = !1;

/// The header in pool 0 of every arena. All fields are guarded by the arena lock.
///
/// Invariants:
/// - `free_pools` has bit `i` set exactly when pool `i` (1..=63) belongs to no heap;
///   `nfree == free_pools.count_ones()`; bit 0 is never set;
/// - `decommitted` ⊆ `free_pools`: pools whose pages were given back to the OS;
/// - `aged` ⊆ `free_pools` \ `decommitted`: pools free and untouched since the last sweep;
/// - an arena with `nfree == k >= 1` is on bucket `k`'s list (`next`/`prev`), a full arena
///   (`k == 0`) on none; every arena is on the `all` list (`all_next`/`all_prev`);
/// - at most one arena has `nfree == USABLE_POOLS` (the spare).
#[repr(C)]
pub struct Arena {
    free_pools: u64,
    decommitted: u64,
    aged: u64,
    nfree: u32,
    next: *mut Arena,
    prev: *mut Arena,
    all_next: *mut Arena,
    all_prev: *mut Arena,
}

/// Counters kept by the arena layer.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ArenaCounts {
    /// Arenas mapped since the process started.
    pub allocated_total: u64,
    /// Arenas unmapped since the process started.
    pub reclaimed: u64,
    /// Most arenas mapped at once.
    pub highwater: u64,
    /// Arenas mapped now.
    pub current: u64,
    /// Pools that belong to a heap now.
    pub pools_in_use: u64,
    /// Free pools in mapped arenas, decommitted ones included.
    pub pools_free: u64,
    /// Free pools whose pages are given back to the OS.
    pub pools_decommitted: u64,
}

struct Arenas {
    /// `buckets[k]`: arenas with exactly `k` free pools (`buckets[0]` unused).
    buckets: [*mut Arena; POOLS_PER_ARENA],
    /// Bit `k` set when `buckets[k]` is non-empty.
    nonempty: u64,
    /// Every mapped arena.
    all: *mut Arena,
    /// Pool releases since the last sweep.
    releases: u32,
    counts: ArenaCounts,
}

/// Pool releases between two decommit sweeps (64 pools = 256 KiB).
pub const SWEEP_EVERY: u32 = 64;

/// Free pools kept committed: no sweep runs while there are no more than this many (1 MiB).
/// A workload in steady state, which frees and takes pools at the same pace, stays below
/// it and never pays for a page fault on a decommitted pool.
pub const RESERVE: u64 = 256;

/// Whether the lazy sweeps run (`PYMALLOC_DECOMMIT=0` turns them off, for comparison);
/// `pymalloc_trim` decommits regardless. A setting, not part of any protocol: unmodeled.
static DECOMMIT: unmodeled::AtomicBool = unmodeled::AtomicBool::new(true);

/// Turns the lazy decommit sweeps on or off.
pub fn set_lazy_decommit(on: bool) {
    DECOMMIT.store(on, Ordering::Relaxed);
}

crate::sync::global! {
    /// The arena lock: held for every change to an arena header or to [`Arenas`].
    pub(crate) static LOCK: Lock = Lock::new();
}

struct Global(UnsafeCell<Arenas>);
// SAFETY: the contents are only touched with `LOCK` held.
unsafe impl Sync for Global {}
// SAFETY: as above (loom's lazy statics want `Send`).
unsafe impl Send for Global {}

crate::sync::global! {
    static ARENAS: Global = Global(UnsafeCell::new(Arenas {
        buckets: [ptr::null_mut(); POOLS_PER_ARENA],
        nonempty: 0,
        all: ptr::null_mut(),
        releases: 0,
        counts: ArenaCounts {
            allocated_total: 0,
            reclaimed: 0,
            highwater: 0,
            current: 0,
            pools_in_use: 0,
            pools_free: 0,
            pools_decommitted: 0,
        },
    }));
}

/// A loom execution ends by dropping its globals: give its arenas back, so that thousands
/// of executions do not pile up mappings (and stale ownership-map bytes).
#[cfg(loom)]
impl Drop for Arenas {
    fn drop(&mut self) {
        let mut a = self.all;
        while !a.is_null() {
            // SAFETY: every arena on `all` is mapped and, the execution being over, unused.
            unsafe {
                let next = (*a).all_next;
                ownership::remove(a as usize);
                os::unmap_arena(a.cast());
                a = next;
            }
        }
    }
}

/// Runs `f` with the arena lock held.
fn locked<R>(f: impl FnOnce(&mut Arenas) -> R) -> R {
    let _guard = LOCK.lock();
    // SAFETY: the lock is held, so this is the only reference to the arena state.
    f(unsafe { &mut *ARENAS.0.get() })
}

/// The arena containing `p`.
fn arena_of<T>(p: *const T) -> *mut Arena {
    (p as usize & !ARENA_MASK) as *mut Arena
}

impl Arenas {
    /// # Safety
    /// `a` is a mapped arena on no bucket list, with `nfree >= 1`.
    unsafe fn bucket_push(&mut self, a: *mut Arena) {
        // SAFETY: per the caller; links are guarded by the lock we hold.
        unsafe {
            let k = (*a).nfree as usize;
            let head = self.buckets[k];
            (*a).prev = ptr::null_mut();
            (*a).next = head;
            if !head.is_null() {
                (*head).prev = a;
            }
            self.buckets[k] = a;
            self.nonempty |= 1 << k;
        }
    }

    /// # Safety
    /// `a` is on the bucket list for its `nfree`.
    unsafe fn bucket_remove(&mut self, a: *mut Arena) {
        // SAFETY: per the caller.
        unsafe {
            let k = (*a).nfree as usize;
            let (prev, next) = ((*a).prev, (*a).next);
            if prev.is_null() {
                self.buckets[k] = next;
                if next.is_null() {
                    self.nonempty &= !(1 << k);
                }
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
    }

    /// Maps a new arena, all pools free, and puts it on its bucket; NULL on failure.
    fn map(&mut self) -> *mut Arena {
        // Populate (see `os::map_arena`) only once the heap is big: then the pages committed
        // ahead of use are at most 1/POPULATE_FROM of it, while a small program (CPython
        // starts with about 15 arenas) faults in only what it touches.
        let base = os::map_arena(self.counts.current >= POPULATE_FROM);
        if base.is_null() {
            return ptr::null_mut();
        }
        if !ownership::in_range(base as usize) {
            // SAFETY: just mapped, nothing refers to it.
            unsafe { os::unmap_arena(base) };
            return ptr::null_mut();
        }
        let a = base.cast::<Arena>();
        // SAFETY: the mapping is fresh, aligned and large enough for the header.
        unsafe {
            a.write(Arena {
                free_pools: ALL_USABLE,
                decommitted: 0,
                aged: 0,
                nfree: USABLE_POOLS,
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
                all_next: self.all,
                all_prev: ptr::null_mut(),
            });
            if !self.all.is_null() {
                (*self.all).all_prev = a;
            }
            self.all = a;
            self.bucket_push(a);
        }
        ownership::insert(base as usize);
        let c = &mut self.counts;
        c.allocated_total += 1;
        c.current += 1;
        c.highwater = c.highwater.max(c.current);
        c.pools_free += u64::from(USABLE_POOLS);
        a
    }

    /// Unmaps an arena whose pools are all free.
    ///
    /// # Safety
    /// `a` is mapped, all its pools are free and it is on bucket `USABLE_POOLS`.
    unsafe fn unmap(&mut self, a: *mut Arena) {
        // SAFETY: per the caller; after unlinking nothing refers to the arena.
        unsafe {
            self.bucket_remove(a);
            let (prev, next) = ((*a).all_prev, (*a).all_next);
            if prev.is_null() {
                self.all = next;
            } else {
                (*prev).all_next = next;
            }
            if !next.is_null() {
                (*next).all_prev = prev;
            }
            let c = &mut self.counts;
            c.pools_free -= u64::from(USABLE_POOLS);
            c.pools_decommitted -= u64::from((*a).decommitted.count_ones());
            c.current -= 1;
            c.reclaimed += 1;
            ownership::remove(a as usize);
            os::unmap_arena(a.cast());
        }
    }
}

/// Takes a free pool from the fullest arena that has one, mapping an arena if none has.
/// Returns NULL when no arena can be mapped. The pool's contents are unspecified.
pub fn alloc_pool() -> *mut Pool {
    locked(|s| {
        let usable = s.nonempty & !1;
        let a = if usable == 0 {
            s.map()
        } else {
            s.buckets[usable.trailing_zeros() as usize]
        };
        if a.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: `a` is a mapped arena on its bucket with at least one free pool.
        unsafe {
            s.bucket_remove(a);
            let i = (*a).free_pools.trailing_zeros();
            let bit = 1u64 << i;
            (*a).free_pools &= !bit;
            (*a).aged &= !bit;
            if (*a).decommitted & bit != 0 {
                (*a).decommitted &= !bit;
                s.counts.pools_decommitted -= 1;
            }
            (*a).nfree -= 1;
            if (*a).nfree > 0 {
                s.bucket_push(a);
            }
            s.counts.pools_in_use += 1;
            s.counts.pools_free -= 1;
            (a as usize + i as usize * POOL_SIZE) as *mut Pool
        }
    })
}

/// Gives `pool` back to its arena; unmaps the arena if that leaves two arenas all free.
///
/// # Safety
/// `pool` came from [`alloc_pool`], no block of it is in use, and none waits on a remote or
/// delayed list (every block is on its `free` list, or it was never carved).
pub unsafe fn release_pool(pool: *mut Pool) {
    locked(|s| {
        let a = arena_of(pool);
        // SAFETY: `a` is the mapped arena of a pool in use; we hold the lock. Clearing
        // `heap` under the lock keeps the pool header and the free set in step for walkers.
        unsafe {
            (*pool).heap = ptr::null_mut();
            if (*a).nfree > 0 {
                s.bucket_remove(a);
            }
            (*a).free_pools |= 1 << pool_index(pool as usize);
            (*a).nfree += 1;
            s.counts.pools_in_use -= 1;
            s.counts.pools_free += 1;
            let spare = s.buckets[USABLE_POOLS as usize];
            s.bucket_push(a);
            if (*a).nfree == USABLE_POOLS && !spare.is_null() {
                s.unmap(a);
            }
        }
        s.releases += 1;
        let committed_free = s.counts.pools_free - s.counts.pools_decommitted;
        if s.releases >= SWEEP_EVERY && committed_free > RESERVE && DECOMMIT.load(Ordering::Relaxed)
        {
            s.sweep(false);
        }
    });
}

impl Arenas {
    /// Decommits free pools: all of them (`everything`), or those free and untouched since
    /// the previous sweep, which then re-ages the rest.
    fn sweep(&mut self, everything: bool) {
        self.releases = 0;
        let mut a = self.all;
        while !a.is_null() {
            // SAFETY: `a` is a mapped arena (we hold the lock); the pools decommitted are
            // free, so nothing reads them.
            unsafe {
                let idle = (*a).free_pools & !(*a).decommitted;
                let todo = if everything { idle } else { idle & (*a).aged };
                decommit_runs(a, todo);
                self.counts.pools_decommitted += u64::from(todo.count_ones());
                (*a).decommitted |= todo;
                (*a).aged = idle & !todo;
                a = (*a).all_next;
            }
        }
    }
}

/// Gives every free pool's pages back to the OS and unmaps the spare arena.
pub fn trim() {
    locked(|s| {
        let spare = s.buckets[USABLE_POOLS as usize];
        if !spare.is_null() {
            // SAFETY: the spare is mapped, all free, on bucket USABLE_POOLS.
            unsafe { s.unmap(spare) };
        }
        s.sweep(true);
    });
}

/// `madvise`s the pools of `a` in `set`, one call per run of consecutive pools.
///
/// # Safety
/// Every pool in `set` is a free pool of the mapped arena `a`.
unsafe fn decommit_runs(a: *mut Arena, mut set: u64) {
    while set != 0 {
        let start = set.trailing_zeros();
        let len = (set >> start).trailing_ones();
        // SAFETY: per the caller the run is free pools of our arena.
        unsafe {
            os::decommit(
                (a as usize + start as usize * POOL_SIZE) as *mut u8,
                len as usize * POOL_SIZE,
            )
        };
        set &= !(((1u64 << len) - 1) << start);
    }
}

/// A snapshot of the arena counters.
pub fn counts() -> ArenaCounts {
    locked(|s| s.counts)
}

/// Calls `f(arena_base, free_pools)` for every mapped arena, under the arena lock, and
/// checks the bucket bookkeeping on the way. Returns a description of the first broken
/// invariant, if any.
pub fn walk(mut f: impl FnMut(usize, u64) -> Result<(), String>) -> Result<(), String> {
    locked(|s| {
        let mut seen = 0u64;
        let mut all_free = 0;
        let mut a = s.all;
        // SAFETY: every arena on `all` is mapped; we hold the lock.
        unsafe {
            while !a.is_null() {
                seen += 1;
                let (free, nfree) = ((*a).free_pools, (*a).nfree);
                if free & 1 != 0 || free.count_ones() != nfree {
                    return Err(format!("arena {a:p}: free set {free:#x} vs nfree {nfree}"));
                }
                if (*a).decommitted & !free != 0 {
                    return Err(format!("arena {a:p}: a decommitted pool is in use"));
                }
                if (*a).aged & !(free & !(*a).decommitted) != 0 {
                    return Err(format!(
                        "arena {a:p}: an aged pool is in use or decommitted"
                    ));
                }
                if nfree > 0 && !on_bucket(s, a) {
                    return Err(format!("arena {a:p}: not on bucket {nfree}"));
                }
                if nfree == USABLE_POOLS {
                    all_free += 1;
                }
                if !ownership::owns_arena_of(a as usize) {
                    return Err(format!("arena {a:p}: missing from the ownership map"));
                }
                f(a as usize, free)?;
                a = (*a).all_next;
            }
        }
        if seen != s.counts.current {
            return Err(format!(
                "{seen} arenas listed, {} counted",
                s.counts.current
            ));
        }
        if all_free > 1 {
            return Err(format!(
                "{all_free} arenas entirely free, at most one may be kept"
            ));
        }
        Ok(())
    })
}

/// Whether `a` is on the bucket list for its `nfree`.
///
/// # Safety
/// The arena lock is held and `a` is mapped.
unsafe fn on_bucket(s: &Arenas, a: *mut Arena) -> bool {
    // SAFETY: per the caller.
    unsafe {
        let mut b = s.buckets[(*a).nfree as usize];
        while !b.is_null() {
            if b == a {
                return true;
            }
            b = (*b).next;
        }
        false
    }
}

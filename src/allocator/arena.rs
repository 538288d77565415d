//! Arenas: 256 KiB aligned mappings cut into pools, and the global policy that decides
//! which arena the next pool comes from and when memory goes back to the OS.
//!
//! Like CPython's sorted `usable_arenas`, a new pool comes from the arena with the fewest
//! free pools, so that lightly used arenas drain. Arenas are kept in buckets by their
//! number of free pools, with a bitmap of non-empty buckets, so both the choice and the move
//! after a pool changes hands are O(1).
//!
//! ## Decay: giving memory back without churning
//!
//! Free pools and empty arenas are not given back when they become free but after they
//! stayed idle for a while, so that a program that builds a structure, drops it and builds
//! the next (one request, one file, one batch after another) finds its memory still there
//! and makes no system call per cycle. Time is cut into *epochs* of [`decay_ms`] (default
//! [`DEFAULT_DECAY_MS`]). At the end of an epoch a *sweep* walks the arenas:
//!
//! - a free pool that was already free at the previous sweep and has not been handed out
//!   since (its `aged` bit) is decommitted (`madvise`);
//! - an arena whose pools were all free and untouched for the whole epoch is unmapped;
//! - every pool free now is marked `aged` for the next sweep.
//!
//! So memory idle for one epoch leaves after between one and two epochs (0.4–0.8 s by
//! default), and memory used again within an epoch is never touched. There is no thread:
//! the clock (`CLOCK_MONOTONIC_COARSE`, a vDSO read of a few nanoseconds) is read by
//! [`tick`], which each heap calls once every 64 of its slow-path calls (a pool running out
//! or being handed out, a free into a full or emptied pool), so continued allocator
//! activity of any kind advances the decay, and handing pools out and back costs no clock
//! read. A process that stops
//! allocating keeps what it holds until it allocates again (or calls `pymalloc_trim`, which
//! gives everything back at once).
//!
//! Why 400 ms: freed memory should be back within about a second of continued activity,
//! and two epochs must fit in that. Any shorter, and the build-and-drop loop of a
//! large structure (200,000 Python objects take ~0.2 s per cycle on this machine) would
//! start decommitting and re-faulting pools every cycle. jemalloc's default dirty decay is
//! 10 s, mimalloc's purge delay 10 ms (it reuses memory across threads instead). The cost:
//! a sweep reads every arena header once per epoch (a few microseconds per thousand
//! arenas), and memory idle for less than an epoch stays resident: at most what the process
//! freed in the last 0.8 s. `PYMALLOC_DECAY_MS` sets the epoch; 0 gives pools and arenas
//! back the moment they become free (no sweep), -1 never (only `pymalloc_trim`).

use crate::allocator::geometry::{
    header_page_index, header_table, usable_pools, ARENA_MASK, POOLS_PER_ARENA, POOL_SIZE,
};
use crate::allocator::pool::{self, Pool};
use crate::allocator::sync::{unmodeled, Locked, Ordering};
use crate::{allocator::os, allocator::ownership};
use core::ptr;

/// Arenas mapped before new ones are populated at once (see [`Arenas::map`]).
const POPULATE_FROM: u64 = 32;

/// The end of an arena's stack of free pools (no pool has this index).
const STACK_END: u8 = POOLS_PER_ARENA as u8;

/// Usable pools in an arena (one page holds the headers).
pub const USABLE_POOLS: u32 = POOLS_PER_ARENA as u32 - 1;

/// The header of every arena: the entry of the header page itself in the arena's header
/// table (see [`pool`]). All fields are guarded by the arena lock.
///
/// Invariants:
/// - `free_pools` has bit `i` set exactly when pool `i` belongs to no heap;
///   `nfree == free_pools.count_ones()`; the header page's bit is never set;
/// - the free pools also form a stack, most recently freed on top: `recent` is the index of
///   the top one (`STACK_END` when none is free), each one's header holds the index of the
///   next in `next_free_pool`, and the bottom one holds `STACK_END`. Pools are handed out from the top, as
///   CPython hands out an arena's most recently freed pool (`freepools`): its page is the
///   one most likely still in the cache, and pools left alone sink to the bottom, where the
///   decay finds them;
/// - `decommitted` ⊆ `free_pools`: pools whose pages were given back to the OS;
/// - `aged` ⊆ `free_pools`: pools free at the last sweep and not handed out since (see the
///   module's "Decay");
/// - an arena with `nfree == k >= 1` is on bucket `k`'s list (`next`/`prev`), a full arena
///   (`k == 0`) on none; every arena is on the `all` list (`all_next`/`all_prev`).
#[repr(C)]
pub struct Arena {
    free_pools: u64,
    decommitted: u64,
    aged: u64,
    nfree: u16,
    recent: u8,
    next: *mut Arena,
    prev: *mut Arena,
    all_next: *mut Arena,
    all_prev: *mut Arena,
}

// The arena header is an entry of the header table: one pool header's room.
const _: () =
    assert!(core::mem::size_of::<Arena>() <= crate::allocator::geometry::POOL_HEADER_SIZE);

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

/// The global arena state, in [`ARENAS`] under the arena lock.
///
/// Invariants: `nonempty` has bit `k` set exactly when `buckets[k]` is non-empty; `all`
/// lists every mapped arena; `counts.current` is their number, `counts.pools_free` the sum
/// of their `nfree`, `counts.pools_decommitted` the number of their `decommitted` bits, and
/// `counts.pools_in_use` the rest of their pools.
pub(crate) struct Arenas {
    /// `buckets[k]`: arenas with exactly `k` free pools (`buckets[0]` unused).
    buckets: [*mut Arena; POOLS_PER_ARENA],
    /// Bit `k` set when `buckets[k]` is non-empty.
    nonempty: u64,
    /// Every mapped arena.
    all: *mut Arena,
    counts: ArenaCounts,
}

// SAFETY: the arenas it points to are process-wide mappings, not tied to any thread; the
// state lives in a `Locked` and is reached only under its lock.
unsafe impl Send for Arenas {}

/// The default decay epoch, in milliseconds (see the module's "Decay" for the choice).
pub const DEFAULT_DECAY_MS: u32 = 400;

/// [`set_decay_ms`]'s value for "never give back lazily, only on `pymalloc_trim`".
pub const DECAY_NEVER: u32 = u32::MAX;

/// The decay epoch in milliseconds: 0 gives back at once, [`DECAY_NEVER`] never.
/// A setting, not part of any protocol: unmodeled.
static DECAY_MS: unmodeled::AtomicU32 = unmodeled::AtomicU32::new(DEFAULT_DECAY_MS);

/// When the last sweep ran (`os::now_ms`). Written under the arena lock; read without it by
/// [`tick`], where a stale value only delays or repeats the clock test: unmodeled.
static LAST_SWEEP_MS: unmodeled::AtomicU64 = unmodeled::AtomicU64::new(0);

/// Sets the decay epoch (`PYMALLOC_DECAY_MS`), in milliseconds: free pools and empty arenas
/// go back to the OS after between one and two epochs of idleness; 0 gives them back the
/// moment they become free, [`DECAY_NEVER`] only on `pymalloc_trim`.
pub fn set_decay_ms(ms: u32) {
    DECAY_MS.store(ms, Ordering::Relaxed);
}

/// The decay epoch in milliseconds (see [`set_decay_ms`]).
pub fn decay_ms() -> u32 {
    DECAY_MS.load(Ordering::Relaxed)
}

/// Whether an epoch has passed since the last sweep at time `now` (milliseconds).
fn sweep_due(now: u64) -> bool {
    let d = decay_ms();
    d != 0
        && d != DECAY_NEVER
        && now.wrapping_sub(LAST_SWEEP_MS.load(Ordering::Relaxed)) >= u64::from(d)
}

/// The heaps' heartbeat: runs the decay sweep if an epoch has passed. Cheap when none has
/// (a clock read and a compare, no lock); called from the heaps' slow paths, so that any
/// continued allocator activity gives idle memory back.
pub fn tick() {
    if sweep_due(os::now_ms()) {
        locked(|s| s.decay());
    }
}

crate::allocator::sync::global! {
    /// The arena state; its lock, the arena lock, is held for every change to an arena
    /// header or to [`Arenas`].
    pub(crate) static ARENAS: Locked<Arenas> = Locked::new(Arenas {
        buckets: [ptr::null_mut(); POOLS_PER_ARENA],
        nonempty: 0,
        all: ptr::null_mut(),
        counts: ArenaCounts {
            allocated_total: 0,
            reclaimed: 0,
            highwater: 0,
            current: 0,
            pools_in_use: 0,
            pools_free: 0,
            pools_decommitted: 0,
        },
    });
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
                ownership::remove(base_of(a));
                os::unmap_arena(base_of(a) as *mut u8);
                a = next;
            }
        }
    }
}

/// Runs `f` with the arena lock held.
fn locked<R>(f: impl FnOnce(&mut Arenas) -> R) -> R {
    f(&mut ARENAS.lock())
}

/// The header of the arena containing `p`.
fn arena_of<T>(p: *const T) -> *mut Arena {
    arena_at(p as usize & !ARENA_MASK)
}

/// The header of the arena based at `base`.
fn arena_at(base: usize) -> *mut Arena {
    pool::header(base, header_page_index(base)).cast()
}

/// The base address of the arena whose header is `a`.
fn base_of(a: *mut Arena) -> usize {
    a as usize & !ARENA_MASK
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
        if !ownership::insert(base as usize) {
            // Above the 47-bit range, or no memory for the map's leaf: as if `mmap` failed.
            // SAFETY: just mapped, nothing refers to it.
            unsafe { os::unmap_arena(base) };
            return ptr::null_mut();
        }
        let a = arena_at(base as usize);
        // SAFETY: the mapping is fresh, aligned and holds the header page.
        unsafe {
            a.write(Arena {
                free_pools: usable_pools(base as usize),
                decommitted: 0,
                aged: 0,
                nfree: USABLE_POOLS as u16,
                recent: STACK_END,
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
                all_next: self.all,
                all_prev: ptr::null_mut(),
            });
            // Stack the pools with the lowest on top, so that a fresh arena fills from its
            // start.
            let h = header_page_index(base as usize);
            for i in (0..POOLS_PER_ARENA).rev().filter(|&i| i != h) {
                push_free(a, i);
            }
            if !self.all.is_null() {
                (*self.all).all_prev = a;
            }
            self.all = a;
            self.bucket_push(a);
        }
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
            ownership::remove(base_of(a));
            os::unmap_arena(base_of(a) as *mut u8);
        }
    }
}

/// Takes a free pool from the fullest arena that has one, mapping an arena if none has, and
/// returns its header. NULL when no arena can be mapped. The header's and the page's
/// contents are unspecified.
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
            let i = pop_free(a) as usize;
            let bit = 1u64 << i;
            debug_assert!(
                (*a).free_pools & bit != 0,
                "a pool in use on the free stack"
            );
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
            pool::header(base_of(a), i)
        }
    })
}

/// Gives `pool` back to its arena. Its pages and the arena go back to the OS after the
/// decay (see the module's "Decay"), or at once when the decay epoch is 0.
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
            debug_assert!(
                (*a).free_pools & 1 << pool::index_of(pool) == 0,
                "a pool given back twice"
            );
            debug_assert!(!(*pool).linked, "a pool given back while on a class list");
            (*pool).heap = ptr::null_mut();
            if (*a).nfree > 0 {
                s.bucket_remove(a);
            }
            (*a).free_pools |= 1 << pool::index_of(pool);
            push_free(a, pool::index_of(pool));
            (*a).nfree += 1;
            s.counts.pools_in_use -= 1;
            s.counts.pools_free += 1;
            s.bucket_push(a);
            if decay_ms() == 0 {
                let idle = if u32::from((*a).nfree) == USABLE_POOLS {
                    usable_pools(base_of(a))
                } else {
                    1 << pool::index_of(pool)
                };
                s.give_back(a, idle);
            }
        }
    });
}

impl Arenas {
    /// Runs the decay sweep if an epoch has passed since the last one (checked again under
    /// the lock: another thread may have swept since [`tick`] looked).
    fn decay(&mut self) {
        let now = os::now_ms();
        if sweep_due(now) {
            LAST_SWEEP_MS.store(now, Ordering::Relaxed);
            self.sweep(false);
        }
    }

    /// Gives back to the OS the free pools of every arena that are idle: all of them
    /// (`everything`), or those free and untouched since the previous sweep, which then
    /// marks every free pool for the next one. See the module's "Decay".
    fn sweep(&mut self, everything: bool) {
        let mut a = self.all;
        while !a.is_null() {
            // SAFETY: `a` is a mapped arena (we hold the lock); its successor is read
            // before `give_back` may unmap it.
            unsafe {
                let next = (*a).all_next;
                let free = (*a).free_pools;
                let idle = if everything { free } else { free & (*a).aged };
                (*a).aged = free;
                self.give_back(a, idle);
                a = next;
            }
        }
    }

    /// Gives back to the OS the free pools `idle` of `a`: the whole arena when they are all
    /// of its pools, else the pages of those not yet decommitted.
    ///
    /// # Safety
    /// `a` is a mapped arena, `idle` ⊆ its free pools.
    unsafe fn give_back(&mut self, a: *mut Arena, idle: u64) {
        // SAFETY: per the caller; the pools decommitted are free, so nothing reads them,
        // and an arena all of whose pools are free is on bucket USABLE_POOLS.
        unsafe {
            if idle == usable_pools(base_of(a)) {
                return self.unmap(a);
            }
            let todo = idle & !(*a).decommitted;
            decommit_runs(a, todo);
            self.counts.pools_decommitted += u64::from(todo.count_ones());
            (*a).decommitted |= todo;
        }
    }
}

/// Puts pool `i` of `a` on top of the arena's stack of free pools.
///
/// # Safety
/// The arena lock is held, `a` is mapped and its pool `i` has just become free.
unsafe fn push_free(a: *mut Arena, i: usize) {
    // SAFETY: per the caller; the header of a free pool is the arena's to use.
    unsafe {
        (*pool::header(base_of(a), i)).next_free_pool = (*a).recent;
        (*a).recent = i as u8;
    }
}

/// Takes a pool off `a`'s stack of free pools and returns its index: the top one, the most
/// recently freed, unless it is decommitted while a committed one is free (a decommitted
/// pool page-faults on first use). With a decay, a decommitted top means every free pool
/// idled through two sweeps, all decommitted; with a decay of 0, every pool released is
/// decommitted at once and goes on top, above the arena's never-used (possibly populated)
/// pools, which are then looked for further down (at most 63 links, under the lock).
///
/// # Safety
/// The arena lock is held, `a` is mapped and has a free pool.
unsafe fn pop_free(a: *mut Arena) -> u8 {
    // SAFETY: per the caller; the headers of free pools are the arena's to use.
    unsafe {
        let base = base_of(a);
        let link = |i: u8| ptr::addr_of_mut!((*pool::header(base, i as usize)).next_free_pool);
        let top = (*a).recent;
        debug_assert!(top != STACK_END, "pop_free on an arena with no free pool");
        let committed = (*a).free_pools & !(*a).decommitted;
        if (*a).decommitted & (1 << top) == 0 || committed == 0 {
            (*a).recent = *link(top);
            return top;
        }
        let mut prev = top;
        loop {
            let i = *link(prev);
            if committed & (1 << i) != 0 {
                *link(prev) = *link(i);
                return i;
            }
            prev = i;
        }
    }
}

/// Gives every free pool and every empty arena back to the OS now.
pub fn trim() {
    locked(|s| s.sweep(true));
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
                (base_of(a) + start as usize * POOL_SIZE) as *mut u8,
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

/// Calls `f(arena_base, pools_in_use)` (a set of page indices as bits) for every mapped
/// arena, under the arena lock, and checks the arena headers on the way (free set, stack of
/// free pools, buckets, ownership map). Returns a description of the first broken
/// invariant, if any.
pub fn walk(mut f: impl FnMut(usize, u64) -> Result<(), String>) -> Result<(), String> {
    locked(|s| {
        let (mut seen, mut free_pools, mut decommitted) = (0u64, 0u64, 0u64);
        let mut a = s.all;
        // SAFETY: every arena on `all` is mapped; we hold the lock.
        unsafe {
            while !a.is_null() {
                seen += 1;
                let (free, nfree) = ((*a).free_pools, (*a).nfree);
                free_pools += u64::from(nfree);
                decommitted += u64::from((*a).decommitted.count_ones());
                if free & !usable_pools(base_of(a)) != 0 || free.count_ones() != u32::from(nfree) {
                    return Err(format!("arena {a:p}: free set {free:#x} vs nfree {nfree}"));
                }
                let (mut stacked, mut i) = (0u64, (*a).recent);
                while i != STACK_END {
                    if i as usize >= POOLS_PER_ARENA || stacked & 1 << i != 0 {
                        return Err(format!("arena {a:p}: free-pool stack loops or strays"));
                    }
                    stacked |= 1 << i;
                    i = (*pool::header(base_of(a), i as usize)).next_free_pool;
                }
                if stacked != free {
                    return Err(format!(
                        "arena {a:p}: free-pool stack {stacked:#x} vs free set {free:#x}"
                    ));
                }
                if (*a).decommitted & !free != 0 {
                    return Err(format!("arena {a:p}: a decommitted pool is in use"));
                }
                if (*a).aged & !free != 0 {
                    return Err(format!("arena {a:p}: an aged pool is in use"));
                }
                if nfree > 0 && !on_bucket(s, a) {
                    return Err(format!("arena {a:p}: not on bucket {nfree}"));
                }
                if ownership::table_of(base_of(a)) != header_table(base_of(a))
                    || arena_at(base_of(a)) != a
                {
                    return Err(format!(
                        "arena {a:p}: its ownership-map word is not its header table"
                    ));
                }
                f(base_of(a), usable_pools(base_of(a)) & !free)?;
                a = (*a).all_next;
            }
        }
        let c = &s.counts;
        if (seen, free_pools, decommitted) != (c.current, c.pools_free, c.pools_decommitted)
            || c.pools_in_use != seen * u64::from(USABLE_POOLS) - free_pools
        {
            return Err(format!(
                "{seen} arenas with {free_pools} free pools ({decommitted} decommitted) listed, \
                 counted {c:?}"
            ));
        }
        Ok(())
    })
}

/// Runs `f` under the arena lock with a test that says whether an address lies in a pool in
/// use: a page (not the header page) of one of our mapped arenas that belongs to a heap.
/// While `f` runs no arena is mapped or unmapped and no pool changes hands, so the pools
/// the test accepts stay in use and their headers mapped until `f` returns. Keep `f`
/// short: a thread that needs a new pool waits for it.
pub fn with_pools_in_use<R>(f: impl FnOnce(&dyn Fn(usize) -> bool) -> R) -> R {
    locked(|_| {
        f(&|addr| {
            ownership::owns_arena_of(addr) && !pool::in_header_page(addr) && {
                // SAFETY: the ownership map lists the arena, so it is mapped, and it stays
                // mapped while we hold the lock; its header is read under that lock.
                let free = unsafe { (*arena_of(addr as *const u8)).free_pools };
                free >> pool::pool_index(addr) & 1 == 0
            }
        })
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

//! Arenas: 256 KiB aligned mappings cut into pools, and the global policy that decides
//! which arena the next pools come from and when a free pool's memory goes back to the OS.
//!
//! Like CPython's sorted `usable_arenas`, new pools come from the arena with the fewest
//! free pools, so that lightly used arenas drain. Arenas are kept in buckets by their
//! number of free pools, with a bitmap of non-empty buckets, so both the choice and the move
//! after pools change hands are O(1).
//!
//! Pools move between the arenas and the heaps in *batches* ([`alloc_pools`],
//! [`release_pools`]): the arena lock is taken once per batch, not per pool. A batch handed
//! out is a run of one arena's pools in address order (committed pools first), so a size
//! class's consecutive blocks lie on neighbouring pages.
//!
//! ## Giving memory back
//!
//! The heaps keep the empty pools that their recent history says they will reuse (see the
//! heap's "Empty pools"); a pool that reaches the arena is not wanted, so its page goes back
//! to the OS at once (`madvise`, one call per run of neighbouring pools in the batch), and an
//! arena whose pools are all free is unmapped at once, as CPython unmaps an empty arena.
//! Nothing here waits for a clock. The exception is the decay setting [`DECAY_NEVER`]
//! (`PYMALLOC_DECAY_MS=-1`): then free pools and empty arenas stay until [`trim`].

use crate::allocator::geometry::{
    header_page_index, header_table, usable_pools, ARENA_MASK, POOLS_PER_ARENA, POOL_SIZE,
};
use crate::allocator::pool::{self, Pool};
use crate::allocator::sync::{unmodeled, Locked, Ordering};
use crate::{allocator::os, allocator::ownership};
use alloc::string::String;
use core::ptr;

/// Arenas mapped before new ones are populated at once (see [`Arenas::map`]).
const POPULATE_FROM: u64 = 32;

/// Usable pools in an arena (one page holds the headers).
pub const USABLE_POOLS: u32 = POOLS_PER_ARENA as u32 - 1;

/// The header of every arena: the entry of the header page itself in the arena's header
/// table (see [`pool`]). All fields are guarded by the arena lock.
///
/// Invariants:
/// - `free_pools` has bit `i` set exactly when pool `i` belongs to no heap;
///   `nfree == free_pools.count_ones()`; the header page's bit is never set;
/// - `decommitted` ⊆ `free_pools`: pools whose pages were given back to the OS (a pool
///   never handed out is not in it, and is resident only if the arena was populated);
/// - an arena with `nfree == k >= 1` is on bucket `k`'s list (`next`/`prev`), a full arena
///   (`k == 0`) on none; every arena is on the `all` list (`all_next`/`all_prev`).
#[repr(C)]
pub struct Arena {
    free_pools: u64,
    decommitted: u64,
    nfree: u16,
    next: *mut Arena,
    prev: *mut Arena,
    all_next: *mut Arena,
    all_prev: *mut Arena,
}

// The arena header is an entry of the header table: one pool header's room.
const _: () =
    assert!(core::mem::size_of::<Arena>() <= crate::allocator::geometry::POOL_HEADER_SIZE);

/// Counters kept by the arena layer (`repr(C)`: an outside reader reads them, see
/// [`layout`]).
#[repr(C)]
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
    /// Pools that belong to a heap now (the heaps' kept empty pools included).
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

/// The default decay epoch, in milliseconds: how long a heap's kept empty pools may stay
/// unused before they go back (see the heap's "Empty pools"). Two epochs fit in a second,
/// the time within which a program that went on allocating has its idle memory back.
pub const DEFAULT_DECAY_MS: u32 = 400;

/// [`set_decay_ms`]'s value for "never give back lazily, only on `pymalloc_trim`".
pub const DECAY_NEVER: u32 = u32::MAX;

/// The decay epoch in milliseconds: 0 keeps no empty pool, [`DECAY_NEVER`] gives nothing
/// back but on [`trim`]. A setting, not part of any protocol: unmodeled.
static DECAY_MS: unmodeled::AtomicU32 = unmodeled::AtomicU32::new(DEFAULT_DECAY_MS);

/// Sets the decay epoch (`PYMALLOC_DECAY_MS`), in milliseconds: a heap's kept empty pools
/// that stayed unused for a whole epoch go back to the OS; 0 keeps none (every emptied
/// pool goes back at once), [`DECAY_NEVER`] keeps every free pool and empty arena until
/// `pymalloc_trim`.
pub fn set_decay_ms(ms: u32) {
    DECAY_MS.store(ms, Ordering::Relaxed);
}

/// The decay epoch in milliseconds (see [`set_decay_ms`]).
pub fn decay_ms() -> u32 {
    DECAY_MS.load(Ordering::Relaxed)
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

/// Where an outside reader finds the arenas' counters and reads an arena header (see
/// `layout`).
#[cfg(not(loom))]
pub const fn layout() -> crate::allocator::layout::Arenas {
    crate::allocator::layout::Arenas {
        // SAFETY: computes the address of a field of the static; nothing is read.
        counts: unsafe { ptr::addr_of!((*ARENAS.data_address()).counts) }.cast(),
        free_pools: core::mem::offset_of!(Arena, free_pools) as u64,
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
        // ahead of use are at most 1/POPULATE_FROM of it, while a small program (an
        // interpreter at start, docs/decisions.md) faults in only what it touches.
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
                nfree: USABLE_POOLS as u16,
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

    /// Gives back to the OS the free pools `idle` of `a`: the whole arena when all its pools
    /// are free, else the pages of the runs of neighbouring free pools that hold one of
    /// `idle` and one not yet decommitted (a run is widened over decommitted neighbours, so
    /// that one `madvise` covers it: giving back a page twice costs nothing).
    ///
    /// # Safety
    /// `a` is a mapped arena on its bucket, `idle` ⊆ its free pools.
    unsafe fn give_back(&mut self, a: *mut Arena, idle: u64) {
        // SAFETY: per the caller; the pools decommitted are free, so nothing reads them,
        // and an arena all of whose pools are free is on bucket USABLE_POOLS.
        unsafe {
            if (*a).free_pools == usable_pools(base_of(a)) {
                return self.unmap(a);
            }
            let todo = idle & !(*a).decommitted;
            let mut runs = todo | (*a).decommitted;
            while runs != 0 {
                let start = runs.trailing_zeros();
                let len = (runs >> start).trailing_ones();
                let run = (u64::MAX >> (64 - len)) << start;
                if run & todo != 0 {
                    os::decommit(
                        (base_of(a) + start as usize * POOL_SIZE) as *mut u8,
                        len as usize * POOL_SIZE,
                    );
                }
                runs &= !run;
            }
            self.counts.pools_decommitted += u64::from(todo.count_ones());
            (*a).decommitted |= todo;
        }
    }
}

/// Takes up to `out.len()` free pools, in address order, from the fullest arena that has
/// one (mapping an arena if none has), and writes their headers to `out`; returns how many
/// (at least one), or 0 when no arena can be mapped. The headers' and the pages' contents
/// are unspecified.
pub fn alloc_pools(out: &mut [*mut Pool]) -> usize {
    locked(|s| {
        let usable = s.nonempty & !1;
        let a = if usable == 0 {
            s.map()
        } else {
            s.buckets[usable.trailing_zeros() as usize]
        };
        if a.is_null() {
            return 0;
        }
        // SAFETY: `a` is a mapped arena on its bucket with at least one free pool; we hold
        // the lock.
        unsafe {
            s.bucket_remove(a);
            let (mut free, mut taken, mut n) = ((*a).free_pools, 0u64, 0);
            while free != 0 && n < out.len() {
                let i = free.trailing_zeros() as usize;
                debug_assert!(
                    i != header_page_index(base_of(a)),
                    "the header page is free"
                );
                free &= free - 1;
                taken |= 1 << i;
                out[n] = pool::header(base_of(a), i);
                n += 1;
            }
            s.counts.pools_decommitted -= u64::from(((*a).decommitted & taken).count_ones());
            (*a).decommitted &= !taken;
            (*a).free_pools = free;
            (*a).nfree -= n as u16;
            if (*a).nfree > 0 {
                s.bucket_push(a);
            }
            s.counts.pools_in_use += n as u64;
            s.counts.pools_free -= n as u64;
            n
        }
    })
}

/// Gives `pools` back to their arenas, under one hold of the arena lock, and their memory
/// to the OS at once (see the module's "Giving memory back"). Sorts `pools`.
///
/// # Safety
/// Every pool came from [`alloc_pools`], appears once, and is unused: no block of it is in
/// use and none waits on a remote or delayed list.
pub unsafe fn release_pools(pools: &mut [*mut Pool]) {
    // An insertion sort: a batch is at most 16 pools, and `sort_unstable` would put its
    // code on the pages every process touches (docs/decisions.md, arena mappings).
    for i in 1..pools.len() {
        let mut j = i;
        while j > 0 && pools[j - 1] > pools[j] {
            pools.swap(j - 1, j);
            j -= 1;
        }
    }
    let keep = decay_ms() == DECAY_NEVER;
    locked(|s| {
        let mut rest = &pools[..];
        while let Some(&first) = rest.first() {
            let a = arena_of(first);
            let n = rest.iter().take_while(|&&p| arena_of(p) == a).count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            // SAFETY: `a` is the mapped arena of pools in use; we hold the lock. Clearing
            // `heap` under the lock keeps the pool headers and the free set in step for
            // walkers.
            unsafe {
                let mut set = 0u64;
                for &p in group {
                    debug_assert!(
                        (*a).free_pools & 1 << pool::index_of(p) == 0,
                        "a pool given back twice"
                    );
                    debug_assert!(!(*p).linked(), "a pool given back while on a class list");
                    (*p).set_heap(ptr::null_mut());
                    set |= 1 << pool::index_of(p);
                }
                if (*a).nfree > 0 {
                    s.bucket_remove(a);
                }
                (*a).free_pools |= set;
                (*a).nfree += n as u16;
                s.counts.pools_in_use -= n as u64;
                s.counts.pools_free += n as u64;
                s.bucket_push(a);
                if !keep {
                    s.give_back(a, set);
                }
            }
        }
    });
}

/// Gives every free pool and every empty arena back to the OS now.
pub fn trim() {
    locked(|s| {
        let mut a = s.all;
        while !a.is_null() {
            // SAFETY: `a` is a mapped arena (we hold the lock); its successor is read
            // before `give_back` may unmap it. An arena with a free pool is on its bucket.
            unsafe {
                let next = (*a).all_next;
                if (*a).nfree > 0 {
                    s.give_back(a, (*a).free_pools);
                }
                a = next;
            }
        }
    });
}

/// A snapshot of the arena counters.
pub fn counts() -> ArenaCounts {
    locked(|s| s.counts)
}

/// Calls `f(arena_base, pools_in_use)` (a set of page indices as bits) for every mapped
/// arena, under the arena lock, and checks the arena headers on the way (free set, buckets,
/// ownership map). Returns a description of the first broken invariant, if any (or the
/// first error `f` returns).
pub fn walk<E: From<String>>(mut f: impl FnMut(usize, u64) -> Result<(), E>) -> Result<(), E> {
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
                    return Err(format!("arena {a:p}: free set {free:#x} vs nfree {nfree}").into());
                }
                if (*a).decommitted & !free != 0 {
                    return Err(format!("arena {a:p}: a decommitted pool is in use").into());
                }
                for i in (0..POOLS_PER_ARENA).filter(|i| free >> i & 1 != 0) {
                    if !(*pool::header(base_of(a), i)).heap().is_null() {
                        return Err(format!("arena {a:p}: free pool {i} names a heap").into());
                    }
                }
                if nfree > 0 && !on_bucket(s, a) {
                    return Err(format!("arena {a:p}: not on bucket {nfree}").into());
                }
                if ownership::table_of(base_of(a)) != header_table(base_of(a))
                    || arena_at(base_of(a)) != a
                {
                    return Err(format!(
                        "arena {a:p}: its ownership-map word is not its header table"
                    )
                    .into());
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
            )
            .into());
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

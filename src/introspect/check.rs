//! The invariant walker: checks every arena, pool, free list and heap list against the
//! invariants stated where those structures are defined, and counts what is in use; in
//! debug mode it checks the quarantine's poison too, so a write after free shows here.
//! Tests call it between phases; it must run while no other thread is inside the allocator
//! ([`verify`]'s contract).

use crate::allocator::geometry::{
    blocks_per_pool, class_size, ALIGNMENT, NUM_CLASSES, POOLS_PER_ARENA, POOL_SIZE,
};
use crate::allocator::heap::{self, empty_pool, Heap, HeapRole};
use crate::allocator::pool::{self, is_block_start, pool_of, Block, Pool, NOTIFY};
use crate::{allocator::arena, allocator::sync::Ordering};
use alloc::string::String;
use core::hash::Hash;
use hashbrown::{HashMap, HashSet};

/// Why [`verify`] failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// An invariant does not hold: what is broken.
    Broken(String),
    /// The walker's bookkeeping (the sets of heaps, pools and blocks it has seen) could not
    /// get memory: the walk stopped there, having found nothing broken so far.
    NoMemory,
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Broken(what) => f.write_str(what),
            Failure::NoMemory => f.write_str("not enough memory to walk the heaps"),
        }
    }
}

impl From<String> for Failure {
    fn from(what: String) -> Self {
        Failure::Broken(what)
    }
}

/// Adds `v` to `set`, growing it only as far as memory allows (without memory, the
/// walker stops rather than abort the process it checks); false if `v` was there already.
fn insert<T: Hash + Eq>(set: &mut HashSet<T>, v: T) -> Result<bool, Failure> {
    set.try_reserve(1).map_err(|_| Failure::NoMemory)?;
    Ok(set.insert(v))
}

/// What the walker counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub arenas: u64,
    pub pools_in_use: u64,
    /// Blocks handed out and not freed (remote and delayed frees already subtracted).
    pub blocks_in_use: u64,
}

/// Walks every structure; returns the first broken invariant, or what is in use. Without
/// memory for its bookkeeping it gives up ([`Failure::NoMemory`]) and allocates nothing
/// more.
///
/// In a child process after `fork`, the heaps of the threads that did not survive (see
/// `fork`) are left as their owners were at that instant, possibly in the middle of an
/// update (a pool off its list and not yet parked, a block popped and `used` not yet
/// counted, pools fetched from an arena and not yet set up). So the walker reads none of
/// their lists, and a pool that no surviving heap accounts for (none is its owner, lists
/// it or keeps it) is taken for one of theirs while any exists: its arena's books are
/// checked, its own are not, and its blocks are not counted in
/// [`Summary::blocks_in_use`]. Everything the surviving heaps hold is checked in full,
/// except that a full pool off its list need not await notice of a remote free: a thread
/// of the parent may have taken the notice and vanished before delivering its block.
///
/// # Safety
/// No other thread is inside the allocator, or enters it, until this returns: it reads
/// the heaps' class lists and the pools' headers, which their owners change with plain
/// stores and no lock. (Other threads may exist; they must be parked outside it.)
pub unsafe fn verify() -> Result<Summary, Failure> {
    crate::front::debug::check_quarantine()?;
    // Heaps first (registry lock), then arenas (arena lock): never both at once.
    let mut heaps = HashSet::new();
    let mut linked = HashSet::new();
    let mut kept = HashSet::new();
    let mut delayed: HashMap<usize, u64> = HashMap::new();
    let mut vanished = false;
    let mut problem = None;
    heap::each_heap_role(|h, role| {
        vanished |= role == HeapRole::Vanished;
        if problem.is_some() || role == HeapRole::Vanished {
            return;
        }
        let checked = insert(&mut heaps, h as usize).and_then(|_| {
            // SAFETY: no other thread is inside the allocator (our contract); heaps live
            // forever.
            unsafe { check_heap(h, &mut linked, &mut kept, &mut delayed) }
        });
        problem = checked.err();
    });
    if let Some(e) = problem {
        return Err(e);
    }

    let forked = heap::in_forked_child();
    let mut sum = Summary::default();
    let mut seen_linked = 0usize;
    arena::walk::<Failure>(|base, in_use| {
        sum.arenas += 1;
        for i in (0..POOLS_PER_ARENA).filter(|i| in_use >> i & 1 != 0) {
            let pool = pool::header(base, i);
            sum.pools_in_use += 1;
            // SAFETY: a pool in use of a mapped arena; the allocator is quiescent.
            let owner = unsafe { (*pool).heap() } as usize;
            let key = pool as usize;
            if vanished && !heaps.contains(&owner) && !linked.contains(&key) && !kept.contains(&key)
            {
                continue; // a vanished heap's, maybe mid-update (above)
            }
            let d = delayed.get(&key).copied().unwrap_or(0);
            // SAFETY: as above.
            let in_use = unsafe { check_pool(pool, &heaps, &linked, &kept, d, forked) }?;
            // SAFETY: as above.
            if unsafe { (*pool).linked() } {
                seen_linked += 1;
            }
            sum.blocks_in_use += in_use;
        }
        Ok(())
    })?;
    if seen_linked != linked.len() {
        return Err(Failure::Broken(format!(
            "{} pools on heap lists, {seen_linked} of them found in arenas",
            linked.len()
        )));
    }
    let counts = arena::counts();
    if counts.pools_in_use != sum.pools_in_use {
        return Err(Failure::Broken(format!(
            "{} pools in use counted, {} found",
            counts.pools_in_use, sum.pools_in_use
        )));
    }
    Ok(sum)
}

/// Checks one heap's class lists and cache, and records its linked pools, its kept empty
/// pools (cache and release batch) and its delayed blocks.
///
/// # Safety
/// `h` is a live heap and nothing changes it meanwhile.
unsafe fn check_heap(
    h: *mut Heap,
    linked: &mut HashSet<usize>,
    kept: &mut HashSet<usize>,
    delayed: &mut HashMap<usize, u64>,
) -> Result<(), Failure> {
    // SAFETY: per the caller.
    let lists = unsafe { heap::lists_of(h) };
    for (class, &(head, tail)) in lists.iter().enumerate() {
        let mut pool = head;
        let mut prev: *mut Pool = core::ptr::null_mut();
        while pool != empty_pool() && !pool.is_null() {
            // SAFETY: pools on a live heap's lists are in use.
            let p = unsafe { &*pool };
            if p.class() as usize != class
                || p.heap() != heap::owner(h)
                || !p.linked()
                || p.prev != prev
            {
                return Err(Failure::Broken(format!(
                    "heap {h:p}: pool {pool:p} misfiled on class list {class}"
                )));
            }
            if !insert(linked, pool as usize)? {
                return Err(Failure::Broken(format!(
                    "pool {pool:p} is on a class list twice"
                )));
            }
            prev = pool;
            pool = p.next;
        }
        if tail != prev {
            return Err(Failure::Broken(format!(
                "heap {h:p}: class list {class} ends at {prev:p}, its tail says {tail:p}"
            )));
        }
    }
    // SAFETY: per the caller.
    let (cache, count, releasing, nreleasing) = unsafe { heap::cache_of(h) };
    let mut n = 0;
    for (class, &head) in cache.iter().enumerate() {
        let mut pool = head;
        while !pool.is_null() {
            n += 1;
            // SAFETY: pools on a live heap's cache are in use.
            let p = unsafe { &*pool };
            if p.class() as usize != class
                || !p.cached()
                || p.linked()
                || p.used() != 0
                || !p.heap().is_null()
            {
                return Err(Failure::Broken(format!(
                    "heap {h:p}: pool {pool:p} misfiled on cache {class}"
                )));
            }
            if !insert(kept, pool as usize)? || n > count {
                return Err(Failure::Broken(format!(
                    "heap {h:p}: cache {class} loops or miscounts"
                )));
            }
            pool = p.next;
        }
    }
    if n != count {
        return Err(Failure::Broken(format!(
            "heap {h:p}: {n} pools cached, counted {count}"
        )));
    }
    for &pool in &releasing[..nreleasing] {
        // SAFETY: as above.
        let p = unsafe { &*pool };
        if !p.cached()
            || p.linked()
            || p.used() != 0
            || !p.heap().is_null()
            || !insert(kept, pool as usize)?
        {
            return Err(Failure::Broken(format!(
                "heap {h:p}: pool {pool:p} misfiled in the release batch"
            )));
        }
    }
    // SAFETY: per the caller.
    let head = unsafe { heap::delayed_of(h) };
    // SAFETY: per the caller, the delayed list holds blocks of our pools, unchanged.
    unsafe { count_delayed(h, head, delayed) }
}

/// Counts the blocks of a heap's delayed list per pool into `delayed`; a list that loops is
/// reported (as the free and remote lists are: by the blocks already seen).
///
/// # Safety
/// `b` heads a list of readable blocks that nothing changes meanwhile.
unsafe fn count_delayed(
    h: *mut Heap,
    mut b: *mut Block,
    delayed: &mut HashMap<usize, u64>,
) -> Result<(), Failure> {
    let mut seen = HashSet::new();
    while !b.is_null() {
        if !insert(&mut seen, b as usize)? {
            return Err(Failure::Broken(format!(
                "heap {h:p}: delayed list loops at {b:p}"
            )));
        }
        delayed.try_reserve(1).map_err(|_| Failure::NoMemory)?;
        *delayed.entry(pool_of(b) as usize).or_default() += 1;
        // SAFETY: per the caller.
        b = unsafe { (*b).next };
    }
    Ok(())
}

/// One bit per block of a pool (the smallest class has the most: a page of 16-byte blocks),
/// for the blocks a pool's lists hold.
type Seen = [u64; POOL_SIZE / ALIGNMENT / 64];

/// Walks a list of blocks of `pool`, checking each and marking them in `seen`.
///
/// # Safety
/// `b` heads a list of blocks the allocator keeps; nothing changes it meanwhile.
unsafe fn walk_list(
    pool: *mut Pool,
    class: usize,
    mut b: *mut Block,
    seen: &mut Seen,
    what: &str,
) -> Result<u64, Failure> {
    let mut n = 0;
    // SAFETY: per the caller nothing changes the header.
    let fresh = unsafe { (*pool).fresh };
    while !b.is_null() {
        if !is_block_start(pool, class, b as usize) {
            return Err(Failure::Broken(format!(
                "pool {pool:p}: {what} list holds {b:p}, not a block start"
            )));
        }
        if fresh != 0 && b as usize >= fresh {
            return Err(Failure::Broken(format!(
                "pool {pool:p}: {what} list holds {b:p}, a block never handed out"
            )));
        }
        let k = (b as usize - pool::page_of(pool)) / class_size(class);
        if seen[k / 64] >> (k % 64) & 1 != 0 {
            return Err(Failure::Broken(format!(
                "pool {pool:p}: block {b:p} is on the free lists twice"
            )));
        }
        seen[k / 64] |= 1 << (k % 64);
        n += 1;
        // SAFETY: `b` is a block of our pool.
        b = unsafe { (*b).next };
    }
    Ok(n)
}

/// Checks one pool in use; returns how many of its blocks are handed out.
///
/// # Safety
/// `pool` is a pool in use of a mapped arena and nothing changes it meanwhile.
unsafe fn check_pool(
    pool: *mut Pool,
    heaps: &HashSet<usize>,
    linked: &HashSet<usize>,
    kept: &HashSet<usize>,
    delayed: u64,
    forked: bool,
) -> Result<u64, Failure> {
    // SAFETY: per the caller.
    let p = unsafe { &*pool };
    let class = p.class() as usize;
    // A kept empty pool names no heap (its heap's cache lists it, checked there).
    if class >= NUM_CLASSES || (!p.cached() && !heaps.contains(&(p.heap() as usize))) {
        return Err(Failure::Broken(format!(
            "pool {pool:p}: class {class} / heap {:p} invalid",
            p.heap()
        )));
    }
    let cap = blocks_per_pool(class) as u64;
    if p.fresh_last != pool::page_of(pool) + (cap as usize - 1) * class_size(class) {
        return Err(Failure::Broken(format!(
            "pool {pool:p}: fresh_last {:#x} is not the page's last block",
            p.fresh_last
        )));
    }
    // `carve` stops only at `fresh_last` exactly: a `fresh` off the block grid or past it
    // would carve on into the next page.
    if p.fresh != 0 && !(is_block_start(pool, class, p.fresh) && p.fresh <= p.fresh_last) {
        return Err(Failure::Broken(format!(
            "pool {pool:p}: fresh {:#x} is not a block of the page",
            p.fresh
        )));
    }
    if p.cached() != kept.contains(&(pool as usize)) {
        return Err(Failure::Broken(format!(
            "pool {pool:p}: cached flag disagrees with its heap's cache"
        )));
    }
    if !p.linked() && !p.cached() && p.used() != pool::PARKED {
        return Err(Failure::Broken(format!(
            "pool {pool:p}: off its list but used is {}, not PARKED",
            p.used()
        )));
    }
    // SAFETY: as above.
    let used = u64::from(unsafe { pool::used(pool) });
    let mut seen = Seen::default();
    // SAFETY: the pool's lists hold blocks of it.
    let free = unsafe { walk_list(pool, class, p.free, &mut seen, "free") }?;
    let remote_word = p.remote.load(Ordering::Acquire);
    // SAFETY: as above.
    let remote = unsafe {
        walk_list(
            pool,
            class,
            pool::remote_list(remote_word).0,
            &mut seen,
            "remote",
        )
    }?;
    if remote_word & NOTIFY != 0 && remote != 0 {
        return Err(Failure::Broken(format!(
            "pool {pool:p}: NOTIFY set on a non-empty remote list"
        )));
    }
    let counted = u64::from(pool::remote_list(remote_word).1);
    if counted != remote {
        return Err(Failure::Broken(format!(
            "pool {pool:p}: remote list of {remote} blocks counted as {counted}"
        )));
    }
    // SAFETY: as above.
    let uncarved = unsafe { pool::uncarved(pool, class) } as u64;
    if free + used + uncarved != cap {
        return Err(Failure::Broken(format!(
            "pool {pool:p}: {free} free + {used} used + {uncarved} uncarved != {cap} blocks"
        )));
    }
    if remote + delayed > used {
        return Err(Failure::Broken(format!(
            "pool {pool:p}: {remote} remote + {delayed} delayed > {used} used"
        )));
    }
    if p.linked() != linked.contains(&(pool as usize)) {
        return Err(Failure::Broken(format!(
            "pool {pool:p}: linked flag disagrees with its heap's lists"
        )));
    }
    if p.cached() && (used != 0 || remote != 0 || delayed != 0) {
        return Err(Failure::Broken(format!(
            "pool {pool:p}: kept empty, but {used} blocks are in use"
        )));
    }
    // A full pool off its list awaits notice of a remote free; in a child after `fork`, a
    // vanished thread may have taken the notice and never delivered its block (see `fork`).
    let notice = remote_word & NOTIFY != 0 || delayed != 0 || forked;
    if !p.linked() && !p.cached() && (free != 0 || p.fresh != 0 || !notice) {
        return Err(Failure::Broken(format!(
            "pool {pool:p}: off its list but neither full nor awaiting notice"
        )));
    }
    Ok(used - remote - delayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two blocks on the stack, `b` linked to `a`; `a` linked back to `b` if `looped`.
    fn run(looped: bool) -> (Result<(), Failure>, u64) {
        let mut blocks = [
            Block {
                next: core::ptr::null_mut(),
            },
            Block {
                next: core::ptr::null_mut(),
            },
        ];
        let a: *mut Block = &mut blocks[0];
        // SAFETY: both blocks are on the stack, alive for the whole function.
        unsafe {
            let b = a.add(1);
            (*b).next = a;
            if looped {
                (*a).next = b;
            }
            let mut delayed = HashMap::new();
            let r = count_delayed(core::ptr::null_mut(), b, &mut delayed);
            (r, delayed.values().sum())
        }
    }

    #[test]
    fn a_looped_delayed_list_is_reported() {
        assert!(format!("{}", run(true).0.unwrap_err()).contains("delayed list loops"));
    }

    #[test]
    fn a_delayed_list_is_counted() {
        assert_eq!(run(false), (Ok(()), 2));
    }
}

//! Statistics: what the allocator holds, as a C struct (`pymalloc_get_stats`) and as text
//! laid out like CPython's `sys._debugmallocstats()` (`pymalloc_print_stats`).
//!
//! Counts come from the arena counters and a walk over every pool in use under the arena
//! lock: nothing is counted on the allocation and free paths. Pools of other threads are read while those threads run, so per-class figures are
//! a snapshot that may be off by the blocks in flight; blocks freed remotely and not yet
//! taken back by their owner count as in use.

use crate::allocator::arena;
use crate::allocator::geometry::{
    blocks_per_pool, class_size, NUM_CLASSES, POOLS_PER_ARENA, POOL_SIZE,
};
use crate::allocator::heap::HeapRole;
use crate::allocator::pool;
use alloc::vec::Vec;
use core::fmt::{self, Write};

pub mod figures;

pub use figures::{
    large_count, occupancy_bin, resident_pools, ClassStats, HeapFigures, Stats, OCCUPANCY_BINS,
};

/// One heap: what it is and what it holds (`pymalloc_get_heap_stats`, the report's per-heap
/// table).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapStats {
    /// What the heap is: 0 a running thread's; 1 abandoned (its thread exited, waiting for a
    /// new thread); 2 the shared heap (exited threads' late allocations, debug mode); 3 the
    /// interpreter heap (every call CPython makes under the GIL); 4 vanished (its thread did
    /// not survive a `fork`).
    pub role: u32,
    /// What it holds.
    pub figures: HeapFigures,
}

impl HeapStats {
    /// The role's name, as the report prints it ("?" for a number no role has).
    pub fn role_name(&self) -> &'static str {
        HeapRole::ALL
            .get(self.role as usize)
            .map_or("?", |r| r.name())
    }
}

/// Takes a snapshot. Allocates nothing, so it works when memory has run out.
pub fn collect() -> Stats {
    gather(false).0
}

/// Takes a snapshot, with the per-heap summary (oldest heap first); the summary is `None`
/// when no memory could be had for it (the snapshot is whole all the same).
pub fn collect_with_heaps() -> (Stats, Option<Vec<HeapStats>>) {
    gather(true)
}

/// [`collect`], and the per-heap summary if `per_heap` and memory allows.
fn gather(per_heap: bool) -> (Stats, Option<Vec<HeapStats>>) {
    let mut s = Stats::empty();
    // The heaps' addresses and their shares, newest first.
    let mut heaps: Option<(Vec<usize>, Vec<HeapStats>)> = per_heap.then(Default::default);
    crate::allocator::heap::each_heap_role(|h, role| {
        s.heaps += 1;
        s.heaps_abandoned += u64::from(role == HeapRole::Abandoned);
        if let Some((addrs, shares)) = &mut heaps {
            if addrs.try_reserve(1).is_err() || shares.try_reserve(1).is_err() {
                heaps = None;
                return;
            }
            addrs.push(h as usize);
            shares.push(HeapStats {
                role: role as u32,
                figures: HeapFigures {
                    // SAFETY: heaps are never freed.
                    pools_kept: u64::from(unsafe { crate::allocator::heap::kept_of(h) }),
                    ..HeapFigures::default()
                },
            });
        }
    });
    // The arena-level checks of `walk` hold under its lock; pools are only read.
    let _ = arena::walk::<alloc::string::String>(|base, in_use| {
        for i in 0..POOLS_PER_ARENA {
            if in_use >> i & 1 != 0 {
                // SAFETY: a pool in use of a mapped arena; the arena lock keeps it mapped.
                let (class, used, heap) = unsafe { pool::snapshot(pool::header(base, i)) };
                // SAFETY: as above.
                if unsafe { pool::is_cached(pool::header(base, i)) } {
                    // Kept empty for reuse: serves no class now (its own line).
                    s.pools_cached += 1;
                    continue;
                }
                if let Some(used) = s.add_pool(class, used) {
                    if let Some((addrs, shares)) = &mut heaps {
                        if let Some(k) = addrs.iter().position(|&h| h == heap) {
                            shares[k].figures.add_pool(class, used);
                        }
                    }
                }
            }
        }
        Ok(())
    });
    let counts = arena::counts();
    s.arenas_allocated_total = counts.allocated_total;
    s.arenas_reclaimed = counts.reclaimed;
    s.arenas_highwater = counts.highwater;
    s.arenas_current = counts.current;
    s.pools_in_use = counts.pools_in_use;
    s.pools_free = counts.pools_free;
    s.pools_returned = counts.pools_decommitted;
    s.large_in_use = large_count(
        crate::allocator::fallback::in_use_global()
            .wrapping_add(crate::allocator::heap::large_in_heaps()) as usize,
    );
    s.finish();
    let per_heap = heaps.map(|(_, mut shares)| {
        shares.reverse();
        shares
    });
    (s, per_heap)
}

/// Addresses looked up per hold of the arena lock by [`attribute`] (so that a thread
/// needing a pool waits for at most a few hundred microseconds).
const ATTRIBUTE_CHUNK: usize = 4096;

/// What `pymalloc_attribute` ([`attribute`]) counts for one group of addresses (objects).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GroupStats {
    /// Addresses of the group that lie in our pools in use.
    pub objects: u64,
    /// The bytes of their blocks (each block's class size).
    pub live_bytes: u64,
    /// *Sparse* pools (at most half of their blocks in use) that hold
    /// at least one of them: what they pin; a pool shared by several groups counts in each.
    pub pools: u64,
    /// The group's share of the bytes stranded in the pools its blocks lie in: each pool's
    /// stranded bytes (4096 minus its blocks in use times the class size) shared out
    /// equally among the pool's blocks in use. The shares of all groups, plus those of the
    /// blocks no address names, add up to the bytes stranded in pools in use.
    pub stranded_bytes: f64,
}

/// Whether a pool with `used` of its `capacity` blocks in use counts as sparse: at most
/// half of its blocks in use.
pub const fn is_sparse(used: u64, capacity: u64) -> bool {
    used * 2 <= capacity
}

/// Attributes pools to groups of addresses (for `pymalloc_rs.pinning()`: the objects of a
/// Python process, grouped by type or by allocation site): `addrs[i]` belongs to group
/// `groups[i]`, an index into `out`; for each address inside a block of a pool in use (any
/// byte of the block), its group's [`GroupStats`] are added to. Addresses whose group is
/// out of range, and addresses in no pool of ours, are skipped; an address given twice in
/// one group counts once (a caller may pass what it enumerated without removing repeats),
/// two addresses in one block count twice. `scratch` (two values per address) receives the pairs, sorted
/// by pool, then group: nothing is allocated. Returns how many addresses lie in our pools.
///
/// Reads only pool headers (nothing is counted on the allocation paths): each pool's
/// figures are a snapshot taken under the arena lock, which is held for
/// `ATTRIBUTE_CHUNK` (4096) addresses at a time.
///
/// # Panics
/// When `groups` and `scratch` do not match `addrs` in length.
pub fn attribute(
    addrs: &[usize],
    groups: &[u32],
    scratch: &mut [[u64; 2]],
    out: &mut [GroupStats],
) -> usize {
    assert!(groups.len() == addrs.len() && scratch.len() == addrs.len());
    for ((row, &addr), &group) in scratch.iter_mut().zip(addrs).zip(groups) {
        *row = [addr as u64, u64::from(group)];
    }
    let rows = scratch;
    let groups = out;
    let pool_mask = !(crate::allocator::geometry::POOL_MASK as u64);
    rows.sort_unstable_by_key(|&[addr, group]| (addr & pool_mask, group, addr));
    let mut found = 0;
    // The previous row: repeats are adjacent.
    let mut previous = None;
    // The last (pool, group) pair counted in `pools`: rows of one pair are adjacent.
    let mut last = (0, u64::MAX);
    for chunk in rows.chunks(ATTRIBUTE_CHUNK) {
        arena::with_pools_in_use(|in_use| {
            for &[addr, group] in chunk {
                if previous.replace([addr, group]) == Some([addr, group]) {
                    continue;
                }
                let Some(g) = usize::try_from(group).ok().and_then(|g| groups.get_mut(g)) else {
                    continue;
                };
                if !in_use(addr as usize) {
                    continue;
                }
                // SAFETY: a pool in use of a mapped arena, kept so by the lock.
                let (class, used, _) = unsafe { pool::snapshot(pool::pool_of(addr as *const u8)) };
                if class >= NUM_CLASSES {
                    continue;
                }
                let (size, capacity) = (class_size(class) as u64, blocks_per_pool(class) as u64);
                // A block of ours is in use, so its pool holds at least one.
                let used = used.clamp(1, capacity);
                found += 1;
                g.objects += 1;
                g.live_bytes += size;
                g.stranded_bytes += (POOL_SIZE as u64 - used * size) as f64 / used as f64;
                if is_sparse(used, capacity) && last != (addr & pool_mask, group) {
                    g.pools += 1;
                }
                last = (addr & pool_mask, group);
            }
        });
    }
    found
}

/// Blocks handed out from pools (what `sys.getallocatedblocks()` reports).
pub fn blocks_in_use() -> u64 {
    collect().classes.iter().map(|c| c.blocks_in_use).sum()
}

/// Text on its way to a file descriptor through a buffer on the stack: the report is
/// written without allocating. A write that fails (the descriptor closed) fails the rest.
struct ToFd {
    fd: i32,
    buf: [u8; 4096],
    len: usize,
}

impl ToFd {
    fn flush(&mut self) -> fmt::Result {
        let ok = crate::allocator::fault::write_all(self.fd, &self.buf[..self.len]);
        self.len = 0;
        ok.then_some(()).ok_or(fmt::Error)
    }
}

impl Write for ToFd {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush()?;
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
        Ok(())
    }
}

/// The report ([`figures::report`]) of `s` and the per-heap summary `heaps`.
pub fn report(o: &mut impl Write, s: &Stats, heaps: Option<&[HeapStats]>) -> fmt::Result {
    figures::report(
        o,
        s,
        heaps.map(|h| h.iter().map(|h| (h.role_name(), h.figures))),
    )
}

/// Writes the report to file descriptor `fd`. It needs memory only for the per-heap table,
/// which is left out when none can be had.
pub fn print(fd: i32) {
    let (stats, heaps) = collect_with_heaps();
    let mut out = ToFd {
        fd,
        buf: [0; 4096],
        len: 0,
    };
    if report(&mut out, &stats, heaps.as_deref()).is_ok() {
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_heap_shows_its_partly_filled_full_and_kept_pools() {
        // A thread of its own, so that its heap holds exactly this: 2 full pools of 512-byte
        // blocks (8 a pool), one with 4 in use, and the pools fetched with them, kept.
        let per_pool = blocks_per_pool(31);
        let (blocks, shares) = std::thread::spawn(move || {
            let blocks: Vec<usize> = (0..2 * per_pool + 4)
                .map(|_| crate::front::api::malloc(512) as usize)
                .collect();
            (blocks, collect_with_heaps().1.unwrap())
        })
        .join()
        .unwrap();
        let mine = shares.iter().find(|h| {
            h.figures.pools_full == 2
                && h.figures.pools_partly_filled == 1
                && h.figures.blocks_in_use == 2 * per_pool as u64 + 4
        });
        let mine = mine.unwrap_or_else(|| panic!("no heap holds the blocks: {shares:?}"));
        assert_eq!(mine.role_name(), "active");
        assert_eq!(mine.figures.bytes_in_use, mine.figures.blocks_in_use * 512);
        assert!(
            mine.figures.pools_kept > 0,
            "the batch's other pools: {mine:?}"
        );
        for p in blocks {
            // SAFETY: live blocks of ours (freed remotely: their thread has exited).
            unsafe { crate::front::api::free(p as *mut u8) };
        }
    }

    #[test]
    fn report_has_cpythons_lines() {
        let p = crate::front::api::malloc(100);
        let (stats, heaps) = collect_with_heaps();
        let mut text = alloc::string::String::new();
        report(&mut text, &stats, heaps.as_deref()).unwrap();
        // SAFETY: a live block.
        unsafe { crate::front::api::free(p) };
        for needle in [
            "Small block threshold = 512, in 32 size classes.",
            "class   size   num pools   blocks in use  avail blocks",
            "# arenas allocated total",
            "# arenas reclaimed",
            "# arenas highwater mark",
            "# arenas allocated current",
            "# bytes in allocated blocks",
            "# bytes in available blocks",
            "# bytes lost to pool headers",
            "# bytes lost to quantization",
            "Total",
            "Pools by blocks in use, in tenths of a pool",
            "class   size   num pools   <10%   10%   20%",
            "# bytes resident in arenas",
            "# bytes stranded in pools in use",
            "# bytes stranded in total",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(
            text.lines().any(|l| l.starts_with("    6    112 ")),
            "{text}"
        );
    }
}

//! Statistics: what the allocator holds, as a C struct (`pymalloc_get_stats`) and as text
//! laid out like CPython's `sys._debugmallocstats()` (`pymalloc_print_stats`).
//!
//! Counts come from the arena counters and a walk over every pool in use under the arena
//! lock: nothing is counted on the allocation and free paths. Pools of other threads are read while those threads run, so per-class figures are
//! a snapshot that may be off by the blocks in flight; blocks freed remotely and not yet
//! taken back by their owner count as in use.

use crate::allocator::arena;
use crate::allocator::geometry::{
    blocks_per_pool, class_size, ARENA_SIZE, NUM_CLASSES, POOLS_PER_ARENA, POOL_HEADER_SIZE,
    POOL_SIZE, SMALL_REQUEST_THRESHOLD,
};
use crate::allocator::heap::HeapRole;
use crate::allocator::pool;
use alloc::vec::Vec;
use core::fmt::{self, Write};

/// Per size class figures.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Block size of the class.
    pub size: u64,
    /// Pools serving the class (not the empty ones kept for reuse: `pools_cached`).
    pub pools: u64,
    /// Blocks handed out.
    pub blocks_in_use: u64,
    /// Free blocks in those pools (carved or not).
    pub blocks_free: u64,
    /// The class's pools by occupancy, in tenths: `occupancy[k]` counts the pools whose
    /// blocks in use are at least `k / 10` and less than `(k + 1) / 10` of the blocks a pool
    /// of the class holds (`blocks_per_pool`); full pools count in `occupancy[9]`, pools
    /// with no block in use in `occupancy[0]`. Sums to `pools`. (10 bins: `OCCUPANCY_BINS`.)
    pub occupancy: [u64; 10],
    /// Bytes *stranded* in the class's pools: the pages of those `occupancy` counts (4096
    /// bytes each, all resident: a pool in use is never decommitted) minus the bytes of the
    /// blocks in use
    /// (`blocks_in_use * size`): free blocks, the never-carved rest and the remainder a
    /// class size leaves at a page's end. What sparse pools cost beyond their live data.
    pub bytes_stranded: u64,
}

/// Occupancy bins per class in [`ClassStats::occupancy`]: tenths.
pub const OCCUPANCY_BINS: usize = 10;

/// The [`ClassStats::occupancy`] bin of a pool with `used` of its `capacity` blocks in use.
pub const fn occupancy_bin(used: u64, capacity: u64) -> usize {
    let k = (used * OCCUPANCY_BINS as u64 / capacity) as usize;
    if k < OCCUPANCY_BINS {
        k
    } else {
        OCCUPANCY_BINS - 1
    }
}

/// Everything `pymalloc_get_stats` reports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Arenas mapped since start.
    pub arenas_allocated_total: u64,
    /// Arenas unmapped since start.
    pub arenas_reclaimed: u64,
    /// Most arenas mapped at once.
    pub arenas_highwater: u64,
    /// Arenas mapped now.
    pub arenas_current: u64,
    /// Pools owned by a heap.
    pub pools_in_use: u64,
    /// Free pools in mapped arenas (returned ones included).
    pub pools_free: u64,
    /// Free pools whose memory was returned to the OS.
    pub pools_returned: u64,
    /// Empty pools the thread heaps keep for reuse (part of
    /// `pools_in_use`; see "Empty pools" in the heap's documentation).
    pub pools_cached: u64,
    /// Bytes in blocks handed out (class sizes).
    pub bytes_in_use: u64,
    /// Bytes of address space in arenas.
    pub bytes_mapped: u64,
    /// Blocks the fallback allocator served for us and not yet freed: requests of 0 or over
    /// 512 bytes, and pool-sized ones when no arena could be mapped.
    pub large_in_use: u64,
    /// Thread heaps ever made (each is reused after its thread exits).
    pub heaps: u64,
    /// Heaps whose thread exited, waiting for a new thread.
    pub heaps_abandoned: u64,
    /// Bytes of the arenas' pages not given back to the OS: pools in use, free pools not
    /// returned, and each arena's header page:
    /// `(pools_in_use + pools_free - pools_returned + arenas_current) * 4096`. The arenas'
    /// share of the resident set, at most: a page never touched since its arena was mapped
    /// (a pool a heap fetched and has not carved from yet) counts though not yet resident.
    pub bytes_resident: u64,
    /// `bytes_resident - bytes_in_use`: resident but holding no live block. The sum of the
    /// classes' `bytes_stranded`, plus the empty pools kept by heaps, the free pools not
    /// returned yet (only with `PYMALLOC_DECAY_MS=-1`, until `pymalloc_trim`) and the
    /// header pages.
    pub bytes_stranded: u64,
    /// Per size class (32, `NUM_CLASSES`; a literal so that the C header spells it).
    pub classes: [ClassStats; 32],
}

const _: () = assert!(NUM_CLASSES == 32 && OCCUPANCY_BINS == 10);

/// One heap's share, for the per-heap summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapStats {
    pub role: HeapRole,
    pub pools: u64,
    pub blocks_in_use: u64,
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
    let mut s = Stats::default();
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
                role,
                pools: 0,
                blocks_in_use: 0,
            });
        }
    });
    for (c, cs) in s.classes.iter_mut().enumerate() {
        cs.size = class_size(c) as u64;
    }
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
                if class < NUM_CLASSES {
                    let cs = &mut s.classes[class];
                    let capacity = blocks_per_pool(class) as u64;
                    let used = used.min(capacity);
                    cs.pools += 1;
                    cs.blocks_in_use += used;
                    cs.blocks_free += capacity - used;
                    cs.occupancy[occupancy_bin(used, capacity)] += 1;
                    if let Some((addrs, shares)) = &mut heaps {
                        if let Some(k) = addrs.iter().position(|&h| h == heap) {
                            shares[k].pools += 1;
                            shares[k].blocks_in_use += used;
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
    s.bytes_mapped = counts.current * ARENA_SIZE as u64;
    for c in s.classes.iter_mut() {
        let serving: u64 = c.occupancy.iter().sum();
        c.bytes_stranded =
            (resident_pools(serving) * POOL_SIZE as u64).saturating_sub(c.blocks_in_use * c.size);
    }
    s.bytes_in_use = s.classes.iter().map(|c| c.blocks_in_use * c.size).sum();
    s.bytes_resident = (resident_pools(s.pools_in_use) + s.pools_free - s.pools_returned
        + s.arenas_current)
        * POOL_SIZE as u64;
    // Saturating: the per-class figures are a snapshot taken while other threads run.
    s.bytes_stranded = s.bytes_resident.saturating_sub(s.bytes_in_use);
    // Frees of blocks allocated before we were installed can drive the sum below 0: 0.
    s.large_in_use = (crate::allocator::fallback::in_use_global()
        .wrapping_add(crate::allocator::heap::large_in_heaps()))
    .max(0) as u64;
    let per_heap = heaps.map(|(_, mut shares)| {
        shares.reverse();
        shares
    });
    (s, per_heap)
}

/// Of `pools` pools in use, those whose page is resident: all of them, as a pool in use is
/// never decommitted (the arena's decommitted set lies within its free set). The one place
/// that rule is used: if a heap comes to hold decommitted pools, count them out here.
pub const fn resident_pools(pools: u64) -> u64 {
    pools
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

/// A number with thousands separators, as CPython writes them (padded as a `str` is).
struct Grouped(u64);

impl fmt::Display for Grouped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // u64::MAX has 20 digits: 26 characters with its separators.
        let mut buf = [0u8; 26];
        let (mut i, mut n, mut digits) = (buf.len(), self.0, 0);
        loop {
            if digits > 0 && digits % 3 == 0 {
                i -= 1;
                buf[i] = b',';
            }
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            digits += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        f.pad(core::str::from_utf8(&buf[i..]).map_err(|_| fmt::Error)?)
    }
}

/// One line of the report's totals: the label padded to 35 columns, then the number.
fn line(o: &mut impl Write, label: fmt::Arguments<'_>, n: u64) -> fmt::Result {
    // `Arguments` ignores a width: the label is measured and padded by hand.
    let mut width = Width(0);
    let _ = width.write_fmt(label);
    o.write_fmt(label)?;
    writeln!(
        o,
        "{:pad$}= {:>20}",
        "",
        Grouped(n),
        pad = 35usize.saturating_sub(width.0)
    )
}

/// Counts the characters written to it.
struct Width(usize);

impl Write for Width {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.chars().count();
        Ok(())
    }
}

/// The report, laid out like CPython's `_PyObject_DebugMallocStats`, then a line per heap
/// (when `heaps` is `None`, a line saying the per-heap table was left out for want of
/// memory). Fails only when `o` does.
pub fn report(o: &mut impl Write, s: &Stats, heaps: Option<&[HeapStats]>) -> fmt::Result {
    writeln!(
        o,
        "Small block threshold = {SMALL_REQUEST_THRESHOLD}, in {NUM_CLASSES} size classes.\n"
    )?;
    o.write_str("class   size   num pools   blocks in use  avail blocks\n")?;
    o.write_str("-----   ----   ---------   -------------  ------------\n")?;
    for (i, c) in s.classes.iter().enumerate() {
        if c.pools > 0 {
            writeln!(
                o,
                "{i:5} {:6} {:11} {:15} {:13}",
                c.size, c.pools, c.blocks_in_use, c.blocks_free
            )?;
        }
    }
    o.write_str("\n")?;
    occupancy_table(o, s)?;
    o.write_str("\n")?;
    line(
        o,
        format_args!("# arenas allocated total"),
        s.arenas_allocated_total,
    )?;
    line(o, format_args!("# arenas reclaimed"), s.arenas_reclaimed)?;
    line(
        o,
        format_args!("# arenas highwater mark"),
        s.arenas_highwater,
    )?;
    line(
        o,
        format_args!("# arenas allocated current"),
        s.arenas_current,
    )?;
    line(
        o,
        format_args!("{} arenas * {ARENA_SIZE} bytes/arena", s.arenas_current),
        s.bytes_mapped,
    )?;
    o.write_str("\n")?;
    let free_bytes: u64 = s.classes.iter().map(|c| c.blocks_free * c.size).sum();
    // Pool headers live in each arena's header page (its header table): the arena header
    // line counts the rest of that pool.
    let headers = s.pools_in_use * POOL_HEADER_SIZE as u64;
    let arena_headers = s.arenas_current * POOL_SIZE as u64 - headers;
    // Saturating: the per-class figures are a snapshot taken while other threads run.
    let kept = s.pools_cached * POOL_SIZE as u64;
    let quantization = ((s.pools_in_use * POOL_SIZE as u64).saturating_sub(kept))
        .saturating_sub(s.bytes_in_use + free_bytes);
    let unused = s.pools_free - s.pools_returned;
    line(
        o,
        format_args!("# bytes in allocated blocks"),
        s.bytes_in_use,
    )?;
    line(o, format_args!("# bytes in available blocks"), free_bytes)?;
    line(
        o,
        format_args!("{unused} unused pools * {POOL_SIZE} bytes"),
        unused * POOL_SIZE as u64,
    )?;
    line(
        o,
        format_args!("{} returned pools * {POOL_SIZE} bytes", s.pools_returned),
        s.pools_returned * POOL_SIZE as u64,
    )?;
    line(
        o,
        format_args!("{} kept empty pools * {POOL_SIZE} bytes", s.pools_cached),
        kept,
    )?;
    line(o, format_args!("# bytes lost to pool headers"), headers)?;
    line(
        o,
        format_args!("# bytes lost to arena headers"),
        arena_headers,
    )?;
    line(
        o,
        format_args!("# bytes lost to quantization"),
        quantization,
    )?;
    line(
        o,
        format_args!("Total"),
        s.bytes_in_use
            + free_bytes
            + s.pools_free * POOL_SIZE as u64
            + kept
            + headers
            + arena_headers
            + quantization,
    )?;
    o.write_str("\n")?;
    let in_pools: u64 = s.classes.iter().map(|c| c.bytes_stranded).sum();
    line(
        o,
        format_args!("# bytes resident in arenas"),
        s.bytes_resident,
    )?;
    line(
        o,
        format_args!("# bytes stranded in pools in use"),
        in_pools,
    )?;
    line(
        o,
        format_args!("# bytes stranded in total"),
        s.bytes_stranded,
    )?;
    o.write_str("\n")?;
    line(o, format_args!("# thread heaps"), s.heaps)?;
    line(
        o,
        format_args!("# thread heaps abandoned"),
        s.heaps_abandoned,
    )?;
    line(
        o,
        format_args!("# large blocks in use (fallback)"),
        s.large_in_use,
    )?;
    match heaps {
        None => o.write_str("\n(per-heap table left out: no memory for it)\n")?,
        Some([]) => {}
        Some(heaps) => {
            o.write_str("\nheap   role        pools   blocks in use\n----   ---------   -----   -------------\n")?;
            for (i, h) in heaps.iter().enumerate() {
                let role = match h.role {
                    HeapRole::Active => "active",
                    HeapRole::Abandoned => "abandoned",
                    HeapRole::Shared => "shared",
                    HeapRole::Vanished => "vanished",
                };
                writeln!(o, "{i:4}   {role:<9} {:7} {:15}", h.pools, h.blocks_in_use)?;
            }
        }
    }
    Ok(())
}

/// The occupancy section: per class, its pools by tenths of their blocks in use (see
/// [`ClassStats::occupancy`]) and the bytes stranded in them, in the per-class table's
/// layout.
fn occupancy_table(o: &mut impl Write, s: &Stats) -> fmt::Result {
    o.write_str("Pools by blocks in use, in tenths of a pool (column 10% = 10% to 19.9%;\n")?;
    o.write_str("empty pools kept by heaps not counted):\n\n")?;
    o.write_str("class   size   num pools ")?;
    // The first column's pools are nearly all not empty (kept empty pools are left out):
    // "<10%", as "0%" read as empty.
    o.write_str("  <10%")?;
    for k in 1..OCCUPANCY_BINS {
        write!(o, "{:>5}%", k * 100 / OCCUPANCY_BINS)?;
    }
    o.write_str("   bytes stranded\n-----   ----   --------- ")?;
    for _ in 0..OCCUPANCY_BINS {
        o.write_str(" -----")?;
    }
    o.write_str("   --------------\n")?;
    for (i, c) in s.classes.iter().enumerate() {
        if c.pools > 0 {
            write!(
                o,
                "{i:5} {:6} {:11} ",
                c.size,
                c.occupancy.iter().sum::<u64>()
            )?;
            for n in c.occupancy {
                write!(o, "{n:6}")?;
            }
            writeln!(o, " {:16}", c.bytes_stranded)?;
        }
    }
    Ok(())
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
    fn numbers_are_grouped_like_cpython() {
        let grouped = |n| format!("{}", Grouped(n));
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(20971520), "20,971,520");
        assert_eq!(grouped(u64::MAX), "18,446,744,073,709,551,615");
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

//! The statistics' figures and their text, with no dependency but the geometry: the
//! `pymalloc` command, which reads a running process's pool headers from outside
//! (`pymalloc inspect`, docs/decisions.md#pymalloc-inspect-reads-a-running-process),
//! compiles this same file, so that its figures and its report are the library's own (the
//! command does not link the library).

use crate::allocator::geometry::{
    blocks_per_pool, class_size, ARENA_SIZE, NUM_CLASSES, POOL_HEADER_SIZE, POOL_SIZE,
    SMALL_REQUEST_THRESHOLD,
};
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

/// What one heap holds (`pymalloc_get_heap_stats`, the report's per-heap table): the pools
/// it owns, partly filled, full and kept empty, and its blocks in use. What it holds beyond
/// its live blocks is the partly filled pools' free room and the kept pools.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapFigures {
    /// Pools serving a class with blocks free (carved or not).
    pub pools_partly_filled: u64,
    /// Pools serving a class with every block in use.
    pub pools_full: u64,
    /// Empty pools kept for reuse: emptied ones and those fetched from the arenas in a batch
    /// and not used yet (part of `pymalloc_stats.pools_cached`).
    pub pools_kept: u64,
    /// Blocks handed out from its pools (blocks freed by other threads and not yet taken
    /// back count as in use).
    pub blocks_in_use: u64,
    /// Their bytes, at their class size.
    pub bytes_in_use: u64,
}

impl HeapFigures {
    /// Counts a pool of the heap serving `class` with `used` blocks in use, as counted by
    /// [`Stats::add_pool`] (which has checked the class).
    pub fn add_pool(&mut self, class: usize, used: u64) {
        if used >= blocks_per_pool(class) as u64 {
            self.pools_full += 1;
        } else {
            self.pools_partly_filled += 1;
        }
        self.blocks_in_use += used;
        self.bytes_in_use += used * class_size(class) as u64;
    }
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

impl Stats {
    /// Nothing counted yet; each class's size set.
    pub fn empty() -> Stats {
        let mut s = Stats::default();
        for (c, cs) in s.classes.iter_mut().enumerate() {
            cs.size = crate::allocator::geometry::class_size(c) as u64;
        }
        s
    }

    /// Counts a pool in use serving `class` with `used` blocks in use (a snapshot: at most
    /// the pool's capacity is counted), and returns the blocks counted; `None`, counting
    /// nothing, for a class out of range (a damaged or torn header).
    pub fn add_pool(&mut self, class: usize, used: u64) -> Option<u64> {
        let cs = self.classes.get_mut(class)?;
        let capacity = blocks_per_pool(class) as u64;
        let used = used.min(capacity);
        cs.pools += 1;
        cs.blocks_in_use += used;
        cs.blocks_free += capacity - used;
        cs.occupancy[occupancy_bin(used, capacity)] += 1;
        Some(used)
    }

    /// Derives the byte figures from the pools counted ([`Stats::add_pool`],
    /// `pools_cached`) and the arena counters, which the caller has set.
    pub fn finish(&mut self) {
        self.bytes_mapped = self.arenas_current * ARENA_SIZE as u64;
        for c in self.classes.iter_mut() {
            let serving: u64 = c.occupancy.iter().sum();
            c.bytes_stranded = (resident_pools(serving) * POOL_SIZE as u64)
                .saturating_sub(c.blocks_in_use * c.size);
        }
        self.bytes_in_use = self.classes.iter().map(|c| c.blocks_in_use * c.size).sum();
        // Saturating here and below: the per-class figures are a snapshot taken while
        // other threads run (or, from outside, a torn read).
        self.bytes_resident = resident_pools(self.pools_in_use)
            .saturating_add(self.pools_free)
            .saturating_sub(self.pools_returned)
            .saturating_add(self.arenas_current)
            .saturating_mul(POOL_SIZE as u64);
        self.bytes_stranded = self.bytes_resident.saturating_sub(self.bytes_in_use);
    }
}

/// `large_in_use` from the wrapping sum of the fallback's and the heaps' counts of large
/// blocks: frees of blocks allocated before we were installed can drive the sum below 0,
/// which counts as 0.
pub const fn large_count(sum: usize) -> u64 {
    if (sum as isize) < 0 {
        0
    } else {
        sum as u64
    }
}

/// Of `pools` pools in use, those whose page is resident: all of them, as a pool in use is
/// never decommitted (the arena's decommitted set lies within its free set). The one place
/// that rule is used: if a heap comes to hold decommitted pools, count them out here.
pub const fn resident_pools(pools: u64) -> u64 {
    pools
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
/// (`heaps`: each heap's role, pools and blocks in use, oldest first; when `None`, a line
/// saying the per-heap table was left out for want of memory). Fails only when `o` does.
pub fn report<'a>(
    o: &mut impl Write,
    s: &Stats,
    heaps: Option<impl IntoIterator<Item = (&'a str, HeapFigures)>>,
) -> fmt::Result {
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
    let Some(heaps) = heaps else {
        return o.write_str("\n(per-heap table left out: no memory for it)\n");
    };
    for (i, (role, h)) in heaps.into_iter().enumerate() {
        if i == 0 {
            o.write_str("\nheap   role          partly filled    full    kept   blocks in use\n")?;
            o.write_str("----   -----------   -------------   -----   -----   -------------\n")?;
        }
        writeln!(
            o,
            "{i:4}   {role:<11} {:15} {:7} {:7} {:15}",
            h.pools_partly_filled, h.pools_full, h.pools_kept, h.blocks_in_use
        )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_like_cpython() {
        let grouped = |n| {
            let mut s = alloc::string::String::new();
            write!(s, "{}", Grouped(n)).unwrap();
            s
        };
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(20971520), "20,971,520");
        assert_eq!(grouped(u64::MAX), "18,446,744,073,709,551,615");
    }
}

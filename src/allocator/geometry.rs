//! Size classes and geometry: every constant that fixes the shape of the heap lives here.
//!
//! An *arena* is a 256 KiB mapping aligned to its own size, so `addr & !ARENA_MASK` is the
//! arena that contains `addr`. It is cut into 64 pages of 4 KiB; one, the *header page*,
//! holds the arena header and the table of pool headers, and the 63 others are *pools* that
//! serve blocks, every byte of their page. Which page holds the headers depends on
//! the arena ([`header_page_index`]). A pool serves one *size class* at a time: class
//! `i` hands out blocks of `(i + 1) * 16` bytes, so requests of 1..=512 bytes map to the 32
//! classes by `(n - 1) >> 4`, exactly as CPython's pymalloc does.

/// log2 of the arena size.
pub const ARENA_SHIFT: u32 = 18;
/// Bytes in one arena (256 KiB).
pub const ARENA_SIZE: usize = 1 << ARENA_SHIFT;
/// `addr & ARENA_MASK` is the offset of `addr` inside its arena.
pub const ARENA_MASK: usize = ARENA_SIZE - 1;

/// log2 of the pool size.
pub const POOL_SHIFT: u32 = 12;
/// Bytes in one pool (4 KiB, one page).
pub const POOL_SIZE: usize = 1 << POOL_SHIFT;
/// `addr & POOL_MASK` is the offset of `addr` inside its pool.
pub const POOL_MASK: usize = POOL_SIZE - 1;
/// Pages per arena, the header page included.
pub const POOLS_PER_ARENA: usize = ARENA_SIZE / POOL_SIZE;

/// Every block is aligned to this, and every class size is a multiple of it.
pub const ALIGNMENT: usize = 16;
/// log2 of [`ALIGNMENT`].
pub const ALIGNMENT_SHIFT: u32 = 4;
/// The largest request served from a pool; larger ones go to the fallback allocator.
pub const SMALL_REQUEST_THRESHOLD: usize = 512;
/// Number of size classes.
pub const NUM_CLASSES: usize = SMALL_REQUEST_THRESHOLD / ALIGNMENT;

/// The page of the arena based at `base` that holds its headers: the arena's number modulo
/// 64, so that consecutive arenas keep their headers at different page offsets.
///
/// Why not always page 0: in 256 KiB-aligned arenas every page 0 maps to the same 64 L2
/// sets (docs/decisions.md#the-header-page-moves-from-arena-to-arena).
#[inline(always)]
pub const fn header_page_index(base: usize) -> usize {
    (base >> ARENA_SHIFT) & (POOLS_PER_ARENA - 1)
}

/// The address of the header page (the table of headers) of the arena based at `base`.
#[inline(always)]
pub const fn header_table(base: usize) -> usize {
    base + (header_page_index(base) << POOL_SHIFT)
}

/// The set of an arena's pools as bits of a `u64` (bit `i`: page `i`): every page but the
/// header page.
#[inline(always)]
pub const fn usable_pools(base: usize) -> u64 {
    !(1u64 << header_page_index(base))
}

/// log2 of [`POOL_HEADER_SIZE`].
pub const POOL_HEADER_SHIFT: u32 = 6;
/// Bytes of one pool header, one cache line: the header of pool `i` (page `i`) is entry `i`
/// of the table in its arena's header page (the entry of the header page itself is the
/// arena header), so the 63 headers of an arena share that page and no two pools share a
/// line.
pub const POOL_HEADER_SIZE: usize = 1 << POOL_HEADER_SHIFT;
/// `(addr >> (POOL_SHIFT - POOL_HEADER_SHIFT)) & HEADER_TABLE_MASK` is the offset of the
/// header of `addr`'s pool in its arena's header page.
pub const HEADER_TABLE_MASK: usize = (POOLS_PER_ARENA - 1) << POOL_HEADER_SHIFT;

/// CPython's `PY_SSIZE_T_MAX`: no request above it is ever granted.
pub const PY_SSIZE_T_MAX: usize = isize::MAX as usize;

/// Size class of a request of `n` bytes, `1 <= n <= SMALL_REQUEST_THRESHOLD`.
#[inline(always)]
pub const fn class_of(n: usize) -> usize {
    (n - 1) >> ALIGNMENT_SHIFT
}

/// Block size of class `class`.
#[inline(always)]
pub const fn class_size(class: usize) -> usize {
    (class + 1) << ALIGNMENT_SHIFT
}

/// How many blocks of class `class` fit in one pool (`class < NUM_CLASSES`).
#[inline(always)]
pub const fn blocks_per_pool(class: usize) -> usize {
    BLOCKS_PER_POOL[class] as usize
}

/// [`blocks_per_pool`] of every class, from a table: the division it replaces (the class
/// size is not a constant) takes tens of cycles, on the paths where a full pool takes a
/// block back and a pool is handed out.
const BLOCKS_PER_POOL: [u16; NUM_CLASSES] = {
    let mut t = [0; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        t[c] = (POOL_SIZE / class_size(c)) as u16;
        c += 1;
    }
    t
};

/// Whether a request of `n` bytes is served from a pool: `1 <= n <= 512`.
/// `n == 0` wraps around and is correctly rejected.
#[inline(always)]
pub const fn is_small(n: usize) -> bool {
    n.wrapping_sub(1) < SMALL_REQUEST_THRESHOLD
}

const _: () = assert!(POOLS_PER_ARENA * POOL_HEADER_SIZE == POOL_SIZE);
const _: () = assert!(
    POOLS_PER_ARENA == 64,
    "the arena's free-pool set is one u64"
);
const _: () = assert!(class_of(SMALL_REQUEST_THRESHOLD) == NUM_CLASSES - 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_small_size() {
        for n in 1..=SMALL_REQUEST_THRESHOLD {
            let c = class_of(n);
            assert!(c < NUM_CLASSES);
            assert!(class_size(c) >= n, "class {c} too small for {n}");
            assert!(
                class_size(c) - n < ALIGNMENT,
                "class {c} wastes too much for {n}"
            );
            assert!(is_small(n));
        }
        assert!(!is_small(0));
        assert!(!is_small(SMALL_REQUEST_THRESHOLD + 1));
        assert!(!is_small(usize::MAX));
    }

    #[test]
    fn whole_pools_hold_blocks() {
        // The headers live in the arena's header page, so a pool is all blocks: 256 of 16
        // bytes, 8 of 512 (CPython's pools, header inside, hold 253 and 7).
        assert_eq!(blocks_per_pool(0), 256);
        assert_eq!(blocks_per_pool(NUM_CLASSES - 1), 8);
    }
}

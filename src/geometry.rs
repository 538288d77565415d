//! Size classes and geometry: every constant that fixes the shape of the heap lives here.
//!
//! An *arena* is a 256 KiB mapping aligned to its own size, so `addr & !ARENA_MASK` is the
//! arena that contains `addr`. It is cut into 64 *pools* of one 4 KiB page; pool 0 holds the
//! arena header, pools 1..=63 serve blocks. A pool serves one *size class* at a time: class
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
/// Pools per arena, including pool 0, which holds the arena header.
pub const POOLS_PER_ARENA: usize = ARENA_SIZE / POOL_SIZE;

/// Every block is aligned to this, and every class size is a multiple of it.
pub const ALIGNMENT: usize = 16;
/// log2 of [`ALIGNMENT`].
pub const ALIGNMENT_SHIFT: u32 = 4;
/// The largest request served from a pool; larger ones go to the fallback allocator.
pub const SMALL_REQUEST_THRESHOLD: usize = 512;
/// Number of size classes.
pub const NUM_CLASSES: usize = SMALL_REQUEST_THRESHOLD / ALIGNMENT;

/// Bytes at the start of every pool taken by its header; blocks start right after.
/// A multiple of [`ALIGNMENT`], so every block is 16-byte aligned.
#[cfg(not(loom))]
pub const POOL_HEADER_SIZE: usize = 48;
/// Under loom the header holds loom's larger atomics (models do not depend on the layout).
#[cfg(loom)]
pub const POOL_HEADER_SIZE: usize = 64;

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

/// How many blocks of class `class` fit in one pool.
#[inline(always)]
pub const fn blocks_per_pool(class: usize) -> usize {
    (POOL_SIZE - POOL_HEADER_SIZE) / class_size(class)
}

/// Whether a request of `n` bytes is served from a pool: `1 <= n <= 512`.
/// `n == 0` wraps around and is correctly rejected.
#[inline(always)]
pub const fn is_small(n: usize) -> bool {
    n.wrapping_sub(1) < SMALL_REQUEST_THRESHOLD
}

const _: () = assert!(POOL_HEADER_SIZE % ALIGNMENT == 0);
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
    fn pool_geometry_matches_cpython() {
        // CPython 3.8-3.13 with 4 KiB pools: 48-byte header, 253 blocks of 16, 7 of 512.
        assert_eq!(blocks_per_pool(0), 253);
        assert_eq!(blocks_per_pool(NUM_CLASSES - 1), 7);
    }
}

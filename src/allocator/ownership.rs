//! The ownership map: is this address inside one of our arenas, and which? A two-level radix
//! tree with one word per possible arena, mapped only where arenas are.
//!
//! Because arenas are aligned to their size, `addr >> ARENA_SHIFT` numbers the arena slot
//! that would contain `addr`: 2^29 slots over the 47-bit user address space.
//!
//! ```text
//!   slot = addr >> 18           (29 bits)
//!   ROOT[slot >> 15] ──► leaf: 256 KiB, one word per arena of an 8 GiB stretch:
//!   (16,384 entries,            leaf[slot & 0x7fff] = the arena's header table, 0 if not ours
//!    128 KiB of .bss)           zero root entry  ⇔  no arena of ours in the stretch
//! ```
//!
//! The root is zero-filled `.bss` (address space only; untouched pages cost nothing); a
//! leaf is mapped the first time an arena in its 8 GiB stretch is, and never unmapped
//! (CPython 3.10+'s `arena_map` does the same with a three-level tree). Arenas cluster where
//! `mmap` puts them, so a process has one or two leaves, where a flat map would reserve
//! address space for every possible arena (docs/decisions.md#the-ownership-map-is-a-radix-tree-and-its-word-is-the-header-table).
//!
//! A leaf holds the address of the arena's header table ([`header_table`]) rather than a
//! flag so that the free path, which needs it to find the pool header, gets it from the
//! load it makes anyway (docs/decisions.md#the-ownership-map-is-a-radix-tree-and-its-word-is-the-header-table).
//! The test is two shifts, a bounds check, two
//! dependent loads and a zero test, and it never reads memory that is not ours,
//! unlike CPython <= 3.9's `address_in_range`, which reads the would-be pool header.
//!
//! Invariants: a root entry, once non-zero, never changes and locates (biased, see `ROOT`)
//! a mapped leaf of [`LEAF_SLOTS`] zero-initialised words; the word of slot `s` is
//! `header_table(s << ARENA_SHIFT)` exactly while that arena is mapped by us, else 0. Entries and words are written under the
//! arena lock. Readers take no lock: a pointer into an arena reaches another thread only
//! through some synchronisation that also publishes its word and leaf, and a foreign
//! pointer finds a null entry or a zero word whichever it sees.

use crate::allocator::geometry::{header_table, ARENA_SHIFT};
use crate::allocator::os;
use crate::allocator::sync::{unmodeled::AtomicUsize, Ordering};

/// User-space addresses on x86-64 and aarch64 Linux fit in 47 bits unless a program asks
/// `mmap` for more with an explicit hint; an arena above that is refused.
const ADDRESS_BITS: u32 = 47;
/// Bits of an arena slot number.
const SLOT_BITS: u32 = ADDRESS_BITS - ARENA_SHIFT;
/// Bits of a slot resolved by a leaf: 2^15 arenas, 8 GiB of address space per leaf.
const LEAF_BITS: u32 = 15;
/// Words (arena slots) in one leaf: 256 KiB.
pub const LEAF_SLOTS: usize = 1 << LEAF_BITS;
/// Bytes of one leaf.
const LEAF_BYTES: usize = LEAF_SLOTS * core::mem::size_of::<usize>();
/// Entries of the root: 16,384 (128 KiB).
const ROOT_SLOTS: usize = 1 << (SLOT_BITS - LEAF_BITS);

/// The root, one entry per leaf: 0 where no arena was ever mapped, else the leaf's
/// address *biased* by its first slot, `leaf - 8 * (index << LEAF_BITS)`, so that the word
/// of slot `s` is at `entry + 8 * s` with no masking (one instruction fewer on every free).
/// Never null once set (see [`insert`]).
static ROOT: [AtomicUsize; ROOT_SLOTS] = [const { AtomicUsize::new(0) }; ROOT_SLOTS];

/// Where an outside reader finds the map (see `layout`).
#[cfg(not(loom))]
pub const fn layout() -> crate::allocator::layout::Ownership {
    crate::allocator::layout::Ownership {
        root: ROOT.as_ptr().cast(),
        root_slots: ROOT_SLOTS as u64,
        leaf_slots: LEAF_SLOTS as u64,
    }
}

/// The root index of `addr`: the 8 GiB stretch it lies in.
#[inline(always)]
fn root_index(addr: usize) -> usize {
    addr >> (ARENA_SHIFT + LEAF_BITS)
}

/// The word of arena slot `slot`, whose root entry is `entry` (non-zero).
///
/// # Safety
/// `entry` is the non-zero root entry of `slot`'s stretch.
#[inline(always)]
unsafe fn word(entry: usize, slot: usize) -> &'static AtomicUsize {
    // SAFETY: per the caller, `entry + 8 * slot` is inside the mapped leaf of `slot`'s
    // stretch, which lives forever; zero words are valid `AtomicUsize`s.
    unsafe { &*(entry.wrapping_add(slot * core::mem::size_of::<usize>()) as *const AtomicUsize) }
}

/// Whether `addr` lies inside one of our arenas.
#[inline(always)]
pub fn owns_arena_of(addr: usize) -> bool {
    table_of(addr) != 0
}

/// The root, its address taken PC-relative: rustc reaches statics of a crate that is also an
/// rlib through the GOT, one load more on every free (docs/benchmarks.md, "The fast paths'
/// code"); the symbol is local to the library, so the linker resolves `lea` directly.
#[inline(always)]
fn root() -> &'static [AtomicUsize; ROOT_SLOTS] {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    {
        let root: *const [AtomicUsize; ROOT_SLOTS];
        // SAFETY: computes the address of `ROOT` (a `lea`, no memory access).
        unsafe {
            core::arch::asm!(
                "lea {root}, [rip + {sym}]",
                root = out(reg) root,
                sym = sym ROOT,
                options(pure, nomem, nostack, preserves_flags),
            );
            &*root
        }
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    &ROOT
}

/// The header table ([`header_table`]) of our arena containing `addr`, or 0 when `addr` is
/// in none of ours.
#[inline(always)]
pub fn table_of(addr: usize) -> usize {
    let mut i = root_index(addr);
    // An empty asm statement (no instruction) hides `i`'s origin from the optimiser, which
    // would otherwise test `addr >> 47` with a second shift and move: one instruction less.
    // SAFETY: the statement is empty; it only passes `i` through a register.
    unsafe {
        core::arch::asm!("/* {0} */", inout(reg) i, options(pure, nomem, nostack, preserves_flags))
    };
    if i >= ROOT_SLOTS {
        return 0; // above the 47-bit range
    }
    let entry = root()[i].load(Ordering::Acquire);
    if entry == 0 {
        return 0;
    }
    // SAFETY: a non-zero entry of `addr`'s stretch.
    unsafe { word(entry, addr >> ARENA_SHIFT) }.load(Ordering::Relaxed)
}

/// Records the arena based at `arena` as ours, mapping its leaf if need be. False when the
/// arena lies above the 47-bit range or its leaf cannot be mapped: the caller must then
/// not use the arena. Caller holds the arena lock.
pub fn insert(arena: usize) -> bool {
    let i = root_index(arena);
    if i >= ROOT_SLOTS {
        return false;
    }
    if ROOT[i].load(Ordering::Relaxed) == 0 {
        let Some(entry) = map_leaf(i) else {
            return false;
        };
        // Release: whoever sees the entry sees a mapped (zero) leaf.
        ROOT[i].store(entry, Ordering::Release);
    }
    // SAFETY: the entry of the arena's stretch is set.
    unsafe { word(ROOT[i].load(Ordering::Relaxed), arena >> ARENA_SHIFT) }
        .store(header_table(arena), Ordering::Relaxed);
    true
}

/// Maps the leaf of root index `i` and returns its biased entry, or `None` when the OS
/// refuses. A leaf whose biased address would be 0 (placed exactly at `8 * (i << LEAF_BITS)`,
/// below 4 GiB) would read as "no leaf": it is kept mapped, unused, and another is taken.
fn map_leaf(i: usize) -> Option<usize> {
    loop {
        let leaf = os::map(LEAF_BYTES);
        if leaf.is_null() {
            return None;
        }
        let entry = (leaf as usize).wrapping_sub((i << LEAF_BITS) * core::mem::size_of::<usize>());
        if entry != 0 {
            return Some(entry);
        }
    }
}

/// Forgets the arena based at `arena`, which [`insert`] recorded. Caller holds the arena
/// lock.
pub fn remove(arena: usize) {
    let entry = ROOT[root_index(arena)].load(Ordering::Relaxed);
    // SAFETY: `insert` set the entry of the arena's stretch; entries never change after.
    unsafe { word(entry, arena >> ARENA_SHIFT) }.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_remove_are_precise() {
        // 16 TiB: far below where mmap places things and far above the brk heap.
        let arena = 0x1000_0000_0000usize;
        assert!(!owns_arena_of(arena));
        assert!(insert(arena));
        assert!(owns_arena_of(arena));
        assert_eq!(
            table_of(arena + (1 << ARENA_SHIFT) - 1),
            header_table(arena)
        );
        assert!(!owns_arena_of(arena + (1 << ARENA_SHIFT)));
        assert!(!owns_arena_of(arena - 1));
        remove(arena);
        assert!(!owns_arena_of(arena));
    }

    #[test]
    fn wild_addresses_are_not_ours() {
        assert!(!owns_arena_of(0));
        assert!(!owns_arena_of(usize::MAX));
        assert!(!owns_arena_of(1 << 47));
        assert!(!insert(1 << 47), "above the 47-bit range");
        // A slot whose leaf was never mapped: 64 TiB, far from anything mapped.
        assert!(!owns_arena_of(0x4000_0000_0000));
    }

    #[test]
    fn leaves_are_mapped_on_first_use_only() {
        // Two arenas in one 8 GiB stretch share a leaf; one in another stretch gets its own.
        // (Far from anything mapped, so the other tests' arenas, which run in parallel and
        // may map leaves of their own, do not touch these root entries.)
        let a = 0x2000_0000_0000usize;
        let b = a + (LEAF_SLOTS << ARENA_SHIFT);
        let entry = |addr: usize| ROOT[root_index(addr)].load(Ordering::Relaxed);
        assert_eq!(
            (entry(a), entry(b)),
            (0, 0),
            "no leaf before the first arena"
        );
        assert!(insert(a));
        let leaf = entry(a);
        assert_ne!(leaf, 0);
        assert!(insert(a + (1 << ARENA_SHIFT)));
        assert_eq!(
            entry(a),
            leaf,
            "the second arena of the stretch reuses its leaf"
        );
        assert_eq!(entry(b), 0);
        assert!(insert(b));
        assert!(entry(b) != 0 && entry(b) != leaf);
        assert!(owns_arena_of(a + (1 << ARENA_SHIFT) + 5));
        assert!(!owns_arena_of(a + (2 << ARENA_SHIFT)));
        for arena in [a, a + (1 << ARENA_SHIFT), b] {
            remove(arena);
            assert!(!owns_arena_of(arena));
        }
    }
}

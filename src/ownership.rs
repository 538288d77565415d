//! The ownership map: one byte per possible arena address, non-zero while that arena is ours.
//!
//! Because arenas are aligned to their size, `addr >> ARENA_SHIFT` numbers the arena slot
//! that would contain `addr`. The map is a flat byte array over the 47-bit user address
//! space (2^29 slots, 512 MiB of zero-initialised `.bss`, address space only): the OS backs
//! just the pages a byte is ever written in (one 4 KiB page per GiB of address space that
//! holds arenas), and reading an untouched page costs no memory. So the ownership test is a
//! shift, a bounds check and one byte compare — three instructions fewer on every free
//! than a bitmap, which is why bytes and not bits — and it never reads memory that is not
//! ours, unlike CPython <= 3.9's `address_in_range`, which reads the would-be pool header.
//!
//! Invariant: the byte of slot `s` is non-zero exactly while the arena at
//! `s << ARENA_SHIFT` is mapped by us. Bytes are written under the arena lock; readers need
//! no lock, because a pointer into an arena reaches another thread only through some
//! synchronisation that also publishes the byte.

use crate::geometry::ARENA_SHIFT;
use crate::sync::{unmodeled::AtomicU8, Ordering};

/// User-space addresses on x86-64 and aarch64 Linux fit in 47 bits unless a program asks
/// `mmap` for more with an explicit hint; an arena above that is refused.
const ADDRESS_BITS: u32 = 47;
const SLOTS: usize = 1 << (ADDRESS_BITS - ARENA_SHIFT);

// The map is declared in assembly rather than as a Rust array: a 512 MiB array literal would
// be built byte by byte by the compiler's constant evaluator (minutes and over a GiB of
// compiler memory per build). `.bss` makes it zero-filled address space at no cost.
core::arch::global_asm!(
    ".pushsection .bss",
    ".p2align 12",
    ".globl pymalloc_ownership_map",
    ".hidden pymalloc_ownership_map",
    "pymalloc_ownership_map:",
    ".zero {slots}",
    ".popsection",
    slots = const SLOTS,
);

extern "C" {
    static pymalloc_ownership_map: [AtomicU8; SLOTS];
}

/// The map.
#[inline(always)]
fn map() -> &'static [AtomicU8; SLOTS] {
    // SAFETY: the symbol is the zero-filled, SLOTS-byte `.bss` array declared above, which
    // is valid for the whole program; zero bytes are valid `AtomicU8`s.
    unsafe { &pymalloc_ownership_map }
}

/// Whether `addr` lies inside one of our arenas.
#[inline(always)]
pub fn owns_arena_of(addr: usize) -> bool {
    let slot = addr >> ARENA_SHIFT;
    if slot >= SLOTS {
        return false;
    }
    map()[slot].load(Ordering::Relaxed) != 0
}

/// Whether an arena based at `arena` can be recorded in the map.
pub fn in_range(arena: usize) -> bool {
    arena >> ARENA_SHIFT < SLOTS
}

/// Records the arena based at `arena` as ours. Caller holds the arena lock.
pub fn insert(arena: usize) {
    map()[arena >> ARENA_SHIFT].store(1, Ordering::Relaxed);
}

/// Forgets the arena based at `arena`. Caller holds the arena lock.
pub fn remove(arena: usize) {
    map()[arena >> ARENA_SHIFT].store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_remove_are_precise() {
        // 16 TiB: far below where mmap places things and far above the brk heap.
        let arena = 0x1000_0000_0000usize;
        assert!(!owns_arena_of(arena));
        insert(arena);
        assert!(owns_arena_of(arena));
        assert!(owns_arena_of(arena + (1 << ARENA_SHIFT) - 1));
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
        assert!(!in_range(1 << 47));
    }
}

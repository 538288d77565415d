//! The descriptor of the allocator's state for an outside reader: `pymalloc inspect PID`
//! reads a running process's arenas, pools and heaps with `process_vm_readv`, without
//! stopping it and without its help, starting from this one structure, which the library
//! exports as the symbol [`SYMBOL`] (`ffi`). It holds the addresses of the roots (the
//! ownership map, the arena counters, the heap registry's lists) and the offsets of the
//! fields the reader needs inside the structures they lead to, so that a change to a
//! structure changes the descriptor (and [`LAYOUT_VERSION`]), not the reader's logic.
//! The geometry (arena and pool sizes, where an arena's header page lies) is
//! `geometry`'s, which the command compiles from the same source.
//!
//! No dependency on purpose: the command compiles this file too, to read the descriptor
//! with the same definition (docs/decisions.md#pymalloc-inspect-reads-a-running-process).
//! Each module whose state is described fills in its own part (`ownership::layout`,
//! `arena::layout`, `pool::layout`, `heap::layout`).
//!
//! Invariant: the exported descriptor is never written after load; every address in it
//! stays valid for the life of the process (they are statics).

/// The exported symbol's name.
pub const SYMBOL: &str = "pymalloc_descriptor";

/// The descriptor's first bytes.
pub const MAGIC: [u8; 8] = *b"PYMALLOC";

/// The layout of the descriptor and of what it describes; a reader refuses another.
pub const LAYOUT_VERSION: u32 = 3;

/// Bytes of [`Descriptor::version`].
pub const VERSION_BYTES: usize = 16;

/// The root of everything an outside reader reads (`#[repr(C)]`, fixed-size fields).
#[repr(C)]
pub struct Descriptor {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`LAYOUT_VERSION`].
    pub layout: u32,
    /// `size_of::<Descriptor>()`.
    pub size: u32,
    /// The library's version (its package's), NUL-padded.
    pub version: [u8; VERSION_BYTES],
    pub ownership: Ownership,
    pub arenas: Arenas,
    pub pools: Pools,
    pub heaps: Heaps,
    /// The fallback's count of large blocks served for threads without a heap: a
    /// wrapping `usize`, added to the heaps' (`Heaps::large`) for `large_in_use`.
    pub large_global: *const u8,
    /// The signal that asks the process to trim (`PYMALLOC_TRIM_SIGNAL`), an `i32`; 0 when
    /// the process did not opt in.
    pub trim_signal: *const u8,
}

// SAFETY: never written after its constant initialisation; its pointers are only
// addresses for an outside reader, never dereferenced through the descriptor.
unsafe impl Sync for Descriptor {}

/// The ownership map (`ownership`): a root of `root_slots` words, each 0 or a leaf
/// address *biased* so that the word of arena slot `s` (`base >> ARENA_SHIFT`) is at
/// `entry + 8 * s`; a word is the arena's header table, or 0.
#[repr(C)]
pub struct Ownership {
    pub root: *const u8,
    pub root_slots: u64,
    pub leaf_slots: u64,
}

/// The arenas (`arena`).
#[repr(C)]
pub struct Arenas {
    /// The arena counters: 7 `u64`s, `ArenaCounts`' fields in order (allocated total,
    /// reclaimed, highwater, current, pools in use, pools free, pools decommitted).
    pub counts: *const u8,
    /// Offset of the `u64` set of free pools (bit `i`: page `i`) in an arena's header,
    /// entry `header_page_index` of its header table.
    pub free_pools: u64,
}

/// A pool header (`pool::Pool`), entry `i` of its arena's header table: field offsets.
#[repr(C)]
pub struct Pools {
    /// `u32`: blocks in use, or `PARKED` (1) for a pool neither `linked` nor `cached`,
    /// which is full (then its real count is the class's capacity).
    pub used: u64,
    /// `u8`: the size class.
    pub class: u64,
    /// `bool`: on its owner's class list.
    pub linked: u64,
    /// `bool`: empty and kept by its owner.
    pub cached: u64,
    /// Pointer: the owning heap (its address), null when none.
    pub heap: u64,
}

/// The heap registry (`heap`): every heap is on the list that starts at the pointer at
/// `all`, linked through the pointer at offset `next_all` in each heap; `roles` name the
/// heaps that are not simply active (a heap on none is "active").
#[repr(C)]
pub struct Heaps {
    pub all: *const u8,
    pub next_all: u64,
    /// Offset of the heap's `usize` count of large blocks (wrapping).
    pub large: u64,
    /// Offset of the heap's `u32` count of empty pools it keeps.
    pub cached: u64,
    /// The role of a heap on no list of `roles`, NUL-padded.
    pub default_role: [u8; 16],
    /// A heap on several lists (a torn read) has the first one's role.
    pub roles: [RoleList; ROLE_LISTS],
}

/// Role lists in [`Heaps::roles`].
pub const ROLE_LISTS: usize = 4;

/// The heaps of one role: the list that starts at the pointer at `head`, linked through
/// the pointer at offset `link` in each heap, or, when `link` is [`SINGLE`], the one heap
/// `head` points to (null: none).
#[repr(C)]
pub struct RoleList {
    /// The role's name, NUL-padded.
    pub name: [u8; 16],
    pub head: *const u8,
    pub link: u64,
}

/// [`RoleList::link`] of a role held by one heap.
pub const SINGLE: u64 = u64::MAX;

/// `text` as a NUL-padded array of `N` bytes (cut at `N`).
pub const fn padded<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

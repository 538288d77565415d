//! # pymalloc-rs
//!
//! CPython's small-object allocator ("pymalloc", `Objects/obmalloc.c`) rebuilt in Rust as a
//! C-ABI library, thread-safe. This page is the design; read it first.
//!
//! ## The picture
//!
//! ```text
//!  arena: 256 KiB mmap, aligned to 256 KiB
//!  +--------+--------+-- ... --+------------------+-- ... --+--------+
//!  | pool 0 | pool 1 |         | page h: headers  |         | pool 63|  pool: one 4 KiB page,
//!  | cls 3  | cls 0  |         | p0 | p1 …|arena|…|         | free   |  one size class at a
//!  +--------+--------+-- ... --+------------------+-- ... --+--------+  time, all blocks:
//!    page h = arena number mod 64 holds 64 B entries: the header of     (class + 1) * 16 B,
//!    pool i at arena + 4096 * h + 64 * i, and the arena header at       free ones linked
//!    entry h (one cache line each)                                      through their first word
//!
//!  ownership map (a radix tree, one word per possible arena):
//!  ROOT[p >> 33] (16,384 entries, .bss) -> 256 KiB leaf, mapped on first use
//!                                        -> word: the arena's header table, 0 if not ours
//! ```
//!
//! `p & !0x3ffff` is the arena of a block, `(p >> 12) & 63` its pool's index, and the pool's
//! header sits at `arena + 4096 * h + 64 * index` ([`pool::pool_of`](allocator::pool::pool_of); the ownership map
//! hands out `arena + 4096 * h` directly); `p >> 18` numbers its slot in the ownership map. Every lookup is arithmetic plus two loads ([`ownership`](allocator::ownership)). Requests of
//! 1..=512 bytes are served from pools; size 0 and larger requests go to the fallback
//! allocator ([`fallback`](allocator::fallback): the C library's, or inside CPython the allocator we replaced).
//!
//! ## Who owns what
//!
//! - **Arenas** are global, guarded by the arena lock ([`arena`](allocator::arena)). A heap takes free pools
//!   in batches of up to 16 from the fullest arena that has one, in address order, and
//!   gives them back in batches; a pool that reaches its arena has its page given back to
//!   the OS at once, and an arena all of whose pools are free is unmapped at once.
//! - **Pools** belong to one thread heap at a time ([`pool`](allocator::pool)). The owner pops and pushes the
//!   pool's free list with plain loads and stores. Another thread freeing a block pushes it
//!   on the pool's lock-free `remote` list; if the pool has ever run out (it may be off the
//!   owner's lists, and its `NOTIFY` bit says so), the first such freer puts the block on
//!   the owner heap's `delayed` list instead, so the owner finds the pool again. The owner
//!   takes both lists back in its slow path; the remote list carries its length in its
//!   head word, so it becomes the pool's free list whole, without a block being read.
//!   Blocks are carved lazily: a pool's never-used blocks are handed out from a bump
//!   pointer (`fresh`), unread, and only freed blocks are ever on a free list.
//! - **Empty pools** stay with the heap that emptied them, as far as its
//!   recent history justifies: a steady build-and-drop oscillation keeps its pools and
//!   makes no system call and takes no lock, a one-off burst goes back while it is freed,
//!   and a decay clock (0.4 s epochs, advanced by the heap's own slow paths) ages what is in
//!   between ("Empty pools" in `heap/cache.rs`).
//! - **The interpreter heap** (`heap/interp.rs`) serves every call CPython makes through
//!   the OBJ and MEM domains, whichever thread makes it: those calls hold the GIL, so its
//!   holder acts as the heap's owner, and a pool of worker threads holds one heap's pools,
//!   not one heap's per thread. From CPython 3.12 it is shared only while the process
//!   has had one interpreter (a subinterpreter may have a GIL of its own).
//! - **Heaps** belong to one thread ([`heap`](allocator::heap)). A thread's first allocation gives it a heap;
//!   at its exit (a pthread key destructor) the heap is tidied and abandoned whole, and the
//!   next new thread adopts it, blocks left behind and all. Heaps are never unmapped.
//!
//! So a thread that frees its own block takes no lock and does no atomic read-modify-write;
//! cross-thread frees cost one compare-and-swap; the arena lock is taken once per batch of
//! pools handed out or back, never per block, and not at all in a steady oscillation.
//!
//! ## Invariants
//!
//! Each structure states its invariants where it is defined: [`arena::Arena`](allocator::arena::Arena) and the
//! arenas' global state (`arena`), [`pool::Pool`](allocator::pool::Pool), [`pool::Owner`](allocator::pool::Owner), [`heap::Heap`](allocator::heap::Heap),
//! [`ownership`](allocator::ownership), [`dispatch`](cpython::dispatch) (the interpreter's struct), and the fallback's counters.
//! [`check::verify`](introspect::check::verify) (C: `pymalloc_check`) walks everything and checks them; the tests call
//! it between phases, and `debug_assert!`s check each pool state change as it happens (CI
//! runs a subset of the tests in the debug profile). Every lock-guarded global is a
//! [`sync::Locked`](allocator::sync::Locked), whose data is reached only through its lock's guard; the order in
//! which the locks nest is in [`fork`].
//!
//! ## Layers
//!
//! The modules form layers, and a module uses only modules of layers below its own (and
//! its own submodules): nothing calls up, and there is no import cycle. Where a lower layer
//! must reach a higher one it is handed a pointer: debug mode diverts the heap's slow paths
//! through [`heap::Divert`](allocator::heap::Divert), which it sets. The folders show the layers: `allocator/` below
//! `front/` below `introspect/` and `cpython/`, with the C ABI and the fork handlers on
//! top. `tests/layers.rs` reads this table and every `crate::` path in `src/`, and fails on
//! an import that goes up or sideways, and on a module the table does not place. Bottom
//! first:
//!
//! | layer | folder | modules |
//! |---|---|---|
//! | 0 | `allocator` | [`geometry`](allocator::geometry) constants, size classes and address arithmetic · [`fault`](allocator::fault) misuse reports · [`valgrind`](allocator::valgrind) client requests · [`layout`](allocator::layout) the descriptor an outside reader (`pymalloc inspect`) follows |
//! | 1 | `allocator` | [`sync`](allocator::sync) every concurrency primitive (swapped for loom's under `--cfg loom`) |
//! | 2 | `allocator` | [`os`](allocator::os) mmap/madvise and the clock · [`trim_signal`](allocator::trim_signal) the opt-in signal that asks for a trim |
//! | 3 | `allocator` | [`ownership`](allocator::ownership) the map · [`meta`](allocator::meta) metadata memory · [`fallback`](allocator::fallback) the system/replaced allocator |
//! | 4 | `allocator` | [`pool`](allocator::pool) pool headers and the remote-free protocol |
//! | 5 | `allocator` | [`arena`](allocator::arena) arenas and their policy |
//! | 6 | `allocator` | [`heap`](allocator::heap) per-thread heaps, the thread slot and the fast paths |
//! | 7 | `front` | [`debug`](front::debug) debug mode |
//! | 8 | `front` | [`api`](front::api) CPython's semantics |
//! | 9 | `introspect` | [`stats`](introspect::stats) the statistics · [`check`](introspect::check) the invariant walker |
//! | 10 | `cpython` | [`config`](cpython::config) the environment variables · [`dispatch`](cpython::dispatch) the `PyObject_*` names' dispatch through the interpreter's OBJ domain |
//! | 11 | `cpython` | [`cpython`] injection into CPython, its statistics hooks, statistics at exit |
//! | 12 | top | [`ffi`] every exported symbol (the C ABI, CPython's names), and only it · [`fork`] `pthread_atfork` handlers and the global lock order · [`runtime`] the panic handler and `alloc`'s allocator |
//!
//! ## No `std`
//!
//! The library is `#![no_std]`: it uses `core`, and `alloc` for the strings, vectors and
//! maps of its cold paths (reports, the walker, debug mode's map of large blocks), which
//! the C library's `malloc` serves ([`runtime`]). The shipped library is built with
//! `panic = "abort"` (both profiles), and then brings its own panic handler: a panic
//! reports where it happened on stderr and aborts, and nothing unwinds. Tests and benches
//! are always built to unwind (the test harness needs it); that build links `std`, which
//! supplies the panic handler and the allocator instead. So the shipped `libpymalloc.so`
//! needs nothing but the C library, and holds no formatting or unwinding machinery it
//! does not use (`tests/lean.rs`). The `pymalloc` command, which does use `std` (and
//! clap), is the workspace's other package, `cli/`; it does not link this crate.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
// The design page and the items' docs are about the inside, whose modules are the crate's
// own: they are read with `cargo doc --document-private-items`, where these links resolve.
#![allow(rustdoc::private_intra_doc_links)]

// The test harness (tests and benches always unwind): its panic handler and allocator.
#[cfg(panic = "unwind")]
#[macro_use]
extern crate std;

extern crate alloc;

/// `format!` through `core::fmt::Write`: `alloc`'s own calls a function the toolchain ships
/// precompiled with unwinding, which would make the library need the unwinder. Without
/// memory the text is cut short, never an abort ([`fault::Text`](allocator::fault::Text)).
macro_rules! format {
    ($($arg:tt)*) => {{
        let mut text = $crate::allocator::fault::Text::default();
        let _ = core::fmt::Write::write_fmt(&mut text, format_args!($($arg)*));
        text.0
    }};
}

/// `eprintln!` without `std`: the line goes to stderr in one `write(2)`.
macro_rules! eprintln {
    ($($arg:tt)*) => {
        $crate::allocator::fault::to_stderr(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}

// Every module is the crate's own: what a program may use is the C ABI (`include/pymalloc.h`,
// the `#[no_mangle]` items of `ffi`); the tests, benches and examples reach the inside
// through one facade, `internals`.

/// The allocator: geometry and shared structures, concurrency primitives, the OS, the
/// ownership map, metadata memory, the fallback, pools, arenas and heaps.
pub(crate) mod allocator {
    pub mod arena;
    pub mod fallback;
    pub mod fault;
    pub mod geometry;
    pub mod heap;
    pub mod layout;
    pub mod meta;
    pub mod os;
    pub mod ownership;
    pub mod pool;
    pub mod sync;
    pub mod trim_signal;
    pub mod valgrind;
}
/// The allocator's front: CPython's semantics and debug mode.
pub(crate) mod front {
    pub mod api;
    pub mod debug;
}
/// Looking inside: statistics and the invariant walker.
pub(crate) mod introspect {
    pub mod check;
    pub mod stats;
}
pub(crate) mod cpython;
pub(crate) mod ffi;
#[cfg(not(loom))]
pub(crate) mod fork;
pub(crate) mod runtime;

/// The library's inside for its own tests, benches and examples: not an interface (a
/// program uses the C ABI, `include/pymalloc.h`). One door, so that what the tests touch
/// is in one list.
#[doc(hidden)]
pub mod internals {
    pub use crate::allocator::{
        arena, fallback, fault, geometry, heap, layout, meta, os, ownership, pool, sync,
        trim_signal, valgrind,
    };
    pub use crate::cpython::{config, dispatch};
    pub use crate::front::{api, debug};
    pub use crate::introspect::{check, stats};
    /// The C entry points, as Rust functions.
    pub mod ffi {
        pub use crate::ffi::*;
    }
}

//! Pools: one 4 KiB page serving blocks of one size class, and its header, which lives in
//! the table of pool headers in its arena's header page (page `h`, see
//! [`geometry::header_page_index`]):
//!
//! ```text
//!  arena page h (headers)                        pool i (page i != h): blocks only
//!  +--------+--------+-- ... --+-------+-- ... +  +-------+-------+-- ... --+-------+
//!  | pool 0 | pool 1 |         | arena |       |  | block | block |         | block |
//!  | 64 B   | 64 B   |         | (h)   |       |  +-------+-------+-- ... --+-------+
//!  +--------+--------+-- ... --+-------+-- ... +
//!  table of arena a: a + 4096 * h      header of block p: table | ((p >> 6) & 0xfc0)
//! ```
//!
//! Why a table and not a header at each pool's start (CPython's layout): a header at offset
//! 0 of every page puts all headers in the same few cache sets, where they evict each other
//! (each free reads one); in the table they spread over the sets, share one TLB entry per
//! arena, and the whole page holds blocks (the 512-byte class gets 8 instead of 7). The
//! table's page varies from arena to arena for the same reason (`header_page_index`).
//!
//! [`geometry::header_page_index`]: crate::allocator::geometry::header_page_index
//!
//! A pool in use belongs to exactly one heap (its *owner*). The owner alone pops and pushes
//! `free` and changes `used`; any other thread that frees a block of the pool pushes it on
//! the lock-free `remote` list instead (or, when the owner asked to be told, on the heap's
//! delayed list, see [`remote_free`]). The owner takes the whole remote list back in one
//! atomic swap when its own list runs dry.

use crate::allocator::geometry::{
    blocks_per_pool, class_size, header_page_index, header_table, ARENA_MASK, HEADER_TABLE_MASK,
    NUM_CLASSES, POOL_HEADER_SHIFT, POOL_HEADER_SIZE, POOL_MASK, POOL_SHIFT, POOL_SIZE,
};
use crate::allocator::sync::{unmodeled, AtomicPtr, AtomicUsize, Ordering};
use core::ptr;

/// The part of a heap that other threads touch, and all a pool knows of its owner: the
/// `delayed` list, where a thread freeing a block of a pool that ran out hands it to the
/// owner (see [`remote_free`]). `heap::Heap` begins with one (`repr(C)`, first field), so
/// a heap's address is its owner's and the free path compares them directly.
///
/// Invariant: `delayed` holds blocks of pools owned by this heap, each still counted in its
/// pool's `used`, pushed by other threads and taken back whole by the owner.
#[repr(C)]
pub struct Owner {
    pub delayed: AtomicPtr<Block>,
}

impl Owner {
    crate::allocator::sync::const_unless_loom! {
        /// An owner with nothing delayed.
        pub fn empty() -> Owner {
            Owner {
                delayed: AtomicPtr::new(ptr::null_mut()),
            }
        }
    }

    /// Pushes a block freed by another thread on `owner`'s delayed list.
    ///
    /// # Safety
    /// `owner` is a live heap's owner part (heaps are never freed) and `block` a block of
    /// one of its pools that nobody else holds.
    pub unsafe fn push_delayed(owner: *mut Owner, block: *mut Block) {
        // SAFETY: heaps live forever; `block` is ours to write until published.
        unsafe {
            let delayed = &(*owner).delayed;
            let mut old = delayed.load(Ordering::Relaxed);
            loop {
                // The cheap double-free check of the owner's free, for remote frees.
                if old == block {
                    return crate::allocator::fault::double_free(block.cast());
                }
                (*block).next = old;
                match delayed.compare_exchange_weak(
                    old,
                    block,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return,
                    Err(seen) => old = seen,
                }
            }
        }
    }
}

/// A free block: its first word links to the next free block of the same list.
#[repr(C)]
pub struct Block {
    pub next: *mut Block,
}

/// Bit 0 of [`Pool::remote`]: the next remote free must tell the owner, because the pool
/// may be full and out of its owner's class list (blocks are 16-aligned, the low bits are
/// spare). The owner sets it, with one CAS from an empty `remote`, whenever a pool runs out
/// with the bit clear; after that it is *sticky*: the owner never clears it, only the first
/// remote freer does. So a pool that goes full → not full → full again by its owner's own
/// frees and allocations crosses both transitions with plain loads and stores, no atomic
/// read-modify-write (docs/decisions.md#the-sticky-notify-bit).
pub const NOTIFY: usize = 1;

/// [`Pool::used`] of a *parked* pool: one that ran out and is off its owner's class list.
/// A parked pool is full (no block on `free`, none uncarved), so its real count is
/// `blocks_per_pool(class)` and need not be stored; holding 1 instead makes the owner's
/// next free into it bring `used` to 0, so the free fast path needs one test (`dec; je`)
/// for both of its slow cases: the pool became empty, or it is parked and goes back on its
/// list (which restores the count) (docs/decisions.md#a-parked-pool-counts-1).
pub const PARKED: u32 = 1;

/// The number of blocks of `pool` handed out and not back on its free list, whether parked
/// or not (see [`PARKED`]).
///
/// Exact only when nothing changes the pool meanwhile (the walker's contract). Otherwise
/// it is an estimate, read while the owner changes the fields (relaxed atomics, see
/// [`Pool`]): each field is some value it held, but together they need not be a state the
/// pool was in; the statistics use it so, see [`snapshot`].
///
/// # Safety
/// `pool` is a pool of a mapped arena; if anything may change it meanwhile, the caller
/// treats the answer as an estimate.
pub unsafe fn used(pool: *mut Pool) -> u32 {
    // SAFETY: the header is mapped memory of ours; the fields read are atomics, each
    // reached without a reference to the whole header, which its owner changes meanwhile.
    unsafe {
        let class = (*pool).class.load(Ordering::Relaxed) as usize;
        let parked =
            !(*pool).linked.load(Ordering::Relaxed) && !(*pool).cached.load(Ordering::Relaxed);
        if !parked || class >= NUM_CLASSES {
            // (A class out of range is a damaged header: the statistics skip such pools,
            // and must not panic on the way.)
            (*pool).used.load(Ordering::Relaxed)
        } else {
            blocks_per_pool(class) as u32
        }
    }
}

/// Bits 48..=63 of [`Pool::remote`] count the blocks on the remote list, so that the owner
/// can take the list whole, as its free list, without walking it (a cross-core cache miss
/// per block): user-space addresses fit in 47 bits, and a pool holds at most 256 blocks.
const REMOTE_COUNT_SHIFT: u32 = 48;
/// The list-head bits of [`Pool::remote`].
const REMOTE_LIST_MASK: usize = ((1 << REMOTE_COUNT_SHIFT) - 1) & !NOTIFY;

/// Splits a [`Pool::remote`] word into its list head and the list's length.
#[inline(always)]
pub fn remote_list(word: usize) -> (*mut Block, u32) {
    (
        (word & REMOTE_LIST_MASK) as *mut Block,
        (word >> REMOTE_COUNT_SHIFT) as u32,
    )
}

/// The header of a pool, in its arena's header table (see the module's picture).
///
/// Invariants, for a pool in use (`heap` non-null):
/// - a pool off its list and not cached is parked: `used == PARKED` and its real count is
///   `blocks_per_pool(class)` ([`PARKED`]); below, `used` means the real count ([`used`]);
/// - `used + len(free) + uncarved == blocks_per_pool(class)`, where `uncarved` counts the
///   never-used blocks from `fresh` to the end of the page (0 when `fresh` is 0): `used`
///   counts every block handed out and not back on `free`, including blocks waiting on
///   `remote` or on the owner's delayed list;
/// - `fresh` is 0 or the start of a block slot of the page, and `fresh_last` is the start of
///   the page's last block slot (set by [`init`]);
/// - `free` and `remote` hold distinct blocks of this pool below `fresh`, never a block
///   handed out;
/// - `linked` is true exactly while the pool is on its owner's class list for `class`;
///   `cached` exactly while it is on its owner's cache of empty pools for `class` or in
///   its release batch, with `used == 0` and a null `heap` (never both);
///   a pool neither linked nor cached is parked: it has no block on `free`, `fresh == 0`,
///   and `NOTIFY` set or a block on its owner's delayed list;
/// - `remote` is either exactly `NOTIFY` or a list of blocks (possibly empty) without it,
///   its head in the low 48 bits and its length in the high 16 ([`remote_list`]): the bit
///   is only set from an empty list, and freers clear it before pushing;
/// - `heap` and `class` change only while `used == 0`, i.e. when no thread can hold a block
///   of the pool, so any thread freeing a block may read them without a lock.
///
/// `used`, `class`, `linked`, `cached` and `heap` are atomics, read and written with relaxed
/// ordering through the methods of the same names (`set_…` to write), which compile to the
/// plain loads and stores they replace on x86-64 and AArch64 ([`Pool::release_one`] and
/// [`Pool::heap_unraced`] keep the free fast path's memory operands): the statistics read
/// them while the owner writes them ([`used`], [`snapshot`]), and plain fields would make
/// that a data race. No ordering is relied on: the owner's own accesses are ordered by
/// program order, a freer's reads of `heap` and `class` by whatever handed it the block
/// (they change only while no block is out), and the statistics take each value as an
/// estimate.
#[repr(C, align(64))]
pub struct Pool {
    /// Blocks the owner can hand out (owner only).
    pub free: *mut Block,
    /// Blocks not on `free` (written by the owner only).
    used: unmodeled::AtomicU32,
    /// Size class served.
    class: unmodeled::AtomicU8,
    /// On the owner's class list (written by the owner only).
    linked: unmodeled::AtomicBool,
    /// Empty and off the class lists, kept by its owner: on its cache for `class`, or in
    /// its batch of pools going back to the arenas (written by the owner only; see the
    /// heap's "Empty pools").
    cached: unmodeled::AtomicBool,
    _pad: u8,
    /// The owning heap (its [`Owner`] part); null while the pool is free in its arena, and
    /// while it is kept empty by a heap (`cached`): a free into such a pool is a double
    /// free, and the null sends it to the free path's check instead of onto a free list.
    heap: unmodeled::AtomicPtr<Owner>,
    /// Blocks freed by other threads: a list head and its length, or the [`NOTIFY`] bit.
    pub remote: AtomicUsize,
    /// Links of the owner's class list (owner only).
    pub next: *mut Pool,
    pub prev: *mut Pool,
    /// The first never-used block of the page, 0 once every block has been handed out at
    /// least once (owner only). Blocks are carved lazily, as in CPython: a fresh block is
    /// handed out from here without being read, so it costs no cache miss.
    pub fresh: usize,
    /// The address of the page's last block (owner only): [`carve`] stops there with one
    /// compare instead of computing where the page ends.
    pub fresh_last: usize,
}

// One cache line, loom's larger atomics included.
const _: () = assert!(core::mem::size_of::<Pool>() == POOL_HEADER_SIZE);

impl Pool {
    crate::allocator::sync::const_unless_loom! {
    /// The never-usable pool standing for "no pool" at the head of an empty class list:
    /// its `free` is always null, so the allocation fast path falls into the slow path.
    pub fn empty() -> Pool {
        Pool {
            free: ptr::null_mut(),
            used: unmodeled::AtomicU32::new(0),
            class: unmodeled::AtomicU8::new(0),
            linked: unmodeled::AtomicBool::new(false),
            cached: unmodeled::AtomicBool::new(false),
            _pad: 0,
            heap: unmodeled::AtomicPtr::new(ptr::null_mut()),
            remote: AtomicUsize::new(0),
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            fresh: 0,
            fresh_last: 0,
        }
    }
    }
}

/// The relaxed accessors of the fields the statistics read while the owner writes them
/// (see [`Pool`]).
macro_rules! relaxed_fields {
    ($($field:ident, $set:ident: $t:ty;)*) => {
        impl Pool {
            $(
                #[inline(always)]
                pub fn $field(&self) -> $t {
                    self.$field.load(Ordering::Relaxed)
                }

                #[inline(always)]
                pub fn $set(&self, value: $t) {
                    self.$field.store(value, Ordering::Relaxed)
                }
            )*
        }
    };
}

relaxed_fields! {
    used, set_used: u32;
    class, set_class: u8;
    linked, set_linked: bool;
    cached, set_cached: bool;
    heap, set_heap: *mut Owner;
}

impl Pool {
    /// The owning heap, read by a thread that no write of it can race with: one holding a
    /// block of the pool (`heap` changes only while `used == 0`) or its owner. A plain
    /// load, which the free fast path folds into its compare; a concurrent reader's
    /// relaxed load does not conflict with it.
    ///
    /// # Safety
    /// The caller holds a block of the pool, or owns it.
    #[inline(always)]
    pub unsafe fn heap_unraced(&self) -> *mut Owner {
        // SAFETY: per the caller no thread writes `heap` meanwhile.
        unsafe { *self.heap.as_ptr() }
    }

    /// Owner: one block fewer in use; calls `emptied` if the count reached 0. On x86-64 a
    /// `dec` of the count in memory and a jump on its zero flag: the relaxed load and store
    /// it stands for (only the owner writes `used`, and an aligned 4-byte load or store is
    /// single-copy atomic there), which the compiler, given the atomics, would spell as a
    /// load, a `dec`, a store and a test. Elsewhere the atomics, which cost nothing there
    /// (AArch64 has no arithmetic on memory).
    ///
    /// # Safety
    /// The calling thread owns the pool and `used > 0`.
    #[inline(always)]
    pub unsafe fn release_one(&self, emptied: impl FnOnce()) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `used` is an aligned `u32` of this live header; the owner (the caller)
        // is its only writer, so the unlocked read-modify-write is its relaxed load and
        // store. The jump leaves the asm only for the label.
        unsafe {
            core::arch::asm!(
                "dec dword ptr [{pool} + {used}]",
                "jz {emptied}",
                pool = in(reg) self,
                used = const core::mem::offset_of!(Pool, used),
                emptied = label { return emptied() },
                options(nostack),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let used = self.used() - 1;
            self.set_used(used);
            if used == 0 {
                emptied();
            }
        }
    }
}

/// Where an outside reader finds a pool header's fields (see `layout`).
pub const fn layout() -> crate::allocator::layout::Pools {
    use core::mem::offset_of;
    crate::allocator::layout::Pools {
        used: offset_of!(Pool, used) as u64,
        class: offset_of!(Pool, class) as u64,
        linked: offset_of!(Pool, linked) as u64,
        cached: offset_of!(Pool, cached) as u64,
        heap: offset_of!(Pool, heap) as u64,
    }
}

/// The header of the pool containing `p`: entry `pool_index(p)` of its arena's table.
#[inline(always)]
pub fn pool_of<T>(p: *const T) -> *mut Pool {
    pool_in(header_table(p as usize & !ARENA_MASK), p as usize)
}

/// [`pool_of`] for a `p` whose arena's header table `table` is known (the free path has it
/// from the ownership map).
#[inline(always)]
pub fn pool_in(table: usize, p: usize) -> *mut Pool {
    (table | ((p >> (POOL_SHIFT - POOL_HEADER_SHIFT)) & HEADER_TABLE_MASK)) as *mut Pool
}

/// The header of pool `i` (page `i`, not the header page) of the arena based at `base`;
/// for the header page's own index, the arena header's place.
#[inline(always)]
pub fn header(base: usize, i: usize) -> *mut Pool {
    (header_table(base) + i * POOL_HEADER_SIZE) as *mut Pool
}

/// Index of the page containing `p` inside its arena.
#[inline(always)]
pub fn pool_index(p: usize) -> usize {
    (p & ARENA_MASK) >> POOL_SHIFT
}

/// Whether `p` lies in the header page of its arena (no block does).
#[inline(always)]
pub fn in_header_page(p: usize) -> bool {
    pool_index(p) == header_page_index(p & !ARENA_MASK)
}

/// Index inside its arena of the pool whose header is `pool`.
#[inline(always)]
pub fn index_of(pool: *mut Pool) -> usize {
    (pool as usize & POOL_MASK) >> POOL_HEADER_SHIFT
}

/// The address of the page (the blocks) of the pool whose header is `pool`.
#[inline(always)]
pub fn page_of(pool: *mut Pool) -> usize {
    (pool as usize & !ARENA_MASK) + (index_of(pool) << POOL_SHIFT)
}

/// Block size of the pool holding `p`.
///
/// # Safety
/// `p` lies in a pool in use.
#[inline(always)]
pub unsafe fn block_size_of(p: *const u8) -> usize {
    // SAFETY: per the caller the header is live.
    class_size(unsafe { (*pool_of(p)).class() } as usize)
}

/// `(class, used, owning heap)` of a pool in use that another thread may be changing, for
/// statistics: an estimate, read with relaxed loads while the owner writes (see [`used`]); the values may
/// be stale or mutually inconsistent (a class out of range is reported as is, and the
/// caller skips it), and nothing is concluded from them but counts.
///
/// # Safety
/// `pool` is a pool of a mapped arena.
pub unsafe fn snapshot(pool: *mut Pool) -> (usize, u64, usize) {
    // SAFETY: the header is mapped memory of ours; atomics reached as in [`used`].
    unsafe {
        (
            (*pool).class.load(Ordering::Relaxed) as usize,
            u64::from(used(pool)),
            (*pool).heap.load(Ordering::Relaxed) as usize,
        )
    }
}

/// Whether `pool` is an empty pool its owner keeps (see [`Pool::cached`]), for statistics:
/// a relaxed read, possibly stale.
///
/// # Safety
/// `pool` is a pool of a mapped arena.
pub unsafe fn is_cached(pool: *mut Pool) -> bool {
    // SAFETY: the header is mapped memory of ours.
    unsafe { (*pool).cached.load(Ordering::Relaxed) }
}

/// Hints the CPU to bring the cache line at `p` (the next pool's header) into the
/// cache; never faults, whatever `p` is (null included).
#[inline(always)]
pub fn prefetch<T>(p: *mut T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it reads nothing architecturally and cannot fault.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Whether `p` is the start of a block slot of `pool` (right offset and inside the pool).
pub fn is_block_start(pool: *mut Pool, class: usize, p: usize) -> bool {
    let base = page_of(pool);
    let size = class_size(class);
    p >= base && (p - base).is_multiple_of(size) && (p - base) / size < blocks_per_pool(class)
}

/// Blocks of `pool` (serving `class`) never handed out yet: from `fresh` to the page's end.
///
/// # Safety
/// The caller owns `pool`, or nothing changes it meanwhile.
pub unsafe fn uncarved(pool: *mut Pool, class: usize) -> usize {
    // SAFETY: per the caller.
    let fresh = unsafe { (*pool).fresh };
    if fresh == 0 {
        return 0;
    }
    blocks_per_pool(class) - (fresh - page_of(pool)) / class_size(class)
}

/// Owner: hands out the next never-used block of `pool`, whose blocks are `size` bytes, or
/// returns NULL when every block has been used once. The block is not read.
///
/// # Safety
/// The caller owns `pool` (or it is the empty pool, whose `fresh` is 0).
#[inline(always)]
pub unsafe fn carve(pool: *mut Pool, size: usize) -> *mut u8 {
    // SAFETY: per the caller the header is ours to change.
    unsafe {
        let block = (*pool).fresh;
        if block == 0 {
            return ptr::null_mut();
        }
        (*pool).fresh = if block == (*pool).fresh_last {
            0
        } else {
            block + size
        };
        (*pool).set_used((*pool).used() + 1);
        block as *mut u8
    }
}

/// Prepares a pool fresh from its arena to serve `class` for `heap`: no block is on the
/// free list, all are uncarved (see [`carve`]); the page is not touched.
///
/// # Safety
/// `pool` is the header of a pool of one of our arenas that no heap owns, and the caller is
/// the thread about to own it.
pub unsafe fn init(pool: *mut Pool, heap: *mut Owner, class: usize) {
    let base = page_of(pool);
    debug_assert!(class < NUM_CLASSES && !heap.is_null());
    crate::allocator::valgrind::pool_fresh(base as *const u8, POOL_SIZE);
    // SAFETY: the header is ours and unused. The fields the statistics read while it is
    // set up (the pool counts as in use from its hand-out on) are stored as atomics.
    // Written field by field through the pointer: a reference to the whole header would
    // claim it from the statistics' readers.
    unsafe {
        (*pool).free = ptr::null_mut();
        (*pool).used.store(0, Ordering::Relaxed);
        (*pool).class.store(class as u8, Ordering::Relaxed);
        (*pool).linked.store(false, Ordering::Relaxed);
        (*pool).cached.store(false, Ordering::Relaxed);
        (*pool).heap.store(heap, Ordering::Relaxed);
        ptr::addr_of_mut!((*pool).remote).write(AtomicUsize::new(0));
        (*pool).next = ptr::null_mut();
        (*pool).prev = ptr::null_mut();
        (*pool).fresh = base;
        (*pool).fresh_last = base + (blocks_per_pool(class) - 1) * class_size(class);
    }
}

/// Frees `block` into `pool` from a thread that does not own the pool. (`block` first: it
/// arrives in the first argument register and the free fast path need not move it.)
///
/// While `NOTIFY` is clear the block is pushed on `remote`. When it is set, the pool may be
/// full and off its owner's lists, so the owner might never look at `remote`: the first
/// freer clears the bit and pushes the block on the owner heap's delayed list instead, which
/// the owner drains in its slow path and which relinks the pool if it was unlinked. The block stays counted in
/// `used` until the owner takes it, so the pool (and the `heap` field read here) cannot
/// change under us; after the successful exchange we no longer touch the pool.
///
/// # Safety
/// `block` is a live block of `pool`, handed out and not yet freed.
#[inline(never)]
pub unsafe extern "C" fn remote_free(block: *mut Block, pool: *mut Pool) {
    // SAFETY: `pool` is in use while `block` is, so its header is mapped and `remote` is
    // valid; `block` is ours to write until it is published.
    unsafe {
        let remote = &(*pool).remote;
        let mut old = remote.load(Ordering::Relaxed);
        loop {
            if old & NOTIFY != 0 {
                match remote.compare_exchange_weak(
                    old,
                    old & !NOTIFY,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        Owner::push_delayed((*pool).heap(), block);
                        return;
                    }
                    Err(seen) => old = seen,
                }
            } else {
                let (head, count) = remote_list(old);
                // The cheap double-free check of the owner's free, for remote frees.
                if head == block {
                    return crate::allocator::fault::double_free(block.cast());
                }
                (*block).next = head;
                let new = block as usize | ((count as usize + 1) << REMOTE_COUNT_SHIFT);
                match remote.compare_exchange_weak(old, new, Ordering::Release, Ordering::Relaxed) {
                    Ok(_) => return,
                    Err(seen) => old = seen,
                }
            }
        }
    }
}

/// Owner: moves every remotely freed block onto `free` and returns how many there were.
/// With `free` empty (always so when the allocation slow path asks) the remote list
/// becomes the free list whole: no block is read, its length comes with the list.
///
/// # Safety
/// The caller owns `pool`, which is linked.
pub unsafe fn collect_remote(pool: *mut Pool) -> u32 {
    // SAFETY: the caller owns the pool; the swap hands us the whole list, whose links
    // were published by the freers' release exchanges.
    unsafe {
        // A plain load first: in a single-threaded program `remote` is always empty (or
        // just `NOTIFY`, which is not ours to clear), and the swap would cost a locked
        // instruction on every refill.
        if (*pool).remote.load(Ordering::Relaxed) & !NOTIFY == 0 {
            return 0;
        }
        // Not `NOTIFY` (it is only ever set on an empty list), so a list of blocks: take it.
        let (list, n) = remote_list((*pool).remote.swap(0, Ordering::Acquire));
        if !(*pool).free.is_null() {
            // Append the free list behind the remote one (`tidy` only; rare).
            let mut tail = list;
            while !(*tail).next.is_null() {
                tail = (*tail).next;
            }
            (*tail).next = (*pool).free;
        }
        (*pool).free = list;
        (*pool).set_used((*pool).used() - n);
        n
    }
}

/// Owner: marks an exhausted pool full, so that the next remote free notifies the heap.
/// Returns false, and leaves the bit clear, if remote frees are waiting to be collected.
///
/// # Safety
/// The caller owns `pool` and its `free` list is empty.
pub unsafe fn try_mark_full(pool: *mut Pool) -> bool {
    // SAFETY: the header is mapped while the caller owns the pool.
    unsafe {
        let remote = &(*pool).remote;
        // Already marked (sticky, see `NOTIFY`): nothing to do. A freer may clear the bit
        // right after this load; it then puts its block on the delayed list, which the
        // owner drains before it could miss it.
        match remote.load(Ordering::Relaxed) {
            NOTIFY => true,
            0 => remote
                .compare_exchange(0, NOTIFY, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::geometry::{usable_pools, ARENA_SIZE, POOLS_PER_ARENA};

    #[test]
    fn headers_and_pages_round_trip_for_every_header_page() {
        // 64 consecutive arenas (addresses only; nothing is read): every header-page index.
        let first = 0x7f00_0000_0000usize;
        let mut seen = 0u64;
        for k in 0..POOLS_PER_ARENA {
            let base = first + k * ARENA_SIZE;
            let h = header_page_index(base);
            seen |= 1 << h;
            assert_eq!(
                usable_pools(base).count_ones() as usize,
                POOLS_PER_ARENA - 1
            );
            assert_eq!(usable_pools(base) & (1 << h), 0);
            let table = header_table(base);
            assert_eq!(table, base + h * POOL_SIZE);
            for i in 0..POOLS_PER_ARENA {
                let header = header(base, i);
                assert_eq!(index_of(header), i);
                assert_eq!(page_of(header), base + i * POOL_SIZE);
                let p = base + i * POOL_SIZE + 3 * 64;
                assert_eq!(pool_of(p as *const u8), header);
                assert_eq!(pool_in(table, p), header);
                assert_eq!(pool_index(p), i);
                assert_eq!(in_header_page(p), i == h);
                // The headers stay inside the header page.
                assert_eq!(header as usize & !POOL_MASK, table);
            }
        }
        assert_eq!(
            seen,
            u64::MAX,
            "consecutive arenas use every page for headers"
        );
    }
}

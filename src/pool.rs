//! Pools: one 4 KiB page serving blocks of one size class, with its header at the start.
//!
//! A pool in use belongs to exactly one heap (its *owner*). The owner alone pops and pushes
//! `free` and changes `used`; any other thread that frees a block of the pool pushes it on
//! the lock-free `remote` list instead (or, when the owner asked to be told, on the heap's
//! delayed list, see [`remote_free`]). The owner takes the whole remote list back in one
//! atomic swap when its own list runs dry.

use crate::geometry::{
    blocks_per_pool, class_size, ARENA_MASK, POOL_HEADER_SIZE, POOL_MASK, POOL_SHIFT,
};
use crate::heap::Heap;
use crate::sync::{AtomicUsize, Ordering};
use core::ptr;

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
/// frees and allocations (common: with 4 KiB pools about half of the frees of the
/// random-lifetime benchmark W3 land in a full pool) crosses both transitions with plain
/// loads and stores, no atomic read-modify-write.
pub const NOTIFY: usize = 1;

/// The header at the start of every pool in use.
///
/// Invariants, for a pool in use (`heap` non-null):
/// - `used + len(free) == blocks_per_pool(class)`: `used` counts every block not on `free`,
///   including blocks waiting on `remote` or on the owner's delayed list;
/// - `free` and `remote` hold distinct blocks of this pool, never a block handed out;
/// - `linked` is true exactly while the pool is on its owner's class list for `class`;
///   an unlinked pool has no block on `free`, and `NOTIFY` set or a block on its owner's
///   delayed list;
/// - `remote` is either exactly `NOTIFY` or a list of blocks (possibly empty) without it:
///   the bit is only set from an empty list, and freers clear it before pushing;
/// - `heap` and `class` change only while `used == 0`, i.e. when no thread can hold a block
///   of the pool, so any thread freeing a block may read them without a lock.
#[repr(C)]
pub struct Pool {
    /// Blocks the owner can hand out (owner only).
    pub free: *mut Block,
    /// Blocks not on `free` (owner only).
    pub used: u32,
    /// Size class served.
    pub class: u8,
    /// On the owner's class list (owner only).
    pub linked: bool,
    _pad: u16,
    /// The owning heap; null while the pool is free in its arena.
    pub heap: *mut Heap,
    /// Blocks freed by other threads, as a list head, plus the [`NOTIFY`] bit.
    pub remote: AtomicUsize,
    /// Links of the owner's class list (owner only).
    pub next: *mut Pool,
    pub prev: *mut Pool,
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<Pool>() == POOL_HEADER_SIZE);
// Loom's atomics are larger than the real ones; the header size grows to fit under loom.
#[cfg(loom)]
const _: () = assert!(core::mem::size_of::<Pool>() <= POOL_HEADER_SIZE);

impl Pool {
    crate::sync::const_unless_loom! {
    /// The never-usable pool standing for "no pool" at the head of an empty class list:
    /// its `free` is always null, so the allocation fast path falls into the slow path.
    pub fn empty() -> Pool {
        Pool {
            free: ptr::null_mut(),
            used: 0,
            class: 0,
            linked: false,
            _pad: 0,
            heap: ptr::null_mut(),
            remote: AtomicUsize::new(0),
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
        }
    }
    }
}

/// The pool containing `p`.
#[inline(always)]
pub fn pool_of<T>(p: *const T) -> *mut Pool {
    (p as usize & !POOL_MASK) as *mut Pool
}

/// Index of the pool containing `p` inside its arena (0 is the arena header).
#[inline(always)]
pub fn pool_index(p: usize) -> usize {
    (p & ARENA_MASK) >> POOL_SHIFT
}

/// Block size of the pool holding `p`.
///
/// # Safety
/// `p` lies in a pool in use.
#[inline(always)]
pub unsafe fn block_size_of(p: *const u8) -> usize {
    // SAFETY: per the caller the header is live.
    class_size(unsafe { (*pool_of(p)).class } as usize)
}

/// `(class, used, owning heap)` of a pool in use that another thread may be changing, for
/// statistics: volatile reads, so a stale value is possible but nothing is assumed about it.
///
/// # Safety
/// `pool` is a pool of a mapped arena.
pub unsafe fn snapshot(pool: *mut Pool) -> (usize, u64, usize) {
    // SAFETY: the header is mapped memory of ours.
    unsafe {
        (
            ptr::addr_of!((*pool).class).read_volatile() as usize,
            u64::from(ptr::addr_of!((*pool).used).read_volatile()),
            ptr::addr_of!((*pool).heap).read_volatile() as usize,
        )
    }
}

/// Hints the CPU to bring `pool`'s header into the cache; never faults, whatever `pool` is
/// (null included).
#[inline(always)]
pub fn prefetch(pool: *mut Pool) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it reads nothing architecturally and cannot fault.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(pool as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = pool;
}

/// First block address of `pool`.
#[inline(always)]
fn first_block(pool: *mut Pool) -> usize {
    pool as usize + POOL_HEADER_SIZE
}

/// Whether `p` is the start of a block slot of `pool` (right offset and inside the pool).
pub fn is_block_start(pool: *mut Pool, class: usize, p: usize) -> bool {
    let base = first_block(pool);
    let size = class_size(class);
    p >= base && (p - base) % size == 0 && (p - base) / size < blocks_per_pool(class)
}

/// Prepares a pool fresh from its arena to serve `class` for `heap`: every block goes on
/// the free list, in address order.
///
/// # Safety
/// `pool` is a whole pool of one of our arenas that no heap owns, and the caller is the
/// thread about to own it.
pub unsafe fn init(pool: *mut Pool, heap: *mut Heap, class: usize) {
    let size = class_size(class);
    let count = blocks_per_pool(class);
    let base = first_block(pool);
    crate::valgrind::pool_reset(pool.cast(), crate::geometry::POOL_SIZE);
    // SAFETY: the whole page is ours and unused; every block written lies inside it.
    unsafe {
        for i in 0..count {
            let block = (base + i * size) as *mut Block;
            (*block).next = if i + 1 < count {
                (base + (i + 1) * size) as *mut Block
            } else {
                ptr::null_mut()
            };
        }
        crate::valgrind::pool_carved(base, size, count);
        pool.write(Pool {
            free: base as *mut Block,
            used: 0,
            class: class as u8,
            linked: false,
            _pad: 0,
            heap,
            remote: AtomicUsize::new(0),
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
        });
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
                        Heap::push_delayed((*pool).heap, block);
                        return;
                    }
                    Err(seen) => old = seen,
                }
            } else {
                // The cheap double-free check of the owner's free, for remote frees.
                if old == block as usize {
                    return crate::fault::double_free(block.cast());
                }
                (*block).next = old as *mut Block;
                match remote.compare_exchange_weak(
                    old,
                    block as usize,
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

/// Owner: moves every remotely freed block onto `free` and returns how many there were.
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
        let mut list = (*pool).remote.swap(0, Ordering::Acquire) as *mut Block;
        let mut n = 0;
        while !list.is_null() {
            let next = (*list).next;
            (*list).next = (*pool).free;
            (*pool).free = list;
            list = next;
            n += 1;
        }
        (*pool).used -= n;
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

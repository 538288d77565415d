//! The registry of heaps: every heap ever made, a thread's heap given at its first
//! allocation and abandoned at its exit, the abandoned heaps adopted by new threads, the
//! shared heap under its lock, and trim.

use super::alloc::alloc_from;
use super::cache::{release, shrink_cache};
use super::free::drain_delayed;
use super::lists::unlink;
use super::thread::{self, ThreadState};
use super::{blank_heap, empty_pool, Heap};
use crate::allocator::geometry::NUM_CLASSES;
use crate::allocator::pool;
use crate::allocator::sync::{self, Locked, Ordering};
#[cfg(not(loom))]
use alloc::vec::Vec;
use core::ptr;

/// The registry of heaps: every heap ever made (heaps are never unmapped) and the
/// abandoned ones waiting for a new thread, in [`REGISTRY`].
///
/// Invariants: `all` links every heap through `next_all`; `abandoned` and `vanished` link
/// disjoint sets of them through `next_abandoned`; `shared` is the shared heap once made
/// and `interpreter` the interpreter heap once made (null before), each on neither list.
pub(crate) struct Registry {
    pub(super) all: *mut Heap,
    pub(super) abandoned: *mut Heap,
    /// Heaps of threads that did not survive a `fork` (see `fork`): owned by nobody, never
    /// adopted.
    pub(super) vanished: *mut Heap,
    pub(super) shared: *mut Heap,
    /// Whether this process is a child made by `fork` (set by its handler): threads of the
    /// parent may have vanished in the middle of a remote free (see `fork`).
    pub(super) forked: bool,
    /// The interpreter heap ([`super::interp`]).
    pub(super) interpreter: *mut Heap,
}
// SAFETY: heaps are process-wide metadata, never freed and not tied to a thread; the
// registry lives in a `Locked` and is reached only under its lock.
unsafe impl Send for Registry {}

/// The shared heap (null until first needed), in [`SHARED`].
pub(crate) struct SharedHeap(*mut Heap);
// SAFETY: as for `Registry`: the heap is reached only under `SHARED`'s lock.
unsafe impl Send for SharedHeap {}

crate::allocator::sync::global! {
    /// The registry under its lock.
    pub(crate) static REGISTRY: Locked<Registry> = Locked::new(Registry {
        all: ptr::null_mut(),
        abandoned: ptr::null_mut(),
        vanished: ptr::null_mut(),
        shared: ptr::null_mut(),
        forked: false,
        interpreter: ptr::null_mut(),
    });
}

crate::allocator::sync::global! {
    /// The shared heap under its lock: it serves threads whose own heap was handed back at
    /// exit (their thread-local destructors may still allocate), threads that could get no
    /// heap, and debug mode's blocks. The holder of the lock acts as its owner. Made once,
    /// and then also recorded in the registry (`Registry::shared`) under both locks.
    pub(crate) static SHARED: Locked<SharedHeap> = Locked::new(SharedHeap(ptr::null_mut()));
}

/// Gives the calling thread a heap: an abandoned one if any, else a new one. False when
/// no metadata memory could be had.
pub(super) fn attach() -> bool {
    // (The fork handlers are registered by `fork`'s own constructor, before any heap.)
    let heap = {
        let mut reg = REGISTRY.lock();
        if reg.abandoned.is_null() {
            let heap = new_heap(&mut reg);
            if heap.is_null() {
                return false;
            }
            heap
        } else {
            let heap = reg.abandoned;
            // SAFETY: heaps on the abandoned list are live and ours under the lock.
            reg.abandoned = unsafe { (*heap).next_abandoned };
            heap
        }
    };
    thread::set_thread_heap(heap);
    thread::set_thread_state(ThreadState::Active);
    sync::at_thread_exit(heap.cast(), on_thread_exit);
    true
}

/// pthread key destructor: the thread is exiting; hand its heap back.
unsafe extern "C" fn on_thread_exit(heap: *mut libc::c_void) {
    let heap = heap.cast::<Heap>();
    thread::set_thread_heap(Heap::empty());
    thread::set_thread_state(ThreadState::Exited);
    let mut reg = REGISTRY.lock();
    // SAFETY: the exiting thread owned `heap` until now; under the registry lock nobody
    // else can adopt it before it is on the abandoned list.
    unsafe {
        tidy(heap);
        (*heap).next_abandoned = reg.abandoned;
        reg.abandoned = heap;
    }
}

/// Loom models have no pthread key destructors: a model thread calls this as its last act,
/// standing for the destructor that hands its heap back.
#[cfg(loom)]
pub fn exit_thread() {
    let heap = thread::thread_heap();
    if heap != Heap::empty() {
        // SAFETY: the calling thread owns `heap` and is done with it.
        unsafe { on_thread_exit(heap.cast()) };
    }
}

/// Makes a blank heap and links it into `reg.all`; null when no metadata memory could be had.
/// (Out of line: its three callers share one copy of the heap's initial value.)
#[inline(never)]
fn new_heap(reg: &mut Registry) -> *mut Heap {
    let heap = crate::allocator::meta::alloc::<Heap>();
    if !heap.is_null() {
        // SAFETY: fresh metadata memory, sized and aligned for a Heap.
        unsafe {
            heap.write(blank_heap());
            (*heap).next_all = reg.all;
        }
        reg.all = heap;
    }
    heap
}

/// Makes the interpreter heap ([`super::interp`]) and records it in the registry; null when
/// no metadata memory could be had.
pub(super) fn attach_interpreter() -> *mut Heap {
    let mut reg = REGISTRY.lock();
    if reg.interpreter.is_null() {
        reg.interpreter = new_heap(&mut reg);
    }
    reg.interpreter
}

/// Takes back delayed and remote frees and gives every empty pool back to its arena,
/// the last pool of a class and the cache included.
///
/// # Safety
/// The caller acts as `heap`'s owner.
pub(super) unsafe fn tidy(heap: *mut Heap) {
    // SAFETY: per the caller.
    unsafe {
        drain_delayed(heap);
        for class in 0..NUM_CLASSES {
            let mut pool = (*heap).lists[class];
            while pool != empty_pool() && !pool.is_null() {
                let next = (*pool).next;
                pool::collect_remote(pool);
                if (*pool).used() == 0 {
                    debug_assert!(
                        (*pool).linked()
                            && (*pool).remote.load(Ordering::Relaxed) & !pool::NOTIFY == 0
                    );
                    unlink(heap, pool);
                    release(heap, pool);
                }
                pool = next;
            }
        }
        shrink_cache(heap, u32::MAX);
    }
}

/// Allocates `n` bytes (`1 <= n <= 512`) from the shared heap, under its lock.
pub fn alloc_shared(n: usize) -> *mut u8 {
    let mut shared = SHARED.lock();
    // SAFETY: the lock is held, so we act as the owner of the shared heap.
    unsafe {
        if shared.0.is_null() {
            let mut reg = REGISTRY.lock();
            let heap = new_heap(&mut reg);
            if heap.is_null() {
                return ptr::null_mut();
            }
            reg.shared = heap;
            shared.0 = heap;
        }
        alloc_from(shared.0, n)
    }
}

/// Returns to the arenas every empty pool of the calling thread's heap, of the shared heap
/// and of every abandoned heap, and those of the interpreter heap now if the calling thread
/// holds its lock, else at its next slow path (see `pymalloc_trim`).
pub fn trim() {
    let own = thread::thread_heap();
    if own != Heap::empty() {
        // SAFETY: the calling thread owns its heap.
        unsafe { tidy(own) };
    }
    super::interp::trim();
    {
        let shared = SHARED.lock();
        if !shared.0.is_null() {
            // SAFETY: the lock is held, so we act as the owner of the shared heap. Its
            // blocks come back as remote frees, and a pool emptied by collected remote
            // frees stays on its lists until tidied.
            unsafe { tidy(shared.0) };
        }
    }
    let reg = REGISTRY.lock();
    // SAFETY: the registry lock is held, and abandoned heaps are owned by its holder;
    // `tidy` leaves the registry's links alone.
    unsafe { each(reg.abandoned, Link::Abandoned, |heap| tidy(heap)) };
}

/// The link a list of the registry is made of.
#[derive(Clone, Copy)]
pub(super) enum Link {
    /// `next_all`: the list of every heap (`Registry::all`).
    All,
    /// `next_abandoned`: the abandoned heaps, or the vanished ones.
    Abandoned,
}

/// Calls `f` on every heap of the registry's list that begins at `heap` (null: empty) and
/// is made of `link`, reading each heap's link after `f` returns.
///
/// # Safety
/// The registry lock is held, `heap` heads one of its lists made of `link`, and `f` leaves
/// that link of every heap as it was.
pub(super) unsafe fn each(mut heap: *mut Heap, link: Link, mut f: impl FnMut(*mut Heap)) {
    while !heap.is_null() {
        f(heap);
        // SAFETY: per the caller `heap` is on one of the registry's lists, whose links
        // change only under its lock; heaps are never freed.
        heap = unsafe {
            match link {
                Link::All => (*heap).next_all,
                Link::Abandoned => (*heap).next_abandoned,
            }
        };
    }
}

/// In a child just forked, with the registry lock held by the forking thread (the fork
/// handlers hold every lock): marks every heap that was active in the parent, other than
/// the calling thread's own, as vanished, and the process as a forked child.
///
/// # Safety
/// Called only from the child's fork handler, before it releases the registry lock.
#[cfg(not(loom))]
pub(crate) unsafe fn forget_vanished_threads() {
    let own = thread::thread_heap();
    // SAFETY: the registry lock is held by this thread (per the caller), the only one;
    // heaps are never freed. The walk of `all` writes only `next_abandoned` links.
    unsafe {
        let reg = &mut *REGISTRY.held();
        reg.forked = true;
        let (shared, interpreter) = (reg.shared, reg.interpreter);
        let mut listed = Vec::new();
        for h in [reg.abandoned, reg.vanished] {
            each(h, Link::Abandoned, |h| listed.push(h));
        }
        each(reg.all, Link::All, |h| {
            // (The interpreter heap goes on with the GIL, which the forking thread holds.)
            if h != own && h != shared && h != interpreter && !listed.contains(&h) {
                (*h).next_abandoned = reg.vanished;
                reg.vanished = h;
            }
        });
    }
}

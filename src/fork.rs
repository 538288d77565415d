//! `fork()` in a process whose other threads are inside the allocator.
//!
//! After `fork` only the calling thread exists in the child. Had another thread held one of
//! our locks at that moment, the child would find it held forever and deadlock on its first
//! allocation that needs it. So `pthread_atfork` handlers take every allocator lock before
//! the fork (waiting for the threads inside to leave) and release them afterwards, in the
//! parent and in the child alike.
//!
//! ## Lock order
//!
//! Every allocator lock, outermost first. A thread holding one lock only ever takes locks
//! further down this list, and `prepare` takes them all in this order, so it cannot
//! deadlock with a thread already inside:
//!
//! 1. `cpython::INSTALL` (installation into CPython: takes none of ours, but is
//!    outermost so that any could be taken under it; the C library's loader lock, which
//!    `dlsym` takes, is never taken under it),
//! 2. `heap::SHARED` (the shared heap of exited threads and debug mode; its slow path takes 3-5),
//! 3. `heap::REGISTRY` (attach, thread exit, trim: takes 4 and 5),
//! 4. `meta::BUMP` (metadata memory: takes nothing),
//! 5. `arena::ARENAS` (pool hand-out and return: takes nothing),
//! 6. `sync::KEY_LOCK` (creation of the thread-exit key: taken with nothing else held),
//! 7. `debug::STATE` (debug mode's quarantine and large-block registry: takes nothing; its
//!    collections allocate from the C library's malloc, which has its own fork handlers).
//!
//! ## The child's other heaps
//!
//! The heaps of the threads that did not survive the fork stay owned by nobody: they are not
//! put on the abandoned list, because their owners may have been in the middle of a fast path
//! (a pool's `free` list moved but its `used` count not yet) and a new thread adopting such a
//! heap would inherit the half-done update. Blocks of theirs that the child frees take the
//! remote-free path, which touches only the pools' `remote` lists and the heaps' `delayed`
//! lists and so is safe; their memory simply stays mapped for the life of the child, which is
//! what glibc's malloc does with the arenas of vanished threads too. The child's handler puts
//! them on the registry's vanished list, so the statistics call them vanished, not active,
//! and the walker (`pymalloc_check`) checks none of their half-done books, only what the
//! surviving heaps hold ([`check::verify`](crate::introspect::check::verify)). A remote free that a
//! vanished thread had begun into a full pool, and not finished (it took the pool's notice,
//! `NOTIFY`, and had not yet put the block on the owner's delayed list), loses its block,
//! and the pool stays off its owner's list for good: its blocks leak in the child, as the
//! walker allows. Debug mode hands every freed block back that way, so there it happens
//! often.
//! The child's own thread keeps its heap and continues as before.
//!
//! ## Registration
//!
//! The handlers are registered by this module's library constructor (`.init_array`, kept
//! by `#[used]` in every build of the crate: shared, static, rlib), so before `main` and
//! before any thread can be inside the allocator.

use crate::{
    allocator::arena, allocator::heap, allocator::meta, allocator::sync, cpython, front::debug,
};

/// Takes every allocator lock, in the order stated above.
extern "C" fn prepare() {
    cpython::INSTALL.raw_lock().acquire();
    heap::SHARED.raw_lock().acquire();
    heap::REGISTRY.raw_lock().acquire();
    meta::BUMP.raw_lock().acquire();
    arena::ARENAS.raw_lock().acquire();
    sync::KEY_LOCK.acquire();
    debug::STATE.raw_lock().acquire();
}

/// Releases every lock [`prepare`] took, in reverse order.
extern "C" fn release_all() {
    // SAFETY: `prepare` ran in this thread just before the fork and took all seven; in the
    // child this thread is the one that took them.
    unsafe {
        debug::STATE.raw_lock().release();
        sync::KEY_LOCK.release();
        arena::ARENAS.raw_lock().release();
        meta::BUMP.raw_lock().release();
        heap::REGISTRY.raw_lock().release();
        heap::SHARED.raw_lock().release();
        cpython::INSTALL.raw_lock().release();
    }
}

/// The child's handler: the heaps of the threads that did not survive are marked vanished,
/// then every lock is released.
extern "C" fn child() {
    // SAFETY: the forking thread holds the registry lock (`prepare`) and is the only one.
    unsafe { heap::forget_vanished_threads() };
    release_all();
}

/// The library constructor: registers the fork handlers, once per process, before any
/// thread can have a heap (the loader runs it before `main` and before `dlopen` returns).
extern "C" fn constructor() {
    // SAFETY: the handlers are plain C functions that live as long as the library.
    // A failure (ENOMEM) leaves fork unprotected; nothing to undo.
    unsafe {
        libc::pthread_atfork(Some(prepare), Some(release_all), Some(child));
    }
}

#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;

//! Every concurrency primitive the allocator uses: atomics, the one lock type and data under
//! it ([`Locked`]), and the thread-exit hook. Nothing else in the crate names
//! `core::sync::atomic`, so a `--cfg loom` build can swap these for loom's. (The thread's
//! heap pointer and state, thread-locals the heap layer defines, are in `heap::thread`.)

pub use core::sync::atomic::Ordering;
#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize};
#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize};

/// Atomics that stay `core`'s under loom too, because no model is about them: the ownership
/// map (its root in `.bss` and its leaves, written under the arena lock and read after
/// whatever synchronisation handed the pointer over), the process-wide fallback allocator
/// and the other start-up settings (CPython forwarding and dispatch, debug mode, the decay
/// epoch), and the statistics counters of large blocks.
pub mod unmodeled {
    pub use core::sync::atomic::{
        AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
    };
}

/// Declares a global: a plain `static` normally; under loom a `loom::lazy_static!`, made
/// afresh in every model execution and dropped at its end (loom's atomics have no `const`
/// constructor and must not outlive the execution that made them). Use it like a static;
/// under loom it derefs to the value.
macro_rules! global {
    ($(#[$m:meta])* $(pub($($v:tt)+))? static $name:ident: $ty:ty = $init:expr;) => {
        #[cfg(not(loom))]
        $(#[$m])* $(pub($($v)+))? static $name: $ty = $init;
        #[cfg(loom)]
        loom::lazy_static! { $(#[$m])* $(pub($($v)+))? static ref $name: $ty = $init; }
    };
}
pub(crate) use global;

/// Defines a function that is `const` in normal builds and not under loom, whose atomics
/// have no `const` constructor.
macro_rules! const_unless_loom {
    ($(#[$m:meta])* $vis:vis fn $name:ident() -> $ret:ty $body:block) => {
        #[cfg(not(loom))]
        $(#[$m])* $vis const fn $name() -> $ret $body
        #[cfg(loom)]
        $(#[$m])* $vis fn $name() -> $ret $body
    };
}
pub(crate) use const_unless_loom;

use core::cell::UnsafeCell;

/// A test-and-test-and-set lock. It never allocates, has a `const` constructor (it guards
/// statics), and can be released without a guard, which `fork` handling needs.
///
/// Invariant: `holder` is the holding thread's `me()` exactly while one thread holds the
/// lock (from `lock` until its guard drops, or from `acquire` until `release`), 0 while
/// none does. So a thread that finds the lock taken can tell whether it took it itself:
/// re-entered from a signal handler (unsupported) it would wait for ever, and aborts with
/// a line that says why instead (`fault::reentered`).
pub struct Lock {
    holder: AtomicUsize,
}

/// The calling thread, as a non-zero word (its `pthread_t`; `pthread_self` is
/// async-signal-safe in practice, a read of the thread pointer). Loom's model threads
/// share one OS thread: under loom every thread is 1 and nobody is told apart.
#[inline]
fn me() -> usize {
    #[cfg(not(loom))]
    // SAFETY: pthread_self has no preconditions.
    return unsafe { libc::pthread_self() } as usize;
    #[cfg(loom)]
    return 1;
}

impl Lock {
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Lock {
            holder: AtomicUsize::new(0),
        }
    }

    #[cfg(loom)]
    pub fn new() -> Self {
        Lock {
            holder: AtomicUsize::new(0),
        }
    }

    /// Takes the lock and returns a guard that releases it.
    #[inline]
    pub fn lock(&self) -> LockGuard<'_> {
        self.acquire();
        LockGuard { lock: self }
    }

    /// Takes the lock with no guard; pair with [`Lock::release`].
    pub fn acquire(&self) {
        let me = me();
        // Under loom: a compare-exchange every turn, which reads the latest value and,
        // failing, writes nothing, and a yield every turn. A plain load may be shown an old
        // holder again and again: loom would explore it without end.
        #[cfg(loom)]
        while self
            .holder
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            yield_now();
        }
        #[cfg(not(loom))]
        loop {
            let Err(mut holder) =
                self.holder
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            else {
                return;
            };
            // The slow path. Only this thread ever writes its own `me` here, and it clears
            // it before it lets go, so seeing it means this thread holds the lock.
            if holder == me {
                crate::allocator::fault::reentered();
            }
            let mut spins = 0u32;
            while holder != 0 {
                spins += 1;
                if spins < 64 {
                    core::hint::spin_loop();
                } else {
                    yield_now();
                }
                holder = self.holder.load(Ordering::Relaxed);
            }
        }
    }

    /// Releases a lock taken with [`Lock::acquire`].
    ///
    /// # Safety
    /// The calling thread holds the lock (or, in a forked child, the thread that held it
    /// no longer exists).
    pub unsafe fn release(&self) {
        self.holder.store(0, Ordering::Release);
    }
}

impl Default for Lock {
    fn default() -> Self {
        Self::new()
    }
}

/// Releases its [`Lock`] when dropped.
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: the guard exists only while its thread holds the lock.
        unsafe { self.lock.release() }
    }
}

/// Data and the lock that guards it, together: the data is reached only through the guard
/// [`Locked::lock`] returns, so no access can forget the lock. Every lock-guarded global of
/// the allocator is one of these.
///
/// Invariant: `data` is referenced only while `lock` is held, by the holder.
pub struct Locked<T> {
    lock: Lock,
    data: UnsafeCell<T>,
}

// SAFETY: the data moves between threads only under the lock, one holder at a time, so
// sharing a `Locked<T>` is sound whenever `T` may be sent to another thread.
unsafe impl<T: Send> Sync for Locked<T> {}

impl<T> Locked<T> {
    /// `data` under a new, free lock.
    #[cfg(not(loom))]
    pub const fn new(data: T) -> Self {
        Locked {
            lock: Lock::new(),
            data: UnsafeCell::new(data),
        }
    }

    /// `data` under a new, free lock.
    #[cfg(loom)]
    pub fn new(data: T) -> Self {
        Locked {
            lock: Lock::new(),
            data: UnsafeCell::new(data),
        }
    }

    /// Takes the lock; the guard gives the data and releases the lock when dropped.
    #[inline]
    pub fn lock(&self) -> LockedGuard<'_, T> {
        LockedGuard {
            _guard: self.lock.lock(),
            data: self,
        }
    }

    /// The data, for the thread that holds the lock through [`Locked::raw_lock`] (a fork
    /// handler).
    ///
    /// # Safety
    /// The calling thread holds the lock and makes no other reference to the data while
    /// it uses the pointer.
    pub unsafe fn held(&self) -> *mut T {
        self.data.get()
    }

    /// The data's address, for a descriptor an outside reader uses (`layout`): nothing may
    /// be read or written through it in the process without holding the lock.
    pub const fn data_address(&self) -> *const T {
        self.data.get()
    }

    /// The lock alone, for the fork handlers, which take and release every lock around
    /// `fork` without touching any data (see `fork`).
    pub fn raw_lock(&self) -> &Lock {
        &self.lock
    }
}

/// The data of a [`Locked`], its lock held until this drops.
pub struct LockedGuard<'a, T> {
    _guard: LockGuard<'a>,
    data: &'a Locked<T>,
}

impl<T> core::ops::Deref for LockedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held for the guard's life, so no other reference exists.
        unsafe { &*self.data.data.get() }
    }
}

impl<T> core::ops::DerefMut for LockedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above; `&mut self` makes this the only reference through the guard.
        unsafe { &mut *self.data.data.get() }
    }
}

/// Gives the CPU away while waiting for another thread.
pub fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    // SAFETY: sched_yield has no preconditions.
    unsafe {
        libc::sched_yield();
    }
}

/// Guards the creation of the pthread key behind [`at_thread_exit`].
#[cfg(not(loom))]
pub(crate) static KEY_LOCK: Lock = Lock::new();

/// Arranges for `on_exit(data)` to run when the calling thread exits. Threads created by
/// C code are covered too: this is a pthread key destructor, not a Rust TLS destructor.
#[cfg(not(loom))]
pub(crate) fn at_thread_exit(
    data: *mut libc::c_void,
    on_exit: unsafe extern "C" fn(*mut libc::c_void),
) {
    use core::sync::atomic::AtomicU32;
    const UNSET: u32 = u32::MAX;
    static KEY: AtomicU32 = AtomicU32::new(UNSET);

    let mut key = KEY.load(Ordering::Acquire);
    if key == UNSET {
        let _guard = KEY_LOCK.lock();
        key = KEY.load(Ordering::Relaxed);
        if key == UNSET {
            let mut k: libc::pthread_key_t = 0;
            // SAFETY: `k` is a valid out-pointer; the destructor is a plain C function.
            if unsafe { libc::pthread_key_create(&mut k, Some(on_exit)) } != 0 {
                return; // no key left: the heap is simply never handed back
            }
            key = k;
            KEY.store(key, Ordering::Release);
        }
    }
    // SAFETY: `key` was created above; a non-NULL value makes the destructor run.
    unsafe {
        libc::pthread_setspecific(key, data);
    }
}

/// Loom threads never exit through pthreads; models hand heaps back explicitly.
#[cfg(loom)]
pub(crate) fn at_thread_exit(
    _data: *mut libc::c_void,
    _on_exit: unsafe extern "C" fn(*mut libc::c_void),
) {
}

//! `PYMALLOC_TRIM_SIGNAL`: a signal, chosen by the user at start (off by default), that
//! asks the process to give its free pools back now (`pymalloc trim PID`). The handler only
//! sets a flag; the next allocation slow path of a thread with its own heap sees it and
//! trims as `pymalloc_trim` does, outside the handler, where taking locks is allowed. No
//! thread is started, and the fast paths do not look at the flag.
//!
//! It cannot work when the program installs its own handler for the signal afterwards
//! (Python's `signal.signal`), when the signal is blocked in every thread, or in a process
//! that never allocates again (docs/decisions.md#pymalloc-trim-asks-through-a-signal).
//!
//! Invariants: `SIGNAL` is 0, or the signal whose handler [`install`] set; `REQUESTED` is
//! set by the handler and cleared by the one slow path that takes it ([`take_if`]).

use crate::allocator::sync::{unmodeled, Ordering};

/// The signal installed, 0 when none (read from outside through the descriptor).
static SIGNAL: unmodeled::AtomicU32 = unmodeled::AtomicU32::new(0);

/// Set by the handler: a trim is wanted.
static REQUESTED: unmodeled::AtomicBool = unmodeled::AtomicBool::new(false);

/// The handler: one atomic store, async-signal-safe.
extern "C" fn on_signal(_: libc::c_int) {
    REQUESTED.store(true, Ordering::Relaxed);
}

/// Installs the handler for `signo` (SA_RESTART: an interrupted system call resumes).
/// False when the system refuses (a signal that cannot be caught).
pub fn install(signo: i32) -> bool {
    // SAFETY: a zeroed sigaction is a valid value; the handler is a plain C function that
    // only stores to an atomic.
    let ok = unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signo, &action, core::ptr::null_mut()) == 0
    };
    if ok {
        SIGNAL.store(signo as u32, Ordering::Relaxed);
    }
    ok
}

/// Whether a trim was asked for since the last call that said so (which clears it), when
/// `able()` says the caller can trim now (else the request stays for another): a plain
/// load first, so that a slow path pays no atomic read-modify-write.
#[inline]
pub fn take_if(able: impl FnOnce() -> bool) -> bool {
    REQUESTED.load(Ordering::Relaxed) && able() && REQUESTED.swap(false, Ordering::Relaxed)
}

/// The address of the installed signal's number, for the descriptor (`layout`).
pub const fn layout() -> *const u8 {
    SIGNAL.as_ptr().cast()
}

//! The calling thread's heap pointer and state: the thread slot the fast paths read.

use super::Heap;
use crate::allocator::sync;
use core::cell::Cell;

// The calling thread's heap. It starts as the shared empty heap, whose every class list is
// the empty pool, so the first allocation of a thread falls into the slow path without a
// separate "no heap yet" test on the fast path.
//
// On x86-64 Linux the pointer lives in an initial-exec TLS slot declared in assembly: one
// `mov` from `%fs`, where Rust's `thread_local!` in a shared library costs a call to
// `__tls_get_addr` (docs/decisions.md#the-threads-heap-in-an-initial-exec-tls-slot). The
// initial-exec model needs the slot in the static TLS block: true for the executable, for
// its DT_NEEDED libraries and for LD_PRELOAD; a dlopen'ed copy uses glibc's static TLS
// surplus, which 8 bytes fit in. The slot's initial value is the empty heap, through a
// relocation in `.tdata` that the loader applies before any thread copies the image.
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(loom)))]
mod heap_slot {
    use super::super::Heap;

    core::arch::global_asm!(
        ".pushsection .tdata,\"awT\",@progbits",
        ".p2align 3",
        ".globl pymalloc_thread_heap",
        ".hidden pymalloc_thread_heap",
        ".type pymalloc_thread_heap,@object",
        ".size pymalloc_thread_heap,8",
        "pymalloc_thread_heap:",
        ".quad {empty}",
        ".popsection",
        empty = sym crate::allocator::heap::EMPTY_HEAP,
    );

    #[inline(always)]
    pub fn get() -> *mut Heap {
        let heap: *mut Heap;
        // SAFETY: reads the calling thread's 8-byte slot declared above; `%fs` points at
        // the thread control block and the GOT entry holds the slot's offset from it.
        unsafe {
            core::arch::asm!(
                "mov {heap}, qword ptr [rip + pymalloc_thread_heap@GOTTPOFF]",
                "mov {heap}, qword ptr fs:[{heap}]",
                heap = out(reg) heap,
                options(nostack, readonly, preserves_flags, pure),
            );
        }
        heap
    }

    pub fn set(heap: *mut Heap) {
        // SAFETY: writes the calling thread's slot declared above.
        unsafe {
            core::arch::asm!(
                "mov {tmp}, qword ptr [rip + pymalloc_thread_heap@GOTTPOFF]",
                "mov qword ptr fs:[{tmp}], {heap}",
                tmp = out(reg) _,
                heap = in(reg) heap,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(loom))))]
mod heap_slot {
    use super::super::Heap;
    use core::cell::Cell;

    #[cfg(not(loom))]
    crate::allocator::sync::thread_local! {
        static THREAD_HEAP: Cell<*mut Heap> = const { Cell::new(Heap::EMPTY) };
    }
    #[cfg(loom)]
    crate::allocator::sync::thread_local! {
        static THREAD_HEAP: Cell<*mut Heap> = Cell::new(Heap::empty());
    }

    #[inline(always)]
    pub fn get() -> *mut Heap {
        THREAD_HEAP.with(|h| h.get())
    }

    pub fn set(heap: *mut Heap) {
        THREAD_HEAP.with(|h| h.set(heap));
    }
}

#[cfg(not(loom))]
sync::thread_local! {
    static THREAD_STATE: Cell<ThreadState> = const { Cell::new(ThreadState::Fresh) };
}
#[cfg(loom)]
sync::thread_local! {
    static THREAD_STATE: Cell<ThreadState> = Cell::new(ThreadState::Fresh);
}

/// Where a thread stands with respect to its heap.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ThreadState {
    /// Has not allocated yet.
    Fresh,
    /// Owns the heap in [`thread_heap`].
    Active,
    /// Its heap was handed back at thread exit; later calls use the shared locked heap.
    Exited,
}

/// The calling thread's heap ([`Heap::empty`] until it first allocates).
#[inline(always)]
pub fn thread_heap() -> *mut Heap {
    heap_slot::get()
}

/// Sets the calling thread's heap.
pub fn set_thread_heap(heap: *mut Heap) {
    heap_slot::set(heap);
}

/// The calling thread's state.
pub fn thread_state() -> ThreadState {
    THREAD_STATE.with(|s| s.get())
}

/// Sets the calling thread's state.
pub fn set_thread_state(state: ThreadState) {
    THREAD_STATE.with(|s| s.set(state));
}

//! The calling thread's heap pointer and state: the thread slot the fast paths read.

use super::Heap;

// The calling thread's heap and state, in two 8-byte thread-local slots. The heap starts as
// the shared empty heap, whose every class list is the empty pool, so the first
// allocation of a thread falls into the slow path without a separate "no heap yet" test on
// the fast path; the state starts as `Fresh` (0).
//
// On x86-64 Linux the slots are initial-exec TLS declared in assembly: a read is one load
// of the slot's offset from the GOT and one `mov` from `%fs`, where Rust's `thread_local!`
// in a shared library costs a call to `__tls_get_addr`, and the library has no `std` to
// take it from (docs/decisions.md#the-threads-heap-in-an-initial-exec-tls-slot). The
// initial-exec model needs the slots in the static TLS block: true for the executable, for
// its DT_NEEDED libraries and for LD_PRELOAD; a dlopen'ed copy uses glibc's static TLS
// surplus, which 16 bytes fit in. The heap slot's initial value is the empty heap, through
// a relocation in `.tdata` that the loader applies before any thread copies the image.
// Other targets are not supported (the platform tested is x86-64 Linux); under loom,
// whose threads share one OS thread, the slots are loom's thread-locals.
#[cfg(not(loom))]
mod slots {
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    compile_error!(
        "pymalloc-rs's thread slots are written for x86-64 Linux (src/allocator/heap/thread.rs)"
    );

    core::arch::global_asm!(
        ".pushsection .tdata,\"awT\",@progbits",
        ".p2align 3",
        ".globl pymalloc_thread_heap",
        ".hidden pymalloc_thread_heap",
        ".type pymalloc_thread_heap,@object",
        ".size pymalloc_thread_heap,8",
        "pymalloc_thread_heap:",
        ".quad {empty}",
        ".globl pymalloc_thread_state",
        ".hidden pymalloc_thread_state",
        ".type pymalloc_thread_state,@object",
        ".size pymalloc_thread_state,8",
        "pymalloc_thread_state:",
        ".quad 0",
        ".popsection",
        empty = sym crate::allocator::heap::EMPTY_HEAP,
    );

    /// A getter and a setter of the calling thread's slot `$slot` (declared above).
    macro_rules! slot {
        ($get:ident, $set:ident, $slot:literal) => {
            #[inline(always)]
            pub fn $get() -> usize {
                let value: usize;
                // SAFETY: reads the calling thread's 8-byte slot declared above; `%fs`
                // points at the thread control block and the GOT entry holds the slot's
                // offset from it.
                unsafe {
                    core::arch::asm!(
                        concat!("mov {v}, qword ptr [rip + ", $slot, "@GOTTPOFF]"),
                        "mov {v}, qword ptr fs:[{v}]",
                        v = out(reg) value,
                        options(nostack, readonly, preserves_flags, pure),
                    );
                }
                value
            }

            pub fn $set(value: usize) {
                // SAFETY: writes the calling thread's slot declared above.
                unsafe {
                    core::arch::asm!(
                        concat!("mov {tmp}, qword ptr [rip + ", $slot, "@GOTTPOFF]"),
                        "mov qword ptr fs:[{tmp}], {v}",
                        tmp = out(reg) _,
                        v = in(reg) value,
                        options(nostack, preserves_flags),
                    );
                }
            }
        };
    }
    slot!(heap, set_heap, "pymalloc_thread_heap");
    slot!(state, set_state, "pymalloc_thread_state");
}

#[cfg(loom)]
mod slots {
    use super::super::Heap;
    use core::cell::Cell;

    loom::thread_local! {
        static HEAP: Cell<usize> = Cell::new(Heap::empty() as usize);
        static STATE: Cell<usize> = Cell::new(0);
    }

    pub fn heap() -> usize {
        HEAP.with(|h| h.get())
    }
    pub fn set_heap(heap: usize) {
        HEAP.with(|h| h.set(heap));
    }
    pub fn state() -> usize {
        STATE.with(|s| s.get())
    }
    pub fn set_state(state: usize) {
        STATE.with(|s| s.set(state));
    }
}

/// Where a thread stands with respect to its heap.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub enum ThreadState {
    /// Has not allocated yet.
    Fresh = 0,
    /// Owns the heap in [`thread_heap`].
    Active = 1,
    /// Its heap was handed back at thread exit; later calls use the shared locked heap.
    Exited = 2,
}

/// The calling thread's heap ([`Heap::empty`] until it first allocates).
#[inline(always)]
pub fn thread_heap() -> *mut Heap {
    slots::heap() as *mut Heap
}

/// Sets the calling thread's heap.
pub fn set_thread_heap(heap: *mut Heap) {
    slots::set_heap(heap as usize);
}

/// The calling thread's state.
pub fn thread_state() -> ThreadState {
    match slots::state() {
        0 => ThreadState::Fresh,
        1 => ThreadState::Active,
        _ => ThreadState::Exited,
    }
}

/// Sets the calling thread's state.
pub fn set_thread_state(state: ThreadState) {
    slots::set_state(state as usize);
}

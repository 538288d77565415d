//! What the `no_std` library supplies itself when it is built to abort on panic, as the
//! shipped `libpymalloc.so` and `.a` are (tests and benches unwind, and link `std`, which
//! supplies both instead): the panic handler, and the allocator behind `alloc`. They are
//! the Rust runtime's own symbols, which a `std` in the same program defines too: the
//! static library cannot be linked beside other Rust code
//! (docs/decisions.md#the-library-is-no_std-and-aborts-on-panic).

#[cfg(panic = "abort")]
mod abort {
    use crate::allocator::fault::Report;
    use core::alloc::{GlobalAlloc, Layout};

    /// A panic is a bug in the library: say where it happened and abort. The message is
    /// left out, as formatting it would link `core`'s formatting into every process.
    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        let mut report = Report::new("internal error (a Rust panic)");
        if let Some(at) = info.location() {
            report
                .text("    at ")
                .text(at.file())
                .text(":")
                .dec(at.line() as usize)
                .text("\n");
        }
        report.abort()
    }

    /// `alloc`'s strings, vectors and maps (cold paths only) come from the C library's
    /// `malloc`, which aligns every block to `max_align_t` (16 bytes on x86-64 and
    /// AArch64 glibc); a stricter alignment takes `posix_memalign`.
    struct CLibrary;

    const MALLOC_ALIGN: usize = core::mem::align_of::<libc::max_align_t>();

    // SAFETY: every block comes from malloc / posix_memalign with at least the layout's
    // size and alignment, and goes back to free; realloc keeps malloc's alignment, so it is
    // used only where that alignment suffices.
    unsafe impl GlobalAlloc for CLibrary {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout.align() <= MALLOC_ALIGN {
                // SAFETY: malloc has no preconditions.
                return unsafe { libc::malloc(layout.size()) }.cast();
            }
            let mut p = core::ptr::null_mut();
            // SAFETY: the alignment is a power of two and a multiple of the pointer size
            // (it exceeds MALLOC_ALIGN); `p` is a valid out-pointer.
            if unsafe { libc::posix_memalign(&mut p, layout.align(), layout.size()) } != 0 {
                return core::ptr::null_mut();
            }
            p.cast()
        }

        unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
            // SAFETY: `p` came from `alloc` or `realloc` above.
            unsafe { libc::free(p.cast()) }
        }

        unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if layout.align() <= MALLOC_ALIGN {
                // SAFETY: `p` came from malloc (its alignment is malloc's) or realloc.
                return unsafe { libc::realloc(p.cast(), new_size) }.cast();
            }
            // SAFETY: forwarded caller contract; the default moves the block.
            unsafe {
                let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
                if !new.is_null() {
                    core::ptr::copy_nonoverlapping(p, new, layout.size().min(new_size));
                    self.dealloc(p, layout);
                }
                new
            }
        }
    }

    #[global_allocator]
    static ALLOCATOR: CLibrary = CLibrary;

    // The toolchain's precompiled `core` is built to unwind, so its unwind tables name a
    // personality routine, which only `std` defines; the one function of it the library
    // links with a table (the report `alloc` makes when memory runs out) never unwinds,
    // so the routine is never called. This stands in for it, and traps if it ever runs. It
    // is hidden, so the shared library keeps it to itself; in the static library it is an
    // ordinary definition, which clashes with a `std` linked beside it.
    core::arch::global_asm!(
        ".pushsection .text.rust_eh_personality,\"ax\",@progbits",
        ".globl rust_eh_personality",
        ".hidden rust_eh_personality",
        ".type rust_eh_personality,@function",
        "rust_eh_personality:",
        "ud2",
        ".size rust_eh_personality,.-rust_eh_personality",
        ".popsection",
    );
}

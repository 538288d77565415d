//! Valgrind client requests (cargo feature `valgrind`): tell memcheck that pool blocks are
//! malloc-like, so it reports leaks of them and reads past them as it does for `malloc`.
//! Without the feature (or off x86-64) every function here is empty and costs nothing;
//! with it, each request is a few no-op instructions when not running under Valgrind.
//!
//! Only the user's view is annotated, at the API layer: a block handed out is
//! `MALLOCLIKE`; a freed one is `FREELIKE` and its first word (the free-list link, the only
//! part of a free block the allocator touches) is made defined again. A pool being
//! (re)initialised is made defined whole, since its block boundaries change with the class,
//! and then every block but its link word no-access: so the slack between a request and
//! its class size, and free blocks, are no-access, and reading past a block is reported.

#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
mod imp {
    const MALLOCLIKE_BLOCK: usize = 0x1301;
    const FREELIKE_BLOCK: usize = 0x1302;
    const MAKE_MEM_NOACCESS: usize = 0x4d43_0000;
    const MAKE_MEM_DEFINED: usize = 0x4d43_0002;

    /// Issues a client request; a no-op sequence outside Valgrind.
    #[inline(always)]
    fn request(args: [usize; 6]) {
        // SAFETY: Valgrind's documented x86-64 magic sequence: the four rotations of %rdi
        // sum to 128 bits (a no-op), `xchg %rbx,%rbx` is a no-op; Valgrind recognises the
        // pattern, reads the argument block at %rax and writes its result to %rdx.
        unsafe {
            core::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                inout("rdx") 0usize => _,
                in("rax") args.as_ptr(),
                inout("rdi") 0usize => _,
                options(nostack),
            );
        }
    }

    pub fn malloclike(p: *const u8, n: usize) {
        request([MALLOCLIKE_BLOCK, p as usize, n, 0, 0, 0]);
    }

    pub fn freelike(p: *const u8) {
        request([FREELIKE_BLOCK, p as usize, 0, 0, 0, 0]);
    }

    pub fn defined(p: *const u8, n: usize) {
        request([MAKE_MEM_DEFINED, p as usize, n, 0, 0, 0]);
    }

    pub fn noaccess(p: *const u8, n: usize) {
        request([MAKE_MEM_NOACCESS, p as usize, n, 0, 0, 0]);
    }
}

#[cfg(not(all(feature = "valgrind", target_arch = "x86_64")))]
mod imp {
    #[inline(always)]
    pub fn malloclike(_: *const u8, _: usize) {}
    #[inline(always)]
    pub fn freelike(_: *const u8) {}
    #[inline(always)]
    pub fn defined(_: *const u8, _: usize) {}
    #[inline(always)]
    pub fn noaccess(_: *const u8, _: usize) {}
}

/// A pool block of `n` requested bytes was handed out (or NULL, which is no block).
#[inline(always)]
pub fn allocated(p: *const u8, n: usize) {
    if cfg!(feature = "valgrind") && p.is_null() {
        return;
    }
    imp::malloclike(p, n);
}

/// A block kept in place by a realloc to `n` bytes: memcheck learns its new size. The
/// contents are kept, so all `n` bytes count as defined (the requested size before is not
/// recorded, so bytes past it cannot be told apart).
#[inline(always)]
pub fn resized_in_place(p: *const u8, n: usize) {
    imp::freelike(p);
    imp::malloclike(p, n);
    imp::defined(p, n);
}

/// A pool block is being freed: from now on only its link word is ours to use.
#[inline(always)]
pub fn freed(p: *const u8) {
    imp::freelike(p);
    imp::defined(p, core::mem::size_of::<usize>());
}

/// `n` bytes of a block, slack past the request included, are about to be copied.
#[inline(always)]
pub fn copied_whole(p: *const u8, n: usize) {
    imp::defined(p, n);
}

/// A pool's page of `n` bytes at `p` starts anew: no byte of it is anyone's until its
/// blocks are handed out (carved lazily, see `pool::carve`).
#[inline(always)]
pub fn pool_fresh(p: *const u8, n: usize) {
    imp::noaccess(p, n);
}

//! New arenas are populated (their pages faulted in at once) only once 32 are mapped, so
//! small programs commit only what they touch. (Its own test binary: it counts every arena
//! in the process.)

use pymalloc::internals::arena::{self, USABLE_POOLS};
use pymalloc::internals::geometry::{ARENA_MASK, ARENA_SIZE, POOL_SIZE};
use pymalloc::internals::pool::Pool;

/// Pages of the arena at `base` that are resident.
fn resident_pages(base: usize) -> usize {
    let mut v = vec![0u8; ARENA_SIZE / POOL_SIZE];
    // SAFETY: `base` is a mapped arena of ARENA_SIZE bytes and `v` has a byte per page.
    let r = unsafe { libc::mincore(base as *mut libc::c_void, ARENA_SIZE, v.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore failed");
    v.iter().filter(|&&b| b & 1 != 0).count()
}

#[test]
fn arenas_are_populated_from_the_33rd() {
    let per = USABLE_POOLS as usize;
    assert_eq!(
        arena::counts().current,
        0,
        "nothing else in this process maps arenas"
    );
    let mut pools: Vec<*mut Pool> = Vec::new();
    for i in 0..34 {
        let mut arena = vec![std::ptr::null_mut::<Pool>(); per];
        assert_eq!(arena::alloc_pools(&mut arena), per, "one arena per batch");
        let res = resident_pages(arena[0] as usize & !ARENA_MASK);
        if i < 32 {
            // The header page, and what the kernel faults around it.
            assert!(
                res < ARENA_SIZE / POOL_SIZE / 2,
                "arena {i} populated early: {res}"
            );
        } else {
            assert_eq!(res, ARENA_SIZE / POOL_SIZE, "arena {i} not populated");
        }
        pools.extend(arena);
    }
    // SAFETY: pools from alloc_pools, idle.
    unsafe { arena::release_pools(&mut pools) };
    assert_eq!(arena::counts().current, 0);
}

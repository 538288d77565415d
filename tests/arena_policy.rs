//! The arena policy: a new pool comes from the fullest arena that has a free one, so others
//! drain; an arena whose pools are all free is unmapped, keeping at most one spare.
//! (Its own test binary: it reasons about every arena in the process.)

use pymalloc::arena::{self, USABLE_POOLS};
use pymalloc::check;
use pymalloc::geometry::ARENA_MASK;
use pymalloc::pool::Pool;

fn arena_of(p: *mut Pool) -> usize {
    p as usize & !ARENA_MASK
}

#[test]
fn fullest_arena_first_and_one_spare() {
    let per = USABLE_POOLS as usize;
    let start = arena::counts();
    assert_eq!(start.current, 0, "nothing else in this process maps arenas");

    // Three full arenas.
    let pools: Vec<*mut Pool> = (0..3 * per).map(|_| arena::alloc_pool()).collect();
    assert!(pools.iter().all(|p| !p.is_null()));
    let bases: Vec<usize> = pools.chunks(per).map(|c| arena_of(c[0])).collect();
    for (i, chunk) in pools.chunks(per).enumerate() {
        assert!(
            chunk.iter().all(|&p| arena_of(p) == bases[i]),
            "pools fill one arena at a time"
        );
    }
    assert_eq!(arena::counts().current, 3);

    // Free 10 pools of arena 0, 30 of arena 1, 5 of arena 2.
    let mut live: Vec<Vec<*mut Pool>> = pools.chunks(per).map(|c| c.to_vec()).collect();
    for (a, n) in [(0, 10), (1, 30), (2, 5)] {
        for p in live[a].drain(..n) {
            // SAFETY: a pool from alloc_pool, idle.
            unsafe { arena::release_pool(p) };
        }
    }

    // The next pools come from arena 2 (fewest free), then arena 0, then arena 1.
    let next: Vec<*mut Pool> = (0..5).map(|_| arena::alloc_pool()).collect();
    assert!(
        next.iter().all(|&p| arena_of(p) == bases[2]),
        "fullest arena first"
    );
    let then = arena::alloc_pool();
    assert_eq!(arena_of(then), bases[0]);
    live[2].extend(next);
    live[0].push(then);

    // Emptying arena 1 keeps it as the spare; emptying arena 0 too unmaps one of them.
    for p in live[1].drain(..) {
        // SAFETY: as above.
        unsafe { arena::release_pool(p) };
    }
    assert_eq!(arena::counts().current, 3, "one all-free arena is kept");
    for p in live[0].drain(..) {
        // SAFETY: as above.
        unsafe { arena::release_pool(p) };
    }
    let c = arena::counts();
    assert_eq!(c.current, 2, "a second all-free arena is unmapped");
    assert_eq!(c.reclaimed, start.reclaimed + 1);

    // Trim drops the spare.
    arena::trim();
    assert_eq!(arena::counts().current, 1);
    for p in live[2].drain(..) {
        // SAFETY: as above.
        unsafe { arena::release_pool(p) };
    }
    arena::trim();
    assert_eq!(arena::counts().current, 0);
    assert!(!pymalloc::api::owns(bases[2] as *const u8));
    // Pools handed out here had no heap, so the walker runs only once all are back.
    check::verify().unwrap();

    lazy_decommit();
}

/// Free pools in live arenas are decommitted by the sweeps that pool releases trigger, and
/// only once they stayed free across a sweep.
fn lazy_decommit() {
    let per = USABLE_POOLS as usize;
    let pools: Vec<*mut Pool> = (0..10 * per).map(|_| arena::alloc_pool()).collect();
    assert_eq!(arena::counts().pools_decommitted, 0);
    // Keep one pool per arena alive; release the rest (620 releases: two sweeps or more).
    let (keep, release): (Vec<_>, Vec<_>) =
        pools.iter().enumerate().partition(|(i, _)| i % per == 0);
    assert!(release.len() as u32 >= 2 * arena::SWEEP_EVERY);
    for (_, &p) in &release {
        // SAFETY: a pool from alloc_pool, idle.
        unsafe { arena::release_pool(p) };
    }
    let c = arena::counts();
    assert!(
        c.pools_decommitted > 0,
        "no sweep decommitted anything: {c:?}"
    );
    assert!(
        c.pools_decommitted < c.pools_free,
        "the freshest pools wait a sweep: {c:?}"
    );
    // Reused pools are usable (and no longer counted as decommitted).
    let again: Vec<*mut Pool> = (0..per).map(|_| arena::alloc_pool()).collect();
    for &p in &again {
        // SAFETY: a pool of a mapped arena, ours alone.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), 0xA5, pymalloc::geometry::POOL_SIZE) };
    }
    arena::trim();
    let c = arena::counts();
    assert_eq!(
        c.pools_decommitted, c.pools_free,
        "trim decommits every free pool: {c:?}"
    );
    for p in again.into_iter().chain(keep.into_iter().map(|(_, &p)| p)) {
        // SAFETY: as above.
        unsafe { arena::release_pool(p) };
    }
    arena::trim();
    assert_eq!(arena::counts().current, 0);
    check::verify().unwrap();
}

//! The arena policy: a new pool comes from the fullest arena that has a free one, so others
//! drain; free pools and empty arenas go back to the OS after the decay, or at once on trim.
//! (Its own test binary: it reasons about every arena in the process.)

use pymalloc::arena::{self, USABLE_POOLS};
use pymalloc::check;

/// The invariant walker, between phases.
fn verify() -> Result<check::Summary, String> {
    // SAFETY: this file's one test starts no thread.
    unsafe { check::verify() }
}
use pymalloc::geometry::ARENA_MASK;
use pymalloc::pool::Pool;

fn arena_of(p: *mut Pool) -> usize {
    p as usize & !ARENA_MASK
}

#[test]
fn fullest_arena_first_then_decay() {
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

    // Within an arena, the most recently freed pool comes back first (its page is the one
    // most likely still cached), then the one freed before it.
    let (x, y) = (live[2].pop().unwrap(), live[2].pop().unwrap());
    // SAFETY: as above.
    unsafe {
        arena::release_pool(x);
        arena::release_pool(y);
    }
    assert_eq!(arena::alloc_pool(), y, "last freed, first reused");
    assert_eq!(arena::alloc_pool(), x);
    live[2].extend([x, y]);

    // Emptied arenas stay mapped until the decay gives them back (here: never), and trim
    // gives them back at once.
    arena::set_decay_ms(arena::DECAY_NEVER);
    let emptied: Vec<*mut Pool> = [live.remove(1), live.remove(0)].concat();
    for p in emptied {
        // SAFETY: as above.
        unsafe { arena::release_pool(p) };
    }
    arena::tick();
    assert_eq!(
        arena::counts().current,
        3,
        "empty arenas wait for the decay"
    );
    arena::trim();
    let c = arena::counts();
    assert_eq!(c.current, 1, "trim unmaps every empty arena");
    assert_eq!(c.reclaimed, start.reclaimed + 2);
    for p in live.remove(0) {
        // SAFETY: as above.
        unsafe { arena::release_pool(p) };
    }
    arena::trim();
    assert_eq!(arena::counts().current, 0);
    assert!(!pymalloc::api::owns(bases[2] as *const u8));
    // Pools handed out here had no heap, so the walker runs only once all are back.
    verify().unwrap();

    decay();
    decay_zero();
    arena::set_decay_ms(arena::DEFAULT_DECAY_MS);
}

/// Runs `tick` every few milliseconds until `done` holds, for at most 100 epochs of `ms`.
fn tick_until(ms: u32, done: impl Fn(&arena::ArenaCounts) -> bool) -> arena::ArenaCounts {
    for _ in 0..100 * ms / 5 {
        std::thread::sleep(std::time::Duration::from_millis(5));
        arena::tick();
        let c = arena::counts();
        if done(&c) {
            return c;
        }
    }
    panic!("the decay did not finish: {:?}", arena::counts());
}

/// Free pools and empty arenas go back to the OS once idle for an epoch, driven by `tick`;
/// pools taken again in between are not touched.
fn decay() {
    let per = USABLE_POOLS as usize;
    // A steady oscillation across several epochs: every cycle releases the pools, a sweep
    // runs while they are free (the sleep outlasts the epoch: the sweep marks them idle),
    // and the pools are taken again before the next sweep. Nothing is decommitted: only a
    // pool free at two sweeps in a row is.
    arena::set_decay_ms(20);
    let pools: Vec<*mut Pool> = (0..10 * per).map(|_| arena::alloc_pool()).collect();
    for _ in 0..4 {
        let (keep, cycle): (Vec<_>, Vec<_>) =
            pools.iter().enumerate().partition(|(i, _)| i % per == 0);
        for (_, &p) in &cycle {
            // SAFETY: a pool from alloc_pool, idle.
            unsafe { arena::release_pool(p) };
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
        arena::tick(); // a sweep, with the pools free
        let c = arena::counts();
        assert_eq!(
            c.pools_decommitted, 0,
            "a pool reused every epoch was given back: {c:?}"
        );
        let mut again: Vec<*mut Pool> = (0..cycle.len()).map(|_| arena::alloc_pool()).collect();
        let mut cycled: Vec<*mut Pool> = cycle.iter().map(|(_, &p)| p).collect();
        again.sort();
        cycled.sort();
        assert_eq!(again, cycled, "the same pools come back");
        assert!(!keep.is_empty());
    }
    let c = arena::counts();
    assert_eq!((c.pools_decommitted, c.current), (0, 10), "{c:?}");
    // (The arenas' pools are all in use now, so no sweep can find one idle.)
    arena::set_decay_ms(arena::DECAY_NEVER);

    // Keep one pool per arena alive, release the rest and one whole arena's.
    let (keep, release): (Vec<_>, Vec<_>) = pools
        .iter()
        .enumerate()
        .partition(|(i, _)| i % per == 0 && *i != 0);
    for (_, &p) in &release {
        // SAFETY: a pool from alloc_pool, idle.
        unsafe { arena::release_pool(p) };
    }
    assert_eq!(
        arena::counts().current,
        10,
        "nothing leaves before the decay"
    );
    arena::set_decay_ms(20);
    let c = tick_until(20, |c| {
        c.current == 9 && c.pools_decommitted == c.pools_free
    });
    assert_eq!(c.pools_free, 9 * (per as u64 - 1), "{c:?}");

    // Reused decommitted pools are usable (and no longer counted as decommitted).
    arena::set_decay_ms(arena::DECAY_NEVER);
    let again: Vec<*mut Pool> = (0..per).map(|_| arena::alloc_pool()).collect();
    for &p in &again {
        // SAFETY: a pool of a mapped arena, ours alone.
        unsafe {
            std::ptr::write_bytes(
                pymalloc::pool::page_of(p) as *mut u8,
                0xA5,
                pymalloc::geometry::POOL_SIZE,
            )
        };
    }
    let c = arena::counts();
    assert_eq!(c.pools_decommitted, c.pools_free, "{c:?}");
    for p in again.into_iter().chain(keep.into_iter().map(|(_, &p)| p)) {
        // SAFETY: as above.
        unsafe { arena::release_pool(p) };
    }
    arena::set_decay_ms(20);
    tick_until(20, |c| c.current == 0);
    verify().unwrap();
}

/// With a decay of 0, pools and arenas go back the moment they become free.
fn decay_zero() {
    arena::set_decay_ms(0);
    // A released pool is decommitted at once and tops its arena's stack, yet a committed
    // free pool (here the arena's never-used last one) is handed out first.
    let first: Vec<*mut Pool> = (1..USABLE_POOLS).map(|_| arena::alloc_pool()).collect();
    // SAFETY: a pool from alloc_pool, idle.
    unsafe { arena::release_pool(first[1]) };
    let (a, b) = (arena::alloc_pool(), arena::alloc_pool());
    assert_ne!(a, first[1], "a committed pool before a decommitted one");
    assert_eq!(b, first[1], "then the decommitted one");
    for p in first.into_iter().chain([a]) {
        // SAFETY: as above.
        unsafe { arena::release_pool(p) };
    }
    assert_eq!(arena::counts().current, 0);

    let pools: Vec<*mut Pool> = (0..2 * USABLE_POOLS).map(|_| arena::alloc_pool()).collect();
    // SAFETY: a pool from alloc_pool, idle.
    unsafe { arena::release_pool(pools[1]) };
    assert_eq!(arena::counts().pools_decommitted, 1);
    for &p in pools
        .iter()
        .take(USABLE_POOLS as usize)
        .filter(|&&p| p != pools[1])
    {
        // SAFETY: as above.
        unsafe { arena::release_pool(p) };
    }
    let c = arena::counts();
    assert_eq!((c.current, c.pools_decommitted), (1, 0), "{c:?}");
    for &p in &pools[USABLE_POOLS as usize..] {
        // SAFETY: as above.
        unsafe { arena::release_pool(p) };
    }
    assert_eq!(arena::counts().current, 0);
    verify().unwrap();
}

//! The arena policy: new pools come from the fullest arena that has a free one, in address
//! order, so others drain; pools given back are returned to the OS at once (their pages
//! decommitted in runs, an arena unmapped when all its pools are free), or, with a decay of
//! "never", only on trim. (Its own test binary: it reasons about every arena in the process.)

use pymalloc::internals::arena::{self, USABLE_POOLS};
use pymalloc::internals::check;
use pymalloc::internals::geometry::{ARENA_MASK, POOL_SIZE};
use pymalloc::internals::pool::{self, Pool};

/// The invariant walker, between phases.
fn verify() -> Result<check::Summary, check::Failure> {
    // SAFETY: this file's one test starts no thread.
    unsafe { check::verify() }
}

fn arena_of(p: *mut Pool) -> usize {
    p as usize & !ARENA_MASK
}

/// Takes `n` pools from the arenas in batches of at most `batch`.
fn take(n: usize, batch: usize) -> Vec<*mut Pool> {
    let mut out = Vec::new();
    while out.len() < n {
        let mut b = vec![std::ptr::null_mut(); batch.min(n - out.len())];
        let got = arena::alloc_pools(&mut b);
        assert!(got > 0, "no arena");
        out.extend(&b[..got]);
    }
    out
}

fn give(mut pools: Vec<*mut Pool>) {
    // SAFETY: pools from alloc_pools, idle, each once.
    unsafe { arena::release_pools(&mut pools) };
}

/// Whether pool `p`'s page is resident.
fn resident(p: *mut Pool) -> bool {
    let mut v = [0u8; 1];
    // SAFETY: the page of a pool of a mapped arena; one byte for one page.
    let r = unsafe {
        libc::mincore(
            pool::page_of(p) as *mut libc::c_void,
            POOL_SIZE,
            v.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0);
    v[0] & 1 != 0
}

fn touch(p: *mut Pool) {
    // SAFETY: the page of a pool taken from the arenas, ours alone.
    unsafe { std::ptr::write_bytes(pool::page_of(p) as *mut u8, 0xA5, POOL_SIZE) };
}

#[test]
fn fullest_arena_first_given_back_at_once() {
    let per = USABLE_POOLS as usize;
    let start = arena::counts();
    assert_eq!(start.current, 0, "nothing else in this process maps arenas");

    // Three full arenas, taken in batches of 16: each batch is one arena's run of pools
    // in address order.
    let pools = take(3 * per, 16);
    let bases: Vec<usize> = pools.chunks(per).map(|c| arena_of(c[0])).collect();
    for (i, chunk) in pools.chunks(per).enumerate() {
        assert!(
            chunk.iter().all(|&p| arena_of(p) == bases[i]),
            "pools fill one arena at a time"
        );
        assert!(chunk.windows(2).all(|w| w[0] < w[1]), "in address order");
    }
    assert_eq!(arena::counts().current, 3);
    pools.iter().for_each(|&p| touch(p));

    // Give back 10 pools of arena 0, 30 of arena 1, 5 of arena 2: their pages leave at once.
    let mut live: Vec<Vec<*mut Pool>> = pools.chunks(per).map(|c| c.to_vec()).collect();
    let mut back = Vec::new();
    for (a, n) in [(0, 10), (1, 30), (2, 5)] {
        back.extend(live[a].drain(3..3 + n));
    }
    let sample = back[0];
    give(back);
    let c = arena::counts();
    assert_eq!((c.pools_free, c.pools_decommitted), (45, 45), "{c:?}");
    assert!(!resident(sample), "a page given back is not resident");

    // The next pools come from arena 2 (fewest free), lowest address first, then arena 0.
    let next = take(5, 16);
    assert!(
        next.iter().all(|&p| arena_of(p) == bases[2]),
        "fullest arena first"
    );
    assert!(next.windows(2).all(|w| w[0] < w[1]));
    let then = take(1, 16);
    assert_eq!(arena_of(then[0]), bases[0]);
    assert_eq!(
        arena::counts().pools_decommitted,
        39,
        "reused pools are committed again"
    );
    next.iter().chain(&then).for_each(|&p| touch(p));
    live[2].extend(next);
    live[0].extend(then);

    // An arena whose pools are all free is unmapped at once.
    give(live.remove(1));
    let c = arena::counts();
    assert_eq!((c.current, c.reclaimed), (2, start.reclaimed + 1), "{c:?}");

    // With a decay of "never", nothing leaves until trim.
    arena::set_decay_ms(arena::DECAY_NEVER);
    let kept = live[0].pop().unwrap();
    give(vec![kept]);
    assert!(resident(kept), "kept until trim");
    give(live.remove(0));
    assert_eq!(arena::counts().current, 2, "empty arenas wait for trim");
    arena::trim();
    let c = arena::counts();
    assert_eq!(c.current, 1, "trim unmaps every empty arena: {c:?}");
    assert_eq!(
        c.pools_decommitted, c.pools_free,
        "and decommits every free pool"
    );
    arena::set_decay_ms(arena::DEFAULT_DECAY_MS);
    give(live.remove(0));
    assert_eq!(arena::counts().current, 0);
    assert!(!pymalloc::internals::api::owns(bases[2] as *const u8));
    // Pools handed out here had no heap, so the walker runs only once all are back.
    verify().unwrap();
}

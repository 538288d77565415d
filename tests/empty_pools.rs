//! The heaps' empty pools (the heap's "Empty pools"): a steady oscillation keeps its pools
//! and makes no system call once it has run twice, re-using its pools in order; a
//! one-off burst is given back while it is freed, with no allocation after it; kept pools
//! that go unused age out with the decay; a decay of 0 keeps none. (Its own test binary: it
//! counts every arena and system call of the process.)

use pymalloc::internals::{api, arena, check, os};

/// Allocates `n` blocks of 64 bytes, writes each, frees them all in allocation order, and
/// returns their addresses in allocation order.
fn cycle(n: usize) -> Vec<usize> {
    let blocks: Vec<*mut u8> = (0..n).map(|_| api::malloc(64)).collect();
    for &b in &blocks {
        assert!(!b.is_null() && api::owns(b));
        // SAFETY: a block of 64 bytes just allocated.
        unsafe { b.write_bytes(0x5A, 64) };
    }
    for &b in &blocks {
        // SAFETY: allocated above, freed once.
        unsafe { api::free(b) };
    }
    blocks.into_iter().map(|b| b as usize).collect()
}

/// The invariant walker, between phases.
fn verify() -> Result<check::Summary, check::Failure> {
    // SAFETY: no other thread is inside the allocator between the phases of this file's
    // one test (the burst's thread has been joined).
    unsafe { check::verify() }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn empty_pools() {
    assert_eq!(arena::counts().current, 0, "nothing else maps arenas here");
    steady_oscillation_makes_no_system_call(4_100);
    steady_oscillation_makes_no_system_call(131_072);
    burst_is_given_back_without_another_allocation();
    unused_kept_pools_age_out();
    decay_zero_keeps_nothing();
}

/// Once an oscillation of `n` 64-byte blocks has run twice (the second cycle fetches back
/// what the first gave away, and so justifies keeping it), it makes no system call, its
/// pools stay with the heap (the arenas' counters do not move), and they are carved afresh.
fn steady_oscillation_makes_no_system_call(n: usize) {
    cycle(n);
    cycle(n);
    cycle(n);
    let (calls, counts) = (os::calls(), arena::counts());
    let kept = pymalloc::internals::stats::collect().pools_cached;
    assert!(
        kept as usize >= n / 64 - 1,
        "the statistics count {kept} kept pools after a cycle of {n}"
    );
    for _ in 0..6 {
        let now = cycle(n);
        assert_eq!(os::calls(), calls, "a system call in a steady cycle of {n}");
        assert_eq!(arena::counts(), counts, "pools moved to or from the arenas");
        // Kept pools are carved afresh: a pool's blocks come back at rising addresses (all
        // but those of the pool that stayed on the class list, whose free list serves).
        let falling = now.windows(2).filter(|w| w[0] > w[1]).count();
        assert!(
            falling <= 64 + n / 64,
            "{falling} of {n} blocks not carved in order"
        );
        verify().unwrap();
    }
}

/// A burst of 16 MiB freed in random order leaves the process with no more than 2 MiB of
/// it resident, and nothing is allocated afterwards. In a thread of its own, whose heap has
/// seen no oscillation.
fn burst_is_given_back_without_another_allocation() {
    std::thread::spawn(|| {
        let before_rss = rss_kib();
        let before = arena::counts().pools_in_use;
        let mut blocks: Vec<usize> = (0..262_144).map(|_| api::malloc(64) as usize).collect();
        for &b in &blocks {
            // SAFETY: a block of 64 bytes just allocated.
            unsafe { (b as *mut u8).write_bytes(0x5A, 64) };
        }
        let peak = arena::counts().pools_in_use;
        // Shuffle (a fixed LCG: the same order every run).
        let mut x = 12345u64;
        for i in (1..blocks.len()).rev() {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            blocks.swap(i, (x >> 33) as usize % (i + 1));
        }
        let vec_bytes = blocks.len() * 8;
        for &b in &blocks {
            // SAFETY: allocated above, freed once.
            unsafe { api::free(b as *mut u8) };
        }
        drop(blocks);
        let after = arena::counts().pools_in_use;
        let held = rss_kib().saturating_sub(before_rss);
        assert!(
            peak - before >= 4096,
            "the burst took {} pools",
            peak - before
        );
        assert!(
            after - before <= 64,
            "{} of {} pools still held after the burst",
            after - before,
            peak - before
        );
        assert!(
            held <= 2048 + vec_bytes as u64 / 1024,
            "{held} KiB still resident"
        );
    })
    .join()
    .unwrap();
    verify().unwrap();
}

/// The main thread's heap keeps the 2,048 pools of its last oscillation. Once the program
/// goes on doing something else for a few decay epochs, they go back.
fn unused_kept_pools_age_out() {
    let kept = arena::counts().pools_in_use;
    assert!(kept >= 2048, "the oscillation's pools are kept: {kept}");
    arena::set_decay_ms(10);
    let mut done = false;
    for _ in 0..200 {
        std::thread::sleep(std::time::Duration::from_millis(3));
        // Other work: 512-byte blocks, 8 to a pool, through the slow paths.
        let blocks: Vec<*mut u8> = (0..64).map(|_| api::malloc(512)).collect();
        for b in blocks {
            // SAFETY: allocated above, freed once.
            unsafe { api::free(b) };
        }
        if arena::counts().pools_in_use < 128 {
            done = true;
            break;
        }
    }
    assert!(done, "kept pools did not age out: {:?}", arena::counts());
    arena::set_decay_ms(arena::DEFAULT_DECAY_MS);
    verify().unwrap();
}

/// With a decay of 0 every pool that empties goes back at once: after an oscillation only
/// the last pool of the class stays with the heap.
fn decay_zero_keeps_nothing() {
    arena::set_decay_ms(0);
    let before = arena::counts().pools_in_use;
    cycle(4_100);
    cycle(4_100);
    let after = arena::counts().pools_in_use;
    assert!(after <= before + 1, "{before} pools before, {after} after");
    arena::set_decay_ms(arena::DEFAULT_DECAY_MS);
    verify().unwrap();
}

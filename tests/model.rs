//! Property tests against a model: random sequences of malloc/calloc/realloc/free with
//! random sizes (including 0 and sizes past 512), every live block's contents checked
//! against what was written, live blocks never overlapping, and the invariant walker run
//! along the way. Deterministic seeds, so a failure names its seed and reproduces.

use pymalloc::internals::{api, check};

/// The invariant walker, between steps.
fn verify() -> Result<check::Summary, check::Failure> {
    // SAFETY: every test of this file runs under `SERIAL` on one thread, so no other
    // thread is inside the allocator.
    unsafe { check::verify() }
}
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The walker needs the allocator quiet: tests in this binary take turns, each in a thread
/// of its own that is joined (so its heap is handed back) before the next one starts.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial(f: impl FnOnce() + Send + 'static) {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::spawn(f).join().expect("test body panicked");
}

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

#[derive(Clone, Copy)]
struct Live {
    ptr: *mut u8,
    len: usize,
    tag: u8,
}

fn fill(l: &Live) {
    for i in 0..l.len {
        // SAFETY: the block holds at least `len` bytes.
        unsafe { *l.ptr.add(i) = l.tag.wrapping_add(i as u8) };
    }
}

fn verify_contents(l: &Live, upto: usize, tag: u8, seed: u64) {
    for i in 0..upto {
        // SAFETY: the block holds at least `upto` bytes.
        let b = unsafe { *l.ptr.add(i) };
        assert_eq!(
            b,
            tag.wrapping_add(i as u8),
            "seed {seed}: byte {i} of {:p}",
            l.ptr
        );
    }
}

/// The size a block really spans: its class size if ours, the request otherwise.
fn span(l: &Live) -> usize {
    // SAFETY: a live block.
    let u = unsafe { api::usable_size(l.ptr) };
    if u == 0 {
        l.len.max(1)
    } else {
        u
    }
}

fn random_size(rng: &mut Rng) -> usize {
    match rng.below(20) {
        0 => 0,
        1 => 513 + rng.below(4000),
        _ => 1 + rng.below(512),
    }
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let mut live: Vec<Live> = Vec::new();
    let mut tag = 0u8;
    for step in 0..steps {
        let op = rng.below(10);
        if live.is_empty() || op < 4 {
            let n = random_size(&mut rng);
            let (p, zeroed) = if rng.below(4) == 0 {
                let (a, b) = if n == 0 { (0, 1) } else { (1, n) };
                (api::calloc(a, b), true)
            } else {
                (api::malloc(n), false)
            };
            assert!(!p.is_null(), "seed {seed}: allocation of {n} failed");
            assert_eq!(p as usize % 16, 0, "seed {seed}: misaligned");
            if (1..=512).contains(&n) {
                assert!(api::owns(p));
            } else {
                assert!(!api::owns(p));
            }
            if zeroed {
                for i in 0..n {
                    // SAFETY: calloc returned at least `n` bytes.
                    assert_eq!(unsafe { *p.add(i) }, 0, "seed {seed}: calloc byte {i}");
                }
            }
            tag = tag.wrapping_add(37);
            let l = Live {
                ptr: p,
                len: n,
                tag,
            };
            fill(&l);
            live.push(l);
        } else if op < 7 {
            let i = rng.below(live.len());
            let l = live.swap_remove(i);
            verify_contents(&l, l.len, l.tag, seed);
            // SAFETY: a live block from this allocator.
            unsafe { api::free(l.ptr) };
        } else {
            let i = rng.below(live.len());
            let old = live[i];
            let n = random_size(&mut rng);
            let was_ours = api::owns(old.ptr);
            // SAFETY: a live block from this allocator.
            let p = unsafe { api::realloc(old.ptr, n) };
            assert!(!p.is_null(), "seed {seed}: realloc to {n} failed");
            if !was_ours {
                assert!(
                    !api::owns(p),
                    "seed {seed}: a system block moved into a pool"
                );
            }
            let moved = Live {
                ptr: p,
                len: n,
                tag: old.tag,
            };
            verify_contents(&moved, old.len.min(n), old.tag, seed);
            tag = tag.wrapping_add(37);
            live[i] = Live {
                ptr: p,
                len: n,
                tag,
            };
            fill(&live[i]);
        }
        if step % 2000 == 0 {
            no_overlap(&live, seed);
            verify().unwrap_or_else(|e| panic!("seed {seed}, step {step}: {e}"));
        }
    }
    no_overlap(&live, seed);
    for l in live.drain(..) {
        verify_contents(&l, l.len, l.tag, seed);
        // SAFETY: a live block from this allocator.
        unsafe { api::free(l.ptr) };
    }
    verify().unwrap_or_else(|e| panic!("seed {seed}, end: {e}"));
}

fn no_overlap(live: &[Live], seed: u64) {
    let mut spans = BTreeMap::new();
    for l in live {
        assert!(
            spans.insert(l.ptr as usize, span(l)).is_none(),
            "seed {seed}: duplicate block"
        );
    }
    let mut end = 0;
    for (&start, &len) in &spans {
        assert!(start >= end, "seed {seed}: blocks overlap at {start:#x}");
        end = start + len;
    }
}

#[test]
fn random_sequences_match_the_model() {
    serial(|| {
        for seed in 1..=24u64 {
            run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 20_000);
        }
    });
}

#[test]
fn long_sequence_matches_the_model() {
    serial(|| run(0xDEAD_BEEF, 300_000));
}

#[test]
fn walker_counts_blocks_in_use() {
    serial(walker_counts);
}

fn walker_counts() {
    let before = verify().unwrap().blocks_in_use;
    let blocks: Vec<_> = (1..=512).map(api::malloc).collect();
    assert_eq!(verify().unwrap().blocks_in_use, before + 512);
    for p in blocks {
        // SAFETY: live blocks from this allocator.
        unsafe { api::free(p) };
    }
    assert_eq!(verify().unwrap().blocks_in_use, before);
}

//! Threads, for pymalloc-rs and the system allocator side by side in one run:
//!
//! - `churn`: random malloc/free churn of sizes 1..=512 over 1,000 slots, by one thread and
//!   by two threads at once, each doing the same work. Scaling = 2 x time(1) / time(2);
//!   target >= 1.8 on two cores.
//! - `producer-consumer`: one thread allocates, the other frees every block, through a
//!   lock-free ring. Target: pymalloc-rs <= 0.7 x glibc.
//!
//! Each measurement runs whole thread lifetimes, so the work per iteration is large
//! (`OPS` operations per thread) and the thread start-up cost is noise.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

struct Allocator {
    name: &'static str,
    malloc: fn(usize) -> *mut u8,
    free: unsafe fn(*mut u8),
}

fn system_malloc(n: usize) -> *mut u8 {
    // SAFETY: malloc accepts any size.
    unsafe { libc::malloc(n).cast() }
}

unsafe fn system_free(p: *mut u8) {
    // SAFETY: `p` came from `system_malloc`.
    unsafe { libc::free(p.cast()) }
}

const ALLOCATORS: [Allocator; 2] = [
    Allocator {
        name: "pymalloc-rs",
        malloc: pymalloc::api::malloc,
        free: pymalloc::api::free,
    },
    Allocator {
        name: "glibc",
        malloc: system_malloc,
        free: system_free,
    },
];

const OPS: usize = 200_000;
const SLOTS: usize = 1000;

/// One thread's churn: `OPS` random mallocs and frees over `SLOTS` slots.
fn churn(a: &Allocator, seed: u64) {
    let mut slots = [std::ptr::null_mut::<u8>(); SLOTS];
    let mut s = seed | 1;
    for _ in 0..OPS {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let slot = &mut slots[s as usize % SLOTS];
        if slot.is_null() {
            *slot = (a.malloc)(1 + (s >> 32) as usize % 512);
            // SAFETY: at least one byte.
            unsafe { slot.write_volatile(1) };
        } else {
            // SAFETY: allocated by `a` above.
            unsafe { (a.free)(*slot) };
            *slot = std::ptr::null_mut();
        }
    }
    for p in slots.into_iter().filter(|p| !p.is_null()) {
        // SAFETY: allocated by `a` above.
        unsafe { (a.free)(p) };
    }
}

/// Time for `threads` threads to run [`churn`] at once, from a common start.
fn run_churn(a: &'static Allocator, threads: usize) -> Duration {
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                churn(a, 0x9E37_79B9 * (t as u64 + 1));
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    handles.into_iter().for_each(|h| h.join().unwrap());
    t0.elapsed()
}

/// A single-producer single-consumer ring of block addresses (0 = empty slot).
struct Ring {
    slots: Vec<AtomicUsize>,
}

/// Time for a producer to allocate `OPS` blocks and a consumer to free them all.
fn run_producer_consumer(a: &'static Allocator) -> Duration {
    const RING: usize = 1024;
    let ring = Arc::new(Ring {
        slots: (0..RING).map(|_| AtomicUsize::new(0)).collect(),
    });
    let start = Arc::new(Barrier::new(3));
    let (r, s) = (ring.clone(), start.clone());
    let producer = thread::spawn(move || {
        s.wait();
        for i in 0..OPS {
            let p = (a.malloc)(1 + i * 37 % 512);
            // SAFETY: at least one byte.
            unsafe { p.write_volatile(1) };
            let slot = &r.slots[i % RING];
            while slot.load(Ordering::Acquire) != 0 {
                std::hint::spin_loop();
            }
            slot.store(p as usize, Ordering::Release);
        }
    });
    let (r, s) = (ring, start.clone());
    let consumer = thread::spawn(move || {
        s.wait();
        for i in 0..OPS {
            let slot = &r.slots[i % RING];
            let p = loop {
                let p = slot.load(Ordering::Acquire);
                if p != 0 {
                    break p;
                }
                std::hint::spin_loop();
            };
            slot.store(0, Ordering::Release);
            // SAFETY: allocated by `a` in the producer.
            unsafe { (a.free)(p as *mut u8) };
        }
    });
    start.wait();
    let t0 = Instant::now();
    producer.join().unwrap();
    consumer.join().unwrap();
    t0.elapsed()
}

fn threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("threads");
    group.sample_size(20);
    for a in &ALLOCATORS {
        for n in [1usize, 2] {
            group.bench_with_input(
                BenchmarkId::new(format!("churn/{}", a.name), n),
                &n,
                |b, &n| b.iter_custom(|iters| (0..iters).map(|_| run_churn(a, n)).sum()),
            );
        }
    }
    for a in &ALLOCATORS {
        group.bench_function(BenchmarkId::new("producer-consumer", a.name), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run_producer_consumer(a)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, threads);
criterion_main!(benches);

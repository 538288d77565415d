//! W1, the hot pair: malloc(n) then free, with a warm heap of 10,000 live blocks, for
//! pymalloc-rs and the system allocator side by side in one run.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;

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

fn hot_pair(c: &mut Criterion) {
    let mut group = c.benchmark_group("W1 hot pair");
    for a in &ALLOCATORS {
        let warm: Vec<_> = (0..10_000).map(|i| (a.malloc)(1 + i * 13 % 512)).collect();
        for n in [16usize, 64, 256, 512] {
            group.bench_with_input(BenchmarkId::new(a.name, n), &n, |b, &n| {
                b.iter(|| {
                    let p = (a.malloc)(black_box(n));
                    // SAFETY: `p` holds at least one byte and came from `a`.
                    unsafe {
                        p.write_volatile(1);
                        (a.free)(p);
                    }
                })
            });
        }
        for p in warm {
            // SAFETY: every warm block came from `a`.
            unsafe { (a.free)(p) };
        }
    }
    group.finish();
}

criterion_group!(benches, hot_pair);
criterion_main!(benches);

//! W1, the hot pair: malloc(n) then free, with a warm heap of 10,000 live blocks, for
//! pymalloc-rs and the system allocator side by side in one run (the workload is
//! `common::w1`; `benches/workloads.rs` runs it for every peer).

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::Instant;

fn hot_pair(c: &mut Criterion) {
    let mut group = c.benchmark_group("W1 hot pair");
    for name in ["pymalloc-rs", "glibc"] {
        let a = common::load(name).expect("linked in");
        let warm = common::Warm::new(&a);
        for n in common::W1_SIZES {
            group.bench_with_input(BenchmarkId::new(a.name, n), &n, |b, &n| {
                b.iter_custom(|pairs| {
                    let t = Instant::now();
                    common::w1(&a, n, pairs);
                    t.elapsed()
                })
            });
        }
        warm.free(&a);
    }
    group.finish();
}

criterion_group!(benches, hot_pair);
criterion_main!(benches);

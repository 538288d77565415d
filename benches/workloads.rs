//! Issue 5's C-level workloads W1–W6 (`common`) under criterion, for every allocator that
//! loads in this process, side by side in one run. `cargo bench --bench workloads` takes a
//! few minutes; filter with e.g. `cargo bench --bench workloads -- W3`. Times are per
//! iteration; the throughput line gives operations (malloc, free or realloc) per second.
//! jemalloc's Debian build only loads preloaded (`LD_PRELOAD=libjemalloc.so.2`).
//! For ratio tables from fresh processes use `cargo bench --bench compare`.

mod common;

use common::{load, Alloc, Replay, Rng, Slots, Warm, ALL, W1_SIZES};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use std::time::{Duration, Instant};

fn allocators() -> Vec<Alloc> {
    ALL.iter()
        .filter_map(|name| {
            load(name)
                .map_err(|e| println!("{name}: skipped ({e})"))
                .ok()
        })
        .collect()
}

fn w1(c: &mut Criterion, allocs: &[Alloc]) {
    let mut g = c.benchmark_group("W1 hot pair");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
        .throughput(Throughput::Elements(2));
    for a in allocs {
        let warm = Warm::new(a);
        for n in W1_SIZES {
            g.bench_function(BenchmarkId::new(a.name, n), |b| {
                b.iter_custom(|pairs| {
                    let t = Instant::now();
                    common::w1(a, n, pairs);
                    t.elapsed()
                })
            });
        }
        warm.free(a);
    }
    g.finish();
}

fn w2(c: &mut Criterion, allocs: &[Alloc]) {
    let mut g = c.benchmark_group("W2 LIFO batch 1M");
    g.sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .sample_size(10)
        .throughput(Throughput::Elements(2 * common::W2_BLOCKS as u64));
    let mut blocks = Vec::with_capacity(common::W2_BLOCKS);
    for a in allocs {
        let mut rng = Rng(0x2222);
        g.bench_function(a.name, |b| b.iter(|| common::w2(a, &mut blocks, &mut rng)));
    }
    g.finish();
}

fn slots(c: &mut Criterion, allocs: &[Alloc], mixed: bool) {
    let name = if mixed {
        "W5 mixed 95% <=512 B, 5% <=64 KiB"
    } else {
        "W3 random lifetime 100k slots"
    };
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .throughput(Throughput::Elements(2));
    for a in allocs {
        let mut s = Slots::new(a, mixed);
        g.bench_function(a.name, |b| {
            b.iter_custom(|steps| {
                let t = Instant::now();
                s.steps(a, steps);
                t.elapsed()
            })
        });
        s.free(a);
    }
    g.finish();
}

fn w4(c: &mut Criterion, allocs: &[Alloc]) {
    let mut g = c.benchmark_group("W4 realloc growth 8 B..4 KiB");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    let mut ptrs = Vec::new();
    for chains in [1, 64] {
        let ops = common::w4(allocs.first().expect("pymalloc-rs"), chains, &mut ptrs);
        g.throughput(Throughput::Elements(ops));
        for a in allocs {
            let id = BenchmarkId::new(a.name, format!("{chains} chains"));
            g.bench_function(id, |b| b.iter(|| common::w4(a, chains, &mut ptrs)));
        }
    }
    g.finish();
}

fn w6(c: &mut Criterion, allocs: &[Alloc]) {
    let mut r = Replay::new();
    let mut g = c.benchmark_group("W6 CPython trace replay");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .throughput(Throughput::Elements(r.events() as u64));
    for a in allocs {
        g.bench_function(a.name, |b| b.iter(|| r.run(a)));
    }
    g.finish();
}

fn main() {
    let allocs = allocators();
    let mut c = Criterion::default().configure_from_args();
    w1(&mut c, &allocs);
    w2(&mut c, &allocs);
    slots(&mut c, &allocs, false);
    w4(&mut c, &allocs);
    slots(&mut c, &allocs, true);
    w6(&mut c, &allocs);
    c.final_summary();
}

//! Threads (issue 13): throughput of pymalloc-rs and its peers at 1, 2, 4 and 8 threads.
//!
//! - `local churn`: each thread does random malloc/free churn of sizes 1..=512 over its own
//!   1,000 slots (the same sequence for every allocator). Target: pymalloc-rs ≥ 0.8 ×
//!   mimalloc.
//! - `cross-thread`: the threads form a ring; each allocates blocks of 1..=512 bytes and
//!   hands every one, through a lock-free single-producer single-consumer ring buffer, to the
//!   next thread, which frees it (at 1 thread the thread hands blocks to itself). Target at
//!   2 threads: pymalloc-rs ≥ glibc.
//!
//! Every allocator comes from `common::load`; each measurement runs in a fresh child process
//! (`THREADS_CHILD=KIND:THREADS:NAME`, which prints seconds and operations), allocators
//! alternating, jemalloc (and any peer that will not `dlopen`) with its library in
//! `LD_PRELOAD`. A malloc and a free are one operation each. The work per thread shrinks as
//! threads outnumber cores, so every cell takes about the same time (0.1-0.5 s); threads beyond
//! the core count oversubscribe, and the output says so.
//!
//! `cargo bench --bench threads` prints markdown tables of million operations per second
//! (median of `THREADS_RUNS` runs, default 3) and the median per-run ratios of pymalloc-rs
//! to mimalloc and to glibc.

mod common;

#[path = "../cli/src/median.rs"]
mod median_of;

use common::{load, output, Alloc, Rng};
use median_of::median;
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::Instant;

/// The allocators compared.
const ALLOCS: [&str; 5] = ["pymalloc-rs", "glibc", "mimalloc", "jemalloc", "tcmalloc"];
/// Thread counts measured, whatever the core count.
const THREADS: [usize; 4] = [1, 2, 4, 8];
/// The workloads: (child spec kind, title).
const KINDS: [(&str, &str); 2] = [("local", "local churn"), ("cross", "cross-thread")];
/// Slots of one thread's local churn.
const SLOTS: usize = 1000;
/// Operations of all threads together per core, local churn (0.2-0.5 s at 20-100 M/s).
const LOCAL_OPS: usize = 20_000_000;
/// Blocks handed on by all threads together per core, cross-thread (two operations each).
const CROSS_BLOCKS: usize = 8_000_000;
/// Capacity of each handoff ring, blocks.
const RING: usize = 1024;

/// One thread's churn: `ops` operations, each freeing the block of a random one of
/// `SLOTS` slots or, in an empty slot, allocating 1..=512 bytes; then the rest is freed.
fn churn(a: &Alloc, rng: &mut Rng, ops: usize) {
    let mut slots = [std::ptr::null_mut::<c_void>(); SLOTS];
    for _ in 0..ops {
        let r = rng.next();
        let slot = &mut slots[r as usize % SLOTS];
        if slot.is_null() {
            *slot = a.alloc(1 + (r >> 32) as usize % 512);
        } else {
            // SAFETY: the slot's block is live; the slot is emptied at once.
            unsafe { a.release(*slot) };
            *slot = std::ptr::null_mut();
        }
    }
    for p in slots.into_iter().filter(|p| !p.is_null()) {
        // SAFETY: a live block of `a`, freed once.
        unsafe { a.release(p) };
    }
}

/// A single-producer single-consumer ring buffer of block addresses.
///
/// Invariant: a slot holds 0 (empty) or the address of a live block that its producer has
/// handed on and its consumer has not yet taken; the producer writes slots in order, only
/// empty ones, and the consumer takes them in the same order, so neither overtakes the
/// other.
struct Ring {
    slots: Box<[AtomicUsize]>,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            slots: (0..RING).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Producer: puts `p` (non-zero) in the slot at `*head` unless it is full.
    fn try_push(&self, head: &mut usize, p: usize) -> bool {
        let slot = &self.slots[*head % RING];
        if slot.load(Ordering::Acquire) != 0 {
            return false;
        }
        slot.store(p, Ordering::Release);
        *head += 1;
        true
    }

    /// Consumer: takes the address at `*tail`, if there is one.
    fn try_pop(&self, tail: &mut usize) -> Option<usize> {
        let slot = &self.slots[*tail % RING];
        let p = slot.load(Ordering::Acquire);
        if p == 0 {
            return None;
        }
        slot.store(0, Ordering::Release);
        *tail += 1;
        Some(p)
    }
}

/// One thread of the cross-thread ring: allocates `blocks` blocks and hands each to `out`;
/// frees the `blocks` blocks that arrive on `inbox` (taking one after every hand-off, and
/// any while `out` is full, so no thread waits on another that waits on it).
fn handoff(a: &Alloc, rng: &mut Rng, blocks: usize, inbox: &Ring, out: &Ring) {
    let (mut head, mut tail) = (0, 0);
    let take = |tail: &mut usize| match inbox.try_pop(tail) {
        Some(p) => {
            // SAFETY: a live block of `a` handed on by the previous thread, freed once.
            unsafe { a.release(p as *mut c_void) };
            true
        }
        None => false,
    };
    let mut spins = 0u32;
    let mut idle = || {
        // Oversubscribed, the thread that would make progress may not be running.
        spins += 1;
        if spins.is_multiple_of(64) {
            thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    };
    for _ in 0..blocks {
        let p = a.alloc(1 + rng.below(512)) as usize;
        while !out.try_push(&mut head, p) {
            if !take(&mut tail) {
                idle();
            }
        }
        take(&mut tail);
    }
    while tail < blocks {
        if !take(&mut tail) {
            idle();
        }
    }
}

/// Child: `threads` threads of workload `kind` on `a`, started together after a warm-up
/// of their own; prints wall seconds and operations.
fn run_child(kind: &str, threads: usize, a: &Alloc) {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    // All threads together do the work of one per core they can run on.
    let busy = threads.min(cores);
    let rings: Vec<Ring> = (0..threads).map(|_| Ring::new()).collect();
    let start = Barrier::new(threads + 1);
    let done = Barrier::new(threads);
    let (warm, per) = match kind {
        "local" => (LOCAL_OPS / 20, LOCAL_OPS * busy),
        "cross" => (CROSS_BLOCKS / 20, CROSS_BLOCKS * busy),
        _ => panic!("unknown kind {kind}"),
    };
    let t = thread::scope(|s| {
        for t in 0..threads {
            let (start, done, rings) = (&start, &done, &rings);
            s.spawn(move || {
                let mut rng = Rng(0x9e37_79b9 * (t as u64 + 1));
                let (inbox, out) = (&rings[t], &rings[(t + 1) % threads]);
                let work = |rng: &mut Rng, n: usize| match kind {
                    "local" => churn(a, rng, n),
                    _ => handoff(a, rng, n, inbox, out),
                };
                work(&mut rng, warm / threads);
                // Every ring is empty again before any thread starts the timed part.
                done.wait();
                start.wait();
                work(&mut rng, per / threads);
            });
        }
        start.wait();
        Instant::now()
    });
    // The scope joined every thread before it returned.
    let secs = t.elapsed().as_secs_f64();
    let per_thread = per / threads;
    let count = match kind {
        "local" => per_thread * threads,
        _ => 2 * per_thread * threads,
    };
    println!("{secs} {count}");
}

fn child_cmd(spec: &str, preload: Option<&str>) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.env("THREADS_CHILD", spec);
    match preload {
        Some(lib) => c.env("LD_PRELOAD", lib),
        None => c.env_remove("LD_PRELOAD"),
    };
    c
}

/// Median of the per-run ratios `num / den` over the runs both have.
fn ratio(num: &[f64], den: &[f64]) -> Option<f64> {
    (!num.is_empty() && num.len() == den.len())
        .then(|| median(&mut num.iter().zip(den).map(|(a, b)| a / b).collect::<Vec<_>>()))
}

fn main() {
    if let Ok(spec) = std::env::var("THREADS_CHILD") {
        let f: Vec<&str> = spec.split(':').collect();
        let a = load(f[f.len() - 1]).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(3)
        });
        if f[0] != "probe" {
            run_child(f[0], f[1].parse().unwrap(), &a);
        }
        return;
    }
    let runs: usize = std::env::var("THREADS_RUNS").map_or(3, |v| v.parse().unwrap());
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let allocs = common::available(&ALLOCS, child_cmd);
    // (kind, threads, allocator) -> per-run million operations per second.
    let mut mops: BTreeMap<(&str, usize, &str), Vec<f64>> = BTreeMap::new();
    for run in 0..runs {
        for (kind, _) in KINDS {
            for threads in THREADS {
                for i in 0..allocs.len() {
                    // Rotate the order from run to run.
                    let (name, pre) = allocs[(i + run) % allocs.len()];
                    let spec = format!("{kind}:{threads}:{name}");
                    match output(child_cmd(&spec, pre)) {
                        Ok(out) => {
                            let v: Vec<f64> =
                                out.split_whitespace().map(|x| x.parse().unwrap()).collect();
                            mops.entry((kind, threads, name))
                                .or_default()
                                .push(v[1] / v[0] / 1e6);
                        }
                        Err(e) => eprintln!("{spec} failed: {e}"),
                    }
                }
            }
        }
        eprintln!("run {}/{runs} done", run + 1);
    }

    let over: Vec<String> = THREADS
        .iter()
        .filter(|&&t| t > cores)
        .map(|t| t.to_string())
        .collect();
    println!("Machine: {cores} cores.");
    if !over.is_empty() {
        println!(
            "At {} threads the threads outnumber the cores (oversubscribed): each gets a \
             share of a core, and a waiting cross-thread consumer may not run.",
            over.join(" and ")
        );
    }
    let cell = |kind, t, name| mops.get(&(kind, t, name)).map_or(&[][..], |v| &v[..]);
    for (kind, title) in KINDS {
        println!("\n## {title}: million operations per second (median of {runs} runs, fresh processes)\n");
        print!("| allocator |");
        for t in THREADS {
            print!(" {t} thread{} |", if t == 1 { "" } else { "s" });
        }
        println!("\n|---|{}", "---|".repeat(THREADS.len()));
        for (name, _) in &allocs {
            print!("| {name} |");
            for t in THREADS {
                match cell(kind, t, name) {
                    [] => print!(" - |"),
                    v => print!(" {:.1} |", median(&mut v.to_vec())),
                }
            }
            println!();
        }
        for peer in ["mimalloc", "glibc"] {
            print!("| pymalloc-rs / {peer} |");
            for t in THREADS {
                match ratio(cell(kind, t, "pymalloc-rs"), cell(kind, t, peer)) {
                    Some(r) => print!(" {r:.2}× |"),
                    None => print!(" - |"),
                }
            }
            println!();
        }
    }
    println!("\nTargets (issue 13): local churn, pymalloc-rs ≥ 0.8 × mimalloc; cross-thread at 2 threads, pymalloc-rs ≥ glibc. Ratios are medians of per-run ratios.");
}

//! Loom models of the allocator's concurrency protocols, run on the real code: under
//! `--cfg loom` every atomic, lock and thread-local of the crate is loom's (see `sync`), and
//! every global is made afresh in each execution.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --test loom
//! --target-dir target/loom` (`.ci/run` does). Without `LOOM_MAX_PREEMPTIONS` the models use 2.
//!
//! Each model checks, in every interleaving loom explores:
//! - no block is handed out twice: every block carries a tag checked before its free, and a
//!   loom cell shadows each block, so loom itself reports any two uses of a block (by its
//!   holder before a free and by the next holder after the allocator hands it out again)
//!   that are not ordered by happens-before — which also checks the memory orderings of the
//!   remote-free and delayed-free lists;
//! - no block is lost: once everything is freed and trimmed, no pool is in use;
//! - the invariant walker finds every structure consistent.
#![cfg(loom)]

use loom::thread;
use pymalloc::internals::{api, arena, check, heap};

/// The invariant walker, at the end of a model.
fn verify() -> Result<check::Summary, check::Failure> {
    // SAFETY: called after every model thread was joined.
    unsafe { check::verify() }
}
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Class 31 (512 bytes): 8 blocks per pool, so a pool fills up in a few steps.
const BIG: usize = 512;
const PER_POOL: usize = pymalloc::internals::geometry::blocks_per_pool(31);

/// A loom cell standing for a block's memory.
struct Cell(loom::cell::UnsafeCell<u64>);
// SAFETY: the cell's contents are only reached through `with_mut`, which loom checks.
unsafe impl Sync for Cell {}
// SAFETY: as above.
unsafe impl Send for Cell {}

/// The shadows of every block address seen in the execution. The map itself is harness
/// bookkeeping under a std mutex that loom does not see, so it adds no synchronisation.
#[derive(Clone, Default)]
struct Shadow(Arc<Mutex<HashMap<usize, Arc<Cell>>>>);

impl Shadow {
    /// Records a use of the block at `addr` by the calling thread.
    fn touch(&self, addr: usize) {
        let cell = self
            .0
            .lock()
            .unwrap()
            .entry(addr)
            .or_insert_with(|| Arc::new(Cell(loom::cell::UnsafeCell::new(0))))
            .clone();
        // SAFETY: a plain counter; loom checks that no two uses race.
        cell.0.with_mut(|p| unsafe { *p += 1 });
    }

    /// Allocates `n` bytes, tags the block and records the use.
    fn alloc(&self, n: usize, tag: u64) -> usize {
        self.alloc_with(api::malloc, n, tag)
    }

    /// Allocates `n` bytes from the interpreter heap (the caller holds the model's GIL).
    fn alloc_gil(&self, n: usize, tag: u64) -> usize {
        // SAFETY: per the caller, under the one lock of every interpreter-heap call.
        self.alloc_with(|n| unsafe { api::malloc_interpreter(n) }, n, tag)
    }

    /// Allocates `n` bytes with `malloc`, tags the block and records the use.
    fn alloc_with(&self, malloc: impl Fn(usize) -> *mut u8, n: usize, tag: u64) -> usize {
        let p = malloc(n);
        assert!(!p.is_null() && api::owns(p));
        self.touch(p as usize);
        // SAFETY: at least 16 bytes were allocated (n >= 16 in every model).
        unsafe { p.add(8).cast::<u64>().write(tag) };
        p as usize
    }

    /// Checks the tag, records the use and frees the block.
    fn free(&self, addr: usize, tag: u64) {
        // SAFETY: a live block from this allocator.
        self.free_with(|p| unsafe { api::free(p) }, addr, tag)
    }

    /// As `free`, into the interpreter heap (the caller holds the model's GIL).
    fn free_gil(&self, addr: usize, tag: u64) {
        // SAFETY: a live block from this allocator, under the one lock of every
        // interpreter-heap call.
        self.free_with(|p| unsafe { api::free_interpreter(p) }, addr, tag)
    }

    /// Checks the tag, records the use and frees the block with `free`.
    fn free_with(&self, free: impl Fn(*mut u8), addr: usize, tag: u64) {
        let p = addr as *mut u8;
        // SAFETY: a live block of at least 16 bytes.
        let seen = unsafe { p.add(8).cast::<u64>().read() };
        assert_eq!(seen, tag, "block {p:p} was handed out twice");
        self.touch(addr);
        free(p);
    }
}

/// Runs `f` under loom with the preemption bound from `LOOM_MAX_PREEMPTIONS`, or 2, and
/// checks that loom explored more than one interleaving.
fn model(f: impl Fn() + Send + Sync + 'static) {
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    let f = move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    };
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    // Every atomic operation is a branch point, and a model's single-threaded set-up
    // (filling an arena) makes thousands.
    builder.max_branches = 100_000;
    builder.check(f);
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    println!("{runs} interleavings explored");
    assert!(runs > 1, "loom explored a single interleaving");
}

/// Frees everything cached, checks the invariants and that nothing is in use any more.
fn assert_all_returned() {
    heap::trim();
    arena::trim();
    let summary = verify().unwrap_or_else(|e| panic!("invariant broken: {e}"));
    assert_eq!(summary.blocks_in_use, 0, "blocks lost");
    let counts = arena::counts();
    assert_eq!(counts.pools_in_use, 0, "pools still in use: blocks lost");
    assert_eq!(counts.current, 0, "arenas still mapped");
}

/// The lock every global goes through: mutual exclusion, with the guard and without it
/// (as the fork handlers use it), and the release/acquire hand-over of what it guards.
#[test]
fn lock_excludes_and_publishes() {
    model(|| {
        struct Counter(pymalloc::internals::sync::Lock, loom::cell::UnsafeCell<u32>);
        // SAFETY: the cell is only touched with the lock held.
        unsafe impl Sync for Counter {}
        // SAFETY: as above.
        unsafe impl Send for Counter {}
        let c = Arc::new(Counter(
            pymalloc::internals::sync::Lock::new(),
            loom::cell::UnsafeCell::new(0),
        ));
        let c2 = c.clone();
        let t = thread::spawn(move || {
            let _guard = c2.0.lock();
            // SAFETY: the lock is held.
            c2.1.with_mut(|p| unsafe { *p += 1 });
        });
        c.0.acquire();
        // SAFETY: the lock is held.
        c.1.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: this thread took the lock just above.
        unsafe { c.0.release() };
        t.join().unwrap();
        let _guard = c.0.lock();
        // SAFETY: the lock is held.
        assert_eq!(c.1.with(|p| unsafe { *p }), 2);
    });
}

/// Remote frees into another thread's pools while the owner allocates and reclaims: one
/// pool of the owner is full and marked (`NOTIFY`), so the first remote free into it goes
/// on the owner's delayed list and later ones on the pool's remote list; another pool of the
/// owner takes plain remote frees; meanwhile the owner exhausts its current pool, drains the
/// delayed list, collects remote frees, relinks pools and frees everything it holds.
#[test]
fn remote_free_while_owner_allocates_and_reclaims() {
    model(|| {
        let shadow = Shadow::default();
        // Fill pool 1 (8 blocks); the 9th allocation marks it full and opens pool 2.
        let mut mine: Vec<(usize, u64)> = (0..=PER_POOL as u64)
            .map(|t| (shadow.alloc(BIG, t), t))
            .collect();
        let first = mine.remove(0); // pool 1, the first remote free: goes to `delayed`
        let second = mine.remove(0); // pool 1, after it: to `remote` or `delayed`
        let other = mine.pop().unwrap(); // pool 2, not full: to `remote`
        let (s1, s2) = (shadow.clone(), shadow.clone());
        let t1 = thread::spawn(move || s1.free(first.0, first.1));
        let t2 = thread::spawn(move || {
            s2.free(second.0, second.1);
            s2.free(other.0, other.1);
        });
        // Owner: use up pool 2 and go to the slow path once more, then free all it holds.
        for t in 100..100 + PER_POOL as u64 {
            mine.push((shadow.alloc(BIG, t), t));
        }
        for (addr, tag) in mine {
            shadow.free(addr, tag);
        }
        t1.join().unwrap();
        t2.join().unwrap();
        assert_all_returned();
    });
}

/// A thread exits (its heap tidied and abandoned) while another frees blocks into its
/// pools — one of them full and marked, so into the exiting heap's delayed list — and a
/// third thread starts, possibly adopting the abandoned heap. The main thread then frees a
/// block the exited thread left behind.
#[test]
fn owner_exits_while_others_free_and_a_third_adopts() {
    model(|| {
        let shadow = Shadow::default();
        let (s1, s3) = (shadow.clone(), shadow.clone());
        let owner = thread::spawn(move || {
            let mut mine: Vec<(usize, u64)> = (0..=PER_POOL as u64)
                .map(|t| (s1.alloc(BIG, t), t))
                .collect();
            let given = [mine.remove(0), mine.pop().unwrap()]; // pool 1 (marked), pool 2
            let left = mine.pop().unwrap();
            let s2 = s1.clone();
            let freer = thread::spawn(move || {
                for (addr, tag) in given {
                    s2.free(addr, tag);
                }
            });
            // Let the freer run while pool 1 is still full and unlinked: the owner's own
            // frees below relink it, and they hold no atomic operation where loom could
            // switch threads.
            thread::yield_now();
            for (addr, tag) in mine {
                s1.free(addr, tag);
            }
            heap::exit_thread();
            (left, freer)
        });
        let newcomer = thread::spawn(move || {
            let a = s3.alloc(BIG, 1000);
            let b = s3.alloc(16, 1001);
            s3.free(a, 1000);
            s3.free(b, 1001);
            heap::exit_thread();
        });
        let (left, freer) = owner.join().unwrap();
        freer.join().unwrap();
        newcomer.join().unwrap();
        shadow.free(left.0, left.1);
        assert_all_returned();
    });
}

/// A pool that ran out (so `NOTIFY` is set) gets a block back from its owner (relinked at
/// the back with the bit still set: it is sticky) and runs out again while another thread
/// frees one of its blocks. The remote free must reach the owner whether it comes before,
/// during or after the owner's `try_mark_full` finds the bit still set and unlinks the
/// pool without an atomic read-modify-write.
#[test]
fn remote_free_into_a_relinked_pool_that_runs_out_again() {
    model(|| {
        let shadow = Shadow::default();
        // Pool 1 takes tags 0..8 and runs out (marked); pool 2 takes tag 8.
        let mut mine: Vec<(usize, u64)> = (0..=PER_POOL as u64)
            .map(|t| (shadow.alloc(BIG, t), t))
            .collect();
        let back = mine.remove(0);
        shadow.free(back.0, back.1); // pool 1 relinked, NOTIFY still set
        let given = mine.remove(0); // pool 1, freed by another thread
        let s2 = shadow.clone();
        let freer = thread::spawn(move || s2.free(given.0, given.1));
        thread::yield_now();
        // Use up pool 2's six free blocks, then pool 1's returned one, then one more: pool
        // 1 runs out again and the owner goes past it.
        for t in 100..101 + PER_POOL as u64 {
            mine.push((shadow.alloc(BIG, t), t));
        }
        for (addr, tag) in mine {
            shadow.free(addr, tag);
        }
        freer.join().unwrap();
        assert_all_returned();
    });
}

/// The frameless transition (`heap::alloc_next`): the head pool has run out with `NOTIFY`
/// still set from an earlier time, and the owner parks it with a plain load and moves on to
/// the next pool, while another thread frees one of its blocks. The remote free must reach
/// the owner whether it comes before the owner's load (it clears `NOTIFY` and fills the
/// delayed list: the slow path takes over), or after the pool is parked.
#[test]
fn remote_free_while_the_owner_parks_a_marked_head() {
    model(|| {
        let shadow = Shadow::default();
        // Pool 1 takes tags 0..8 and runs out: the next allocation marks it (NOTIFY) and
        // parks it through the slow path, and pool 2 serves tags 8..16.
        let mut one: Vec<(usize, u64)> = (0..PER_POOL as u64)
            .map(|t| (shadow.alloc(BIG, t), t))
            .collect();
        let mut two: Vec<(usize, u64)> = (PER_POOL as u64..2 * PER_POOL as u64)
            .map(|t| (shadow.alloc(BIG, t), t))
            .collect();
        // Pool 1 takes a block back (relinked behind pool 2, NOTIFY still set); pool 2,
        // used up, is parked by the next allocation, which pool 1 serves: pool 1 heads the
        // list, used up, with NOTIFY set.
        let back = one.remove(0);
        shadow.free(back.0, back.1);
        one.push((shadow.alloc(BIG, 100), 100));
        // Pool 2 takes a block back: it is relinked behind pool 1 with one free block.
        let back = two.remove(0);
        shadow.free(back.0, back.1);
        let given = one.remove(0); // pool 1, freed by another thread
        let s2 = shadow.clone();
        let freer = thread::spawn(move || s2.free(given.0, given.1));
        thread::yield_now();
        // Pool 1 is used up: park it and take pool 2's block (or, if the remote free came
        // first, the same through the slow path).
        two.push((shadow.alloc(BIG, 200), 200));
        for (addr, tag) in one.into_iter().chain(two) {
            shadow.free(addr, tag);
        }
        freer.join().unwrap();
        assert_all_returned();
    });
}

/// Pools and arenas handed back to the global lists while other threads take from them:
/// two threads each take a pool from the arena (the first maps it), free their block and
/// exit, handing the pool back and their heap to the abandoned list; the second may take
/// the first one's heap off that list in the same race. At the end the arena is all free
/// and trimmed away.
#[test]
fn pools_and_arenas_returned_while_others_take() {
    model(|| {
        let shadow = Shadow::default();
        let workers: Vec<_> = (0..2u64)
            .map(|w| {
                let s = shadow.clone();
                thread::spawn(move || {
                    let a = s.alloc(16 + 16 * w as usize, 5000 + w);
                    s.free(a, 5000 + w);
                    heap::exit_thread();
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_all_returned();
    });
}

/// Empty pools kept by their owner (the heap's cache): the last block of a pool is freed
/// by another thread (through the owner's delayed list, the pool having run out once), so
/// the pool empties in its owner's slow path, goes on the owner's cache and is handed out
/// again with its free list as it was, whenever the remote free lands.
#[test]
fn pool_emptied_by_a_remote_free_is_kept_and_reused() {
    model(|| {
        let shadow = Shadow::default();
        // Pool 1 takes tags 0..8 and runs out (marked by the next allocation, which pool 2
        // serves).
        let mut one: Vec<(usize, u64)> = (0..PER_POOL as u64)
            .map(|t| (shadow.alloc(BIG, t), t))
            .collect();
        let two = (shadow.alloc(BIG, 50), 50);
        let last = one.pop().unwrap();
        for (addr, tag) in one {
            shadow.free(addr, tag); // pool 1 relinked behind pool 2, one block still out
        }
        let s2 = shadow.clone();
        let freer = thread::spawn(move || s2.free(last.0, last.1));
        thread::yield_now();
        // Pool 2's seven free blocks, then whatever pool 1 (emptied and cached, or not yet)
        // and the arena give.
        let again: Vec<(usize, u64)> = (100..102 + PER_POOL as u64)
            .map(|t| (shadow.alloc(BIG, t), t))
            .collect();
        for (addr, tag) in again.into_iter().chain([two]) {
            shadow.free(addr, tag);
        }
        freer.join().unwrap();
        assert_all_returned();
    });
}

/// The interpreter heap handed from thread to thread by the lock its callers hold (a mutex
/// standing for CPython's GIL), while a thread that does not hold it frees blocks of it
/// remotely: one into a full, marked pool (to the heap's delayed list, which whoever holds
/// the lock next drains), one into a pool with free blocks. Each thread that takes the lock
/// acts as the heap's owner with plain loads and stores; loom checks that the lock orders
/// them, and that no block is handed out twice or lost.
#[test]
fn interpreter_heap_follows_the_lock() {
    extern "C" fn held() -> std::ffi::c_int {
        1 // every caller of trim in this model is alone
    }
    model(|| {
        // SAFETY: before any interpreter-heap call of this execution (globals are remade).
        assert!(unsafe { api::enable_interpreter_heap(held) });
        let shadow = Shadow::default();
        let gil = Arc::new(loom::sync::Mutex::new(()));
        let mut mine: Vec<(usize, u64)> = {
            let _gil = gil.lock().unwrap();
            (0..=PER_POOL as u64)
                .map(|t| (shadow.alloc_gil(BIG, t), t))
                .collect()
        };
        let marked = mine.remove(0); // pool 1, full and marked: to the delayed list
        let open = mine.pop().unwrap(); // pool 2, not full: to its remote list
        let half = mine.split_off(mine.len() / 2);
        let s1 = shadow.clone();
        let remote = thread::spawn(move || {
            s1.free(marked.0, marked.1);
            s1.free(open.0, open.1);
        });
        let (s2, gil2) = (shadow.clone(), gil.clone());
        let worker = thread::spawn(move || {
            let _gil = gil2.lock().unwrap();
            // Use up pool 2 and reach the slow path, then free half of what main made.
            let made: Vec<(usize, u64)> = (100..100 + PER_POOL as u64)
                .map(|t| (s2.alloc_gil(BIG, t), t))
                .collect();
            for (addr, tag) in half.into_iter().chain(made) {
                s2.free_gil(addr, tag);
            }
        });
        {
            let _gil = gil.lock().unwrap();
            for (addr, tag) in mine {
                shadow.free_gil(addr, tag);
            }
        }
        remote.join().unwrap();
        worker.join().unwrap();
        assert_all_returned();
    });
}

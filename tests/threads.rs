//! Threads from Rust: cross-thread frees, and threads that exit leaving blocks behind,
//! with the invariant walker between phases and mapped memory not growing with the number
//! of threads that lived.

use pymalloc::internals::{api, arena, check};

/// The invariant walker, between phases.
fn verify() -> Result<check::Summary, check::Failure> {
    // SAFETY: every test of this file holds `SERIAL` and calls it only once the threads it
    // started have been joined (or are parked outside the allocator).
    unsafe { check::verify() }
}
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;

static SERIAL: Mutex<()> = Mutex::new(());

struct Block(usize, usize, u8);

fn alloc(n: usize, tag: u8) -> Block {
    let p = api::malloc(n);
    assert!(!p.is_null());
    // SAFETY: `n` bytes were just allocated.
    unsafe { std::ptr::write_bytes(p, tag, n) };
    Block(p as usize, n, tag)
}

fn release(b: Block) {
    let p = b.0 as *mut u8;
    for i in 0..b.1 {
        // SAFETY: the block holds `b.1` bytes.
        assert_eq!(unsafe { *p.add(i) }, b.2, "block {p:p} corrupt at {i}");
    }
    // SAFETY: a live block from this allocator.
    unsafe { api::free(p) };
}

#[test]
fn blocks_freed_by_another_thread() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, rx) = mpsc::channel::<Block>();
    let producer = thread::spawn(move || {
        for i in 0..200_000usize {
            tx.send(alloc(1 + i * 31 % 512, i as u8)).unwrap();
        }
    });
    let consumer = thread::spawn(move || {
        for b in rx {
            release(b);
        }
    });
    producer.join().unwrap();
    consumer.join().unwrap();
    verify().unwrap();
}

#[test]
fn exited_threads_leave_blocks_that_stay_freeable() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Warm up: the first generation maps what later ones reuse.
    let mut left = Vec::new();
    for t in 0..20u8 {
        left.extend(thread::spawn(move || worker(t)).join().unwrap());
    }
    left.drain(..).for_each(release);
    verify().unwrap();
    let mapped = arena::counts().current;
    for t in 0..1000u32 {
        left.extend(thread::spawn(move || worker(t as u8)).join().unwrap());
        if left.len() > 300 {
            left.drain(..).for_each(release);
        }
    }
    left.drain(..).for_each(release);
    verify().unwrap();
    let after = arena::counts().current;
    assert!(
        after <= mapped + 2,
        "arenas grew with threads that lived: {mapped} -> {after}"
    );
}

fn worker(t: u8) -> Vec<Block> {
    let mut mine: Vec<Block> = (0..200)
        .map(|i| alloc(1 + (i * 13 + t as usize) % 512, t))
        .collect();
    let keep = mine.split_off(195);
    mine.into_iter().for_each(release);
    keep
}

/// The list transitions, step by step: a pool that ran out is marked (`NOTIFY`); a block
/// its owner frees relinks it at the tail with the bit still set, so the next allocation
/// comes from the pool at the head; a remote free into the relinked pool then goes to the
/// owner's delayed list (clearing the bit), and nothing is lost.
#[test]
fn relinked_pools_wait_at_the_tail_and_keep_notify() {
    use pymalloc::internals::heap;
    use pymalloc::internals::pool::{pool_of, NOTIFY};
    use std::sync::atomic::Ordering;
    let _serial = SERIAL.lock().unwrap();
    // A fresh thread: a heap of its own, with no pool of class 31 yet.
    thread::spawn(|| {
        let big = 512;
        let per = pymalloc::internals::geometry::blocks_per_pool(big / 16 - 1);
        let before = verify().unwrap().blocks_in_use;
        let a: Vec<usize> = (0..per).map(|_| api::malloc(big) as usize).collect();
        let b0 = api::malloc(big);
        let (pa, pb) = (pool_of(a[0] as *const u8), pool_of(b0));
        assert!(a.iter().all(|&p| pool_of(p as *const u8) == pa) && pa != pb);
        // SAFETY (here and below): `pa` is a pool in use of this thread's heap; reading its
        // header while no other thread touches it.
        unsafe { assert_eq!((*pa).remote.load(Ordering::Relaxed), NOTIFY, "marked full") };
        // SAFETY: a live block of this allocator.
        unsafe { api::free(a[1] as *mut u8) };
        // SAFETY: as above.
        unsafe {
            assert!((*pa).linked(), "relinked by its owner's free");
            assert_eq!(
                (*pa).remote.load(Ordering::Relaxed),
                NOTIFY,
                "bit stays set"
            );
        }
        verify().unwrap();
        let b1 = api::malloc(big);
        assert_eq!(pool_of(b1), pb, "the relinked pool waits at the tail");
        let victim = a[2];
        // SAFETY: a live block of this allocator, freed once, by another thread.
        thread::spawn(move || unsafe { api::free(victim as *mut u8) })
            .join()
            .unwrap();
        // SAFETY: this thread's heap, read while no other thread touches it.
        unsafe {
            assert_eq!(
                heap::delayed_of(pymalloc::internals::heap::thread::thread_heap()) as usize,
                victim
            );
            assert_eq!(
                (*pa).remote.load(Ordering::Relaxed),
                0,
                "the freer cleared it"
            );
        }
        verify().unwrap();
        for (i, &p) in a.iter().enumerate() {
            if i != 1 && i != 2 {
                // SAFETY: live blocks of this allocator.
                unsafe { api::free(p as *mut u8) };
            }
        }
        // SAFETY: live blocks of this allocator.
        unsafe {
            api::free(b0);
            api::free(b1);
        }
        heap::trim();
        // Every block came back, the delayed one included.
        // SAFETY: this thread's heap, read while no other thread touches it.
        unsafe {
            assert!(heap::delayed_of(pymalloc::internals::heap::thread::thread_heap()).is_null())
        };
        assert_eq!(verify().unwrap().blocks_in_use, before, "blocks lost");
    })
    .join()
    .unwrap();
}

/// `large_in_use` (blocks over 512 bytes, served by the fallback) is counted per thread; a
/// block freed by another thread, with a heap of its own or without one, still balances the
/// sum.
#[test]
fn large_blocks_are_counted_wherever_they_are_freed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let in_use = || pymalloc::internals::stats::collect().large_in_use;
    let before = in_use();
    let blocks: Vec<usize> = (0..10).map(|_| alloc(4096, 7).0).collect();
    assert_eq!(in_use(), before + 10);
    let (mine, theirs) = blocks.split_at(5);
    let (mine, theirs) = (mine.to_vec(), theirs.to_vec());
    // One thread without a heap (it never allocated a small block), one with.
    let bare = thread::spawn(move || mine.into_iter().for_each(|p| release(Block(p, 4096, 7))));
    let with_heap = thread::spawn(move || {
        let small = alloc(64, 1);
        theirs.into_iter().for_each(|p| release(Block(p, 4096, 7)));
        release(small);
    });
    bare.join().unwrap();
    with_heap.join().unwrap();
    assert_eq!(in_use(), before);
}

/// The threads of a pool that run one at a time under one lock (CPython's GIL) share the
/// interpreter heap: what a worker freed before going idle serves the next worker, so 64
/// workers, each building and dropping the same structure in turn and then idling, hold the
/// pools one worker needs; with a heap each (`api::malloc`) every idle worker keeps its own.
#[test]
fn idle_workers_holdings_serve_the_running_one() {
    extern "C" fn held() -> std::ffi::c_int {
        1 // trim is called here only by the thread that holds `gil` or alone
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: before any interpreter-heap call in this process.
    assert!(unsafe { api::enable_interpreter_heap(held) });
    let gil = std::sync::Arc::new(Mutex::new(()));
    // Each worker, holding the lock: 4,000 blocks of 16-512 bytes, touched, then freed; then
    // it says so and idles until told to exit (a thread-pool worker waiting for work).
    let run = |shared: bool| {
        let before = arena::counts().pools_in_use;
        let (done, idle) = mpsc::channel();
        let exit = std::sync::Arc::new(std::sync::Barrier::new(65));
        let workers: Vec<_> = (0..64)
            .map(|w| {
                let (gil, done, exit) = (gil.clone(), done.clone(), exit.clone());
                thread::spawn(move || {
                    {
                        let _gil = gil.lock().unwrap();
                        let blocks: Vec<usize> = (0..4000)
                            .map(|i| {
                                let n = 16 + (i * 7 + w) % 497;
                                // SAFETY: the lock is held, as every interpreter-heap call
                                // holds it.
                                let p = if shared {
                                    unsafe { api::malloc_interpreter(n) }
                                } else {
                                    api::malloc(n)
                                };
                                // SAFETY: `n` bytes were just allocated.
                                unsafe { p.write_bytes(w as u8, n) };
                                p as usize
                            })
                            .collect();
                        for p in blocks {
                            // SAFETY: live blocks of ours, freed once, under the lock.
                            unsafe {
                                if shared {
                                    api::free_interpreter(p as *mut u8)
                                } else {
                                    api::free(p as *mut u8)
                                }
                            }
                        }
                    }
                    done.send(()).unwrap();
                    exit.wait(); // idle, holding on to its heap
                })
            })
            .collect();
        for _ in 0..64 {
            idle.recv().unwrap();
        }
        // Every worker has run and idles (its thread has not exited and tidied its heap).
        let held = arena::counts().pools_in_use.saturating_sub(before);
        exit.wait();
        for w in workers {
            w.join().unwrap();
        }
        held
    };
    let shared = run(true);
    let apart = run(false);
    println!("pools held while 64 workers idle: shared {shared}, a heap each {apart}");
    // One worker's structure is about 4,000 blocks of 264 bytes on average: ~260 pools.
    assert!(shared < 600, "the interpreter heap held {shared} pools");
    assert!(
        apart > 4 * shared,
        "a heap each held {apart}, shared {shared}"
    );
    verify().unwrap();
}

//! Threads from Rust: cross-thread frees, and threads that exit leaving blocks behind,
//! with the invariant walker between phases and mapped memory not growing with the number
//! of threads that lived.

use pymalloc::{api, arena, check};
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
    check::verify().unwrap();
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
    check::verify().unwrap();
    let mapped = arena::counts().current;
    for t in 0..1000u32 {
        left.extend(thread::spawn(move || worker(t as u8)).join().unwrap());
        if left.len() > 300 {
            left.drain(..).for_each(release);
        }
    }
    left.drain(..).for_each(release);
    check::verify().unwrap();
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

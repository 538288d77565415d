//! Many-thread stress from Rust: phases of 2, 4, 8 and 16 threads doing random churn of
//! sizes 1..=512, a quarter of the blocks sent to a random other thread and freed there.
//! Every block carries a pattern checked before its free; the invariant walker runs after
//! each phase and must find nothing in use.

use pymalloc::internals::{api, check};

/// The invariant walker, between phases.
fn verify() -> Result<check::Summary, check::Failure> {
    // SAFETY: this file's one test calls it only after joining every worker thread, and
    // no other test shares the process.
    unsafe { check::verify() }
}
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread;

const OPS_PER_PHASE: usize = 1_600_000;
const SLOTS: usize = 512;

struct Block {
    addr: usize,
    len: usize,
    tag: u64,
}

fn byte(tag: u64, i: usize) -> u8 {
    (tag.wrapping_mul(131) as usize).wrapping_add(i * 7) as u8 ^ (tag >> 8) as u8
}

fn alloc(len: usize, tag: u64) -> Block {
    let p = api::malloc(len);
    assert!(!p.is_null() && api::owns(p));
    for i in 0..len {
        // SAFETY: `len` bytes were just allocated.
        unsafe { *p.add(i) = byte(tag, i) };
    }
    Block {
        addr: p as usize,
        len,
        tag,
    }
}

fn release(b: Block) {
    let p = b.addr as *mut u8;
    for i in 0..b.len {
        // SAFETY: the block holds `b.len` bytes.
        let got = unsafe { *p.add(i) };
        assert_eq!(
            got,
            byte(b.tag, i),
            "block {p:p} ({} bytes) corrupt at {i}",
            b.len
        );
    }
    // SAFETY: a live block from this allocator.
    unsafe { api::free(p) };
}

fn worker(self_id: usize, ops: usize, peers: Vec<Sender<Block>>, inbox: Receiver<Block>) {
    let n = peers.len();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (self_id as u64 + 1).wrapping_mul(0x1234567);
    let mut tag = ((n as u64) << 56) | ((self_id as u64) << 48);
    let mut slots: Vec<Option<Block>> = (0..SLOTS).map(|_| None).collect();
    for op in 0..ops {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let r = seed;
        let slot = &mut slots[r as usize % SLOTS];
        match slot.take() {
            Some(b) => {
                let to = (r >> 20) as usize % n;
                if (r >> 30).is_multiple_of(4) && to != self_id {
                    peers[to].send(b).unwrap();
                } else {
                    release(b);
                }
            }
            None => {
                tag += 1;
                *slot = Some(alloc(1 + (r >> 40) as usize % 512, tag));
            }
        }
        if op % 32 == 0 {
            inbox.try_iter().for_each(release);
        }
    }
    slots.into_iter().flatten().for_each(release);
    drop(peers);
    // Every sender (ours and the peers') is dropped when the peers finish: drain to the end.
    inbox.into_iter().for_each(release);
}

#[test]
fn churn_with_cross_thread_frees_at_2_4_8_16_threads() {
    for threads in [2usize, 4, 8, 16] {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..threads).map(|_| channel()).unzip();
        let handles: Vec<_> = receivers
            .into_iter()
            .enumerate()
            .map(|(i, inbox)| {
                let peers = senders.clone();
                thread::spawn(move || worker(i, OPS_PER_PHASE / threads, peers, inbox))
            })
            .collect();
        drop(senders);
        for h in handles {
            h.join().unwrap();
        }
        let summary = verify().unwrap_or_else(|e| panic!("{threads} threads: {e}"));
        assert_eq!(summary.blocks_in_use, 0, "{threads} threads: blocks lost");
    }
}

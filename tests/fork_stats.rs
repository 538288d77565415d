//! After `fork`, the heaps of the threads that did not survive are counted as vanished in
//! the statistics, not as active. Its own test binary: it forks, and the statistics are
//! process-wide.

use pymalloc::internals::heap::HeapRole;
use pymalloc::internals::{ffi, stats};
use std::sync::mpsc;

#[test]
fn a_forked_childs_vanished_threads_heaps_are_not_active() {
    let mine = ffi::pymalloc_malloc(32);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        // The thread keeps its heap until it exits.
        let p = ffi::pymalloc_malloc(32) as usize;
        ready_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        // SAFETY: a block of ours.
        unsafe { ffi::pymalloc_free(p as *mut _) };
    });
    ready_rx.recv().unwrap();
    let active = |heaps: &[stats::HeapStats]| {
        heaps
            .iter()
            .filter(|h| h.role == HeapRole::Active as u32)
            .count()
    };
    let before = stats::collect_with_heaps()
        .1
        .expect("memory for the per-heap table");
    assert!(active(&before) >= 2, "{before:?}");

    // SAFETY: the child only reads the statistics and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let heaps = stats::collect_with_heaps()
            .1
            .expect("memory for the per-heap table");
        let vanished = heaps
            .iter()
            .filter(|h| h.role == HeapRole::Vanished as u32)
            .count();
        let code = if active(&heaps) == 1 && vanished == active(&before) - 1 {
            0
        } else {
            1
        };
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "in the child, the other thread's heap is still active: {status:#x}"
    );
    done_tx.send(()).unwrap();
    other.join().unwrap();
    // SAFETY: our block.
    unsafe { ffi::pymalloc_free(mine) };
}

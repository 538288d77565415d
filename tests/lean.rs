//! The shared library stays lean: it needs the C library only (no `libgcc_s`:
//! nothing in it unwinds), and what it costs a CPython process in resident memory at start
//! is measured from `/proc/self/smaps` and printed.

#[path = "../benches/common/smaps.rs"]
mod smaps;
mod support;

use std::process::Command;
use support::{debian_python311, library_dir, prereq};

#[test]
fn the_shared_library_needs_only_the_c_library() {
    let lib = library_dir().join("libpymalloc.so");
    let out = Command::new("readelf")
        .arg("-d")
        .arg(&lib)
        .output()
        .expect("readelf runs (apt-get install binutils)");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    println!("NEEDED: {needed:?}");
    assert!(needed.contains(&"libc.so.6"), "{needed:?}");
    for n in &needed {
        assert!(
            *n == "libc.so.6" || n.starts_with("ld-linux"),
            "{} needs {n}: {needed:?}",
            lib.display()
        );
    }
}

/// Whether `lib` was linked by lld (its `.comment` says so).
fn linked_by_lld(lib: &std::path::Path) -> bool {
    std::fs::read(lib)
        .expect("the library is readable")
        .windows(b"Linker: LLD".len())
        .any(|w| w == b"Linker: LLD")
}

#[test]
fn resident_memory_at_cpython_start_is_measured_and_has_no_unwinder() {
    let Some(py) = debian_python311("lean") else {
        return;
    };
    let lib = library_dir().join("libpymalloc.so");
    let with = smaps::python_start_smaps(&py, Some(&lib)).unwrap();
    let without = smaps::python_start_smaps(&py, None).unwrap();
    let kib = |s: &str, name: &str| smaps::resident_kib(s, name);
    println!(
        "python3.11 -c at start: libpymalloc.so {} KiB resident, libgcc_s {} KiB (without the library: {} / {} KiB)",
        kib(&with, "libpymalloc"),
        kib(&with, "libgcc_s"),
        kib(&without, "libpymalloc"),
        kib(&without, "libgcc_s"),
    );
    assert!(kib(&with, "libpymalloc") > 0, "the library was not mapped");
    // Linked by lld (the default linker since Rust 1.90), link/hot-text.ld puts all the code
    // a starting CPython runs in the text's first 64 KiB: one fault-around window.
    if !linked_by_lld(&lib) {
        // The layout script orders the text for lld only: say so rather than pass quietly.
        prereq::skip(
            "lean text",
            "libpymalloc.so",
            prereq::Missing::new(
                "lld as the linker (Rust 1.90+ on x86-64 Linux links with it by default)",
                "rustup update",
            ),
        );
    } else {
        let text = smaps::text_resident_kib(&with, "libpymalloc");
        assert!(
            text <= 64,
            "{text} KiB of the library's text resident at start: code run at start is outside \
             the hot list of link/hot-text.ld (a new module?)"
        );
    }
    assert_eq!(kib(&without, "libpymalloc"), 0);
    assert!(
        !with.contains("libgcc_s"),
        "the preloaded library brought in libgcc_s"
    );
}

const SAMPLE: &str = "\
7f0000000000-7f0000001000 r--p 00000000 fd:01 42   /x/libpymalloc.so
Size:                  4 kB
Rss:                   4 kB
7f0000001000-7f0000009000 r-xp 00001000 fd:01 42   /x/libpymalloc.so
Rss:                  28 kB
7f000000a000-7f000000b000 rw-p 00000000 00:00 0
Rss:                   4 kB
7f000000b000-7f000000c000 r-xp 00000000 fd:01 43   /lib/libc.so.6
Rss:                   8 kB
VmFlags: rd ex mr mw me
";

#[test]
fn smaps_sums_the_named_library_only() {
    assert_eq!(smaps::resident_kib(SAMPLE, "libpymalloc"), 32);
    assert_eq!(smaps::resident_kib(SAMPLE, "libc.so"), 8);
    assert_eq!(smaps::resident_kib(SAMPLE, "libgcc_s"), 0);
    assert_eq!(smaps::text_resident_kib(SAMPLE, "libpymalloc"), 28);
}

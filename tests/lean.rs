//! The shared library stays lean: it needs the C library only (no `libgcc_s`:
//! nothing in it unwinds), every symbol it takes from outside is the C library's, its fast
//! paths reach nothing through the GOT but the thread slot's offset, and what it costs a
//! CPython process in resident memory at start is measured from `/proc/self/smaps` and
//! printed.

#[path = "../benches/common/smaps.rs"]
mod smaps;
mod support;

use std::process::Command;
use support::{debian_python311, library_dir, prereq};

#[test]
fn the_shared_library_needs_only_the_c_library() {
    let lib = library_dir().join("libpymalloc.so");
    let text = inspect("readelf", &["-d"], &lib);
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

/// What `tool args... lib` prints.
fn inspect(tool: &str, args: &[&str], lib: &std::path::Path) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(lib)
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs (apt-get install binutils): {e}"));
    assert!(out.status.success(), "{tool} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The library is `no_std` and aborts on panic: the unwinder (`_Unwind_Resume`) and std's
/// personality routine, which the toolchain's precompiled `alloc` and `core` can pull in,
/// must not be asked of the process. Every undefined symbol is a versioned one of the C
/// library, or weak.
#[test]
fn every_symbol_the_shared_library_imports_is_the_c_librarys() {
    let lib = library_dir().join("libpymalloc.so");
    let text = inspect("nm", &["-D", "--undefined-only"], &lib);
    let foreign: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("w "))
        .filter(|l| !l.contains("@GLIBC_"))
        .collect();
    assert!(
        !text.is_empty() && foreign.is_empty(),
        "not from libc: {foreign:?}"
    );
}

/// The instructions of `function` in `disassembly` (`objdump -d` output), one per line.
fn body<'a>(disassembly: &'a str, function: &str) -> Vec<&'a str> {
    let head = format!("<{function}>:");
    let start = disassembly
        .find(&head)
        .unwrap_or_else(|| panic!("{function} not in the library"));
    disassembly[start + head.len()..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("int3"))
        .collect()
}

/// Whether an instruction of `objdump -d` reads through the GOT: a `%rip`-relative operand
/// that objdump names after the symbol before the GOT (`_DYNAMIC` as lld lays the library
/// out, `_GLOBAL_OFFSET_TABLE_` as GNU ld does).
fn through_got(instruction: &str) -> bool {
    instruction.contains("(%rip)")
        && (instruction.contains("<_DYNAMIC") || instruction.contains("<_GLOBAL_OFFSET_TABLE_"))
}

/// Checks the code of `function` in `disassembly`: every load through the GOT is the thread
/// slot's offset (an initial-exec TLS offset, which a shared library learns only when it is
/// loaded), and every other indirect jump or call goes to the C library (where `libc`
/// allows it) or, in a `PyObject_*` that `dispatches`, through a register to the
/// interpreter's own function. Returns the number of loads through the GOT.
fn check_indirections(disassembly: &str, function: &str, dispatches: bool, libc: bool) -> usize {
    let code = body(disassembly, function);
    println!("{function}:\n{}", code.join("\n"));
    let mut loads = 0;
    for (i, l) in code.iter().enumerate() {
        if through_got(l) {
            loads += 1;
            assert!(
                l.contains("mov") && code.get(i + 1).is_some_and(|n| n.contains("%fs:")),
                "{function}: a GOT load is not the thread slot's offset: {l}"
            );
        } else if l.contains('*') {
            assert!(
                (libc && l.contains("@GLIBC"))
                    || (dispatches && l.contains("jmp") && l.contains("*%")),
                "{function}: an indirect jump or call into the library: {l}"
            );
        }
    }
    loads
}

/// The fast paths reach their slow paths with direct jumps, and load through the GOT only
/// the thread slot's offset: docs/decisions.md#no-got-on-the-fast-paths. `PyObject_Malloc`
/// and `PyObject_Free`, which the interpreter's own calls reach on builds with a shared
/// libpython, also test which allocator the interpreter has installed (a static of ours
/// against a function of ours) and jump through a register to the interpreter's when it
/// is not ours: nothing more through the GOT there either. The calloc and realloc entry
/// points, too, reach the library's own code directly; besides the thread slot's offset
/// they reach only the C library (`memset`) through the GOT.
#[test]
fn the_entry_points_load_nothing_through_the_got_but_the_thread_slot() {
    let lib = library_dir().join("libpymalloc.so");
    let disassembly = inspect("objdump", &["-d", "--no-show-raw-insn"], &lib);
    // (function, dispatches to the interpreter's, the thread slot's offset loads of its
    // malloc/free fast paths: `PyObject_Malloc` inlines its fast path twice, with the
    // interpreter's struct found and without it outside CPython; `PyObject_Free` only the
    // interpreter's, and outside CPython jumps to the thread heap's, out of line
    // (docs/decisions.md#pool-fields-the-statistics-read-are-relaxed-atomics); None for
    // the others)
    for (function, dispatches, fast) in [
        ("pymalloc_malloc", false, Some(1)),
        ("pymalloc_free", false, Some(1)),
        ("PyObject_Malloc", true, Some(2)),
        ("PyObject_Free", true, Some(1)),
        ("pymalloc_calloc", false, None),
        ("pymalloc_realloc", false, None),
        ("PyObject_Calloc", true, None),
        ("PyObject_Realloc", true, None),
    ] {
        let loads = check_indirections(&disassembly, function, dispatches, fast.is_none());
        if let Some(expected) = fast {
            assert_eq!(loads, expected, "{function}: {loads} loads through the GOT");
        }
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
    // Linked by lld (the default linker since Rust 1.90), link/hot-text.ld puts the code a
    // starting CPython runs in a segment of its own, whose one fault-around window is all
    // of it, and leaves the rest of the text, the cold constants and the unwind tables in
    // segments no page of which is touched.
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
        let total = kib(&with, "libpymalloc");
        assert!(
            total <= 64,
            "{total} KiB of the library resident at start (text {} KiB): code run at start is \
             outside the hot list of link/hot-text.ld (a new module?), or the library grew",
            smaps::text_resident_kib(&with, "libpymalloc")
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

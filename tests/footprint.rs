//! Footprint under CPython: the preloaded library adds at most a
//! few MiB of address space, loads under a tight `ulimit -v`, and a program that allocates
//! until `MemoryError` gets nearly as far with it as without.

mod support;

use std::path::{Path, PathBuf};
use support::{clean_command, debian_python311};

fn library() -> PathBuf {
    support::library_dir().join("libpymalloc.so")
}

/// Runs `code` with `python` under `ulimit -v limit_kib` (none when 0), with or without the
/// library preloaded; returns (exit status success, stdout, stderr).
fn run(python: &Path, code: &str, limit_kib: u64, preload: bool) -> (bool, String, String) {
    let limit = if limit_kib == 0 {
        String::new()
    } else {
        format!("ulimit -v {limit_kib}; ")
    };
    let mut c = clean_command(Path::new("sh"));
    c.arg("-c")
        .arg(format!("{limit}exec \"$0\" -c \"$1\""))
        .arg(python)
        .arg(code);
    if preload {
        c.env("LD_PRELOAD", library());
    }
    let out = support::run(&mut c);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// Runs `code` as [`run`] does and returns the number it printed; panics, with its stderr,
/// if it failed.
fn number(python: &Path, code: &str, limit_kib: u64, preload: bool) -> u64 {
    let (ok, out, err) = run(python, code, limit_kib, preload);
    let with = if preload { "with" } else { "without" };
    assert!(ok, "{with} the library: {err}");
    out.parse()
        .unwrap_or_else(|e| panic!("{with} the library printed {out:?}: {e}"))
}

const VMSIZE: &str = "print([int(l.split()[1]) for l in open('/proc/self/status') \
                      if l.startswith('VmSize')][0])";

const LOADED: &str = "print(any('libpymalloc' in l for l in open('/proc/self/maps')))";

/// Appends lists of 10,000 short strings until `MemoryError`; prints how many it made.
const UNTIL_FULL: &str = "
keep = []
try:
    while True:
        keep.append([str(i) for i in range(10000)])
except MemoryError:
    n = len(keep)
    keep = None
    print(n)
";

#[test]
fn address_space_is_a_few_mib() {
    let Some(py) = debian_python311("footprint") else {
        return;
    };
    let (plain, ours) = (number(&py, VMSIZE, 0, false), number(&py, VMSIZE, 0, true));
    println!("VmSize: {plain} KiB plain, {ours} KiB preloaded");
    assert!(
        ours <= plain + 4 * 1024,
        "VmSize {ours} KiB with the library, {plain} KiB without"
    );
}

#[test]
fn loads_under_a_tight_address_space_limit() {
    let Some(py) = debian_python311("footprint") else {
        return;
    };
    let (ok, out, err) = run(&py, LOADED, 100_000, true);
    assert!(
        ok && out == "True",
        "not loaded under ulimit -v 100000: {out} {err}"
    );
    assert!(err.is_empty(), "stderr: {err}");
}

#[test]
fn memory_error_comes_as_late_as_without_the_library() {
    let Some(py) = debian_python311("footprint") else {
        return;
    };
    // About 300 MiB to fill above the interpreter's own address space.
    let limit = number(&py, VMSIZE, 0, false) + 300 * 1024;
    let plain = number(&py, UNTIL_FULL, limit, false);
    let ours = number(&py, UNTIL_FULL, limit, true);
    println!("lists before MemoryError: {plain} plain, {ours} preloaded");
    assert!(plain > 10, "the limit leaves too little room: {plain}");
    assert!(
        ours * 10 >= plain * 9,
        "MemoryError after {ours} lists with the library, {plain} without"
    );
}

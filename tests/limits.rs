//! Bad environment: an address-space limit (`RLIMIT_AS`, `ulimit -v`) under which arenas
//! cannot be mapped. Results must be defined (the fallback serves, then NULL or
//! `MemoryError`), nothing is lost and nothing crashes; from C (`ctests/limits/`), plain and
//! in debug mode, and from CPython preloaded under `ulimit -v`. Each runs in a child
//! process, which sets its own limit.

mod support;

use std::path::Path;
use std::process::Command;
use support::{c_program, clean_command, debian_python311, library_dir, run};

fn check_c_run(debug: bool) {
    let mut cmd = clean_command(&c_program("limits/address_space.c", "limits-address-space"));
    if debug {
        cmd.env("PYMALLOC_DEBUG", "1");
    }
    let out = run(&mut cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(err.is_empty(), "nothing may be reported: {err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("from the fallback"));
}

#[test]
fn c_program_under_an_address_space_limit_gets_fallback_memory_then_null() {
    check_c_run(false);
}

/// Debug mode serves pool-sized requests from the fallback when no arena can be mapped;
/// their correct frees must not be reported as frees of pointers never allocated.
#[test]
fn debug_mode_under_an_address_space_limit_frees_fallback_blocks_quietly() {
    check_c_run(true);
}

/// A Python program that allocates small objects until `MemoryError`, lets them go, and
/// shows the memory is usable again.
const EXHAUST: &str = "
hold = []
try:
    while True:
        hold.append([object() for _ in range(10000)])
except MemoryError:
    pass
chunks = len(hold)
del hold
again = [str(i) for i in range(200000)]
print('MemoryError after', chunks, 'chunks; then', len(again), 'strings')
";

#[test]
fn cpython_under_ulimit_v_gets_memory_error_and_exits_cleanly() {
    let Some(py) = debian_python311("ulimit -v") else {
        return;
    };
    let preload = |cmd: &mut Command| {
        cmd.env("LD_PRELOAD", library_dir().join("libpymalloc.so"));
    };
    // The limit: what the preloaded interpreter's address space is at start, plus 200 MB.
    let mut probe = clean_command(&py);
    probe.args([
        "-c",
        "import resource; print(resource.getpagesize() * int(open('/proc/self/statm').read().split()[0]))",
    ]);
    preload(&mut probe);
    let out = run(&mut probe);
    assert!(out.status.success());
    let start: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let limit_kib = start / 1024 + 200 * 1024;

    let mut cmd = clean_command(Path::new("sh"));
    cmd.arg("-c")
        .arg(format!("ulimit -v {limit_kib} && exec \"$0\" -c \"$1\""))
        .arg(&py)
        .arg(EXHAUST);
    preload(&mut cmd);
    let out = run(&mut cmd);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(stdout.starts_with("MemoryError after"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
}

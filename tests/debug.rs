//! Debug mode: every fault is committed in a child process (`ctests/debug/faults.c`, run
//! with `PYMALLOC_DEBUG=1`), which must print a report naming the fault, the address and
//! the block, and abort.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use support::{c_program, run};

fn program() -> std::path::PathBuf {
    c_program("debug/faults.c", "debug-faults")
}

#[test]
fn every_fault_is_reported_and_aborts() {
    let exe = program();
    let cases = [
        ("overrun", "buffer overrun", "20 bytes requested"),
        (
            "underrun",
            "buffer underrun",
            "first damaged byte at offset -1",
        ),
        ("double-free", "double free", "already freed"),
        (
            "use-after-free",
            "write to a freed block (use after free)",
            "offset 3",
        ),
        ("wild", "free of a pointer that was never allocated", "wild"),
        (
            "interior",
            "free of a pointer that was never allocated",
            "interior",
        ),
        (
            "realloc-freed",
            "realloc of a freed block",
            "20 bytes requested",
        ),
        (
            "large-overrun",
            "buffer overrun",
            "from the system allocator",
        ),
        (
            "damaged-size",
            "damaged block header",
            "stored size 4702111234474983745 (0x4141414141414141) does not fit the block: a 96-byte block (size class 5) holds 17 to 32 bytes of data",
        ),
        (
            "shrunk-size",
            "damaged block header",
            "stored size 1 (0x1) does not fit the block: a 96-byte block (size class 5)",
        ),
        (
            "large-damaged-size",
            "damaged block header",
            "a 1064-byte system allocator block holds exactly 1000 bytes of data",
        ),
    ];
    for (fault, title, detail) in cases {
        let out = run(Command::new(&exe).arg(fault).env("PYMALLOC_DEBUG", "1"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{fault}: not aborted: {err}"
        );
        assert!(
            err.starts_with(&format!("pymalloc: {title}")),
            "{fault}: {err}"
        );
        assert!(err.contains("address 0x"), "{fault}: no address: {err}");
        assert!(err.contains(detail), "{fault}: no {detail:?}: {err}");
        assert!(err.ends_with("aborting\n"), "{fault}: {err}");
    }
}

/// `fork()` while other threads are inside the allocator, in debug mode: the fork handlers
/// must take debug mode's own lock too, or a child can inherit it held and hang (the
/// program's alarm then fails it).
#[test]
fn fork_under_busy_threads_in_debug_mode() {
    let exe = c_program("fork.c", "debug-fork");
    let out = run(Command::new(&exe).env("PYMALLOC_DEBUG", "1"));
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn correct_programs_run_clean_in_debug_mode() {
    let out = run(Command::new(program()).arg("ok").env("PYMALLOC_DEBUG", "1"));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    assert!(out.stderr.is_empty());
}

/// Large freed blocks do not pile up in the quarantine: freeing 8 MiB and 1 MiB blocks over
/// and over keeps the peak RSS within 16 MiB of the same program's without debug mode (the
/// quarantine's 4 MiB and the holes its blocks leave in `malloc`'s heap, about 11 MiB here;
/// it held all 32 blocks of each size, 288 MiB, when the quarantine counted blocks alone).
#[test]
fn large_freed_blocks_do_not_stay_resident() {
    let maxrss_kib = |debug: &str| -> u64 {
        let out = run(Command::new(program())
            .arg("large-churn")
            .env("PYMALLOC_DEBUG", debug));
        assert!(out.status.success(), "{:?}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .strip_prefix("maxrss ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no maxrss in {text:?}"))
    };
    let (plain, debug) = (maxrss_kib("0"), maxrss_kib("1"));
    assert!(
        debug <= plain + 16 * 1024,
        "peak RSS {debug} KiB in debug mode, {plain} KiB without"
    );
}

/// `pymalloc_check` looks at the quarantine: a write to a freed block is caught there, not
/// only when the block leaves the quarantine 1,024 frees later.
#[test]
fn the_walker_sees_a_write_after_free() {
    let out = run(Command::new(program())
        .arg("check-after-free")
        .env("PYMALLOC_DEBUG", "1"));
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "caught by pymalloc_check\n"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("pymalloc_check: write to a freed block (use after free)")
            && err.contains("byte at offset 3 changed"),
        "{err}"
    );
}

/// A setuid program ignores every `PYMALLOC_*` setting when an unprivileged user runs it
/// (`AT_SECURE`): here `PYMALLOC_DEBUG=1` and `PYMALLOC_STATS=1` from user `nobody` change
/// nothing, while the same program without the setuid bit honours them (the program is
/// linked statically, so the loader's search path plays no part).
#[test]
fn a_setuid_program_ignores_the_settings() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: a plain system call.
    let root = unsafe { libc::geteuid() } == 0;
    let Some(setpriv) = support::prereq::gate(
        "setuid",
        "a setuid program",
        support::which("setpriv")
            .filter(|_| root)
            .ok_or_else(|| support::prereq::Missing::new("root and setpriv", "sudo cargo test")),
    ) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("pymalloc-setuid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let plain = dir.join("faults");
    support::compile_c(
        &support::root().join("ctests/debug/faults.c"),
        &plain,
        support::Link::Static,
        &[],
    );
    let setuid = dir.join("faults-setuid");
    std::fs::copy(&plain, &setuid).unwrap();
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let as_nobody = |exe: &std::path::Path| {
        run(Command::new(&setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(exe)
            .arg("overrun")
            .env("PYMALLOC_DEBUG", "1")
            .env("PYMALLOC_STATS", "1"))
    };
    let honoured = as_nobody(&plain);
    let ignored = as_nobody(&setuid);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        honoured.status.signal(),
        Some(libc::SIGABRT),
        "without the setuid bit debug mode should catch the overrun: {:?}",
        honoured.status
    );
    assert!(ignored.status.success(), "{:?}", ignored.status);
    assert!(String::from_utf8_lossy(&ignored.stdout).contains("not caught"));
    assert!(
        ignored.stderr.is_empty(),
        "statistics or a report from a setuid program: {}",
        String::from_utf8_lossy(&ignored.stderr)
    );
}

#[test]
fn without_debug_mode_overruns_go_unseen() {
    // The same overrun, release mode: no guard bytes, so no report (this is what debug
    // mode is for); the program finishes.
    let out = run(Command::new(program())
        .arg("overrun")
        .env_remove("PYMALLOC_DEBUG"));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("not caught"));
}

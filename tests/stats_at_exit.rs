//! `PYMALLOC_STATS=1` at exit: only a process that used the allocator prints a
//! report. A shell, its pipeline's forked subshell, `cat` and `ls` inherit `LD_PRELOAD` and
//! stay silent; CPython, which installs us, prints one.

mod support;

use std::path::Path;
use support::{clean_command, debian_python311, library_dir, run};

/// A line every report has once.
const REPORT_LINE: &str = "# arenas allocated total";

/// Runs `sh -c script` with the library preloaded and statistics on; returns how many
/// reports its processes printed on stderr, and that stderr.
fn reports(script: &str, extra: &[(&str, &str)]) -> (usize, String) {
    let mut cmd = clean_command(Path::new("bash"));
    cmd.arg("-c")
        .arg(script)
        .env("LD_PRELOAD", library_dir().join("libpymalloc.so"))
        .env("PYMALLOC_STATS", "1");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    assert!(out.status.success(), "{script}: {:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (err.matches(REPORT_LINE).count(), err)
}

#[test]
fn only_the_process_that_used_the_allocator_prints_statistics() {
    let Some(py) = debian_python311("stats at exit") else {
        return;
    };
    let py = py.display().to_string();
    let script = format!("echo hi | cat >/dev/null; ls / >/dev/null; {py} -c pass; true");
    let (n, err) = reports(&script, &[]);
    assert_eq!(n, 1, "expected CPython's report only:\n{err}");

    // The same pipeline with CPython told not to install us: nobody used the allocator.
    let (n, err) = reports(&script, &[("PYMALLOC_INSTALL", "0")]);
    assert_eq!(n, 0, "no process used the allocator, yet:\n{err}");
}

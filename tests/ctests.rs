//! Compiles every C program in `ctests/` against `include/pymalloc.h`, links it to the
//! built library, runs it, and runs it again under Valgrind's memcheck (no suppressions;
//! skipped loudly without valgrind, a failure under CI).
//! A program whose first comment says `expect-abort: TEXT` must abort with TEXT on stderr.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{compile_c, prereq, run, scratch, Link};

fn programs() -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(support::root().join("ctests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    v.sort();
    assert!(v.len() >= 6, "ctests/ lost programs: {v:?}");
    v
}

fn expected_abort(src: &Path) -> Option<String> {
    let text = std::fs::read_to_string(src).unwrap();
    let first = text.lines().next().unwrap_or("");
    first
        .split_once("expect-abort:")
        .map(|(_, msg)| msg.trim().to_string())
}

fn build(src: &Path, link: Link) -> PathBuf {
    let stem = src.file_stem().unwrap().to_str().unwrap();
    let out = scratch().join(format!("{stem}-{link:?}"));
    compile_c(src, &out, link, &[]);
    out
}

fn check_outcome(src: &Path, output: &std::process::Output) {
    match expected_abort(src) {
        None => assert!(
            output.status.success(),
            "{} failed: {:?}",
            src.display(),
            output.status
        ),
        Some(msg) => {
            assert_eq!(
                output.status.signal(),
                Some(libc::SIGABRT),
                "{} should abort",
                src.display()
            );
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains(&msg),
                "{}: stderr lacks {msg:?}",
                src.display()
            );
        }
    }
}

fn run_all(link: Link) {
    for src in programs() {
        println!("== {} ({link:?})", src.display());
        let exe = build(&src, link);
        check_outcome(&src, &run(&mut Command::new(&exe)));
    }
}

#[test]
fn c_programs_pass_linked_to_the_shared_library() {
    run_all(Link::Shared);
}

#[test]
fn c_programs_pass_linked_to_the_static_library() {
    run_all(Link::Static);
}

#[test]
fn c_programs_are_valgrind_clean() {
    let Some(valgrind) = prereq::valgrind("memcheck of ctests/") else {
        return;
    };
    for src in programs() {
        if expected_abort(&src).is_some() {
            continue; // an abort is the expected outcome, not a memcheck run
        }
        println!("== valgrind {}", src.display());
        let exe = build(&src, Link::Shared);
        let output = run(Command::new(&valgrind)
            .args([
                "--error-exitcode=99",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "-q",
            ])
            .arg(&exe)
            .env("CTESTS_UNDER_VALGRIND", "1"));
        assert!(
            output.status.success(),
            "memcheck reported errors for {}: {:?}",
            src.display(),
            output.status
        );
    }
}

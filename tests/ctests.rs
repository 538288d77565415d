//! Compiles every C program in `ctests/` against `include/pymalloc.h`, links it to the
//! built library, runs it, and runs it again under Valgrind's memcheck (no suppressions;
//! skipped loudly without valgrind, a failure under CI).
//! A program whose first comment says `expect-abort: TEXT` must abort with TEXT on stderr.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{compile_c, prereq, run, scratch, Link};

/// Subfolders of `ctests/` whose programs need more than a plain run (arguments, an
/// environment, a check of their output) and the test file that runs each of them. Every
/// other program, at any depth, is run here.
const DEDICATED: &[(&str, &str)] = &[
    ("debug", "tests/debug.rs"),
    ("limits", "tests/limits.rs"),
    ("python", "tests/cpython.rs tests/python_package.rs"),
    ("valgrind", "tests/valgrind.rs"),
];

/// Every C program under `dir`, subfolders included, sorted.
fn c_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            v.extend(c_files(&path));
        } else if path.extension().is_some_and(|e| e == "c") {
            v.push(path);
        }
    }
    v.sort();
    v
}

/// The first folder of `program` below `ctests`, if it is one with its own test.
fn dedicated_to(ctests: &Path, program: &Path) -> Option<&'static str> {
    let top = program.strip_prefix(ctests).ok()?.components().next()?;
    DEDICATED
        .iter()
        .find(|(dir, _)| top.as_os_str() == *dir)
        .map(|&(_, tests)| tests)
}

/// The programs this file runs: all of `ctests/` but the dedicated subfolders.
fn programs() -> Vec<PathBuf> {
    let ctests = support::root().join("ctests");
    let v: Vec<_> = c_files(&ctests)
        .into_iter()
        .filter(|p| dedicated_to(&ctests, p).is_none())
        .collect();
    assert!(v.len() >= 6, "ctests/ lost programs: {v:?}");
    v
}

/// No program is left out: one in a new subfolder is found (and run here), and one in a
/// dedicated subfolder is named by the test file that runs it.
#[test]
fn every_c_program_is_run_by_some_test() {
    let scratch = scratch().join("ctests-discovery");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(scratch.join("newfolder/deeper")).unwrap();
    std::fs::write(scratch.join("top.c"), "").unwrap();
    std::fs::write(scratch.join("newfolder/deeper/added.c"), "").unwrap();
    std::fs::write(scratch.join("newfolder/helper.h"), "").unwrap();
    let found = c_files(&scratch);
    assert_eq!(
        found,
        [
            scratch.join("newfolder/deeper/added.c"),
            scratch.join("top.c")
        ]
    );
    assert!(found.iter().all(|p| dedicated_to(&scratch, p).is_none()));

    let root = support::root();
    let ctests = root.join("ctests");
    for program in c_files(&ctests) {
        let Some(tests) = dedicated_to(&ctests, &program) else {
            continue;
        };
        let rel = program.strip_prefix(&ctests).unwrap().to_str().unwrap();
        let named = tests.split(' ').any(|t| {
            let text = std::fs::read_to_string(root.join(t)).unwrap();
            text.contains(&format!("\"{rel}\"")) || text.contains(&format!("\"ctests/{rel}\""))
        });
        assert!(
            named,
            "ctests/{rel} is run by no test ({tests} do not name it)"
        );
    }
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

//! With the `valgrind` feature, memcheck sees pool blocks as malloc-like: a leaked block is
//! reported as definitely lost, a read past a block as an invalid read, and a correct
//! program stays clean. Skipped loudly without valgrind, a failure under CI.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{prereq, root, run, scratch};

/// Builds the library with the feature into its own target directory; returns its dir.
fn feature_library() -> PathBuf {
    let target = root().join("target").join("valgrind-feature");
    let status = Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "build",
            "--release",
            "--package",
            "pymalloc-rs",
            "--lib",
            "--quiet",
            "--features",
            "valgrind",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(status.success());
    target.join("release")
}

fn compile(src: &str, lib: &Path) -> PathBuf {
    let out = scratch().join(format!(
        "vg-{}",
        Path::new(src).file_stem().unwrap().to_str().unwrap()
    ));
    let st = Command::new("cc")
        .args(["-O1", "-g", "-Wall", "-Werror", "-I"])
        .arg(root().join("include"))
        .arg(root().join(src))
        .arg("-o")
        .arg(&out)
        .arg("-L")
        .arg(lib)
        .arg("-lpymalloc")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .status()
        .expect("cc runs");
    assert!(st.success(), "compiling {src}");
    out
}

fn memcheck(valgrind: &Path, exe: &Path, lib: &Path) -> (bool, String) {
    // cargo's LD_LIBRARY_PATH names target/release, whose library lacks the feature, and it
    // outranks the program's RUNPATH.
    let out = run(Command::new(valgrind)
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
        ])
        .arg(exe)
        .env("LD_LIBRARY_PATH", lib));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn memcheck_sees_pool_blocks() {
    let Some(valgrind) = prereq::valgrind("valgrind feature") else {
        return;
    };
    let lib = feature_library();
    let (clean, log) = memcheck(&valgrind, &compile("ctests/valgrind/leak.c", &lib), &lib);
    assert!(
        !clean && log.contains("definitely lost: 48 bytes in 1 blocks"),
        "{log}"
    );
    assert!(
        log.contains("pymalloc_malloc"),
        "the leak's stack names the allocation: {log}"
    );
    let (clean, log) = memcheck(
        &valgrind,
        &compile("ctests/valgrind/overread.c", &lib),
        &lib,
    );
    assert!(!clean && log.contains("Invalid read of size 1"), "{log}");
    assert!(
        log.contains("0 bytes after a block of size 40 alloc'd"),
        "{log}"
    );
    let (clean, log) = memcheck(
        &valgrind,
        &compile("ctests/valgrind/realloc_in_place.c", &lib),
        &lib,
    );
    assert!(!clean, "{log}");
    assert!(
        !log.contains("Invalid write") && log.contains("block of size 110 alloc'd"),
        "a realloc in place resizes the block for memcheck: {log}"
    );
    let (clean, log) = memcheck(&valgrind, &compile("ctests/semantics.c", &lib), &lib);
    assert!(clean, "a correct program must stay clean: {log}");
}

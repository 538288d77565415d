//! With the `wheel` feature (maturin, pyproject.toml), builds the C library into
//! `$OUT_DIR/libpymalloc.so`, which maturin copies into the wheel's `pymalloc_rs/` package.
//! maturin's `bin` bindings build only this package's binary, so the library comes from a
//! nested `cargo build` of the library package in a target directory of its own under
//! `OUT_DIR` (the outer build holds the lock on its own), with this build's profile and
//! target.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    if std::env::var_os("CARGO_FEATURE_WHEEL").is_some() {
        let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
        let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
        let root = root.parent().expect("cli/ sits in the workspace root");
        // Every input of the library's own build (its build script watches `src`,
        // `cbindgen.toml` and the link script; cargo, its manifest, lock file and build
        // script): a change to any of them runs the nested build again, which decides
        // what is stale. Watching `src` alone left a wheel's library stale after a change
        // to the link script (tests/python_package.rs).
        for input in [
            "src",
            "build.rs",
            "Cargo.toml",
            "Cargo.lock",
            "cbindgen.toml",
            "link",
        ] {
            println!("cargo:rerun-if-changed={}", root.join(input).display());
        }
        bundle_library(root, &out);
    }
}

/// Builds `libpymalloc.so` into `out/libpymalloc.so`.
fn bundle_library(root: &Path, out: &Path) {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("cargo sets {k}"));
    let target = env("TARGET");
    let target_dir = out.join("lib");
    let mut cmd = Command::new(env("CARGO"));
    cmd.args([
        "build",
        "--lib",
        "--package",
        "pymalloc-rs",
        "--manifest-path",
    ])
    .arg(root.join("Cargo.toml"))
    .arg("--target")
    .arg(&target)
    .arg("--target-dir")
    .arg(&target_dir);
    // PROFILE is "release" for release-based profiles, "debug" otherwise.
    let profile = env("PROFILE");
    if profile == "release" {
        cmd.arg("--release");
    }
    // A build script's stdout is read as instructions to cargo: keep the nested one's away.
    let status = cmd
        .stdout(std::process::Stdio::null())
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building libpymalloc.so for the wheel failed"
    );
    let built = target_dir
        .join(&target)
        .join(&profile)
        .join("libpymalloc.so");
    std::fs::copy(&built, out.join("libpymalloc.so"))
        .unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
}

//! Generates `include/pymalloc.h` from the C ABI in `src/ffi.rs` with cbindgen.
//!
//! The header is written to `$OUT_DIR/pymalloc.h`. With `PYMALLOC_BLESS=1`,
//! `include/pymalloc.h` is refreshed too when it differs; otherwise the committed copy is
//! left alone and `tests/header.rs` fails if it is stale, on every machine.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("pymalloc.h");
    // Every module: cbindgen reads the items `ffi` exports wherever they are defined.
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=PYMALLOC_BLESS");
    // The C library, named here: rustc leaves the `libc` crate's own request for it off the
    // shared library's link when one build makes the cdylib, staticlib and rlib together
    // without std (seen with Rust 1.95), and the library then loads without libc's symbols.
    println!("cargo:rustc-link-lib=dylib=c");
    // Hot code first in the shared library's text (see the script).
    let script = crate_dir.join("link").join("hot-text.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{}", script.display());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,max-page-size=65536");

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    bindings.write_to_file(&out);

    if std::env::var_os("PYMALLOC_BLESS").is_some_and(|v| v == "1") {
        let committed = crate_dir.join("include").join("pymalloc.h");
        let fresh = std::fs::read(&out).expect("generated header is readable");
        if std::fs::read(&committed).ok().as_deref() != Some(&fresh[..]) {
            std::fs::create_dir_all(committed.parent().unwrap()).unwrap();
            std::fs::write(&committed, fresh).expect("include/pymalloc.h is writable");
        }
    }
}

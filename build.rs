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
    static_unwinder_for_the_cdylib();
    // Hot code first in the shared library's text (see the script).
    let script = crate_dir.join("link").join("hot-text.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{}", script.display());

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

/// The shared library depends on the C library only (it is loaded into every
/// preloaded process). Rust's std asks the linker for `-lgcc_s`, the shared unwinder, which
/// the library never uses (its entry points are `extern "C"`: a panic aborts at the
/// boundary rather than unwind into C). For the cdylib's link only, a directory searched
/// before the compiler's own holds a `libgcc_s.so` linker script naming the static unwinder
/// instead: the few unwinder functions std references are linked in (and never run), and no
/// `libgcc_s.so.1` is loaded. Tests, benches and the CLI link as usual.
fn static_unwinder_for_the_cdylib() {
    let dir = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("static-unwinder");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("libgcc_s.so"),
        "/* pymalloc build.rs: the static unwinder in place of libgcc_s.so.1 */\nGROUP ( -lgcc_eh -lgcc )\n",
    )
    .unwrap();
    println!("cargo:rustc-cdylib-link-arg=-L{}", dir.display());
}

//! Generates `include/pymalloc.h` from the C ABI in `src/ffi.rs` with cbindgen.
//!
//! The header is written to `$OUT_DIR/pymalloc.h`. Outside CI, `include/pymalloc.h` is
//! refreshed too when it differs, so a developer's build keeps the committed copy current;
//! under CI (`CI` set) the committed copy is left alone and `tests/header.rs` fails if it is
//! stale.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("pymalloc.h");
    println!("cargo:rerun-if-changed=src/ffi.rs");
    println!("cargo:rerun-if-changed=src/fallback.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=CI");

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    bindings.write_to_file(&out);

    if std::env::var_os("CI").is_none() {
        let committed = crate_dir.join("include").join("pymalloc.h");
        let fresh = std::fs::read(&out).expect("generated header is readable");
        if std::fs::read(&committed).ok().as_deref() != Some(&fresh[..]) {
            std::fs::create_dir_all(committed.parent().unwrap()).unwrap();
            std::fs::write(&committed, fresh).expect("include/pymalloc.h is writable");
        }
    }
}

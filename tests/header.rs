//! The committed `include/pymalloc.h` is exactly what cbindgen generates from the code.

#[test]
fn committed_header_matches_generated() {
    let generated = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/pymalloc.h"))
        .expect("build.rs wrote the generated header");
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/pymalloc.h"))
            .expect("include/pymalloc.h exists");
    assert!(
        generated == committed,
        "include/pymalloc.h is stale: run `PYMALLOC_BLESS=1 cargo build` and commit the result"
    );
}

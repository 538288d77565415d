//! The C example in the README compiles as written, against the header and the library,
//! and prints what its comment says.

mod support;

use std::process::Command;
use support::{compile_c, run, scratch, Link};

#[test]
fn readme_c_example_compiles_and_runs() {
    let readme = std::fs::read_to_string(support::root().join("README.md")).unwrap();
    let start = readme.find("```c\n").expect("README has a C example") + 5;
    let len = readme[start..].find("```").unwrap();
    let example = &readme[start..start + len];
    assert!(
        example.lines().count() < 15,
        "the README example must stay under 15 lines"
    );
    let src = scratch().join("readme_example.c");
    std::fs::write(&src, example).unwrap();
    let exe = scratch().join("readme_example");
    compile_c(&src, &exe, Link::Shared, &[]);
    let output = run(&mut Command::new(&exe));
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "hello, pools owned=0\n"
    );
}

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

/// The README is a newcomer's page: short, the two set-up commands as CI and the issue
/// tracker quote them, the headline table dated, every relative link resolving, and no
/// reference to a specification that is not in the repository.
#[test]
fn readme_is_short_and_its_links_resolve() {
    let root = support::root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; details go to docs/"
    );
    for command in [
        "cargo build --release && target/release/pymalloc compare",
        "cargo test --release",
    ] {
        assert!(readme.contains(command), "README lacks `{command}`");
    }
    let headline = &readme[readme
        .find("## Where it stands")
        .expect("a headline section")..];
    let dated = headline.lines().nth(2).unwrap_or("");
    assert!(
        dated.starts_with("20") && dated.contains("machine"),
        "the headline table's first line names its date and machine: {dated:?}"
    );
    for doc in [
        "README.md",
        "docs/benchmarks.md",
        "docs/decisions.md",
        "docs/cpython.md",
        "benches/README.md",
    ] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        assert!(!text.contains("SPEC §"), "{doc} cites the specification");
        let dir = root.join(doc).parent().unwrap().to_path_buf();
        for link in text.split("](").skip(1) {
            let target = link.split([')', '#']).next().unwrap();
            if target.is_empty() || target.contains("://") {
                continue;
            }
            assert!(dir.join(target).exists(), "{doc} links to missing {target}");
        }
    }
}

//! The last lines of `cargo test`: what the checks that need a prerequisite ran on and what
//! they skipped, and why, in this run (`support::prereq`), so a green run that skipped some
//! is not mistaken for the full suite. Cargo runs the integration-test binaries in name
//! order after the unit tests, so this one (no libtest harness: nothing is captured) runs
//! last; the library has no doc-tests to follow it (`doctest = false` in Cargo.toml).

mod support;

fn main() {
    print!("{}", support::prereq::take_summary());
}

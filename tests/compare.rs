//! `pymalloc compare`: a table for a user's command, with a column for each peer allocator
//! installed (a missing one is skipped loudly, a failure under CI), the SVG chart, and clear
//! errors.

mod support;

use std::process::Command;
use support::prereq::{self, Missing};
use support::{library_dir, run, scratch};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pymalloc"));
    c.env("PYMALLOC_LIB", library_dir().join("libpymalloc.so"));
    c
}

/// The peers `pymalloc compare` adds when installed: name, library, what installs it.
const PEERS: [(&str, &str, &str); 2] = [
    (
        "mimalloc",
        "libmimalloc.so.2",
        "apt-get install libmimalloc2.0",
    ),
    (
        "jemalloc",
        "libjemalloc.so.2",
        "apt-get install libjemalloc2",
    ),
];

#[test]
fn compares_a_users_command_and_draws_the_chart() {
    let Some(python) = prereq::gate("compare", "Debian python3.11", prereq::debian_python()) else {
        return;
    };
    let svg = scratch().join("compare.svg");
    let json = scratch().join("compare.json");
    let _ = std::fs::remove_file(&svg);
    let _ = std::fs::remove_file(&json);
    let out = run(bin()
        .args(["compare", "-n", "1", "--svg"])
        .arg(&svg)
        .arg("--json")
        .arg(&json)
        .arg("--")
        .arg(python)
        .args(["-c", "x = [str(i) * 3 for i in range(200000)]"]));
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "### Wall time",
        "### Peak RSS",
        "| CPython pymalloc (s) |",
        " pymalloc-rs |",
        " glibc malloc |",
    ] {
        assert!(table.contains(needle), "missing {needle:?} in\n{table}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("| /usr/bin/python3.11"))
        .expect("a row for the command");
    let cells: Vec<&str> = row
        .split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert!(cells[1].parse::<f64>().unwrap() > 0.0, "{row}");
    assert!(cells[2].parse::<f64>().unwrap() > 0.0, "{row}");
    let notes = String::from_utf8_lossy(&out.stderr);
    for (peer, file, install) in PEERS {
        if notes.contains(&format!("pymalloc compare: {peer} not installed")) {
            prereq::skip("compare with peers", peer, Missing::new(file, install));
        } else {
            assert!(
                table.contains(&format!(" {peer} |")),
                "no {peer} column in\n{table}"
            );
            prereq::ran("compare with peers", peer);
        }
    }
    let chart = std::fs::read_to_string(&svg).expect("the chart was written");
    assert!(chart.starts_with("<svg") && chart.contains("pymalloc-rs"));
    let measurements = std::fs::read_to_string(&json).expect("the measurements were written");
    for needle in [
        "\"baseline\": \"CPython pymalloc\"",
        "\"runs\": 1,",
        "\"command\": [\"/usr/bin/python3.11\", \"-c\",",
        "\"pymalloc-rs\": {\"wall_s\": [",
        "\"glibc malloc\": {\"wall_s\": [",
    ] {
        assert!(
            measurements.contains(needle),
            "missing {needle:?} in\n{measurements}"
        );
    }
}

#[test]
fn each_subcommand_has_help_and_errors_name_the_bad_option() {
    for (sub, option) in [
        ("run", "--stats"),
        ("compare", "--json"),
        ("chart", "--output"),
    ] {
        let out = run(bin().args([sub, "--help"]));
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(option),
            "{sub} --help"
        );
        let out = run(bin().args([sub, "--bogus-option"]));
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus-option"));
    }
}

#[test]
fn a_failing_command_is_an_error() {
    let out = run(bin().args(["compare", "-n", "1", "--", "false"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed under"));
}

#[test]
fn bad_usage_and_missing_library_are_errors() {
    assert_eq!(
        run(bin().args(["compare", "-n", "0"])).status.code(),
        Some(2)
    );
    assert_eq!(
        run(bin().args(["compare", "--bogus"])).status.code(),
        Some(2)
    );
    let out = run(bin()
        .args(["compare", "--", "true"])
        .env("PYMALLOC_LIB", "/nonexistent.so"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = run(bin()
        .args(["compare"])
        .env("PYMALLOC_PYTHON", "/nonexistent/python3"));
    assert_eq!(out.status.code(), Some(1));
}

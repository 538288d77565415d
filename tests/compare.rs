//! `pymalloc compare`: a table for a user's command, with a column for each peer allocator
//! installed (a missing one is skipped loudly, a failure under CI), the SVG chart, and clear
//! errors.

mod support;

use std::process::Command;
use support::debian_root::{self, Place};
use support::prereq::{self, Missing};
use support::{library_dir, run, scratch};

fn bin() -> Command {
    let mut c = Command::new(support::command());
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

/// How `pymalloc compare` and `pymalloc interpreter` name Debian's `/usr/bin/python3.11`.
const DEBIAN_311: &str = "Interpreter: /usr/bin/python3.11: CPython 3.11.";
const DEBIAN_311_BUILD: &str =
    "; static (libpython in the executable), PGO + LTO (Debian package python3.11-minimal 3.11.";

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
    // Which build the ratios are for heads the table: Debian's python3.11 is static and
    // built with PGO + LTO.
    assert!(
        table.starts_with(DEBIAN_311),
        "the table does not name the build:\n{table}"
    );
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
    // 3.11 has no mimalloc of its own: no column, and a note that says why.
    assert!(!table.contains("CPython mimalloc"), "{table}");
    assert!(
        notes.contains("has no mimalloc of its own (PYTHONMALLOC=mimalloc, CPython 3.13+)"),
        "{notes}"
    );
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
        "\"interpreter\": {\"path\": \"/usr/bin/python3.11\", \"version\": \"3.11.",
        "\"build\": \"static (libpython in the executable), PGO + LTO (Debian package python3.11-minimal ",
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

/// CPython's own mimalloc (`PYTHONMALLOC=mimalloc`, 3.13+) as a column: on pyenv's 3.13
/// here and on Debian's 3.14 and 3.15 in the Debian root (`support::debian_root`).
#[test]
fn cpython_mimalloc_is_a_column_on_3_13_and_later() {
    let check = "compare with CPython's mimalloc";
    let mut pythons = Vec::new();
    if let Some(p) = prereq::gate(check, "pyenv 3.13", support::pyenv_python(13)) {
        pythons.push((Place::Here, p));
    }
    for minor in debian_root::MINORS {
        let exe = format!("/usr/bin/python3.{minor}");
        let subject = format!("Debian 3.{minor} (Debian root)");
        if let Some(root) = prereq::gate(check, &subject, debian_root::holding(&exe)) {
            pythons.push((Place::DebianRoot(root), exe.into()));
        }
    }
    for (place, python) in pythons {
        let out = run(&mut place.command(
            bin()
                .args(["compare", "-n", "1", "--"])
                .arg(&python)
                .args(["-c", "x = [str(i) * 3 for i in range(100000)]"]),
        ));
        assert!(out.status.success(), "{}", python.display());
        let table = String::from_utf8_lossy(&out.stdout);
        let header = table
            .lines()
            .find(|l| l.starts_with("| workload |"))
            .expect("a table");
        let column = header
            .split('|')
            .map(str::trim)
            .position(|c| c == "CPython mimalloc")
            .unwrap_or_else(|| panic!("no CPython mimalloc column for {python:?}:\n{table}"));
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| {}", python.display())))
            .expect("a row for the command");
        let ratio: f64 = row.split('|').nth(column).unwrap().trim().parse().unwrap();
        assert!(ratio > 0.0, "{row}");
        // The table names the build: pyenv's loads libpython, Debian's are static, PGO + LTO.
        let first = table.lines().next().unwrap_or("");
        let build = match place {
            Place::Here => "; shared (".to_string(),
            Place::DebianRoot(_) => {
                let minor = python.display().to_string().replace("/usr/bin/python", "");
                format!("; static (libpython in the executable), PGO + LTO (Debian package python{minor}-minimal {minor}.")
            }
        };
        assert!(
            first.starts_with(&format!("Interpreter: {}: CPython 3.", python.display()))
                && first.contains(&build),
            "{build:?} not in {first:?}"
        );
    }
}

/// `pymalloc interpreter` names the build from what the running interpreter maps (a static
/// executable maps no libpython) and from dpkg: Debian's sysconfig describes its shared
/// build even for the static executable. An interpreter that cannot say is an error.
#[test]
fn interpreter_names_the_build() {
    let Some(python) = support::debian_python311("pymalloc interpreter") else {
        return;
    };
    let out = run(bin().arg("interpreter").arg(&python));
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        format!("Interpreter: {line}").starts_with(DEBIAN_311) && line.contains(DEBIAN_311_BUILD),
        "{line}"
    );
    // The same line heads compare's table for the bundled workloads.
    let out = run(bin().arg("interpreter").env("PYMALLOC_PYTHON", &python));
    assert_eq!(String::from_utf8_lossy(&out.stdout), line);
    let out = run(bin().args(["interpreter", "false"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("false does not say which build it is"),
        "{out:?}"
    );
}

#[test]
fn each_subcommand_has_help_and_errors_name_the_bad_option() {
    for (sub, option) in [
        ("run", "--stats"),
        ("compare", "--json"),
        ("chart", "--output"),
        ("interpreter", "PYTHON"),
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

/// How a command ended is said in words, not as a raw wait status.
#[test]
fn a_failing_command_says_how_it_ended() {
    for (script, how) in [
        ("exit 2", "(exit status 2)"),
        ("kill -9 $$", "(killed by signal 9)"),
    ] {
        let out = run(bin().args(["compare", "-n", "1", "--", "sh", "-c", script]));
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(how) && !err.contains("0x"), "{script}: {err}");
    }
}

/// A command that does not exist gets one line, not the interpreter and mimalloc probes'
/// notes before it.
#[test]
fn a_missing_program_is_one_line() {
    let out = run(bin().args(["compare", "--", "/no/such/python", "app.py"]));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "pymalloc: compare: cannot run \"/no/such/python\": no such program\n"
    );
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

//! The prerequisite gate (`support::prereq`): a skip is one loud line and passes, or under
//! CI fails naming what installs the missing piece; the summary groups runs and skips.

mod support;

use std::process::Command;
use support::prereq::{ran_record, skip, skip_record, Check, Missing, Summary};

fn thing() -> Missing {
    Missing::new("a thing", "apt-get install thing")
}

/// Run only by `a_skip_is_loud_or_fails_under_ci`, in a child, with and without `CI`.
#[test]
#[ignore = "a probe: run in a child by a_skip_is_loud_or_fails_under_ci"]
fn probe_skip() {
    skip("probe", "a machine", thing());
}

fn probe(ci: bool) -> std::process::Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", "probe_skip"]);
    if ci {
        cmd.env("CI", "true");
    } else {
        cmd.env_remove("CI");
    }
    cmd.output().expect("the test binary runs itself")
}

#[test]
fn a_skip_is_loud_or_fails_under_ci() {
    let line = "[probe] a machine: a thing is missing; install it with `apt-get install thing`";
    let loose = probe(false);
    let err = String::from_utf8_lossy(&loose.stderr);
    assert!(loose.status.success(), "a skip passes: {err}");
    assert_eq!(
        err,
        format!("SKIPPED {line}\n"),
        "one loud line, uncaptured"
    );
    let strict = probe(true);
    let out = String::from_utf8_lossy(&strict.stdout);
    assert!(!strict.status.success(), "CI=true fails a skip: {out}");
    assert!(
        out.contains("CI=true requires every prerequisite") && out.contains(line),
        "the failure names what installs it: {out}"
    );
}

#[test]
fn the_summary_groups_checks_and_lists_the_installs() {
    let other = Missing::new("valgrind", "apt-get install valgrind");
    let pyenv = Missing::new("CPython 3.10 under pyenv", "pyenv install 3.10");
    let text = [
        ran_record("regrtest", "pyenv 3.8"),
        skip_record("regrtest", "Debian python3.11", &thing()),
        ran_record("memcheck", "valgrind"),
        skip_record("regrtest", "pyenv 3.9", &thing()),
        skip_record("compare", "mimalloc", &other),
        skip_record("compare", "jemalloc", &other),
        skip_record("regrtest", "pyenv 3.10", &pyenv),
    ]
    .concat();
    let summary = Summary::parse(&text).unwrap();
    let check = |name: &str, ran: &[&str], skipped: &[(&str, &Missing)]| Check {
        name: name.into(),
        ran: ran.iter().map(|s| s.to_string()).collect(),
        skipped: skipped
            .iter()
            .map(|(s, m)| (s.to_string(), (*m).clone()))
            .collect(),
    };
    assert_eq!(
        summary.checks,
        [
            check(
                "regrtest",
                &["pyenv 3.8"],
                &[
                    ("Debian python3.11", &thing()),
                    ("pyenv 3.9", &thing()),
                    ("pyenv 3.10", &pyenv)
                ]
            ),
            check("memcheck", &["valgrind"], &[]),
            check(
                "compare",
                &[],
                &[("mimalloc", &other), ("jemalloc", &other)]
            ),
        ]
    );
    let text = summary.render(false);
    assert!(text.contains("ran     [regrtest] pyenv 3.8\n"), "{text}");
    assert!(
        text.contains("SKIPPED [compare] mimalloc: valgrind is missing"),
        "{text}"
    );
    assert!(
        text.contains("2 ran, 5 SKIPPED: NOT the full suite"),
        "{text}"
    );
    let installs: Vec<&str> = text.lines().filter(|l| l.starts_with("    ")).collect();
    assert_eq!(
        installs,
        [
            "    apt-get install thing valgrind",
            "    pyenv install 3.10"
        ],
        "each package once, on one apt-get line, then the other commands: {text}"
    );
    let strict = summary.render(true);
    assert!(
        strict.contains("FAILED  [compare] mimalloc: valgrind is missing")
            && strict.contains("2 ran, 5 FAILED for a missing prerequisite (CI=true)")
            && strict.contains("    apt-get install thing valgrind\n"),
        "{strict}"
    );
    let full = Summary::parse(&ran_record("memcheck", "valgrind")).unwrap();
    assert!(full
        .render(false)
        .contains("1 ran, none skipped: every prerequisite was present"));
    assert!(Summary::parse("ran\tonly-a-check\n").is_err());
}

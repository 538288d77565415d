//! Prerequisites a machine may lack (an interpreter, its `Lib/test`, valgrind, a peer
//! allocator): a check that needs a missing one is skipped loudly, or fails under CI, and
//! every gated check is recorded for the summary that `tests/zz_summary.rs` prints last.
//!
//! A skip is one line written straight to the test binary's stderr handle (libtest captures
//! only the `print!` family, so the line shows in a passing run), naming what is missing
//! and the command that installs it. With `CI=true` (or `CI=1`) in the environment every
//! prerequisite is required: the same line becomes the test's panic message.
//!
//! Records go to `target/tmp/prereq-runs/<run>`, one line each, where `<run>` names the
//! `cargo test` process (its pid and start time), the parent of every test binary of one
//! run: the summary binary reads back only its own run's lines.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

/// How the install commands of Debian packages begin; the summary joins them into one.
const APT_INSTALL: &str = "apt-get install ";

/// Something a check needs that is not on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// What is missing, as a reader would name it ("valgrind", "its Lib/test").
    pub what: String,
    /// The shell command that installs it.
    pub install: String,
}

impl Missing {
    pub fn new(what: impl Into<String>, install: impl Into<String>) -> Self {
        Missing {
            what: what.into(),
            install: install.into(),
        }
    }
}

/// Whether this run is CI's (`CI=true` or `CI=1`): then every prerequisite is required.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Records that `check` ran on `subject` (an interpreter, a tool, a peer).
pub fn ran(check: &str, subject: &str) {
    record(&ran_record(check, subject));
}

/// The record [`ran`] writes: one line, tab-separated.
pub fn ran_record(check: &str, subject: &str) -> String {
    format!("ran\t{check}\t{subject}\n")
}

/// The record [`skip`] writes: one line, tab-separated.
pub fn skip_record(check: &str, subject: &str, m: &Missing) -> String {
    format!("skipped\t{check}\t{subject}\t{}\t{}\n", m.what, m.install)
}

/// Skips `check` on `subject`, which lacks `missing`: a record for the summary and one loud
/// line on stderr; under CI the same line as a panic instead.
pub fn skip(check: &str, subject: &str, missing: Missing) {
    skip_all(check, &[(subject.to_string(), missing)]);
}

/// [`skip`] for several subjects of one check; under CI one panic naming them all.
pub fn skip_all(check: &str, skips: &[(String, Missing)]) {
    if skips.is_empty() {
        return;
    }
    let lines: Vec<String> = skips
        .iter()
        .map(|(subject, m)| skip_line(check, subject, m))
        .collect();
    for (subject, m) in skips {
        record(&skip_record(check, subject, m));
    }
    if under_ci() {
        panic!("CI=true requires every prerequisite:\n{}", lines.join("\n"));
    }
    let mut err = std::io::stderr().lock();
    for line in &lines {
        // The loud line is best effort: a closed stderr must not turn a skip into a failure.
        let _ = writeln!(err, "SKIPPED {line}");
    }
}

/// `found`, recorded as `check` run on `subject`; or `None` after skipping it (see [`skip`]).
pub fn gate<T>(check: &str, subject: &str, found: Result<T, Missing>) -> Option<T> {
    match found {
        Ok(t) => {
            ran(check, subject);
            Some(t)
        }
        Err(missing) => {
            skip(check, subject, missing);
            None
        }
    }
}

/// Valgrind, for `check`; `None` once the check is skipped for lack of it.
pub fn valgrind(check: &str) -> Option<PathBuf> {
    let found = super::which("valgrind")
        .ok_or_else(|| Missing::new("valgrind", "apt-get install valgrind"));
    gate(check, "valgrind", found)
}

/// Debian's `/usr/bin/python3.11`, or what installs it.
pub fn debian_python() -> Result<PathBuf, Missing> {
    let exe = PathBuf::from("/usr/bin/python3.11");
    if exe.is_file() {
        Ok(exe)
    } else {
        Err(Missing::new(
            "/usr/bin/python3.11",
            "apt-get install python3.11",
        ))
    }
}

fn skip_line(check: &str, subject: &str, m: &Missing) -> String {
    format!(
        "[{check}] {subject}: {} is missing; install it with `{}`",
        m.what, m.install
    )
}

/// Where this run's records go (see the module comment).
fn run_file() -> PathBuf {
    let parent = std::os::unix::process::parent_id();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("prereq-runs");
    dir.join(format!(
        "{parent}-{}",
        start_time(parent).unwrap_or_default()
    ))
}

/// The start time of process `pid` (clock ticks since boot, `/proc/PID/stat` field 22): with
/// the pid it names one process even after the pid is reused.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name, is parenthesised and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Appends `line` (one `write`, so concurrent tests do not interleave) to this run's file.
fn record(line: &str) {
    let file = run_file();
    std::fs::create_dir_all(file.parent().expect("a parent directory"))
        .expect("create target/tmp/prereq-runs");
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .unwrap_or_else(|e| panic!("record to {}: {e}", file.display()));
}

/// A run's records, grouped by check in order of first appearance.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub checks: Vec<Check>,
}

/// One check's records: the subjects it ran on and those it skipped, with why.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub ran: Vec<String>,
    pub skipped: Vec<(String, Missing)>,
}

impl Summary {
    /// Parses [`ran_record`] and [`skip_record`] lines; a malformed line is an error.
    pub fn parse(text: &str) -> Result<Summary, String> {
        let mut s = Summary::default();
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let name = match f[..] {
                ["ran", name, _] | ["skipped", name, _, _, _] => name,
                _ => return Err(format!("malformed record {line:?}")),
            };
            let i = match s.checks.iter().position(|c| c.name == name) {
                Some(i) => i,
                None => {
                    s.checks.push(Check {
                        name: name.to_string(),
                        ..Check::default()
                    });
                    s.checks.len() - 1
                }
            };
            let check = &mut s.checks[i];
            match f[..] {
                [_, _, subject] => check.ran.push(subject.to_string()),
                [_, _, subject, what, install] => check
                    .skipped
                    .push((subject.to_string(), Missing::new(what, install))),
                _ => unreachable!("matched above"),
            }
        }
        Ok(s)
    }

    /// The text printed at the end of `cargo test` (`ci`: run under CI): per check what it
    /// ran on and what it skipped (under CI: failed for), then either "none skipped" or the
    /// commands that install what was missing.
    pub fn render(&self, ci: bool) -> String {
        let mut out =
            String::from("\n==== pymalloc-rs tests: checks that need a prerequisite ====\n");
        let mut installs: Vec<&str> = Vec::new();
        let (mut ran, mut skipped) = (0, 0);
        // Under CI a missing prerequisite failed its test instead of skipping it.
        let skip_word = if ci { "FAILED " } else { "SKIPPED" };
        for c in &self.checks {
            ran += c.ran.len();
            skipped += c.skipped.len();
            if !c.ran.is_empty() {
                out += &format!("ran     [{}] {}\n", c.name, c.ran.join(", "));
            }
            for (subject, m) in &c.skipped {
                out += &format!("{skip_word} {}\n", skip_line(&c.name, subject, m));
                if !installs.contains(&m.install.as_str()) {
                    installs.push(&m.install);
                }
            }
        }
        if self.checks.is_empty() {
            out += "none ran: this was not the whole `cargo test --release`\n";
        } else if skipped == 0 {
            out += &format!("{ran} ran, none skipped: every prerequisite was present\n");
        } else {
            out += &if ci {
                format!(
                    "{ran} ran, {skipped} FAILED for a missing prerequisite (CI=true); install:\n"
                )
            } else {
                format!(
                    "{ran} ran, {skipped} SKIPPED: NOT the full suite (under CI=true each skip \
                     fails the run); to run everything:\n"
                )
            };
            // One apt-get line for all the Debian packages, then any other command.
            let (apt, other): (Vec<&str>, Vec<&str>) = installs
                .iter()
                .partition(|cmd| cmd.starts_with(APT_INSTALL));
            let packages: Vec<&str> = apt.iter().map(|cmd| &cmd[APT_INSTALL.len()..]).collect();
            if !packages.is_empty() {
                out += &format!("    {APT_INSTALL}{}\n", packages.join(" "));
            }
            for cmd in other {
                out += &format!("    {cmd}\n");
            }
        }
        out
    }
}

/// Reads this run's records and returns the summary text; removes the run's file and those
/// of runs whose `cargo test` has exited (a targeted run never reaches the summary).
pub fn take_summary() -> String {
    let file = run_file();
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => panic!("read {}: {e}", file.display()),
    };
    let dir = file.parent().expect("a parent directory");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let alive = name
            .to_str()
            .and_then(|n| n.split_once('-'))
            .is_some_and(|(pid, start)| {
                pid.parse()
                    .ok()
                    .and_then(start_time)
                    .map(|t| t.to_string())
                    .as_deref()
                    == Some(start)
            });
        if !alive || entry.path() == file {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Summary::parse(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .render(under_ci())
}

//! `pymalloc inspect PID` and `pymalloc trim PID` against real CPython processes (Debian's
//! and pyenv's 3.11 here, Debian's 3.14 in the Debian root, read from outside it): the
//! figures read from outside equal the process's own `pymalloc_get_stats` while it is
//! stopped, reading changes nothing in it, and each error is one line with exit status 2.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};
use support::debian_root::{self, Place};
use support::{library_dir, prereq, run, scratch};

/// How long any one step may take before the test gives up (and kills what it started).
const PATIENCE: Duration = Duration::from_secs(60);

fn lib() -> PathBuf {
    library_dir().join("libpymalloc.so")
}

fn inspect(args: &[&str]) -> Output {
    run(Command::new(support::command()).arg("inspect").args(args))
}

/// The Pythons to read: Debian's 3.11 and pyenv's here, Debian's 3.14 in the Debian root.
fn pythons(check: &str) -> Vec<(Place, PathBuf)> {
    let mut out = Vec::new();
    if let Some(p) = support::debian_python311(check) {
        out.push((Place::Here, p));
    }
    if let Some(p) = prereq::gate(check, "pyenv 3.11", support::pyenv_python(11)) {
        out.push((Place::Here, p));
    }
    let exe = "/usr/bin/python3.14";
    if let Some(root) = prereq::gate(
        check,
        "Debian 3.14 (Debian root)",
        debian_root::holding(exe),
    ) {
        out.push((Place::DebianRoot(root), exe.into()));
    }
    out
}

/// A process under test, in a process group of its own: killed with its group when
/// dropped, so that a failing or stuck test leaves nothing running.
struct Target {
    child: Child,
    pid: i32,
    lines: Receiver<String>,
}

impl Target {
    /// Starts `tests/python/inspect_target.py` with `strings` strings under `python` at
    /// `place`, with `lib` preloaded and `env` set.
    fn start(
        place: &Place,
        python: &Path,
        strings: u32,
        lib: &Path,
        env: &[(&str, &str)],
    ) -> Target {
        let mut cmd = Command::new(python);
        cmd.arg(support::root().join("tests/python/inspect_target.py"))
            .arg(strings.to_string())
            .env("LD_PRELOAD", lib)
            .env("PYMALLOC_LIB", lib);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Target::spawn(place.command(&cmd))
    }

    /// Starts `cmd`, which prints its PID first, in a process group of its own.
    fn spawn(mut cmd: Command) -> Target {
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the target");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        let mut t = Target {
            child,
            pid: 0,
            lines,
        };
        t.pid = t.line().trim().parse().expect("the target's PID");
        t
    }

    /// The target's next line of output.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .expect("the target printed nothing in time")
    }

    /// Waits until the target has stopped itself.
    fn wait_stopped(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap();
            // The state follows the command name in parentheses.
            let state = stat[stat.rfind(')').unwrap() + 2..].chars().next();
            if state == Some('T') {
                return;
            }
            assert!(Instant::now() < deadline, "the target did not stop: {stat}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: sends a signal to the process we started.
        assert_eq!(unsafe { libc::kill(self.pid, sig) }, 0);
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // SAFETY: the group of the process we started (its PID is the group's ID).
        unsafe { libc::killpg(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The numbers of `pymalloc inspect --json` in the order of `pymalloc_stats`' fields: the
/// JSON lists them in that order, from `arenas_allocated_total` to the classes' last (the
/// lists of Python objects of each class left out).
fn stats_numbers(json: &str) -> Vec<u64> {
    let from = json
        .find("\"arenas_allocated_total\"")
        .expect("the stats in the JSON");
    let to = json.find("\"heaps\": [").expect("the heaps in the JSON");
    let mut stats = json[from..to].to_string();
    while let Some(at) = stats.find("\"python_objects\": [") {
        let end = at + stats[at..].find(']').unwrap();
        stats.replace_range(at..=end, "");
    }
    stats
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

fn numbers(line: &str) -> Vec<u64> {
    line.split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect()
}

#[test]
fn figures_equal_the_processs_own_while_stopped_and_reading_changes_nothing() {
    for (place, python) in pythons("inspect a stopped process") {
        let target = Target::start(&place, &python, 200_000, &lib(), &[]);
        target.wait_stopped();
        let pid = target.pid.to_string();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let out = inspect(&[&pid, "--json"]);
            assert!(out.status.success(), "{}", python.display());
            seen.push(stats_numbers(&String::from_utf8_lossy(&out.stdout)));
        }
        let text = inspect(&[&pid]);
        let text = String::from_utf8_lossy(&text.stdout);
        // The classes holding the stranded bytes, with the CPython objects of their size
        // for the interpreter's version (the target's strings are 3 to 18 characters).
        let minor = python.to_str().unwrap().rsplit("python3.").next().unwrap();
        let objects = format!("common CPython 3.{minor} objects of the class's size");
        for needle in [
            "A snapshot read while the process runs",
            "RSS of the process (VmRSS): ",
            "# bytes stranded in total",
            "   interpreter ",
            &objects,
        ] {
            assert!(text.contains(needle), "{needle:?} not in\n{text}");
        }
        let after_table = &text[text.find(&objects).unwrap()..];
        assert!(after_table.contains(", str (ASCII, "), "{after_table}");
        target.signal(libc::SIGCONT);
        let (before, after) = (numbers(&target.line()), numbers(&target.line()));
        assert_eq!(before.len(), 495);
        assert!(
            before[3] > 10,
            "arenas_current: the target holds a sparse heap"
        );
        for read in &seen {
            assert_eq!(
                read,
                &before,
                "{}: inspect's figures differ from the process's",
                python.display()
            );
        }
        assert_eq!(
            before,
            after,
            "{}: the statistics changed while read",
            python.display()
        );
    }
}

/// Runs `pymalloc inspect PID` as `cmd` and checks it fails in one line with exit status 2
/// that says `needle`.
fn fails_in_one_line(mut cmd: Command, needles: &[&str]) {
    let out = run(&mut cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
}

fn inspect_command(pid: i32) -> Command {
    let mut c = Command::new(support::command());
    c.arg("inspect").arg(pid.to_string());
    c
}

#[test]
fn no_such_process_one_line_exit_2() {
    // A child that has exited and been reaped: its PID names no process (until reused).
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id() as i32;
    gone.wait().unwrap();
    fails_in_one_line(
        inspect_command(pid),
        &[&format!("no process with PID {pid}")],
    );
}

#[test]
fn a_process_without_the_library_one_line_exit_2() {
    let Some(python) = support::debian_python311("inspect a process without the library") else {
        return;
    };
    let mut plain = Command::new(&python);
    plain.args([
        "-c",
        "import sys; print(__import__('os').getpid(), flush=True); sys.stdin.read()",
    ]);
    let target = Target::spawn(plain);
    fails_in_one_line(
        inspect_command(target.pid),
        &["does not use pymalloc-rs (no libpymalloc in /proc/"],
    );
}

#[test]
fn another_library_version_one_line_exit_2_naming_both() {
    let Some(python) = support::debian_python311("inspect another library version") else {
        return;
    };
    // A copy of the library whose descriptor says 9.9.9: the version's bytes follow the
    // magic, the layout and the size (src/allocator/layout.rs).
    let mut bytes = std::fs::read(lib()).unwrap();
    let magic = bytes
        .windows(12)
        .position(|w| w == b"PYMALLOC\x03\0\0\0")
        .expect("the descriptor in the library file");
    bytes[magic + 16..magic + 32].copy_from_slice(b"9.9.9\0\0\0\0\0\0\0\0\0\0\0");
    let other = scratch().join("libpymalloc-9.9.9.so");
    std::fs::write(&other, &bytes).unwrap();
    let target = Target::start(&Place::Here, &python, 1000, &other, &[]);
    target.wait_stopped();
    fails_in_one_line(
        inspect_command(target.pid),
        &[&format!(
            "runs libpymalloc 9.9.9 (layout 3), this pymalloc reads libpymalloc {} (layout 3)",
            env!("CARGO_PKG_VERSION")
        )],
    );
}

#[test]
fn no_permission_one_line_exit_2_explaining_ptrace() {
    let check = "inspect without permission";
    let Some(python) = support::debian_python311(check) else {
        return;
    };
    // The inspector runs as `nobody`, the target as us: needs root to change user.
    // SAFETY: geteuid has no preconditions.
    let root = if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err(prereq::Missing::new(
            "root (to run the inspector as nobody)",
            "run as root",
        ))
    };
    let Some(setpriv) = prereq::gate(
        check,
        "setpriv as root",
        root.and_then(|()| {
            support::which("setpriv")
                .ok_or_else(|| prereq::Missing::new("setpriv", "apt-get install util-linux"))
        }),
    ) else {
        return;
    };
    let as_nobody = |program: &Path| {
        let mut cmd = Command::new(&setpriv);
        cmd.args([
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            "--",
        ])
        .arg(program);
        cmd
    };
    let target = Target::start(&Place::Here, &python, 1000, &lib(), &[]);
    target.wait_stopped();
    let mut cmd = as_nobody(&support::command());
    cmd.arg("inspect").arg(target.pid.to_string());
    fails_in_one_line(cmd, &["ptrace_scope", "same user", "CAP_SYS_PTRACE"]);
    // The same user may read (this kernel has no Yama, or it is at 0), with no privilege:
    // the library's file is then found without /proc/PID/map_files, which needs one.
    let yama = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope");
    if yama.as_deref().map_or(true, |s| s.trim() == "0") {
        let mut cmd = as_nobody(&python);
        cmd.arg(support::root().join("tests/python/inspect_target.py"))
            .arg("1000")
            .env("LD_PRELOAD", lib())
            .env("PYMALLOC_LIB", lib());
        let theirs = Target::spawn(cmd);
        theirs.wait_stopped();
        let mut cmd = as_nobody(&support::command());
        let out = run(cmd.args(["inspect", &theirs.pid.to_string(), "--json"]));
        assert!(out.status.success(), "nobody reads nobody's process");
        assert!(figure(&String::from_utf8_lossy(&out.stdout), "arenas_current") > 0);
    }
}

/// The figures of `pymalloc inspect PID --json`, by name (the scalar ones).
fn figure(json: &str, name: &str) -> u64 {
    let key = format!("\"{name}\": ");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {json}"))
        + key.len();
    json[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn trim_asks_a_process_that_opted_in_and_its_free_pools_go_back() {
    for (place, python) in pythons("pymalloc trim") {
        let mut cmd = Command::new(&python);
        cmd.arg(support::root().join("tests/python/trim_target.py"))
            .arg("300000")
            .env("LD_PRELOAD", lib())
            .env("PYMALLOC_LIB", lib())
            .env("PYMALLOC_DECAY_MS", "-1")
            .env("PYMALLOC_TRIM_SIGNAL", "SIGUSR2");
        let target = Target::spawn(place.command(&cmd));
        assert_eq!(target.line(), "dropped");
        let pid = target.pid.to_string();
        let json = |out: Output| String::from_utf8_lossy(&out.stdout).into_owned();
        let before = json(inspect(&[&pid, "--json"]));
        let unreturned = |j: &str| figure(j, "pools_free") - figure(j, "pools_returned");
        assert!(
            unreturned(&before) > 1000,
            "{}: the dropped strings' pools stay until a trim",
            python.display()
        );
        let out = run(Command::new(support::command()).args(["trim", &pid, "--wait", "0.5"]));
        assert!(out.status.success(), "{}", python.display());
        // The trim happens at the target's next slow path: within a few of its rounds.
        let deadline = Instant::now() + PATIENCE;
        let after = loop {
            let after = json(inspect(&[&pid, "--json"]));
            if unreturned(&after) < 100 || Instant::now() > deadline {
                break after;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            unreturned(&after) < 100
                && figure(&after, "arenas_current") < figure(&before, "arenas_current"),
            "{}: not trimmed:\nbefore {before}\nafter {after}",
            python.display()
        );
    }
}

#[test]
fn trim_without_opt_in_one_line_exit_2() {
    let Some(python) = support::debian_python311("pymalloc trim without opt-in") else {
        return;
    };
    let target = Target::start(&Place::Here, &python, 1000, &lib(), &[]);
    target.wait_stopped();
    let mut cmd = Command::new(support::command());
    cmd.args(["trim", &target.pid.to_string()]);
    fails_in_one_line(cmd, &["did not opt in", "PYMALLOC_TRIM_SIGNAL=SIGUSR2"]);
}

#[test]
fn watch_prints_a_line_per_sample_and_draws_the_timeline() {
    let Some(python) = support::debian_python311("inspect --watch") else {
        return;
    };
    let mut cmd = Command::new(&python);
    cmd.arg(support::root().join("tests/python/trim_target.py"))
        .arg("100000")
        .env("LD_PRELOAD", lib())
        .env("PYMALLOC_LIB", lib());
    let target = Target::spawn(cmd);
    assert_eq!(target.line(), "dropped");
    let svg = scratch().join("inspect-watch.svg");
    let _ = std::fs::remove_file(&svg);
    let pid = target.pid.to_string();
    let out = inspect(&[
        &pid,
        "--watch",
        "1",
        "--every",
        "0.25",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let samples = text
        .lines()
        .filter(|l| l.trim_end().ends_with(|c: char| c.is_ascii_digit()) && l.contains(" s "))
        .count();
    assert!((4..=6).contains(&samples), "{samples} samples in\n{text}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
    for series in ["RSS", "bytes in use", "bytes stranded", "kept empty pools"] {
        assert!(
            svg.contains(&format!("<title>{series}</title>")),
            "{series}"
        );
    }
}

#[test]
fn watch_with_no_interval_is_refused_in_one_line() {
    // Would sample without end; refused before the process is looked at.
    let mut cmd = Command::new(support::command());
    cmd.args(["inspect", "1", "--watch", "1", "--every", "0"]);
    fails_in_one_line(cmd, &["--every SECONDS > 0"]);
}

#[test]
fn reading_a_process_that_changes_under_it_never_fails() {
    for (place, python) in pythons("inspect a busy process") {
        let mut cmd = Command::new(&python);
        cmd.arg(support::root().join("tests/python/churn_target.py"))
            .env("LD_PRELOAD", lib())
            .env("PYMALLOC_LIB", lib());
        let target = Target::spawn(place.command(&cmd));
        assert_eq!(target.line(), "churning");
        let pid = target.pid.to_string();
        for _ in 0..10 {
            let out = inspect(&[&pid, "--json"]);
            assert!(out.status.success(), "{}", python.display());
            let json = String::from_utf8_lossy(&out.stdout);
            assert!(figure(&json, "arenas_current") > 10, "{json}");
            assert!(figure(&json, "heaps") >= 1 && figure(&json, "bytes_in_use") > 0);
        }
    }
}

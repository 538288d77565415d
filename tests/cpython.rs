//! Injection tests over every CPython on the machine: pyenv's 3.8–3.13 (`--enable-shared`),
//! Debian's static `python3.11`, and Debian's static 3.14 and 3.15 in the Debian root
//! (`scripts/debian-root.sh`, `support::debian_root`). Each interpreter is printed as run,
//! FAILED or skipped; one the machine lacks (or whose `Lib/test` or `python3.X-config` a
//! check needs) is skipped loudly, or fails the test under CI (`support::prereq`).

mod support;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::debian_root::{self, Place};
use support::prereq::{self, Missing};
use support::{library_dir, root, scratch};

/// A CPython to test, or what installs it.
struct Python {
    label: String,
    path: Result<PathBuf, Missing>,
    /// `python3.X-config`, for the embedding test.
    config: Result<PathBuf, Missing>,
    /// What installs its regression tests (`Lib/test`) when they are missing.
    lib_test: Missing,
    /// Where it runs: here, or inside the Debian root (its paths are the root's).
    place: Place,
}

impl Python {
    /// Runs `cmd` (a command naming this interpreter's paths) where the interpreter is,
    /// printing its output for the test log (see [`support::run_within`]).
    fn run(&self, cmd: &mut Command) -> Output {
        self.run_within(cmd, None).0
    }

    /// As [`Python::run`], killing it and every process it started past `limit`: also
    /// whether it ran past it.
    fn run_within(&self, cmd: &mut Command, limit: Option<Duration>) -> (Output, bool) {
        support::run_within(&mut self.place.command(cmd), limit)
    }
}

/// Why a check did not pass on one interpreter.
enum Problem {
    /// It ran and failed.
    Failed(String),
    /// It needs something the machine lacks: a skip, or a failure under CI.
    Missing(Missing),
}

impl From<String> for Problem {
    fn from(e: String) -> Self {
        Problem::Failed(e)
    }
}

impl From<&str> for Problem {
    fn from(e: &str) -> Self {
        Problem::Failed(e.to_string())
    }
}

fn pyenv_root() -> Option<PathBuf> {
    let out = Command::new("pyenv").arg("root").output().ok()?;
    if out.status.success() {
        Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    } else {
        std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv"))
    }
}

fn pythons() -> Vec<Python> {
    let root = pyenv_root();
    let versions: Vec<String> = root
        .as_ref()
        .and_then(|r| std::fs::read_dir(r.join("versions")).ok())
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut v = Vec::new();
    for minor in 8..=13 {
        let prefix = format!("3.{minor}.");
        let found = versions
            .iter()
            .filter(|name| name.starts_with(&prefix))
            .max_by_key(|name| name[prefix.len()..].parse::<u32>().unwrap_or(0));
        let reinstall = Missing::new(
            "its Lib/test (the regression tests)",
            match found {
                Some(name) => format!("pyenv install --force {name}"),
                None => format!("pyenv install 3.{minor}"),
            },
        );
        let (path, config) = match (found, &root) {
            (Some(name), Some(r)) => {
                let bin = r.join("versions").join(name).join("bin");
                let exe = bin.join(format!("python3.{minor}"));
                let cfg = bin.join(format!("python3.{minor}-config"));
                let lacking = |p: &Path| Missing::new(p.display().to_string(), &reinstall.install);
                (
                    Some(exe.clone())
                        .filter(|e| e.is_file())
                        .ok_or_else(|| lacking(&exe)),
                    Some(cfg.clone())
                        .filter(|c| c.is_file())
                        .ok_or_else(|| lacking(&cfg)),
                )
            }
            _ => {
                let none =
                    Missing::new(format!("CPython 3.{minor} under pyenv"), &reinstall.install);
                (Err(none.clone()), Err(none))
            }
        };
        v.push(Python {
            label: format!("pyenv 3.{minor}"),
            path,
            config,
            lib_test: reinstall,
            place: Place::Here,
        });
    }
    // Its python3.11-config links Debian's libpython3.11.so, built with
    // -Bsymbolic-functions: the embedding test covers that third kind of build.
    let config = PathBuf::from("/usr/bin/python3.11-config");
    v.push(Python {
        label: "Debian python3.11 (static)".into(),
        path: prereq::debian_python(),
        config: Some(config)
            .filter(|c| c.exists())
            .ok_or_else(|| Missing::new("python3.11-config", "apt-get install python3.11-dev")),
        lib_test: Missing::new(
            "its Lib/test (the regression tests)",
            "apt-get install libpython3.11-testsuite",
        ),
        place: Place::Here,
    });
    for minor in debian_root::MINORS {
        let exe = format!("/usr/bin/python3.{minor}");
        let config = format!("{exe}-config");
        let root = debian_root::holding(&exe);
        v.push(Python {
            label: format!("Debian 3.{minor} (static, Debian root)"),
            path: root
                .as_ref()
                .map(|_| PathBuf::from(&exe))
                .map_err(Clone::clone),
            config: debian_root::holding(&config).map(|_| PathBuf::from(&config)),
            lib_test: Missing::new(
                format!("libpython3.{minor}-testsuite in the Debian root"),
                "bash scripts/debian-root.sh",
            ),
            place: root.map_or(Place::Here, Place::DebianRoot),
        });
    }
    v
}

/// Runs `check` on every interpreter, recording each as run or skipped (`prereq`); at the
/// end reports the skips (under CI: fails on them), then fails if any check failed.
fn over_all_pythons(what: &str, mut check: impl FnMut(&Python, &Path) -> Result<(), Problem>) {
    let mut failed = Vec::new();
    let mut skipped = Vec::new();
    for py in pythons() {
        let outcome = match &py.path {
            Ok(exe) => {
                println!("[{what}] {}: run ({})", py.label, exe.display());
                check(&py, exe)
            }
            Err(m) => Err(Problem::Missing(m.clone())),
        };
        match outcome {
            Err(Problem::Missing(m)) => {
                println!("[{what}] {}: skipped, {} is missing", py.label, m.what);
                skipped.push((py.label, m));
                continue;
            }
            Err(Problem::Failed(e)) => {
                println!("[{what}] {}: FAILED: {e}", py.label);
                failed.push(format!("{}: {e}", py.label));
            }
            Ok(()) => {}
        }
        prereq::ran(what, &py.label);
    }
    prereq::skip_all(what, &skipped);
    assert!(failed.is_empty(), "{what}:\n{}", failed.join("\n"));
}

fn lib() -> PathBuf {
    library_dir().join("libpymalloc.so")
}

fn python(exe: &Path, preload: bool) -> Command {
    let mut c = support::clean_command(exe);
    if preload {
        c.env("LD_PRELOAD", lib());
    }
    c
}

fn script(name: &str) -> PathBuf {
    root().join("tests").join("python").join(name)
}

fn ok(out: &Output) -> Result<(), String> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "exit {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn allocation_heavy_script_runs_the_same_and_our_pools_serve_it() {
    over_all_pythons("workload", |py, exe| {
        let plain = py.run(python(exe, false).arg(script("workload.py")));
        ok(&plain)?;
        let pre = py.run(
            python(exe, true)
                .arg(script("workload.py"))
                .env("PYMALLOC_CHECK_OWNS", lib()),
        );
        ok(&pre)?;
        if plain.stdout != pre.stdout {
            return Err("output differs under preload".into());
        }
        if !pre.stderr.is_empty() && !String::from_utf8_lossy(&pre.stderr).starts_with("owned ") {
            return Err("stray output on stderr under preload".into());
        }
        let owned = String::from_utf8_lossy(&pre.stderr);
        if owned.trim() != "owned 2000 of 2000" {
            return Err(format!("our pools did not serve the objects: {owned}").into());
        }
        Ok(())
    });
}

fn traced(py: &Python, exe: &Path, preload: bool) -> Result<Vec<(u64, u64, u64)>, String> {
    let out = py.run(python(exe, preload).arg(script("traced.py")));
    ok(&out)?;
    let rows: Vec<(u64, u64, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<u64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            (f[0], f[1], f[2])
        })
        .collect();
    if rows.len() < 3 {
        return Err(format!("tracemalloc saw too little: {rows:?}"));
    }
    Ok(rows)
}

#[test]
fn tracemalloc_sees_the_same_traffic() {
    over_all_pythons("tracemalloc", |py, exe| {
        let plain = traced(py, exe, false)?;
        let pre = traced(py, exe, true)?;
        if plain.len() != pre.len() {
            return Err(format!("different lines traced: {plain:?} vs {pre:?}").into());
        }
        for (a, b) in plain.iter().zip(&pre) {
            let close = |x: u64, y: u64| (x as f64 - y as f64).abs() <= 0.03 * x.max(y) as f64;
            if a.0 != b.0 || !close(a.1, b.1) || !close(a.2, b.2) {
                return Err(format!("line {}: {a:?} without, {b:?} with the preload", a.0).into());
            }
        }
        Ok(())
    });
}

#[test]
fn pythonmalloc_malloc_keeps_us_out() {
    over_all_pythons("PYTHONMALLOC=malloc", |py, exe| {
        let out = py.run(
            python(exe, true)
                .arg(script("not_ours.py"))
                .env("PYTHONMALLOC", "malloc")
                .env("PYMALLOC_LIB", lib()),
        );
        Ok(ok(&out)?)
    });
}

#[test]
fn verbose_says_what_happened_and_silence_otherwise() {
    over_all_pythons("verbose", |py, exe| {
        let quiet = py.run(python(exe, true).args(["-c", "pass"]));
        ok(&quiet)?;
        if !quiet.stderr.is_empty() || !quiet.stdout.is_empty() {
            return Err("not silent by default".into());
        }
        let loud = py.run(
            python(exe, true)
                .args(["-c", "pass"])
                .env("PYMALLOC_VERBOSE", "1"),
        );
        ok(&loud)?;
        let text = String::from_utf8_lossy(&loud.stderr);
        if !text.contains("installed for CPython's OBJ and MEM domain(s)") {
            return Err(format!("verbose install message missing: {text:?}").into());
        }
        // pyenv's shared builds call our exported PyObject_* (interposition): there they
        // must dispatch through the OBJ domain without the detour (src/dispatch.rs).
        if py.label.starts_with("pyenv")
            && !text.contains("PyObject_* dispatch through the OBJ domain directly")
        {
            return Err(format!("direct dispatch not found: {text:?}").into());
        }
        let aside = py.run(
            python(exe, true)
                .args(["-X", "dev", "-c", "pass"])
                .env("PYMALLOC_VERBOSE", "1"),
        );
        let text = String::from_utf8_lossy(&aside.stderr);
        if !text.contains("not installing: python runs with -X dev") {
            return Err(format!("verbose step-aside message missing: {text:?}").into());
        }
        Ok(())
    });
}

#[test]
fn debug_mode_catches_an_api_mismatch_and_runs_python() {
    let code = "import ctypes\napi = ctypes.pythonapi\napi.PyObject_Malloc.restype = ctypes.c_void_p\n\
                api.PyMem_Free.argtypes = [ctypes.c_void_p]\napi.PyMem_Free(api.PyObject_Malloc(10))\n";
    over_all_pythons("debug", |py, exe| {
        let fine = py.run(
            python(exe, true)
                .arg(script("workload.py"))
                .env("PYMALLOC_DEBUG", "1"),
        );
        ok(&fine)?;
        let out = py.run(
            python(exe, true)
                .args(["-c", code])
                .env("PYMALLOC_DEBUG", "1"),
        );
        if out.status.signal() != Some(libc::SIGABRT) {
            return Err(format!("API mismatch did not abort: {:?}", out.status).into());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.contains("pymalloc: API mismatch")
            || !err.contains("released through the PyMem_Malloc family")
        {
            return Err(format!("API mismatch not reported: {err}").into());
        }
        Ok(())
    });
}

#[test]
fn malformed_settings_get_one_line_and_the_default() {
    over_all_pythons("malformed", |py, exe| {
        let out = py.run(
            python(exe, true)
                .args(["-c", "print('ran')"])
                .env("PYMALLOC_STATS", "maybe"),
        );
        ok(&out)?;
        let err = String::from_utf8_lossy(&out.stderr);
        if err.lines().count() != 1 || !err.contains("PYMALLOC_STATS=\"maybe\"") {
            return Err(format!("expected one warning line, got {err:?}").into());
        }
        Ok(())
    });
}

/// The tests regrtest says timed out ("test_x timed out (5 min)", or faulthandler's
/// "Timeout (0:05:00)!" from a worker, named "a test"): a hang is a failure on either side
/// of the comparison, not a difference that both sides share.
fn timed_out_tests(stdout: &str) -> BTreeSet<String> {
    let mut hung = BTreeSet::new();
    for line in stdout.lines() {
        let t = line.trim();
        if let Some(before) = t.find(" timed out").map(|i| &t[..i]) {
            match before.rsplit(' ').next() {
                Some(name) if name.starts_with("test_") => hung.insert(name.to_string()),
                _ => false,
            };
        } else if t.starts_with("Timeout (") && t.ends_with(")!") {
            hung.insert("a test".to_string());
        }
    }
    hung
}

/// The names of failed tests in a regrtest summary.
fn failed_tests(stdout: &str) -> BTreeSet<String> {
    let mut failed = BTreeSet::new();
    let mut in_block = false;
    for line in stdout.lines() {
        let t = line.trim();
        if (t.ends_with("failed:") && (t.contains(" test") || t.starts_with("test")))
            || t.ends_with("failed again:")
        {
            in_block = !t.contains("again");
            continue;
        }
        if in_block {
            if t.is_empty() {
                in_block = false;
            } else {
                failed.extend(t.split_whitespace().map(str::to_string));
            }
        }
    }
    failed
}

const REGRTESTS: &[&str] = &[
    "test_dict",
    "test_list",
    "test_set",
    "test_tuple",
    "test_bytes",
    "test_unicode",
    "test_json",
    "test_gc",
    "test_weakref",
    "test_tracemalloc",
    "test_threading",
    "test_capi",
];

/// Test methods that hang without the library too, on the interpreters named (by
/// `platform.python_version()`): skipped by name (`--ignore`); docs/cpython.md says why.
const KNOWN_HANGS: &[(&str, &str)] = &[
    ("3.12.1", "test_print_exception_gh_102056"),
    ("3.13.0", "test_print_exception_gh_102056"),
];

/// How long one regrtest run may take (about half a minute on two busy cores) before it and
/// every process it started are killed and the check fails.
const REGRTEST_LIMIT: Duration = Duration::from_secs(900);

#[test]
fn cpython_regression_tests_have_no_new_failure_under_preload() {
    over_all_pythons("regrtest", |py, exe| {
        if !has_regrtest(py, exe, REGRTESTS[0]) {
            return Err(Problem::Missing(py.lib_test.clone()));
        }
        if py.label.contains("3.10") && !has_regrtest(py, exe, "test_capi") {
            println!("[regrtest] {}: has no test_capi (3.10 ships none); its absence counts the same both ways", py.label);
        }
        let version = py.run(
            python(exe, false).args(["-c", "import platform; print(platform.python_version())"]),
        );
        let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
        let ignored: Vec<&str> = KNOWN_HANGS
            .iter()
            .filter(|(v, _)| *v == version)
            .flat_map(|&(_, name)| ["--ignore", name])
            .collect();
        let regr = |preload: bool| -> Result<BTreeSet<String>, String> {
            let (out, over) = py.run_within(
                python(exe, preload)
                    .args(["-m", "test", "-j2", "--timeout", "300"])
                    .args(&ignored)
                    .args(REGRTESTS),
                Some(REGRTEST_LIMIT),
            );
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if over {
                return Err(format!(
                    "regrtest ran past {} s (preload: {preload}); killed with every process it started",
                    REGRTEST_LIMIT.as_secs()
                ));
            }
            let hung = timed_out_tests(&text);
            if !hung.is_empty() {
                return Err(format!("timed out (preload: {preload}): {hung:?}"));
            }
            if !text.contains("Tests result:")
                && !text.contains("tests OK")
                && !text.contains("test OK")
            {
                return Err(format!("regrtest did not finish: {:?}", out.status));
            }
            Ok(failed_tests(&text))
        };
        let without = regr(false)?;
        if without.len() > REGRTESTS.len() / 2 {
            return Err(format!(
                "most regression tests fail even without the preload ({without:?})"
            )
            .into());
        }
        let with = regr(true)?;
        println!(
            "[regrtest] {}: failed without preload {without:?}, with {with:?}",
            py.label
        );
        let new: Vec<_> = with.difference(&without).collect();
        if new.is_empty() {
            Ok(())
        } else {
            Err(format!("new failures under preload: {new:?}").into())
        }
    });
}

/// Whether `exe`'s `test` package holds the regression test `name` (module or package).
fn has_regrtest(py: &Python, exe: &Path, name: &str) -> bool {
    py.run(python(exe, false).args([
        "-c",
        "import importlib.util, sys; sys.exit(importlib.util.find_spec('test.' + sys.argv[1]) is None)",
        name,
    ]))
    .status
    .success()
}

#[test]
fn pymalloc_run_preloads_and_reports_errors() {
    let bin = support::command();
    over_all_pythons("pymalloc run", |py, exe| {
        let out = py.run(
            Command::new(&bin)
                .args(["run", "--stats", "--"])
                .arg(exe)
                .args(["-c", "print(sum(len(str(i)) for i in range(100000)))"])
                .env("PYMALLOC_LIB", lib())
                .env_remove("PYTHONMALLOC"),
        );
        ok(&out)?;
        let err = String::from_utf8_lossy(&out.stderr);
        if String::from_utf8_lossy(&out.stdout).trim() != "488890"
            || !err.contains("# arenas allocated total")
        {
            return Err(format!("unexpected output: {err}").into());
        }
        Ok(())
    });
    let missing = support::run(
        Command::new(&bin)
            .args(["run", "--", "/nonexistent/cmd"])
            .env("PYMALLOC_LIB", lib()),
    );
    assert_eq!(missing.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot run"));
    let nolib = support::run(
        Command::new(&bin)
            .args(["run", "--", "true"])
            .env("PYMALLOC_LIB", "/nonexistent/lib.so"),
    );
    assert_eq!(nolib.status.code(), Some(2));
    let nocmd = support::run(Command::new(&bin).args(["run"]));
    assert_eq!(nocmd.status.code(), Some(2));
}

#[test]
fn embedder_installs_by_hand_and_after_reinitialisation() {
    over_all_pythons("embed", |py, _| {
        let config = py
            .config
            .as_ref()
            .map_err(|m| Problem::Missing(m.clone()))?;
        let flags = |args: &[&str]| -> Result<Vec<String>, String> {
            let out = py.run(Command::new(config).args(args));
            ok(&out)?;
            Ok(String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect())
        };
        let cflags = flags(&["--includes"])?;
        let ldflags = flags(&["--ldflags", "--embed"])?;
        let libdir = ldflags
            .iter()
            .find_map(|f| f.strip_prefix("-L"))
            .ok_or("no -L in ldflags")?
            .to_string();
        let exe = scratch().join(format!("embed-{}", py.label.replace(' ', "_")));
        let mut extra: Vec<String> = ldflags.clone();
        extra.push(format!("-Wl,-rpath,{libdir}"));
        let mut cc = Command::new("cc");
        cc.args(["-O1", "-g", "-Wall", "-Werror"])
            .args(&cflags)
            .arg("-I")
            .arg(root().join("include"))
            .arg(root().join("ctests/python/embed.c"))
            .arg("-o")
            .arg(&exe)
            .arg("-L")
            .arg(library_dir())
            .arg("-lpymalloc")
            .arg(format!("-Wl,-rpath,{}", library_dir().display()))
            .args(&extra);
        let built = py.run(&mut cc);
        ok(&built)?;
        let home = Path::new(config).parent().unwrap().parent().unwrap();
        let out = py.run(
            Command::new(&exe)
                .env("PYMALLOC_INSTALL", "0")
                .env("PYTHONHOME", home),
        );
        ok(&out)?;
        if !String::from_utf8_lossy(&out.stdout).contains("embedded ok") {
            return Err("embedded program did not finish".into());
        }
        Ok(())
    });
}

#[test]
fn regrtest_summary_parser() {
    let text =
        "== Tests result: FAILURE ==\n\n2 tests failed:\n    test_a test_b\n\n10 tests OK.\n";
    assert_eq!(
        failed_tests(text),
        ["test_a", "test_b"].iter().map(|s| s.to_string()).collect()
    );
    assert!(failed_tests("All 12 tests OK.\n").is_empty());
    let one = "1 test failed:\n    test_threading\n\n";
    assert_eq!(failed_tests(one).len(), 1);
    // Timeouts as 3.8 and 3.12+ print them, and as faulthandler does in a worker.
    let hung = "0:05:01 load avg: 2.1 [12/12/1] test_threading timed out (5 min 0 sec)\n\
                test_gc timed out\nTimeout (0:05:00)!\nThread 0x01 (most recent call first):\n";
    assert_eq!(
        timed_out_tests(hung),
        ["a test", "test_gc", "test_threading"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert!(timed_out_tests("All 12 tests OK.\nsocket.timeout: timed out\n").is_empty());
}

/// What the interpreters' runs rely on (`support::run_within`): past its limit a command is
/// killed with every process it started, those that left its process group (a session of
/// their own, as regrtest's workers) included; when a command ends, what it left running
/// in its group is killed. Each process is told apart by an argument of its own.
#[test]
fn a_command_and_everything_it_started_are_killed() {
    let marker = |n: u32| format!("{}.{n}", 600 + std::process::id() % 1000);
    let alive = |m: &str| {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .any(|c| String::from_utf8_lossy(&c).contains(m))
    };
    let (a, b, c) = (marker(1), marker(2), marker(3));
    let script = format!("setsid sleep {a} & sleep {b} & echo started; wait");
    let (out, over) = support::run_within(
        Command::new("sh").args(["-c", &script]),
        Some(Duration::from_secs(2)),
    );
    assert!(over && String::from_utf8_lossy(&out.stdout) == "started\n");
    assert!(!alive(&a) && !alive(&b), "a process outlived its command");
    let (out, over) = support::run_within(
        Command::new("sh").args(["-c", &format!("sleep {c} >/dev/null & echo left")]),
        Some(Duration::from_secs(60)),
    );
    assert!(!over && out.status.success());
    assert!(
        !alive(&c),
        "a process left in the group outlived its command"
    );
}

/// A free-threaded CPython is left alone: a stand-in (ctests/python/free_threaded.c) that
/// exports what the library looks at, built with each of the two signs of such a build and
/// with neither (where the library must install, so that the check can fail).
#[test]
fn free_threaded_interpreter_is_left_alone() {
    const DEFAULT_VERSION: &str = "-DVERSION=\"3.14.0 (main, Oct 7 2025, 00:00:00) [GCC 15.2.0]\"";
    const LEFT_ALONE: &str =
        "set_allocator calls: 0; pymalloc_install: -2; set_allocator calls: 0; domains: 0";
    let src = root().join("ctests/python/free_threaded.c");
    for (name, flags, expected) in [
        ("both signs", &["-DMERGE_SYMBOL"][..], LEFT_ALONE),
        (
            "_Py_MergeZeroLocalRefcount",
            &["-DMERGE_SYMBOL", DEFAULT_VERSION][..],
            LEFT_ALONE,
        ),
        ("Py_GetVersion", &[][..], LEFT_ALONE),
        (
            "default build",
            &[DEFAULT_VERSION][..],
            "set_allocator calls: 2; pymalloc_install: 0; set_allocator calls: 2; domains: 3",
        ),
    ] {
        // Named python*, as `pymalloc run` looks only at such programs.
        let exe = scratch().join(format!("python-standin-{}", name.replace(' ', "_")));
        let mut extra = vec!["-rdynamic"];
        extra.extend_from_slice(flags);
        support::compile_c(&src, &exe, support::Link::Shared, &extra);
        let quiet = support::run(&mut support::clean_command(&exe));
        assert!(quiet.status.success(), "{name}: {:?}", quiet.status);
        assert_eq!(
            String::from_utf8_lossy(&quiet.stdout).trim(),
            expected,
            "{name}"
        );
        assert!(quiet.stderr.is_empty(), "{name}: not silent by default");
        let loud = support::run(support::clean_command(&exe).env("PYMALLOC_VERBOSE", "1"));
        let said = String::from_utf8_lossy(&loud.stderr);
        assert_eq!(
            said.contains("not installing: a free-threaded CPython"),
            expected == LEFT_ALONE,
            "{name}: {said:?}"
        );
        // `pymalloc run` tells by the exported symbol (a file has no Py_GetVersion to ask).
        let out = support::run(
            Command::new(support::command())
                .args(["run", "--"])
                .arg(&exe)
                .env("PYMALLOC_LIB", lib()),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            expected,
            "{name}"
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).contains("is a free-threaded CPython"),
            flags.contains(&"-DMERGE_SYMBOL"),
            "{name}: pymalloc run"
        );
    }
}

#[test]
fn pinning_ranks_two_known_sites_with_their_numbers() {
    over_all_pythons("pinning", |py, exe| {
        let out = py.run(
            python(exe, true)
                .args(["-X", "tracemalloc"])
                .arg(script("pinning.py"))
                .env("PYTHONPATH", root().join("python")),
        );
        ok(&out)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !stdout.starts_with("pinning ok") {
            return Err(format!("unexpected output: {stdout}").into());
        }
        Ok(())
    });
}

/// The `pymalloc_rs` package of the source tree with the built library beside it (as the
/// wheel installs it), under `dir`.
fn package_with_library(dir: &Path) -> PathBuf {
    let pkg = dir.join("pymalloc_rs");
    std::fs::create_dir_all(&pkg).unwrap();
    for e in std::fs::read_dir(root().join("python/pymalloc_rs")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "py") {
            std::fs::copy(&path, pkg.join(path.file_name().unwrap())).unwrap();
        }
    }
    let _ = std::fs::remove_file(pkg.join("libpymalloc.so"));
    std::os::unix::fs::symlink(lib(), pkg.join("libpymalloc.so")).unwrap();
    dir.to_path_buf()
}

/// A program that strands memory at its line 4 and exits with status 3.
const STRANDING_APP: &str = "import gc, sys\n\
print(sys.argv[1:], __name__)\n\
def make(n):\n    return [b'%020d' % i for i in range(n)]\n\
kept = make(50000)[::100]\n\
gc.collect()\n\
sys.exit(3)\n";

/// Parses the SVG file `sys.argv[1]`: an `svg` document holding two charts, the
/// second's first label `app.py:4`.
const CHECK_SVG: &str = "import sys, xml.etree.ElementTree as E\n\
ns = '{http://www.w3.org/2000/svg}'\n\
root = E.parse(sys.argv[1]).getroot()\n\
assert root.tag == ns + 'svg', root.tag\n\
charts = root.findall(ns + 'svg')\n\
assert len(charts) == 2, charts\n\
labels = [t.text for t in charts[1].findall(ns + 'text') if 'rotate' in t.get('transform', '')]\n\
assert labels[0] == 'app.py:4', labels\n";

#[test]
fn report_option_prints_the_report_at_exit() {
    let dir = scratch().join("report-option");
    let path = package_with_library(&dir);
    let app = dir.join("app.py");
    std::fs::write(&app, STRANDING_APP).unwrap();
    let svg = dir.join("report.svg");
    // The chart is drawn by the `pymalloc` command, found on PATH.
    let bin = support::library_dir();
    let search = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    over_all_pythons("--report", |py, exe| {
        let _ = std::fs::remove_file(&svg);
        let out = py.run(
            python(exe, false)
                .args(["-X", "tracemalloc", "-m", "pymalloc_rs", "--report-svg"])
                .arg(&svg)
                .arg(&app)
                .args(["one", "--two"])
                .env("PYTHONPATH", &path)
                .env("PATH", &search),
        );
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        if out.status.code() != Some(3) || stdout != "['one', '--two'] __main__\n" {
            return Err(format!(
                "the program ran differently: {:?} {stdout}{stderr}",
                out.status
            )
            .into());
        }
        let top = stderr
            .lines()
            .skip_while(|l| !l.starts_with("by allocation site"))
            .nth(2)
            .unwrap_or("");
        if !stderr.starts_with("pymalloc-rs: which objects keep memory stranded")
            || !top.ends_with("app.py:4")
            || !stderr.contains("by type:")
        {
            return Err(format!("no report, or app.py:4 not on top:\n{stderr}").into());
        }
        // The chart parses as SVG: two charts, the site among the second's labels.
        let parsed = py.run(python(exe, false).arg("-c").arg(CHECK_SVG).arg(&svg));
        ok(&parsed)?;
        // Without a program there is nothing to report on: a usage error.
        let out = py.run(
            python(exe, false)
                .args(["-m", "pymalloc_rs", "--report", "-c"])
                .env("PYTHONPATH", &path),
        );
        if out.status.code() != Some(1)
            || !String::from_utf8_lossy(&out.stderr).contains("--report needs a program")
        {
            return Err(format!("--report -c: {out:?}").into());
        }
        Ok(())
    });
}

/// The workers of a Python thread pool, which run one at a time under the GIL, share one
/// heap: with 256 of them the most bytes stranded (resident in our pools, in no live block)
/// stay within twice one worker's plus 1 MiB; a heap per thread stranded 20-30 times one
/// worker's (docs/decisions.md#one-heap-per-interpreter); and the one heap holding pools
/// afterwards is the interpreter heap (`stats()["per_heap"]`).
#[test]
fn a_thread_pool_strands_about_what_one_thread_does() {
    over_all_pythons("thread pool", |py, exe| {
        let most = |threads: u32| -> Result<(u64, String), Problem> {
            let out = py.run(
                python(exe, true)
                    .arg(script("thread_pool_bound.py"))
                    .args([threads.to_string(), "512".into()])
                    .env("PYTHONPATH", root().join("python")),
            );
            ok(&out)?;
            let text = String::from_utf8_lossy(&out.stdout);
            let words: Vec<&str> = text.split_whitespace().collect();
            match (words.first().map(|w| w.parse()), words.get(2)) {
                (Some(Ok(most)), Some(roles)) => Ok((most, roles.to_string())),
                _ => Err(format!("unexpected output: {text}").into()),
            }
        };
        let ((one, _), (many, roles)) = (most(1)?, most(256)?);
        println!(
            "most bytes stranded: 1 thread {one}, 256 threads {many}; heaps holding pools: {roles}"
        );
        if roles != "interpreter" {
            return Err(format!("heaps holding pools after 256 workers: {roles}").into());
        }
        if many > 2 * one + (1 << 20) {
            return Err(format!("256 threads stranded {many} bytes, one thread {one}").into());
        }
        Ok(())
    });
}

/// Interpreters with a GIL of their own (3.12+) run at the same time as the main
/// interpreter's threads: the interpreter heap must stop being shared when the first one
/// is created (sharing it anyway crashed this script), and the walker finds everything
/// consistent afterwards. On 3.8-3.11 the script only says "ok".
#[test]
fn subinterpreters_with_their_own_gil_do_not_share_the_interpreter_heap() {
    script_says_ok("subinterpreters", "subinterpreters.py");
}

/// Runs the script `name` of `tests/python` under the preload on every interpreter, and
/// checks that it ends well and prints "ok".
fn script_says_ok(check: &str, name: &str) {
    over_all_pythons(check, |py, exe| {
        let out = py.run(python(exe, true).arg(script(name)));
        ok(&out)?;
        if String::from_utf8_lossy(&out.stdout).trim() != "ok" {
            return Err("the script did not finish".to_string().into());
        }
        Ok(())
    });
}

/// A fork while a thread pool's workers allocate: in the child, where the forking thread
/// holds the GIL, the interpreter heap goes on serving and the walker finds it consistent
/// (20 children per interpreter).
#[test]
fn a_fork_amid_a_thread_pool_leaves_the_interpreter_heap_consistent() {
    script_says_ok("fork amid a pool", "fork_pool.py");
}

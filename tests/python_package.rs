//! The Python package: the wheel `pip wheel .` builds (maturin, fetched from PyPI
//! into pip's build environment), installed offline into fresh virtual environments of
//! pyenv's CPython 3.8 and 3.13; `python -m pymalloc_rs`, the module's API, the `pymalloc`
//! command found without `PYMALLOC_LIB`, and the README's "For Python users" commands as
//! written. Needs pyenv's 3.8 and 3.13 (a missing one is skipped loudly, and fails the run
//! under `CI=true`, see `support::prereq`) and PyPI (unreachable, the wheel build fails).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use support::debian_root::{self, Place};
use support::prereq;
use support::{clean_command as clean, root, run, scratch};

/// The Pythons the wheel is installed into, oldest and newest supported.
const MINORS: [u32; 2] = [8, 13];

/// Whether both interpreters of [`MINORS`] are there for `check`; false once the check is
/// skipped for lack of one (see `prereq::gate`).
fn have_pythons(check: &str) -> bool {
    let found = MINORS
        .iter()
        .try_for_each(|&m| support::pyenv_python(m).map(drop));
    prereq::gate(check, "pyenv CPython 3.8 and 3.13", found).is_some()
}

/// pyenv's CPython 3.`minor`, in a test that [`have_pythons`] let run.
fn pyenv_python(minor: u32) -> PathBuf {
    support::pyenv_python(minor).expect("checked by have_pythons")
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Held by each build of the package (the wheel, the README's `pip install .`): they share
/// a target directory, and maturin stages its artifacts there under fixed names.
static PACKAGE_BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds the wheel with `pip wheel .` once per test binary, with pip of a venv of 3.13, in
/// a target directory of its own (the features differ from the test build's, and the
/// nested library build lives in its OUT_DIR).
fn wheel() -> PathBuf {
    static WHEEL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    WHEEL
        .get_or_init(|| {
            let _serial = PACKAGE_BUILD.lock().unwrap_or_else(|e| e.into_inner());
            let builder = venv("build", MINORS[1]);
            let out = scratch().join("wheels");
            let _ = std::fs::remove_dir_all(&out);
            let built = run(clean(&builder.join("bin/python"))
                .current_dir(root())
                .args([
                    "-m",
                    "pip",
                    "--disable-pip-version-check",
                    "wheel",
                    ".",
                    "--no-deps",
                    "-q",
                    "-w",
                ])
                .arg(&out)
                .env("CARGO_TARGET_DIR", wheel_target_dir()));
            ok(&built, "pip wheel . (it fetches maturin from PyPI)");
            let wheels: Vec<PathBuf> = std::fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert_eq!(wheels.len(), 1, "one wheel: {wheels:?}");
            wheels.into_iter().next().unwrap()
        })
        .clone()
}

fn wheel_target_dir() -> PathBuf {
    root().join("target").join("wheel")
}

/// A fresh virtual environment `name` of pyenv's 3.`minor`.
fn venv(name: &str, minor: u32) -> PathBuf {
    let dir = scratch().join(format!("venv-{name}-3.{minor}"));
    let _ = std::fs::remove_dir_all(&dir);
    ok(
        &run(clean(&pyenv_python(minor)).args(["-m", "venv"]).arg(&dir)),
        "python -m venv",
    );
    dir
}

fn pip_offline(venv: &Path) -> Command {
    let mut c = clean(&venv.join("bin/python"));
    c.args([
        "-m",
        "pip",
        "--disable-pip-version-check",
        "install",
        "--no-index",
        "-q",
    ]);
    c
}

/// What the test script checks inside `python -m pymalloc_rs`: argv as plain python gives
/// it, both domains active, objects in our pools, stats() and trim(), the exit status.
const INSIDE: &str = r#"
import ctypes, sys, pymalloc_rs
assert sys.argv == [sys.argv[0], "one", "--two"] and sys.argv[0].endswith("inside.py"), sys.argv
assert pymalloc_rs.is_active() == {"obj", "mem"}, pymalloc_rs.is_active()
owns = ctypes.CDLL(None).pymalloc_owns
owns.restype, owns.argtypes = ctypes.c_bool, [ctypes.c_void_p]
objs = [str(i) * 3 for i in range(1000)] + [[i] for i in range(1000)] + [float(i) for i in range(1000)]
assert all(owns(id(o)) for o in objs), "an object outside our pools"
s = pymalloc_rs.stats()
keys = set(pymalloc_rs.STATS_FIELDS) | {"classes", "per_heap"}
assert set(s) == keys, sorted(set(s) ^ keys)
assert all(type(v) is int for k, v in s.items() if k not in ("classes", "per_heap"))
heaps = [h for h in s["per_heap"] if h["pools_partly_filled"] + h["pools_full"]]
assert [h["role"] for h in heaps] == ["interpreter"], s["per_heap"]
assert heaps[0]["blocks_in_use"] > 3000 and heaps[0]["bytes_in_use"] >= 16 * heaps[0]["blocks_in_use"]
assert [c["size"] for c in s["classes"]] == list(range(16, 513, 16))
assert s["arenas_current"] > 0 and s["bytes_in_use"] > 0 and s["pools_in_use"] > 0
assert all(sum(c["occupancy"]) == c["pools"] for c in s["classes"])
assert s["bytes_stranded"] == s["bytes_resident"] - s["bytes_in_use"] > 0
p = pymalloc_rs.pinning(top=3)
assert p.in_pools > 3000 and p.by_site is None and len(p.by_type) == 3, p.by_type
assert "by type:" in str(p)
more = [str(i) * 3 for i in range(100000)]
assert pymalloc_rs.stats()["bytes_in_use"] > s["bytes_in_use"]
del more
assert pymalloc_rs.trim() is None
# Under tracemalloc our pools still serve (its hooks call us), and pymalloc_install()
# reports both domains skipped (its hooks sit there) instead of success.
import tracemalloc
tracemalloc.start()
assert pymalloc_rs.is_active() == {"obj", "mem"}
skipped = ctypes.PyDLL(None).pymalloc_install()
tracemalloc.stop()
assert skipped == 3, skipped
assert ctypes.PyDLL(None).pymalloc_install() == 0
maps = {l.split()[-1] for l in open("/proc/self/maps") if "libpymalloc" in l}
assert len(maps) == 1, maps  # the preloaded copy only
print("inside ok", pymalloc_rs.library_path())
sys.exit(7)
"#;

/// Outside: nothing active, the documented exception, the library file present.
const OUTSIDE: &str = r#"
import os, pymalloc_rs
assert pymalloc_rs.is_active() == frozenset()
for f in (pymalloc_rs.stats, pymalloc_rs.trim):
    try:
        f()
    except pymalloc_rs.NotActiveError:
        pass
    else:
        raise AssertionError(f.__name__ + " did not raise")
assert os.path.isfile(pymalloc_rs.library_path())
# No copy loaded by the module: none, or the preloaded one that stepped aside.
maps = {l.split()[-1] for l in open("/proc/self/maps") if "libpymalloc" in l}
assert len(maps) == ("LD_PRELOAD" in os.environ), maps
print("outside ok")
"#;

/// Checks the package installed in `venv`, whose programs run at `place`.
fn check_installed(venv: &Path, place: &Place) {
    let run = |cmd: &mut Command| run(&mut place.command(cmd));
    let python = venv.join("bin/python");
    let work = venv.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let inside = work.join("inside.py");
    std::fs::write(&inside, INSIDE).unwrap();

    let out = run(clean(&python).args(["-c", OUTSIDE]));
    ok(&out, "the module outside pymalloc-rs");

    let out = run(clean(&python)
        .args(["-m", "pymalloc_rs"])
        .arg(&inside)
        .args(["one", "--two"]));
    assert_eq!(out.status.code(), Some(7), "exit status passes through");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("inside ok"));

    // Under PYTHONMALLOC the library steps aside, and is_active() says so.
    let out = run(clean(&python)
        .args(["-m", "pymalloc_rs", "-c", OUTSIDE])
        .env("PYTHONMALLOC", "malloc"));
    ok(&out, "is_active() under PYTHONMALLOC=malloc");

    // Bad input: Python's own errors and exit statuses.
    for args in [
        &["no_such_script.py"][..],
        &["-m", "no_such_module_here"],
        &["-c"],
    ] {
        let plain = run(clean(&python).current_dir(&work).args(args));
        let ours = run(clean(&python)
            .current_dir(&work)
            .args(["-m", "pymalloc_rs"])
            .args(args));
        assert_ne!(plain.status.code(), Some(0));
        assert_eq!(ours.status.code(), plain.status.code(), "{args:?}");
        assert_eq!(ours.stderr, plain.stderr, "{args:?}");
    }
    // A signal ends the program as it would end plain `python`.
    let out = run(clean(&python).args([
        "-m",
        "pymalloc_rs",
        "-c",
        "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
    ]));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{}", out.status);
    // No target: Python reads the program from stdin, as plain `python` does.
    let mut child = place
        .command(clean(&python).args(["-m", "pymalloc_rs"]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"import pymalloc_rs; print(sorted(pymalloc_rs.is_active()))\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "['mem', 'obj']\n");

    // The command, finding the library in the package.
    let pymalloc = venv.join("bin/pymalloc");
    let out = run(clean(&pymalloc)
        .args(["run", "--"])
        .arg(&python)
        .args(["-c", "import pymalloc_rs; assert pymalloc_rs.is_active()"]));
    ok(&out, "pymalloc run");
    let json = work.join("compare.json");
    let out = run(clean(&pymalloc)
        .args(["compare", "-n", "1", "--json"])
        .arg(&json)
        .arg("--")
        .arg(&python)
        .args(["-c", "x = [str(i) for i in range(100000)]"]));
    ok(&out, "pymalloc compare");
    let check_json = r#"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["runs"] == 1 and "pymalloc-rs" in d["allocators"], d
(w,) = d["workloads"]
for name in d["allocators"]:
    m = w["allocators"][name]
    assert len(m["wall_s"]) == 1 and m["wall_s"][0] > 0 and m["peak_rss_kib"][0] > 0, m
"#;
    ok(
        &run(clean(&python).args(["-c", check_json]).arg(&json)),
        "the --json file",
    );
}

#[test]
fn wheel_is_tagged_for_every_python_and_holds_command_library_and_module() {
    if !have_pythons(
        "package: wheel_is_tagged_for_every_python_and_holds_command_library_and_module",
    ) {
        return;
    }
    let wheel = wheel();
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.contains("-py3-none-manylinux") && name.ends_with("_x86_64.whl"),
        "{name}"
    );
    let list = r#"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for want in ("pymalloc_rs/__init__.py", "pymalloc_rs/__main__.py", "pymalloc_rs/libpymalloc.so"):
    assert want in names, (want, names)
assert any(n.endswith(".data/scripts/pymalloc") for n in names), names
"#;
    ok(
        &run(clean(&pyenv_python(MINORS[0]))
            .args(["-c", list])
            .arg(&wheel)),
        "the wheel's contents",
    );
}

/// The newest `output` of a build script run of `package` under `dir` (a target
/// directory): the file cargo keeps of what the script printed.
fn build_script_output(dir: &Path, package: &str) -> PathBuf {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for profile in std::fs::read_dir(dir).unwrap().flatten() {
        let Ok(runs) = std::fs::read_dir(profile.path().join("build")) else {
            continue;
        };
        for run in runs.flatten() {
            let output = run.path().join("output");
            let name = run.file_name().to_string_lossy().into_owned();
            if name
                .strip_prefix(package)
                .is_some_and(|h| h.starts_with('-'))
            {
                if let Ok(meta) = output.metadata() {
                    found.push((meta.modified().unwrap(), output));
                }
            }
        }
    }
    found.sort();
    let (_, newest) = found.pop().unwrap_or_else(|| {
        panic!(
            "no build script output of {package} under {}",
            dir.display()
        )
    });
    newest
}

/// The paths a build script's `output` says it watches, relative ones taken from `base`
/// (cargo reads them against the package's directory).
fn watched(output: &Path, base: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string(output)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("cargo:rerun-if-changed="))
        .map(|p| base.join(p))
        .collect()
}

/// The wheel's build script re-runs, so the library it bundles is rebuilt, whenever an
/// input of the library's own build changes: every path the library's build script
/// watches, and the manifest, lock file and build script cargo watches for it. (Watching
/// `src` alone, a change to the link script left the wheel with the old library.)
#[test]
fn the_wheel_rebuilds_its_library_when_any_input_of_the_library_changes() {
    if !have_pythons(
        "package: the_wheel_rebuilds_its_library_when_any_input_of_the_library_changes",
    ) {
        return;
    }
    wheel();
    let root = root();
    let outer = build_script_output(&wheel_target_dir(), "pymalloc-cli");
    let nested = outer.parent().unwrap().join("out").join("lib");
    let triples: Vec<PathBuf> = std::fs::read_dir(&nested)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("release").is_dir() || p.join("debug").is_dir())
        .collect();
    assert_eq!(triples.len(), 1, "one target under {}", nested.display());
    let inner = build_script_output(&triples[0], "pymalloc-rs");
    let wheel_watches = watched(&outer, &root);
    let mut inputs = watched(&inner, &root);
    assert!(!inputs.is_empty(), "{} watches nothing", inner.display());
    inputs.extend(["build.rs", "Cargo.toml", "Cargo.lock"].map(|f| root.join(f)));
    for input in inputs {
        assert!(
            wheel_watches
                .iter()
                .any(|w| input == *w || input.starts_with(w)),
            "cli/build.rs does not re-run when {} changes (it watches {wheel_watches:?})",
            input.display()
        );
    }
}

#[test]
fn wheel_installs_and_runs_on_python_3_8_and_3_13() {
    if !have_pythons("package: wheel_installs_and_runs_on_python_3_8_and_3_13") {
        return;
    }
    let wheel = wheel();
    for minor in MINORS {
        let venv = venv("wheel", minor);
        ok(
            &run(pip_offline(&venv).arg(&wheel)),
            "pip install the wheel",
        );
        check_installed(&venv, &Place::Here);
    }
}

/// The same wheel in virtual environments of Debian's 3.14 and 3.15 in the Debian root
/// (`support::debian_root`).
#[test]
fn wheel_installs_and_runs_on_debian_3_14_and_3_15() {
    let check = "package: wheel_installs_and_runs_on_debian_3_14_and_3_15";
    let venv_module = debian_root::MINORS.iter().try_fold(PathBuf::new(), |_, m| {
        debian_root::holding(&format!("/usr/lib/python3.{m}/ensurepip/__init__.py"))
    });
    let Some(root) = prereq::gate(check, "Debian 3.14 and 3.15 with venv", venv_module) else {
        return;
    };
    if !have_pythons(check) {
        return;
    }
    let place = Place::DebianRoot(root);
    let wheel = wheel();
    for minor in debian_root::MINORS {
        let venv = scratch().join(format!("venv-wheel-debian-3.{minor}"));
        let _ = std::fs::remove_dir_all(&venv);
        let python = PathBuf::from(format!("/usr/bin/python3.{minor}"));
        ok(
            &run(&mut place.command(clean(&python).args(["-m", "venv"]).arg(&venv))),
            "python -m venv in the Debian root",
        );
        ok(
            &run(&mut place.command(pip_offline(&venv).arg(&wheel))),
            "pip install the wheel in the Debian root",
        );
        check_installed(&venv, &place);
    }
}

/// The README's "For Python users" commands, as written, in a 3.13 environment: `pip
/// install .` from the repository (maturin from PyPI in pip's build environment), then the
/// rest in a scratch directory holding the README's `app.py`.
#[test]
fn readme_commands_work_as_written_on_python_3_13() {
    if !have_pythons("package: readme_commands_work_as_written_on_python_3_13") {
        return;
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = &readme[readme
        .find("## For Python users")
        .expect("README has a For Python users section")..];
    let block = |lang: &str| {
        let start = section.find(&format!("```{lang}\n")).unwrap() + lang.len() + 4;
        section[start..start + section[start..].find("```").unwrap()].to_string()
    };
    let (commands, app) = (block("sh"), block("python"));
    let venv = venv("readme", MINORS[1]);
    let work = venv.join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("app.py"), &app).unwrap();
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for line in commands.lines() {
        let command = line.split(" #").next().unwrap().trim();
        if command.is_empty() {
            continue;
        }
        let building = command.starts_with("pip install");
        let _serial = building.then(|| PACKAGE_BUILD.lock().unwrap_or_else(|e| e.into_inner()));
        let dir = if building { root() } else { work.clone() };
        let out = run(clean(Path::new("bash"))
            .args(["-c", command])
            .current_dir(dir)
            .env("PATH", &path)
            .env("VIRTUAL_ENV", &venv)
            .env("CARGO_TARGET_DIR", wheel_target_dir()));
        ok(&out, command);
    }
    check_installed(&venv, &Place::Here);
}

#[test]
fn python_stats_struct_mirrors_the_header() {
    let header = std::fs::read_to_string(root().join("include/pymalloc.h")).unwrap();
    let module = std::fs::read_to_string(root().join("python/pymalloc_rs/__init__.py")).unwrap();
    let fields = |strukt: &str| -> Vec<String> {
        let body = &header[header.find(&format!("typedef struct {strukt} {{")).unwrap()..];
        let body = &body[..body.find("} ").unwrap()];
        body.lines()
            .filter_map(|l| l.trim().strip_prefix("uint64_t "))
            .map(|f| f.trim_end_matches(';').to_string())
            .collect()
    };
    let tuple = |name: &str| -> Vec<String> {
        let body = &module[module.find(&format!("{name} = (")).unwrap()..];
        let body = &body[..body.find(')').unwrap()];
        body.split('"')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect()
    };
    assert_eq!(fields("pymalloc_stats"), tuple("STATS_FIELDS"));
    assert_eq!(fields("pymalloc_class_stats"), tuple("CLASS_FIELDS"));
    assert_eq!(fields("pymalloc_heap_figures"), tuple("HEAP_FIELDS"));
    assert!(header.contains("struct pymalloc_class_stats classes[32];"));
    assert!(module.contains("NUM_CLASSES = 32"));
}

#[test]
fn the_library_links_no_clap() {
    let lib = support::library_dir().join("libpymalloc.so");
    let out = run(Command::new("nm").arg("-C").arg(&lib));
    ok(&out, "nm");
    let symbols = String::from_utf8_lossy(&out.stdout);
    assert!(symbols.contains("pymalloc_malloc"), "nm sees the symbols");
    assert!(
        !symbols.contains("clap"),
        "clap linked into {}",
        lib.display()
    );
}

/// An embedder that loads libpython with `dlopen` after our constructor ran (which found
/// no interpreter) installs by hand with `pymalloc_install()` before `Py_Initialize`.
#[test]
fn embedder_that_dlopens_libpython_installs_by_hand() {
    if !have_pythons("package: embedder_that_dlopens_libpython_installs_by_hand") {
        return;
    }
    let exe = scratch().join("dlopen");
    support::compile_c(
        &root().join("ctests/python/dlopen.c"),
        &exe,
        support::Link::Shared,
        &[],
    );
    for minor in MINORS {
        let python = pyenv_python(minor);
        let out = run(clean(&python).args([
            "-c",
            "import sys, sysconfig as s; print(s.get_config_var('LIBDIR') + '/' + s.get_config_var('INSTSONAME')); print(sys.base_prefix)",
        ]));
        ok(&out, "sysconfig");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (libpython, prefix) = text.trim().split_once('\n').unwrap();
        // A malformed setting is reported once, by the constructor, not again by each
        // pymalloc_install().
        let out = run(clean(&exe)
            .arg(libpython)
            .env("PYTHONHOME", prefix)
            .env("PYMALLOC_DOMAINS", "obj,bogus"));
        ok(&out, &format!("dlopen embedder on 3.{minor}"));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "dlopen ok\n");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let warning = "pymalloc: ignoring PYMALLOC_DOMAINS=\"obj,bogus\"";
        assert_eq!(stderr.matches(warning).count(), 1, "{stderr}");
        assert_eq!(stderr.matches("PYMALLOC_DOMAINS").count(), 1, "{stderr}");
    }
}

/// `python -m pymalloc_rs` from a source tree without the built library, and on a platform
/// other than Linux: a clear line and a non-zero exit, before anything runs.
#[test]
fn module_errors_are_clear_without_the_library_or_off_linux() {
    if !have_pythons("package: module_errors_are_clear_without_the_library_or_off_linux") {
        return;
    }
    let python = pyenv_python(MINORS[0]);
    let out = run(clean(&python)
        .args(["-m", "pymalloc_rs", "-c", "print('ran')"])
        .env("PYTHONPATH", root().join("python"))
        .env("PYTHONDONTWRITEBYTECODE", "1"));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("libpymalloc.so is missing from this installation"),
        "{err}"
    );

    let off_linux = "import runpy, sys; sys.platform = 'darwin'; sys.argv = ['pymalloc_rs', '-c', 'pass']; runpy.run_module('pymalloc_rs', run_name='__main__')";
    let out = run(clean(&python)
        .args(["-c", off_linux])
        .env("PYTHONPATH", root().join("python"))
        .env("PYTHONDONTWRITEBYTECODE", "1"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("runs on Linux only"), "{err}");

    // A free-threaded interpreter (sysconfig's Py_GIL_DISABLED, faked here): one line, and
    // the program runs without the library (none is needed, so none is looked for).
    let free_threaded = "import runpy, sys, sysconfig; get = sysconfig.get_config_var; sysconfig.get_config_var = lambda n: 1 if n == 'Py_GIL_DISABLED' else get(n); sys.argv = ['pymalloc_rs', '-c', 'import os; print(os.environ.get(\"LD_PRELOAD\", \"none\"))']; runpy.run_module('pymalloc_rs', run_name='__main__')";
    let out = run(clean(&python)
        .args(["-c", free_threaded])
        .env("PYTHONPATH", root().join("python"))
        .env("PYTHONDONTWRITEBYTECODE", "1"));
    ok(&out, "python -m pymalloc_rs on a free-threaded CPython");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "none\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("free-threaded CPython") && err.contains("running without pymalloc-rs"),
        "{err}"
    );
}

//! Helpers shared by the integration tests: building the C library with the same profile
//! as the running test, compiling C programs against it, and running them; [`prereq`]
//! skips (or, under CI, fails) a check whose prerequisite the machine lacks.

#![allow(dead_code)]

pub mod debian_root;
pub mod prereq;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`: where cargo put this test binary, and so where the library goes.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// Builds `libpymalloc.so` / `.a` and the `pymalloc` command with the running test's
/// profile, as `cargo build` does (cargo builds only the rlib for tests, and the command is
/// the workspace's other package), and returns the directory holding them. Runs once per
/// test binary.
pub fn library_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = profile_dir();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(root()).args(["build", "--quiet"]);
        match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
            None => panic!("unexpected target layout: {}", dir.display()),
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "cargo build failed");
        assert!(
            dir.join("libpymalloc.so").exists(),
            "no libpymalloc.so in {}",
            dir.display()
        );
        dir
    })
}

/// The `pymalloc` command, built beside the library.
pub fn command() -> PathBuf {
    library_dir().join("pymalloc")
}

/// Where compiled C programs go.
pub fn scratch() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ctests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How a C program is linked to the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Shared,
    Static,
}

/// Compiles the C file `src` into `out`, against `include/pymalloc.h` and the library.
/// The compiler writes a private temporary that is renamed into place, so a test running
/// `out` never meets a half-written file (or `ETXTBSY`) while another test rebuilds it.
pub fn compile_c(src: &Path, out: &Path, link: Link, extra: &[&str]) {
    static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = out.with_extension(format!("tmp{}-{n}", std::process::id()));
    let lib = library_dir();
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.args([
        "-std=c11",
        "-D_GNU_SOURCE",
        "-O2",
        "-g",
        "-Wall",
        "-Wextra",
        "-Werror",
    ])
    .arg("-I")
    .arg(root().join("include"))
    .arg("-I")
    .arg(root().join("ctests"))
    .arg(src)
    .arg("-o")
    .arg(&tmp);
    match link {
        Link::Shared => {
            cmd.arg("-L")
                .arg(lib)
                .arg("-lpymalloc")
                .arg(format!("-Wl,-rpath,{}", lib.display()));
        }
        Link::Static => {
            cmd.arg(lib.join("libpymalloc.a"));
        }
    }
    cmd.args(["-lpthread", "-ldl", "-lm"]).args(extra);
    let output = cmd.output().expect("a C compiler (cc) is installed");
    assert!(
        output.status.success(),
        "compiling {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&tmp, out).expect("rename the compiled program into place");
}

/// Compiles the C program `ctests/<rel>` against the shared library into the scratch
/// directory as `name`, and returns its path.
pub fn c_program(rel: &str, name: &str) -> PathBuf {
    let exe = scratch().join(name);
    compile_c(&root().join("ctests").join(rel), &exe, Link::Shared, &[]);
    exe
}

/// Debian's `python3.11` (the static build) for `check`; `None` once the check is skipped
/// for lack of it (loudly, and a failure under `CI=true`: see [`prereq`]).
pub fn debian_python311(check: &str) -> Option<PathBuf> {
    prereq::gate(check, "Debian python3.11 (static)", prereq::debian_python())
}

/// pyenv's CPython 3.`minor`, or what installs it.
pub fn pyenv_python(minor: u32) -> Result<PathBuf, prereq::Missing> {
    let home = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap()).join(".pyenv"));
    let prefix = format!("3.{minor}.");
    let found = std::fs::read_dir(home.join("versions"))
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .max_by_key(|n| n[prefix.len()..].parse::<u32>().unwrap_or(0));
    let exe = found.map(|n| {
        home.join("versions")
            .join(n)
            .join("bin")
            .join(format!("python3.{minor}"))
    });
    match exe {
        Some(exe) if exe.is_file() => Ok(exe),
        _ => Err(prereq::Missing::new(
            format!("pyenv's CPython 3.{minor}"),
            format!("pyenv install 3.{minor}"),
        )),
    }
}

/// Runs `cmd` and returns its output, printing it for the test log.
pub fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// The path of a program on PATH, if any.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// `program` run with none of the caller's allocator settings: no `PYTHONMALLOC`,
/// `PYTHONDEVMODE`, `PYTHONTRACEMALLOC`, `LD_PRELOAD`, nor any `PYMALLOC_*` (a developer's
/// own `PYMALLOC_STATS`, `_DEBUG`, `_LIB`… would change what is measured).
pub fn clean_command(program: &Path) -> Command {
    let mut c = Command::new(program);
    for var in [
        "PYTHONMALLOC",
        "PYTHONDEVMODE",
        "PYTHONTRACEMALLOC",
        "LD_PRELOAD",
    ] {
        c.env_remove(var);
    }
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("PYMALLOC_") {
            c.env_remove(var);
        }
    }
    c
}

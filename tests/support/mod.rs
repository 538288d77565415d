//! Helpers shared by the integration tests: building the C library with the same profile
//! as the running test, compiling C programs against it, and running them; [`prereq`]
//! skips (or, under CI, fails) a check whose prerequisite the machine lacks.

#![allow(dead_code)]

pub mod debian_root;
pub mod prereq;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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

/// Runs `cmd` and returns its output, printing it for the test log; as [`run_within`]
/// with no time limit.
pub fn run(cmd: &mut Command) -> Output {
    run_within(cmd, None).0
}

/// Runs `cmd` (stdin empty, stdout and stderr captured) in a process group of its own and
/// returns its output, printing it for the test log, and whether it ran past `limit`. Past
/// the limit every process it started is killed: its group and, found through their
/// parents, the descendants that left it (as regrtest's workers do, each in a session of
/// its own) with their groups. When it ends, whatever it left in its group is killed; a
/// process that escaped the group and still holds its output open fails the test, as does
/// a group that does not die: nothing it started outlives the call.
pub fn run_within(cmd: &mut Command, limit: Option<Duration>) -> (Output, bool) {
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id() as i32;
    let stdout = Drain::start(child.stdout.take().unwrap());
    let stderr = Drain::start(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    // Waits in a thread, so that the child stays unreaped (its pid not reused) until it
    // ends, and the kill below cannot reach a stranger.
    std::thread::spawn(move || tx.send(child.wait()));
    let waited = match limit {
        Some(limit) => rx.recv_timeout(limit).ok(),
        None => rx.recv().ok(),
    };
    let timed_out = waited.is_none();
    if timed_out {
        kill_tree(pid);
    }
    let status = match waited {
        Some(s) => s,
        None => rx.recv().expect("the waiting thread answers"),
    }
    .unwrap_or_else(|e| panic!("cannot wait for {cmd:?}: {e}"));
    kill_group(pid, cmd);
    let output = Output {
        status,
        stdout: stdout.finish(cmd),
        stderr: stderr.finish(cmd),
    };
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    (output, timed_out)
}

/// A thread reading a pipe to its end, keeping what it read where [`Drain::finish`] finds
/// it even if the end never comes.
struct Drain {
    thread: std::thread::JoinHandle<()>,
    bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Drain {
    fn start(mut pipe: impl std::io::Read + Send + 'static) -> Drain {
        let bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = bytes.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Drain { thread, bytes }
    }

    /// What was read, once the pipe is closed: by then the command and its group are gone,
    /// so a writer still holding it escaped the group.
    fn finish(self, cmd: &Command) -> Vec<u8> {
        let start = Instant::now();
        while !self.thread.is_finished() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "a process started by {cmd:?} left its process group and outlived it, holding its output open"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::mem::take(&mut *self.bytes.lock().unwrap())
    }
}

/// `(pid, parent, process group, state)` of every process, from `/proc`.
fn processes() -> Vec<(i32, i32, i32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command name, which may hold spaces and parentheses.
        let mut f = stat[stat.rfind(')')? + 2..].split(' ');
        let state = f.next()?.chars().next()?;
        let parent = f.next()?.parse().ok()?;
        let group = f.next()?.parse().ok()?;
        Some((pid, parent, group, state))
    })
    .collect()
}

/// Kills `root`, its descendants and their process groups (never the caller's own).
fn kill_tree(root: i32) {
    let all = processes();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(all.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    // SAFETY: plain system calls.
    let own = unsafe { libc::getpgrp() };
    for &pid in &tree {
        if let Some(&(_, _, group, _)) = all.iter().find(|p| p.0 == pid) {
            if group > 1 && group != own {
                // SAFETY: a plain system call.
                unsafe { libc::kill(-group, libc::SIGKILL) };
            }
        }
        // SAFETY: a plain system call.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Kills what is left in the process group `group` (the group of a command that has
/// ended) and waits until none of it remains, failing the test if it does not die.
fn kill_group(group: i32, cmd: &Command) {
    // SAFETY: a plain system call; the group is the command's own, never the caller's.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let start = Instant::now();
    while processes()
        .iter()
        .any(|p| p.2 == group && p.3 != 'Z' && p.3 != 'X')
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "processes of {cmd:?} survive SIGKILL to their group"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
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

//! The `pymalloc` command: `pymalloc run [--stats] [--debug] [--verbose] -- CMD…` runs a
//! command with the library preloaded; `pymalloc compare [-n RUNS] [--svg FILE] [-- CMD…]`
//! compares allocators on it.

mod compare;
mod median;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: pymalloc run [--stats] [--debug] [--verbose] -- CMD [ARG...]
       pymalloc compare [-n RUNS] [--svg FILE] [-- CMD [ARG...]]

  run      run CMD with libpymalloc.so preloaded (LD_PRELOAD); inside CPython it takes over
           the allocator. --stats prints statistics at exit, --debug turns on debug checks,
           --verbose says what was installed.
  compare  run CMD (default: the bundled Python workloads, with python3 or $PYMALLOC_PYTHON)
           under pymalloc-rs, CPython's pymalloc, glibc malloc, and mimalloc / jemalloc when
           installed, RUNS times each (default 3), alternating; print median wall time and
           peak RSS as ratios to CPython's pymalloc; --svg FILE draws the chart.";

/// Prints `msg` as an error and returns the exit code for bad usage or a failure.
pub fn fail(msg: &str, code: u8) -> ExitCode {
    eprintln!("pymalloc: {msg}");
    ExitCode::from(code)
}

/// The shared library: next to this executable (both are built into `target/<profile>/`),
/// or where `PYMALLOC_LIB` says.
pub fn library() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PYMALLOC_LIB") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("PYMALLOC_LIB={} does not exist", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
    let dir = exe.parent().ok_or("cannot locate my directory")?;
    let lib = dir.join("libpymalloc.so");
    if lib.is_file() {
        Ok(lib)
    } else {
        Err(format!(
            "libpymalloc.so not found next to {} (build it with `cargo build --release`, or set PYMALLOC_LIB)",
            exe.display()
        ))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run::main(&args[1..]),
        Some("compare") => compare::main(&args[1..]),
        Some("-h") | Some("--help") | Some("help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => fail(&format!("unknown command {other:?}\n{USAGE}"), 2),
        None => fail(USAGE, 2),
    }
}

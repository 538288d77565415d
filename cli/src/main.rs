//! The `pymalloc` command: `pymalloc run [--stats] [--debug] [--verbose] -- CMD…` runs a
//! command with the library preloaded; `pymalloc compare [-n RUNS] [--svg FILE]
//! [--json FILE] [-- CMD…]` compares allocators on it; `pymalloc chart` draws bar and
//! line charts described on stdin as SVG; `pymalloc interpreter [PYTHON]` says which
//! interpreter and build (static or shared, PGO, LTO) the measurements run on; `pymalloc
//! inspect PID [--json] [--watch SECONDS [--svg FILE]]` reads a running process's allocator
//! from outside, and `pymalloc trim PID` asks one that opted in to give its free pools back.
//! Arguments are parsed by clap.

extern crate alloc;

mod chart;
mod compare;
mod inspect;
mod interpreter;
mod median;
mod pytypes;
mod run;
mod target;

#[allow(dead_code)]
#[path = "../../src/introspect/stats/figures.rs"]
mod figures;
/// Sources of the library that the command compiles too (it does not link the library),
/// reached under the library's module paths (`allocator::geometry`…) so that their
/// `crate::` paths resolve: the geometry, the descriptor `pymalloc inspect` reads, and the
/// statistics' figures and report, so that `inspect` prints the library's own report
/// (docs/decisions.md#pymalloc-inspect-reads-a-running-process).
#[allow(dead_code)] // the parts only the library uses
#[path = "../../src/allocator/geometry.rs"]
mod geometry;
#[allow(dead_code)]
#[path = "../../src/allocator/layout.rs"]
mod layout;
mod allocator {
    pub(crate) use super::{geometry, layout};
}
mod introspect {
    pub(crate) use super::figures;
}

use clap::{Parser, Subcommand};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs programs on pymalloc-rs, CPython's small-object allocator rebuilt in Rust, and
/// compares it with other allocators.
#[derive(Parser)]
#[command(name = "pymalloc", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(run::Args),
    Compare(compare::Args),
    Chart(chart::Args),
    Interpreter(interpreter::Args),
    Inspect(inspect::Args),
    Trim(inspect::TrimArgs),
}

/// The file `exec` runs for `program`: the path itself when it holds a slash, else the
/// first file of that name on `PATH`; `None` when there is none.
pub fn find_program(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program)).filter(|p| p.is_file());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// Prints `msg` as an error and returns the exit code for bad usage or a failure.
pub fn fail(msg: &str, code: u8) -> ExitCode {
    eprintln!("pymalloc: {msg}");
    ExitCode::from(code)
}

/// The shared library, from the first place that has it:
/// 1. `PYMALLOC_LIB`;
/// 2. next to this executable (`cargo build` puts both into `target/<profile>/`);
/// 3. the `pymalloc_rs` Python package installed with this executable (pip puts the
///    command into `PREFIX/bin/` and the package into
///    `PREFIX/lib/pythonX.Y/site-packages/`; the newest copy wins if several Pythons share
///    the prefix, as the command is the one installed last).
pub fn library() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PYMALLOC_LIB") {
        // Absolute: the command may change directory before the loader reads LD_PRELOAD.
        let p = PathBuf::from(p);
        return match std::fs::canonicalize(&p) {
            Ok(abs) if abs.is_file() => Ok(abs),
            _ => Err(format!("PYMALLOC_LIB={} does not exist", p.display())),
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
    let dir = exe.parent().ok_or("cannot locate my directory")?;
    let lib = dir.join("libpymalloc.so");
    if lib.is_file() {
        return Ok(lib);
    }
    in_python_package(dir).ok_or_else(|| {
        format!(
            "libpymalloc.so not found next to {} nor in a pymalloc_rs package beside it \
             (pip install pymalloc-rs, or cargo build --release, or set PYMALLOC_LIB)",
            exe.display()
        )
    })
}

/// `bin/../lib{,64}/python*/{site,dist}-packages/pymalloc_rs/libpymalloc.so`, the newest.
fn in_python_package(bin: &Path) -> Option<PathBuf> {
    // `lib64` too: where Fedora, RHEL and SUSE put platform-specific packages (platlib).
    let prefix = bin.parent()?;
    ["lib", "lib64"]
        .iter()
        .filter_map(|l| std::fs::read_dir(prefix.join(l)).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
        .flat_map(|e| ["site-packages", "dist-packages"].map(|s| e.path().join(s)))
        .map(|d| d.join("pymalloc_rs").join("libpymalloc.so"))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run::main(args),
        Command::Compare(args) => compare::main(args),
        Command::Chart(args) => chart::main(args),
        Command::Interpreter(args) => interpreter::main(args),
        Command::Inspect(args) => inspect::main(args),
        Command::Trim(args) => inspect::trim(args),
    }
}

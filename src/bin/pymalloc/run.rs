//! `pymalloc run`: exec a command with the library preloaded.

use crate::{fail, library};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// Run CMD with libpymalloc.so preloaded.
///
/// The library goes first into LD_PRELOAD, before any entries already there; inside
/// CPython it takes over the allocator.
#[derive(clap::Args)]
pub struct Args {
    /// Print the allocator's statistics to stderr at exit (PYMALLOC_STATS=1).
    #[arg(long)]
    stats: bool,
    /// Debug checks: overruns, use after free, double free (PYMALLOC_DEBUG=1).
    #[arg(long)]
    debug: bool,
    /// Say what was installed or skipped, and why (PYMALLOC_VERBOSE=1).
    #[arg(long)]
    verbose: bool,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    command: Vec<OsString>,
}

pub fn main(args: Args) -> ExitCode {
    let lib = match library() {
        Ok(lib) => lib,
        Err(e) => return fail(&e, 2),
    };
    let preload = match std::env::var("LD_PRELOAD") {
        Ok(old) if !old.is_empty() => format!("{} {old}", lib.display()),
        _ => lib.display().to_string(),
    };
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..]).env("LD_PRELOAD", preload);
    for (on, var) in [
        (args.stats, "PYMALLOC_STATS"),
        (args.debug, "PYMALLOC_DEBUG"),
        (args.verbose, "PYMALLOC_VERBOSE"),
    ] {
        if on {
            cmd.env(var, "1");
        }
    }
    let err = cmd.exec();
    let code = if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    fail(&format!("cannot run {:?}: {err}", args.command[0]), code)
}

//! `pymalloc run`: exec a command with the library preloaded.

use crate::{fail, find_program, library};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

/// Run CMD with libpymalloc.so preloaded.
///
/// The library goes first into LD_PRELOAD, before any entries already there; inside
/// CPython it takes over the allocator. A free-threaded CPython (3.13t and later) keeps its
/// own: pymalloc run says so in one line when CMD is one.
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

/// `LD_PRELOAD` with `lib` first and the user's entries kept after it (as they are, even
/// if not UTF-8); unchanged when `lib` is there already. Errors: a library path that
/// `LD_PRELOAD` cannot carry (it splits at spaces and colons). The same rule as
/// `python -m pymalloc_rs` (`preload_value` in python/pymalloc_rs/__main__.py).
fn preload_value(lib: &Path, old: OsString) -> Result<OsString, String> {
    let lib = lib.as_os_str();
    if lib.as_bytes().iter().any(|b| b" :".contains(b)) {
        return Err(format!(
            "the library's path {lib:?} holds a space or a colon, which LD_PRELOAD cannot carry"
        ));
    }
    let present = old
        .as_bytes()
        .split(|b| b" :".contains(b))
        .any(|e| e == lib.as_bytes());
    if present {
        return Ok(old);
    }
    let mut value = lib.to_os_string();
    if !old.is_empty() {
        value.push(" ");
        value.push(&old);
    }
    Ok(value)
}

/// Whether `program`, as `exec` finds it (PATH), is a free-threaded CPython, which the
/// library leaves alone (its garbage collector finds objects by walking mimalloc's heaps).
/// Looked for only in a program named `python*`: a static build exports
/// `_Py_MergeZeroLocalRefcount` (biased reference counting, only in free-threaded builds),
/// a shared one links `libpython3.Nt.so` (the `t` ABI flag). The library's constructor
/// decides for itself; this is only what the user is told.
fn free_threaded(program: &OsStr) -> bool {
    let path = Path::new(program);
    if !path
        .file_name()
        .is_some_and(|n| n.as_bytes().starts_with(b"python"))
    {
        return false;
    }
    find_program(program)
        .and_then(|p| std::fs::read(p).ok())
        .is_some_and(|bytes| free_threaded_image(&bytes))
}

/// Whether an executable's bytes show a free-threaded CPython (see [`free_threaded`]).
fn free_threaded_image(bytes: &[u8]) -> bool {
    const MERGE: &[u8] = b"_Py_MergeZeroLocalRefcount\0";
    const LIBPYTHON: &[u8] = b"libpython3.";
    bytes.windows(MERGE.len()).any(|w| w == MERGE)
        || bytes
            .windows(LIBPYTHON.len())
            .enumerate()
            .filter(|(_, w)| *w == LIBPYTHON)
            .any(|(i, _)| {
                let rest = &bytes[i + LIBPYTHON.len()..];
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                digits > 0 && rest[digits..].starts_with(b"t.so")
            })
}

pub fn main(args: Args) -> ExitCode {
    let lib = match library() {
        Ok(lib) => lib,
        Err(e) => return fail(&e, 2),
    };
    let preload = match preload_value(&lib, std::env::var_os("LD_PRELOAD").unwrap_or_default()) {
        Ok(p) => p,
        Err(e) => return fail(&e, 2),
    };
    if free_threaded(&args.command[0]) {
        eprintln!(
            "pymalloc: {:?} is a free-threaded CPython, whose garbage collector finds objects by walking mimalloc's heaps: it runs without pymalloc-rs",
            args.command[0]
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_puts_the_library_first_once_and_keeps_the_rest() {
        let lib = Path::new("/x/libpymalloc.so");
        assert_eq!(preload_value(lib, "".into()).unwrap(), "/x/libpymalloc.so");
        assert_eq!(
            preload_value(lib, "/a.so:/b.so".into()).unwrap(),
            "/x/libpymalloc.so /a.so:/b.so"
        );
        let already: OsString = "/a.so /x/libpymalloc.so".into();
        assert_eq!(preload_value(lib, already.clone()).unwrap(), already);
        let odd = OsString::from(std::ffi::OsStr::from_bytes(b"/\xff.so"));
        let mut want = OsString::from("/x/libpymalloc.so ");
        want.push(&odd);
        assert_eq!(preload_value(lib, odd).unwrap(), want);
        assert!(preload_value(Path::new("/my dir/libpymalloc.so"), "".into()).is_err());
    }

    #[test]
    fn free_threaded_images_are_told_apart() {
        assert!(free_threaded_image(b"..\0_Py_MergeZeroLocalRefcount\0.."));
        assert!(free_threaded_image(b"\0libpython3.14t.so.1.0\0"));
        assert!(!free_threaded_image(b"\0libpython3.14.so.1.0\0"));
        assert!(!free_threaded_image(
            b"\0libpython3.t.so\0_Py_MergeZeroLocalRefcountX"
        ));
    }
}

//! The Debian root that `scripts/debian-root.sh` makes: Debian's CPython 3.14 (sid) and
//! 3.15 (experimental), static builds with their `Lib/test`, venv, headers and a C
//! compiler. A command runs inside it through the script's `enter` (a mount namespace of
//! its own, `chroot`), with this repository and the target directory mounted at the same
//! paths as here: the library, the test scripts and scratch files keep their paths.
//!
//! The root is `$PYMALLOC_DEBIAN_ROOT`, or `/var/lib/pymalloc-rs/debian-sid` (the script's
//! default). Entering needs root (`unshare`, `mount`, `chroot`).

use super::prereq::Missing;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

/// The minor versions of CPython 3 the root holds.
pub const MINORS: [u32; 2] = [14, 15];

/// Where the root is (it may not exist).
pub fn path() -> PathBuf {
    std::env::var_os("PYMALLOC_DEBIAN_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/pymalloc-rs/debian-sid"))
}

/// The root, if it holds `file` (a path inside it, such as `/usr/bin/python3.14`), and we
/// may enter it; else what makes it.
pub fn holding(file: &str) -> Result<PathBuf, Missing> {
    let root = path();
    let missing = |what: String| {
        Err(Missing::new(
            what,
            "bash scripts/debian-root.sh (as root; about 5 minutes)",
        ))
    };
    if !root.join(file.trim_start_matches('/')).exists() {
        return missing(format!("{file} in the Debian root {}", root.display()));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return missing("root privileges (to enter the Debian root)".into());
    }
    Ok(root)
}

/// Where a command runs: here, or inside the Debian root.
#[derive(Clone, Debug)]
pub enum Place {
    Here,
    DebianRoot(PathBuf),
}

impl Place {
    /// `cmd` (its program, arguments, the variables it sets or removes and its directory)
    /// as a command that runs it at this place. Inside the root the variables it sets go in
    /// through `env` there, so that none reaches the programs that enter the root (an
    /// `LD_PRELOAD` or `PYMALLOC_*` setting would act on them); the caller's `LD_PRELOAD`
    /// and `PYMALLOC_*` never go in. Standard streams are the caller's to set on the result.
    pub fn command(&self, cmd: &Command) -> Command {
        let Place::DebianRoot(root) = self else {
            let mut c = Command::new(cmd.get_program());
            c.args(cmd.get_args());
            for (k, v) in cmd.get_envs() {
                match v {
                    Some(v) => c.env(k, v),
                    None => c.env_remove(k),
                };
            }
            if let Some(dir) = cmd.get_current_dir() {
                c.current_dir(dir);
            }
            return c;
        };
        let mut c = Command::new("bash");
        c.arg(super::root().join("scripts/debian-root.sh"))
            .arg("enter")
            .env("PYMALLOC_DEBIAN_ROOT", root)
            .env_remove("LD_PRELOAD");
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("PYMALLOC_") && var != "PYMALLOC_DEBIAN_ROOT" {
                c.env_remove(var);
            }
        }
        // The script mounts the repository; the target directory may lie elsewhere.
        for dir in [
            super::profile_dir(),
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        ] {
            if !dir.starts_with(super::root()) {
                c.arg("--bind").arg(dir);
            }
        }
        c.args(["--", "/usr/bin/env"]);
        if let Some(dir) = cmd.get_current_dir() {
            c.arg("-C").arg(dir);
        }
        // `env` takes its options (-u) before the settings.
        for (k, _) in cmd.get_envs().filter(|(_, v)| v.is_none()) {
            c.arg("-u").arg(k);
        }
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                let mut kv = OsString::from(k);
                kv.push("=");
                kv.push(v);
                c.arg(kv);
            }
        }
        c.arg(cmd.get_program()).args(cmd.get_args());
        c
    }
}

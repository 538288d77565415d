//! What a shared library costs a process in resident memory, read from
//! `/proc/PID/smaps`: the `Rss:` of every mapping of a file whose name contains a given
//! string, summed (text, read-only data and relocated data alike). The footprint benchmark
//! and `tests/lean.rs` measure the library this way at CPython's start.

use std::path::Path;
use std::process::Command;

/// KiB resident in the mappings of `smaps` (the text of a `/proc/PID/smaps`) whose path's
/// file name contains `library`; 0 when none does.
pub fn resident_kib(smaps: &str, library: &str) -> u64 {
    resident_kib_of(smaps, library, |_| true)
}

/// As [`resident_kib`], for the executable mappings only (the library's code).
pub fn text_resident_kib(smaps: &str, library: &str) -> u64 {
    resident_kib_of(smaps, library, |perms| perms.contains('x'))
}

fn resident_kib_of(smaps: &str, library: &str, perms_wanted: impl Fn(&str) -> bool) -> u64 {
    let mut ours = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: "start-end perms offset dev inode [path]".
            let perms = fields.next().unwrap_or("");
            let file = fields
                .nth(3)
                .and_then(|p| p.rsplit('/').next())
                .unwrap_or("");
            ours = file.contains(library) && perms_wanted(perms);
        } else if ours && first == "Rss:" {
            kib += fields
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    kib
}

/// The smaps of `python` as it starts (`-c` of a line that prints its own smaps), with
/// `preload` in `LD_PRELOAD` (or without any preload), and `PYMALLOC_*`, `PYTHONMALLOC`,
/// `PYTHONDEVMODE` and `PYTHONTRACEMALLOC` cleared (as the tests' `clean_command` does).
/// Errors: the interpreter cannot run or fails.
pub fn python_start_smaps(python: &Path, preload: Option<&Path>) -> Result<String, String> {
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import sys; sys.stdout.write(open('/proc/self/smaps').read())",
    ])
    .env_remove("LD_PRELOAD")
    .env_remove("PYTHONMALLOC")
    .env_remove("PYTHONDEVMODE")
    .env_remove("PYTHONTRACEMALLOC");
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("PYMALLOC_") {
            cmd.env_remove(var);
        }
    }
    if let Some(lib) = preload {
        cmd.env("LD_PRELOAD", lib);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            python.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

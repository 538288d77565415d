//! The environment variables (the README's table): `PYMALLOC_INSTALL`, `PYMALLOC_DOMAINS`,
//! `PYMALLOC_STATS`, `PYMALLOC_DEBUG`, `PYMALLOC_VERBOSE`, `PYMALLOC_DECAY_MS` (the
//! decay of `arena`) and `PYMALLOC_TRIM_SIGNAL` (`trim_signal`). All optional; a malformed value gets one clear line on stderr and the
//! default. In a program that runs with privileges its caller lacks (setuid, setgid or file
//! capabilities: the kernel's `AT_SECURE`) they are all ignored, as glibc ignores its own
//! `MALLOC_*` tunables there: an unprivileged caller must not switch on debug reports (which
//! print heap addresses) or statistics in it.

use alloc::string::{String, ToString};
use core::ffi::c_char;

extern "C" {
    /// `getenv`'s contract. glibc's and musl's `getenv` that answers NULL under `AT_SECURE` (not in the `libc`
    /// crate for Linux).
    fn secure_getenv(name: *const c_char) -> *mut c_char;
}

/// The value of the environment variable `name` (at most 63 bytes and no NUL, as every
/// name the library reads is), or None when it is unset or not UTF-8. Read with `getenv`,
/// for the interpreter's own variables (`PYTHONMALLOC`…), which CPython reads whatever the
/// program's privileges. The library reads the environment from its constructor, before
/// the program starts threads.
pub fn var(name: &str) -> Option<String> {
    read_with(name, libc::getenv)
}

/// A `PYMALLOC_*` setting: as [`var`], but None in a privileged program (`AT_SECURE`).
fn setting(name: &str) -> Option<String> {
    read_with(name, secure_getenv)
}

/// `name`'s value through `get`, a function with `getenv`'s contract.
fn read_with(
    name: &str,
    get: unsafe extern "C" fn(*const c_char) -> *mut c_char,
) -> Option<String> {
    let mut c_name = [0u8; 64];
    if name.len() >= c_name.len() {
        return None;
    }
    c_name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: `c_name` is NUL-terminated; the result, if not NULL, is a NUL-terminated
    // string that stays valid until the environment changes, and is copied at once.
    let value = unsafe { get(c_name.as_ptr().cast()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: as above.
    let bytes = unsafe { core::ffi::CStr::from_ptr(value) }.to_bytes();
    core::str::from_utf8(bytes).ok().map(ToString::to_string)
}

/// Which CPython allocator domains to take over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Domains {
    pub obj: bool,
    pub mem: bool,
}

/// The settings read from the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Install into CPython (default yes).
    pub install: bool,
    /// Domains to install for (default both).
    pub domains: Domains,
    /// Print statistics to stderr at exit.
    pub stats: bool,
    /// Debug checks.
    pub debug: bool,
    /// Say what was installed or skipped, and why.
    pub verbose: bool,
    /// The decay epoch in milliseconds (`PYMALLOC_DECAY_MS`; `-1` is
    /// [`crate::allocator::arena::DECAY_NEVER`]): how long a heap's kept empty pools may go unused
    /// before they go back to the OS.
    pub decay_ms: u32,
    /// The signal that asks for a trim (`PYMALLOC_TRIM_SIGNAL`), 0 for none (the default).
    pub trim_signal: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            install: true,
            domains: Domains {
                obj: true,
                mem: true,
            },
            stats: false,
            debug: false,
            verbose: false,
            decay_ms: crate::allocator::arena::DEFAULT_DECAY_MS,
            trim_signal: 0,
        }
    }
}

/// Parses a switch: `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`, in any case (the
/// README's spellings). `None` for a malformed value.
fn switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Parses a comma-separated domain list (`obj`, `mem`). `None` for a malformed value.
fn domains(value: &str) -> Option<Domains> {
    let mut d = Domains {
        obj: false,
        mem: false,
    };
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.to_ascii_lowercase().as_str() {
            "obj" => d.obj = true,
            "mem" => d.mem = true,
            _ => return None,
        }
    }
    (d.obj || d.mem).then_some(d)
}

/// Parses a decay in milliseconds: `0..=3_600_000` (an hour), or `-1` for never.
/// `None` for a malformed value.
fn decay(value: &str) -> Option<u32> {
    match value.trim() {
        "-1" => Some(crate::allocator::arena::DECAY_NEVER),
        v => v.parse().ok().filter(|&ms| ms <= 3_600_000),
    }
}

/// Parses a signal for `PYMALLOC_TRIM_SIGNAL`: `SIGUSR1`, `SIGUSR2` (with or without
/// `SIG`, any case), or a number that can be caught (not `SIGKILL` nor `SIGSTOP`). `None`
/// for a malformed value.
fn signal(value: &str) -> Option<i32> {
    let v = value.trim().to_ascii_uppercase();
    match v.strip_prefix("SIG").unwrap_or(&v) {
        "USR1" => Some(libc::SIGUSR1),
        "USR2" => Some(libc::SIGUSR2),
        n => n
            .parse()
            .ok()
            .filter(|&s| (1..=64).contains(&s) && s != libc::SIGKILL && s != libc::SIGSTOP),
    }
}

impl Config {
    /// Reads the settings through `get` (the environment, in production), reporting each
    /// malformed value through `warn` and keeping the default for it.
    pub fn read(get: impl Fn(&str) -> Option<String>, mut warn: impl FnMut(String)) -> Config {
        let mut c = Config::default();
        let mut flag = |name: &str, slot: &mut bool| {
            if let Some(v) = get(name).filter(|v| !v.is_empty()) {
                match switch(&v) {
                    Some(b) => *slot = b,
                    None => warn(format!(
                        "pymalloc: ignoring {name}={v:?}: expected 1/0, true/false, yes/no or on/off; using {}",
                        u8::from(*slot)
                    )),
                }
            }
        };
        flag("PYMALLOC_INSTALL", &mut c.install);
        flag("PYMALLOC_STATS", &mut c.stats);
        flag("PYMALLOC_DEBUG", &mut c.debug);
        flag("PYMALLOC_VERBOSE", &mut c.verbose);
        if let Some(v) = get("PYMALLOC_DECAY_MS").filter(|v| !v.is_empty()) {
            match decay(&v) {
                Some(ms) => c.decay_ms = ms,
                None => warn(format!(
                    "pymalloc: ignoring PYMALLOC_DECAY_MS={v:?}: expected milliseconds (0 = at once) or -1 (never); using {}",
                    c.decay_ms
                )),
            }
        }
        if let Some(v) = get("PYMALLOC_TRIM_SIGNAL").filter(|v| !v.is_empty()) {
            match signal(&v) {
                Some(s) => c.trim_signal = s,
                None => warn(format!(
                    "pymalloc: ignoring PYMALLOC_TRIM_SIGNAL={v:?}: expected SIGUSR1, SIGUSR2 or a signal number; using none"
                )),
            }
        }
        if let Some(v) = get("PYMALLOC_DOMAINS").filter(|v| !v.is_empty()) {
            match domains(&v) {
                Some(d) => c.domains = d,
                None => warn(format!(
                    "pymalloc: ignoring PYMALLOC_DOMAINS={v:?}: expected a comma-separated list of obj, mem; using obj,mem"
                )),
            }
        }
        c
    }

    /// Reads the process environment (nothing in a privileged program), warning on stderr.
    pub fn from_env() -> Config {
        Config::read(setting, |msg| eprintln!("{msg}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> (Config, Vec<String>) {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut warnings = Vec::new();
        let c = Config::read(|k| env.get(k).cloned(), |w| warnings.push(w));
        (c, warnings)
    }

    #[test]
    fn defaults_when_unset_or_empty() {
        assert_eq!(read(&[]).0, Config::default());
        assert_eq!(
            read(&[("PYMALLOC_STATS", ""), ("PYMALLOC_DOMAINS", "")]).0,
            Config::default()
        );
    }

    #[test]
    fn values_are_read() {
        let (c, w) = read(&[
            ("PYMALLOC_INSTALL", "0"),
            ("PYMALLOC_STATS", "1"),
            ("PYMALLOC_DEBUG", "yes"),
            ("PYMALLOC_VERBOSE", "true"),
            ("PYMALLOC_DOMAINS", "obj"),
            ("PYMALLOC_DECAY_MS", "25"),
        ]);
        assert!(w.is_empty());
        assert_eq!(c.decay_ms, 25);
        for (v, s) in [
            ("SIGUSR2", libc::SIGUSR2),
            ("usr1", libc::SIGUSR1),
            ("34", 34),
        ] {
            assert_eq!(read(&[("PYMALLOC_TRIM_SIGNAL", v)]).0.trim_signal, s, "{v}");
        }
        assert_eq!(
            read(&[("PYMALLOC_DECAY_MS", "-1")]).0.decay_ms,
            crate::allocator::arena::DECAY_NEVER
        );
        assert!(!c.install && c.stats && c.debug && c.verbose);
        assert_eq!(
            c.domains,
            Domains {
                obj: true,
                mem: false
            }
        );
        assert_eq!(
            read(&[("PYMALLOC_DOMAINS", " mem , obj ")]).0.domains,
            Domains {
                obj: true,
                mem: true
            }
        );
    }

    /// The README's spellings of a switch, in any case; the warning for anything else names
    /// them.
    #[test]
    fn switches_take_the_usual_spellings() {
        for (on, off) in [("1", "0"), ("true", "false"), ("yes", "no"), ("on", "off")] {
            for (v, want) in [(on, true), (off, false)] {
                for v in [v.to_string(), v.to_ascii_uppercase()] {
                    let (c, w) = read(&[("PYMALLOC_DEBUG", &v)]);
                    assert!(w.is_empty() && c.debug == want, "{v}: {w:?}");
                }
            }
        }
        let (_, w) = read(&[("PYMALLOC_INSTALL", "nope")]);
        assert_eq!(
            w,
            ["pymalloc: ignoring PYMALLOC_INSTALL=\"nope\": expected 1/0, true/false, yes/no or on/off; using 1"]
        );
    }

    #[test]
    fn malformed_values_warn_once_and_keep_the_default() {
        let (c, w) = read(&[
            ("PYMALLOC_STATS", "maybe"),
            ("PYMALLOC_TRIM_SIGNAL", "SIGKILL"),
            ("PYMALLOC_DOMAINS", "obj,raw"),
            ("PYMALLOC_DECAY_MS", "soon"),
        ]);
        assert_eq!(c, Config::default());
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w[1].contains("PYMALLOC_DECAY_MS=\"soon\"") && w[1].contains("using 400"));
        assert!(w[0].contains("PYMALLOC_STATS=\"maybe\"") && w[0].contains("using 0"));
        assert!(w[2].contains("PYMALLOC_TRIM_SIGNAL=\"SIGKILL\"") && w[2].contains("none"));
        assert!(w[3].contains("PYMALLOC_DOMAINS=\"obj,raw\""));
    }
}

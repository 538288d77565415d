//! `pymalloc interpreter [PYTHON]`: which interpreter and which build a measurement ran on.
//! A speed ratio to CPython's own pymalloc depends on how that CPython was built: in a
//! profile-guided (PGO) and link-time-optimised (LTO) build, the one most distributions
//! ship, CPython's allocator is optimised into the interpreter, and in a static build
//! (libpython linked into the executable) its calls are direct. `pymalloc compare` and
//! `benches/pyperformance.sh` print this description above their tables.

use crate::fail;
use std::fmt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

/// Run by the interpreter described, without our library: one fact per line.
/// `sys.version` is on one line; libpython is found among the mapped files, which tells a
/// static executable from one that loads `libpython3.X.so` (sysconfig cannot: Debian's
/// records its shared build's configuration for both); the configure options sysconfig
/// records say whether PGO (`--enable-optimizations`) and LTO (`--with-lto`) were asked.
const PROBE: &str = "import sys, sysconfig
print(sys.executable)
print(sys.version.replace('\\n', ' '))
lib = [l.split()[-1] for l in open('/proc/self/maps') if 'libpython' in l.split()[-1]]
print(lib[0] if lib else '')
args = sysconfig.get_config_var('CONFIG_ARGS') or ''
print('--enable-optimizations' in args, '--with-lto' in args)
";

/// An interpreter and its build, as far as it can be told from outside.
pub struct Interpreter {
    /// `sys.executable`.
    pub path: String,
    /// `sys.version` on one line: version, build date, compiler.
    pub version: String,
    /// The shared libpython it loads; `None` for a static build.
    libpython: Option<String>,
    /// `--enable-optimizations` and `--with-lto` among the configure options sysconfig
    /// records.
    pgo: bool,
    lto: bool,
    /// The Debian package that installed the executable, and its version.
    package: Option<(String, String)>,
}

impl Interpreter {
    /// Runs `python` once (with `LD_PRELOAD` and `PYTHONMALLOC` removed) and asks dpkg which
    /// package installed it. Errors: `python` does not run or is not a CPython 3 on Linux.
    pub fn probe(python: &str) -> Result<Interpreter, String> {
        let out = Command::new(python)
            .args(["-I", "-c", PROBE])
            .env_remove("LD_PRELOAD")
            .env_remove("PYTHONMALLOC")
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run {python}: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        if !out.status.success() || lines.len() != 4 {
            return Err(format!(
                "{python} does not say which build it is: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ));
        }
        let path = lines[0].to_string();
        Ok(Interpreter {
            package: debian_package(&path),
            version: lines[1].to_string(),
            libpython: Some(lines[2].to_string()).filter(|l| !l.is_empty()),
            pgo: lines[3].starts_with("True"),
            lto: lines[3].ends_with("True"),
            path,
        })
    }

    /// The build in words: static or shared libpython, PGO and LTO, and the package.
    pub fn build(&self) -> String {
        let linking = match &self.libpython {
            None => "static (libpython in the executable)".to_string(),
            Some(lib) => format!("shared ({lib})"),
        };
        let optimised = match &self.package {
            // Debian's rules build the static interpreter a second time, with PGO and LTO
            // (amd64, arm64 and others), and install sysconfig's data from the shared
            // build, whose options do not name them.
            Some((name, version)) if self.libpython.is_none() => {
                format!("PGO + LTO (Debian package {name} {version})")
            }
            package => {
                let yes_no = |b: bool| if b { "yes" } else { "no" };
                let mut s = format!(
                    "PGO {}, LTO {} (configure options)",
                    yes_no(self.pgo),
                    yes_no(self.lto)
                );
                if let Some((name, version)) = package {
                    s += &format!(", Debian package {name} {version}");
                }
                s
            }
        };
        format!("{linking}, {optimised}")
    }
}

impl fmt::Display for Interpreter {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}: CPython {}; {}",
            self.path,
            self.version,
            self.build()
        )
    }
}

/// The Debian package that installed `path` (after symbolic links) and its version, from
/// `dpkg-query`; `None` where there is no dpkg or no package owns the file.
fn debian_package(path: &str) -> Option<(String, String)> {
    let real = std::fs::canonicalize(path).ok()?;
    let query = |args: &[&str]| {
        let out = Command::new("dpkg-query")
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let owner = query(&["-S", real.to_str()?])?;
    let name = owner.split(':').next()?.trim().to_string();
    let version = query(&["-W", "-f", "${Version}", &name])?;
    Some((name, version))
}

/// Say which interpreter and build PYTHON is.
///
/// Prints one line: the executable, `sys.version`, whether libpython is static or shared,
/// whether it was built with profile-guided optimisation (PGO) and link-time optimisation
/// (LTO), and the Debian package it came from, if any. PYTHON defaults to the interpreter
/// `pymalloc compare` runs the bundled workloads with ($PYMALLOC_PYTHON, or python3).
#[derive(clap::Args)]
pub struct Args {
    /// The interpreter to describe.
    #[arg(value_name = "PYTHON")]
    python: Option<String>,
}

pub fn main(args: Args) -> ExitCode {
    let python = match args.python {
        Some(p) => p,
        None => match find_python() {
            Ok(p) => p,
            Err(e) => return fail(&e, 2),
        },
    };
    match Interpreter::probe(&python) {
        Ok(i) => {
            println!("{i}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("interpreter: {e}"), 1),
    }
}

/// The interpreter the commands run when none is named: `$PYMALLOC_PYTHON`, else `python3`
/// on the PATH, each as its real executable ([`real_executable`]); the error line when
/// there is none.
pub fn find_python() -> Result<String, String> {
    if let Ok(p) = std::env::var("PYMALLOC_PYTHON") {
        return Ok(real_executable(&p).unwrap_or(p));
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("python3").is_file()));
    if !on_path {
        return Err("no python3 found on PATH (set PYMALLOC_PYTHON=/path/to/python)".into());
    }
    Ok(real_executable("python3").unwrap_or_else(|| "python3".into()))
}

/// The interpreter binary behind `python`, as `sys.executable` names it. `python3` on the
/// PATH may be a wrapper (pyenv's shim is a shell script that runs several processes): run
/// through it, every measurement would include the wrapper's start-up, which is longer
/// than a short workload, and the preloaded allocator would be timed in the shell too.
pub fn real_executable(python: &str) -> Option<String> {
    let out = Command::new(python)
        .args(["-c", "import sys; print(sys.executable)"])
        .env_remove("LD_PRELOAD")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && Path::new(&path).is_file()).then_some(path)
}

//! `pymalloc compare`: is pymalloc-rs faster for my program? Runs a command (default: the
//! bundled Python workloads) under pymalloc-rs, CPython's pymalloc, the C library's malloc
//! (`PYTHONMALLOC=malloc`), mimalloc / jemalloc preloaded with `PYTHONMALLOC=malloc`
//! when installed, and CPython's own mimalloc (`PYTHONMALLOC=mimalloc`) where the
//! interpreter has it (3.13+); alternates the allocators run by run, and prints median wall time, peak
//! RSS and their ratios to CPython's pymalloc as markdown (`--svg FILE` draws the chart,
//! `--json FILE` writes every measurement). When the command runs a Python, the table is
//! headed by which interpreter and build it is (`interpreter.rs`): the ratios depend on it.

use crate::interpreter::Interpreter;
use crate::median::median;
use crate::{fail, find_program, library};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// The bundled workloads: (name, script).
const WORKLOADS: &[(&str, &str)] = &[
    ("oo_richards", include_str!("workloads/oo_richards.py")),
    (
        "json_roundtrip",
        include_str!("workloads/json_roundtrip.py"),
    ),
    ("deepcopy", include_str!("workloads/deepcopy.py")),
    ("gc_cycles", include_str!("workloads/gc_cycles.py")),
    ("containers", include_str!("workloads/containers.py")),
    ("strings", include_str!("workloads/strings.py")),
    ("floats", include_str!("workloads/floats.py")),
    ("dict_churn", include_str!("workloads/dict_churn.py")),
    ("generators", include_str!("workloads/generators.py")),
    ("unicode_text", include_str!("workloads/unicode_text.py")),
];

/// An allocator configuration: how to launch the command under it.
struct Config {
    name: &'static str,
    preload: Option<PathBuf>,
    pythonmalloc: Option<&'static str>,
}

const BASELINE: &str = "CPython pymalloc";

/// The column of CPython's own mimalloc.
const CPYTHON_MIMALLOC: &str = "CPython mimalloc";

/// Whether `python` accepts `PYTHONMALLOC=mimalloc`: CPython 3.13+ carries mimalloc and
/// selects it so (default builds too); older versions, and builds configured
/// `--without-mimalloc`, refuse the value at start-up with an error.
fn has_own_mimalloc(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "pass"])
        .env_remove("LD_PRELOAD")
        .env("PYTHONMALLOC", "mimalloc")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The allocators to compare: ours, the baseline, glibc, the peers installed, and
/// CPython's mimalloc when `python` (the interpreter measured, if the command is one) has
/// it. Says on stderr which it skipped.
fn configs(ours: PathBuf, python: Option<&str>) -> Vec<Config> {
    let mut v = vec![
        Config {
            name: BASELINE,
            preload: None,
            pythonmalloc: None,
        },
        Config {
            name: "pymalloc-rs",
            preload: Some(ours),
            pythonmalloc: None,
        },
        Config {
            name: "glibc malloc",
            preload: None,
            pythonmalloc: Some("malloc"),
        },
    ];
    for (name, file) in [
        ("mimalloc", "libmimalloc.so.2"),
        ("jemalloc", "libjemalloc.so.2"),
    ] {
        let found = [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
        ]
        .iter()
        .map(|d| Path::new(d).join(file))
        .find(|p| p.is_file());
        match found {
            Some(p) => v.push(Config {
                name,
                preload: Some(p),
                pythonmalloc: Some("malloc"),
            }),
            None => eprintln!("pymalloc compare: {name} not installed ({file}); skipped"),
        }
    }
    match python {
        Some(p) if has_own_mimalloc(p) => v.push(Config {
            name: CPYTHON_MIMALLOC,
            preload: None,
            pythonmalloc: Some("mimalloc"),
        }),
        Some(p) => eprintln!(
            "pymalloc compare: {p} has no mimalloc of its own (PYTHONMALLOC=mimalloc, CPython 3.13+); {CPYTHON_MIMALLOC} skipped"
        ),
        None => {}
    }
    v
}

/// One measured run: wall seconds and peak RSS in KiB.
fn measure(cmd: &[String], cfg: &Config) -> Result<(f64, u64), String> {
    let mut c = Command::new(&cmd[0]);
    c.args(&cmd[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c.env_remove("LD_PRELOAD").env_remove("PYTHONMALLOC");
    if let Some(p) = &cfg.preload {
        c.env("LD_PRELOAD", p);
    }
    if let Some(m) = cfg.pythonmalloc {
        c.env("PYTHONMALLOC", m);
    }
    let start = Instant::now();
    let mut child = c
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd[0]))?;
    // Drain stderr while the command runs: a command that writes more than a pipe holds
    // would otherwise block on it forever.
    let stderr = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut text = String::new();
            let _ = e.read_to_string(&mut text);
            text
        })
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which std has not reaped.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    if pid < 0 {
        return Err("wait4 failed".into());
    }
    let err = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!(
            "{:?} failed under {} ({}): {}",
            cmd.join(" "),
            cfg.name,
            how_it_ended(status),
            err.lines().last().unwrap_or("")
        ));
    }
    Ok((secs, usage.ru_maxrss as u64))
}

/// A wait status in words: "exit status 2", "killed by signal 9".
fn how_it_ended(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status:#x}")
    }
}
/// Geometric mean.
fn geomean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

/// Compare allocators on CMD: is pymalloc-rs faster for my program?
///
/// Runs CMD (default: the bundled Python workloads, run with python3 or $PYMALLOC_PYTHON)
/// under pymalloc-rs, CPython's pymalloc, glibc malloc, mimalloc / jemalloc when
/// installed, and CPython's own mimalloc (PYTHONMALLOC=mimalloc, 3.13+), RUNS times each, alternating. Prints median wall time and peak
/// RSS as ratios to CPython's pymalloc (markdown).
#[derive(clap::Args)]
pub struct Args {
    /// Runs of each command under each allocator.
    #[arg(short = 'n', long = "runs", value_name = "RUNS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Also draw the time ratios as an SVG chart into FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Also write every measurement (each run, allocator and workload: wall seconds, peak
    /// RSS in KiB) and the medians as JSON into FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The command to measure, after `--` (default: the bundled workloads).
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

pub fn main(args: Args) -> ExitCode {
    let runs = args.runs as usize;
    let command: Option<Vec<String>> = if args.command.is_empty() {
        None
    } else {
        match args
            .command
            .into_iter()
            .map(OsString::into_string)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(c) => Some(c),
            Err(bad) => return fail(&format!("compare: {bad:?} is not UTF-8"), 2),
        }
    };
    let lib = match library() {
        Ok(l) => l,
        Err(e) => return fail(&e, 2),
    };
    // The jobs: (label, argv), and the interpreter they run if they run one.
    let mut scratch = None;
    let mut python = None;
    let jobs: Vec<(String, Vec<String>)> = match command {
        Some(cmd) => {
            // One line for a command that cannot run, before anything else is said of it.
            if find_program(cmd[0].as_ref()).is_none() {
                return fail(
                    &format!("compare: cannot run {:?}: no such program", cmd[0]),
                    2,
                );
            }
            let label = cmd.join(" ");
            let mut argv = cmd;
            let is_python = Path::new(&argv[0])
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("python"));
            if is_python {
                if let Some(real) = crate::interpreter::real_executable(&argv[0]) {
                    argv[0] = real;
                }
                python = Some(argv[0].clone());
            }
            vec![(label, argv)]
        }
        None => {
            let python_exe = match crate::interpreter::find_python() {
                Ok(p) => p,
                Err(e) => return fail(&e, 2),
            };
            let dir = std::env::temp_dir().join(format!("pymalloc-compare-{}", std::process::id()));
            if let Err(e) = std::fs::create_dir_all(&dir) {
                return fail(&format!("cannot create {}: {e}", dir.display()), 1);
            }
            let jobs = WORKLOADS
                .iter()
                .map(|(name, code)| {
                    let path = dir.join(format!("{name}.py"));
                    std::fs::write(&path, code).map(|_| {
                        (
                            name.to_string(),
                            vec![python_exe.clone(), path.display().to_string()],
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>();
            scratch = Some(dir);
            python = Some(python_exe);
            match jobs {
                Ok(j) => j,
                Err(e) => return fail(&format!("cannot write the workloads: {e}"), 1),
            }
        }
    };
    // Named above the table; one that cannot say is measured all the same.
    let interpreter = python.as_deref().and_then(|p| {
        Interpreter::probe(p)
            .map_err(|e| eprintln!("pymalloc compare: {e}; the table names no build"))
            .ok()
    });
    let cfgs = configs(lib, python.as_deref());
    let result = run_all(&jobs, &cfgs, runs);
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    let samples = match result {
        Ok(s) => s,
        Err(e) => return fail(&e, 1),
    };
    let table = medians(&samples);
    if let Some(i) = &interpreter {
        println!("Interpreter: {i}");
    }
    print!("{}", markdown(&jobs, &cfgs, &table, runs));
    for (path, what, text) in [
        (
            &args.svg,
            "chart",
            args.svg.as_ref().map(|_| chart(&jobs, &cfgs, &table)),
        ),
        (
            &args.json,
            "measurements",
            args.json
                .as_ref()
                .map(|_| json(&jobs, &cfgs, &samples, &table, interpreter.as_ref())),
        ),
    ] {
        let (Some(path), Some(text)) = (path, text) else {
            continue;
        };
        if let Err(e) = std::fs::write(path, text) {
            return fail(&format!("cannot write {}: {e}", path.display()), 1);
        }
        eprintln!("pymalloc compare: {what} written to {}", path.display());
    }
    ExitCode::SUCCESS
}

/// `table[job][cfg] = (median seconds, median peak RSS KiB)`.
type Table = Vec<Vec<(f64, f64)>>;

/// `samples[job][cfg][run] = (seconds, peak RSS KiB)`, runs in the order they ran.
type Samples = Vec<Vec<Vec<(f64, u64)>>>;

fn medians(samples: &Samples) -> Table {
    samples
        .iter()
        .map(|row| {
            row.iter()
                .map(|runs| {
                    let mut t: Vec<f64> = runs.iter().map(|s| s.0).collect();
                    let mut r: Vec<f64> = runs.iter().map(|s| s.1 as f64).collect();
                    (median(&mut t), median(&mut r))
                })
                .collect()
        })
        .collect()
}

fn run_all(
    jobs: &[(String, Vec<String>)],
    cfgs: &[Config],
    runs: usize,
) -> Result<Samples, String> {
    let mut samples: Samples = vec![vec![Vec::new(); cfgs.len()]; jobs.len()];
    let total = runs * jobs.len() * cfgs.len();
    let mut done = 0;
    // SAFETY: isatty has no preconditions.
    let tty = unsafe { libc::isatty(2) } == 1;
    for run in 0..runs {
        for (j, (label, cmd)) in jobs.iter().enumerate() {
            // Rotate the order each run, so no allocator always runs first or last.
            for k in 0..cfgs.len() {
                let c = (k + run + j) % cfgs.len();
                done += 1;
                if tty {
                    eprint!(
                        "\rpymalloc compare: run {}/{runs}, {label} under {} [{done}/{total}]\x1b[K",
                        run + 1,
                        cfgs[c].name
                    );
                } else if j == 0 && k == 0 {
                    eprintln!("pymalloc compare: run {}/{runs}", run + 1);
                }
                samples[j][c].push(measure(cmd, &cfgs[c])?);
            }
        }
    }
    if tty {
        eprintln!();
    }
    Ok(samples)
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Every measurement and the medians as JSON: `{"baseline", "runs", "allocators",
/// "interpreter": {"path", "version", "build"} or null, "workloads": [{"name", "command", "allocators": {NAME: {"wall_s": [..], "peak_rss_kib":
/// [..], "median_wall_s", "median_peak_rss_kib"}}}]}`, runs in the order they ran.
fn json(
    jobs: &[(String, Vec<String>)],
    cfgs: &[Config],
    samples: &Samples,
    table: &Table,
    interpreter: Option<&Interpreter>,
) -> String {
    let names: Vec<String> = cfgs.iter().map(|c| json_string(c.name)).collect();
    let runs = samples.first().and_then(|r| r.first()).map_or(0, Vec::len);
    let interpreter = interpreter.map_or("null".to_string(), |i| {
        format!(
            "{{\"path\": {}, \"version\": {}, \"build\": {}}}",
            json_string(&i.path),
            json_string(&i.version),
            json_string(&i.build())
        )
    });
    let mut o = format!(
        "{{\n  \"baseline\": {},\n  \"runs\": {runs},\n  \"allocators\": [{}],\n  \"interpreter\": {interpreter},\n  \"workloads\": [",
        json_string(BASELINE),
        names.join(", ")
    );
    for (j, (label, argv)) in jobs.iter().enumerate() {
        let argv: Vec<String> = argv.iter().map(|a| json_string(a)).collect();
        let _ = write!(
            o,
            "{}\n    {{\"name\": {}, \"command\": [{}], \"allocators\": {{",
            if j > 0 { "," } else { "" },
            json_string(label),
            argv.join(", ")
        );
        for (c, name) in names.iter().enumerate() {
            let wall: Vec<String> = samples[j][c]
                .iter()
                .map(|s| format!("{:.6}", s.0))
                .collect();
            let rss: Vec<String> = samples[j][c].iter().map(|s| s.1.to_string()).collect();
            let _ = write!(
                o,
                "{}\n      {name}: {{\"wall_s\": [{}], \"peak_rss_kib\": [{}], \"median_wall_s\": {:.6}, \"median_peak_rss_kib\": {}}}",
                if c > 0 { "," } else { "" },
                wall.join(", "),
                rss.join(", "),
                table[j][c].0,
                table[j][c].1
            );
        }
        o.push_str("\n    }}");
    }
    o.push_str("\n  ]\n}\n");
    o
}

fn markdown(jobs: &[(String, Vec<String>)], cfgs: &[Config], table: &Table, runs: usize) -> String {
    let mut o = String::new();
    let others: Vec<usize> = (1..cfgs.len()).collect();
    for (title, idx, unit) in [("Wall time", 0usize, "s"), ("Peak RSS", 1, "MiB")] {
        o.push_str(&format!(
            "\n### {title}: median of {runs} alternating runs; ratios to {BASELINE} (lower is better)\n\n| workload | {BASELINE} ({unit}) |"
        ));
        for &c in &others {
            o.push_str(&format!(" {} |", cfgs[c].name));
        }
        o.push_str("\n|---|---|");
        o.push_str(&"---|".repeat(others.len()));
        o.push('\n');
        let mut ratios = vec![Vec::new(); cfgs.len()];
        for (j, (label, _)) in jobs.iter().enumerate() {
            let get = |c: usize| {
                if idx == 0 {
                    table[j][c].0
                } else {
                    table[j][c].1 / 1024.0
                }
            };
            let base = get(0);
            o.push_str(&format!("| {} | {base:.3} |", label.replace('|', "\\|")));
            for &c in &others {
                let r = get(c) / base;
                ratios[c].push(r);
                o.push_str(&format!(" {r:.3} |"));
            }
            o.push('\n');
        }
        if jobs.len() > 1 {
            o.push_str("| **geometric mean** | |");
            for &c in &others {
                o.push_str(&format!(" **{:.3}** |", geomean(&ratios[c])));
            }
            o.push('\n');
        }
    }
    o
}

/// A grouped bar chart of the time ratios, as SVG.
fn chart(jobs: &[(String, Vec<String>)], cfgs: &[Config], table: &Table) -> String {
    crate::chart::document(&[crate::chart::BarChart {
        title: format!("Wall time relative to {BASELINE} (lower is better)"),
        series: cfgs.iter().map(|c| c.name.to_string()).collect(),
        lines: false,
        groups: jobs
            .iter()
            .zip(table)
            .map(|((label, _), row)| (label.clone(), row.iter().map(|c| c.0 / row[0].0).collect()))
            .collect(),
        reference: Some(1.0),
    }])
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(json_string("plain"), "\"plain\"");
        assert_eq!(
            json_string("say \"hi\"\\n\n\té"),
            "\"say \\\"hi\\\"\\\\n\\u000a\\u0009é\""
        );
    }
}

//! Build-and-drop oscillation: the cost of a working set that grows and
//! shrinks again and again, and the system calls it makes per cycle.
//!
//! - C: a loop that allocates N blocks of 64 bytes and frees them all, repeated, for
//!   N = 4k … 131k (one to eight arenas), against CPython 3.11's pymalloc, glibc and
//!   mimalloc: CPU nanoseconds (user and system, so that waiting for a core on a busy
//!   machine does not count) per malloc+free pair (median of fresh child processes,
//!   allocators alternating), and `mmap`/`munmap`/`madvise` calls per cycle (counted by
//!   `strace -c` over two cycle counts, 1.2 s (three decay epochs) apart, so start-up
//!   cancels out and the decay's own give-back would show).
//! - Python: CPython 3.11 building a list of N `(i, {'a': i})` pairs and dropping it,
//!   4M objects in all, for N = 2k … 200k, under CPython's pymalloc, pymalloc-rs
//!   (`LD_PRELOAD`), glibc (`PYTHONMALLOC=malloc`) and mimalloc (preloaded, with
//!   `PYTHONMALLOC=malloc`): CPU nanoseconds per object.
//!
//! - Idle after a burst: CPython 3.11 builds 1.5M tuples, dicts, lists and strings, keeps
//!   a random 0 %, 1 % or 10 % of them, drops the rest and runs `gc.collect()`; then RSS held
//!   above the start (MiB) right away, after 1 s with no allocation at all (a server
//!   waiting on a socket), and after 1 s more of light activity; same allocators.
//!
//! `cargo bench --bench thrash` prints markdown tables; `THRASH_RUNS` (default 5) sets the
//! runs per cell. Missing peers and a missing `strace` are skipped with a line saying so.

mod common;

#[path = "../cli/src/median.rs"]
mod median_of;

use common::{load, Alloc};
use median_of::median;
use std::process::Command;

/// Blocks per cycle of the C loop.
const C_SIZES: [usize; 5] = [4_000, 8_000, 16_000, 33_000, 131_000];
/// Pairs per timed C run (about 0.1–0.3 s).
const C_PAIRS: usize = 20_000_000;
/// Pairs of the Python loop's list.
const PY_SIZES: [usize; 6] = [2_000, 10_000, 20_000, 50_000, 100_000, 200_000];
/// The C allocators compared, the reference first.
const C_ALLOCS: [&str; 4] = ["cpython-pymalloc", "pymalloc-rs", "glibc", "mimalloc"];

/// The Python build-and-drop loop: prints nanoseconds per object.
const PY_LOOP: &str = "
import sys, time
n = int(sys.argv[1]); cycles = max(1, 4_000_000 // (2 * n))
t = time.process_time()
for _ in range(cycles):
    l = [(i, {'a': i}) for i in range(n)]
    del l
print((time.process_time() - t) * 1e9 / (cycles * n * 2))
";

/// Fractions of the burst's objects kept.
const KEPT: [f64; 3] = [0.0, 0.01, 0.10];

/// The idle-after-burst script: prints the MiB held above the start right after the drop,
/// after 1 s idle, and after 1 s of light activity.
const PY_IDLE: &str = "
import gc, random, sys, time
def rss():
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) for l in f if l.startswith('VmRSS:')) / 1024
keep = float(sys.argv[1]); random.seed(1); start = rss()
objs = []
for i in range(375_000):
    objs += [(i, i + 1), {'k': i}, [i], str(i) * 3]
kept = [o for o in objs if random.random() < keep]
del objs; gc.collect()
now = rss() - start
time.sleep(1.0)
idle = rss() - start
t = time.monotonic()
while time.monotonic() - t < 1.0:
    x = [str(i) for i in range(100)]; del x; time.sleep(0.002)
print(now, idle, rss() - start)
";

/// CPU seconds this process has used (user and system): unlike wall time, not inflated by
/// waiting for a core on a busy shared machine.
fn cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-parameter; the clock id always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Child: `cycles` rounds of allocating `n` 64-byte blocks and freeing them all, after one
/// warm-up round. Prints nanoseconds per pair.
fn c_child(a: &Alloc, n: usize, cycles: usize) {
    let mut blocks = vec![std::ptr::null_mut(); n];
    let round = |blocks: &mut Vec<*mut std::ffi::c_void>| {
        for b in blocks.iter_mut() {
            *b = a.alloc(64);
        }
        for &b in blocks.iter() {
            // SAFETY: each block is freed once.
            unsafe { (a.free)(b) };
        }
    };
    round(&mut blocks);
    let t = cpu_seconds();
    for _ in 0..cycles {
        round(&mut blocks);
    }
    println!("{}", (cpu_seconds() - t) * 1e9 / (cycles * n) as f64);
}

/// Runs this executable as a C child; `strace` counts its memory system calls when given.
fn c_run(name: &str, n: usize, cycles: usize, strace: Option<&str>) -> Result<String, String> {
    let exe = std::env::current_exe().unwrap();
    let mut c = match strace {
        Some(out) => {
            let mut c = Command::new("strace");
            c.args(["-f", "-c", "-e", "trace=mmap,munmap,madvise", "-o", out])
                .arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    c.env("THRASH_CHILD", format!("{name}:{n}:{cycles}"));
    let out = c.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Seconds the longer strace run of [`c_syscalls`] lasts beyond the shorter: three decay
/// epochs (400 ms, `arena::DEFAULT_DECAY_MS`), so that give-back churn shows.
const STRACE_EXTRA_S: f64 = 1.2;

/// Memory system calls per cycle of the C loop: two strace runs of 50 cycles and of
/// [`STRACE_EXTRA_S`] more (from `ns_per_pair`, the timed runs' median), differenced.
fn c_syscalls(name: &str, n: usize, ns_per_pair: f64) -> Option<f64> {
    let count = |cycles| -> Option<f64> {
        let out = std::env::temp_dir().join(format!("thrash-{}-{name}-{n}", std::process::id()));
        c_run(name, n, cycles, Some(out.to_str()?)).ok()?;
        let text = std::fs::read_to_string(&out).ok()?;
        let _ = std::fs::remove_file(&out);
        // The summary line: "100.00 <seconds> <usecs/call> <calls> [errors] total".
        let total = text.lines().find(|l| l.trim_end().ends_with("total"))?;
        total.split_whitespace().nth(3)?.parse().ok()
    };
    let extra = ((STRACE_EXTRA_S * 1e9 / (ns_per_pair * n as f64)) as usize).max(100);
    Some((count(50 + extra)? - count(50)?) / extra as f64)
}

/// pyenv's CPython 3.11 interpreter (beside the library the C reference uses).
fn python311() -> Option<String> {
    let lib = common::dl::cpython_lib()?;
    let prefix = std::path::Path::new(&lib).parent()?.parent()?;
    let exe = prefix.join("bin/python3.11");
    exe.is_file().then(|| exe.to_str().unwrap().to_string())
}

/// The environment that runs CPython on allocator `name`, or why it cannot.
fn py_env(name: &str) -> Result<Vec<(&'static str, String)>, String> {
    Ok(match name {
        "cpython-pymalloc" => vec![],
        "pymalloc-rs" => vec![("LD_PRELOAD", common::our_cdylib()?)],
        "glibc" => vec![("PYTHONMALLOC", "malloc".into())],
        "mimalloc" => {
            common::dl::open("libmimalloc.so.2")?;
            vec![
                ("LD_PRELOAD", "libmimalloc.so.2".into()),
                ("PYTHONMALLOC", "malloc".into()),
            ]
        }
        _ => unreachable!(),
    })
}

fn py_run(python: &str, env: &[(&str, String)], n: usize) -> Result<f64, String> {
    py_output(python, env, PY_LOOP, &n.to_string())?
        .parse()
        .map_err(|e| format!("{e}"))
}

/// Runs `script` with argument `arg` under `env`; its standard output.
fn py_output(
    python: &str,
    env: &[(&str, String)],
    script: &str,
    arg: &str,
) -> Result<String, String> {
    let mut c = Command::new(python);
    c.args(["-c", script, arg])
        .env_remove("PYTHONMALLOC")
        .env_remove("PYTHONDEVMODE");
    // The library's defaults, whatever the caller's shell sets.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PYMALLOC_") {
            c.env_remove(k);
        }
    }
    let out = c
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // ld.so only warns when a preload cannot be loaded: the run would measure plain CPython.
    if !out.status.success() || stderr.contains("ld.so") {
        return Err(stderr.trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    if let Ok(spec) = std::env::var("THRASH_CHILD") {
        let mut it = spec.split(':');
        let (name, n, cycles) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        let a = load(name).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(3)
        });
        c_child(&a, n.parse().unwrap(), cycles.parse().unwrap());
        return;
    }
    let runs: usize = std::env::var("THRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let allocs: Vec<&str> = C_ALLOCS
        .into_iter()
        .filter(|name| match c_run(name, 1000, 1, None) {
            Ok(_) => true,
            Err(e) => {
                eprintln!("{name}: skipped ({e})");
                false
            }
        })
        .collect();
    let strace = Command::new("strace").arg("-V").output().is_ok();
    if !strace {
        eprintln!("strace not found: no system call counts (apt-get install strace)");
    }

    println!("## C: allocate N × 64 B, free them all, repeat (CPU ns per pair, median of {runs}; memory system calls per cycle)\n");
    print!("| N |");
    for name in &allocs {
        print!(" {name} | ratio | calls/cycle |");
    }
    println!("\n|---|{}", "---|---|---|".repeat(allocs.len()));
    for n in C_SIZES {
        let cycles = C_PAIRS / n;
        let mut times = vec![Vec::new(); allocs.len()];
        for _ in 0..runs {
            for (i, name) in allocs.iter().enumerate() {
                let s = c_run(name, n, cycles, None).expect("C child runs");
                times[i].push(s.parse::<f64>().unwrap());
            }
        }
        let meds: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
        print!("| {n} |");
        for (i, name) in allocs.iter().enumerate() {
            let calls = if strace {
                c_syscalls(name, n, meds[i]).map_or("-".to_string(), |c| format!("{c:.2}"))
            } else {
                "-".to_string()
            };
            print!(" {:.1} | {:.2} | {calls} |", meds[i], meds[i] / meds[0]);
        }
        println!();
    }

    let Some(python) = python311() else {
        eprintln!("no pyenv CPython 3.11: the Python table is skipped (pyenv install 3.11)");
        return;
    };
    let envs: Vec<(&str, Vec<(&str, String)>)> = C_ALLOCS
        .into_iter()
        .filter_map(|name| match py_env(name) {
            Ok(env) => Some((name, env)),
            Err(e) => {
                eprintln!("{name}: skipped in Python ({e})");
                None
            }
        })
        .collect();
    println!("\n## Python 3.11: build a list of N `(i, {{'a': i}})` pairs, drop it, 4M objects in all (CPU ns per object, median of {runs})\n");
    print!("| N |");
    for (name, _) in &envs {
        print!(" {name} | ratio |");
    }
    println!("\n|---|{}", "---|---|".repeat(envs.len()));
    for n in PY_SIZES {
        let mut times = vec![Vec::new(); envs.len()];
        for _ in 0..runs {
            for (i, (_, env)) in envs.iter().enumerate() {
                times[i].push(py_run(&python, env, n).expect("python runs"));
            }
        }
        let meds: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
        print!("| {n} |");
        for m in &meds {
            print!(" {m:.0} | {:.2} |", m / meds[0]);
        }
        println!();
    }

    println!("\n## Python 3.11: idle after a burst of 1.5M objects (MiB held above the start, median of {runs}; ratio to CPython's pymalloc)\n");
    print!("| kept | when |");
    for (name, _) in &envs {
        print!(" {name} | ratio |");
    }
    println!("\n|---|---|{}", "---|---|".repeat(envs.len()));
    for keep in KEPT {
        // [allocator][moment] -> runs
        let mut held = vec![vec![Vec::new(); 3]; envs.len()];
        for _ in 0..runs {
            for (i, (_, env)) in envs.iter().enumerate() {
                let line =
                    py_output(&python, env, PY_IDLE, &keep.to_string()).expect("python runs");
                for (k, v) in line.split_whitespace().enumerate().take(3) {
                    held[i][k].push(v.parse::<f64>().unwrap());
                }
            }
        }
        for (k, when) in [
            "right after gc.collect()",
            "after 1 s idle",
            "then 1 s of light activity",
        ]
        .iter()
        .enumerate()
        {
            let meds: Vec<f64> = held.iter_mut().map(|h| median(&mut h[k])).collect();
            print!("| {:.0} % | {when} |", keep * 100.0);
            for m in &meds {
                print!(" {m:.1} | {:.2} |", m / meds[0].max(0.1));
            }
            println!();
        }
    }
}
